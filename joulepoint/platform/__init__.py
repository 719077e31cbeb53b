"""The platform layer: what every domain app builds on and that knows no domain (cache, database
helpers, rate limits, API errors and router, time formatting, warm-up)."""

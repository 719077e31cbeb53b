"""The charging API: chargers, ID tokens, charging sessions (views, serializers, urls)."""

"""Benchmarks that print figures (never part of the test run). See bench/README.md."""

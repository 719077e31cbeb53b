"""Power quality and protection (docs/power-quality.md): the pure rules (`rules`), their
thresholds (`config`), detection in the ingest path (`detection`, `protection`), the events they
announce (`events`), the rows (`models`) and the HTTP doors (`api/`)."""

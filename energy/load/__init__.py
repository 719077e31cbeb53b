"""Load management: site constraints, schedules, demand response, peaks, EV chargers and their
charging sessions, the allocator that shares a site's headroom among them, and the OCPP 2.0.1
door chargers connect to (docs/load.md)."""

"""Live streams: the frame protocol shared by WebSocket and MQTT ingest, Channels fan-out of
events to dashboards, MQTT plumbing and the reads the dashboard needs. See docs/live.md."""

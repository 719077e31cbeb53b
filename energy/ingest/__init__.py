"""Ingest: every door (HTTP, bulk, MQTT bridge, WebSocket) validates and stores readings through `store`."""

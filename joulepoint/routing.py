"""WebSocket routes of every app, mounted by joulepoint.asgi."""

from __future__ import annotations

from django.urls import re_path

from energy import consumers

websocket_urlpatterns: list = [
    re_path(r"^ws/ingest/?$", consumers.IngestConsumer.as_asgi()),
    re_path(r"^ws/live/?$", consumers.LiveConsumer.as_asgi()),
]

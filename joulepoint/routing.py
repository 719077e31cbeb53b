"""WebSocket routes of every app, mounted by joulepoint.asgi."""

from __future__ import annotations

from django.urls import re_path

from energy.ingest.consumers import IngestConsumer
from energy.live.consumers import LiveConsumer

websocket_urlpatterns: list = [
    re_path(r"^ws/ingest/?$", IngestConsumer.as_asgi()),
    re_path(r"^ws/live/?$", LiveConsumer.as_asgi()),
]

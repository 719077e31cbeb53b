"""WebSocket routes of every app, mounted by joulepoint.asgi."""

from __future__ import annotations

websocket_urlpatterns: list = []

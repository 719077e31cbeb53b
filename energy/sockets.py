"""What both WebSocket doors share (docs/live.md): close codes, JSON frames out, the wait for an
auth message."""

from __future__ import annotations

import asyncio

import orjson
from django.conf import settings

CLOSE_PROTOCOL_ERROR = 4400  # the first message of an unauthenticated socket was not an auth message
CLOSE_UNAUTHENTICATED = 4401  # no, malformed, unknown, disabled or rotated credential
CLOSE_FORBIDDEN = 4403  # token without energy:read, or a browser session from a foreign Origin
CLOSE_AUTH_TIMEOUT = 4401  # no auth message within WS_AUTH_TIMEOUT_SECONDS (detail "auth_timeout")
CLOSE_RATE_LIMITED = 4429  # kept flooding after rate_limited error frames
# RFC 6455's "Try Again Later": dashboard, the channel layer (Redis) was unreachable as it joined
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_TOO_SLOW = 4503  # dashboard: fell relay.LOCAL_QUEUE_SIZE messages behind; reconnect and reload

# An ingest socket re-reads its device this often, so a rotated or disabled key is cut off.
DEVICE_RECHECK_SECONDS = 30.0


def json_text(data: dict) -> str:
    return orjson.dumps(data).decode()


def scope_header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


class AuthWaitMixin:
    """Sockets that may authenticate with a first message get WS_AUTH_TIMEOUT_SECONDS to send it."""

    auth_timer: asyncio.Task | None = None
    closing = False

    async def close(self, code=None, reason=None) -> None:
        # Frames the client sends before it sees our close are ignored, never stored.
        self.closing = True
        await super().close(code=code, reason=reason)

    def start_auth_timer(self) -> None:
        self.auth_timer = asyncio.ensure_future(self._auth_timeout())

    def stop_auth_timer(self) -> None:
        if self.auth_timer is not None:
            self.auth_timer.cancel()
            self.auth_timer = None

    async def _auth_timeout(self) -> None:
        await asyncio.sleep(settings.WS_AUTH_TIMEOUT_SECONDS)
        await self.send(text_data=json_text({"type": "error", "code": "auth_timeout", "detail": "No auth message."}))
        await self.close(code=CLOSE_AUTH_TIMEOUT)

"""WebSocket doors (Channels): device ingest at /ws/ingest/ and live dashboards at /ws/live/.

Thin: frames are decoded by energy.live.frames, readings stored by
energy.services.reading_batch_ingest (source="ws"), subscriptions resolved by
energy.live.selectors, events arrive through the groups of energy.live.fanout.
Close codes and limits are documented in docs/live.md and listed here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http.request import validate_host

from energy import services
from energy.live import fanout, relay, selectors
from energy.live.frames import FrameError, ack_frame, frame_decode, frame_loads, invalid_frame
from energy.validation import ReadingsInvalid

CLOSE_PROTOCOL_ERROR = 4400  # the first message of an unauthenticated socket was not an auth message
CLOSE_UNAUTHENTICATED = 4401  # no, malformed, unknown, disabled or rotated credential
CLOSE_FORBIDDEN = 4403  # token without energy:read, or a browser session from a foreign Origin
CLOSE_AUTH_TIMEOUT = 4401  # no auth message within WS_AUTH_TIMEOUT_SECONDS (detail "auth_timeout")
CLOSE_RATE_LIMITED = 4429  # kept flooding after rate_limited error frames
CLOSE_TOO_SLOW = 4503  # dashboard: fell relay.LOCAL_QUEUE_SIZE messages behind; reconnect and reload

# An ingest socket re-reads its device this often, so a rotated or disabled key is cut off.
DEVICE_RECHECK_SECONDS = 30.0


def _dumps(data: dict) -> str:
    return orjson.dumps(data).decode()


def _header(scope, name: bytes) -> str | None:
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
        await self.send(text_data=_dumps({"type": "error", "code": "auth_timeout", "detail": "No auth message."}))
        await self.close(code=CLOSE_AUTH_TIMEOUT)


class IngestConsumer(AuthWaitMixin, AsyncWebsocketConsumer):
    """A meter or gateway streaming readings; also the device's downlink when open."""

    device = None

    async def connect(self) -> None:
        self.tokens = float(settings.WS_INGEST_BURST)
        self.refilled_at = time.monotonic()
        self.flood_strikes = 0
        self.checked_at = time.monotonic()
        await self.accept()
        raw_key = _header(self.scope, b"x-device-key")
        if raw_key is None:
            self.start_auth_timer()
            return
        await self.authenticate(raw_key)

    async def authenticate(self, raw_key: object) -> bool:
        try:
            device_key = uuid.UUID(str(raw_key).strip())
        except ValueError:
            return await self.refuse("X-Device-Key must be a UUID.")
        device = await database_sync_to_async(services.device_for_key)(device_key=device_key)
        if device is None:
            return await self.refuse("Unknown or disabled device key.")
        self.device = device
        self.stop_auth_timer()
        self.downlink_group = fanout.device_group(device.device_key)
        await fanout.group_join(self.channel_layer, self.downlink_group, self.channel_name)
        await self.send(text_data=_dumps({"type": "ready", "device": self.describe(device)}))
        return True

    @staticmethod
    def describe(device) -> dict:
        kind = "meter" if device.__class__.__name__ == "Meter" else "gateway"
        return {"kind": kind, "id": device.pk, "site_id": device.site_id}

    async def refuse(self, detail: str) -> bool:
        await self.send(text_data=_dumps({"type": "error", "code": "unauthenticated", "detail": detail}))
        await self.close(code=CLOSE_UNAUTHENTICATED)
        return False

    async def disconnect(self, code) -> None:
        self.stop_auth_timer()
        if self.device is not None:
            await fanout.group_leave(self.channel_layer, self.downlink_group, self.channel_name)

    def take_token(self) -> bool:
        now = time.monotonic()
        rate = settings.WS_INGEST_FRAMES_PER_SECOND
        self.tokens = min(float(settings.WS_INGEST_BURST), self.tokens + (now - self.refilled_at) * rate)
        self.refilled_at = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.flood_strikes = 0
            return True
        self.flood_strikes += 1
        return False

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.closing:
            return
        raw = text_data if text_data is not None else bytes_data
        if not self.take_token():
            if self.flood_strikes > settings.WS_INGEST_BURST:
                await self.close(code=CLOSE_RATE_LIMITED)
                return
            limit = settings.WS_INGEST_FRAMES_PER_SECOND
            await self.reply(FrameError("rate_limited", f"At most {limit} frames per second.").as_frame())
            return
        try:
            data = frame_loads(raw)
        except FrameError as exc:
            await self.reply(exc.as_frame())
            return
        control = data.get("type") if isinstance(data, dict) else None
        if self.device is None:
            if control != "auth":
                await self.send(text_data=_dumps({"type": "error", "code": "unauthenticated", "detail": "auth first"}))
                await self.close(code=CLOSE_PROTOCOL_ERROR)
                return
            await self.authenticate(data.get("device_key"))
            return
        if not await self.device_still_valid():
            return
        if control is not None:
            await self.control(control, data)
            return
        await self.reply(await self.ingest(data))

    async def device_still_valid(self) -> bool:
        if time.monotonic() - self.checked_at < DEVICE_RECHECK_SECONDS:
            return True
        self.checked_at = time.monotonic()
        device = await database_sync_to_async(services.device_for_key)(device_key=self.device.device_key)
        if device is None:
            return await self.refuse("The device key was rotated or disabled.")
        self.device = device
        return True

    @database_sync_to_async
    def ingest(self, data: object) -> dict:
        try:
            frame = frame_decode(data, device=self.device)
        except FrameError as exc:
            return exc.as_frame()
        try:
            result = services.reading_batch_ingest(device=self.device, items=frame.items, source="ws")
        except ReadingsInvalid as exc:
            return invalid_frame(frame_id=frame.id, errors=[error.as_dict() for error in exc.errors])
        return ack_frame(frame_id=frame.id, stored=result.stored, duplicates=result.duplicates)

    async def control(self, control: object, data: dict) -> None:
        if control == "command_ack":
            await self.reply(await self.command_ack(data))
        elif control == "ping":
            await self.reply({"type": "pong", "id": data.get("id")})
        else:
            await self.reply(
                FrameError("unknown_type", f"Unknown message type {control!r}.", data.get("id")).as_frame()
            )

    @database_sync_to_async
    def command_ack(self, data: dict) -> dict:
        status = data.get("status", "acked")
        if status not in ("acked", "failed"):
            return FrameError("bad_ack", "status is 'acked' or 'failed'.", data.get("id")).as_frame()
        result = data.get("result") if isinstance(data.get("result"), dict) else {}
        try:
            command = services.device_command_ack(
                device=self.device, command_id=data.get("id"), ok=status == "acked", result=result
            )
        except services.DeviceCommandError as exc:
            return FrameError(exc.code, exc.detail, data.get("id")).as_frame()
        return {"type": "command_status", "id": command.pk, "status": command.status}

    async def reply(self, frame: dict) -> None:
        await self.send(text_data=_dumps(frame))

    async def downlink_command(self, message: dict) -> None:
        """A command for this device (energy.services.device_command_deliver)."""
        command = message["command"]
        await self.send(text_data=_dumps({"type": "command", **command}))
        await database_sync_to_async(services.device_command_mark_delivered)(command_id=command["id"], channel="ws")


class LiveConsumer(AuthWaitMixin, AsyncWebsocketConsumer):
    """A dashboard watching sites, meters or meter groups of its own organization(s).

    Authenticated by the Django session (same-origin browsers) or an OAuth2 access token with
    energy:read, given as `?token=` or in a first message {"type": "auth", "token": "..."}."""

    organization_ids: list[int] | None = None

    async def connect(self) -> None:
        self.sites: dict[int, set[int] | None] = {}
        self.groups: set[str] = set()
        # Messages from this process's relay, written by one task in order; bounded so a slow
        # browser cannot hold the server's memory (it is closed with 4503 instead).
        self.outbox: asyncio.Queue = asyncio.Queue(maxsize=relay.LOCAL_QUEUE_SIZE)
        self.writer = asyncio.ensure_future(self._write_loop())
        await self.accept()
        token = parse_qs(self.scope.get("query_string", b"").decode("latin1")).get("token", [None])[0]
        if token:
            await self.authenticate_token(token)
            return
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            if not self.same_origin():
                await self.refuse(CLOSE_FORBIDDEN, "forbidden", "Session sockets must come from this site's pages.")
                return
            org_ids = await database_sync_to_async(selectors.user_organization_ids)(user=user)
            await self.authenticated(org_ids)
            return
        self.start_auth_timer()

    def same_origin(self) -> bool:
        """A session cookie rides along on cross-site sockets too (CSWSH): require our Origin."""
        origin = _header(self.scope, b"origin")
        if origin is None:
            return True  # not a browser; a browser always sends Origin on a WebSocket
        parts = urlsplit(origin)
        if not parts.netloc:
            return False
        allowed = [host for host in settings.ALLOWED_HOSTS if host != "*"]
        return parts.netloc == _header(self.scope, b"host") or validate_host(parts.hostname or "", allowed)

    async def authenticate_token(self, token: object) -> None:
        org_id, why = await database_sync_to_async(selectors.access_token_organization_id)(
            token=str(token), scopes=["energy:read"]
        )
        if org_id is None:
            code = CLOSE_FORBIDDEN if why == "insufficient_scope" else CLOSE_UNAUTHENTICATED
            detail = "The token lacks energy:read." if code == CLOSE_FORBIDDEN else "Invalid or expired token."
            await self.refuse(code, why, detail)
            return
        await self.authenticated([org_id])

    async def authenticated(self, org_ids: list[int]) -> None:
        if not org_ids:
            await self.refuse(CLOSE_FORBIDDEN, "forbidden", "This user belongs to no organization.")
            return
        self.stop_auth_timer()
        self.organization_ids = org_ids
        for org_id in org_ids:
            await self.join(fanout.org_group(org_id))
        await self.reply({"type": "ready", "organizations": org_ids})

    async def refuse(self, code: int, error: str, detail: str) -> None:
        await self.reply({"type": "error", "code": error, "detail": detail})
        await self.close(code=code)

    async def join(self, group: str) -> None:
        if group not in self.groups:
            self.groups.add(group)
            await relay.relay().add(group, self)

    async def disconnect(self, code) -> None:
        self.stop_auth_timer()
        self.writer.cancel()
        for group in self.groups:
            await relay.relay().discard(group, self)

    def relay_deliver(self, message: dict) -> None:
        """Called by the relay for each message of a group this socket joined."""
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            self.outbox = asyncio.Queue(maxsize=1)
            self.outbox.put_nowait({"type": "live.too_slow"})

    async def _write_loop(self) -> None:
        while True:
            message = await self.outbox.get()
            kind = message["type"]
            if kind == "live.readings":
                await self.live_readings(message)
            elif kind == "live.event":
                await self.live_event(message)
            elif kind == "live.too_slow":
                await self.refuse(CLOSE_TOO_SLOW, "too_slow", "This socket fell behind; reconnect and reload.")
                return

    async def reply(self, frame: dict) -> None:
        await self.send(text_data=_dumps(frame))

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.closing:
            return
        raw = text_data if text_data is not None else bytes_data
        try:
            data = frame_loads(raw)
        except FrameError as exc:
            await self.reply(exc.as_frame())
            return
        kind = data.get("type") if isinstance(data, dict) else None
        if self.organization_ids is None:
            if kind != "auth":
                await self.refuse(CLOSE_UNAUTHENTICATED, "unauthenticated", "Authenticate first.")
                return
            await self.authenticate_token(data.get("token") or "")
            return
        if kind == "subscribe":
            await self.subscribe(data)
        elif kind == "unsubscribe":
            await self.unsubscribe(data)
        elif kind == "ping":
            await self.reply({"type": "pong"})
        else:
            await self.reply({"type": "error", "code": "unknown_type", "detail": f"Unknown message type {kind!r}."})

    async def subscribe(self, data: dict) -> None:
        try:
            targets = await database_sync_to_async(selectors.live_targets_resolve)(
                organization_ids=self.organization_ids,
                meters=data.get("meters"),
                groups=data.get("groups"),
                sites=data.get("sites"),
            )
        except ValueError as exc:
            await self.reply({"type": "error", "code": "bad_subscription", "detail": str(exc)})
            return
        if targets.missing:
            # All or nothing, and another tenant's id reads exactly like one that does not exist.
            await self.reply({"type": "error", "code": "not_found", "detail": "Unknown ids.", **targets.missing})
            return
        watched = sum(len(m) if m is not None else 1 for m in self.sites.values())
        if watched + len(targets.sites) > settings.WS_LIVE_MAX_SUBSCRIPTIONS:
            await self.reply({"type": "error", "code": "too_many_subscriptions", "detail": "Subscription limit."})
            return
        for site_id, (org_id, meters) in targets.sites.items():
            current = self.sites.get(site_id, set())
            if meters is None or current is None:
                self.sites[site_id] = None
            else:
                self.sites[site_id] = current | meters
            await self.join(fanout.site_group(org_id, site_id))
        await self.reply({"type": "subscribed", **self.describe()})

    async def unsubscribe(self, data: dict) -> None:
        sites, meters = data.get("sites") or [], data.get("meters") or []
        for site_id in list(self.sites):
            if site_id in sites:
                del self.sites[site_id]
            elif self.sites[site_id] is not None:
                self.sites[site_id] -= set(meters)
        await self.reply({"type": "subscribed", **self.describe()})

    def describe(self) -> dict:
        return {
            "sites": sorted(site for site, meters in self.sites.items() if meters is None),
            "meters": sorted(m for meters in self.sites.values() if meters is not None for m in meters),
        }

    async def live_readings(self, message: dict) -> None:
        site_id = message["site_id"]
        if site_id not in self.sites:
            return
        meters = self.sites[site_id]
        if meters is None:
            await self.send(text_data=message["frame"])
            return
        if meters.isdisjoint(message["meter_ids"]):
            return
        readings = [r for r in orjson.loads(message["frame"])["readings"] if r.get("meter_id") in meters]
        await self.reply({"type": "readings", "site_id": site_id, "readings": readings})

    async def live_event(self, message: dict) -> None:
        event = message["event"]
        payload = event.get("payload") or {}
        site_id, meter_id = payload.get("site_id"), payload.get("meter_id")
        if site_id is not None:
            if site_id not in self.sites:
                return
            meters = self.sites[site_id]
            if meters is not None and meter_id is not None and meter_id not in meters:
                return
        await self.reply({"type": "event", **event})

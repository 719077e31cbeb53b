"""The device WebSocket door at /ws/ingest/ (Channels): thin. Frames are decoded by
energy.ingest.frames and stored by energy.ingest.store.reading_batch_ingest (source="ws"); an
open socket is also the device's downlink. Close codes and limits: docs/live.md."""

from __future__ import annotations

import time
import uuid
from collections import deque

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from energy.devices import services as devices
from energy.downlink import services as downlink
from energy.ingest import store
from energy.ingest.frames import FrameError, ack_frame, frame_decode, frame_loads, invalid_frame
from energy.ingest.validation import ReadingsInvalid
from energy.live import fanout
from energy.sockets import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_RATE_LIMITED,
    CLOSE_UNAUTHENTICATED,
    DEVICE_RECHECK_SECONDS,
    AuthWaitMixin,
    json_text,
    scope_header,
)
from joulepoint.audit.middleware import audit_door, remote_addr_of_scope


class IngestConsumer(AuthWaitMixin, AsyncWebsocketConsumer):
    """A meter or gateway streaming readings; also the device's downlink when open."""

    device = None

    async def connect(self) -> None:
        self.tokens = float(settings.WS_INGEST_BURST)
        self.refilled_at = time.monotonic()
        # Times of the latest refused frames: more than WS_INGEST_BURST of them within
        # WS_INGEST_FLOOD_WINDOW_SECONDS close the socket (docs/live.md). Counted in a window rather
        # than in a row, so a flood the refill lets a frame through now and then is still closed.
        self.refusals: deque[float] = deque(maxlen=settings.WS_INGEST_BURST + 1)
        self.checked_at = time.monotonic()
        await self.accept()
        raw_key = scope_header(self.scope, b"x-device-key")
        if raw_key is None:
            self.start_auth_timer()
            return
        await self.authenticate(raw_key)

    async def authenticate(self, raw_key: object) -> bool:
        try:
            device_key = uuid.UUID(str(raw_key).strip())
        except ValueError:
            return await self.refuse("X-Device-Key must be a UUID.")
        device = await database_sync_to_async(devices.device_for_key)(device_key=device_key)
        if device is None:
            return await self.refuse("Unknown or disabled device key.")
        self.device = device
        self.stop_auth_timer()
        self.downlink_group = fanout.device_group(device.device_key)
        await fanout.group_join(self.channel_layer, self.downlink_group, self.channel_name)
        await self.send(text_data=json_text({"type": "ready", "device": self.describe(device)}))
        return True

    @staticmethod
    def describe(device) -> dict:
        kind = "meter" if device.__class__.__name__ == "Meter" else "gateway"
        return {"kind": kind, "id": device.pk, "site_id": device.site_id}

    async def refuse(self, detail: str) -> bool:
        await self.send(text_data=json_text({"type": "error", "code": "unauthenticated", "detail": detail}))
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
            return True
        self.refusals.append(now)
        return False

    def flooding(self) -> bool:
        """More than WS_INGEST_BURST frames refused within the flood window."""
        window = settings.WS_INGEST_FLOOD_WINDOW_SECONDS
        return len(self.refusals) > settings.WS_INGEST_BURST and self.refusals[-1] - self.refusals[0] <= window

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.closing:
            return
        raw = text_data if text_data is not None else bytes_data
        if not self.take_token():
            if self.flooding():
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
                await self.send(
                    text_data=json_text({"type": "error", "code": "unauthenticated", "detail": "auth first"})
                )
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
        device = await database_sync_to_async(devices.device_for_key)(device_key=self.device.device_key)
        if device is None:
            return await self.refuse("The device key was rotated or disabled.")
        self.device = device
        return True

    def audited(self):
        """What this socket writes is the device's, through the "ws" door (docs/audit.md)."""
        return audit_door(source="ws", device=self.device, remote_addr=remote_addr_of_scope(self.scope))

    @database_sync_to_async
    def ingest(self, data: object) -> dict:
        try:
            frame = frame_decode(data, device=self.device)
        except FrameError as exc:
            return exc.as_frame()
        try:
            with self.audited():
                result = store.reading_batch_ingest(device=self.device, items=frame.items, source="ws")
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
            with self.audited():
                command = downlink.device_command_ack(
                    device=self.device, command_id=data.get("id"), ok=status == "acked", result=result
                )
        except downlink.DeviceCommandError as exc:
            return FrameError(exc.code, exc.detail, data.get("id")).as_frame()
        return {"type": "command_status", "id": command.pk, "status": command.status}

    async def reply(self, frame: dict) -> None:
        await self.send(text_data=json_text(frame))

    async def downlink_command(self, message: dict) -> None:
        """A command for this device (energy.services.device_command_deliver)."""
        command = message["command"]
        await self.send(text_data=json_text({"type": "command", **command}))
        await database_sync_to_async(self.command_delivered)(command["id"])

    def command_delivered(self, command_id: int) -> None:
        with self.audited():
            downlink.device_command_mark_delivered(command_id=command_id, channel="ws")

"""Downlink: commands to devices, their delivery over MQTT, sockets or polling, and their status."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from energy.downlink import mqtt
from energy.live import fanout
from energy.models import DeviceCommand, Gateway, Meter
from joulepoint.audit.registry import audited_update
from joulepoint.platform.enqueue import enqueue_on_commit
from joulepoint.platform.timefmt import isoz

logger = logging.getLogger(__name__)

# Registered under the name it had before the downlink package existed: queued messages and beat
# schedules name it.
DELIVER_TASK = "energy.tasks.device_command_deliver"
# `ocpp.<Action>` commands travel as OCPP CALLs over the station's own socket: the OCPP server
# (energy.load.ocpp.server) picks them up while the station is connected, never MQTT or polling.
OCPP_COMMAND_PREFIX = "ocpp."


class DeviceCommandError(Exception):
    """A command cannot move as asked: `code` is not_found (not this device's) or conflict."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


def device_command_as_message(command: DeviceCommand) -> dict:
    """What a device receives, over MQTT, WebSocket or HTTP polling alike."""
    return {
        "id": command.pk,
        "name": command.name,
        "payload": command.payload,
        "created_at": isoz(command.created_at),
        "expires_at": isoz(command.expires_at),
    }


@transaction.atomic
def device_command_send(
    *, device: Meter | Gateway, name: str, payload: dict | None = None, ttl_seconds: int | None = None
) -> DeviceCommand:
    """Queue a command for a meter or gateway (of the device's organization) and start delivery.

    Delivery runs after commit in a Celery task (`DELIVER_TASK`): over
    MQTT when MQTT_URL is set, and to the device's open ingest WebSocket if any; a device with
    neither picks it up by polling `GET /api/energy/devices/commands/`. The command expires
    after `ttl_seconds` (DEVICE_COMMAND_TTL_SECONDS) unless acknowledged."""
    if not name or len(name) > 100:
        raise ValueError("a command name is 1 to 100 characters")
    ttl = settings.DEVICE_COMMAND_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    if ttl <= 0:
        raise ValueError("ttl_seconds must be positive")
    target = {"meter": device} if isinstance(device, Meter) else {"gateway": device}
    command = DeviceCommand.objects.create(
        organization_id=device.organization_id,
        name=name,
        payload=payload or {},
        expires_at=timezone.now() + timedelta(seconds=ttl),
        **target,
    )
    enqueue_on_commit(DELIVER_TASK, command.pk)
    return command


def _commands_of(device: Meter | Gateway):
    field_name = "meter" if isinstance(device, Meter) else "gateway"
    return DeviceCommand.objects.for_org(device.organization_id).filter(**{field_name: device})


def device_command_deliver(*, command_id: int) -> DeviceCommand | None:
    """Push a pending command to the device: MQTT (marks it delivered once the broker has it)
    and the device's open ingest sockets (the socket marks it delivered when it writes it).
    Safe to run twice: a command that is no longer pending is left alone."""
    command = DeviceCommand.objects.select_related("meter", "gateway").filter(pk=command_id).first()
    if (
        command is None
        or command.status != DeviceCommand.Status.PENDING
        or command.name.startswith(OCPP_COMMAND_PREFIX)
    ):
        return command
    if command.expires_at <= timezone.now():
        device_commands_expire()
        return command
    device = command.device
    message = device_command_as_message(command)
    fanout.group_send(fanout.device_group(device.device_key), {"type": "downlink.command", "command": message})
    if settings.MQTT_URL:
        for topic_name in mqtt.device_topics(device, "commands"):
            mqtt.mqtt_publish(topic_name=topic_name, payload=message, qos=1)
        device_command_mark_delivered(command_id=command.pk, channel=DeviceCommand.Channel.MQTT)
    command.refresh_from_db()
    return command


def device_command_mark_delivered(*, command_id: int, channel: str) -> bool:
    """pending → delivered, if still pending and not expired; True when this call moved it."""
    now = timezone.now()
    pending = DeviceCommand.objects.filter(pk=command_id, status=DeviceCommand.Status.PENDING, expires_at__gt=now)
    return audited_update(pending, status=DeviceCommand.Status.DELIVERED, channel=channel, delivered_at=now) == 1


def device_commands_poll(*, device: Meter | Gateway, limit: int = 50) -> list[DeviceCommand]:
    """The device's open commands (pending or delivered, not expired), oldest first; pending
    ones become delivered over HTTP. Delivered ones are returned again until acknowledged, so a
    device that lost a poll answer still gets them."""
    now = timezone.now()
    open_commands = (
        _commands_of(device)
        .filter(status__in=[DeviceCommand.Status.PENDING, DeviceCommand.Status.DELIVERED], expires_at__gt=now)
        .exclude(name__startswith=OCPP_COMMAND_PREFIX)
    )
    commands = list(open_commands.order_by("created_at", "pk")[:limit])
    pending = [c.pk for c in commands if c.status == DeviceCommand.Status.PENDING]
    if pending:
        audited_update(
            DeviceCommand.objects.filter(pk__in=pending, status=DeviceCommand.Status.PENDING),
            status=DeviceCommand.Status.DELIVERED,
            channel=DeviceCommand.Channel.HTTP,
            delivered_at=now,
        )
        for command in commands:
            if command.pk in pending:
                command.status, command.channel, command.delivered_at = "delivered", "http", now
    return commands


def device_command_ack(*, device: Meter | Gateway, command_id: object, ok: bool, result: dict | None = None):
    """The device's answer: delivered (or still pending, when it came over MQTT first) → acked or
    failed. Only the command's own device may answer (anything else is not_found); an answer to a
    final command is a conflict, except the same answer again, which is accepted (idempotent).
    An answer after `expires_at` expires the command (committed) and is a conflict."""
    if isinstance(command_id, bool) or not isinstance(command_id, int):
        raise DeviceCommandError("not_found", "Unknown command id.")
    with transaction.atomic():
        command, error = _command_answer(device=device, command_id=command_id, ok=ok, result=result)
    if error is not None:
        raise error
    return command


def _command_answer(*, device, command_id: int, ok: bool, result: dict | None):
    command = _commands_of(device).select_for_update().filter(pk=command_id).first()
    if command is None:
        return None, DeviceCommandError("not_found", f"Command {command_id} is not a command of this device.")
    target = DeviceCommand.Status.ACKED if ok else DeviceCommand.Status.FAILED
    now = timezone.now()
    if command.status in DeviceCommand.FINAL:
        if command.status == target:
            return command, None
        return command, DeviceCommandError("conflict", f"Command {command_id} is already {command.status}.")
    if command.expires_at <= now:
        command.status = DeviceCommand.Status.EXPIRED
        command.completed_at = now
        command.save(update_fields=["status", "completed_at"])
        return command, DeviceCommandError("conflict", f"Command {command_id} expired at {command.expires_at}.")
    command.status = target
    command.result = result or {}
    command.completed_at = now
    if command.delivered_at is None:
        command.delivered_at = now
    command.save(update_fields=["status", "result", "completed_at", "delivered_at"])
    return command, None


def device_commands_expire(*, now: datetime | None = None) -> int:
    """pending/delivered commands past `expires_at` → expired; returns how many moved."""
    now = now or timezone.now()
    due = DeviceCommand.objects.filter(
        status__in=[DeviceCommand.Status.PENDING, DeviceCommand.Status.DELIVERED], expires_at__lte=now
    )
    return audited_update(due, status=DeviceCommand.Status.EXPIRED, completed_at=now)

"""Commands out over OCPP: the pending `ocpp.<Action>` device commands of connected stations
and the recording of their CALLRESULTs (docs/load.md, "OCPP"; the contract with the allocator is
that a command's payload is the OCPP request body as it goes on the wire)."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from energy.downlink import services as downlink
from energy.models import DeviceCommand

PREFIX = downlink.OCPP_COMMAND_PREFIX
# How many commands one poll takes; the rest wait for the next poll.
POLL_BATCH = 500


@dataclass(frozen=True)
class OutgoingCall:
    command_id: int
    meter_id: int
    action: str
    payload: dict


def ocpp_commands_pending(*, meter_ids: set[int]) -> list[OutgoingCall]:
    """Pending, unexpired `ocpp.*` commands of these meters (the stations connected to this
    process), oldest first. Commands of other meters are left for the process that holds them."""
    if not meter_ids:
        return []
    rows = (
        DeviceCommand.objects.filter(
            status=DeviceCommand.Status.PENDING,
            name__startswith=PREFIX,
            meter_id__isnull=False,
            expires_at__gt=timezone.now(),
        )
        .order_by("created_at", "pk")
        .values_list("pk", "meter_id", "name", "payload")[:POLL_BATCH]
    )
    return [
        OutgoingCall(pk, meter_id, name[len(PREFIX) :], payload)
        for pk, meter_id, name, payload in rows
        if meter_id in meter_ids
    ]


def ocpp_command_take(*, command_id: int) -> bool:
    """pending → delivered over OCPP; False when another process took it first or it expired."""
    return downlink.device_command_mark_delivered(command_id=command_id, channel=DeviceCommand.Channel.OCPP)


def result_accepted(result: dict) -> bool:
    """A CALLRESULT is a success unless its `status` says otherwise (Rejected, NotSupported, …);
    answers without a status (GetVariables, …) are successes."""
    status = result.get("status")
    return status is None or status in {"Accepted", "Scheduled"}


def ocpp_command_answered(*, command_id: int, result: dict, ok: bool | None = None) -> DeviceCommand | None:
    """Record the station's answer (a CALLRESULT body, or {"error": …} for a CALLERROR or a
    timeout): acked when accepted, failed otherwise. None when the command is gone or final."""
    command = DeviceCommand.objects.select_related("meter").filter(pk=command_id).first()
    if command is None or command.meter is None:
        return None
    accepted = result_accepted(result) if ok is None else ok
    try:
        return downlink.device_command_ack(device=command.meter, command_id=command_id, ok=accepted, result=result)
    except downlink.DeviceCommandError:
        return None  # expired meanwhile, or answered already

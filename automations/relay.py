"""Relay commands: approval by a person (or a token with relay:approve), dispatch of an approved
command to the device, expiry of unapproved ones."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from automations.models import RelayCommand
from energy.downlink import services as downlink
from joulepoint.audit.registry import audited_update
from joulepoint.tenancy.models import Membership
from joulepoint.tenancy.selectors import user_has_role


class NotAllowed(Exception):
    pass


def relay_command_may_decide(*, command: RelayCommand, user, scopes: set[str]) -> bool:
    """A token with relay:approve, or a user holding the command's approver role (or admin)."""
    if "relay:approve" in scopes:
        return True
    if user is None:
        return False
    roles = {command.approver_role, Membership.Role.ADMIN}
    return user_has_role(user=user, organization_id=command.organization_id, roles=roles)


@transaction.atomic
def relay_command_decide(
    *, command: RelayCommand, approve: bool, user=None, application=None, note: str = ""
) -> RelayCommand:
    """Approve or reject a command awaiting approval (who and when are recorded). An approved
    command goes to the device through the downlink service at once."""
    command = RelayCommand.objects.select_for_update().get(pk=command.pk)
    now = timezone.now()
    if command.status == RelayCommand.Status.AWAITING_APPROVAL and command.expires_at <= now:
        command.status = RelayCommand.Status.EXPIRED
        command.save(update_fields=["status", "updated_at"])
    if command.status != RelayCommand.Status.AWAITING_APPROVAL:
        raise NotAllowed(f"the command is {command.status}, not awaiting approval")
    command.status = RelayCommand.Status.APPROVED if approve else RelayCommand.Status.REJECTED
    command.decided_at = now
    command.decided_by = user
    command.decided_by_application = application
    command.decision_note = note[:500]
    command.save()
    if approve:
        relay_command_dispatch(command=command)
    return command


def relay_command_dispatch(*, command: RelayCommand) -> RelayCommand:
    """Hand an approved command to the energy app's device downlink (MQTT, open socket or HTTP
    polling); the downlink command's id and status are recorded on the relay command."""
    try:
        sent = downlink.device_command_send(
            device=command.meter,
            name=f"relay.{command.command}",
            payload={"action": command.command, "relay_command_id": command.pk},
        )
    except ValueError as exc:
        command.status = RelayCommand.Status.FAILED
        command.downlink_status = f"error: {exc}"[:30]
        command.save(update_fields=["status", "downlink_status", "updated_at"])
        return command
    command.status = RelayCommand.Status.SENT
    command.downlink_id = str(sent.pk)
    command.downlink_status = sent.status
    command.save(update_fields=["status", "downlink_id", "downlink_status", "updated_at"])
    return command


def relay_commands_expire(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    due = RelayCommand.objects.filter(status=RelayCommand.Status.AWAITING_APPROVAL, expires_at__lte=now)
    return audited_update(due, status=RelayCommand.Status.EXPIRED, updated_at=now)

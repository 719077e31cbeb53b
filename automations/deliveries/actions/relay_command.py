"""`relay_command`: create a relay command awaiting approval (automations.relay)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from automations.deliveries.actions.base import ConfigError, Handler, Outcome, context_meter, meter_of_org, unknown_keys
from automations.models import ActionType, Delivery, RelayCommand
from joulepoint.tenancy.models import Membership


class RelayCommandHandler(Handler):
    """Creates a RelayCommand awaiting approval; nothing reaches the device from here."""

    type = ActionType.RELAY_COMMAND

    def validate(self, config: dict, *, organization) -> dict:
        errors: dict[str, str] = {}
        unknown_keys(errors, config, {"meter_id", "command", "approver_role", "expires_in_seconds"})
        meter_id = meter_of_org(errors, config.get("meter_id"), organization)
        command = config.get("command")
        if command not in RelayCommand.Command.values:
            errors["command"] = f"must be one of {', '.join(RelayCommand.Command.values)}"
        role = config.get("approver_role", Membership.Role.APPROVER)
        if role not in (Membership.Role.APPROVER, Membership.Role.ADMIN):
            errors["approver_role"] = "must be 'approver' or 'admin'"
        expires = config.get("expires_in_seconds", settings.AUTOMATIONS_RELAY_COMMAND_EXPIRY_SECONDS)
        if isinstance(expires, bool) or not isinstance(expires, int) or not 60 <= expires <= 7 * 86400:
            errors["expires_in_seconds"] = "must be whole seconds between 60 and 604800"
        if errors:
            raise ConfigError(errors)
        return {"meter_id": meter_id, "command": command, "approver_role": role, "expires_in_seconds": expires}

    def render(self, config: dict, context: dict) -> dict:
        meter_id = config.get("meter_id") or context.get("meter_id")
        return {
            "meter_id": meter_id,
            "command": config["command"],
            "approver_role": config["approver_role"],
            "expires_in_seconds": config["expires_in_seconds"],
        }

    def execute(self, delivery: Delivery) -> Outcome:
        meter = context_meter(delivery, delivery.payload.get("meter_id"))
        if meter is None:
            return Outcome(ok=False, retry=False, error="the command's meter does not exist in this organization")
        command, _ = RelayCommand.objects.get_or_create(
            delivery=delivery,
            defaults={
                "organization_id": delivery.organization_id,
                "meter": meter,
                "command": delivery.payload["command"],
                "approver_role": delivery.payload["approver_role"],
                "rule_id": delivery.rule_id,
                "reason": f"rule {delivery.rule_id} on {delivery.event_key}",
                "expires_at": timezone.now() + timedelta(seconds=delivery.payload["expires_in_seconds"]),
            },
        )
        return Outcome(ok=True, result={"relay_command_id": command.pk, "status": command.status})

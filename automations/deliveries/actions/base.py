"""What every action type shares: the Handler interface, the Outcome of an attempt, config errors
and the config/context helpers.

A handler validates its config, renders its payload (dry run and delivery creation, no side
effect) and executes a delivery (side effect, in a worker). `execute` returns an Outcome and never
raises for an expected failure; the delivery state machine (automations.deliveries.services)
decides retry, dead or success from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from automations import templating
from automations.models import Delivery
from energy.models import Meter


class ConfigError(ValueError):
    """Invalid action config; `errors` maps a config key to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class Outcome:
    ok: bool
    retry: bool = True  # for a failure: try again later (False = dead now)
    waiting: bool = False  # the service this action needs is not installed yet
    response_code: int | None = None
    latency_ms: float | None = None
    error: str = ""
    result: dict = field(default_factory=dict)


def config_template(errors: dict, config: dict, key: str, *, required: bool = False, default: str = "") -> str:
    value = config.get(key, default)
    if value in (None, "") and required:
        errors[key] = "this template is required"
        return ""
    if not isinstance(value, str):
        errors[key] = "must be a string template"
        return ""
    try:
        templating.check(value)
    except templating.TemplateError as exc:
        errors[key] = f"invalid template: {exc}"
    return value


def unknown_keys(errors: dict, config: dict, allowed: set[str]) -> None:
    for key in sorted(set(config) - allowed):
        errors[key] = "unknown config key"


def meter_of_org(errors: dict, value: Any, organization, key: str = "meter_id") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        errors[key] = "must be a meter id (a positive integer) or null for the event's meter"
        return None
    if not Meter.objects.for_org(organization).filter(pk=value).exists():
        errors[key] = f"meter {value} does not exist"
        return None
    return value


def context_meter(delivery: Delivery, configured: int | None) -> Meter | None:
    meter_id = configured if configured is not None else delivery.context.get("meter_id")
    if not isinstance(meter_id, int):
        return None
    return Meter.objects.for_org(delivery.organization_id).filter(pk=meter_id).first()


def event_time(delivery: Delivery):
    for key in ("timestamp", "occurred_at"):
        value = delivery.context.get(key)
        if isinstance(value, str):
            parsed = parse_datetime(value)
            if parsed is not None:
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.UTC)
    return delivery.created_at or timezone.now()


class Handler:
    type: str

    def validate(self, config: dict, *, organization) -> dict:
        raise NotImplementedError

    def render(self, config: dict, context: dict) -> dict:
        raise NotImplementedError

    def endpoint(self, config: dict) -> str:
        return ""

    def execute(self, delivery: Delivery) -> Outcome:
        raise NotImplementedError


def template_context_from_delivery(delivery: Delivery) -> dict:
    """The template context a delivery was rendered with, rebuilt from its stored event."""
    rule = {"id": delivery.rule_id, "name": delivery.rule.name if delivery.rule else ""}
    return templating.template_context(delivery.context, rule)

"""What rules and templates see of an event: the JsonLogic `event` object per sub-event, and the
template context built from it (or from a stored delivery)."""

from __future__ import annotations

from automations.models import Delivery, Rule
from joulepoint.events.types import DATA_INGESTED, Event


def event_contexts(event: Event) -> list[tuple[str, dict]]:
    """(sub-event id, the JsonLogic `event` object) for each thing a rule judges: each reading of a
    `data.ingested` batch, or the event itself."""
    occurred_at = event.occurred_at.isoformat().replace("+00:00", "Z")
    payload = event.payload
    if event.key == DATA_INGESTED:
        return [
            (
                f"{event.id}:{index}",
                {**reading, "key": event.key, "occurred_at": occurred_at},
            )
            for index, reading in enumerate(payload.get("readings", []))
        ]
    context = {
        **payload,
        "key": event.key,
        "meter_id": payload.get("meter_id"),
        "site_id": payload.get("site_id"),
        "occurred_at": occurred_at,
    }
    return [(str(event.id), context)]


def rule_ref(rule: Rule) -> dict:
    return {"id": rule.pk, "name": rule.name}


def template_context(event: dict, rule: dict | None = None) -> dict:
    """Templates see the event's fields at the top level (`{meter_id}`) and as `{event.x}`."""
    return {**event, "event": event, "rule": rule or {}}


def template_context_from_delivery(delivery: Delivery) -> dict:
    rule = {"id": delivery.rule_id, "name": delivery.rule.name if delivery.rule else ""}
    return template_context(delivery.context, rule)

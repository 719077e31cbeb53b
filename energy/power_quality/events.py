"""The `pq.event` and `protection.event` announcements: their payloads (what rules and
dashboards see) and the batch queue detection publishes in one outbox INSERT."""

from __future__ import annotations

from datetime import datetime

from energy.events import PQ_EVENT, PROTECTION_EVENT
from energy.power_quality.models import PQEvent, ProtectionEvent
from joulepoint.platform.timefmt import isoz


def pq_event_payload(event: PQEvent, *, action: str, site_id: int) -> dict:
    """What automations and dashboards get with `pq.event` (JsonLogic: `event.kind` …)."""
    return {
        "action": action,
        "event_id": event.pk,
        "meter_id": event.meter_id,
        "site_id": site_id,
        "kind": event.kind,
        "start": isoz(event.start),
        "end": isoz(event.end),
        "is_open": event.end is None,
        "duration_s": event.duration_s,
        "duration_class": event.duration_class or None,
        "ieee_category": event.ieee_category or None,
        "phases": event.phases,
        "worst_value": event.worst_value,
        "unit": event.unit,
        "threshold": event.threshold,
        "method": event.method or None,
    }


Outbox = list[tuple[int, str, dict, datetime]]


def announce_pq(event: PQEvent, action: str, *, site_id: int, outbox: Outbox) -> None:
    """Queue a `pq.event`; readings_detect publishes the batch's queue in one outbox INSERT."""
    occurred_at = event.end if action == "closed" and event.end is not None else event.start
    outbox.append(
        (event.organization_id, PQ_EVENT, pq_event_payload(event, action=action, site_id=site_id), occurred_at)
    )


def protection_event_payload(event: ProtectionEvent, *, action: str, site_id: int, breaker_state: str) -> dict:
    return {
        "action": action,
        "event_id": event.pk,
        "meter_id": event.meter_id,
        "site_id": site_id,
        "kind": event.kind,
        "timestamp": isoz(event.occurred_at),
        "earth_leakage_ma": event.earth_leakage_ma,
        "details": event.details,
        "origin": event.origin,
        "breaker_state": breaker_state,
    }


def announce_protection(
    event: ProtectionEvent, action: str, *, site_id: int, breaker_state: str, outbox: Outbox
) -> None:
    payload = protection_event_payload(event, action=action, site_id=site_id, breaker_state=breaker_state)
    outbox.append((event.organization_id, PROTECTION_EVENT, payload, event.occurred_at))

"""Protection: breaker position and earth leakage derived from readings (reconciled like PQ
events when readings arrive late), and protection events that devices post themselves."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction

from energy.models import Meter, Reading
from energy.power_quality import rules as pq
from energy.power_quality.events import Outbox, announce_protection
from energy.power_quality.models import BreakerState, MeterPQState, ProtectionEvent
from joulepoint.events import publish_many

if TYPE_CHECKING:  # detection calls in here with its context; no import at run time
    from energy.power_quality.detection import MeterContext

BREAKER_KINDS = (ProtectionEvent.Kind.TRIP, ProtectionEvent.Kind.BREAKER_OPEN, ProtectionEvent.Kind.BREAKER_CLOSED)
# The breaker position each protection event leaves behind.
BREAKER_AFTER = {
    ProtectionEvent.Kind.TRIP: BreakerState.OPEN,
    ProtectionEvent.Kind.BREAKER_OPEN: BreakerState.OPEN,
    ProtectionEvent.Kind.BREAKER_CLOSED: BreakerState.CLOSED,
}


def derived_protection_create(context: MeterContext, transitions: list[pq.Transition]) -> list[ProtectionEvent]:
    """Store protection events derived from readings in one INSERT and queue their announcements."""
    meter = context.meter
    events = [
        ProtectionEvent(
            organization_id=meter.organization_id,
            meter_id=meter.pk,
            kind=transition.kind,
            occurred_at=transition.ts,
            earth_leakage_ma=transition.earth_leakage_ma,
            details={"limit_ma": context.limits.earth_leakage_ma} if transition.kind == pq.EARTH_LEAKAGE else {},
            origin=ProtectionEvent.Origin.READING,
        )
        for transition in transitions
    ]
    ProtectionEvent.objects.bulk_create(events)
    for event in events:
        announce_protection(
            event, "recorded", site_id=meter.site_id, breaker_state=context.state.breaker_state, outbox=context.outbox
        )
    return events


def _anchor(meter_id: int, before: datetime, key: str) -> object | None:
    """The value of `key` in the latest reading before `before` that carries it."""
    row = (
        Reading.objects.filter(meter_id=meter_id, ts__lt=before, extra__has_key=key)
        .order_by("-ts")
        .values_list("extra", flat=True)
        .first()
    )
    return None if row is None else row.get(key)


def reconcile_protection(context: MeterContext, window: list[pq.Sample], t_min: datetime) -> None:
    """Re-derive reading-origin protection events at or after t_min; a transition depends only
    on a reading and the previous one carrying the same field (the anchor before t_min)."""
    state, meter = context.state, context.meter
    carries_breaker = any(s.breaker_state for s in window)
    carries_leakage = any(s.earth_leakage_ma is not None for s in window)
    derived: list[pq.Transition] = []
    kinds: list[str] = []
    if carries_breaker or state.reading_breaker != BreakerState.UNKNOWN:
        previous = "unknown"
        if state.reading_breaker != BreakerState.UNKNOWN:
            anchor = _anchor(meter.pk, t_min, "breaker_state")
            previous = pq.physical_breaker(anchor) if isinstance(anchor, str) else "unknown"
        events, last = pq.breaker_transitions(window, previous)
        if carries_breaker:
            state.reading_breaker = last
        derived += events
        kinds += list(BREAKER_KINDS)
    if carries_leakage or state.leakage_over is not None:
        previous_over = False
        if state.leakage_over is not None:
            anchor = _anchor(meter.pk, t_min, "earth_leakage_ma")
            previous_over = isinstance(anchor, (int, float)) and pq.leakage_over(
                anchor, context.limits.earth_leakage_ma
            )
        events, over = pq.leakage_transitions(window, context.limits.earth_leakage_ma, previous_over)
        if carries_leakage:
            state.leakage_over = over
        derived += events
        kinds.append(ProtectionEvent.Kind.EARTH_LEAKAGE)
    if not kinds:
        return
    old = {
        (event.kind, event.occurred_at): event
        for event in ProtectionEvent.objects.filter(
            meter_id=meter.pk, origin=ProtectionEvent.Origin.READING, occurred_at__gte=t_min, kind__in=kinds
        )
    }
    new = {(t.kind, t.ts): t for t in derived}
    for key, event in old.items():
        if key not in new:
            announce_protection(
                event,
                "retracted",
                site_id=meter.site_id,
                breaker_state=state.breaker_state,
                outbox=context.outbox,
            )
            event.delete()
    missing = [transition for key, transition in new.items() if key not in old]
    if missing:
        derived_protection_create(context, missing)
    for key, transition in new.items():
        event = old.get(key)
        if event is None:
            continue
        if event.earth_leakage_ma != transition.earth_leakage_ma:
            event.earth_leakage_ma = transition.earth_leakage_ma
            event.save(update_fields=["earth_leakage_ma"])


def breaker_set(state: MeterPQState, ts: datetime, position: str, origin: str) -> None:
    """Move the current breaker position when `position` is a change observed at or after the
    moment the current one was established (`breaker_state_at`). A confirmation changes
    nothing, so the state row is written only when the breaker moves. Callers make sure no
    later observation exists (the latest-timestamped observation wins)."""
    if position == state.breaker_state:
        return
    if state.breaker_state_at is None or ts >= state.breaker_state_at:
        state.breaker_state = position
        state.breaker_state_at = ts
        state.breaker_state_origin = origin


def breaker_observe_readings(state: MeterPQState, samples: list[pq.Sample]) -> None:
    """The position in the newest of these readings (samples in timestamp order, none stored
    after them), dated from the first reading of its final run."""
    newest = next((s for s in reversed(samples) if s.breaker_state), None)
    if newest is None:
        return
    position = pq.physical_breaker(newest.breaker_state)
    if position == state.breaker_state:
        return
    run_start = newest.ts
    for sample in reversed(samples):
        if sample.breaker_state is None:
            continue
        if pq.physical_breaker(sample.breaker_state) != position:
            break
        run_start = sample.ts
    if state.breaker_state_at is not None and newest.ts >= state.breaker_state_at > run_start:
        run_start = newest.ts  # a later posted event interrupted the run: date it after that
    breaker_set(state, run_start, position, ProtectionEvent.Origin.READING)


# Device-posted protection events -----------------------------------------------------------


@transaction.atomic
def protection_event_record(
    *,
    meter: Meter,
    kind: str,
    occurred_at: datetime,
    earth_leakage_ma: float | None = None,
    details: dict | None = None,
    source: str,
) -> tuple[ProtectionEvent, bool]:
    """Store a protection event a device posted and announce it; a re-sent one (same meter,
    kind and timestamp) is returned as a duplicate with nothing written.

    Trips and breaker events move the meter's current breaker position when they are its
    latest observation. Tenant: the meter's organization.
    """
    # Same lock as detection: the breaker position is read-modify-written.
    Meter.objects.select_for_update().filter(pk=meter.pk).values_list("pk", flat=True).first()
    existing = ProtectionEvent.objects.filter(
        meter=meter, kind=kind, occurred_at=occurred_at, origin=ProtectionEvent.Origin.DEVICE
    ).first()
    if existing is not None:
        return existing, False
    event = ProtectionEvent.objects.create(
        organization_id=meter.organization_id,
        meter=meter,
        kind=kind,
        occurred_at=occurred_at,
        earth_leakage_ma=earth_leakage_ma,
        details=details or {},
        origin=ProtectionEvent.Origin.DEVICE,
    )
    state, _ = MeterPQState.objects.get_or_create(meter=meter, defaults={"organization_id": meter.organization_id})
    # A reading that observed the breaker after this event outranks it (latest wins).
    later_reading = Reading.objects.filter(meter=meter, ts__gt=occurred_at, extra__has_key="breaker_state").exists()
    if kind in BREAKER_AFTER and not later_reading:
        breaker_set(state, occurred_at, BREAKER_AFTER[kind], ProtectionEvent.Origin.DEVICE)
        state.save(update_fields=["breaker_state", "breaker_state_at", "breaker_state_origin"])
    outbox: Outbox = []
    announce_protection(event, "recorded", site_id=meter.site_id, breaker_state=state.breaker_state, outbox=outbox)
    publish_many(outbox, source=source)
    return event, True

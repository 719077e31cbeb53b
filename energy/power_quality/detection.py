"""Power quality and protection detection in the ingest path (the rules are in `rules`, their
thresholds in `config`, reading-derived protection in `protection`, announcements in `events`).

Detection runs inside `reading_batch_ingest`'s transaction on the readings that call stored,
holding each affected meter's row lock (SELECT … FOR UPDATE, taken in meter-id order so
gateway batches never deadlock), so concurrent batches of one meter are evaluated one after
the other and each sees every reading committed before it.

Arrival order does not change the result. Events are a function of the meter's readings in
timestamp order. A batch with no other stored reading of the meter at or after its earliest
one extends the open events incrementally; that is the common case, and it
reads no readings back. A batch with an earlier reading re-evaluates the affected window from
stored readings (for each rule, from the start of the event that spanned the earliest new
reading, else from that reading) and reconciles the stored events with the result: changed
events are updated (`updated`), vanished ones deleted (`retracted`), new ones created.
Every opening and closing is announced once, through the outbox (must not be lost).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ObjectDoesNotExist
from django.db import connection
from django.db.models import Case, Count, DateTimeField, OuterRef, Q, Subquery, Value, When

from energy.models import Meter, Reading
from energy.power_quality import rules as pq
from energy.power_quality.config import CONFIG_DEFAULTS, CONFIG_FIELDS, thresholds_for, thresholds_from
from energy.power_quality.events import Outbox, announce_pq
from energy.power_quality.models import MeterPQState, PQConfig, PQEvent
from energy.power_quality.protection import breaker_observe_readings, derived_protection_create, reconcile_protection
from joulepoint.events import publish_many
from joulepoint.platform.db import prepared_cursor


@dataclass
class MeterContext:
    meter: Meter
    limits: pq.Thresholds
    state: MeterPQState
    outbox: Outbox


def _evaluated(sample: pq.Sample) -> bool:
    return sample.carries_pq or sample.carries_protection


def detection_meters(samples: Mapping[tuple[int, datetime], pq.Sample]) -> list[int]:
    """The meters whose readings `readings_detect` would evaluate, of samples keyed by (meter
    id, timestamp): the ones to lock, in lock order."""
    return sorted({meter_id for (meter_id, _), sample in samples.items() if _evaluated(sample)})


def meters_lock_sql(meter_ids: str) -> str:
    """PostgreSQL: the SELECT that takes the detection lock of the meters in the array
    parameter `meter_ids` (an SQL expression), in id order, for the ingest INSERT to take it
    in its own statement (one round trip fewer per batch than a statement of its own)."""
    return f"SELECT id FROM {Meter._meta.db_table} WHERE id = ANY({meter_ids}) ORDER BY id FOR UPDATE"  # noqa: S608


def readings_detect(*, samples_by_meter: dict[int, list[pq.Sample]], source: str) -> None:
    """Evaluate power quality and protection rules on readings just stored by the caller.

    Must run inside the caller's transaction (readings_store), after the INSERT that took the
    row locks of these meters (`meters_lock_sql` over `detection_meters`), with only the
    readings that call stored (duplicates were evaluated when first stored). Writes events,
    announcements and the meters' detection state. Tenant: every meter's own organization
    (events carry it).
    """
    relevant = {
        meter_id: sorted(filter(_evaluated, samples), key=lambda s: s.ts)
        for meter_id, samples in samples_by_meter.items()
    }
    relevant = {meter_id: samples for meter_id, samples in relevant.items() if samples}
    if not relevant:
        return
    meter_ids = sorted(relevant)
    earliest = {meter_id: samples[0].ts for meter_id, samples in relevant.items()}
    # This batch's own stored readings at or after its earliest relevant one, per meter.
    own_since = {
        meter_id: sum(1 for s in samples_by_meter[meter_id] if s.ts >= earliest[meter_id]) for meter_id in meter_ids
    }
    outbox: Outbox = []
    # The lock (taken by the caller's INSERT) serializes detection per meter across processes;
    # id order avoids deadlocks. It is taken by an earlier statement than the reads below: in
    # READ COMMITTED a statement sees the snapshot taken when it started, so rows the previous
    # lock holder committed (its readings, a first MeterPQState, closed events) are only visible
    # to statements issued after the lock is granted.
    for meter_id in _quiet_meters(relevant, earliest, own_since):
        del relevant[meter_id]
    if not relevant:
        return
    meter_ids = sorted(relevant)
    earliest = {meter_id: earliest[meter_id] for meter_id in meter_ids}
    # One query for each meter's configuration, state and stored readings from the batch's
    # earliest reading on (counted on the (meter, ts) index): if that is more than the batch
    # stored itself, some reading came later than this one and the window is re-evaluated.
    since = Case(
        *(When(pk=meter_id, then=Value(ts)) for meter_id, ts in earliest.items()), output_field=DateTimeField()
    )
    stored_since = (
        Reading.objects.filter(meter_id=OuterRef("pk"), ts__gte=OuterRef("pq_since"))
        .order_by()
        .values("meter_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    meters = list(
        Meter.objects.select_related("pq_config", "pq_state")
        .filter(pk__in=meter_ids)
        .annotate(pq_since=since, pq_stored_since=Subquery(stored_since))
        .order_by("pk")
    )
    open_events: dict[int, dict[str, PQEvent]] = {}
    known = [m.pk for m in meters if getattr(_related(m, "pq_state"), "open_event_count", 0)]
    if known:
        for event in PQEvent.objects.filter(meter_id__in=known, end__isnull=True):
            open_events.setdefault(event.meter_id, {})[event.kind] = event
    for meter in meters:
        state = _related(meter, "pq_state")
        if state is None:
            state = MeterPQState(meter=meter, organization_id=meter.organization_id)
        before = _state_key(state)
        context = MeterContext(meter, thresholds_for(meter, _related(meter, "pq_config")), state, outbox)
        samples = relevant[meter.pk]
        if (meter.pq_stored_since or 0) <= own_since[meter.pk]:
            # In order: this batch's newest breaker reading is the meter's newest. Observed
            # before the rules run, so announcements report the position after this batch.
            breaker_observe_readings(state, samples)
            _detect_in_order(context, samples, open_events.get(meter.pk, {}))
        else:
            _detect_late(context, samples)
        if state.pk is None or _state_key(state) != before:
            state.save()
    if outbox:
        publish_many(outbox, source=source)


def _quiet_sql(meters: int) -> str:
    """Per meter: its effective-configuration inputs, open-event count, breaker and leakage state
    and the count of its stored readings at or after a timestamp; parameters (meter id, meter
    id, timestamp) per meter. Built from the models' names.

    The counts are a UNION of one small SELECT per meter, joined once to the meter, state and
    configuration tables: a UNION of the whole joined SELECT per meter cost PostgreSQL several
    times the planning for a 20-meter gateway batch.
    """
    meter, state, config, reading = (m._meta for m in (Meter, MeterPQState, PQConfig, Reading))
    config_columns = ", ".join(f"c.{config.get_field(name).column}" for name in CONFIG_FIELDS)
    counts = " UNION ALL ".join(
        [
            "SELECT %s AS meter_id, "  # noqa: S608
            f"(SELECT COUNT(*) FROM {reading.db_table} r WHERE r.meter_id = %s AND r.ts >= %s) AS stored"
        ]
        * meters
    )
    return (
        "SELECT m.id, m.nominal_voltage, m.phases, s.open_event_count, "  # noqa: S608
        "s.reading_breaker, s.breaker_state, s.leakage_over, n.stored, "
        f"c.id, {config_columns} "
        f"FROM ({counts}) n JOIN {meter.db_table} m ON m.id = n.meter_id "
        f"LEFT JOIN {state.db_table} s ON s.meter_id = m.id "
        f"LEFT JOIN {config.db_table} c ON c.meter_id = m.id"
    )


def _quiet_meters(
    relevant: dict[int, list[pq.Sample]], earliest: dict[int, datetime], own_since: dict[int, int]
) -> set[int]:
    """The meters on which this batch changes nothing: the most common batch by far, normal
    readings arriving in order on a meter with no open event, whose breaker and earth leakage
    stay where they were.

    Decided with one plain statement (under the caller's lock) instead of the full detection
    query, whose ORM compilation and planning cost several milliseconds per ingest request.
    A meter without a detection state row yet is never quiet: the full path writes the row.
    """
    sql = _quiet_sql(len(relevant))
    params: list = []
    for meter_id in relevant:
        params += [meter_id, meter_id, connection.ops.adapt_datetimefield_value(earliest[meter_id])]
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    quiet: set[int] = set()
    for row in rows:
        meter_id, nominal_voltage, phases, open_event_count, reading_breaker, breaker_state, leakage_was_over = row[:7]
        stored_since, config_id, config = row[7], row[8], row[9:]
        if open_event_count != 0 or stored_since > own_since[meter_id]:
            continue  # no state yet (None), an event to continue, or a later reading to reconcile with
        values = dict(zip(CONFIG_FIELDS, config, strict=True)) if config_id is not None else dict(CONFIG_DEFAULTS)
        limits = thresholds_from(nominal_voltage, phases, values)
        samples = relevant[meter_id]
        # The breaker stays in the position both the readings and the meter's state already say.
        if any(
            s.breaker_state is not None
            and not (pq.physical_breaker(s.breaker_state) == reading_breaker == breaker_state)
            for s in samples
        ):
            continue
        if any(
            s.earth_leakage_ma is not None
            and pq.leakage_over(s.earth_leakage_ma, limits.earth_leakage_ma) != bool(leakage_was_over)
            for s in samples
        ):
            continue
        if not any(pq.scan_all(samples, limits, {}).values()):
            quiet.add(meter_id)
    return quiet


def _state_key(state: MeterPQState) -> tuple:
    return (
        state.open_event_count,
        state.reading_breaker,
        state.leakage_over,
        state.breaker_state,
        state.breaker_state_at,
        state.breaker_state_origin,
    )


def _related(meter: Meter, name: str):
    """A reverse one-to-one loaded by select_related, or None when the meter has none."""
    try:
        return getattr(meter, name)
    except ObjectDoesNotExist:
        return None


def _span_of(event: PQEvent) -> pq.Span:
    return pq.Span(
        kind=event.kind,
        start=event.start,
        last_violation_at=event.last_violation_at,
        worst=event.worst_value,
        phases=set(event.phases),
        count=event.reading_count,
        method=event.method,
        end=event.end,
    )


def _fill(event: PQEvent, span: pq.Span, limits: pq.Thresholds) -> PQEvent:
    event.kind = span.kind
    event.start = span.start
    event.end = span.end
    event.last_violation_at = span.last_violation_at
    event.worst_value = span.worst
    event.phases = sorted(span.phases)
    event.reading_count = span.count
    event.method = span.method
    event.unit = pq.unit_for(span.kind)
    event.threshold = limits.threshold_for(span.kind)
    if span.end is not None:
        event.duration_s = (span.end - span.start).total_seconds()
        event.duration_class = pq.duration_class(event.duration_s, limits.nominal_frequency_hz)
        event.ieee_category = pq.ieee_category(span.kind, event.duration_class)
    else:
        event.duration_s = None
        event.duration_class = ""
        event.ieee_category = ""
    return event


def _new_events(context: MeterContext, spans: list[pq.Span]) -> list[PQEvent]:
    """Create events for new spans in one INSERT and queue their openings (and closings)."""
    meter = context.meter
    events = [
        _fill(PQEvent(organization_id=meter.organization_id, meter_id=meter.pk), span, context.limits) for span in spans
    ]
    PQEvent.objects.bulk_create(events)
    for event in events:
        announce_pq(event, "opened", site_id=meter.site_id, outbox=context.outbox)
        if event.end is not None:
            announce_pq(event, "closed", site_id=meter.site_id, outbox=context.outbox)
    return events


def _detect_in_order(context: MeterContext, samples: list[pq.Sample], open_events: dict[str, PQEvent]) -> None:
    """No other stored reading is later than these: continue the open events from where they are."""
    if any(s.carries_pq for s in samples):
        opened = {kind: _span_of(event) for kind, event in open_events.items()}
        new: list[pq.Span] = []
        results = pq.scan_all(samples, context.limits, opened)
        context.state.open_event_count = sum(1 for spans in results.values() if spans and spans[-1].end is None)
        for kind, spans in results.items():
            existing = open_events.get(kind)
            for span in spans:
                if existing is not None and span.start == existing.start:
                    if span.count == existing.reading_count and span.end is None:
                        continue  # no reading of this batch carried the measurement
                    _fill(existing, span, context.limits).save()
                    if span.end is not None:
                        announce_pq(existing, "closed", site_id=context.meter.site_id, outbox=context.outbox)
                else:
                    new.append(span)
        if new:
            _new_events(context, sorted(new, key=lambda span: span.start))
    if any(s.carries_protection for s in samples):
        state = context.state
        breaker, state.reading_breaker = pq.breaker_transitions(samples, state.reading_breaker)
        leakage, over = pq.leakage_transitions(samples, context.limits.earth_leakage_ma, bool(state.leakage_over))
        if any(s.earth_leakage_ma is not None for s in samples):
            state.leakage_over = over
        if breaker or leakage:
            derived_protection_create(context, sorted(breaker + leakage, key=lambda t: t.ts))


def _detect_late(context: MeterContext, samples: list[pq.Sample]) -> None:
    """Some stored reading is later than one of these: re-evaluate the affected window."""
    meter, limits = context.meter, context.limits
    t_min = samples[0].ts
    # Per rule, the window starts at the event that spans t_min (its state before t_min is
    # "normal" otherwise, since every violating reading belongs to an event).
    resume: dict[str, datetime] = dict.fromkeys(pq.PQ_KINDS, t_min)
    straddling = PQEvent.objects.filter(meter_id=meter.pk, start__lt=t_min).filter(
        Q(end__isnull=True) | Q(end__gt=t_min)
    )
    for kind, start in straddling.values_list("kind", "start"):
        resume[kind] = min(resume[kind], start)
    window_start = min(resume.values())
    stored = [
        pq.sample_from(ts, {"voltage_a": va, "voltage_b": vb, "voltage_c": vc, "thd_v_pct": thd}, extra or {})
        for ts, va, vb, vc, thd, extra in Reading.objects.filter(meter_id=meter.pk, ts__gte=window_start)
        .order_by("ts")
        .values_list("ts", "voltage_a", "voltage_b", "voltage_c", "thd_v_pct", "extra")
    ]
    old_by_kind: dict[str, list[PQEvent]] = {kind: [] for kind in pq.PQ_KINDS}
    for event in PQEvent.objects.filter(meter_id=meter.pk, start__gte=window_start).order_by("start"):
        if event.start >= resume[event.kind]:
            old_by_kind[event.kind].append(event)
    for kind in pq.PQ_KINDS:
        spans = pq.scan(kind, (s for s in stored if s.ts >= resume[kind]), limits, None)
        _reconcile_pq(context, old_by_kind[kind], spans)
    breaker_observe_readings(context.state, stored)
    reconcile_protection(context, [s for s in stored if s.ts >= t_min], t_min)
    context.state.open_event_count = PQEvent.objects.filter(meter_id=meter.pk, end__isnull=True).count()


def _overlaps(event: PQEvent, span: pq.Span) -> bool:
    """Half-open intervals [start, end) overlap; an open event or span runs on indefinitely."""
    return (event.end is None or event.end > span.start) and (span.end is None or span.end > event.start)


def _reconcile_pq(context: MeterContext, old: list[PQEvent], spans: list[pq.Span]) -> None:
    site_id = context.meter.site_id
    matches: dict[int, PQEvent] = {}
    used: set[int] = set()
    by_start = {event.start: event for event in old}
    for index, span in enumerate(spans):  # same start: same event
        event = by_start.get(span.start)
        if event is not None:
            matches[index] = event
            used.add(event.pk)
    for index, span in enumerate(spans):  # else the first stored event it overlaps
        if index in matches:
            continue
        for event in old:
            if event.pk not in used and _overlaps(event, span):
                matches[index] = event
                used.add(event.pk)
                break
    for event in old:  # deleted first: their starts may be reused by the updates below
        if event.pk not in used:
            announce_pq(event, "retracted", site_id=site_id, outbox=context.outbox)
            event.delete()
    unmatched: list[pq.Span] = []
    for index, span in enumerate(spans):
        event = matches.get(index)
        if event is None:
            unmatched.append(span)  # created after the updates, whose old starts they may take
            continue
        before = (event.start, event.end, event.worst_value, sorted(event.phases))
        was_open = event.end is None
        _fill(event, span, context.limits).save()
        if was_open and event.end is not None:
            announce_pq(event, "closed", site_id=site_id, outbox=context.outbox)
        elif not was_open and before != (event.start, event.end, event.worst_value, event.phases):
            announce_pq(event, "updated", site_id=site_id, outbox=context.outbox)
    if unmatched:
        _new_events(context, unmatched)

"""Helpers shared by the power quality and protection tests: synthetic readings on a timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from energy.ingest.store import reading_batch_ingest
from energy.power_quality.models import PQEvent, ProtectionEvent
from joulepoint.events.models import OutboxEvent

T0 = datetime(2025, 10, 16, 10, 0, tzinfo=UTC)
NOMINAL = 230.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def iso(seconds: float) -> str:
    return at(seconds).isoformat().replace("+00:00", "Z")


def reading(seconds: float, va=NOMINAL, vb=NOMINAL, vc=NOMINAL, **fields) -> dict:
    """A three-phase reading at T0 + seconds; pass va/vb/vc=None to leave a phase out."""
    body = {"timestamp": iso(seconds), "total_power": 1000.0}
    for name, value in (("voltage_a", va), ("voltage_b", vb), ("voltage_c", vc)):
        if value is not None:
            body[name] = value
    body.update(fields)
    return body


def ingest(device, items: list[dict], source: str = "test"):
    return reading_batch_ingest(device=device, items=items, source=source)


def pq_events(meter, kind: str | None = None) -> list[PQEvent]:
    events = PQEvent.objects.filter(meter=meter).order_by("kind", "start")
    if kind is not None:
        events = events.filter(kind=kind)
    return list(events)


def event_shapes(meter) -> list[tuple]:
    """What a PQ event is, without its identity: for comparing two arrival orders."""
    return [
        (e.kind, e.start, e.end, round(e.worst_value, 9), tuple(e.phases), e.reading_count, e.duration_class)
        for e in pq_events(meter)
    ]


def protection_shapes(meter) -> list[tuple]:
    return sorted(
        (e.kind, e.occurred_at, e.earth_leakage_ma, e.origin) for e in ProtectionEvent.objects.filter(meter=meter)
    )


def outbox(key: str, meter=None, kind: str | None = None) -> list[dict]:
    """Payloads in the outbox for `key`, oldest first, of one meter and event kind if given."""
    rows = OutboxEvent.objects.filter(key=key).order_by("created_at", "occurred_at")
    payloads = [row.payload for row in rows]
    if meter is not None:
        payloads = [p for p in payloads if p["meter_id"] == meter.pk]
    if kind is not None:
        payloads = [p for p in payloads if p["kind"] == kind]
    return payloads


def actions(key: str, meter=None, kind: str | None = None) -> list[tuple[str, str]]:
    return [(p["kind"], p["action"]) for p in outbox(key, meter, kind)]

"""Reads of power quality and protection events for other apps (mlops' dataset labels): plain
rows, so no other app reaches into these models.

Tenant scope: each function reads one organization's rows; meters of another organization
simply match nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Q
from django.db.models.functions import Coalesce

from energy.power_quality.models import PQEvent, ProtectionEvent


def pq_event_spans(*, organization_id: int, meter_ids: Iterable[int], start: datetime, end: datetime) -> list[dict]:
    """PQ events of these meters overlapping [start, end): {"meter_id", "kind", "start", "last"},
    where `last` is the event's end, or its last violating reading while it is still open."""
    return list(
        PQEvent.objects.for_org(organization_id)
        .filter(meter_id__in=list(meter_ids), start__lt=end)
        .annotate(last=Coalesce("end", "last_violation_at"))
        .filter(Q(last__gte=start))
        .order_by("meter_id", "start")
        .values("meter_id", "kind", "start", "last")
    )


def protection_event_times(
    *, organization_id: int, meter_ids: Iterable[int], start: datetime, end: datetime
) -> list[dict]:
    """Protection events of these meters with start <= occurred_at < end: {"meter_id", "kind",
    "occurred_at"}, oldest first."""
    return list(
        ProtectionEvent.objects.for_org(organization_id)
        .filter(meter_id__in=list(meter_ids), occurred_at__gte=start, occurred_at__lt=end)
        .order_by("meter_id", "occurred_at")
        .values("meter_id", "kind", "occurred_at")
    )

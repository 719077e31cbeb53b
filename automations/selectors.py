"""Reads of automations rows that other apps share. Every query goes through `for_org`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from automations.models import Annotation

ANNOTATION_FIELDS = ("id", "meter_id", "ts", "text", "source", "rule_id")


def annotations_for_meters(
    *, organization_id: int, meter_ids: Iterable[int], start: datetime, end: datetime, limit: int
) -> list[dict]:
    """The organization's annotations on these meters with start <= ts < end, oldest first, at
    most `limit`. Meters of another organization simply match nothing (the filter is by org)."""
    return list(
        Annotation.objects.for_org(organization_id)
        .filter(meter_id__in=list(meter_ids), ts__gte=start, ts__lt=end)
        .order_by("ts", "id")
        .values(*ANNOTATION_FIELDS)[:limit]
    )

"""Annotations on meter timelines, for the analytics API, the live trail and the dashboard.

The rows belong to automations (written by the `annotate` action, or by hand through
/api/automations/annotations/). Energy sits below automations and does not import it:
automations registers its reader here from its AppConfig.ready(), the same kind of seam as
billing's subject resolver in params.py. Without a reader (automations not installed) every
subject simply has no annotations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from energy.analytics.subjects import Subject, TimeRange
from joulepoint.platform.timefmt import isoz

# reader(organization_id=, meter_ids=, start=, end=, limit=) -> [{"id", "meter_id", "ts", "text",
# "source", "rule_id"}], oldest first, start <= ts < end, the organization's rows only.
AnnotationReader = Callable[..., list[dict]]

DEFAULT_LIMIT = 500
MAX_LIMIT = 5000

_reader: AnnotationReader | None = None


def annotation_reader_register(reader: AnnotationReader | None) -> None:
    """Plug in where annotations come from (automations does, at start-up)."""
    global _reader
    _reader = reader


def annotations_read(
    *, organization_id: int, meter_ids: Iterable[int], start: datetime, end: datetime, limit: int = DEFAULT_LIMIT
) -> tuple[list[dict], bool]:
    """(annotations ready to serialize, whether more than `limit` matched)."""
    meter_ids = list(meter_ids)
    if _reader is None or not meter_ids:
        return [], False
    rows = _reader(organization_id=organization_id, meter_ids=meter_ids, start=start, end=end, limit=limit + 1)
    items = [
        {
            "id": row["id"],
            "meter_id": row["meter_id"],
            "ts": isoz(row["ts"]),
            "text": row["text"],
            "source": row["source"],
            "rule_id": row["rule_id"],
        }
        for row in rows[:limit]
    ]
    return items, len(rows) > limit


def annotations_compute(*, organization_id: int, subject: Subject, time_range: TimeRange, limit: int) -> dict:
    """The subject's annotations in the range: what GET /api/energy/analytics/annotations answers."""
    items, truncated = annotations_read(
        organization_id=organization_id,
        meter_ids=subject.meter_ids,
        start=time_range.start,
        end=time_range.end,
        limit=limit,
    )
    return {
        "subject": subject.as_dict(),
        "start": isoz(time_range.start),
        "end": isoz(time_range.end),
        "count": len(items),
        "truncated": truncated,
        "annotations": items,
    }

"""Live trail: the last N minutes of a subject's readings, ready to draw.

Raw points while a meter's trail is small (≤ MAX_RAW_POINTS readings); larger trails are
downsampled into equal buckets with min/avg/max, so a chart never gets more than about
MAX_RAW_POINTS points per meter and still shows spikes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from energy.analytics.annotations import annotations_read
from energy.analytics.subjects import Subject
from energy.models import Reading
from joulepoint.platform.timefmt import isoz

MAX_RAW_POINTS = 600


def _clean(value) -> float | None:
    return None if pd.isna(value) else round(float(value), 6)


def live_trail_compute(
    *, organization_id: int, subject: Subject, minutes: int, fields: list[str], now: datetime
) -> dict:
    """The trail, plus the subject's annotations in the same window (to draw as markers)."""
    start = now - timedelta(minutes=minutes)
    rows = list(
        Reading.objects.filter(meter_id__in=subject.meter_ids, ts__gte=start, ts__lte=now)
        .order_by("meter_id", "ts")
        .values_list("meter_id", "ts", *fields)
    )
    frame = pd.DataFrame(rows, columns=["meter_id", "ts", *fields])
    series = []
    for meter_id in subject.meter_ids:
        part = frame[frame["meter_id"] == meter_id]
        entry: dict = {"meter_id": meter_id}
        if len(part) <= MAX_RAW_POINTS:
            entry["mode"] = "raw"
            entry["points"] = [
                {"ts": isoz(ts), **{name: _clean(value) for name, value in zip(fields, values, strict=True)}}
                for ts, *values in part[["ts", *fields]].itertuples(index=False, name=None)
            ]
        else:
            bucket = max(1, -(-minutes * 60 // MAX_RAW_POINTS))  # seconds, rounded up
            stamped = part.set_index(pd.to_datetime(part["ts"], utc=True))[fields].astype("float64")
            grouped = stamped.resample(f"{bucket}s", origin="epoch")
            aggregated = {"min": grouped.min(), "avg": grouped.mean(), "max": grouped.max()}
            entry["mode"] = "downsampled"
            entry["bucket_seconds"] = bucket
            entry["points"] = [
                {
                    "ts": isoz(ts.to_pydatetime()),
                    **{
                        name: {agg: _clean(aggregated[agg].at[ts, name]) for agg in ("min", "avg", "max")}
                        for name in fields
                    },
                }
                for ts in aggregated["avg"].index
                if not aggregated["avg"].loc[ts].isna().all()
            ]
        series.append(entry)
    return {
        "subject": subject.as_dict(),
        "start": isoz(start),
        "end": isoz(now),
        "minutes": minutes,
        "fields": fields,
        "series": series,
        "annotations": annotations_read(
            organization_id=organization_id, meter_ids=subject.meter_ids, start=start, end=now
        )[0],
    }

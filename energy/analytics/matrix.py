"""Energy heatmap: local day x hour of day (or weekday x hour), from rollups.

SQL sums the subject's rollups (hourly where they tile local hours, else 15-minute) per local
date and hour (zone-aware on both databases), so it is DST-correct and the same on every
database: a spring-forward day has no value at the skipped hour, a fall-back day adds both
occurrences of the repeated hour.
"""

from __future__ import annotations

import math
import warnings
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from django.db.models import F, QuerySet, Sum
from django.db.models.functions import ExtractHour, TruncDate

from energy.analytics import selectors
from energy.analytics.models import ReadingRollup1h
from energy.analytics.subjects import Subject, TimeRange, local_days, whole_hour_offsets
from joulepoint.platform.timefmt import isoz

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _values(numbers) -> list[float | None]:
    return [None if number != number else round(number, 6) for number in numbers.tolist()]  # NaN != NaN


def matrix_compute(*, subject: Subject, time_range: TimeRange, tz: ZoneInfo, shape: str) -> dict:
    time_range = local_days(time_range, tz)
    rollups = selectors.rollups_15m(subject, time_range)
    registers = selectors.register_meter_ids(subject.meter_ids, time_range)
    first = time_range.start.astimezone(tz).date()
    last = (time_range.end - timedelta(seconds=1)).astimezone(tz).date()
    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    # Cells filled in a flat list of floats, then one array: no numpy scalar work per row.
    flat: list[float] = [math.nan] * (len(days) * 24)
    for day, hour, kwh in _cells(rollups, subject, time_range, tz, registers):
        if kwh is not None:
            index = (_as_date(day) - first).days * 24 + int(hour)
            flat[index] = kwh if flat[index] != flat[index] else flat[index] + kwh  # NaN != NaN: empty
    grid = np.array(flat, dtype="float64").reshape(len(days), 24)

    result = {
        "subject": subject.as_dict(),
        "start": isoz(time_range.start),
        "end": isoz(time_range.end),
        "tz": str(tz),
        "shape": shape,
        "unit": "kWh",
        "method": selectors.energy_method(registers, subject.meter_ids),
        "hours": list(range(24)),
    }
    if shape == "weekday":
        # Mean over the range's days of that weekday (days without data do not count).
        weekdays = np.array([day.weekday() for day in days])
        result["aggregate"] = "mean"
        result["rows"] = []
        for index in range(7):
            same = grid[weekdays == index]
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                means = np.nanmean(same, axis=0) if len(same) else np.full(24, np.nan)
            result["rows"].append({"weekday": index, "label": WEEKDAYS[index], "values": _values(means)})
    else:
        result["rows"] = [
            {
                "date": day.isoformat(),
                "weekday": WEEKDAYS[day.weekday()],
                "values": _values(values),
                "total": None if np.isnan(values).all() else round(float(np.nansum(values)), 6),
            }
            for day, values in zip(days, grid, strict=True)
        ]
    return result


def _cells(rollups: QuerySet, subject: Subject, time_range: TimeRange, tz: ZoneInfo, registers: set[int]):
    """(local date, local hour, kWh) rows summed in SQL (zone-aware on both databases): at most
    8,784 rows a year leave the database, as a date and an int (no datetime to convert per row);
    the two occurrences of a repeated hour share their cell.

    Register increments add up, so register meters are read from the hourly rollups (4x fewer
    rows) when every local hour of the range is a whole UTC hour; power integration is not
    linear (the positive part of each 15-minute average) and stays on 15-minute rollups."""
    hourly = sorted(registers) if whole_hour_offsets(tz, time_range) else []
    sources = []
    if hourly:
        sources.append(
            (
                ReadingRollup1h.objects.filter(meter_id__in=hourly, ts__gte=time_range.start, ts__lt=time_range.end),
                F("total_energy_inc"),
            )
        )
    rest = [meter_id for meter_id in subject.meter_ids if meter_id not in hourly]
    if rest:
        sources.append((rollups.filter(meter_id__in=rest), selectors.import_expression(registers, rest)))
    for queryset, energy in sources:
        # Raw rows, without Django's per-value converters: a date (text on SQLite), an hour
        # (numeric on PostgreSQL) and a float.
        yield from selectors.raw_rows(
            queryset.order_by()
            .annotate(day=TruncDate("ts", tzinfo=tz), hour=ExtractHour("ts", tzinfo=tz))
            .values("day", "hour")
            .annotate(kwh=Sum(energy))
            .values_list("day", "hour", "kwh")
        )


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)

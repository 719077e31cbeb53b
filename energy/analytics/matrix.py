"""Energy heatmap: local day x hour of day (or weekday x hour), from 15-minute rollups.

SQL sums the subject's 15-minute rollups per local hour (zone-aware truncation on both
databases), so it is DST-correct and the same on every database: a spring-forward day has no
value at the skipped hour, a fall-back day adds both occurrences of the repeated hour.
"""

from __future__ import annotations

import math
import warnings
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from django.db.models import Sum
from django.db.models.functions import TruncHour

from energy.analytics import selectors
from energy.analytics.params import Subject, TimeRange, isoz, local_midnight

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def local_days(time_range: TimeRange, tz: ZoneInfo) -> TimeRange:
    """Widen a range to whole local days."""
    first = time_range.start.astimezone(tz).date()
    last = (time_range.end - timedelta(microseconds=1)).astimezone(tz).date()
    return TimeRange(local_midnight(first, tz), local_midnight(last + timedelta(days=1), tz))


def _values(numbers) -> list[float | None]:
    return [None if math.isnan(number) else round(float(number), 6) for number in numbers]


def matrix_compute(*, subject: Subject, time_range: TimeRange, tz: ZoneInfo, shape: str) -> dict:
    time_range = local_days(time_range, tz)
    rollups = selectors.rollups_15m(subject, time_range)
    registers = selectors.register_meter_ids(rollups)
    # SQL sums the subject's 15-minute rollups per local hour (zone-aware truncation on both
    # databases): at most 8,784 rows a year leave the database.
    hourly = (
        rollups.annotate(hour=TruncHour("ts", tzinfo=tz))
        .values("hour")
        .annotate(kwh=Sum(selectors.import_expression(registers)))
        .values_list("hour", "kwh")
    )
    cells: dict[tuple[date, int], float] = {}
    for hour, kwh in hourly:
        if kwh is not None:
            local = hour.astimezone(tz)
            key = (local.date(), local.hour)
            cells[key] = cells.get(key, 0.0) + kwh
    first = time_range.start.astimezone(tz).date()
    last = (time_range.end - timedelta(seconds=1)).astimezone(tz).date()
    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    grid = np.array([[cells.get((day, hour), np.nan) for hour in range(24)] for day in days], dtype="float64")
    grid = grid.reshape(len(days), 24)

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

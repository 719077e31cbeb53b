"""Energy heatmap: local day x hour of day (or weekday x hour), from 15-minute rollups.

Bucketing into local days and hours happens in pandas after SQL has summed the subject's
meters per 15-minute bucket (at most 35,136 rows a year), so it is DST-correct and the same on
every database: a spring-forward day has no value at the skipped hour, a fall-back day adds
both occurrences of the repeated hour.
"""

from __future__ import annotations

import math
import warnings
from datetime import timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from django.db.models import Sum

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
    rows = list(rollups.values("ts").annotate(kwh=Sum(selectors.import_expression(registers))).values_list("ts", "kwh"))
    frame = pd.DataFrame(rows, columns=["ts", "kwh"]).dropna()
    days = pd.date_range(
        time_range.start.astimezone(tz).date(), (time_range.end - timedelta(seconds=1)).astimezone(tz).date(), freq="D"
    )
    if frame.empty:
        table = pd.DataFrame(index=[day.date() for day in days], columns=range(24), dtype="float64")
    else:
        local = pd.to_datetime(frame["ts"], utc=True).dt.tz_convert(str(tz))
        frame = frame.assign(day=local.dt.date, hour=local.dt.hour)
        table = frame.pivot_table(index="day", columns="hour", values="kwh", aggfunc="sum")
        table = table.reindex(index=[day.date() for day in days], columns=range(24))

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
    grid = table.to_numpy(dtype="float64")
    if shape == "weekday":
        # Mean over the range's days of that weekday (days without data do not count).
        weekdays = np.array([day.weekday() for day in table.index])
        result["aggregate"] = "mean"
        result["rows"] = []
        for index in range(7):
            days = grid[weekdays == index]
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                means = np.nanmean(days, axis=0) if len(days) else np.full(24, np.nan)
            result["rows"].append({"weekday": index, "label": WEEKDAYS[index], "values": _values(means)})
    else:
        result["rows"] = [
            {
                "date": day.isoformat(),
                "weekday": WEEKDAYS[day.weekday()],
                "values": _values(values),
                "total": None if np.isnan(values).all() else round(float(np.nansum(values)), 6),
            }
            for day, values in zip(table.index, grid, strict=True)
        ]
    return result

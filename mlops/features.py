"""Derived features, shared by dataset builds (whole frames) and inference (single readings).

Pure functions over pandas/numpy: no database, no storage. A dataset names the features it
wants (FEATURES); the frame always carries `meter_id`, `ts` (UTC) and the chosen reading fields.
Calendar features are in the meter's site's zone (a load follows local clocks, not UTC).

Inference sees one reading at a time, without history, so served anomaly models use only
*point* features: the reading's fields and the local hour as a point on a circle
(`local_hour_sin`, `local_hour_cos`, so 23:00 is next to 00:00).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import pandas as pd

# name → what it adds (per field for rolling means and lags)
FEATURES = {
    "local_hour": "hour of day in the site's zone (0-23)",
    "weekday": "day of week in the site's zone (0 = Monday)",
    "holiday": "1 on a public holiday of the dataset's holiday_country, else 0",
    "rolling_mean_1h": "<field>_rolling_mean_1h: mean of the last hour, this step included",
    "rolling_mean_24h": "<field>_rolling_mean_24h: mean of the last 24 hours, this step included",
    "lag_1d": "<field>_lag_1d: the value one day earlier",
    "lag_1w": "<field>_lag_1w: the value one week earlier",
}
ROLLING = {"rolling_mean_1h": 3600, "rolling_mean_24h": 86400}
LAGS = {"lag_1d": 86400, "lag_1w": 7 * 86400}
STEP_SECONDS = {"15min": 900, "1h": 3600}
POINT_FEATURES = ("local_hour_sin", "local_hour_cos")
# Clear-sky irradiance at the site (W/m², pvlib's Ineichen model with the Linke turbidity
# climatology): global horizontal, direct normal, diffuse horizontal. The PV forecaster's inputs.
CLEARSKY_FEATURES = ("clearsky_ghi", "clearsky_dni", "clearsky_dhi")


def holiday_countries() -> set[str]:
    return set(holidays.list_supported_countries())


def feature_frame(
    raw: pd.DataFrame,
    *,
    fields: list[str],
    features: list[str],
    interval: str,
    zones: dict[int, str],
    holiday_country: str = "",
) -> pd.DataFrame:
    """`raw` (meter_id, ts, fields… at 15 minutes) → one row per meter and step with data, with
    the derived features. Steps are a regular grid per meter, so lags and rolling windows count
    time, not rows; a step with no value of any field is dropped after they are computed."""
    step = STEP_SECONDS[interval]
    parts = []
    for meter_id, rows in raw.groupby("meter_id", sort=True):
        series = rows.set_index("ts")[fields].astype("float64").resample(f"{step}s").mean()
        frame = pd.DataFrame(index=series.index)
        frame["meter_id"] = int(meter_id)
        frame["ts"] = series.index
        local = series.index.tz_convert(ZoneInfo(zones.get(int(meter_id), "UTC")))
        if "local_hour" in features:
            frame["local_hour"] = local.hour.astype("int16")
        if "weekday" in features:
            frame["weekday"] = local.day_of_week.astype("int16")
        if "holiday" in features:
            frame["holiday"] = holiday_flags(local, holiday_country)
        for name in fields:
            frame[name] = series[name]
            for feature, seconds in ROLLING.items():
                if feature in features:
                    window = max(1, seconds // step)
                    frame[f"{name}_{feature}"] = series[name].rolling(window, min_periods=1).mean()
            for feature, seconds in LAGS.items():
                if feature in features:
                    frame[f"{name}_{feature}"] = series[name].shift(seconds // step)
        parts.append(frame[series.notna().any(axis=1).to_numpy()])
    if not parts:
        return pd.DataFrame(columns=["meter_id", "ts", *fields])
    return pd.concat(parts, ignore_index=True)


def holiday_flags(local: pd.DatetimeIndex, country: str) -> np.ndarray:
    if not country or len(local) == 0:
        return np.zeros(len(local), dtype="int8")
    years = range(int(local.year.min()), int(local.year.max()) + 1)
    days = holidays.country_holidays(country, years=years)
    # Look each distinct date up once (a year of 15-minute steps has 365 of them, not 35,040).
    dates = local.normalize().tz_localize(None)
    distinct = dates.unique()
    flagged = distinct[[day.date() in days for day in distinct]]
    return np.asarray(dates.isin(flagged), dtype="int8")


def hour_circle(hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The local hour (fractional) as sin/cos, so the day wraps around."""
    angle = 2 * math.pi * np.asarray(hours, dtype="float64") / 24.0
    return np.sin(angle), np.cos(angle)


def point_matrix(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """The float32 input matrix of a point-feature model from a frame carrying the fields and
    `local_hour` (training)."""
    sin, cos = hour_circle(frame["local_hour"].to_numpy()) if "local_hour" in frame else (None, None)
    columns = _point_columns(names, sin, cos, lambda name: frame[name].to_numpy(dtype="float64"))
    return np.column_stack(columns).astype(np.float32)


def _point_columns(names: list[str], sin, cos, field: Callable[[str], np.ndarray]) -> list:
    """The columns of a point-feature model in `names` order, for training and inference alike:
    the local hour on the circle, else the field's values (`field(name)`)."""
    return [sin if name == "local_hour_sin" else cos if name == "local_hour_cos" else field(name) for name in names]


def local_hour_circle(timestamp: datetime, zone: ZoneInfo) -> tuple[float, float]:
    """The local hour (fractional) of an instant as sin/cos, as `hour_circle` for training."""
    local = timestamp.astimezone(zone)
    angle = 2 * math.pi * (local.hour + local.minute / 60.0) / 24.0
    return math.sin(angle), math.cos(angle)


def readings_point_matrix(readings: list[dict], circles: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The point features of `readings` in `names` order, one float32 row per reading that has
    every field, and the positions of those readings (a reading lacking a field is not scored);
    `circles` holds each reading's `local_hour_circle` as a (sin, cos) row. Column by column,
    since this runs on every reading an anomaly model serves."""
    columns = _point_columns(
        names, circles[:, 0], circles[:, 1], lambda name: _number_column([reading.get(name) for reading in readings])
    )
    matrix = np.column_stack(columns) if columns else np.empty((len(readings), 0))
    complete = ~np.isnan(matrix).any(axis=1)
    return matrix[complete].astype(np.float32), np.flatnonzero(complete)


def _number_column(values: list) -> np.ndarray:
    """float64 makes a missing value (None) NaN; validated readings hold nothing else but numbers."""
    try:
        return np.array(values, dtype="float64")
    except (TypeError, ValueError):  # not from ingest's validation: keep only the numbers
        numbers = [v if isinstance(v, int | float) and not isinstance(v, bool) else None for v in values]
        return np.array(numbers, dtype="float64")


def clearsky_matrix(stamps: pd.DatetimeIndex, *, latitude: float, longitude: float, step_seconds: int) -> np.ndarray:
    """Clear-sky irradiance (CLEARSKY_FEATURES, in that order) for steps starting at `stamps`
    (UTC). Each step is evaluated at its middle: a 15-minute rollup is the average over the
    step, and at sunrise the start of the step would read zero for a step that produced."""
    if len(stamps) == 0:
        return np.zeros((0, len(CLEARSKY_FEATURES)), dtype=np.float32)
    import pvlib  # imported here: pvlib costs a process about 60 MiB, and only PV models use it

    middles = pd.DatetimeIndex(stamps).tz_convert("UTC") + pd.Timedelta(seconds=step_seconds / 2)
    location = pvlib.location.Location(latitude, longitude, tz="UTC")
    sky = location.get_clearsky(middles, model="ineichen")
    return sky[["ghi", "dni", "dhi"]].fillna(0.0).clip(lower=0.0).to_numpy(dtype=np.float32)

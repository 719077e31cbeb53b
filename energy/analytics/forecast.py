"""Naive forecasts of demand (non-PV meters) and generation (PV meters), with a backtest.

Methods (y is the history at the chosen interval, m its season length):
- `seasonal_naive_daily` / `seasonal_naive_weekly`: repeat the last day / week (m = one day
  or one week of steps);
- `moving_average`: the mean of the last `window` hours, flat;
- `drift`: the last value plus the history's average slope per step.
- `model`: a trained model, served by the app that registered a provider for it
  (`forecast_provider_register`; mlops does in its AppConfig.ready(): energy imports none of
  them). Without a provider, or without a model assigned to the subject, it is a 400. Its
  answer carries the seasonal-naive-daily backtest beside the model's (`baseline`).
The backtest hides the last `horizon` of history, forecasts it from what remains, and reports
MAE (kW) and MAPE (% over steps whose actual value is not zero), so a planner can compare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from django.db.models import F, Sum, Value

from energy.analytics import selectors
from energy.analytics.params import AnalyticsParamError
from energy.analytics.subjects import Subject, TimeRange, floor_time
from energy.models import Meter
from joulepoint.platform.timefmt import isoz

METHODS = ("seasonal_naive_daily", "seasonal_naive_weekly", "moving_average", "drift")
PROVIDED_METHODS = ("model",)  # served by a registered provider
ALL_METHODS = METHODS + PROVIDED_METHODS
TARGETS = ("demand", "generation")
FORECAST_INTERVALS = ("15min", "1h")
STEP_SECONDS = {"15min": 900, "1h": 3600}


# A provider forecasts `horizon` steps after `history` (kW, a gap-free float array whose last
# step ends at `future[0]`) for the subject and target: it returns the forecast array and a
# dict describing what served it (model, version), or raises AnalyticsParamError naming why not.
ForecastProvider = Callable[..., tuple[np.ndarray, dict]]
_providers: dict[str, ForecastProvider] = {}


def forecast_provider_register(method: str, provider: ForecastProvider) -> None:
    """Serve `method` (one of PROVIDED_METHODS) with `provider(subject=, target=, history=,
    history_index=, future=, tz=)`."""
    _providers[method] = provider


def default_target(subject: Subject) -> str:
    meters = subject.meters
    return "generation" if meters and all(meter.kind == Meter.Kind.PV for meter in meters) else "demand"


def target_subject(subject: Subject, target: str) -> Subject:
    if target == "generation":
        meters = [meter for meter in subject.meters if meter.kind == Meter.Kind.PV]
    else:
        meters = [meter for meter in subject.meters if meter.kind != Meter.Kind.PV]
    if not meters:
        kind = "PV" if target == "generation" else "non-PV"
        raise AnalyticsParamError("target", f"The subject has no {kind} meters to forecast {target} for.")
    return replace(subject, meters=meters)


def _season(method: str, steps_per_day: int) -> int:
    return steps_per_day * (7 if method == "seasonal_naive_weekly" else 1)


def predict(history: np.ndarray, *, method: str, horizon: int, steps_per_day: int, window: int) -> np.ndarray:
    """Forecast `horizon` steps after `history` (a gap-free float array)."""
    if method in ("seasonal_naive_daily", "seasonal_naive_weekly"):
        season = history[-_season(method, steps_per_day) :]
        return np.resize(season, horizon)
    if method == "moving_average":
        return np.full(horizon, history[-window:].mean())
    slope = (history[-1] - history[0]) / (len(history) - 1) if len(history) > 1 else 0.0
    return history[-1] + slope * np.arange(1, horizon + 1)


def minimum_history(method: str, *, horizon: int, steps_per_day: int, window: int) -> int:
    """Steps of history needed to forecast and to backtest on the last horizon."""
    need = {"moving_average": window, "drift": 2}.get(method) or _season(method, steps_per_day)
    return need + horizon


def forecast_compute(
    *,
    subject: Subject,
    target: str,
    method: str,
    interval: str,
    horizon_hours: int,
    history_days: int,
    window_hours: int,
    end: datetime,
    tz: ZoneInfo,
) -> dict:
    step = STEP_SECONDS[interval]
    steps_per_day = 86400 // step
    horizon = horizon_hours * 3600 // step
    window = max(1, window_hours * 3600 // step)
    subject = target_subject(subject, target)
    end = floor_time(end, step)
    history_range = TimeRange(end - timedelta(days=history_days), end)

    rollups = selectors.rollups_15m(subject, history_range)
    rows = list(
        rollups.values("ts")
        .annotate(kw=Sum(F("total_power_avg") / Value(1000.0)))
        .filter(kw__isnull=False)
        .values_list("ts", "kw")
    )
    index = pd.date_range(history_range.start, history_range.end, freq=f"{step}s", inclusive="left")
    if rows:
        series = pd.Series([kw for _, kw in rows], index=pd.to_datetime([ts for ts, _ in rows], utc=True))
        series = series.resample(f"{step}s").mean().reindex(index)
    else:
        series = pd.Series(np.nan, index=index)
    # History starts at the first measured step; gaps inside are interpolated in time.
    first = series.first_valid_index()
    if first is None:
        raise AnalyticsParamError("start", "No power readings in the history window to forecast from.")
    series = series[first:].interpolate(method="time").ffill()
    need = minimum_history(method, horizon=horizon, steps_per_day=steps_per_day, window=window)
    if len(series) < need:
        raise AnalyticsParamError(
            "horizon",
            f"{method} with a {horizon_hours} h horizon needs at least {need * step / 3600:g} h of history; "
            f"the subject has {len(series) * step / 3600:g} h.",
        )
    values = series.to_numpy(dtype="float64")
    future = pd.date_range(end, periods=horizon, freq=f"{step}s")
    extra: dict = {}
    if method in PROVIDED_METHODS:
        provider = _providers.get(method)
        if provider is None:
            raise AnalyticsParamError("method", f"No installed app serves {method} forecasts.")
        kwargs = {"subject": subject, "target": target, "tz": tz}
        forecast, extra["model"] = provider(history=values, history_index=series.index, future=future, **kwargs)
        backtest, _info = provider(
            history=values[:-horizon], history_index=series.index[:-horizon], future=series.index[-horizon:], **kwargs
        )
        naive = predict(
            values[:-horizon], method="seasonal_naive_daily", horizon=horizon, steps_per_day=steps_per_day, window=1
        )
        extra["baseline"] = {
            "method": "seasonal_naive_daily",
            "mae_kw": round(float(np.abs(values[-horizon:] - naive).mean()), 6),
        }
    else:
        kwargs = {"method": method, "horizon": horizon, "steps_per_day": steps_per_day, "window": window}
        forecast = predict(values, **kwargs)
        backtest = predict(values[:-horizon], **kwargs)
    actual = values[-horizon:]
    errors = np.abs(actual - backtest)
    nonzero = actual != 0
    return {
        "subject": subject.as_dict(),
        "target": target,
        "method": method,
        "interval": interval,
        "horizon_hours": horizon_hours,
        "unit": "kW",
        "tz": str(tz),
        "history": {"start": isoz(series.index[0].to_pydatetime()), "end": isoz(end), "steps": len(series)},
        "points": [
            {"ts": isoz(ts.to_pydatetime()), "kw": round(float(value), 6)}
            for ts, value in zip(future, forecast, strict=True)
        ],
        "backtest": {
            "start": isoz(series.index[-horizon].to_pydatetime()),
            "end": isoz(end),
            "mae_kw": round(float(errors.mean()), 6),
            "mape_pct": round(float((errors[nonzero] / np.abs(actual[nonzero])).mean() * 100), 4)
            if nonzero.any()
            else None,
        },
        **extra,
    }

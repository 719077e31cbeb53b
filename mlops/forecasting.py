"""The `model` forecast method of energy's analytics: the subject's production forecasting model,
registered with energy.analytics.forecast.forecast_provider_register in MlopsConfig.ready().

A demand model predicts each step from calendar features and the value one day earlier (in the
dataset field's unit, W); beyond one day ahead, its own predictions stand in for the lag, day
by day. A PV model predicts from the clear-sky irradiance at the subject's site (pvlib), which
is known for any step ahead. It forecasts the series it is given (the subject's total), so a model serves best the
subject it was trained on (a dataset of that meter, or of the group's meters).
Tenant scope: the subject's organization.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from energy.analytics.params import AnalyticsParamError
from energy.analytics.subjects import Subject
from energy.models import Site
from mlops import selectors
from mlops.features import CLEARSKY_FEATURES, clearsky_matrix, holiday_flags, hour_circle
from mlops.inference.sessions import serving_observe, session_for
from mlops.models import Purpose

PURPOSE_OF_TARGET = {"demand": Purpose.DEMAND_FORECAST, "generation": Purpose.PV_FORECAST}


def model_forecast(
    *, subject: Subject, target: str, history: np.ndarray, history_index: pd.DatetimeIndex, future, tz: ZoneInfo
) -> tuple[np.ndarray, dict]:
    purpose = PURPOSE_OF_TARGET[target]
    organization_id = subject.meters[0].organization_id
    alias = selectors.forecast_alias(
        organization_id=organization_id, kind=subject.kind, pk=subject.id, meter_ids=subject.meter_ids, purpose=purpose
    )
    if alias is None:
        raise AnalyticsParamError(
            "method",
            f"No {purpose} model is in production for this {subject.kind}: assign one (POST /api/ml/assignments) "
            "and promote a version (POST /api/ml/promotions).",
        )
    version = alias.version
    serving_observe()
    session, input_name = session_for(version_id=version.pk, artifact=version.artifact)
    dataset = version.dataset_version.dataset if version.dataset_version else None
    zone = ZoneInfo(subject.timezone or "UTC")
    country = dataset.holiday_country if dataset else ""

    known = pd.Series(np.asarray(history, dtype="float64") * 1000.0, index=history_index)  # kW → W
    future = pd.DatetimeIndex(future)
    step = (future[1] - future[0]) if len(future) > 1 else pd.Timedelta(hours=1)
    per_day = max(1, int(timedelta(days=1) / step))
    sky = None
    if set(CLEARSKY_FEATURES) & set(version.features):
        sky = _clear_sky(subject, future, int(step.total_seconds()))
    predictions: list[np.ndarray] = []
    for start in range(0, len(future), per_day):
        chunk = future[start : start + per_day]
        lag = known.reindex(chunk - pd.Timedelta(days=1)).ffill().fillna(known.iloc[-1] if len(known) else 0.0)
        chunk_sky = sky[start : start + per_day] if sky is not None else None
        matrix = _inputs(version.features, chunk, zone, country, lag.to_numpy(), chunk_sky)
        predicted = np.asarray(session.run(None, {input_name: matrix})[0], dtype="float64").ravel()
        if purpose == Purpose.PV_FORECAST:
            predicted = np.clip(predicted, 0, None)
        predictions.append(predicted)
        known = pd.concat([known, pd.Series(predicted, index=chunk)])
    forecast = np.concatenate(predictions) / 1000.0 if predictions else np.array([])
    info = {"model_id": version.model_id, "model": version.model.name, "version_id": version.pk,
            "version": version.number, "metrics": version.metrics.get("backtest")}  # fmt: skip
    return forecast, info


def _clear_sky(subject: Subject, future: pd.DatetimeIndex, step_seconds: int) -> np.ndarray:
    """The clear sky over the subject's site for each future step (a PV model's inputs)."""
    site_ids = {meter.site_id for meter in subject.meters}
    site = Site.objects.filter(pk__in=site_ids).first() if len(site_ids) == 1 else None
    if site is None or site.latitude is None or site.longitude is None:
        raise AnalyticsParamError(
            "method", "The served PV model needs the latitude and longitude of the one site its meters are on."
        )
    return clearsky_matrix(future, latitude=site.latitude, longitude=site.longitude, step_seconds=step_seconds)


def _inputs(
    names: list[str],
    stamps: pd.DatetimeIndex,
    zone: ZoneInfo,
    country: str,
    lag: np.ndarray,
    sky: np.ndarray | None = None,
) -> np.ndarray:
    local = stamps.tz_convert(zone)
    sin, cos = hour_circle(local.hour + local.minute / 60.0)
    columns = []
    for name in names:
        if name == "local_hour_sin":
            columns.append(sin)
        elif name == "local_hour_cos":
            columns.append(cos)
        elif name == "weekday":
            columns.append(local.day_of_week.to_numpy(dtype="float64"))
        elif name == "holiday":
            columns.append(holiday_flags(local, country).astype("float64"))
        elif name.endswith("_lag_1d"):
            columns.append(lag)
        elif name in CLEARSKY_FEATURES and sky is not None:
            columns.append(sky[:, CLEARSKY_FEATURES.index(name)].astype("float64"))
        else:
            raise AnalyticsParamError("method", f"The served model needs {name!r}, which forecasts cannot provide.")
    return np.column_stack(columns).astype(np.float32)

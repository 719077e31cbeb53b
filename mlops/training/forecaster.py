"""The built-in demand forecaster: gradient boosting on calendar and lag features, exported to
ONNX, backtested against the seasonal-naive forecast energy's analytics already serve.

Pure (a frame in, bytes and numbers out). The backtest hides each meter's last `horizon_hours`,
trains on what is before, and reports the model's MAE and the seasonal-naive-daily MAE on the
same steps (both in the field's unit, W for power), so the model earns its place or not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from energy.analytics.forecast import predict
from mlops.errors import MlopsInvalid
from mlops.features import STEP_SECONDS, point_matrix
from mlops.training.anomaly import ONNX_OPSET, Trained

DEFAULTS = {"field": "total_power", "horizon_hours": 24, "n_estimators": 100, "max_depth": 3, "learning_rate": 0.1}
MIN_DAYS = 3


def params_clean(params: dict) -> dict:
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise MlopsInvalid("params", f"Unknown parameters: {', '.join(unknown)}; known: {', '.join(DEFAULTS)}.")
    merged = {**DEFAULTS, **params}
    for name, low, high in (("horizon_hours", 1, 24), ("n_estimators", 10, 1000), ("max_depth", 1, 10)):
        value = merged[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise MlopsInvalid("params", f"{name} must be a whole number from {low} to {high}.")
    rate = merged["learning_rate"]
    if not isinstance(rate, int | float) or not 0 < rate <= 1:
        raise MlopsInvalid("params", "learning_rate must be a number in (0, 1].")
    return merged


def feature_names(frame: pd.DataFrame, field: str) -> list[str]:
    """Calendar and lag inputs; a lag of one day at most, so a day ahead is known from history."""
    missing = [name for name in ("local_hour", "weekday", f"{field}_lag_1d") if name not in frame]
    if missing:
        raise MlopsInvalid(
            "dataset_version",
            f"The demand forecaster needs the features local_hour, weekday and lag_1d; missing {missing}.",
        )
    names = ["local_hour_sin", "local_hour_cos", "weekday"]
    if "holiday" in frame:
        names.append("holiday")
    return [*names, f"{field}_lag_1d"]


def demand_train(frame: pd.DataFrame, params: dict) -> Trained:
    from skl2onnx import to_onnx  # imported here: see anomaly.anomaly_train
    from sklearn.ensemble import GradientBoostingRegressor

    params = params_clean(params)
    field = params["field"]
    if field not in frame:
        raise MlopsInvalid("params", f"The dataset has no column {field!r}.")
    names = feature_names(frame, field)
    step = int((frame["ts"].sort_values().diff().dropna().min() or pd.Timedelta(seconds=900)).total_seconds())
    step = step if step in STEP_SECONDS.values() else 900
    steps_per_day = 86400 // step
    horizon = params["horizon_hours"] * 3600 // step
    usable = frame.dropna(subset=[field, f"{field}_lag_1d"])
    if usable["ts"].nunique() < MIN_DAYS * steps_per_day:
        raise MlopsInvalid("dataset_version", f"Needs at least {MIN_DAYS} days of {field} with a day of lag.")

    cutoff = usable["ts"].max() - pd.Timedelta(seconds=step * (horizon - 1))
    train, test = usable[usable["ts"] < cutoff], usable[usable["ts"] >= cutoff]
    model_kwargs = {k: params[k] for k in ("n_estimators", "max_depth", "learning_rate")}
    backtest_model = GradientBoostingRegressor(random_state=0, **model_kwargs)
    backtest_model.fit(point_matrix(train, names), train[field].to_numpy())
    model_errors = np.abs(backtest_model.predict(point_matrix(test, names)) - test[field].to_numpy())

    naive_errors = []
    for _meter_id, rows in frame.dropna(subset=[field]).groupby("meter_id"):
        series = rows.set_index("ts")[field].resample(f"{step}s").mean().interpolate().ffill().bfill()
        history, actual = series[series.index < cutoff], series[series.index >= cutoff]
        if len(history) < steps_per_day or actual.empty:
            continue
        forecast = predict(
            history.to_numpy(),
            method="seasonal_naive_daily",
            horizon=len(actual),
            steps_per_day=steps_per_day,
            window=1,
        )
        naive_errors.append(np.abs(forecast - actual.to_numpy()))
    naive_mae = float(np.concatenate(naive_errors).mean()) if naive_errors else None

    final = GradientBoostingRegressor(random_state=0, **model_kwargs)
    matrix = point_matrix(usable, names)
    final.fit(matrix, usable[field].to_numpy())
    onnx = to_onnx(final, matrix[:1], target_opset=ONNX_OPSET).SerializeToString()
    model_mae = float(model_errors.mean())
    metrics = {
        "rows": len(usable),
        "step_seconds": step,
        "backtest": {
            "horizon_hours": params["horizon_hours"],
            "start": cutoff.isoformat(),
            "mae": model_mae,
            "baseline": "seasonal_naive_daily",
            "baseline_mae": naive_mae,
            "skill": (1 - model_mae / naive_mae) if naive_mae else None,
        },
    }
    return Trained(onnx=onnx, features=names, threshold=None, metrics=metrics, params=params)

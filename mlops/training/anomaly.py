"""The built-in anomaly trainer: an IsolationForest on point features, exported to ONNX, and a
robust z-score baseline to compare it with.

Pure (a frame in, bytes and numbers out). The anomaly score is the negated IsolationForest
decision function (higher = more anomalous; the ONNX `scores` output is the decision function,
so inference negates it the same way). The threshold is the (1 - contamination) quantile of the
training scores, recorded with the version: a reading scoring above it is an anomaly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops.errors import MlopsInvalid
from mlops.features import POINT_FEATURES, point_matrix

# 50 trees: skl2onnx's IsolationForest export grows faster than linearly with trees (docs/mlops.md).
DEFAULTS = {"field": "total_power", "n_estimators": 50, "contamination": 0.005, "random_state": 0}
ROBUST_Z_THRESHOLD = 3.5  # Iglewicz and Hoaglin's cut-off for the modified z-score
MIN_ROWS = 48
ONNX_OPSET = {"": 17, "ai.onnx.ml": 3}


@dataclass
class Trained:
    onnx: bytes
    features: list[str]
    threshold: float
    metrics: dict
    params: dict


def params_clean(params: dict) -> dict:
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise MlopsInvalid("params", f"Unknown parameters: {', '.join(unknown)}; known: {', '.join(DEFAULTS)}.")
    merged = {**DEFAULTS, **params}
    if not isinstance(merged["n_estimators"], int) or not 10 <= merged["n_estimators"] <= 1000:
        raise MlopsInvalid("params", "n_estimators must be a whole number from 10 to 1000.")
    contamination = merged["contamination"]
    if not isinstance(contamination, int | float) or not 0 < contamination < 0.5:
        raise MlopsInvalid("params", "contamination must be a number between 0 and 0.5.")
    if not isinstance(merged["random_state"], int):
        raise MlopsInvalid("params", "random_state must be a whole number.")
    return merged


def robust_z(values: np.ndarray, median: float, mad: float) -> np.ndarray:
    """Modified z-score: 0.6745 (x - median) / MAD; MAD 0 (a constant signal) counts as tiny."""
    return 0.6745 * (values - median) / max(mad, 1e-9)


def anomaly_train(frame: pd.DataFrame, params: dict) -> Trained:
    # Imported here, not at the top: scikit-learn and skl2onnx would cost every process that
    # loads mlops (beat, the MQTT bridge, the OCPP server) about 200 MiB; only training uses them.
    from skl2onnx import to_onnx
    from sklearn.ensemble import IsolationForest

    params = params_clean(params)
    field = params["field"]
    if field not in frame:
        raise MlopsInvalid("params", f"The dataset has no column {field!r}.")
    frame = frame.dropna(subset=[field])
    if len(frame) < MIN_ROWS:
        raise MlopsInvalid("dataset_version", f"Needs at least {MIN_ROWS} rows with {field}; it has {len(frame)}.")
    names = [field, *POINT_FEATURES] if "local_hour" in frame else [field]
    matrix = point_matrix(frame, names)
    forest = IsolationForest(
        n_estimators=params["n_estimators"], contamination="auto", random_state=params["random_state"]
    ).fit(matrix)
    scores = -forest.decision_function(matrix)
    threshold = float(np.quantile(scores, 1 - params["contamination"]))
    onnx = to_onnx(forest, matrix[:1], target_opset=ONNX_OPSET).SerializeToString()

    values = frame[field].to_numpy(dtype="float64")
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    z = np.abs(robust_z(values, median, mad))
    flagged_forest = scores > threshold
    flagged_z = z > ROBUST_Z_THRESHOLD
    metrics = {
        "rows": len(frame),
        "threshold": threshold,
        "score_quantiles": {q: float(np.quantile(scores, float(q))) for q in ("0.5", "0.9", "0.99")},
        "flagged_fraction": float(flagged_forest.mean()),
        "baseline": {
            "method": "robust_z",
            "field": field,
            "median": median,
            "mad": mad,
            "z_threshold": ROBUST_Z_THRESHOLD,
            "flagged_fraction": float(flagged_z.mean()),
        },
        "agreement_with_baseline": float((flagged_forest == flagged_z).mean()),
    }
    return Trained(onnx=onnx, features=names, threshold=threshold, metrics=metrics, params=params)

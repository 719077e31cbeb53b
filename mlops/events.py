"""The event keys MLOps publishes (registered in MlopsConfig.ready()); rules and live dashboards
listen for them (docs/automations.md, docs/live.md)."""

from __future__ import annotations

ML_INFERENCE = "ml.inference"
ANOMALY_DETECTED = "anomaly.detected"

"""Anomaly inference on ingested batches: the `data.ingested` subscriber and the worker service.

The subscriber runs in the ingesting process after commit and only asks one kept question (does
this organization serve any anomaly model?); the batch goes to an `ml` worker as one task, so
inference costs the ingest transaction nothing. The worker scores every reading of a meter
with a production or staging model (one onnxruntime `run` per model version and batch):

- production: one `ml.inference` per batch (counts per model version) and one
  `anomaly.detected` per reading over the version's threshold (score, threshold, model
  version, the reading), so rules fire on it and live dashboards show it;
- staging (shadow mode): scored and recorded in InferenceRun for comparison, nothing published.

Tenant scope: one organization per event; plans only name that organization's meters.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
from django.db import transaction

from energy.events import DATA_INGESTED
from joulepoint.events import publish_many
from joulepoint.events.listeners import listener_answer
from joulepoint.events.types import Event
from joulepoint.platform.enqueue import enqueue
from mlops import selectors, taskqueue
from mlops.events import ANOMALY_DETECTED, ML_INFERENCE
from mlops.features import local_hour_circle, readings_point_matrix
from mlops.inference.sessions import plan_for, serving_observe, session_for
from mlops.models import InferenceRun

SOURCE = "mlops"


def on_event(event: Event) -> None:
    """Event-bus subscriber: hand a `data.ingested` batch to an `ml` worker when the
    organization serves an anomaly model (answer kept under the listeners' epoch, which every
    promotion moves)."""
    if event.key != DATA_INGESTED:
        return
    organization_id = event.organization_id
    if not listener_answer(
        ("mlops.anomaly", organization_id),
        lambda: selectors.anomaly_serving_exists(organization_id=organization_id),
    ):
        return
    enqueue(taskqueue.BATCH_SCORE, event.as_dict())


def event_from_message(message: dict) -> Event:
    return Event(
        organization_id=message["organization_id"],
        key=message["key"],
        payload=message["payload"],
        source=message["source"],
        occurred_at=datetime.fromisoformat(message["occurred_at"]),
        id=uuid.UUID(message["id"]),
    )


def batch_score(*, event: Event) -> dict:
    """Score one ingested batch with the serving anomaly models of its meters; returns a summary
    per (alias, model version). Running it twice records and publishes twice (at least once)."""
    organization_id = event.organization_id
    serving_observe()
    plan = plan_for(organization_id, lambda: selectors.anomaly_serving_plan(organization_id=organization_id))
    if not plan:
        return {}
    zones: dict[str, ZoneInfo] = {}
    # A batch's meters mostly share their timestamps (a gateway reads them all at once), so the
    # local hour is worked out once per timestamp and zone, not once per reading.
    circles: dict[tuple[str, str], tuple[float, float]] = {}
    # (alias, version id) → (described version, the readings it scores, their local hours)
    work: dict[tuple[str, int], tuple[dict, list, list]] = {}
    for reading in event.payload.get("readings", []):
        entry = plan.get(reading.get("meter_id"))
        if entry is None:
            continue
        key = (reading["timestamp"], entry["zone"])
        circle = circles.get(key)
        if circle is None:
            zone = zones.setdefault(entry["zone"], ZoneInfo(entry["zone"]))
            timestamp = datetime.fromisoformat(reading["timestamp"].replace("Z", "+00:00"))
            circle = circles[key] = local_hour_circle(timestamp, zone)
        for alias, described in entry["models"].items():
            slot = work.setdefault((alias, described["version_id"]), (described, [], []))
            slot[1].append(reading)
            slot[2].append(circle)
    summary: dict = {}
    published: list[dict] = []
    detected: list[dict] = []
    runs = []
    for (alias, version_id), (described, served, served_circles) in work.items():
        matrix, positions = readings_point_matrix(served, np.asarray(served_circles), described["features"])
        if not len(positions):
            continue  # none of them has the model's fields
        session, input_name = session_for(version_id=version_id, artifact=described["artifact"])
        outputs = session.run(None, {input_name: matrix})
        scores = -np.asarray(outputs[-1], dtype="float64").ravel()  # `scores` is the decision function
        threshold = described["threshold"]
        over = np.flatnonzero(scores > threshold) if threshold is not None else np.array([], dtype=int)
        production = alias == "production"
        runs.append(
            InferenceRun(
                organization_id=organization_id,
                version_id=version_id,
                alias=alias,
                event_id=str(event.id),
                scored=len(positions),
                anomalies=len(over),
                max_score=float(scores.max()),
                published=production,
            )
        )
        model = {k: described[k] for k in ("model_id", "model", "version_id", "version")}
        summary[f"{alias}:{version_id}"] = {**model, "alias": alias, "scored": len(positions), "anomalies": len(over)}
        if production:
            published.append({**model, "scored": len(positions), "anomalies": len(over), "threshold": threshold})
            for index in over:
                reading = served[positions[index]]
                detected.append(
                    {
                        "meter_id": reading.get("meter_id"),
                        "site_id": reading.get("site_id"),
                        "timestamp": reading.get("timestamp"),
                        "score": round(float(scores[index]), 6),
                        "threshold": threshold,
                        "model": model,
                        "reading": reading,
                        "ingest_event_id": str(event.id),
                    }
                )
    events = []
    if published:
        payload = {
            "ingest_event_id": str(event.id),
            "site_id": event.payload.get("site_id"),
            "scored": sum(item["scored"] for item in published),
            "anomalies": len(detected),
            "models": published,
        }
        events.append((organization_id, ML_INFERENCE, payload, None))
    events += [(organization_id, ANOMALY_DETECTED, payload, None) for payload in detected]
    with transaction.atomic():
        InferenceRun.objects.bulk_create(runs)
        if events:
            # One outbox INSERT and one dispatch message for the batch, not one per anomaly.
            publish_many(events, source=SOURCE)
    return summary

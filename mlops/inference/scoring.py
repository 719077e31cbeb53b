"""Anomaly inference on ingested batches: the `data.ingested` subscriber and the worker service.

The subscriber runs in the ingesting process after commit and only asks one kept question (does
this organization serve any anomaly model?); the batch goes to an `inference` worker as one
task, so inference costs the ingest transaction nothing. The worker scores every reading of a
meter with a production or staging model (one onnxruntime `run` per model version for all the
batches of a run: the batches queued behind a run are scored together by the next):

- production: one `ml.inference` per batch (counts per model version) and one
  `anomaly.detected` per reading over the version's threshold (score, threshold, model
  version, the reading), so rules fire on it and live dashboards show it;
- staging (shadow mode): scored and recorded in InferenceRun for comparison, nothing published.

Tenant scope: one organization per event, and each event's readings are looked up in its own
organization's plan only (a run may hold several organizations' batches).
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
    """Event-bus subscriber: hand a `data.ingested` batch to an `inference` worker when the
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


def batches_score(*, events: list[Event]) -> list[InferenceRun]:
    """Score ingested batches with the serving anomaly models of their meters, all at once: one
    onnxruntime run per model version over every batch's readings, one transaction. Each batch
    gets its own InferenceRun per (alias, model version) and its own `ml.inference`, as if scored
    alone. Returns the runs recorded. Scoring a batch twice records and publishes twice (at
    least once)."""
    serving_observe()
    runs: list[InferenceRun] = []
    published: dict[int, list[dict]] = {}  # index in `events` → its ml.inference model entries
    detected: dict[int, list[dict]] = {}  # index in `events` → its anomaly.detected payloads
    for (alias, version_id), (described, served, served_circles, owners) in _readings_by_version(events).items():
        matrix, positions = readings_point_matrix(served, np.asarray(served_circles), described["features"])
        if not len(positions):
            continue  # none of them has the model's fields
        session, input_name = session_for(version_id=version_id, artifact=described["artifact"])
        outputs = session.run(None, {input_name: matrix})
        scores = -np.asarray(outputs[-1], dtype="float64").ravel()  # `scores` is the decision function
        threshold = described["threshold"]
        is_over = scores > threshold if threshold is not None else np.zeros(len(scores), dtype=bool)
        owner_of = np.asarray(owners)[positions]
        production = alias == "production"
        model = {k: described[k] for k in ("model_id", "model", "version_id", "version")}
        for index in np.unique(owner_of).tolist():
            event = events[index]
            mine = np.flatnonzero(owner_of == index)
            over = mine[is_over[mine]]
            runs.append(
                InferenceRun(
                    organization_id=event.organization_id,
                    version_id=version_id,
                    alias=alias,
                    event_id=str(event.id),
                    scored=len(mine),
                    anomalies=len(over),
                    max_score=float(scores[mine].max()),
                    published=production,
                )
            )
            if not production:
                continue
            published.setdefault(index, []).append(
                {**model, "scored": len(mine), "anomalies": len(over), "threshold": threshold}
            )
            for position in over.tolist():
                reading = served[positions[position]]
                detected.setdefault(index, []).append(
                    {
                        "meter_id": reading.get("meter_id"),
                        "site_id": reading.get("site_id"),
                        "timestamp": reading.get("timestamp"),
                        "score": round(float(scores[position]), 6),
                        "threshold": threshold,
                        "model": model,
                        "reading": reading,
                        "ingest_event_id": str(event.id),
                    }
                )
    outbox = []
    for index, models in published.items():
        event = events[index]
        found = detected.get(index, [])
        payload = {
            "ingest_event_id": str(event.id),
            "site_id": event.payload.get("site_id"),
            "scored": sum(item["scored"] for item in models),
            "anomalies": len(found),
            "models": models,
        }
        outbox.append((event.organization_id, ML_INFERENCE, payload, None))
        outbox += [(event.organization_id, ANOMALY_DETECTED, item, None) for item in found]
    with transaction.atomic():
        InferenceRun.objects.bulk_create(runs)
        if outbox:
            # One outbox INSERT and one dispatch message for them all, not one per anomaly.
            publish_many(outbox, source=SOURCE)
    return runs


def _readings_by_version(events: list[Event]) -> dict[tuple[str, int], tuple[dict, list, list, list]]:
    """(alias, version id) → (the described version, the readings it scores, their local hours,
    the index in `events` of each reading's batch), each batch looked up in its own organization's
    serving plan."""
    zones: dict[str, ZoneInfo] = {}
    # A batch's meters mostly share their timestamps (a gateway reads them all at once), so the
    # local hour is worked out once per timestamp and zone, not once per reading.
    circles: dict[tuple[str, str], tuple[float, float]] = {}
    work: dict[tuple[str, int], tuple[dict, list, list, list]] = {}
    for index, event in enumerate(events):
        organization_id = event.organization_id
        plan = plan_for(organization_id, lambda o=organization_id: selectors.anomaly_serving_plan(organization_id=o))
        for reading in event.payload.get("readings", []) if plan else ():
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
                slot = work.setdefault((alias, described["version_id"]), (described, [], [], []))
                slot[1].append(reading)
                slot[2].append(circle)
                slot[3].append(index)
    return work

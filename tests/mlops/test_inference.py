"""Inference into the event stream: a promoted anomaly model scores ingested batches in an `ml`
worker task; outliers publish anomaly.detected (rules fire, webhooks go out); staging only
records; sessions are kept per process and reloaded when a promotion moves an alias."""

from __future__ import annotations

import json
import uuid

import pytest

import joulepoint.events.tasks  # noqa: F401  (registers the outbox dispatch task in this process, as a worker does)
from automations import signing
from automations.models import Delivery
from joulepoint.events.models import OutboxEvent
from mlops.inference import sessions
from mlops.models import Assignment, InferenceRun, ModelVersion
from mlops.registry.services import promotion_create
from tests import factories
from tests.automations.receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def reading(total_power: float, minute: int = 0) -> dict:
    # 16:00 UTC is 18:00 in Berlin: the trained profile expects about 4.25 kW then.
    return {"total_power": total_power, "timestamp": f"2025-10-16T16:{minute:02d}:00Z"}


def promote(org, model_version_id: int, meter, alias: str = "production"):
    version = ModelVersion.objects.get(pk=model_version_id)
    assignment, _ = Assignment.objects.get_or_create(
        organization=org, model=version.model, purpose="anomaly", meter=meter
    )
    return promotion_create(organization=org, assignment=assignment, alias=alias, version=version, actor="test")


def events(key: str) -> list[dict]:
    return [row.payload for row in OutboxEvent.objects.filter(key=key).order_by("created_at")]


def test_promote_a_model_ingest_an_outlier_and_anomaly_detected_is_published(org, trained, history, device_client):
    _model, _job, version = trained
    promote(org, version["id"], history)
    device = device_client(history)
    assert device.post("/api/energy/energy-data/", reading(4300.0, 0)).status_code == 201
    assert events("anomaly.detected") == []
    [inference] = events("ml.inference")
    assert inference["scored"] == 1 and inference["anomalies"] == 0
    assert inference["models"][0]["version_id"] == version["id"]

    assert device.post("/api/energy/energy-data/", reading(60000.0, 1)).status_code == 201
    [detected] = events("anomaly.detected")
    assert detected["meter_id"] == history.pk and detected["site_id"] == history.site_id
    assert detected["score"] > detected["threshold"] == version["threshold"]
    assert detected["model"]["version_id"] == version["id"] and detected["model"]["version"] == 1
    assert detected["reading"]["total_power"] == 60000.0
    assert detected["timestamp"] == "2025-10-16T16:01:00Z"


def test_a_meter_without_a_model_is_not_scored(org, trained, history, device_client, site):
    _model, _job, version = trained
    promote(org, version["id"], history)
    unwatched = factories.MeterFactory(site=site)
    assert device_client(unwatched).post("/api/energy/energy-data/", reading(60000.0)).status_code == 201
    assert not InferenceRun.objects.exists() and events("anomaly.detected") == []


def test_staging_scores_in_shadow_and_publishes_nothing(org, trained, history, device_client):
    _model, _job, version = trained
    promote(org, version["id"], history, alias="staging")
    assert device_client(history).post("/api/energy/energy-data/", reading(60000.0)).status_code == 201
    [run] = InferenceRun.objects.all()
    assert (run.alias, run.scored, run.anomalies, run.published) == ("staging", 1, 1, False)
    assert events("anomaly.detected") == [] and events("ml.inference") == []


def test_a_rule_on_anomaly_detected_delivers_a_signed_webhook(org, trained, history, device_client):
    _model, _job, version = trained
    promote(org, version["id"], history)
    with Receiver() as receiver:
        action = factories.ActionFactory(
            organization=org, config={"url": receiver.url, "method": "POST", "headers": {}, "secret": SECRET,
                                      "timeout_seconds": 2},
        )  # fmt: skip
        factories.RuleFactory(
            organization=org, name="Anomalies", event_key="anomaly.detected", dedupe_template="{meter_id}",
            jsonlogic={">": [{"var": "event.score"}, {"var": "event.threshold"}]}, actions=[action],
        )  # fmt: skip
        assert device_client(history).post("/api/energy/energy-data/", reading(60000.0)).status_code == 201
        [delivery] = Delivery.objects.all()
        assert delivery.status == "succeeded", delivery.last_error
        [request] = receiver.requests
    assert signing.verify(secret=SECRET, body=request["body"], headers=request["headers"])
    body = json.loads(request["body"])
    assert body["type"] == "anomaly.detected"
    assert body["data"]["event"]["meter_id"] == history.pk and body["data"]["event"]["reading"]["total_power"] == 60000


def test_sessions_are_kept_and_reloaded_after_a_promotion(org, trained, history, device_client, api, eager_tasks):
    model, job, version = trained
    promote(org, version["id"], history)
    device = device_client(history)
    loads = sessions.sessions_loaded()
    device.post("/api/energy/energy-data/", reading(4300.0, 0))
    device.post("/api/energy/energy-data/", reading(4300.0, 1))
    assert sessions.sessions_loaded() == loads + 1  # one load for two batches

    # A second version (retrained), promoted: the next batch is scored by it, loaded afresh.
    body = {k: job[k] for k in ("model", "dataset_version", "trainer")}
    rerun = api.post(
        "/api/ml/training-jobs", {**body, "params": {"n_estimators": 20, "random_state": 1}}, format="json"
    )
    api.post(f"/api/ml/training-jobs/{rerun.json()['id']}/run")
    newer = api.get(f"/api/ml/models/{model['id']}/versions").json()[0]
    assert newer["number"] == 2
    promote(org, newer["id"], history)
    device.post("/api/energy/energy-data/", reading(4300.0, 2))
    assert sessions.sessions_loaded() == loads + 2
    latest = InferenceRun.objects.order_by("-id").first()
    assert latest.version_id == newer["id"]


def test_batches_scored_together_are_recorded_and_published_as_if_scored_alone(
    org, trained, history, device_client, site, monkeypatch
):
    """What a coalesced run of the `inference` worker does (mlops.tasks.batch_score_task with the
    messages of several ingested batches): one model run for all, each batch its own results."""
    from mlops import tasks
    from mlops.inference import scoring

    _model, _job, version = trained
    promote(org, version["id"], history)
    promote(org, version["id"], history, alias="staging")
    messages = []
    monkeypatch.setattr(scoring, "enqueue", lambda _name, message: messages.append(message))
    device = device_client(history)
    assert device.post("/api/energy/energy-data/", reading(4300.0, 0)).status_code == 201
    mixed_batch = [reading(60000.0, 1), reading(4250.0, 2)]
    assert device.post("/api/energy/energy-data/bulk", mixed_batch, sign=True).status_code == 201
    unwatched = device_client(factories.MeterFactory(site=site))
    assert unwatched.post("/api/energy/energy-data/", reading(60000.0, 3)).status_code == 201
    assert len(messages) == 3  # the organization serves a model: every batch goes to the worker

    # Another organization's batch in the same run, naming this organization's meter: its own
    # organization serves nothing, so it is not scored (each batch is planned in its own tenant).
    foreign = {**messages[1], "id": str(uuid.uuid4()), "organization_id": factories.OrganizationFactory().pk}
    tasks.batch_score_task(*messages, foreign)
    normal, mixed, _unwatched = (message["id"] for message in messages)  # no model serves the third
    together = {(run.event_id, run.alias): run for run in InferenceRun.objects.all()}
    assert {run.organization_id for run in together.values()} == {org.pk}
    assert set(together) == {(normal, "production"), (normal, "staging"), (mixed, "production"), (mixed, "staging")}
    assert (together[normal, "production"].scored, together[normal, "production"].anomalies) == (1, 0)
    assert (together[mixed, "production"].scored, together[mixed, "production"].anomalies) == (2, 1)
    inferences = {payload["ingest_event_id"]: payload for payload in events("ml.inference")}
    assert set(inferences) == {normal, mixed}  # staging publishes nothing
    assert (inferences[normal]["scored"], inferences[mixed]["scored"], inferences[mixed]["anomalies"]) == (1, 2, 1)
    [detected] = events("anomaly.detected")
    assert detected["ingest_event_id"] == mixed and detected["reading"]["total_power"] == 60000.0

    # The same batches scored one by one score the same.
    InferenceRun.objects.all().delete()
    for message in messages:
        tasks.batch_score_task(message)
    alone = {(run.event_id, run.alias): run for run in InferenceRun.objects.all()}
    assert set(alone) == set(together)
    for key, run in alone.items():
        assert (run.scored, run.anomalies) == (together[key].scored, together[key].anomalies)
        assert run.max_score == pytest.approx(together[key].max_score)

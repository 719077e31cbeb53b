"""MLOps end to end on PostgreSQL and Redis: an anomaly model promoted through the API, readings
ingested over the device HTTP API of the real ASGI server, a real Celery worker on the `default`,
`ml` and `inference` queues scoring each batch, and a rule on `anomaly.detected` delivering a signed webhook
to a real receiver: exactly one, for the outlier, none for the normal readings."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from django.conf import settings
from django.db import connection
from standardwebhooks.webhooks import Webhook

from automations.models import Delivery
from joulepoint.events.models import OutboxEvent
from mlops.models import InferenceRun
from mlops.registry.services import model_create, model_version_register
from mlops.training.anomaly import anomaly_train
from tests import factories
from tests.automations.receiver import Receiver
from tests.automations.worker import Worker, purge_queue
from tests.conftest import _token

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.CELERY_BROKER_URL,
        reason="needs a Celery broker: set REDIS_URL (or CELERY_BROKER_URL); "
        "the embedded default runs tasks in-process",
    ),
]

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NORMAL_W = [4000.0, 4080.0, 3930.0, 4010.0, 3970.0]
OUTLIER_W = 90000.0


@pytest.fixture(autouse=True)
def postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://…): the worker, the server and the test share it")


@pytest.fixture
def worker():
    purge_queue(settings.CELERY_BROKER_URL)
    # The worker reads the model's ONNX artifact from the media root this test process wrote it to.
    running = Worker(
        {"AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE": "1", "MEDIA_ROOT": str(settings.MEDIA_ROOT)},
        queues="default,ml,inference",
    ).start()
    yield running
    running.stop()


def anomaly_version(org):
    """A registered anomaly model trained on a week of 4 kW ± 60 W, every hour of the day alike."""
    rng = np.random.default_rng(7)
    hours = np.arange(0, 7 * 24, 0.25)
    frame = pd.DataFrame({"total_power": 4000 + rng.normal(0, 60, len(hours)), "local_hour": (hours % 24).astype(int)})
    trained = anomaly_train(frame, {"n_estimators": 20, "random_state": 0})
    model = model_create(organization=org, name="Depot anomalies", purpose="anomaly")
    return model_version_register(
        model=model, onnx=trained.onnx, trainer="anomaly_isolation_forest", params=trained.params,
        metrics=trained.metrics, features=trained.features, threshold=trained.threshold,
    )  # fmt: skip


def wait_for(check, what: str, worker: Worker, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; worker log:\n{worker.output()}")
        time.sleep(0.2)


def test_a_promoted_model_flags_the_outlier_and_a_rule_delivers_one_signed_webhook(live_url, worker, org, site):
    meter = factories.MeterFactory(site=site)
    version = anomaly_version(org)
    bearer = {"Authorization": f"Bearer {_token(org, ['ml:read', 'ml:write'])}"}
    with httpx.Client(base_url=live_url, timeout=30) as client, Receiver() as receiver:
        # A rule that would deliver once per anomalous reading: a webhook for a normal reading
        # could not hide behind a throttle or a shared dedupe key.
        action = factories.ActionFactory(
            organization=org,
            config={"url": receiver.url, "method": "POST", "headers": {}, "secret": SECRET, "timeout_seconds": 5},
        )
        factories.RuleFactory(
            organization=org, name="Anomaly", event_key="anomaly.detected", throttle_seconds=0,
            dedupe_template="{meter_id}:{timestamp}", actions=[action],
            jsonlogic={">": [{"var": "event.score"}, {"var": "event.threshold"}]},
        )  # fmt: skip

        assignment = {"model": version.model_id, "purpose": "anomaly", "meter": meter.pk}
        response = client.post("/api/ml/assignments", json=assignment, headers=bearer)
        assert response.status_code == 201, response.text
        promotion = {"assignment": response.json()["id"], "alias": "production", "version": version.pk, "reason": "e2e"}
        response = client.post("/api/ml/promotions", json=promotion, headers=bearer)
        assert response.status_code == 201, response.text

        powers = [*NORMAL_W[:3], OUTLIER_W, *NORMAL_W[3:]]
        for minute, power in enumerate(powers):
            timestamp = f"2025-10-16T10:{minute:02d}:00Z"
            reading = {"total_power": power, "total_energy": 1500.0 + minute, "timestamp": timestamp}
            response = client.post(
                "/api/energy/energy-data/", json=reading, headers={"X-Device-Key": str(meter.device_key)}
            )
            assert response.status_code == 201, response.text

        # Every batch scored (one production run each, written with its events in one transaction),
        # every event handed to the rules, and the deliveries they made settled.
        wait_for(lambda: InferenceRun.objects.filter(alias="production").count() == len(powers), "scoring", worker)
        wait_for(lambda: not OutboxEvent.objects.exclude(status="dispatched").exists(), "the outbox", worker)
        wait_for(
            lambda: Delivery.objects.exists() and not Delivery.objects.exclude(status="succeeded").exists(),
            "the delivery",
            worker,
        )
        time.sleep(1)  # a second webhook, if there were one, would have had its chance
        requests = list(receiver.requests)

    assert OutboxEvent.objects.filter(key="anomaly.detected").count() == 1
    # One batch of the six flagged one reading (the ml worker may score batches out of order;
    # the webhook below says which reading it was).
    assert sorted(run.anomalies for run in InferenceRun.objects.all()) == [0, 0, 0, 0, 0, 1]
    [request] = requests
    assert request["code"] == 200
    # The Standard Webhooks reference implementation checks the signature (raises if it is wrong).
    Webhook(SECRET).verify(request["body"], request["headers"])
    body = json.loads(request["body"])
    assert body["type"] == "anomaly.detected"
    event = body["data"]["event"]
    assert event["meter_id"] == meter.pk
    assert event["reading"]["total_power"] == OUTLIER_W
    assert event["timestamp"] == "2025-10-16T10:03:00Z"
    assert event["model"]["version_id"] == version.pk
    assert event["score"] > event["threshold"]

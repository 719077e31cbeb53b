"""MLOps end to end: a promoted anomaly model, an outlier ingested over HTTP (live server), a
real Celery worker on the `default` and `ml` queues scoring the batch, and a rule on
`anomaly.detected` delivering a signed webhook to a real receiver. Needs a broker (REDIS_URL)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from django.conf import settings

from automations import signing
from automations.models import Delivery
from mlops.models import Assignment
from mlops.registry.services import model_create, model_version_register, promotion_create
from mlops.training.anomaly import anomaly_train
from tests import factories
from tests.automations.receiver import Receiver
from tests.automations.worker import Worker, purge_queue
from tests.e2e.test_automations_e2e import SECRET, post_reading, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.CELERY_BROKER_URL, reason="needs a Celery broker: set REDIS_URL"),
]


def test_promote_ingest_an_outlier_and_a_rule_delivers_a_signed_webhook(live_server, org, site, settings):
    purge_queue(settings.CELERY_BROKER_URL)
    meter = factories.MeterFactory(site=site)
    hours = np.arange(0, 7 * 24, 0.25)
    frame = pd.DataFrame({"total_power": 4000 + 200 * np.sin(hours), "local_hour": (hours % 24).astype(int)})
    trained = anomaly_train(frame, {"n_estimators": 10})
    model = model_create(organization=org, name="E2E anomalies", purpose="anomaly")
    version = model_version_register(
        model=model, onnx=trained.onnx, trainer="anomaly_isolation_forest", params=trained.params,
        metrics=trained.metrics, features=trained.features, threshold=trained.threshold,
    )  # fmt: skip
    assignment = Assignment.objects.create(organization=org, model=model, purpose="anomaly", meter=meter)
    promotion_create(organization=org, assignment=assignment, alias="production", version=version)
    worker = Worker(
        {"AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE": "1", "MEDIA_ROOT": settings.MEDIA_ROOT}, queues="default,ml"
    ).start()
    try:
        with Receiver() as receiver:
            action = factories.ActionFactory(
                organization=org,
                config={"url": receiver.url, "method": "POST", "headers": {}, "secret": SECRET, "timeout_seconds": 2},
            )
            factories.RuleFactory(
                organization=org, name="Anomaly", event_key="anomaly.detected", dedupe_template="{meter_id}",
                jsonlogic={">": [{"var": "event.score"}, {"var": "event.threshold"}]}, actions=[action],
            )  # fmt: skip
            post_reading(live_server, meter, 90000, 0)
            wait_for(lambda: Delivery.objects.filter(status="succeeded").exists(), 60, worker, "the delivery")
            [request] = [r for r in receiver.requests if r["code"] == 200]
    finally:
        worker.stop()
    assert signing.verify(secret=SECRET, body=request["body"], headers=request["headers"])
    body = json.loads(request["body"])
    assert body["type"] == "anomaly.detected"
    event = body["data"]["event"]
    assert event["meter_id"] == meter.pk and event["model"]["version_id"] == version.pk
    assert event["reading"]["total_power"] == 90000 and event["score"] > event["threshold"]

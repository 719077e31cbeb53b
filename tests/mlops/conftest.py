"""MLOps fixtures: artifacts in a temporary storage, tasks in-process, a meter with a week of
history, and a trained anomaly model built the way a user would (API: dataset → build → job →
run)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from celery import current_app
from django.core.cache import cache

from tests import factories

T0 = datetime(2025, 10, 6, tzinfo=UTC)  # a Monday
DAYS = 7


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE = True
    # OAuth2 client secrets are hashed on creation; the production hasher is slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield tmp_path / "media"
    cache.clear()


@pytest.fixture
def eager_tasks():
    """Celery tasks run in-process in both test modes (with REDIS_URL the suite has a broker).
    Tests using it are `django_db(transaction=True)`: tasks are queued on commit."""
    conf = current_app.conf
    saved = conf.task_always_eager, conf.task_eager_propagates
    conf.task_always_eager, conf.task_eager_propagates = True, True
    yield
    conf.task_always_eager, conf.task_eager_propagates = saved


def load_profile(index: int, *, step_minutes: int = 15) -> float:
    """A depot's day: 2 kW at night, 5 kW around 14:00 local, a little deterministic noise."""
    hours = index * step_minutes / 60.0
    noise = np.random.default_rng(index).normal(0, 60)
    return 3500.0 + 1500.0 * math.cos(2 * math.pi * ((hours + 2 - 14) % 24) / 24) + noise


@pytest.fixture
def history(meter):
    """A week of 15-minute readings on `meter`, rolled up."""
    rows = factories.reading_series(T0, timedelta(minutes=15), DAYS * 96, total_power=load_profile)
    factories.readings_create(meter, rows)
    return meter


def make_dataset(api, meter, **overrides) -> dict:
    body = {
        "name": "Depot load",
        "meters": [meter.pk],
        "fields": ["total_power"],
        "features": ["local_hour", "weekday", "holiday", "rolling_mean_1h", "lag_1d"],
        "start": "2025-10-06T00:00:00Z",
        "end": "2025-10-13T00:00:00Z",
        "holiday_country": "DE",
        **overrides,
    }
    response = api.post("/api/ml/datasets", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def build(api, dataset_id: int) -> dict:
    response = api.post(f"/api/ml/datasets/{dataset_id}/build")
    assert response.status_code == 202, response.content
    return api.get(f"/api/ml/datasets/{dataset_id}/versions").json()[0]


def train(api, dataset_version_id: int, *, model_name="Depot anomalies", purpose="anomaly", trainer=None, params=None):
    model = api.post("/api/ml/models", {"name": model_name, "purpose": purpose}, format="json")
    assert model.status_code == 201, model.content
    body = {
        "model": model.json()["id"],
        "dataset_version": dataset_version_id,
        "trainer": trainer or "anomaly_isolation_forest",
        "params": params or {},
    }
    job = api.post("/api/ml/training-jobs", body, format="json")
    assert job.status_code == 201, job.content
    ran = api.post(f"/api/ml/training-jobs/{job.json()['id']}/run")
    assert ran.status_code == 202, ran.content
    return model.json(), api.get(f"/api/ml/training-jobs/{job.json()['id']}").json()


@pytest.fixture
def trained(api, history, eager_tasks):
    """(model, job, version) of an anomaly model trained on the history of `history`'s meter."""
    dataset = make_dataset(api, history)
    version = build(api, dataset["id"])
    # 20 trees keep the ONNX export quick in tests (it grows faster than linearly with trees).
    model, job = train(api, version["id"], params={"n_estimators": 20})
    [model_version] = api.get(f"/api/ml/models/{model['id']}/versions").json()
    return model, job, model_version

"""External trainers: a signed job spec goes out, the trainer downloads the dataset with its
download token and completes the job once with an ONNX upload; wrong, reused or expired tokens,
files that are not ONNX and files over the limit are refused and change nothing."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import timedelta

import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from automations import signing
from mlops.models import ModelVersion, TrainingJob
from mlops.trainer_example import make_server
from mlops.training.anomaly import anomaly_train
from tests.automations.receiver import Receiver
from tests.mlops.conftest import build, make_dataset

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def trainer(settings):
    with Receiver() as receiver:
        settings.MLOPS_EXTERNAL_TRAINER_URL = receiver.url
        settings.MLOPS_EXTERNAL_TRAINER_SECRET = SECRET
        yield receiver


@pytest.fixture
def spec(api, history, eager_tasks, trainer):
    """The job spec the trainer received for a running external job."""
    version = build(api, make_dataset(api, history)["id"])
    model = api.post("/api/ml/models", {"name": "Outsourced", "purpose": "anomaly"}, format="json").json()
    job = api.post(
        "/api/ml/training-jobs",
        {"model": model["id"], "dataset_version": version["id"], "trainer": "external", "params": {"depth": 3}},
        format="json",
    ).json()
    assert api.post(f"/api/ml/training-jobs/{job['id']}/run").status_code == 202
    assert TrainingJob.objects.get(pk=job["id"]).status == "running"
    [request] = trainer.requests
    assert signing.verify(secret=SECRET, body=request["body"], headers=request["headers"])
    return json.loads(request["body"])


def as_trainer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def onnx_model(parquet: bytes) -> bytes:
    """What a reference trainer does with the dataset: train and export ONNX."""
    return anomaly_train(pd.read_parquet(io.BytesIO(parquet)), {"n_estimators": 10}).onnx


def complete(spec, model_bytes: bytes, token: str | None = None):
    upload = SimpleUploadedFile("model.onnx", model_bytes, content_type="application/octet-stream")
    body = {"model": upload, "metrics": json.dumps({"auc": 0.9}), "features": json.dumps(["total_power"]),
            "threshold": "0.1"}  # fmt: skip
    return as_trainer(token or spec["callback"]["token"]).post(spec["callback"]["url"], body, format="multipart")


def download(spec, token: str | None = None):
    return as_trainer(token or spec["dataset"]["token"]).get(spec["dataset"]["url"])


def test_the_spec_names_the_dataset_the_callback_and_the_parameters(spec):
    assert spec["params"] == {"depth": 3} and spec["model"]["purpose"] == "anomaly"
    assert spec["dataset"]["url"].endswith(f"/api/ml/training-jobs/{spec['job_id']}/dataset")
    assert spec["callback"]["url"].endswith(f"/api/ml/training-jobs/{spec['job_id']}/complete")
    assert spec["dataset"]["token"] != spec["callback"]["token"]


def test_the_trainer_downloads_trains_and_completes_once(spec, api):
    response = download(spec)
    assert response.status_code == 200
    parquet = b"".join(response.streaming_content)
    assert complete(spec, onnx_model(parquet)).status_code == 200
    job = TrainingJob.objects.get(pk=spec["job_id"])
    assert job.status == "succeeded" and job.metrics == {"auc": 0.9}
    [version] = ModelVersion.objects.filter(job=job)
    assert version.features == ["total_power"] and version.threshold == 0.1 and version.trainer == "external"
    # The token was single use, and so was the download token.
    again = complete(spec, onnx_model(parquet))
    assert again.status_code == 403 and ModelVersion.objects.count() == 1
    assert download(spec).status_code == 403


def test_wrong_tokens_are_401_and_change_nothing(spec):
    assert complete(spec, b"x", token="not-the-token").status_code == 401
    assert complete(spec, b"x", token=spec["dataset"]["token"]).status_code == 401  # single purpose
    assert download(spec, token=spec["callback"]["token"]).status_code == 401
    assert TrainingJob.objects.get(pk=spec["job_id"]).status == "running"


def test_an_upload_that_is_not_onnx_is_400_and_the_token_still_works(spec):
    response = complete(spec, b"\x80\x04\x95 a pickle, say")
    assert response.status_code == 400 and "model" in response.json()
    assert not ModelVersion.objects.exists()
    assert complete(spec, onnx_model(b"".join(download(spec).streaming_content))).status_code == 200


def test_an_upload_over_the_limit_is_413(spec, settings):
    settings.MLOPS_MAX_MODEL_BYTES = 100
    response = complete(spec, onnx_model(b"".join(download(spec).streaming_content)))
    assert response.status_code == 413
    assert TrainingJob.objects.get(pk=spec["job_id"]).status == "running" and not ModelVersion.objects.exists()


def test_an_expired_token_is_403(spec):
    TrainingJob.objects.filter(pk=spec["job_id"]).update(tokens_expire_at=timezone.now() - timedelta(seconds=1))
    assert complete(spec, b"x").status_code == 403
    assert download(spec).status_code == 403


def test_without_a_configured_trainer_the_job_fails_saying_so(api, history, eager_tasks, settings):
    settings.MLOPS_EXTERNAL_TRAINER_URL = ""
    version = build(api, make_dataset(api, history)["id"])
    model = api.post("/api/ml/models", {"name": "Outsourced", "purpose": "anomaly"}, format="json").json()
    job = api.post(
        "/api/ml/training-jobs", {"model": model["id"], "dataset_version": version["id"], "trainer": "external"},
        format="json",
    ).json()  # fmt: skip
    api.post(f"/api/ml/training-jobs/{job['id']}/run")
    job = api.get(f"/api/ml/training-jobs/{job['id']}").json()
    assert job["status"] == "failed" and "MLOPS_EXTERNAL_TRAINER_URL" in job["error"]


def test_the_reference_trainer_completes_a_job_against_a_real_server(api, history, eager_tasks, settings, live_server):
    """mlops.trainer_example on a local port; Joulepoint served by a real (threaded) server."""
    results: list = []
    server = make_server(host="127.0.0.1", port=0, secret=SECRET, results=results)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings.MLOPS_EXTERNAL_TRAINER_URL = f"http://127.0.0.1:{server.server_address[1]}/"
        settings.MLOPS_EXTERNAL_TRAINER_SECRET = SECRET
        settings.MLOPS_PUBLIC_URL = live_server.url
        version = build(api, make_dataset(api, history)["id"])
        model = api.post("/api/ml/models", {"name": "Reference", "purpose": "anomaly"}, format="json").json()
        body = {"model": model["id"], "dataset_version": version["id"], "trainer": "external", "params": {}}
        job = api.post("/api/ml/training-jobs", body, format="json").json()
        api.post(f"/api/ml/training-jobs/{job['id']}/run")
        deadline = time.monotonic() + 120
        while not results and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        server.shutdown()
    assert results and results[0]["status"] == 200, results
    job = api.get(f"/api/ml/training-jobs/{job['id']}").json()
    assert job["status"] == "succeeded" and job["metrics"]["trainer"] == "trainer_example"
    [registered] = api.get(f"/api/ml/models/{model['id']}/versions").json()
    assert registered["features"] == ["total_power"] and registered["threshold"] > 0

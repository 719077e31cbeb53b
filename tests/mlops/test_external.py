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


def progress_url(spec) -> str:
    return spec["callback"]["url"].replace("/complete", "/progress")


def test_progress_is_recorded_visible_and_renews_the_tokens(spec, api):
    before = TrainingJob.objects.get(pk=spec["job_id"]).tokens_expire_at
    trainer = as_trainer(spec["callback"]["token"])
    response = trainer.post(progress_url(spec), {"percent": 40, "message": "fold 2 of 5"}, format="json")
    assert response.status_code == 200, response.content
    job = api.get(f"/api/ml/training-jobs/{spec['job_id']}").json()
    assert job["status"] == "running" and job["progress_percent"] == 40
    assert job["progress_message"] == "fold 2 of 5" and job["progress_at"] is not None
    assert "progress 40%: fold 2 of 5" in job["logs"]
    assert TrainingJob.objects.get(pk=spec["job_id"]).tokens_expire_at > before
    # The completion token is not spent by a report: the trainer still completes with it.
    assert complete(spec, onnx_model(download(spec).getvalue())).status_code == 200


def test_bad_progress_reports_are_refused_and_change_nothing(spec):
    url = progress_url(spec)
    assert as_trainer(spec["dataset"]["token"]).post(url, {"percent": 10}, format="json").status_code == 401
    trainer = as_trainer(spec["callback"]["token"])
    for body in ({"percent": 101}, {"percent": "half"}, {"percent": True}, {"message": "no percent"},
                 {"percent": 5, "message": "x" * 501}):  # fmt: skip
        response = trainer.post(url, body, format="json")
        assert response.status_code == 400, body
    job = TrainingJob.objects.get(pk=spec["job_id"])
    assert job.progress_percent is None and job.progress_at is None


def test_the_sweep_expires_a_job_whose_trainer_never_came_back(spec, api):
    from mlops.training.external import training_jobs_expire

    trainer = as_trainer(spec["callback"]["token"])
    assert trainer.post(progress_url(spec), {"percent": 10}, format="json").status_code == 200
    model_bytes = onnx_model(download(spec).getvalue())  # trained, but never uploaded in time
    assert training_jobs_expire() == 0  # its tokens are still valid: nothing to sweep
    later = TrainingJob.objects.get(pk=spec["job_id"]).tokens_expire_at + timedelta(seconds=1)
    assert training_jobs_expire(now=later) == 1
    job = api.get(f"/api/ml/training-jobs/{spec['job_id']}").json()
    assert job["status"] == "expired" and job["finished_at"] is not None
    assert "did not complete before its tokens expired" in job["error"] and "last progress 10%" in job["error"]
    assert training_jobs_expire(now=later) == 0  # once
    # A late trainer is refused and registers nothing.
    TrainingJob.objects.filter(pk=spec["job_id"]).update(tokens_expire_at=timezone.now() + timedelta(hours=1))
    assert download(spec).status_code == 403 and complete(spec, model_bytes).status_code == 403
    assert not ModelVersion.objects.filter(job_id=spec["job_id"]).exists()
    # An expired job may run again (a new spec, new tokens).
    assert api.post(f"/api/ml/training-jobs/{spec['job_id']}/run").status_code == 202


def test_the_sweep_runs_from_beat_on_the_ml_queue(settings):
    from joulepoint.events.management.commands.periodic_tasks import beat_schedule, periodic_task_run

    entry = settings.CELERY_BEAT_SCHEDULE["mlops-training-jobs-expire"]
    assert entry["options"] == {"queue": "ml"}
    assert beat_schedule()["mlops-training-jobs-expire"][0] == "mlops.training_jobs_expire"
    assert periodic_task_run("mlops.training_jobs_expire")


def test_the_sweep_expires_a_built_in_job_whose_worker_died(api, trained):
    _model, job, _version = trained
    started = timezone.now() - timedelta(seconds=700)
    TrainingJob.objects.filter(pk=job["id"]).update(status="running", started_at=started, timeout_seconds=600)
    from mlops.training.external import training_jobs_expire

    assert training_jobs_expire(now=started + timedelta(seconds=600)) == 0  # within its timeout + grace
    assert training_jobs_expire() == 1
    job = TrainingJob.objects.get(pk=job["id"])
    assert job.status == "expired" and "worker stopped" in job.error

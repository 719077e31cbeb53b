"""Training jobs: the built-in trainers on a built dataset, the ONNX models they register, and
the states a job refuses to move from."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

from mlops.artifacts import artifact_read
from mlops.models import ModelVersion, TrainingJob
from tests import factories
from tests.mlops.conftest import build, make_dataset, train

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_anomaly_trainer_registers_an_onnx_model_with_its_threshold_and_baseline(api, trained):
    _model, job, version = trained
    assert job["status"] == "succeeded", (job["error"], job["logs"])
    assert "succeeded" in job["logs"] and job["finished_at"] and job["started_at"]
    assert version["number"] == 1 and version["job"] == job["id"] and version["trainer"] == job["trainer"]
    assert version["features"] == ["total_power", "local_hour_sin", "local_hour_cos"]
    assert version["threshold"] == job["metrics"]["threshold"] > 0
    baseline = job["metrics"]["baseline"]
    assert baseline["method"] == "robust_z" and 2000 < baseline["median"] < 5000
    assert 0 < job["metrics"]["flagged_fraction"] < 0.05

    # What is served is ONNX, scored by onnxruntime: an outlier scores over the threshold.
    row = ModelVersion.objects.get(pk=version["id"])
    session = onnxruntime.InferenceSession(artifact_read(row.artifact), providers=["CPUExecutionProvider"])
    normal = [4250.0, -1.0, 0.0]  # 4.25 kW at 18:00 local, as every day
    outlier = [60000.0, -1.0, 0.0]
    scores = -session.run(None, {"X": np.asarray([normal, outlier], dtype=np.float32)})[1].ravel()
    assert scores[0] < row.threshold < scores[1]


def test_the_demand_forecaster_is_backtested_against_seasonal_naive(api, history, eager_tasks):
    dataset = make_dataset(api, history)
    version = build(api, dataset["id"])
    _model, job = train(
        api, version["id"], model_name="Depot demand", purpose="demand_forecast", trainer="demand_forecaster",
        params={"n_estimators": 50},
    )  # fmt: skip
    assert job["status"] == "succeeded", (job["error"], job["logs"])
    backtest = job["metrics"]["backtest"]
    assert backtest["baseline"] == "seasonal_naive_daily"
    assert backtest["mae"] > 0 and backtest["baseline_mae"] > 0
    # A repeating day with noise: the model should not be far worse than repeating yesterday.
    assert backtest["mae"] < 2 * backtest["baseline_mae"]


def test_a_job_on_a_version_that_is_not_ready_is_409(api, org):
    version = factories.DatasetVersionFactory(dataset__organization=org, status="building")
    model = factories.RegisteredModelFactory(organization=org)
    job = api.post(
        "/api/ml/training-jobs",
        {"model": model.pk, "dataset_version": version.pk, "trainer": "anomaly_isolation_forest"},
        format="json",
    ).json()
    response = api.post(f"/api/ml/training-jobs/{job['id']}/run/")
    assert response.status_code == 409
    assert "building" in response.json()["detail"]
    assert TrainingJob.objects.get(pk=job["id"]).status == "created"


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"trainer": "gpt"}, "trainer"),
        ({"params": {"n_estimators": 5}}, "params"),
        ({"params": {"learning_rate": 2}}, "params"),
        ({"trainer": "demand_forecaster"}, "trainer"),  # an anomaly model is no demand forecaster
        ({"timeout_seconds": 0}, "timeout_seconds"),
    ],
)
def test_bad_jobs_are_400_naming_the_field(api, org, overrides, field):
    version = factories.DatasetVersionFactory(dataset__organization=org)
    model = factories.RegisteredModelFactory(organization=org)
    body = {"model": model.pk, "dataset_version": version.pk, "trainer": "anomaly_isolation_forest", **overrides}
    response = api.post("/api/ml/training-jobs", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not TrainingJob.objects.exists()


def test_a_foreign_dataset_version_is_refused(api, org, other_org):
    foreign = factories.DatasetVersionFactory(dataset__organization=other_org)
    model = factories.RegisteredModelFactory(organization=org)
    body = {"model": model.pk, "dataset_version": foreign.pk, "trainer": "anomaly_isolation_forest"}
    response = api.post("/api/ml/training-jobs", body, format="json")
    assert response.status_code == 400 and "dataset_version" in response.json()


def test_cancel_and_the_states_a_job_refuses(api, trained, org):
    _model, job, _version = trained
    assert api.post(f"/api/ml/training-jobs/{job['id']}/run").status_code == 409  # succeeded already
    assert api.post(f"/api/ml/training-jobs/{job['id']}/cancel").status_code == 409
    pending = factories.TrainingJobFactory(dataset_version__dataset__organization=org)
    cancelled = api.post(f"/api/ml/training-jobs/{pending.pk}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_a_job_that_fails_registers_nothing(api, org, history, eager_tasks):
    dataset = make_dataset(api, history, features=[])  # no local_hour: still trainable on the field alone
    version = build(api, dataset["id"])
    _model, job = train(api, version["id"], params={"field": "voltage_a"})
    assert job["status"] == "failed"
    assert "voltage_a" in job["error"]
    assert not ModelVersion.objects.exists()

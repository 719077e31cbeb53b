"""GET /api/energy/analytics/forecast?method=model: energy's forecast view serving the subject's
production demand model through the provider mlops registers (energy imports no mlops)."""

from __future__ import annotations

import pytest

from mlops.models import Assignment, ModelVersion
from mlops.registry.services import promotion_create
from tests.mlops.conftest import build, make_dataset, train

pytestmark = pytest.mark.django_db(transaction=True)
QUERY = {"method": "model", "end": "2025-10-13T00:00:00Z", "history_days": 7, "horizon": 36, "target": "demand"}


def test_the_assigned_production_model_forecasts_with_its_backtest_beside_the_naive_one(api, org, history, eager_tasks):
    version = build(api, make_dataset(api, history)["id"])
    model, job = train(
        api, version["id"], model_name="Depot demand", purpose="demand_forecast", trainer="demand_forecaster",
        params={"n_estimators": 50},
    )  # fmt: skip
    assert job["status"] == "succeeded", job["error"]
    model_version = ModelVersion.objects.get(model_id=model["id"])
    assignment = Assignment.objects.create(
        organization=org, model_id=model["id"], purpose="demand_forecast", meter=history
    )
    promotion_create(organization=org, assignment=assignment, alias="production", version=model_version)

    response = api.get("/api/energy/analytics/forecast", {"meter": history.pk, **QUERY})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["method"] == "model" and len(body["points"]) == 36
    assert body["model"]["version_id"] == model_version.pk and body["model"]["model"] == "Depot demand"
    assert body["baseline"]["method"] == "seasonal_naive_daily"
    assert body["backtest"]["mae_kw"] < 2 * body["baseline"]["mae_kw"]
    # The profile swings between 2 and 5 kW every day; so must the forecast.
    values = [point["kw"] for point in body["points"]]
    assert 1.5 < min(values) < 3 and 4 < max(values) < 5.5


def test_no_model_in_production_is_a_400_naming_the_method(api, history):
    response = api.get("/api/energy/analytics/forecast", {"meter": history.pk, **QUERY})
    assert response.status_code == 400
    assert response.json()["param"] == "method" and "in production" in response.json()["detail"]

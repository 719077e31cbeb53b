"""The built-in PV forecaster: pvlib's clear sky at the site scaled to the PV meter's history,
trained through the API, backtested against seasonal-naive, served by
GET /api/energy/analytics/forecast?method=model for the PV meter."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pvlib
import pytest

from mlops.models import Assignment, ModelVersion
from mlops.registry.services import promotion_create
from tests import factories
from tests.mlops.conftest import T0, build, make_dataset, train

pytestmark = pytest.mark.django_db(transaction=True)
BERLIN = {"latitude": 52.52, "longitude": 13.405, "timezone": "Europe/Berlin"}
W_PER_W_M2 = 20.0  # the array: 20 W for each W/m² of global horizontal irradiance
# One cloudy day in the week; the last day (the backtest's) is clear, the one before it is not,
# so repeating yesterday is far off and the clear sky times the learnt ratio is close.
CLOUDS = [1.0, 0.95, 1.0, 0.9, 1.0, 0.6, 1.0]


def generation() -> list[float]:
    """The week's PV power at 15-minute steps, each step's clear sky at its middle."""
    moments = pd.date_range(T0 + timedelta(minutes=7.5), periods=7 * 96, freq="15min")
    ghi = pvlib.location.Location(BERLIN["latitude"], BERLIN["longitude"]).get_clearsky(moments)["ghi"]
    return [round(W_PER_W_M2 * float(value) * CLOUDS[i // 96], 1) for i, value in enumerate(ghi)]


@pytest.fixture
def pv_meter(org):
    site = factories.SiteFactory(organization=org, **BERLIN)
    pv = factories.MeterFactory(site=site, kind="pv")
    series = factories.reading_series(T0, timedelta(minutes=15), 7 * 96, total_power=generation())
    factories.readings_create(pv, series)
    return pv


def pv_trained(api, pv_meter):
    version = build(api, make_dataset(api, pv_meter, name="Roof PV", features=[])["id"])
    return train(api, version["id"], model_name="Roof PV", purpose="pv_forecast", trainer="pv_forecaster")


def test_the_pv_forecaster_learns_the_arrays_ratio_and_beats_yesterday_repeated(api, pv_meter, eager_tasks):
    model, job = pv_trained(api, pv_meter)
    assert job["status"] == "succeeded", job["error"] + job["logs"]
    [version] = api.get(f"/api/ml/models/{model['id']}/versions").json()
    assert version["trainer"] == "pv_forecaster"
    assert version["features"] == ["clearsky_ghi", "clearsky_dni", "clearsky_dhi"]
    metrics = version["metrics"]
    assert metrics["location"] == {"latitude": 52.52, "longitude": 13.405}
    # The week's average sky is 92 % of the clear one: the learnt ratio sits near 20 x 0.92.
    assert 0.85 * W_PER_W_M2 < metrics["performance_ratio_w_per_w_m2"] < W_PER_W_M2
    backtest = metrics["backtest"]
    assert backtest["baseline"] == "seasonal_naive_daily" and backtest["horizon_hours"] == 24
    assert backtest["mae"] < 0.5 * backtest["baseline_mae"]


def test_the_pv_meter_forecasts_with_its_production_model(api, org, pv_meter, eager_tasks):
    model, _job = pv_trained(api, pv_meter)
    model_version = ModelVersion.objects.get(model_id=model["id"])
    assignment = Assignment.objects.create(
        organization=org, model_id=model["id"], purpose="pv_forecast", meter=pv_meter
    )
    promotion_create(organization=org, assignment=assignment, alias="production", version=model_version)

    query = {"meter": pv_meter.pk, "method": "model", "end": "2025-10-13T00:00:00Z", "history_days": 7, "horizon": 24}
    response = api.get("/api/energy/analytics/forecast", query)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["target"] == "generation" and body["model"]["version_id"] == model_version.pk
    assert body["baseline"]["method"] == "seasonal_naive_daily"
    points = {point["ts"][11:16]: point["kw"] for point in body["points"]}
    assert len(points) == 24
    # Night is dark; the October noon (UTC 11:00 in Berlin) is the peak, near 20 W per W/m² of clear sky.
    assert points["00:00"] == 0 and points["20:00"] == 0
    assert max(points, key=points.get) in ("10:00", "11:00")
    noon = pd.DatetimeIndex([pd.Timestamp("2025-10-13T11:30:00Z")])
    clear_noon = pvlib.location.Location(52.52, 13.405).get_clearsky(noon)["ghi"].iloc[0]
    assert points["11:00"] == pytest.approx(W_PER_W_M2 * clear_noon / 1000, rel=0.15)


def test_a_site_without_coordinates_is_refused_when_the_job_is_created(api, org, eager_tasks):
    pv = factories.MeterFactory(site=factories.SiteFactory(organization=org, latitude=None), kind="pv")
    factories.readings_create(pv, factories.reading_series(T0, timedelta(minutes=15), 3 * 96, total_power=1000.0))
    version = build(api, make_dataset(api, pv, features=[])["id"])
    model = api.post("/api/ml/models", {"name": "PV", "purpose": "pv_forecast"}, format="json").json()
    body = {"model": model["id"], "dataset_version": version["id"], "trainer": "pv_forecaster"}
    response = api.post("/api/ml/training-jobs", body, format="json")
    assert response.status_code == 400
    assert "latitude and longitude" in response.json()["dataset_version"][0]


def test_the_pv_forecaster_trains_pv_models_only(api, pv_meter, eager_tasks):
    version = build(api, make_dataset(api, pv_meter, features=[])["id"])
    model = api.post("/api/ml/models", {"name": "Demand", "purpose": "demand_forecast"}, format="json").json()
    body = {"model": model["id"], "dataset_version": version["id"], "trainer": "pv_forecaster"}
    response = api.post("/api/ml/training-jobs", body, format="json")
    assert response.status_code == 400 and "pv_forecast" in response.json()["trainer"][0]

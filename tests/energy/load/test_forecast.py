"""Headroom forecast: effective limit over the next 24 h minus forecast demand plus PV."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from energy.analytics.subjects import floor_time
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_headroom_combines_limits_demand_and_pv(api, site):
    factories.SiteConstraintFactory(site=site, max_import_kw=100.0)
    factories.LoadScheduleFactory(site=site, days_of_week=[1, 2, 3, 4, 5, 6, 7], max_import_kw=50.0)
    load = factories.MeterFactory(site=site, kind="load")
    pv = factories.MeterFactory(site=site, kind="pv")
    start = floor_time(timezone.now(), 900) - timedelta(days=3)
    step = timedelta(minutes=15)
    factories.readings_create(load, factories.reading_series(start, step, 3 * 96, total_power=12_000.0))
    factories.readings_create(pv, factories.reading_series(start, step, 3 * 96, total_power=2_000.0))

    response = api.get("/api/energy/load/forecast", {"site": site.pk})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["site"] == site.pk and body["interval"] == "15min" and len(body["points"]) == 96
    first = body["points"][0]
    assert first["demand_kw"] == pytest.approx(12.0) and first["pv_kw"] == pytest.approx(2.0)
    assert first["net_kw"] == pytest.approx(10.0)
    by_source = {point["limit_source"]: point for point in body["points"]}
    assert by_source["constraint"]["headroom_kw"] == pytest.approx(90.0)
    assert by_source["schedule"]["headroom_kw"] == pytest.approx(40.0)  # 17:00-20:00 Berlin, 50 kW
    assert sum(1 for p in body["points"] if p["limit_source"] == "schedule") == 12

"""Load schedules generated from a tariff's peak periods (POST /tariffs/{id}/load-schedules)."""

from __future__ import annotations

from datetime import date, time

import pytest

from energy.load.models import LoadSchedule
from tests import factories

pytestmark = pytest.mark.django_db

WEEK, REST = ["weekday"], ["weekend", "holiday"]
PEAK_PERIODS = [
    {"name": "peak", "months": [6, 8], "day_types": WEEK, "start": "17:00", "end": "20:00", "rate": "0.40"},
    {"name": "off-peak", "months": [6, 8], "day_types": WEEK, "start": "00:00", "end": "17:00", "rate": "0.20"},
    {"name": "off-peak", "months": [6, 8], "day_types": WEEK, "start": "20:00", "end": "24:00", "rate": "0.20"},
    {"name": "off-peak", "months": [9, 5], "day_types": WEEK, "start": "00:00", "end": "24:00", "rate": "0.20"},
    {"name": "off-peak", "months": [1, 12], "day_types": REST, "start": "00:00", "end": "24:00", "rate": "0.20"},
]


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def tariff(org):
    return factories.TariffFactory(
        organization=org, name="Summer peak", versions=[{"valid_from": date(2020, 1, 1), "periods": PEAK_PERIODS}]
    )


def test_the_highest_rate_periods_become_schedules_and_regenerating_replaces_them(api, tariff, site):
    body = {"site": site.pk, "max_import_kw": 30.0, "on": "2026-03-01"}
    response = api.post(f"/api/energy/billing/tariffs/{tariff.pk}/load-schedules", body, format="json")
    assert response.status_code == 201, response.content
    (row,) = response.json()
    schedule = LoadSchedule.objects.get(pk=row["id"])
    assert schedule.source == LoadSchedule.Source.TARIFF and schedule.source_reference == f"tariff:{tariff.pk}"
    assert schedule.days_of_week == [1, 2, 3, 4, 5]
    assert (schedule.start_time, schedule.end_time) == (time(17), time(20))
    assert (schedule.valid_from, schedule.valid_to) == (date(2026, 6, 1), date(2026, 8, 31))
    assert schedule.max_import_kw == 30.0

    again = api.post(
        f"/api/energy/billing/tariffs/{tariff.pk}/load-schedules", {**body, "max_import_kw": 25.0}, format="json"
    )
    assert again.status_code == 201
    assert list(LoadSchedule.objects.values_list("max_import_kw", flat=True)) == [25.0]


def test_a_named_period_a_foreign_site_and_bad_input(api, tariff, site, other_org):
    url = f"/api/energy/billing/tariffs/{tariff.pk}/load-schedules"
    named = api.post(url, {"site": site.pk, "max_import_kw": 10.0, "period": "off-peak"}, format="json")
    assert named.status_code == 201 and len(named.json()) == 4  # weekday windows x3, weekend (holidays left out)
    missing = api.post(url, {"site": site.pk, "max_import_kw": 10.0, "period": "shoulder"}, format="json")
    assert missing.status_code == 400 and "period" in missing.content.decode()
    foreign = factories.SiteFactory(organization=other_org)
    assert api.post(url, {"site": foreign.pk, "max_import_kw": 10.0}, format="json").status_code == 400
    assert api.post(url, {"site": site.pk, "max_import_kw": -1.0}, format="json").status_code == 400
    early = api.post(url, {"site": site.pk, "max_import_kw": 10.0, "on": "2019-01-01"}, format="json")
    assert early.status_code == 400 and "tariff" in early.content.decode()

"""The limits and allocation API: validation, warnings, demand response lifecycle, setpoints."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from energy.load.models import DemandResponseEvent, LoadSchedule, SiteConstraint
from energy.load.services import allocation_run
from energy.models import Reading
from joulepoint.events.models import OutboxEvent
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_constraint_create_and_warning_below_chargers_minimums(api, site):
    factories.ChargerFactory(site=site, min_current_a=6.0, phases=3)  # 4.14 kW at minimum
    grid = factories.MeterFactory(site=site, kind="grid")
    response = api.post(
        "/api/energy/constraints/",
        {"site": site.pk, "max_import_kw": 3.0, "grid_meter": grid.pk, "safety_margin_kw": 0.5},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["max_import_kw"] == 3.0 and body["grid_meter"] == grid.pk
    assert len(body["warnings"]) == 1 and "max_import_kw" in body["warnings"][0]
    ok = api.patch(f"/api/energy/constraints/{body['id']}", {"max_import_kw": 50.0}, format="json")
    assert ok.status_code == 200 and ok.json()["warnings"] == []
    # One per site.
    again = api.post("/api/energy/constraints/", {"site": site.pk, "max_import_kw": 1.0}, format="json")
    assert again.status_code == 400 and "one per site" in again.content.decode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_import_kw": -1.0}, "max_import_kw"),
        ({"max_import_kw": 10.0, "safety_margin_kw": -1.0}, "safety_margin_kw"),
        ({"max_import_kw": "ten"}, "max_import_kw"),
    ],
)
def test_bad_constraints_are_400_naming_the_field(api, site, body, field):
    response = api.post("/api/energy/constraints/", {"site": site.pk, **body}, format="json")
    assert response.status_code == 400
    assert field in response.content.decode()
    assert not SiteConstraint.objects.exists()


def test_grid_meter_of_another_site_is_refused(api, site, org):
    other_site = factories.SiteFactory(organization=org)
    meter = factories.MeterFactory(site=other_site, kind="grid")
    response = api.post(
        "/api/energy/constraints/", {"site": site.pk, "max_import_kw": 10.0, "grid_meter": meter.pk}, format="json"
    )
    assert response.status_code == 400 and "grid_meter" in response.content.decode()


SCHEDULE = {"name": "Peak", "days_of_week": [1, 2, 3, 4, 5], "start_time": "17:00", "end_time": "20:00"}


def test_schedule_across_midnight_is_accepted(api, site):
    body = {**SCHEDULE, "site": site.pk, "start_time": "22:00", "end_time": "06:00", "max_import_kw": 20.0}
    response = api.post("/api/energy/schedules/", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["warnings"] == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"end_time": "17:00"}, "end_time"),
        ({"valid_from": "2026-05-02", "valid_to": "2026-05-01"}, "valid_to"),
        ({"days_of_week": [0, 8]}, "days_of_week"),
        ({"days_of_week": []}, "days_of_week"),
        ({"days_of_week": [1, 1]}, "days_of_week"),
        ({"max_import_kw": -5.0}, "max_import_kw"),
        ({"max_import_kw": None}, "max_import_kw"),
    ],
)
def test_bad_schedules_are_400_naming_the_field(api, site, change, field):
    body = {**SCHEDULE, "site": site.pk, "max_import_kw": 20.0, **change}
    response = api.post("/api/energy/schedules/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.content.decode()
    assert not LoadSchedule.objects.exists()


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/api/energy/constraints/", {"max_import_kw": 10.0}),
        ("/api/energy/schedules/", {**SCHEDULE, "max_import_kw": 20.0}),
    ],
)
def test_a_limit_stays_with_its_site(api, site, org, route, body):
    created = api.post(route, {**body, "site": site.pk}, format="json").json()
    other_site = factories.SiteFactory(organization=org)

    moved = api.patch(f"{route}{created['id']}", {"site": other_site.pk, "max_import_kw": 1.0}, format="json")

    assert moved.status_code == 400 and "site" in moved.json()
    unchanged = api.get(f"{route}{created['id']}").json()
    assert (unchanged["site"], unchanged["max_import_kw"]) == (site.pk, body["max_import_kw"])


def test_demand_response_rules_and_cancel(api, site):
    start = timezone.now() + timedelta(hours=1)
    window = {"site": site.pk, "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=2)).isoformat()}
    both = api.post(
        "/api/energy/demand-response/events/", {**window, "limit_kw": 5, "reduction_percent": 10}, format="json"
    )
    neither = api.post("/api/energy/demand-response/events/", window, format="json")
    backwards = api.post(
        "/api/energy/demand-response/events/",
        {**window, "ends_at": start.isoformat(), "limit_kw": 5.0},
        format="json",
    )
    assert both.status_code == neither.status_code == backwards.status_code == 400
    assert "limit_kw" in neither.content.decode() and "ends_at" in backwards.content.decode()
    assert not DemandResponseEvent.objects.exists()

    created = api.post("/api/energy/demand-response/events/", {**window, "reduction_percent": 30.0}, format="json")
    assert created.status_code == 201, created.content
    overlapping = api.post("/api/energy/demand-response/events/", {**window, "limit_kw": 10.0}, format="json")
    assert overlapping.status_code == 201
    event_id = created.json()["id"]
    assert api.get(f"/api/energy/demand-response/events/{event_id}").json()["status"] == "scheduled"
    cancelled = api.post(f"/api/energy/demand-response/events/{event_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    listed = api.get("/api/energy/demand-response/events/", {"site": site.pk, "status": "scheduled"}).json()
    assert [row["id"] for row in listed["results"]] == [overlapping.json()["id"]]


def test_setpoints_history_filters(api, energy_reader, site):
    constraint = factories.SiteConstraintFactory(site=site, max_import_kw=30.0)
    session = factories.ChargingSessionFactory(charger=factories.ChargerFactory(site=site))
    other = factories.ChargingSessionFactory(charger=factories.ChargerFactory(site=site))
    now = timezone.now()
    Reading.objects.create(meter=constraint.grid_meter, ts=now, total_power=5_000.0, received_at=now)
    allocation_run(site=site, now=now)
    allocation_run(site=site, now=now + timedelta(seconds=5))
    response = energy_reader.get("/api/energy/load/setpoints/", {"session": session.pk})
    assert response.status_code == 200
    rows = response.json()["results"]
    assert len(rows) == 2 and {row["session"] for row in rows} == {session.pk}
    assert rows[0]["limit_source"] == "constraint" and rows[0]["site"] == site.pk
    assert rows[0]["current_a"] > 0
    later = energy_reader.get("/api/energy/load/setpoints/", {"start": (now + timedelta(seconds=1)).isoformat()})
    assert {row["session"] for row in later.json()["results"]} == {session.pk, other.pk}
    assert len(later.json()["results"]) == 2
    assert api.post("/api/energy/load/setpoints/", {}, format="json").status_code == 405
    assert OutboxEvent.objects.filter(key="load.setpoint").count() == 2


def test_forecast_needs_a_constraint_and_history(api, site, other_org):
    assert api.get("/api/energy/load/forecast").status_code == 400
    assert api.get("/api/energy/load/forecast", {"site": "x"}).status_code == 400
    assert api.get("/api/energy/load/forecast", {"site": site.pk}).status_code == 400
    foreign = factories.SiteFactory(organization=other_org)
    assert api.get("/api/energy/load/forecast", {"site": foreign.pk}).status_code == 404


def test_windows_list_schedules_across_midnight_and_demand_response_in_time_order(api, site):
    site.timezone = "Europe/Berlin"
    site.save()
    now = timezone.now()
    every_day = [1, 2, 3, 4, 5, 6, 7]
    night = factories.LoadScheduleFactory(
        site=site, name="Night", days_of_week=every_day, start_time=time(22, 0), end_time=time(6, 0), max_import_kw=30.0
    )
    event = factories.DemandResponseEventFactory(
        site=site, program="Operator", starts_at=now + timedelta(hours=1), ends_at=now + timedelta(hours=2)
    )
    factories.DemandResponseEventFactory(
        site=site, starts_at=now + timedelta(hours=30), ends_at=now + timedelta(hours=31)
    )  # beyond 24 h

    response = api.get("/api/energy/load/windows", {"site": site.pk})
    assert response.status_code == 200, response.content
    windows = response.json()["windows"]
    assert [w["starts_at"] for w in windows] == sorted(w["starts_at"] for w in windows)
    assert [(w["kind"], w["id"]) for w in windows if w["kind"] == "demand_response"] == [("demand_response", event.pk)]
    nights = [w for w in windows if w["kind"] == "schedule"]
    assert nights and all(w["id"] == night.pk and w["max_import_kw"] == 30.0 for w in nights)
    zone = ZoneInfo("Europe/Berlin")
    for w in nights:  # 22:00 to 06:00 the next day, local
        begins = datetime.fromisoformat(w["starts_at"]).astimezone(zone)
        ends = datetime.fromisoformat(w["ends_at"]).astimezone(zone)
        assert (begins.time(), ends.time()) == (time(22, 0), time(6, 0))
        assert ends.date() == begins.date() + timedelta(days=1)


def test_windows_refuse_bad_hours_and_a_foreign_site(api, site):
    assert api.get("/api/energy/load/windows", {"site": site.pk, "hours": "0"}).status_code == 400
    assert api.get("/api/energy/load/windows", {"site": site.pk, "hours": "x"}).status_code == 400
    assert api.get("/api/energy/load/windows").status_code == 400
    foreign = factories.SiteFactory()
    assert api.get("/api/energy/load/windows", {"site": foreign.pk}).status_code == 404

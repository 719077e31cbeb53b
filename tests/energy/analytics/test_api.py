"""Analytics routes: authentication, tenant isolation, bad parameters, matrix, live trail, forecast,
annotations."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from energy.analytics.subjects import SUBJECT_RESOLVERS, Subject, subject_resolver_register
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    # OAuth2 client secrets are hashed when the test tokens are made; the real hasher is slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


BASE = "/api/energy/analytics/"
ROUTES = ["live_trail", "kpi", "matrix", "export", "forecast", "annotations"]
T0 = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("slash", ["", "/"])
def test_routes_answer_with_and_without_slash(api, meter, route, slash):
    factories.readings_create(
        meter, factories.reading_series(timezone.now() - timedelta(days=3), timedelta(hours=1), 72, total_power=1000.0)
    )
    response = api.get(f"{BASE}{route}{slash}", {"meter": meter.pk, "horizon": 6})
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("route", ROUTES)
def test_anonymous_401_and_missing_scope_403(anonymous_api, api_client_factory, org, meter, route):
    assert anonymous_api.get(f"{BASE}{route}", {"meter": meter.pk}).status_code == 401
    billing_only = api_client_factory(org, ["billing:read"])
    assert billing_only.get(f"{BASE}{route}", {"meter": meter.pk}).status_code == 403


@pytest.mark.parametrize("route", ROUTES)
def test_another_tenants_meter_or_group_is_404(outsider_api, org, meter, route):
    group = factories.MeterGroupFactory(organization=org, meters=[meter])
    for params in ({"meter": meter.pk}, {"group": group.pk}):
        response = outsider_api.get(f"{BASE}{route}", params)
        assert response.status_code == 404, (params, response.content)
        assert response.json()["detail"]


def test_a_group_never_reaches_meters_of_another_tenant(api, org, other_org, meter):
    # Even a corrupted membership (another tenant's meter in our group) is not read.
    foreign = factories.MeterFactory(site=factories.SiteFactory(organization=other_org))
    factories.readings_create(foreign, factories.reading_series(T0, timedelta(minutes=1), 15, total_power=5000.0))
    group = factories.MeterGroupFactory(organization=org, meters=[meter, foreign])
    data = api.get(f"{BASE}kpi", {"group": group.pk, "start": "2026-06-10T10:00Z", "end": "2026-06-10T11:00Z"}).json()
    assert data["subject"]["meter_ids"] == [meter.pk]
    assert data["peak_demand"]["kw"] is None


@pytest.mark.parametrize(
    ("route", "params", "param", "message"),
    [
        ("kpi", {"start": "2026-06-10T12:00Z", "end": "2026-06-10T10:00Z"}, "end", "end must be after start"),
        ("kpi", {"start": "yesterday"}, "start", "ISO 8601"),
        ("kpi", {"tz": "Mars/Olympus_Mons"}, "tz", "Unknown time zone"),
        ("kpi", {"start": "2020-01-01", "end": "2026-01-01"}, "end", "longer than 366 days"),
        ("export", {"interval": "7min"}, "interval", "Unknown interval '7min'"),
        ("export", {"fields": "total_power,colour"}, "fields", "Unknown field(s) colour"),
        ("export", {"start": "2026-01-01", "end": "2026-03-01"}, "end", "longer than 31 days for raw data"),
        ("matrix", {"shape": "month"}, "shape", "Unknown shape"),
        ("live_trail", {"minutes": "5000"}, "minutes", "between 1 and 1440"),
        ("live_trail", {"fields": "bogus"}, "fields", "Unknown field"),
        ("forecast", {"horizon": "200"}, "horizon", "between 1 and 168"),
        ("forecast", {"method": "prophet"}, "method", "Unknown method"),
        ("forecast", {"interval": "1d"}, "interval", "Unknown interval"),
        ("forecast", {"target": "generation"}, "target", "no PV meters"),
    ],
)
def test_bad_parameters_are_400_with_a_clear_message(api, meter, route, params, param, message):
    response = api.get(f"{BASE}{route}", {"meter": meter.pk, **params})
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["param"] == param
    assert message in body["detail"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "exactly one subject"),
        ({"meter": 1, "group": 2}, "exactly one subject"),
        ({"meter": "abc"}, "positive integer"),
        ({"meter": str(2**64)}, "positive integer"),
    ],
)
def test_bad_subjects_are_400(api, params, message):
    response = api.get(f"{BASE}kpi", params)
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_account_subject_plugs_in_through_the_resolver_registry(api, org, meter, monkeypatch):
    monkeypatch.setitem(SUBJECT_RESOLVERS, "account", SUBJECT_RESOLVERS["account"])

    def resolve_account(*, organization, pk):
        return Subject(kind="account", id=pk, name="Tenant A", meters=[meter], timezone="Europe/Berlin")

    subject_resolver_register("account", resolve_account)
    factories.readings_create(meter, factories.reading_series(T0, timedelta(minutes=1), 15, total_power=4000.0))
    data = api.get(f"{BASE}kpi", {"account": 3, "start": "2026-06-10T10:00Z", "end": "2026-06-10T11:00Z"}).json()
    assert data["subject"] == {"type": "account", "id": 3, "name": "Tenant A", "meter_ids": [meter.pk]}
    assert data["peak_demand"]["kw"] == pytest.approx(4.0)


def test_matrix_day_by_hour_across_spring_forward_in_berlin(api, org):
    tz = ZoneInfo("Europe/Berlin")
    meter = factories.MeterFactory(site=factories.SiteFactory(organization=org, timezone="Europe/Berlin"))
    start = datetime(2026, 3, 28, tzinfo=tz).astimezone(UTC) - timedelta(minutes=15)
    rows = factories.reading_series(start, timedelta(minutes=15), 3 * 24 * 4, total_energy=lambda i: 0.25 * i)
    factories.readings_create(meter, rows)
    data = api.get(f"{BASE}matrix", {"meter": meter.pk, "start": "2026-03-28", "end": "2026-03-30"}).json()
    assert data["unit"] == "kWh"
    assert data["method"] == "register"
    assert [row["date"] for row in data["rows"]] == ["2026-03-28", "2026-03-29"]
    saturday, sunday = data["rows"]
    assert saturday["values"] == [1.0] * 24 and saturday["total"] == 24.0
    assert sunday["values"][2] is None  # 02:00-03:00 does not exist that day
    assert sunday["values"][:2] == [1.0, 1.0] and sunday["values"][3:] == [1.0] * 21
    assert sunday["total"] == 23.0 and sunday["weekday"] == "Sun"


def test_matrix_fall_back_in_new_york_adds_the_repeated_hour(api, org):
    tz = ZoneInfo("America/New_York")
    meter = factories.MeterFactory(site=factories.SiteFactory(organization=org, timezone="America/New_York"))
    start = datetime(2026, 11, 1, tzinfo=tz).astimezone(UTC) - timedelta(minutes=15)
    factories.readings_create(
        meter, factories.reading_series(start, timedelta(minutes=15), 26 * 4, total_energy=lambda i: 0.25 * i)
    )
    data = api.get(f"{BASE}matrix", {"meter": meter.pk, "start": "2026-11-01", "end": "2026-11-02"}).json()
    (row,) = data["rows"]
    assert row["values"][1] == 2.0  # 01:00-02:00 happened twice
    assert row["total"] == 25.0


def test_matrix_in_kolkata_and_weekday_shape(api, org):
    tz = ZoneInfo("Asia/Kolkata")
    meter = factories.MeterFactory(site=factories.SiteFactory(organization=org, timezone="Asia/Kolkata"))
    start = datetime(2026, 1, 5, tzinfo=tz).astimezone(UTC) - timedelta(minutes=15)  # a Monday

    # Hour h of each day uses h+1 kWh... as 4 quarter increments.
    def register(i):
        return sum((((k - 1) // 4) % 24 + 1) / 4 for k in range(1, i + 1))

    rows = factories.reading_series(start, timedelta(minutes=15), 14 * 96 + 1, total_energy=register)
    factories.readings_create(meter, rows)
    params = {"meter": meter.pk, "start": "2026-01-05", "end": "2026-01-19"}
    data = api.get(f"{BASE}matrix", params).json()
    assert data["tz"] == "Asia/Kolkata"
    assert data["start"] == "2026-01-04T18:30:00Z"
    assert len(data["rows"]) == 14
    assert data["rows"][0]["values"] == pytest.approx([float(h + 1) for h in range(24)])
    weekly = api.get(f"{BASE}matrix", {**params, "shape": "weekday"}).json()
    assert [row["label"] for row in weekly["rows"]] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    assert weekly["rows"][3]["values"] == pytest.approx([float(h + 1) for h in range(24)])
    # The same matrix in UTC shifts by 5:30: UTC hour 0 holds local 05:30-06:30.
    utc = api.get(f"{BASE}matrix", {**params, "tz": "UTC"}).json()
    assert utc["rows"][1]["values"][0] == pytest.approx((6 + 7) / 2)


def test_live_trail_raw_then_downsampled(api, meter, site):
    now = timezone.now().replace(microsecond=0)
    factories.readings_create(
        meter,
        factories.reading_series(
            now - timedelta(minutes=10), timedelta(minutes=1), 10, total_power=lambda i: 100.0 * i
        ),
    )
    data = api.get(f"{BASE}live_trail", {"meter": meter.pk, "minutes": 15}).json()
    (series,) = data["series"]
    assert series["mode"] == "raw"
    assert [point["total_power"] for point in series["points"]] == [100.0 * i for i in range(10)]

    busy = factories.MeterFactory(site=site)
    rows = factories.reading_series(
        now - timedelta(minutes=20), timedelta(seconds=1), 1200, total_power=lambda i: float(i % 10)
    )
    factories.readings_create(busy, rows, rollup=False)
    data = api.get(f"{BASE}live_trail", {"meter": busy.pk, "minutes": 30, "fields": "total_power"}).json()
    (series,) = data["series"]
    assert series["mode"] == "downsampled"
    assert series["bucket_seconds"] == 3
    assert len(series["points"]) <= 600
    point = series["points"][1]["total_power"]
    assert point["min"] <= point["avg"] <= point["max"]


def hourly_history(meter, days: int, value):
    end = timezone.now().replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    rows = factories.reading_series(start, timedelta(minutes=15), days * 96, total_power=lambda i: value(i // 4))
    factories.readings_create(meter, rows)
    return end


def test_forecast_seasonal_naive_daily_is_exact_on_a_daily_pattern(api, meter):
    def daily(hour_index):
        return 1000.0 + 500.0 * math.sin(2 * math.pi * (hour_index % 24) / 24)

    end = hourly_history(meter, 14, daily)
    data = api.get(f"{BASE}forecast", {"meter": meter.pk, "method": "seasonal_naive_daily", "horizon": 48}).json()
    assert data["target"] == "demand" and data["unit"] == "kW"
    assert len(data["points"]) == 48
    assert data["points"][0]["ts"] == end.isoformat().replace("+00:00", "Z")
    assert data["backtest"]["mae_kw"] == pytest.approx(0.0, abs=1e-9)
    assert data["backtest"]["mape_pct"] == pytest.approx(0.0, abs=1e-9)
    # The first forecast hour repeats the same hour a day earlier.
    assert data["points"][6]["kw"] == pytest.approx(daily(14 * 24 + 6) / 1000)


def test_forecast_methods_and_backtest_errors(api, meter):
    hourly_history(meter, 10, lambda h: 1000.0 + 10.0 * h)  # a straight line
    drift = api.get(f"{BASE}forecast", {"meter": meter.pk, "method": "drift", "horizon": 24}).json()
    assert drift["backtest"]["mae_kw"] == pytest.approx(0.0, abs=1e-9)
    assert drift["points"][1]["kw"] - drift["points"][0]["kw"] == pytest.approx(0.01)
    average = api.get(
        f"{BASE}forecast", {"meter": meter.pk, "method": "moving_average", "window": 4, "horizon": 2}
    ).json()
    # Backtest: mean of hours 234..237 predicts hours 238, 239 → errors 2.5 and 3.5 steps of 10 W.
    assert average["backtest"]["mae_kw"] == pytest.approx(0.03)
    weekly = api.get(f"{BASE}forecast", {"meter": meter.pk, "method": "seasonal_naive_weekly", "horizon": 24}).json()
    assert weekly["backtest"]["mae_kw"] == pytest.approx(1.68)  # a week of slope: 168 h * 10 W
    too_long = api.get(f"{BASE}forecast", {"meter": meter.pk, "method": "seasonal_naive_weekly", "horizon": 168})
    assert too_long.status_code == 400
    assert "needs at least 336 h of history" in too_long.json()["detail"]


def test_forecast_generation_for_pv_meters_of_a_group(api, org, site):
    pv = factories.MeterFactory(site=site, kind="pv")
    load = factories.MeterFactory(site=site, kind="load")
    group = factories.MeterGroupFactory(organization=org, meters=[pv, load])
    hourly_history(pv, 3, lambda h: max(0.0, 1000.0 * math.sin(math.pi * ((h % 24) - 6) / 12)))
    hourly_history(load, 3, lambda h: 500.0)
    generation = api.get(f"{BASE}forecast", {"group": group.pk, "target": "generation", "horizon": 24}).json()
    assert generation["subject"]["meter_ids"] == [pv.pk]
    assert max(point["kw"] for point in generation["points"]) == pytest.approx(1.0)
    demand = api.get(f"{BASE}forecast", {"group": group.pk, "horizon": 24}).json()
    assert demand["target"] == "demand" and demand["subject"]["meter_ids"] == [load.pk]
    assert {point["kw"] for point in demand["points"]} == {0.5}
    assert api.get(f"{BASE}forecast", {"meter": pv.pk}).json()["target"] == "generation"


# --- annotations ---------------------------------------------------------------------------------


def test_annotations_of_a_meter_in_a_range(api, org, meter, site):
    other_meter = factories.MeterFactory(site=site)
    early = factories.AnnotationFactory(meter=meter, ts=T0, text="breaker tripped", source="rule")
    late = factories.AnnotationFactory(meter=meter, ts=T0 + timedelta(minutes=30), text="reset")
    factories.AnnotationFactory(meter=meter, ts=T0 + timedelta(hours=1), text="at the end: excluded")
    factories.AnnotationFactory(meter=other_meter, ts=T0, text="another meter")
    response = api.get(
        f"{BASE}annotations", {"meter": meter.pk, "start": "2026-06-10T10:00Z", "end": "2026-06-10T11:00Z"}
    )
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["subject"] == {"type": "meter", "id": meter.pk, "name": meter.name, "meter_ids": [meter.pk]}
    assert data["start"] == "2026-06-10T10:00:00Z" and data["end"] == "2026-06-10T11:00:00Z"
    assert data["count"] == 2 and data["truncated"] is False
    assert data["annotations"] == [
        {"id": early.pk, "meter_id": meter.pk, "ts": "2026-06-10T10:00:00Z", "text": "breaker tripped",
         "source": "rule", "rule_id": None},
        {"id": late.pk, "meter_id": meter.pk, "ts": "2026-06-10T10:30:00Z", "text": "reset",
         "source": "user", "rule_id": None},
    ]  # fmt: skip


def test_annotations_of_a_group_limit_and_local_times(api, org, meter, site):
    second = factories.MeterFactory(site=site)
    group = factories.MeterGroupFactory(organization=org, meters=[meter, second])
    for minute in range(3):
        factories.AnnotationFactory(meter=meter if minute % 2 else second, ts=T0 + timedelta(minutes=minute))
    params = {"group": group.pk, "start": "2026-06-10T12:00", "end": "2026-06-10T13:00", "tz": "Europe/Berlin"}
    data = api.get(f"{BASE}annotations", params).json()  # 12:00 in Berlin (CEST) is 10:00Z
    assert [a["ts"] for a in data["annotations"]] == [
        "2026-06-10T10:00:00Z",
        "2026-06-10T10:01:00Z",
        "2026-06-10T10:02:00Z",
    ]
    assert {a["meter_id"] for a in data["annotations"]} == {meter.pk, second.pk}
    limited = api.get(f"{BASE}annotations", {**params, "limit": 2}).json()
    assert limited["count"] == 2 and limited["truncated"] is True


def test_annotations_of_another_tenant_never_show(api, org, other_org, meter):
    # A row of another organization on our meter (corrupted data) is still not ours to see.
    factories.AnnotationFactory(meter=meter, organization=other_org, ts=T0)
    data = api.get(f"{BASE}annotations", {"meter": meter.pk, "start": "2026-06-10"}).json()
    assert data["annotations"] == []


@pytest.mark.parametrize(
    ("params", "param"),
    [({"limit": "0"}, "limit"), ({"limit": "lots"}, "limit"), ({"limit": "5001"}, "limit"), ({"start": "x"}, "start")],
)
def test_annotations_bad_parameters_are_400(api, meter, params, param):
    response = api.get(f"{BASE}annotations", {"meter": meter.pk, **params})
    assert response.status_code == 400
    assert response.json()["param"] == param


def test_live_trail_carries_the_windows_annotations(api, meter):
    now = timezone.now()
    recent = factories.AnnotationFactory(meter=meter, ts=now - timedelta(minutes=5), text="spike")
    factories.AnnotationFactory(meter=meter, ts=now - timedelta(hours=2), text="too old")
    data = api.get(f"{BASE}live_trail", {"meter": meter.pk, "minutes": 15}).json()
    assert [(a["id"], a["text"]) for a in data["annotations"]] == [(recent.pk, "spike")]


def test_matrix_of_a_mixed_group_adds_register_and_integrated_meters(api, org):
    # Register meters are summed from hourly rollups, power-only meters from 15-minute ones
    # (integration is not linear): one cell holds both.
    site = factories.SiteFactory(organization=org, timezone="Europe/Berlin")
    register, power_only = factories.MeterFactory(site=site), factories.MeterFactory(site=site)
    group = factories.MeterGroupFactory(organization=org, meters=[register, power_only])
    start = datetime(2026, 6, 10, tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC) - timedelta(minutes=15)
    factories.readings_create(
        register, factories.reading_series(start, timedelta(minutes=15), 24 * 4 + 1, total_energy=lambda i: 0.5 * i)
    )
    power = [4000.0 if i % 8 < 4 else -1000.0 for i in range(24 * 4)]  # import and export hours alternate
    factories.readings_create(
        power_only,
        factories.reading_series(start + timedelta(minutes=15), timedelta(minutes=15), 96, total_power=power),
    )
    data = api.get(f"{BASE}matrix", {"group": group.pk, "start": "2026-06-10", "end": "2026-06-11"}).json()
    assert data["method"] == "mixed"
    (row,) = data["rows"]
    assert row["values"] == pytest.approx([2.0 + (4.0 if hour % 2 == 0 else 0.0) for hour in range(24)])
    assert row["total"] == pytest.approx(96.0)


@pytest.mark.parametrize(
    ("zone", "whole"),
    [("Europe/Berlin", True), ("UTC", True), ("Asia/Kolkata", False), ("Australia/Lord_Howe", False)],
)
def test_whole_hour_offsets_looks_at_every_day_of_the_range(zone, whole):
    from energy.analytics.subjects import TimeRange, whole_hour_offsets

    # Lord Howe is +11:00 in January and December but +10:30 in between.
    year = TimeRange(datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 12, 10, tzinfo=UTC))
    assert whole_hour_offsets(ZoneInfo(zone), year) is whole


@pytest.mark.parametrize("route", [route for route in ROUTES if route != "live_trail"])  # live_trail: minutes=
@pytest.mark.parametrize(
    "window",
    [
        {"start": "0001-01-01T00:00:00Z"},
        {"start": "0001-01-01T00:00:00Z", "end": "0001-01-02T00:00:00Z"},
        {"start": "9999-12-30T00:00:00Z", "end": "9999-12-31T00:00:00Z"},
        {"end": "0001-01-03T00:00:00Z"},
    ],
)
def test_dates_at_the_edge_of_the_calendar_are_a_400_naming_the_parameter(api, meter, route, window):
    response = api.get(f"{BASE}{route}", {"meter": meter.pk, **window})
    assert response.status_code == 400, response.content
    assert response.json()["param"] in {"start", "end"}

"""KPIs computed by hand on small fixtures: resets, gaps, 15-minute peaks, groups, DST days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from energy.analytics.models import AnalyticsSettings
from energy.power_quality.models import PQEvent, ProtectionEvent
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    # OAuth2 client secrets are hashed when the test tokens are made; the real hasher is slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


KPI = "/api/energy/analytics/kpi"
MINUTE = timedelta(minutes=1)
T0 = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)


def kpi(api, **params):
    response = api.get(KPI, params)
    assert response.status_code == 200, response.content
    return response.json()


def test_register_energy_peak_average_and_completeness(api, meter):
    # 09:59 primes the register; 10:00..10:59 add 0.1 kWh each at 6 kW.
    rows = factories.reading_series(
        T0 - MINUTE, MINUTE, 61, total_power=6000.0, total_energy=lambda i: 100 + 0.1 * i, voltage_a=230.0
    )
    factories.readings_create(meter, rows)
    data = kpi(api, meter=meter.pk, start="2026-06-10T10:00:00Z", end="2026-06-10T11:00:00Z")
    assert data["energy"]["imported_kwh"] == pytest.approx(6.0)
    assert data["energy"]["method"] == "register"
    assert data["peak_demand"]["kw"] == pytest.approx(6.0)
    assert data["average_power_kw"] == pytest.approx(6.0)
    assert data["load_factor"] == pytest.approx(1.0)
    assert data["completeness"] == {
        "expected_readings": 60,
        "received_readings": 60,
        "percent": 100.0,
        "expected_interval_seconds": 60,
    }
    assert data["start"] == "2026-06-10T10:00:00Z"
    assert data["subject"] == {"type": "meter", "id": meter.pk, "name": meter.name, "meter_ids": [meter.pk]}


def test_counter_reset_counts_the_new_value_as_energy_since_zero(api, meter):
    registers = [99.0, 100.0, 101.0, 102.0, 0.5, 1.5, 2.5]
    factories.readings_create(meter, factories.reading_series(T0 - MINUTE, MINUTE, 7, total_energy=registers))
    data = kpi(api, meter=meter.pk, start="2026-06-10T10:00:00Z", end="2026-06-10T10:15:00Z")
    # 1 + 1 + 1, reset → 0.5, then 1 + 1
    assert data["energy"]["imported_kwh"] == pytest.approx(5.5)


def test_gap_energy_lands_on_the_first_reading_after_it_and_lowers_completeness(api, meter):
    before = factories.reading_series(T0, MINUTE, 10, total_energy=lambda i: 10 + i, total_power=1000.0)
    after = factories.reading_series(T0 + 40 * MINUTE, MINUTE, 20, total_energy=lambda i: 50 + i, total_power=1000.0)
    factories.readings_create(meter, before + after)
    data = kpi(api, meter=meter.pk, start="2026-06-10T10:00:00Z", end="2026-06-10T11:00:00Z")
    # Register went from 10 (first reading, no predecessor) to 69: 59 kWh, gap included.
    assert data["energy"]["imported_kwh"] == pytest.approx(59.0)
    assert data["completeness"]["received_readings"] == 30
    assert data["completeness"]["percent"] == 50.0
    # Quarters with data: 10:00 (10 readings), 10:30 (5), 10:45 (15); 10:15 has none.
    assert data["demand_intervals"] == 3


def test_peak_demand_is_the_highest_15_minute_average_not_a_spike(api, meter):
    power = [2000.0] * 15 + [8000.0] * 15 + [4000.0] * 15 + [2000.0] * 15
    power[50] = 20000.0  # a one-minute spike in the last quarter: (14*2000 + 20000)/15 = 3.2 kW
    factories.readings_create(meter, factories.reading_series(T0, MINUTE, 60, total_power=power))
    data = kpi(api, meter=meter.pk, start="2026-06-10T10:00:00Z", end="2026-06-10T11:00:00Z", tz="Europe/Berlin")
    assert data["peak_demand"]["kw"] == pytest.approx(8.0)
    assert data["peak_demand"]["interval_start"] == "2026-06-10T10:15:00Z"
    assert data["peak_demand"]["interval_start_local"] == "2026-06-10T12:15:00+02:00"
    assert data["average_power_kw"] == pytest.approx((2 + 8 + 4 + 3.2) / 4)
    assert data["load_factor"] == pytest.approx(4.3 / 8)
    # No register: energy integrates power over the quarters, import side only.
    assert data["energy"]["method"] == "integrated_power"
    assert data["energy"]["imported_kwh"] == pytest.approx((2 + 8 + 4 + 3.2) * 0.25)
    assert data["energy"]["exported_kwh"] == pytest.approx(0.0)


def test_voltage_extremes_power_factor_and_export_register(api, meter):
    rows = factories.reading_series(
        T0,
        MINUTE,
        4,
        voltage_a=[229.0, 231.5, 226.0, 230.0],
        voltage_b=[230.0] * 4,
        voltage_c=[None, None, None, None],
        power_factor=[0.9, 0.8, 1.0, None],
        export_energy=[5.0, 5.5, 6.0, 6.0],
        total_energy=[1.0, 1.0, 1.0, 1.0],
    )
    factories.readings_create(meter, rows)
    data = kpi(api, meter=meter.pk, start="2026-06-10T10:00:00Z", end="2026-06-10T10:15:00Z")
    assert data["voltage"]["a"] == {"min": 226.0, "max": 231.5}
    assert data["voltage"]["b"] == {"min": 230.0, "max": 230.0}
    assert data["voltage"]["c"] == {"min": None, "max": None}
    assert data["power_factor_avg"] == pytest.approx(0.9)
    assert data["energy"]["exported_kwh"] == pytest.approx(1.0)
    assert data["energy"]["imported_kwh"] == pytest.approx(0.0)


def test_integrated_power_splits_import_and_export(api, meter):
    power = [3000.0] * 15 + [-2000.0] * 15
    factories.readings_create(meter, factories.reading_series(T0, MINUTE, 30, total_power=power))
    data = kpi(api, meter=meter.pk, start="2026-06-10T10:00:00Z", end="2026-06-10T10:30:00Z")
    assert data["energy"]["imported_kwh"] == pytest.approx(0.75)
    assert data["energy"]["exported_kwh"] == pytest.approx(0.5)


def test_group_sums_energy_and_takes_the_coincident_peak(api, org, site):
    first, second = factories.MeterFactory(site=site), factories.MeterFactory(site=site)
    group = factories.MeterGroupFactory(organization=org, meters=[first, second])
    factories.readings_create(
        first,
        factories.reading_series(
            T0 - MINUTE, MINUTE, 31, total_energy=lambda i: 0.05 * i, total_power=[3000.0] * 16 + [1000.0] * 15
        ),
    )
    factories.readings_create(
        second, factories.reading_series(T0, MINUTE, 30, total_power=[1000.0] * 15 + [4000.0] * 15)
    )
    data = kpi(api, group=group.pk, start="2026-06-10T10:00:00Z", end="2026-06-10T10:30:00Z")
    assert data["subject"]["type"] == "group"
    assert data["subject"]["meter_ids"] == [first.pk, second.pk]
    assert data["energy"]["method"] == "mixed"
    # first: 30 increments of 0.05 = 1.5 kWh (register); second integrates 1 kW and 4 kW quarters.
    assert data["energy"]["imported_kwh"] == pytest.approx(1.5 + 0.25 + 1.0)
    # Quarter one: 3 + 1 kW; quarter two: 1 + 4 kW → coincident peak 5 kW at 10:15.
    assert data["peak_demand"]["kw"] == pytest.approx(5.0)
    assert data["peak_demand"]["interval_start"] == "2026-06-10T10:15:00Z"
    assert data["completeness"]["expected_readings"] == 60
    assert data["completeness"]["received_readings"] == 60


def test_empty_group_answers_with_empty_figures(api, org):
    group = factories.MeterGroupFactory(organization=org)
    data = kpi(api, group=group.pk, start="2026-06-10T10:00:00Z", end="2026-06-10T11:00:00Z")
    assert data["energy"]["imported_kwh"] is None
    assert data["peak_demand"]["kw"] is None
    assert data["completeness"]["expected_readings"] == 0


def test_event_counts_in_range_for_the_subjects_meters(api, org, meter, site):
    elsewhere = factories.MeterFactory(site=site)
    at = T0 + timedelta(minutes=5)

    def pq_event(target, kind, start, end=None):
        PQEvent.objects.create(
            organization=org, meter=target, kind=kind, start=start, end=end, last_violation_at=start,
            worst_value=0.5, unit="pu", threshold=0.9,
        )  # fmt: skip

    pq_event(meter, "sag", at, end=at + timedelta(seconds=2))  # opened and closed: one event
    pq_event(meter, "swell", at)
    pq_event(elsewhere, "sag", at)
    pq_event(meter, "sag", T0 - timedelta(days=1))
    ProtectionEvent.objects.create(organization=org, meter=meter, kind="trip", occurred_at=at)
    ProtectionEvent.objects.create(organization=org, meter=meter, kind="trip", occurred_at=T0 - timedelta(days=1))
    data = kpi(api, meter=meter.pk, start="2026-06-10T10:00:00Z", end="2026-06-10T11:00:00Z")
    assert data["events"] == {"pq": 2, "protection": 1}


def quarter_hour_readings(start_local: datetime, hours: int) -> list[dict]:
    """Every 15 minutes, +0.25 kWh (1 kWh per hour), starting one reading early to prime the register."""
    start = start_local.astimezone(UTC) - timedelta(minutes=15)
    return factories.reading_series(
        start, timedelta(minutes=15), hours * 4 + 1, total_energy=lambda i: 0.25 * i, total_power=1000.0
    )


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Berlin", "2026-03-29", 23),  # spring forward: 02:00 → 03:00
        ("America/New_York", "2026-11-01", 25),  # fall back: 02:00 → 01:00
        ("Asia/Kolkata", "2026-01-11", 24),  # UTC+05:30, no DST
    ],
)
def test_local_day_energy_on_dst_and_half_hour_zones(api, org, zone, day, hours):
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    AnalyticsSettings.objects.create(organization=org, expected_interval_seconds=900)
    meter = factories.MeterFactory(site=factories.SiteFactory(organization=org, timezone=zone))
    midnight = datetime.fromisoformat(day).replace(tzinfo=tz)
    factories.readings_create(meter, quarter_hour_readings(midnight, 30))
    next_day = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
    data = kpi(api, meter=meter.pk, start=day, end=next_day)
    assert data["tz"] == zone
    assert data["start"] == midnight.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert data["energy"]["imported_kwh"] == pytest.approx(hours)
    assert data["completeness"]["expected_readings"] == hours * 4
    assert data["completeness"]["percent"] == 100.0


def test_range_not_on_whole_hours_reads_the_edge_quarters_too(api, org, site):
    # Whole hours come from the hourly rollups, the quarters around them from 15-minute ones:
    # the figures must be those of the widened 15-minute range, edges included.
    first, second = factories.MeterFactory(site=site), factories.MeterFactory(site=site)
    group = factories.MeterGroupFactory(organization=org, meters=[first, second])
    start = T0 - timedelta(minutes=20)  # 09:40 .. 11:19, one reading a minute
    voltage = [230.0] * 100
    voltage[7], voltage[90] = 220.0, 240.0  # 09:47 and 11:10: in the edge quarters
    for meter in (first, second):
        rows = factories.reading_series(
            start, MINUTE, 100, total_energy=lambda i: 0.1 * i, voltage_a=voltage, power_factor=0.9
        )
        factories.readings_create(meter, rows)
    data = kpi(api, group=group.pk, start="2026-06-10T09:50:00Z", end="2026-06-10T11:05:00Z")
    assert (data["start"], data["end"]) == ("2026-06-10T09:45:00Z", "2026-06-10T11:15:00Z")
    assert data["completeness"]["received_readings"] == 2 * 90
    assert data["energy"]["imported_kwh"] == pytest.approx(2 * 9.0)
    assert [row["imported_kwh"] for row in data["energy"]["meters"]] == pytest.approx([9.0, 9.0])
    assert data["voltage"]["a"] == {"min": 220.0, "max": 240.0}
    assert data["power_factor_avg"] == pytest.approx(0.9)
    # No power: demand from the register, 0.1 kWh a minute in every quarter of both meters.
    assert data["peak_demand"]["method"] == "register"
    assert data["peak_demand"]["kw"] == pytest.approx(2 * 6.0)
    assert data["demand_intervals"] == 6


def test_a_register_move_across_a_long_gap_is_gap_energy_not_the_intervals(api, meter, settings):
    settings.ANALYTICS_MAX_GAP_SECONDS = 1800
    before = factories.reading_series(T0, MINUTE, 10, total_energy=lambda i: 10 + i, total_power=1000.0)
    after = factories.reading_series(T0 + 40 * MINUTE, MINUTE, 20, total_energy=lambda i: 50 + i, total_power=1000.0)
    factories.readings_create(meter, before + after)
    data = kpi(api, meter=meter.pk, start="2026-06-10T10:00:00Z", end="2026-06-10T11:00:00Z")
    # 10 → 19 before the 31-minute silence, 50 → 69 after it; 19 → 50 happened somewhere inside.
    assert data["energy"]["imported_kwh"] == pytest.approx(28.0)
    assert data["energy"]["gap_imported_kwh"] == pytest.approx(31.0)
    assert data["energy"]["gap_exported_kwh"] is None
    assert data["energy"]["max_gap_seconds"] == 1800
    assert data["energy"]["meters"][0]["gap_imported_kwh"] == pytest.approx(31.0)


def test_the_readmes_old_reading_on_a_live_meter_leaves_its_last_24_hours_alone(api, meter, device_client):
    """Issue 16 item 3: the README's ingest example (one reading of 2025-10-16 with a 1,500 kWh
    register) posted to a demo meter made the KPI of its last 24 h report 453,148.91 kWh: the
    register difference across 14 months was poured into the interval of the next reading."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(hours=1)
    # An hour of the demo meter at 3.6 kW: +0.06 kWh a minute from 454,648.91 kWh.
    live = factories.reading_series(
        start, MINUTE, 60, total_power=3600.0, total_energy=lambda i: round(454_648.91 + 0.06 * i, 2)
    )
    factories.readings_create(meter, live)
    window = {"meter": meter.pk, "start": (now - timedelta(hours=24)).isoformat(), "end": now.isoformat()}
    assert kpi(api, **window)["energy"]["imported_kwh"] == pytest.approx(3.54)

    body = {"total_power": 3600.0, "total_energy": 1500.0, "voltage_a": 230.1, "timestamp": "2025-10-16T10:00:00Z"}
    assert device_client(meter).post("/api/energy/energy-data/", body).status_code == 201

    data = kpi(api, **window)
    assert data["energy"]["imported_kwh"] == pytest.approx(3.54)  # not 453,152.45
    assert data["energy"]["gap_imported_kwh"] == pytest.approx(453_148.91)
    assert data["peak_demand"]["kw"] == pytest.approx(3.6)  # nor a 1.8 GW quarter hour

"""Allocation runs on real rows: limits from readings, stored setpoints, events, charging profiles."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from ocpp.messages import Call, validate_payload

from energy.load import profiles
from energy.load.models import Allocation, ChargingSession, Setpoint
from energy.load.services import allocation_history_prune, allocation_run, on_ingested
from energy.models import DeviceCommand, Reading
from joulepoint.events.models import OutboxEvent
from joulepoint.events.types import Event
from tests import factories

pytestmark = pytest.mark.django_db


def _reading(meter, power_w, *, age_s=1.0, now=None):
    now = now or timezone.now()
    return Reading.objects.create(meter=meter, ts=now - timedelta(seconds=age_s), total_power=power_w, received_at=now)


@pytest.fixture
def constraint(site):
    return factories.SiteConstraintFactory(site=site, max_import_kw=50.0, safety_margin_kw=2.0, fallback_limit_kw=8.0)


def _wire_valid(payload: dict, action: str = "SetChargingProfile") -> None:
    asyncio.run(validate_payload(Call(unique_id="1", action=action, payload=payload), "2.0.1"))


def test_run_shares_what_the_site_leaves_and_sends_profiles(site, constraint):
    now = timezone.now()
    sessions = [factories.ChargingSessionFactory(charger=factories.ChargerFactory(site=site)) for _ in range(2)]
    # Grid 40 kW of which the chargers draw 10 kW: 30 kW is the rest of the site.
    _reading(constraint.grid_meter, 40_000.0, now=now)
    for session in sessions:
        _reading(session.charger.meter, 5_000.0, now=now)

    allocation = allocation_run(site=site, now=now)

    assert allocation.limit_source == Allocation.LimitSource.CONSTRAINT
    assert allocation.non_controllable_w == pytest.approx(30_000.0)
    assert allocation.available_w == pytest.approx(50_000 - 30_000 - 2_000)
    setpoints = list(allocation.setpoints.order_by("session_id"))
    assert [s.current_a for s in setpoints] == [13.0, 13.0]  # 18 kW / 2 / 690 W per A = 13.04, down to 0.1 A
    assert allocation.allocated_w <= allocation.available_w
    commands = DeviceCommand.objects.filter(name=profiles.SET_CHARGING_PROFILE)
    tx = [c for c in commands if c.payload["evseId"] == 1]
    station = [c for c in commands if c.payload["evseId"] == 0]
    assert len(tx) == 2 and len(station) == 2
    for command in commands:
        _wire_valid(command.payload)
    first = next(c for c in tx if c.meter_id == sessions[0].charger.meter_id)
    assert first.payload["chargingProfile"]["transactionId"] == sessions[0].transaction_id
    assert first.payload["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"] == 13.0
    assert OutboxEvent.objects.filter(key="load.setpoint").count() == 2

    # The same situation again: same setpoints, nothing sent, nothing announced.
    again = allocation_run(site=site, now=now + timedelta(seconds=1))
    assert [s.current_a for s in again.setpoints.order_by("session_id")] == [13.0, 13.0]
    assert DeviceCommand.objects.filter(name=profiles.SET_CHARGING_PROFILE).count() == 4
    assert OutboxEvent.objects.filter(key="load.setpoint").count() == 2


def test_minimums_that_do_not_fit_pause_the_lower_priority_session(site, constraint):
    now = timezone.now()
    high = factories.ChargingSessionFactory(charger=factories.ChargerFactory(site=site, priority=5))
    low = factories.ChargingSessionFactory(charger=factories.ChargerFactory(site=site, priority=1))
    _reading(constraint.grid_meter, 38_000.0, now=now)  # 10 kW left: both 6 A minimums (4.14 kW each) fit
    allocation = allocation_run(site=site, now=now)
    assert all(not s.paused for s in allocation.setpoints.all())
    _reading(constraint.grid_meter, 43_000.0, now=now + timedelta(seconds=1))  # 5 kW: one minimum fits
    allocation = allocation_run(site=site, now=now + timedelta(seconds=2))
    by_session = {s.session_id: s for s in allocation.setpoints.all()}
    assert not by_session[high.pk].paused and by_session[low.pk].paused
    assert by_session[low.pk].current_a == 0
    low.refresh_from_db()
    assert low.state == ChargingSession.State.SUSPENDED
    pause = DeviceCommand.objects.filter(meter=low.charger.meter, payload__evseId=1).order_by("-pk").first()
    assert pause.payload["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"] == 0


def test_stale_grid_reading_falls_back(site, constraint):
    now = timezone.now()
    factories.ChargingSessionFactory(charger=factories.ChargerFactory(site=site))
    _reading(constraint.grid_meter, 1_000.0, age_s=constraint.grid_stale_after_seconds + 5, now=now)
    allocation = allocation_run(site=site, now=now)
    assert allocation.limit_source == Allocation.LimitSource.FALLBACK
    assert allocation.grid_power_w is None
    assert allocation.available_w == 8_000.0
    assert allocation.setpoints.get().power_w <= 8_000.0
    assert allocation.warnings


def test_demand_response_lowers_the_run(site, constraint):
    now = timezone.now()
    factories.ChargingSessionFactory(charger=factories.ChargerFactory(site=site))
    factories.DemandResponseEventFactory(site=site, starts_at=now - timedelta(minutes=1), limit_kw=20.0)
    _reading(constraint.grid_meter, 10_000.0, now=now)
    allocation = allocation_run(site=site, now=now)
    assert allocation.limit_source == Allocation.LimitSource.DEMAND_RESPONSE
    assert allocation.available_w == pytest.approx(20_000 - 10_000 - 2_000)


def test_ingest_queues_one_run_per_site_within_the_debounce(site, constraint, monkeypatch, eager_tasks):
    # A long window: on a loaded machine one in-process run may take longer than the real 2 s.
    monkeypatch.setattr("energy.load.services.DEBOUNCE_SECONDS", 60)
    factories.ChargingSessionFactory(charger=factories.ChargerFactory(site=site))
    _reading(constraint.grid_meter, 10_000.0)
    cache.delete(f"jp:load:debounce:{site.pk}")
    event = Event(
        organization_id=site.organization_id,
        key="data.ingested",
        payload={"site_id": site.pk},
        source="test",
        occurred_at=timezone.now(),
    )
    on_ingested(event)
    on_ingested(event)
    assert Allocation.objects.filter(site=site).count() == 1
    assert Setpoint.objects.count() == 1
    # Once the window has passed (the claim expired), the next ingest reallocates.
    cache.delete(f"jp:load:debounce:{site.pk}")
    on_ingested(event)
    assert Allocation.objects.filter(site=site).count() == 2


def test_a_site_without_constraint_is_not_allocated(site):
    assert allocation_run(site=site, now=timezone.now()) is None


def test_history_older_than_the_retention_is_pruned_with_its_setpoints(site, constraint):
    now = timezone.now()
    session = factories.ChargingSessionFactory(charger=factories.ChargerFactory(site=site))
    _reading(constraint.grid_meter, 10_000.0, now=now)
    old = allocation_run(site=site, now=now - timedelta(days=31))
    recent = allocation_run(site=site, now=now - timedelta(days=29))

    assert allocation_history_prune(now=now, keep_days=0) == 0  # 0 keeps everything
    assert allocation_history_prune(now=now, keep_days=30, batch=1) == 1

    assert list(Allocation.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not Setpoint.objects.filter(allocation_id=old.pk).exists()
    assert Setpoint.objects.filter(allocation=recent, session=session).count() == 1

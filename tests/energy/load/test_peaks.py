"""Peaks: `peak.detected` once per crossing (and a clear), and the imminent-peak limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from energy.load.models import Allocation
from energy.load.peaks import imminent_peak_limit_kw, peak_watch
from energy.load.services import allocation_run
from energy.models import Reading
from joulepoint.events.models import OutboxEvent
from tests import factories

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 5, 10, 0, tzinfo=UTC)


def _readings(meter, start, minutes, power_w):
    Reading.objects.bulk_create(
        [
            Reading(meter=meter, ts=start + timedelta(minutes=i), total_power=power_w, received_at=start)
            for i in range(minutes)
        ]
    )


def _announced():
    return [row.payload["phase"] for row in OutboxEvent.objects.filter(key="peak.detected").order_by("occurred_at")]


def test_peak_detected_once_per_crossing_and_cleared(site):
    constraint = factories.SiteConstraintFactory(site=site, peak_threshold_kw=50.0)
    grid = constraint.grid_meter
    _readings(grid, T0, 15, 40_000.0)
    assert peak_watch(constraint=constraint, now=T0 + timedelta(minutes=15)) is None
    _readings(grid, T0 + timedelta(minutes=15), 15, 70_000.0)
    assert peak_watch(constraint=constraint, now=T0 + timedelta(minutes=30)) == "detected"
    # Still above: nothing more, even from a second process holding a stale copy of the row.
    stale_copy = type(constraint).objects.get(pk=constraint.pk)
    stale_copy.peak_active = False
    assert peak_watch(constraint=stale_copy, now=T0 + timedelta(minutes=30, seconds=5)) is None
    assert peak_watch(constraint=constraint, now=T0 + timedelta(minutes=30, seconds=10)) is None
    _readings(grid, T0 + timedelta(minutes=30), 15, 20_000.0)
    assert peak_watch(constraint=constraint, now=T0 + timedelta(minutes=45)) == "cleared"
    assert peak_watch(constraint=constraint, now=T0 + timedelta(minutes=45, seconds=5)) is None
    _readings(grid, T0 + timedelta(minutes=45), 15, 90_000.0)
    assert peak_watch(constraint=constraint, now=T0 + timedelta(minutes=60)) == "detected"
    assert _announced() == ["detected", "cleared", "detected"]
    payload = OutboxEvent.objects.filter(key="peak.detected").first().payload
    assert payload["site_id"] == site.pk and payload["threshold_kw"] == 50.0 and payload["average_kw"] == 70.0


def test_imminent_peak_lowers_the_limit_until_the_quarter_ends(site):
    constraint = factories.SiteConstraintFactory(site=site, peak_threshold_kw=50.0, max_import_kw=200.0)
    grid = constraint.grid_meter
    quarter = T0
    _readings(grid, quarter, 10, 60_000.0)  # 10 minutes at 60 kW: 10 kWh of the 12.5 kWh allowed
    now = quarter + timedelta(minutes=10)
    # Projected: (10 kWh + 60 kW * 5 min) / 15 min = 60 kW > 50 kW: hold at 2.5 kWh over 5 min = 30 kW.
    assert imminent_peak_limit_kw(constraint=constraint, now=now, grid_power_kw=60.0) == pytest.approx(30.0)
    Reading.objects.create(meter=grid, ts=now, total_power=60_000.0, received_at=now)
    factories.ChargingSessionFactory(charger=factories.ChargerFactory(site=site))
    allocation = allocation_run(site=site, now=now + timedelta(seconds=1))
    assert allocation.limit_source == Allocation.LimitSource.PEAK
    assert allocation.effective_limit_w < 50_000.0
    # A dip in the projection does not lift it before the quarter ends; the next quarter starts free.
    assert imminent_peak_limit_kw(constraint=constraint, now=now + timedelta(seconds=2), grid_power_kw=0.0) is not None
    next_quarter = quarter + timedelta(minutes=15, seconds=30)
    assert imminent_peak_limit_kw(constraint=constraint, now=next_quarter, grid_power_kw=10.0) is None

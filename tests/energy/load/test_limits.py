"""Effective limits: schedule windows in local time (midnight, DST), demand response, peaks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from energy.load import limits
from energy.load.limits import DemandResponseWindow, ScheduleWindow

BERLIN = ZoneInfo("Europe/Berlin")
ALL_DAYS = [1, 2, 3, 4, 5, 6, 7]


def _window(start: time, end: time, *, days=ALL_DAYS, kw=50.0, wid=1, **extra) -> ScheduleWindow:
    return ScheduleWindow(
        id=wid, name="w", days_of_week=days, start_time=start, end_time=end, max_import_kw=kw, **extra
    )


def _utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_window_across_midnight_belongs_to_its_start_day():
    # Friday 22:00 to Saturday 06:00 local; only Fridays.
    window = _window(time(22), time(6), days=[5])
    friday_late = datetime(2026, 6, 5, 23, 0, tzinfo=BERLIN)
    saturday_early = datetime(2026, 6, 6, 5, 59, tzinfo=BERLIN)
    saturday_late = datetime(2026, 6, 6, 23, 0, tzinfo=BERLIN)
    thursday_early = datetime(2026, 6, 4, 5, 0, tzinfo=BERLIN)
    assert limits.schedule_window_active(window, friday_late, BERLIN)
    assert limits.schedule_window_active(window, saturday_early, BERLIN)
    assert not limits.schedule_window_active(window, saturday_late, BERLIN)
    assert not limits.schedule_window_active(window, thursday_early, BERLIN)
    assert not limits.schedule_window_active(window, datetime(2026, 6, 6, 6, 0, tzinfo=BERLIN), BERLIN)


def test_valid_from_and_to_apply_to_the_start_day():
    window = _window(time(22), time(6), valid_from=date(2026, 6, 5), valid_to=date(2026, 6, 5))
    assert limits.schedule_window_active(window, datetime(2026, 6, 6, 1, 0, tzinfo=BERLIN), BERLIN)
    assert not limits.schedule_window_active(window, datetime(2026, 6, 7, 1, 0, tzinfo=BERLIN), BERLIN)
    assert not limits.schedule_window_active(window, datetime(2026, 6, 5, 1, 0, tzinfo=BERLIN), BERLIN)


def test_spring_forward_window_is_shorter_by_the_skipped_hour():
    # 29 March 2026: Berlin's clock jumps from 02:00 CET (01:00 UTC) to 03:00 CEST.
    window = _window(time(1, 30), time(3, 0))
    start, end = limits.schedule_window_bounds(window, date(2026, 3, 29), BERLIN)
    assert start == _utc(2026, 3, 29, 0, 30)
    assert end == _utc(2026, 3, 29, 1, 0)
    assert end - start == timedelta(minutes=30)
    assert limits.schedule_window_active(window, _utc(2026, 3, 29, 0, 59), BERLIN)
    assert not limits.schedule_window_active(window, _utc(2026, 3, 29, 1, 0), BERLIN)


def test_a_start_the_clock_skips_is_the_instant_of_the_jump():
    window = _window(time(2, 30), time(4, 0))
    start, end = limits.schedule_window_bounds(window, date(2026, 3, 29), BERLIN)
    assert start == _utc(2026, 3, 29, 1, 0)  # 03:00 CEST, when the clock passes 02:30
    assert end == _utc(2026, 3, 29, 2, 0)  # 04:00 CEST


def test_fall_back_window_covers_the_repeated_hour_twice():
    # 25 October 2026: 03:00 CEST (01:00 UTC) becomes 02:00 CET; 02:00-03:00 happens twice.
    window = _window(time(1, 30), time(3, 0))
    start, end = limits.schedule_window_bounds(window, date(2026, 10, 25), BERLIN)
    assert start == _utc(2026, 10, 24, 23, 30)  # 01:30 CEST
    assert end == _utc(2026, 10, 25, 2, 0)  # 03:00 CET
    assert end - start == timedelta(hours=2, minutes=30)
    # The second pass of 02:15 is inside.
    assert limits.schedule_window_active(window, _utc(2026, 10, 25, 1, 15), BERLIN)


def test_window_ending_in_the_repeated_hour_ends_at_its_second_pass():
    window = _window(time(1, 0), time(2, 30))
    start, end = limits.schedule_window_bounds(window, date(2026, 10, 25), BERLIN)
    assert start == _utc(2026, 10, 24, 23, 0)
    assert end == _utc(2026, 10, 25, 1, 30)  # 02:30 CET


def test_lowest_wins_and_reports_its_source():
    at = datetime(2026, 6, 5, 18, 0, tzinfo=BERLIN)
    schedule = _window(time(17), time(20), kw=60.0, wid=7)
    result = limits.effective_limit(constraint_kw=100.0, at=at, zone=BERLIN, schedules=[schedule])
    assert result == limits.EffectiveLimit(60.0, limits.SCHEDULE, 7)
    # Demand response by share applies to the scheduled limit; a fixed event lower still wins.
    by_share = DemandResponseWindow(3, at - timedelta(hours=1), at + timedelta(hours=1), reduction_percent=25.0)
    result = limits.effective_limit(
        constraint_kw=100.0, at=at, zone=BERLIN, schedules=[schedule], demand_responses=[by_share]
    )
    assert result == limits.EffectiveLimit(45.0, limits.DEMAND_RESPONSE, 3)
    fixed = DemandResponseWindow(4, at - timedelta(hours=1), at + timedelta(minutes=1), limit_kw=40.0)
    overlapping = limits.effective_limit(
        constraint_kw=100.0, at=at, zone=BERLIN, schedules=[schedule], demand_responses=[by_share, fixed]
    )
    assert overlapping == limits.EffectiveLimit(40.0, limits.DEMAND_RESPONSE, 4)
    # An event that has ended does nothing; a lower peak limit wins over everything.
    ended = DemandResponseWindow(5, at - timedelta(hours=2), at, limit_kw=1.0)
    result = limits.effective_limit(
        constraint_kw=100.0, at=at, zone=BERLIN, schedules=[schedule], demand_responses=[ended], peak_kw=30.0
    )
    assert result == limits.EffectiveLimit(30.0, limits.PEAK, None)


def test_a_higher_schedule_does_not_raise_the_constraint():
    at = datetime(2026, 6, 5, 18, 0, tzinfo=BERLIN)
    result = limits.effective_limit(
        constraint_kw=100.0, at=at, zone=BERLIN, schedules=[_window(time(0), time(23), kw=150)]
    )
    assert result.source == limits.CONSTRAINT and result.import_kw == 100.0


@pytest.mark.parametrize(
    ("energy_kwh", "elapsed", "expected"),
    [(0.0, 0.0, 100.0), (10.0, 450.0, 120.0), (25.0, 450.0, 0.0), (30.0, 450.0, 0.0), (5.0, 900.0, None)],
)
def test_peak_limit_keeps_the_quarter_at_the_threshold(energy_kwh, elapsed, expected):
    # A 100 kW threshold allows 25 kWh in a quarter-hour.
    result = limits.peak_limit_kw(threshold_kw=100.0, quarter_energy_kwh=energy_kwh, elapsed_seconds=elapsed)
    assert result == (None if expected is None else pytest.approx(expected))


def test_projected_average():
    assert limits.projected_quarter_average_kw(quarter_energy_kwh=10.0, elapsed_seconds=450, power_kw=80.0) == (
        pytest.approx((10.0 * 3600 + 80 * 450) / 900)
    )

"""Billing cycles: from local midnight of `cycle_day` to the same day next month, in the site's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

QUARTER_SECONDS = 900


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def _shift_month(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, day.day)


def cycle_of(moment: datetime, *, cycle_day: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The cycle [start, end) (UTC) that contains `moment`."""
    local = moment.astimezone(tz).date()
    first = date(local.year, local.month, cycle_day)
    if local < first:
        first = _shift_month(first, -1)
    return _midnight(first, tz), _midnight(_shift_month(first, 1), tz)


def cycles_between(start: datetime, end: datetime, *, cycle_day: int, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """Every cycle that overlaps [start, end), in order."""
    cycles = [cycle_of(start, cycle_day=cycle_day, tz=tz)]
    while cycles[-1][1] < end:
        cycles.append(cycle_of(cycles[-1][1], cycle_day=cycle_day, tz=tz))
    return cycles


def floor_quarter(moment: datetime) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % QUARTER_SECONDS, tz=UTC)


def last_closed_cycle(now: datetime, *, cycle_day: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
    current_start, _ = cycle_of(now, cycle_day=cycle_day, tz=tz)
    return cycle_of(current_start - timedelta(seconds=1), cycle_day=cycle_day, tz=tz)

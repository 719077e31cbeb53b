"""The effective import limit of a site at an instant. Pure functions over plain values; the
selector that loads them is energy.load.selectors.effective_limit_at.

Chain (docs/load.md, "Limits"): the constraint's max import, then every schedule window active at
the instant (in the site's local time), then every active demand response event, then an imminent
peak. The lowest wins; on a tie the earlier link of the chain is reported as the source.

Schedule windows follow the wall clock of the site's zone (zoneinfo):
- A window belongs to the day it starts on (`days_of_week`, `valid_from`/`valid_to` apply to
  that day); an end before the start runs into the next day.
- It runs from the first instant the local clock reaches its start to the last instant the
  clock reaches its end. A start or end the clock skips (spring forward) is the instant of the
  jump; on a fall-back day a start in the repeated hour is its first pass and an end in it the
  second pass, so a lowered limit lasts at least as long as the clock says, never less.
  Example (Europe/Berlin): 01:30-03:00 lasts 30 minutes on the spring-forward day (the clock
  jumps 02:00 -> 03:00) and 2 h 30 min on the fall-back day (03:00 -> 02:00).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

CONSTRAINT = "constraint"
SCHEDULE = "schedule"
DEMAND_RESPONSE = "demand_response"
PEAK = "peak"


@dataclass(frozen=True, slots=True)
class ScheduleWindow:
    id: int
    name: str
    days_of_week: Sequence[int]
    start_time: time
    end_time: time
    max_import_kw: float | None
    valid_from: date | None = None
    valid_to: date | None = None


@dataclass(frozen=True, slots=True)
class DemandResponseWindow:
    id: int
    starts_at: datetime
    ends_at: datetime
    limit_kw: float | None = None
    reduction_percent: float | None = None


@dataclass(frozen=True, slots=True)
class EffectiveLimit:
    import_kw: float
    source: str
    source_id: int | None = None


def _local_to_utc(day: date, at: time, zone: ZoneInfo, *, fold: int) -> datetime:
    """The UTC instant of wall time `day at` in `zone`: `fold` picks the pass of a repeated
    (fall-back) time; a skipped (spring-forward) time is the instant of the jump."""
    local = datetime.combine(day, at, tzinfo=zone).replace(fold=fold)
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return instant
    # Skipped: fold=1 reads it with the offset after the jump, which lands before the jump; walk
    # minute by minute to the first instant whose wall clock is past `at` (gaps are minutes wide,
    # a loop of at most a few dozen steps, run only on the days a window meets a gap).
    candidate = local.replace(fold=1).astimezone(UTC).replace(second=0, microsecond=0)
    target = datetime.combine(day, at)
    while candidate.astimezone(zone).replace(tzinfo=None) < target:
        candidate += timedelta(minutes=1)
    return candidate


def schedule_window_bounds(window: ScheduleWindow, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the window starting on `day` (local)."""
    end_day = day + timedelta(days=1) if window.end_time <= window.start_time else day
    start = _local_to_utc(day, window.start_time, zone, fold=0)
    end = _local_to_utc(end_day, window.end_time, zone, fold=1)
    return start, end


def schedule_starts_on(window: ScheduleWindow, day: date) -> bool:
    """Whether the window has an occurrence starting on local `day` (weekday and validity)."""
    if day.isoweekday() not in window.days_of_week:
        return False
    if window.valid_from is not None and day < window.valid_from:
        return False
    return window.valid_to is None or day <= window.valid_to


def schedule_window_active(window: ScheduleWindow, at: datetime, zone: ZoneInfo) -> bool:
    local_day = at.astimezone(zone).date()
    for day in (local_day, local_day - timedelta(days=1)):
        if not schedule_starts_on(window, day):
            continue
        start, end = schedule_window_bounds(window, day, zone)
        if start <= at < end:
            return True
    return False


def schedule_occurrences(
    window: ScheduleWindow, start: datetime, end: datetime, zone: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    """The window's [start, end) occurrences in UTC that overlap [start, end)."""
    found = []
    day = start.astimezone(zone).date() - timedelta(days=1)  # an occurrence from yesterday may run on
    while day <= end.astimezone(zone).date():
        if schedule_starts_on(window, day):
            begins, ends = schedule_window_bounds(window, day, zone)
            if begins < end and ends > start:
                found.append((begins, ends))
        day += timedelta(days=1)
    return found


def demand_response_active(event: DemandResponseWindow, at: datetime) -> bool:
    return event.starts_at <= at < event.ends_at


def demand_response_limit_kw(event: DemandResponseWindow, base_kw: float) -> float:
    """An event's limit: its own kW, or the limit in force before it cut by its share."""
    if event.limit_kw is not None:
        return event.limit_kw
    return base_kw * (1.0 - (event.reduction_percent or 0.0) / 100.0)


def peak_limit_kw(
    *, threshold_kw: float, quarter_energy_kwh: float, elapsed_seconds: float, quarter_seconds: float = 900.0
) -> float | None:
    """The import the rest of the quarter-hour may average so that the quarter's average stays
    at `threshold_kw`, given the energy imported so far in it (None when the quarter is over)."""
    remaining = quarter_seconds - elapsed_seconds
    if remaining <= 0:
        return None
    allowed_kwh = threshold_kw * quarter_seconds / 3600.0 - quarter_energy_kwh
    return max(allowed_kwh * 3600.0 / remaining, 0.0)


def projected_quarter_average_kw(
    *, quarter_energy_kwh: float, elapsed_seconds: float, power_kw: float, quarter_seconds: float = 900.0
) -> float:
    """The quarter-hour's average import if the present power holds to its end."""
    remaining = max(quarter_seconds - elapsed_seconds, 0.0)
    return (quarter_energy_kwh * 3600.0 + power_kw * remaining) / quarter_seconds


def effective_limit(
    *,
    constraint_kw: float,
    at: datetime,
    zone: ZoneInfo,
    schedules: Iterable[ScheduleWindow] = (),
    demand_responses: Iterable[DemandResponseWindow] = (),
    peak_kw: float | None = None,
) -> EffectiveLimit:
    """The lowest of the chain's limits in force at `at`, with where it came from."""
    best = EffectiveLimit(constraint_kw, CONSTRAINT)
    for window in schedules:
        lower = window.max_import_kw is not None and window.max_import_kw < best.import_kw
        if lower and schedule_window_active(window, at, zone):
            best = EffectiveLimit(window.max_import_kw, SCHEDULE, window.id)
    base_kw = best.import_kw
    # Overlapping events: each is applied to the limit before demand response, the lowest wins.
    for event in demand_responses:
        if demand_response_active(event, at):
            limit = demand_response_limit_kw(event, base_kw)
            if limit < best.import_kw:
                best = EffectiveLimit(limit, DEMAND_RESPONSE, event.id)
    if peak_kw is not None and peak_kw < best.import_kw:
        best = EffectiveLimit(peak_kw, PEAK)
    return best

"""The schema of a tariff version's time-of-use periods, and their coverage check.

A period is `{"name", "months": [from, to], "day_types": [...], "start": "HH:MM", "end": "HH:MM",
"rate": "0.25"}` or with `"tiers": [{"up_to": "100", "rate": "0.20"}, {"rate": "0.25"}]` instead of
`rate` (block rates: kWh of this period in a billing cycle up to `up_to` at the first rate, …; the
last tier has no `up_to`). Demand periods have the same shape with rates per kW. Months are
inclusive and may wrap (`[11, 2]` is November to February); windows are local times to the
minute ("17:10"), `end` may be "24:00", a window never wraps midnight (use two periods). A
boundary inside a 15-minute interval splits that interval's energy (billing.pricing).

Coverage: for every month and every day type (weekday, weekend, and holiday when any period
names it; otherwise holidays are billed as weekends) every minute of the day belongs to exactly
one period. Errors name the missing and the doubled windows.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from decimal import Decimal

from billing.money import MoneyInvalid, decimal_of

DAY_TYPES = ("weekday", "weekend", "holiday")
SLOTS = 1440  # a period's start_slot/end_slot are minutes of the local day
TIME = re.compile(r"^([01][0-9]|2[0-4]):([0-5][0-9])$")
PERIOD_KEYS = {"name", "months", "day_types", "start", "end", "rate", "tiers"}
MAX_PERIODS = 600


class PeriodsInvalid(ValueError):
    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None  # cumulative kWh (or kW) of the period in a cycle; None: no limit
    rate: Decimal


@dataclass(frozen=True)
class Period:
    name: str
    months: tuple[int, ...]
    day_types: tuple[str, ...]
    start_slot: int
    end_slot: int
    tiers: tuple[Tier, ...]


def _slot(text: object) -> int | None:
    if not isinstance(text, str) or not TIME.match(text):
        return None
    hours, minutes = int(text[:2]), int(text[3:])
    if hours == 24 and minutes:
        return None
    return hours * 60 + minutes


def _clock(slot: int) -> str:
    return f"{slot // 60:02d}:{slot % 60:02d}"


def _months(value: object) -> tuple[int, ...] | None:
    if not (isinstance(value, list) and len(value) == 2 and all(type(m) is int and 1 <= m <= 12 for m in value)):
        return None
    first, last = value
    span = (last - first) % 12
    return tuple((first - 1 + n) % 12 + 1 for n in range(span + 1))


def _tiers(raw: dict, where: str, errors: list[str], *, allow_negative: bool = False) -> tuple[Tier, ...]:
    if "rate" in raw and "tiers" in raw:
        errors.append(f"{where}: give either rate or tiers, not both")
        return ()
    items = raw["tiers"] if "tiers" in raw else [{"rate": raw.get("rate")}]
    if not isinstance(items, list) or not items:
        errors.append(f"{where}.tiers: must be a non-empty list")
        return ()
    tiers: list[Tier] = []
    previous = Decimal(0)
    for n, item in enumerate(items):
        last = n == len(items) - 1
        if not isinstance(item, dict) or set(item) - {"up_to", "rate"}:
            errors.append(f"{where}.tiers[{n}]: must be {{up_to, rate}}")
            continue
        try:
            rate = decimal_of(item.get("rate"))
        except MoneyInvalid as exc:
            errors.append(f"{where}.rate: {exc}" if "tiers" not in raw else f"{where}.tiers[{n}].rate: {exc}")
            continue
        if abs(rate) >= Decimal("100000000"):
            errors.append(f"{where}.rate: must be below 100000000")
            continue
        if rate < 0 and not allow_negative:
            errors.append(f"{where}.rate: must not be negative")
            continue
        up_to = item.get("up_to")
        if last and up_to is not None:
            errors.append(f"{where}.tiers[{n}].up_to: the last tier has no limit (omit up_to)")
            continue
        if not last:
            try:
                up_to = decimal_of(up_to)
            except MoneyInvalid as exc:
                errors.append(f"{where}.tiers[{n}].up_to: {exc}")
                continue
            if up_to <= previous:
                errors.append(f"{where}.tiers[{n}].up_to: limits must increase and be above 0")
                continue
            previous = up_to
        tiers.append(Tier(up_to=up_to, rate=rate))
    return tuple(tiers)


def periods_parse(raw: object, *, field: str = "periods", required: bool = True) -> list[Period]:
    """Typed periods from their JSON, or PeriodsInvalid listing every problem (shape, rates,
    missing or doubled windows)."""
    if not isinstance(raw, list):
        raise PeriodsInvalid([f"{field}: must be a list of periods"])
    if not raw:
        if required:
            raise PeriodsInvalid([f"{field}: at least one period is required"])
        return []
    if len(raw) > MAX_PERIODS:
        raise PeriodsInvalid([f"{field}: at most {MAX_PERIODS} periods"])
    errors: list[str] = []
    periods: list[Period] = []
    for n, item in enumerate(raw):
        where = f"{field}[{n}]"
        if not isinstance(item, dict):
            errors.append(f"{where}: must be an object")
            continue
        unknown = set(item) - PERIOD_KEYS
        if unknown:
            errors.append(f"{where}: unknown keys {sorted(unknown)}")
        name = item.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= 60:
            errors.append(f"{where}.name: a name of 1-60 characters is required")
        months = _months(item.get("months", [1, 12]))
        if months is None:
            errors.append(f"{where}.months: must be [from, to], months 1-12")
        day_types = item.get("day_types")
        if not (isinstance(day_types, list) and day_types and all(d in DAY_TYPES for d in day_types)):
            errors.append(f"{where}.day_types: a non-empty list of {', '.join(DAY_TYPES)}")
        start, end = _slot(item.get("start")), _slot(item.get("end"))
        if start is None or end is None:
            errors.append(f'{where}.start/end: local times "HH:MM", 00:00-24:00')
        elif start >= end:
            errors.append(f"{where}.end: must be after start (a window never wraps midnight; use two periods)")
        tiers = _tiers(item, where, errors)
        if not errors:
            periods.append(Period(name, months, tuple(dict.fromkeys(day_types)), start, end, tiers))
    if errors:
        raise PeriodsInvalid(errors)
    coverage = coverage_errors(periods, field=field)
    if coverage:
        raise PeriodsInvalid(coverage)
    return periods


def _runs(slots: list[int]) -> list[str]:
    runs: list[str] = []
    for slot in sorted(slots):
        if runs and runs[-1][1] == slot:
            runs[-1] = (runs[-1][0], slot + 1)
        else:
            runs.append((slot, slot + 1))
    return [f"{_clock(a)}-{_clock(b)}" for a, b in runs]


def _month_runs(months: list[int]) -> str:
    runs: list[list[int]] = []
    for month in months:
        if runs and runs[-1][1] == month - 1:
            runs[-1][1] = month
        else:
            runs.append([month, month])
    text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return f"month {text}" if len(months) == 1 else f"months {text}"


def coverage_errors(periods: list[Period], *, field: str = "periods") -> list[str]:
    """Missing and doubled windows per day type, grouped over months with the same problem."""
    day_types = ["weekday", "weekend"] + (["holiday"] if any("holiday" in p.day_types for p in periods) else [])
    problems: dict[tuple[str, str, tuple[str, ...]], list[int]] = {}
    for day_type in day_types:
        for month in range(1, 13):
            steps = [0] * (SLOTS + 1)  # +1 where a window starts, -1 where it ends
            for period in periods:
                if day_type in period.day_types and month in period.months:
                    steps[period.start_slot] += 1
                    steps[period.end_slot] -= 1
            counts = list(itertools.accumulate(steps[:SLOTS]))
            missing = tuple(_runs([s for s, c in enumerate(counts) if c == 0]))
            doubled = tuple(_runs([s for s, c in enumerate(counts) if c > 1]))
            if missing:
                problems.setdefault((day_type, "missing", missing), []).append(month)
            if doubled:
                problems.setdefault((day_type, "doubled", doubled), []).append(month)
    return [
        f"{field}: {day_type} {_month_runs(months)}: {what} {', '.join(windows)}"
        for (day_type, what, windows), months in problems.items()
    ]


def period_at(periods: list[Period], *, month: int, day_type: str, slot: int) -> Period:
    """The period of a local minute of the day (coverage guarantees exactly one)."""
    if day_type == "holiday" and not any("holiday" in p.day_types for p in periods):
        day_type = "weekend"
    for period in periods:
        if day_type in period.day_types and month in period.months and period.start_slot <= slot < period.end_slot:
            return period
    raise LookupError((month, day_type, slot))

"""Pure costing of metered energy at a tariff: no database, no clock.

Input: per 15-minute UTC interval, the account's imported and exported kWh (Decimal, summed over
its meters); the tariff's versions; the site's zone; a holiday test; the billing cycles the range
touches. Output: bill lines and totals, Decimal throughout.

- Each interval is priced in the local time of the site: its local date picks the version
  (valid from a local date) and the day type (holiday, weekend, weekday), its local minutes the
  period. Every IANA offset is a multiple of 15 minutes, so a UTC 15-minute interval is a local
  15-minute window of one local day; on a DST day the local day has 92 or 100 of them and each
  is priced where it falls. Period windows are to the minute: when a boundary falls inside an
  interval (a "17:10" peak start), the interval's energy is split between the periods pro rata
  by time (5 and 10 minutes: 1/3 and 2/3), the last part taking the remainder so the parts sum
  exactly. The rollups hold no finer energy, and constant power within 15 minutes is the
  assumption every 15-minute settlement makes. Demand is not split: the interval's 15-minute
  average demand counts in every demand period the interval touches.
- Tiers count the kWh of one period (of one version) within one billing cycle.
- Demand: the interval's kW is its imported kWh x 4 (the 15-minute average demand, coincident
  over the account's meters). The flat demand charge takes the cycle's peak at the rate of the
  version in force at the peak; TOU demand periods take the peak within each period. A partial
  cycle (a preview to now) charges the peak so far, never prorated.
- Fixed per day: local days covered (a partial day counts its share of that day's length, a DST
  day is one day). Fixed per month and the minimum charge: per billing cycle, by the share of the
  cycle covered. The minimum applies per cycle to energy - export + fixed + demand; a shortfall is
  a `minimum` line.
- Rounding: every line is rounded to the currency's minor unit, half-even; the subtotal is the sum
  of rounded lines; tax is the sum over versions of (their lines' subtotal x tax %), rounded once;
  total = subtotal + tax.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from billing.money import round_money
from billing.tariffs.validation import Period, Tier, period_at

QUARTER = timedelta(minutes=15)
QUARTER_MINUTES = 15
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Prices:
    """One tariff version, typed."""

    valid_from: date
    periods: list[Period]
    demand_periods: list[Period] = field(default_factory=list)
    export_rate: Decimal | None = None
    fixed_per_day: Decimal = Decimal(0)
    fixed_per_month: Decimal = Decimal(0)
    demand_rate: Decimal = Decimal(0)
    minimum_charge: Decimal = Decimal(0)
    tax_pct: Decimal = Decimal(0)


@dataclass(frozen=True)
class Interval:
    ts: datetime  # UTC start of the 15-minute interval
    import_kwh: Decimal
    export_kwh: Decimal = Decimal(0)


@dataclass
class Line:
    kind: str  # energy, export, demand, fixed_day, fixed_month, minimum
    label: str
    version_from: date
    quantity: Decimal
    unit: str
    rate: Decimal | None
    amount: Decimal
    period: str = ""
    tier: int | None = None
    peak_at: datetime | None = None

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "label": self.label,
            "period": self.period,
            "tier": self.tier,
            "version_from": self.version_from.isoformat(),
            "quantity": str(self.quantity),
            "unit": self.unit,
            "rate": None if self.rate is None else str(self.rate),
            "amount": str(self.amount),
            "peak_at": self.peak_at.isoformat().replace("+00:00", "Z") if self.peak_at else None,
        }


@dataclass
class Bill:
    currency: str
    lines: list[Line]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    import_kwh: Decimal
    export_kwh: Decimal


def version_on(versions: list[Prices], day: date) -> Prices | None:
    """The version valid on a local date (the latest `valid_from` not after it)."""
    found = None
    for version in versions:
        if version.valid_from <= day:
            found = version
    return found


def day_type(day: date, is_holiday: Callable[[date], bool]) -> str:
    if is_holiday(day):
        return "holiday"
    return "weekend" if day.weekday() >= 5 else "weekday"


def _tiered(tiers: tuple[Tier, ...], already: Decimal, quantity: Decimal) -> list[tuple[int, Decimal, Decimal]]:
    """(tier index, quantity, rate) of `quantity` added on top of `already` of the same period."""
    parts = []
    low = Decimal(0)
    for index, tier in enumerate(tiers):
        high = tier.up_to
        start = max(already, low)
        stop = already + quantity if high is None else min(already + quantity, high)
        if stop > start:
            parts.append((index, stop - start, tier.rate))
        if high is not None:
            low = high
    return parts


def periods_within(
    periods: list[Period], *, month: int, day_type: str, minute: int, kwh: Decimal
) -> list[tuple[Period, Decimal]]:
    """The periods of the local window [minute, minute + 15) with each one's share of `kwh`
    (pro rata by minutes; one period takes it all)."""
    end = min(minute + QUARTER_MINUTES, 24 * 60)
    parts: list[tuple[Period, int]] = []
    while minute < end:
        period = period_at(periods, month=month, day_type=day_type, slot=minute)
        stop = min(period.end_slot, end)
        parts.append((period, stop - minute))
        minute = stop
    if len(parts) == 1:
        return [(parts[0][0], kwh)]
    shares, left, total = [], kwh, sum(minutes for _period, minutes in parts)
    for index, (period, minutes) in enumerate(parts):
        share = left if index == len(parts) - 1 else kwh * minutes / total
        left -= share
        shares.append((period, share))
    return shares


def _local_days(start: datetime, end: datetime, tz: ZoneInfo):
    """(local date, covered seconds, that day's length in seconds) for each local day touched."""
    day = start.astimezone(tz).date()
    while True:
        # Local midnights, compared and subtracted in UTC: a DST day is 23 or 25 hours long.
        following_day = day + timedelta(days=1)
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
        following = datetime(following_day.year, following_day.month, following_day.day, tzinfo=tz).astimezone(UTC)
        lo, hi = max(start, midnight), min(end, following)
        if lo >= end:
            return
        length = Decimal(int((following - midnight).total_seconds()))
        if hi > lo:
            yield day, Decimal(int((hi - lo).total_seconds())), length
        day += timedelta(days=1)


class _Book:
    """Lines accumulated unrounded under their key."""

    def __init__(self) -> None:
        self.lines: dict[tuple, Line] = {}

    def add(self, key: tuple, make: Callable[[], Line], quantity: Decimal, amount: Decimal) -> Line:
        line = self.lines.get(key)
        if line is None:
            line = self.lines[key] = make()
        line.quantity += quantity
        line.amount += amount
        return line


def bill_compute(
    *,
    intervals: list[Interval],
    versions: list[Prices],
    tz: ZoneInfo,
    currency: str,
    cycles: list[tuple[datetime, datetime]],
    start: datetime,
    end: datetime,
    is_holiday: Callable[[date], bool] = lambda day: False,
) -> Bill:
    """The bill of [start, end) (UTC). `cycles` are the billing cycles touching the range, in order;
    intervals outside the range or before the first version are ignored (the caller reports them)."""
    versions = sorted(versions, key=lambda v: v.valid_from)
    book = _Book()
    total_import = total_export = Decimal(0)
    per_version_subtotal: dict[date, Decimal] = defaultdict(Decimal)
    by_ts = sorted(intervals, key=lambda i: i.ts)
    days: dict[date, tuple[Prices | None, str]] = {}  # local date → (version, day type)
    for cycle_start, cycle_end in cycles:
        lo, hi = max(start, cycle_start), min(end, cycle_end)
        if hi <= lo:
            continue
        cycle_seconds = Decimal(int((cycle_end - cycle_start).total_seconds()))
        cycle_lines: list[tuple[Line, Decimal]] = []  # (line, amount added in this cycle)
        used: dict[tuple, Decimal] = defaultdict(Decimal)  # tier accumulation per (version, period)
        peaks: dict[tuple, tuple[Decimal, datetime, Prices, Period | None]] = {}
        for interval in by_ts:
            if not lo <= interval.ts < hi:
                continue
            local = interval.ts.astimezone(tz)
            day = local.date()
            if day not in days:
                days[day] = (version_on(versions, day), day_type(day, is_holiday))
            version, kind = days[day]
            if version is None:
                continue
            minute = local.hour * 60 + local.minute
            total_import += interval.import_kwh
            total_export += interval.export_kwh
            for period, part in periods_within(
                version.periods, month=local.month, day_type=kind, minute=minute, kwh=interval.import_kwh
            ):
                key = (version.valid_from, period.name)
                for tier, kwh, rate in _tiered(period.tiers, used[key], part):
                    tiered = len(period.tiers) > 1
                    line = book.add(
                        ("energy", version.valid_from, period.name, tier, rate),
                        lambda v=version, p=period, t=tier, r=rate, tiered=tiered: Line(
                            "energy",
                            f"Energy {p.name}" + (f" tier {t + 1}" if tiered else ""),
                            v.valid_from,
                            Decimal(0),
                            "kWh",
                            r,
                            Decimal(0),
                            period=p.name,
                            tier=t if tiered else None,
                        ),
                        kwh,
                        kwh * rate,
                    )
                    cycle_lines.append((line, kwh * rate))
                used[key] += part
            if interval.export_kwh and version.export_rate:
                amount = -interval.export_kwh * version.export_rate
                line = book.add(
                    ("export", version.valid_from, version.export_rate),
                    lambda v=version: Line(
                        "export", "Export credit", v.valid_from, Decimal(0), "kWh", v.export_rate, Decimal(0)
                    ),
                    interval.export_kwh,
                    amount,
                )
                cycle_lines.append((line, amount))
            kw = interval.import_kwh * 4
            if version.demand_rate and (("flat",) not in peaks or kw > peaks[("flat",)][0]):
                peaks[("flat",)] = (kw, interval.ts, version, None)
            if version.demand_periods:
                for demand_period, _part in periods_within(
                    version.demand_periods, month=local.month, day_type=kind, minute=minute, kwh=Decimal(0)
                ):
                    dkey = ("tou", demand_period.name)
                    if dkey not in peaks or kw > peaks[dkey][0]:
                        peaks[dkey] = (kw, interval.ts, version, demand_period)
        for dkey, (kw, at, version, demand_period) in peaks.items():
            tiers = demand_period.tiers if demand_period else (Tier(None, version.demand_rate),)
            for tier, quantity, rate in _tiered(tiers, Decimal(0), kw):
                name = demand_period.name if demand_period else ""
                label = f"Demand {name}".strip() + (f" tier {tier + 1}" if len(tiers) > 1 else "")
                line = Line(
                    "demand",
                    label,
                    version.valid_from,
                    quantity,
                    "kW",
                    rate,
                    quantity * rate,
                    period=name,
                    tier=tier if len(tiers) > 1 else None,
                    peak_at=at,
                )
                book.lines[("demand", cycle_start, dkey, tier)] = line
                cycle_lines.append((line, line.amount))
        for day, covered, length in _local_days(lo, hi, tz):
            version = version_on(versions, day)
            if version is None:
                continue
            if version.fixed_per_day:
                days = covered / length
                line = book.add(
                    ("fixed_day", version.valid_from),
                    lambda v=version: Line(
                        "fixed_day",
                        "Fixed charge per day",
                        v.valid_from,
                        Decimal(0),
                        "day",
                        v.fixed_per_day,
                        Decimal(0),
                    ),
                    days,
                    days * version.fixed_per_day,
                )
                cycle_lines.append((line, days * version.fixed_per_day))
            if version.fixed_per_month:
                share = covered / cycle_seconds
                line = book.add(
                    ("fixed_month", version.valid_from),
                    lambda v=version: Line(
                        "fixed_month",
                        "Fixed charge per billing cycle",
                        v.valid_from,
                        Decimal(0),
                        "cycle",
                        v.fixed_per_month,
                        Decimal(0),
                    ),
                    share,
                    share * version.fixed_per_month,
                )
                cycle_lines.append((line, share * version.fixed_per_month))
        first = version_on(versions, lo.astimezone(tz).date())
        if first is not None and first.minimum_charge:
            share = Decimal(int((hi - lo).total_seconds())) / cycle_seconds
            minimum = first.minimum_charge * share
            charged = sum((amount for _line, amount in cycle_lines), Decimal(0))
            if charged < minimum:
                book.lines[("minimum", cycle_start)] = Line(
                    "minimum",
                    "Minimum charge top-up",
                    first.valid_from,
                    share,
                    "cycle",
                    first.minimum_charge,
                    minimum - charged,
                )
    lines = list(book.lines.values())
    for line in lines:
        line.amount = round_money(line.amount, currency)
        line.quantity = line.quantity.quantize(Decimal("0.000001"))
        per_version_subtotal[line.version_from] += line.amount
    subtotal = sum((line.amount for line in lines), Decimal(0))
    pct = {v.valid_from: v.tax_pct for v in versions}
    tax = round_money(
        sum((amount * pct[v] / HUNDRED for v, amount in per_version_subtotal.items()), Decimal(0)), currency
    )
    order = {"energy": 0, "export": 1, "demand": 2, "fixed_day": 3, "fixed_month": 4, "minimum": 5}
    lines.sort(key=lambda line: (line.version_from, order[line.kind], line.period, line.tier or 0))
    return Bill(
        currency,
        lines,
        round_money(subtotal, currency),
        tax,
        round_money(subtotal + tax, currency),
        total_import,
        total_export,
    )

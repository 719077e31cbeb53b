"""Billing's reads: an account's meters, its tariff's typed versions, and its metered intervals
(through energy.analytics.selectors.interval_energy: billing never reads energy's tables)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holiday_calendars

from billing.models import Account, Tariff
from billing.pricing import Interval, Prices
from billing.tariffs.validation import periods_parse
from energy.analytics.selectors import interval_energy
from energy.models import Meter

QUARTER = timedelta(minutes=15)
QUARTER_KWH_PER_W_FLOAT = 0.00025  # W averaged over 15 minutes → kWh
KWH = Decimal("0.000001")
MAX_LISTED = 20


def account_meter_ids(*, account: Account) -> list[int]:
    """The account's meters and its groups' meters, of its own organization only."""
    meters = Meter.objects.for_org(account.organization_id)
    direct = meters.filter(pk__in=account.meters.values("pk"))
    grouped = meters.filter(groups__in=account.groups.values("pk"))
    return sorted(set(direct.values_list("pk", flat=True)) | set(grouped.values_list("pk", flat=True)))


def account_timezone(*, account: Account) -> ZoneInfo:
    return ZoneInfo(account.site.timezone)


def tariff_prices(*, tariff: Tariff) -> list[Prices]:
    """The tariff's versions, typed (their periods were validated when saved)."""
    return [
        Prices(
            valid_from=v.valid_from,
            periods=periods_parse(v.periods),
            demand_periods=periods_parse(v.demand_periods, field="demand_periods", required=False),
            export_rate=v.export_rate,
            fixed_per_day=v.fixed_per_day,
            fixed_per_month=v.fixed_per_month,
            demand_rate=v.demand_rate,
            minimum_charge=v.minimum_charge,
            tax_pct=v.tax_pct,
        )
        for v in tariff.versions.order_by("valid_from")
    ]


@lru_cache(maxsize=64)
def _calendar(country: str, subdivision: str, years: tuple[int, ...]):
    return holiday_calendars.country_holidays(country, subdiv=subdivision or None, years=years)


def holiday_test(*, tariff: Tariff, start: datetime, end: datetime):
    """date → is it a public holiday of the tariff's country/subdivision (never, without one)."""
    if not tariff.country:
        return lambda day: False
    calendar = _calendar(tariff.country, tariff.subdivision, tuple(range(start.year - 1, end.year + 2)))
    return lambda day: day in calendar


def _kwh(value: float | None) -> Decimal:
    return Decimal(0) if value is None else Decimal(repr(value)).quantize(KWH)


def account_intervals(
    *, account: Account, start: datetime, end: datetime, now: datetime
) -> tuple[list[Interval], dict]:
    """The account's kWh per 15-minute interval (summed over its meters) and the data quality.

    Per meter: with a register in the range, energy is the register increments (a counter reset
    counts the new value as energy since zero; energy across a gap lands in the first interval
    after it). Without one, intervals are estimated as the positive average power x 0.25 h."""
    meter_ids = account_meter_ids(account=account)
    rows = interval_energy(organization=account.organization_id, meter_ids=meter_ids, start=start, end=end)
    by_meter: dict[int, list[tuple]] = defaultdict(list)
    for row in rows:
        by_meter[row[0]].append(row)
    # kWh are measurements (floats in storage): summed per interval as floats, then each interval's
    # sum becomes a Decimal once (to the micro-kWh). Money starts at the rate: Decimal from there.
    imports: dict[datetime, float] = defaultdict(float)
    exports: dict[datetime, float] = defaultdict(float)
    resets: list[dict] = []
    estimated: list[dict] = []
    gaps: list[dict] = []
    horizon = min(end, now)
    expected = max(0, int((horizon - start).total_seconds()) // 900) if horizon > start else 0
    for meter_id in meter_ids:
        meter_rows = by_meter.get(meter_id, [])
        has_register = any(row[4] is not None for row in meter_rows)
        previous_last = None
        seen = 0
        for _meter, ts, inc, export_inc, last, power_avg, _n in meter_rows:
            seen += ts < horizon
            if has_register:
                imports[ts] += inc or 0.0
                exports[ts] += export_inc or 0.0
                if last is not None:
                    if previous_last is not None and last < previous_last:
                        resets.append({"meter_id": meter_id, "interval": ts})
                    previous_last = last
            elif power_avg is not None:
                imports[ts] += max(power_avg, 0.0) * QUARTER_KWH_PER_W_FLOAT
                exports[ts] += max(-power_avg, 0.0) * QUARTER_KWH_PER_W_FLOAT
                estimated.append({"meter_id": meter_id, "interval": ts})
        if expected - seen > 0:
            gaps.append({"meter_id": meter_id, "missing_intervals": expected - seen})
    intervals = [Interval(ts, _kwh(imports[ts]), _kwh(exports.get(ts))) for ts in sorted(imports)]
    quality = {
        "meters": len(meter_ids),
        "expected_intervals_per_meter": expected,
        "gaps": gaps,
        "gap_method": "no estimate: a register's energy across a gap is counted in the first interval after it",
        "counter_resets": len(resets),
        "counter_reset_intervals": [_stamp(r) for r in resets[:MAX_LISTED]],
        "estimated_intervals": len(estimated),
        "estimated_examples": [_stamp(e) for e in estimated[:MAX_LISTED]],
        "estimate_method": "meters without an energy register: positive average power x 0.25 h per interval",
    }
    return intervals, quality


def _stamp(item: dict) -> dict:
    return {"meter_id": item["meter_id"], "interval": item["interval"].isoformat().replace("+00:00", "Z")}

"""Billing's reads: an account's meters, its tariff's typed versions, and its metered intervals
(through energy.analytics.selectors.interval_energy: billing never reads energy's tables)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holiday_calendars

from billing.models import Account, Tariff
from billing.pricing import Interval, Prices
from billing.tariffs.validation import periods_parse
from energy.analytics.selectors import interval_energy
from energy.models import Meter

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


ZERO_KWH = Decimal("0.000000")


def _kwh(value: float | None) -> Decimal:
    """A measured kWh as a Decimal to the micro-kWh (the float formatted once, correctly rounded)."""
    return ZERO_KWH if not value else Decimal(f"{value:.6f}")


def account_intervals(
    *, account: Account, start: datetime, end: datetime, now: datetime
) -> tuple[list[Interval], dict]:
    """The account's kWh per 15-minute interval (summed over its meters) and the data quality.

    Per meter: with a register in the range, energy is the register increments (a counter reset
    counts the new value as energy since zero; energy across a gap lands in the first interval
    after it). Without one, intervals are estimated as the positive average power x 0.25 h. kWh
    are measurements (floats in storage): each interval's sum becomes a Decimal once, to the
    micro-kWh; money starts at the rate and is Decimal from there."""
    meter_ids = account_meter_ids(account=account)
    energy = interval_energy(organization=account.organization_id, meter_ids=meter_ids, start=start, end=end)
    horizon = min(end, now)
    expected = max(0, int((horizon - start).total_seconds()) // 900) if horizon > start else 0
    gaps = [
        {"meter_id": meter_id, "missing_intervals": expected - energy.buckets_per_meter.get(meter_id, 0)}
        for meter_id in meter_ids
        if expected - energy.buckets_per_meter.get(meter_id, 0) > 0
    ]
    intervals = [Interval(ts, _kwh(imported), _kwh(exported)) for ts, imported, exported in energy.intervals]
    quality = {
        "meters": len(meter_ids),
        "expected_intervals_per_meter": expected,
        "gaps": gaps,
        "gap_method": "no estimate: a register's energy across a gap is counted in the first interval after it",
        "counter_resets": len(energy.resets),
        "counter_reset_intervals": [_stamp(meter_id, ts) for meter_id, ts in energy.resets[:MAX_LISTED]],
        "estimated_intervals": energy.estimated,
        "estimated_examples": [_stamp(meter_id, ts) for meter_id, ts in energy.estimated_examples],
        "estimate_method": "meters without an energy register: positive average power x 0.25 h per interval",
    }
    return intervals, quality


def _stamp(meter_id: int, ts: datetime) -> dict:
    return {"meter_id": meter_id, "interval": ts.isoformat().replace("+00:00", "Z")}

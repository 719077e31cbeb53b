"""Bills computed by hand, on the pure costing (billing.pricing): no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from billing.cycles import cycle_of, cycles_between
from billing.money import MoneyInvalid, decimal_of, round_money
from billing.pricing import Interval, Prices, bill_compute
from billing.tariffs.validation import periods_parse

BERLIN = ZoneInfo("Europe/Berlin")
D = Decimal


def period(name, day_types, start, end, rate=None, months=(1, 12), tiers=None):
    item = {"name": name, "months": list(months), "day_types": day_types, "start": start, "end": end}
    item.update({"tiers": tiers} if tiers else {"rate": rate})
    return item


ALL = ["weekday", "weekend"]
TWO_RATE = [
    period("weekday", ["weekday"], "00:00", "24:00", "0.30"),
    period("weekend", ["weekend"], "00:00", "24:00", "0.20"),
]
FLAT = [period("all", ALL, "00:00", "24:00", "0.25")]


def prices(periods=FLAT, valid_from=date(2020, 1, 1), **values) -> Prices:
    return Prices(valid_from=valid_from, periods=periods_parse(periods), **values)


def local(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN).astimezone(UTC)


def bill(intervals, versions, start, end, *, currency="EUR", cycle_day=1, is_holiday=lambda d: False):
    return bill_compute(
        intervals=intervals, versions=versions if isinstance(versions, list) else [versions], tz=BERLIN,
        currency=currency, cycles=cycles_between(start, end, cycle_day=cycle_day, tz=BERLIN), start=start, end=end,
        is_holiday=is_holiday,
    )  # fmt: skip


def amounts(result) -> dict:
    return {line.label: (line.quantity, line.amount) for line in result.lines}


def test_two_rate_weekday_and_weekend():
    # Friday 17 and Saturday 18 October 2025, 10:00 in Berlin.
    intervals = [Interval(local(2025, 10, 17, 10), D("1")), Interval(local(2025, 10, 18, 10), D("2"))]
    result = bill(intervals, prices(TWO_RATE), local(2025, 10, 17), local(2025, 10, 19))
    assert amounts(result) == {"Energy weekday": (D("1"), D("0.30")), "Energy weekend": (D("2"), D("0.40"))}
    assert (result.subtotal, result.tax, result.total, result.currency) == (D("0.70"), D("0.00"), D("0.70"), "EUR")


def test_a_period_boundary_is_priced_on_each_side_in_local_time():
    periods = [
        period("peak", ["weekday"], "07:00", "21:00", "0.34"),
        period("off-peak", ["weekday"], "00:00", "07:00", "0.22"),
        period("off-peak", ["weekday"], "21:00", "24:00", "0.22"),
        period("off-peak", ["weekend"], "00:00", "24:00", "0.22"),
    ]
    # 06:45-07:00 and 07:00-07:15 local (UTC+2 in October: 04:45Z and 05:00Z).
    intervals = [Interval(local(2025, 10, 17, 6, 45), D("1")), Interval(local(2025, 10, 17, 7), D("1"))]
    assert intervals[1].ts == datetime(2025, 10, 17, 5, tzinfo=UTC)
    result = bill(intervals, prices(periods), local(2025, 10, 17), local(2025, 10, 18))
    assert amounts(result) == {"Energy peak": (D("1"), D("0.34")), "Energy off-peak": (D("1"), D("0.22"))}


def test_a_boundary_inside_a_15_minute_interval_splits_its_energy_pro_rata():
    # Peak from 17:10: the 17:00-17:15 interval is 10 minutes off-peak and 5 minutes peak.
    periods = [
        period("off-peak", ["weekday"], "00:00", "17:10", "0.22"),
        period("peak", ["weekday"], "17:10", "24:00", "0.34"),
        period("off-peak", ["weekend"], "00:00", "24:00", "0.22"),
    ]
    intervals = [
        Interval(local(2025, 10, 17, 16, 45), D("2")),  # all off-peak
        Interval(local(2025, 10, 17, 17), D("3")),  # 2 off-peak + 1 peak
        Interval(local(2025, 10, 17, 17, 15), D("1.5")),  # all peak
    ]
    result = bill(intervals, prices(periods), local(2025, 10, 17), local(2025, 10, 18))
    # off-peak 4 kWh x 0.22 = 0.88; peak 2.5 kWh x 0.34 = 0.85
    assert amounts(result) == {"Energy off-peak": (D("4"), D("0.88")), "Energy peak": (D("2.5"), D("0.85"))}
    assert (result.import_kwh, result.total) == (D("6.5"), D("1.73"))


def test_an_uneven_split_keeps_every_kwh_and_tiers_count_each_part():
    # A 17:07 boundary: 7/15 and 8/15 of 1 kWh; the parts sum to the interval exactly.
    periods = [
        period("early", ALL, "00:00", "17:07", "0.30"),
        period("late", ALL, "17:07", "24:00", tiers=[{"up_to": "0.5", "rate": "0.10"}, {"rate": "1.00"}]),
    ]
    result = bill(
        [Interval(local(2025, 10, 17, 17), D("1"))], prices(periods), local(2025, 10, 17), local(2025, 10, 18)
    )
    # early 0.466667 kWh x 0.30 = 0.14; late 0.5 x 0.10 = 0.05 and 0.033333 x 1.00 = 0.03
    assert amounts(result) == {
        "Energy early": (D("0.466667"), D("0.14")),
        "Energy late tier 1": (D("0.5"), D("0.05")),
        "Energy late tier 2": (D("0.033333"), D("0.03")),
    }
    assert result.import_kwh == D("1") and result.total == D("0.22")


def test_demand_in_a_split_interval_counts_in_both_demand_periods():
    demand = [
        period("day", ALL, "00:00", "17:10", "2"),
        period("evening", ALL, "17:10", "24:00", "5"),
    ]
    version = Prices(valid_from=date(2020, 1, 1), periods=periods_parse(FLAT),
                     demand_periods=periods_parse(demand, field="demand_periods"))  # fmt: skip
    result = bill([Interval(local(2025, 10, 17, 17), D("3"))], version, local(2025, 10, 1), local(2025, 11, 1))
    charged = {line.label: (line.quantity, line.amount) for line in result.lines if line.kind == "demand"}
    assert charged == {"Demand day": (D("12"), D("24.00")), "Demand evening": (D("12"), D("60.00"))}


def test_the_dst_day_has_25_local_hours_and_one_fixed_day():
    # 26 October 2025: Berlin falls back at 03:00 to 02:00, so 00:00-06:00 local lasts 7 hours.
    periods = [period("night", ALL, "00:00", "06:00", "0.10"), period("day", ALL, "06:00", "24:00", "0.30")]
    start, end = local(2025, 10, 26), local(2025, 10, 27)
    assert end - start == timedelta(hours=25)
    intervals = [Interval(start + timedelta(minutes=15 * n), D("0.1")) for n in range(100)]
    result = bill(intervals, prices(periods, fixed_per_day=D("1.00")), start, end)
    assert amounts(result) == {
        "Energy night": (D("2.8"), D("0.28")),
        "Energy day": (D("7.2"), D("2.16")),
        "Fixed charge per day": (D("1"), D("1.00")),
    }
    assert result.total == D("3.44")


def test_a_public_holiday_uses_the_holiday_periods():
    periods = [*TWO_RATE, period("holiday", ["holiday"], "00:00", "24:00", "0.05")]
    christmas = local(2025, 12, 25, 12)  # a Thursday
    intervals = [Interval(christmas, D("2")), Interval(local(2025, 12, 24, 12), D("1"))]
    result = bill(intervals, prices(periods), local(2025, 12, 24), local(2025, 12, 26),
                  is_holiday=lambda day: day == date(2025, 12, 25))  # fmt: skip
    assert amounts(result) == {"Energy weekday": (D("1"), D("0.30")), "Energy holiday": (D("2"), D("0.10"))}


def test_without_holiday_periods_a_holiday_is_billed_as_a_weekend():
    christmas = [Interval(local(2025, 12, 25, 12), D("1"))]
    result = bill(christmas, prices(TWO_RATE), local(2025, 12, 25), local(2025, 12, 26), is_holiday=lambda day: True)
    assert amounts(result) == {"Energy weekend": (D("1"), D("0.20"))}


def test_a_version_change_mid_cycle_bills_each_part_at_its_price():
    old = prices(FLAT)
    new = prices([period("all", ALL, "00:00", "24:00", "0.40")], valid_from=date(2025, 10, 18))
    intervals = [Interval(local(2025, 10, 17, 23, 45), D("1")), Interval(local(2025, 10, 18, 0), D("1"))]
    result = bill(intervals, [new, old], local(2025, 10, 1), local(2025, 11, 1))
    assert [(line.version_from, line.amount) for line in result.lines] == [
        (date(2020, 1, 1), D("0.25")),
        (date(2025, 10, 18), D("0.40")),
    ]
    assert result.total == D("0.65")


def test_tiers_count_the_period_kwh_within_a_cycle():
    tiers = [{"up_to": "10", "rate": "0.10"}, {"rate": "0.20"}]
    periods = [period("all", ALL, "00:00", "24:00", tiers=tiers)]
    intervals = [Interval(local(2025, 10, 2, 10) + timedelta(minutes=15 * n), D("5")) for n in range(3)]
    # The next cycle starts again from the first tier.
    intervals.append(Interval(local(2025, 11, 2, 10), D("4")))
    result = bill(intervals, prices(periods), local(2025, 10, 1), local(2025, 12, 1))
    assert amounts(result) == {"Energy all tier 1": (D("14"), D("1.40")), "Energy all tier 2": (D("5"), D("1.00"))}


def test_demand_charge_takes_the_highest_15_minute_average_and_its_time():
    intervals = [Interval(local(2025, 10, 2, 10) + timedelta(minutes=15 * n), D(kwh)) for n, kwh in enumerate("132")]
    result = bill(intervals, prices(FLAT, demand_rate=D("10")), local(2025, 10, 1), local(2025, 11, 1))
    [demand] = [line for line in result.lines if line.kind == "demand"]
    assert (demand.quantity, demand.rate, demand.amount) == (D("12"), D("10"), D("120.00"))
    assert demand.peak_at == local(2025, 10, 2, 10, 15)
    assert result.total == D("121.50")  # 6 kWh x 0.25 + 12 kW x 10


def test_export_is_credited_at_the_export_rate():
    intervals = [Interval(local(2025, 10, 2, 12), D("1"), D("5"))]
    result = bill(intervals, prices(FLAT, export_rate=D("0.08")), local(2025, 10, 2), local(2025, 10, 3))
    assert amounts(result) == {"Energy all": (D("1"), D("0.25")), "Export credit": (D("5"), D("-0.40"))}
    assert result.total == D("-0.15")


def test_minimum_charge_tops_up_a_cycle_and_tax_applies_after_it():
    intervals = [Interval(local(2025, 10, 2, 12), D("40"))]
    result = bill(intervals, prices(FLAT, minimum_charge=D("50"), fixed_per_month=D("5"), tax_pct=D("19")),
                  local(2025, 10, 1), local(2025, 11, 1))  # fmt: skip
    assert amounts(result)["Minimum charge top-up"][1] == D("35.00")  # 50 - (10.00 energy + 5.00 fixed)
    assert (result.subtotal, result.tax, result.total) == (D("50.00"), D("9.50"), D("59.50"))


def test_lines_round_half_even_to_the_currency_minor_unit():
    assert round_money(D("0.125"), "EUR") == D("0.12")
    assert round_money(D("0.135"), "EUR") == D("0.14")
    assert round_money(D("12.5"), "JPY") == D("12")
    assert round_money(D("1.0005"), "KWD") == D("1.000")
    result = bill([Interval(local(2025, 10, 2, 12), D("0.5"))], prices(FLAT), local(2025, 10, 2), local(2025, 10, 3))
    assert result.total == D("0.12")  # 0.125 → 0.12


def test_money_never_passes_through_float():
    with pytest.raises(MoneyInvalid):
        decimal_of(0.1)
    assert decimal_of("0.1") == D("0.1")
    # 0.1 + 0.2 in float is 0.30000000000000004; the bill is exact.
    intervals = [Interval(local(2025, 10, 2, 12), D("0.1")), Interval(local(2025, 10, 2, 13), D("0.2"))]
    result = bill(
        intervals, prices([period("all", ALL, "00:00", "24:00", "1")]), local(2025, 10, 2), local(2025, 10, 3)
    )
    assert result.import_kwh == D("0.3") and result.total == D("0.30")
    for line in result.lines:
        assert isinstance(line.amount, Decimal) and isinstance(line.quantity, Decimal)


def test_cycles_start_on_their_day_at_local_midnight():
    start, end = cycle_of(local(2025, 10, 14, 12), cycle_day=15, tz=BERLIN)
    assert (start, end) == (local(2025, 9, 15), local(2025, 10, 15))

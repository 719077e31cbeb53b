"""The URDB conformance example (tests/conformance/urdb-example.json) imports and bills as computed by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from billing.cycles import cycles_between
from billing.pricing import Interval, Prices, bill_compute
from billing.tariffs.urdb import urdb_version
from billing.tariffs.validation import periods_parse
from tests.conformance import vectors

DENVER = ZoneInfo("America/Denver")
D = Decimal


def prices() -> Prices:
    version = urdb_version(vectors("urdb-example.json"))
    return Prices(
        valid_from=date(2024, 1, 1), periods=periods_parse(version["periods"]),
        demand_periods=periods_parse(version["demand_periods"], field="demand_periods", required=False),
        fixed_per_day=version["fixed_per_day"],
    )  # fmt: skip


def month_bill(year: int, month: int, intervals: list[Interval]):
    start = datetime(year, month, 1, tzinfo=DENVER).astimezone(UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=DENVER).astimezone(UTC)
    return bill_compute(
        intervals=intervals, versions=[prices()], tz=DENVER, currency="USD",
        cycles=cycles_between(start, end, cycle_day=1, tz=DENVER), start=start, end=end,
    )  # fmt: skip


def test_a_july_bill_with_both_energy_tiers_and_both_demand_tiers():
    # 100 intervals of 250 kWh on 15 July 2025: 25,000 kWh, a 1,000 kW peak.
    first = datetime(2025, 7, 15, 6, tzinfo=UTC)
    intervals = [Interval(first + timedelta(minutes=15 * n), D("250")) for n in range(100)]
    result = month_bill(2025, 7, intervals)
    lines = {line.label: (line.quantity, line.amount) for line in result.lines}
    assert lines == {
        "Energy period 1 tier 1": (D("20000"), D("1577.82")),  # 20,000 x 0.078891
        "Energy period 1 tier 2": (D("5000"), D("300.00")),  # 5,000 x 0.06
        "Demand period 1 tier 1": (D("100"), D("2436.80")),  # 100 kW x 24.368
        "Demand period 1 tier 2": (D("900"), D("15327.90")),  # 900 kW x 17.031
        "Fixed charge per day": (D("31"), D("102.24")),  # 31 x 3.298 = 102.238
    }
    assert result.total == D("19744.76")


def test_january_uses_the_winter_energy_rate_and_no_demand_charge():
    intervals = [Interval(datetime(2025, 1, 15, 19, tzinfo=UTC), D("100"))]  # a Wednesday
    result = month_bill(2025, 1, intervals)
    lines = {line.label: line.amount for line in result.lines}
    assert lines["Energy period 2"] == D("6.17")  # 100 x 0.061731
    assert lines["Demand period 0"] == D("0.00")


@pytest.mark.django_db
def test_import_through_the_api(api):
    body = {"name": "URDB example", "valid_from": "2024-01-01", "urdb": vectors("urdb-example.json")}
    response = api.post("/api/energy/billing/tariffs/import_urdb", body, format="json")
    assert response.status_code == 201, response.content
    tariff = response.json()
    assert (tariff["currency"], tariff["country"]) == ("USD", "US")
    [version] = tariff["versions"]
    assert version["fixed_per_day"] == "3.2980"
    assert {p["name"] for p in version["periods"]} == {"period 1", "period 2"}


@pytest.mark.django_db
def test_a_broken_urdb_rate_is_400_naming_the_part(api):
    rate = {**vectors("urdb-example.json"), "energyweekdayschedule": [[1] * 24] * 11}
    response = api.post("/api/energy/billing/tariffs/import_urdb",
                        {"name": "x", "valid_from": "2024-01-01", "urdb": rate}, format="json")  # fmt: skip
    assert response.status_code == 400
    assert "energyweekdayschedule" in response.json()["urdb"][0]

"""Import of a URDB-style rate (OpenEI's Utility Rate Database JSON) into a tariff version.

Read: `energyratestructure` (periods of tiers `{rate, max?}`, $/kWh), the 12x24
`energyweekdayschedule`/`energyweekendschedule` (month x hour → period index),
`demandratestructure` with `demandweekdayschedule`/`demandweekendschedule` (TOU demand, $/kW,
tiers by `max` kW), `flatdemandstructure`+`flatdemandmonths` are not read (a flat demand rate is
set on the version instead), `fixedchargefirstmeter` with `fixedchargeunits` ($/day or $/month),
`mincharge`/`minchargeunits` ($/month). URDB tier `max` is a cumulative limit per month; ours is
per billing cycle (the same for cycles starting on the 1st). Holidays follow the weekend schedule,
as in URDB. Numbers arrive as JSON floats; each is taken by its shortest decimal repr (0.078891
stays 0.078891), never computed with.
"""

from __future__ import annotations

from decimal import Decimal

from billing.tariffs.validation import PeriodsInvalid, periods_parse


def _decimal(value) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PeriodsInvalid([f"urdb: {value!r} is not a number"])
    return str(Decimal(repr(value)))


def _tiers(structure: list, index: int, field: str) -> dict:
    try:
        tiers = structure[index]
    except (IndexError, TypeError):
        raise PeriodsInvalid([f"urdb.{field}: the schedules name period {index}, which it lacks"]) from None
    out = []
    for n, tier in enumerate(tiers):
        if not isinstance(tier, dict):
            raise PeriodsInvalid([f"urdb.{field}[{index}][{n}]: a tier is an object {{rate, max}}"])
        item = {"rate": _decimal(tier.get("rate", 0))}
        if "adj" in tier:
            item["rate"] = str(Decimal(item["rate"]) + Decimal(repr(tier["adj"])))
        if n < len(tiers) - 1:
            if "max" not in tier:
                raise PeriodsInvalid([f"urdb.{field}[{index}][{n}]: every tier but the last needs max"])
            item["up_to"] = _decimal(tier["max"])
        out.append(item)
    return {"tiers": out} if len(out) > 1 else {"rate": out[0]["rate"]}


def _schedule(data: dict, name: str) -> list[list[int]]:
    schedule = data.get(name)
    if not (
        isinstance(schedule, list)
        and len(schedule) == 12
        and all(isinstance(row, list) and len(row) == 24 and all(type(v) is int for v in row) for row in schedule)
    ):
        raise PeriodsInvalid([f"urdb.{name}: must be 12 rows (months) of 24 period indexes (hours)"])
    return schedule


def _periods(data: dict, prefix: str, structure_name: str) -> list[dict]:
    structure = data.get(structure_name)
    if not isinstance(structure, list) or not structure:
        raise PeriodsInvalid([f"urdb.{structure_name}: a non-empty list of periods is required"])
    periods: list[dict] = []
    for day_types, schedule_name in (
        (["weekday"], f"{prefix}weekdayschedule"),
        (["weekend", "holiday"], f"{prefix}weekendschedule"),
    ):
        schedule = _schedule(data, schedule_name)
        month = 0
        while month < 12:
            last = month
            while last + 1 < 12 and schedule[last + 1] == schedule[month]:
                last += 1
            row = schedule[month]
            hour = 0
            while hour < 24:
                end = hour
                while end + 1 < 24 and row[end + 1] == row[hour]:
                    end += 1
                window = {"start": f"{hour:02d}:00", "end": f"{end + 1:02d}:00"}
                periods.append(
                    {"name": f"period {row[hour]}", "months": [month + 1, last + 1], "day_types": day_types, **window}
                    | _tiers(structure, row[hour], structure_name)
                )
                hour = end + 1
            month = last + 1
    return periods


def urdb_version(data: object) -> dict:
    """A tariff version's values (periods, demand periods, fixed and minimum charges) from a URDB
    rate, or PeriodsInvalid naming what is wrong. The periods are validated like any others."""
    if not isinstance(data, dict):
        raise PeriodsInvalid(["urdb: must be a JSON object"])
    periods = _periods(data, "energy", "energyratestructure")
    demand = _periods(data, "demand", "demandratestructure") if "demandratestructure" in data else []
    periods_parse(periods)
    periods_parse(demand, field="demand_periods", required=False)
    version: dict = {"periods": periods, "demand_periods": demand}
    fixed = data.get("fixedchargefirstmeter")
    if fixed is not None:
        units = data.get("fixedchargeunits", "$/month")
        if units not in ("$/day", "$/month"):
            raise PeriodsInvalid([f"urdb.fixedchargeunits: {units!r} is not supported ($/day, $/month)"])
        version["fixed_per_day" if units == "$/day" else "fixed_per_month"] = Decimal(_decimal(fixed))
    minimum = data.get("mincharge")
    if minimum is not None:
        if data.get("minchargeunits", "$/month") != "$/month":
            raise PeriodsInvalid(["urdb.minchargeunits: only $/month is supported"])
        version["minimum_charge"] = Decimal(_decimal(minimum))
    return version

"""Load schedules from a tariff's peak periods: billing may import energy, energy never imports
billing, so the generator lives here and writes through energy's schedule service.

The tariff version in force on `on` is read; its peak periods are those named `period` or, by
default, the periods with the highest (first-tier) rate. Each becomes a LoadSchedule of the site
at `max_import_kw`: `weekday` → Monday-Friday, `weekend` → Saturday-Sunday (holidays are not
expressible in a weekly window and are left out); a month range other than the whole year
becomes valid_from/valid_to for that range starting in `on`'s year (a schedule has no recurring
months; generate again next year). Generating again replaces the schedules this tariff generated
for the site. Tenant: the tariff's organization, which must be the site's.
"""

from __future__ import annotations

import calendar
from datetime import date, time

from django.db import transaction

from billing.models import Tariff
from billing.tariffs.validation import SLOTS, Period, periods_parse
from energy.load.constraints import LoadInvalid, schedule_save
from energy.load.models import LoadSchedule
from energy.models import Site

DAYS = {"weekday": [1, 2, 3, 4, 5], "weekend": [6, 7]}


def _clock(slot: int) -> time:
    """A period's slot (a minute of the local day, billing.tariffs.validation.SLOTS) as a time."""
    return time(0, 0) if slot >= SLOTS else time(slot // 60, slot % 60)


def _validity(months: tuple[int, ...], year: int) -> tuple[date | None, date | None]:
    if len(months) == 12:
        return None, None
    first, last = months[0], months[-1]
    end_year = year + 1 if last < first else year
    return date(year, first, 1), date(end_year, last, calendar.monthrange(end_year, last)[1])


def _peak_periods(periods: list[Period], name: str | None) -> list[Period]:
    if name is not None:
        chosen = [p for p in periods if p.name == name]
        if not chosen:
            raise LoadInvalid({"period": f"the tariff has no period named {name!r}"})
        return chosen
    top = max(p.tiers[0].rate for p in periods)
    return [p for p in periods if p.tiers[0].rate == top]


@transaction.atomic
def tariff_load_schedules_generate(
    *, tariff: Tariff, site: Site, max_import_kw: float, on: date, period: str | None = None
) -> list[LoadSchedule]:
    if site.organization_id != tariff.organization_id:
        raise LoadInvalid({"site": "must be a site of the tariff's organization"})
    version = tariff.versions.filter(valid_from__lte=on).order_by("-valid_from").first()
    if version is None:
        raise LoadInvalid({"tariff": f"has no version in force on {on.isoformat()}"})
    reference = f"tariff:{tariff.pk}"
    LoadSchedule.objects.filter(site=site, source=LoadSchedule.Source.TARIFF, source_reference=reference).delete()
    created = []
    for peak in _peak_periods(periods_parse(version.periods), period):
        valid_from, valid_to = _validity(peak.months, on.year)
        for day_type in peak.day_types:
            if day_type not in DAYS:
                continue
            start, end = _clock(peak.start_slot), _clock(peak.end_slot)
            if start == end:  # the whole day: up to the last second of it
                end = time(23, 59, 59)
            values = {
                "name": f"{tariff.name}: {peak.name} ({day_type})"[:200],
                "days_of_week": DAYS[day_type],
                "start_time": start,
                "end_time": end,
                "valid_from": valid_from,
                "valid_to": valid_to,
                "max_import_kw": max_import_kw,
                "source": LoadSchedule.Source.TARIFF,
                "source_reference": reference,
            }
            created.append(schedule_save(site=site, values=values))
    return created

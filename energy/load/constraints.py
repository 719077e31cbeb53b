"""Writes of site constraints and load schedules, with the rules the API and the admin share.

A limit below what the site's chargers need at their minimums is allowed (the allocator then
pauses sessions) but reported in `warnings`; negative limits, empty or bad weekdays, a window
whose end equals its start and a validity that ends before it begins are refused, naming the
field. Tenant: the site's organization.
"""

from __future__ import annotations

from datetime import date, time
from typing import Any

from django.db import transaction

from energy.load import selectors
from energy.load.models import LoadSchedule, SiteConstraint
from energy.models import Meter, Site
from joulepoint.events.listeners import listeners_changed


class LoadInvalid(Exception):
    """`errors`: field → what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def _non_negative(errors: dict[str, str], values: dict[str, Any], *fields: str) -> None:
    for field in fields:
        value = values.get(field)
        if value is not None and value < 0:
            errors[field] = "must be zero or more"


def constraint_check(*, site: Site, values: dict[str, Any]) -> None:
    errors: dict[str, str] = {}
    _non_negative(errors, values, "max_import_kw", "max_export_kw", "safety_margin_kw", "fallback_limit_kw")
    _non_negative(errors, values, "phase_current_limit_a", "peak_threshold_kw")
    grid_meter: Meter | None = values.get("grid_meter")
    if grid_meter is not None and grid_meter.site_id != site.pk:
        errors["grid_meter"] = "must be a meter of the constraint's site"
    if errors:
        raise LoadInvalid(errors)


def schedule_check(*, site: Site, values: dict[str, Any]) -> None:
    errors: dict[str, str] = {}
    days = values.get("days_of_week")
    valid_days = isinstance(days, list) and days and all(type(d) is int and 1 <= d <= 7 for d in days)
    if not valid_days or len(set(days)) != len(days):
        errors["days_of_week"] = "must be a non-empty list of distinct ISO weekdays, 1 (Monday) to 7 (Sunday)"
    start: time | None = values.get("start_time")
    end: time | None = values.get("end_time")
    if start is not None and end is not None and start == end:
        errors["end_time"] = "must differ from start_time (an end before the start runs into the next day)"
    valid_from: date | None = values.get("valid_from")
    valid_to: date | None = values.get("valid_to")
    if valid_from is not None and valid_to is not None and valid_to < valid_from:
        errors["valid_to"] = "must not be before valid_from"
    _non_negative(errors, values, "max_import_kw", "max_export_kw")
    if values.get("max_import_kw") is None and values.get("max_export_kw") is None:
        errors["max_import_kw"] = "a schedule needs max_import_kw or max_export_kw"
    if errors:
        raise LoadInvalid(errors)


def limit_warnings(*, site: Site, limit_kw: float | None, what: str) -> list[str]:
    """A warning when `limit_kw` is below the site's chargers' minimums together."""
    if limit_kw is None:
        return []
    needed_w = selectors.site_chargers_minimum_w(site=site)
    if limit_kw * 1000.0 < needed_w:
        return [
            f"{what} ({limit_kw:g} kW) is below the {needed_w / 1000.0:g} kW the site's chargers need at their "
            "minimum current together: the allocator will pause sessions to stay under it"
        ]
    return []


@transaction.atomic
def constraint_save(*, site: Site, values: dict[str, Any], constraint: SiteConstraint | None = None) -> SiteConstraint:
    """Create (one per site) or update a site's constraint."""
    merged = {**({} if constraint is None else _fields(constraint, values)), **values}
    constraint_check(site=site, values=merged)
    if constraint is None and SiteConstraint.objects.filter(site=site).exists():
        raise LoadInvalid({"site": "already has a constraint (one per site): change that one"})
    if constraint is None:
        constraint = SiteConstraint(organization_id=site.organization_id, site=site)
        # The site's ingests now reallocate it: processes drop their "not load-managed" answer.
        transaction.on_commit(listeners_changed)
    for field, value in values.items():
        setattr(constraint, field, value)
    constraint.save()
    return constraint


@transaction.atomic
def schedule_save(*, site: Site, values: dict[str, Any], schedule: LoadSchedule | None = None) -> LoadSchedule:
    merged = {**({} if schedule is None else _fields(schedule, values)), **values}
    schedule_check(site=site, values=merged)
    if schedule is None:
        schedule = LoadSchedule(organization_id=site.organization_id, site=site)
    for field, value in values.items():
        setattr(schedule, field, value)
    schedule.save()
    return schedule


def _fields(row, values: dict[str, Any]) -> dict[str, Any]:
    """The row's current values of its editable fields, under a partial update's new ones."""
    names = [f.name for f in row._meta.concrete_fields if f.editable and not f.primary_key]
    return {name: getattr(row, name) for name in names if name not in values}

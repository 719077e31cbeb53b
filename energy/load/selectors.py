"""Reads of load management: the effective limit of a site, what the allocator starts from (open
sessions with their chargers, the latest readings, the previous setpoints), setpoint history and
the grid meter's quarter-hour. Tenant scope: every function takes the site (its organization)
or an organization id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db.models import Avg, OuterRef, Q, QuerySet, Subquery

from energy.load import limits
from energy.load.models import (
    ChargingSession,
    DemandResponseEvent,
    LoadSchedule,
    Setpoint,
    SiteConstraint,
)
from energy.models import Meter, Reading, Site

QUARTER = timedelta(minutes=15)


def site_zone(site: Site) -> ZoneInfo:
    try:
        return ZoneInfo(site.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def schedule_window(schedule: LoadSchedule) -> limits.ScheduleWindow:
    return limits.ScheduleWindow(
        id=schedule.pk,
        name=schedule.name,
        days_of_week=tuple(schedule.days_of_week or ()),
        start_time=schedule.start_time,
        end_time=schedule.end_time,
        max_import_kw=schedule.max_import_kw,
        valid_from=schedule.valid_from,
        valid_to=schedule.valid_to,
    )


def demand_response_window(event: DemandResponseEvent) -> limits.DemandResponseWindow:
    return limits.DemandResponseWindow(
        id=event.pk,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        limit_kw=event.limit_kw,
        reduction_percent=event.reduction_percent,
    )


def site_schedules(*, site: Site) -> list[LoadSchedule]:
    return list(LoadSchedule.objects.for_org(site.organization_id).filter(site=site, is_active=True))


def site_demand_responses(*, site: Site, start: datetime, end: datetime) -> list[DemandResponseEvent]:
    """Events of the site overlapping [start, end), cancelled ones left out."""
    return list(
        DemandResponseEvent.objects.for_org(site.organization_id)
        .filter(site=site, starts_at__lt=end, ends_at__gt=start)
        .exclude(status=DemandResponseEvent.Status.CANCELLED)
    )


def site_limit_windows(*, site: Site, start: datetime, end: datetime) -> list[dict]:
    """The schedule occurrences and demand response events of the site that overlap
    [start, end), in time order: what the schedules view and the dashboard list."""
    zone = site_zone(site)
    windows = [
        {
            "kind": "schedule",
            "id": schedule.pk,
            "name": schedule.name,
            "starts_at": begins,
            "ends_at": ends,
            "max_import_kw": schedule.max_import_kw,
            "reduction_percent": None,
            "status": "",
        }
        for schedule in site_schedules(site=site)
        for begins, ends in limits.schedule_occurrences(schedule_window(schedule), start, end, zone)
    ]
    windows += [
        {
            "kind": "demand_response",
            "id": event.pk,
            "name": event.program or "Demand response",
            "starts_at": event.starts_at,
            "ends_at": event.ends_at,
            "max_import_kw": event.limit_kw,
            "reduction_percent": event.reduction_percent,
            "status": event.status,
        }
        for event in site_demand_responses(site=site, start=start, end=end)
    ]
    return sorted(windows, key=lambda window: (window["starts_at"], window["kind"], window["id"]))


def effective_limit_at(
    *, constraint: SiteConstraint, at: datetime, peak_kw: float | None = None
) -> limits.EffectiveLimit:
    """The site's import limit at `at` (constraint → schedules → demand response → peak)."""
    site = constraint.site
    return limits.effective_limit(
        constraint_kw=constraint.max_import_kw,
        at=at,
        zone=site_zone(site),
        schedules=[schedule_window(s) for s in site_schedules(site=site)],
        demand_responses=[
            demand_response_window(e) for e in site_demand_responses(site=site, start=at, end=at + timedelta(seconds=1))
        ],
        peak_kw=peak_kw,
    )


def effective_limits_over(
    *, constraint: SiteConstraint, start: datetime, steps: int, step: timedelta
) -> list[limits.EffectiveLimit]:
    """The effective limit at each of `steps` instants from `start` (two queries in all)."""
    site = constraint.site
    zone = site_zone(site)
    windows = [schedule_window(s) for s in site_schedules(site=site)]
    events = [
        demand_response_window(e) for e in site_demand_responses(site=site, start=start, end=start + step * steps)
    ]
    return [
        limits.effective_limit(
            constraint_kw=constraint.max_import_kw,
            at=start + step * i,
            zone=zone,
            schedules=windows,
            demand_responses=events,
        )
        for i in range(steps)
    ]


def site_chargers_minimum_w(*, site: Site) -> float:
    """What the site's chargers need together to charge at their minimums, W."""
    total = 0.0
    for charger in site.chargers.select_related("meter"):
        total += charger.min_current_a * charger.phases * charger.meter.nominal_voltage
    return total


def open_sessions(*, site: Site) -> list[ChargingSession]:
    """Sessions the allocator shares the site among: active or suspended, with charger, its
    meter and the EVSE."""
    return list(
        ChargingSession.objects.for_org(site.organization_id)
        .filter(site=site, state__in=[ChargingSession.State.ACTIVE, ChargingSession.State.SUSPENDED])
        .select_related("charger__meter", "evse")
        .order_by("pk")
    )


@dataclass(frozen=True, slots=True)
class LatestPower:
    ts: datetime
    power_w: float | None


def latest_power(*, meter_ids: list[int]) -> dict[int, LatestPower]:
    """meter id → its latest reading's time and total_power (one query; each meter's latest is a
    backward scan of the (meter, ts) index)."""
    if not meter_ids:
        return {}
    latest = Reading.objects.filter(meter_id=OuterRef("pk")).order_by("-ts").values("pk")[:1]
    latest_ids = Meter.objects.filter(pk__in=meter_ids).annotate(latest_id=Subquery(latest)).values("latest_id")
    rows = Reading.objects.filter(pk__in=latest_ids).order_by().values_list("meter_id", "ts", "total_power")
    return {meter_id: LatestPower(ts, power) for meter_id, ts, power in rows}


def previous_setpoints(*, session_ids: list[int]) -> dict[int, Setpoint]:
    """session id → its latest setpoint."""
    if not session_ids:
        return {}
    latest = Setpoint.objects.filter(session_id=OuterRef("pk")).order_by("-created_at", "-pk").values("pk")[:1]
    latest_ids = ChargingSession.objects.filter(pk__in=session_ids).annotate(last_id=Subquery(latest)).values("last_id")
    rows = Setpoint.objects.filter(pk__in=latest_ids).select_related("command").order_by()
    return {row.session_id: row for row in rows}


def quarter_start(at: datetime) -> datetime:
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


def grid_average_kw(*, meter_id: int, start: datetime, end: datetime) -> float | None:
    """The mean of the grid meter's total_power over [start, end), kW (None without readings).
    Readings come at a steady pace, so the mean of samples stands for the time average."""
    value = Reading.objects.filter(meter_id=meter_id, ts__gte=start, ts__lt=end, total_power__isnull=False).aggregate(
        avg=Avg("total_power")
    )["avg"]
    return None if value is None else value / 1000.0


def setpoint_history(*, organization_id: int) -> QuerySet[Setpoint]:
    return Setpoint.objects.for_org(organization_id).select_related("allocation", "charger", "session")


def load_managed_site_ids() -> list[int]:
    """Sites with a constraint (all organizations: the beat's fan-out)."""
    return list(SiteConstraint.objects.values_list("site_id", flat=True).order_by("site_id"))


def site_constraint(*, site_id: int) -> SiteConstraint | None:
    return SiteConstraint.objects.select_related("site", "grid_meter").filter(site_id=site_id).first()


def demand_responses_due(*, now: datetime) -> QuerySet[DemandResponseEvent]:
    """Events whose start or end has come and not been announced yet (all organizations)."""
    started = Q(status=DemandResponseEvent.Status.SCHEDULED, starts_at__lte=now)
    ended = Q(status=DemandResponseEvent.Status.ACTIVE, ends_at__lte=now)
    return DemandResponseEvent.objects.filter(started | ended).order_by("starts_at", "pk")

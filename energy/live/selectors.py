"""Reads for live sockets and the dashboard; every query goes through `for_org(s)`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import F, Max
from django.utils import timezone

from energy.analytics.annotations import annotations_read
from energy.analytics.kpi import kpi_compute
from energy.analytics.subjects import Subject, TimeRange, local_midnight
from energy.events import PQ_EVENT, PROTECTION_EVENT
from energy.live.account_summaries import site_accounts
from energy.live.site_alerts import site_open_alerts
from energy.models import READING_FIELDS, Meter, MeterGroup, Reading, Site
from energy.power_quality.models import PQEvent, ProtectionEvent


@dataclass
class LiveTargets:
    """What a subscription resolved to: per site, the meter ids watched (None = every meter)."""

    sites: dict[int, tuple[int, set[int] | None]] = field(default_factory=dict)  # site -> (org, meters)
    missing: dict[str, list[int]] = field(default_factory=dict)


def _ids(values: object) -> list[int] | None:
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    return values


def live_targets_resolve(*, organization_ids: Iterable[int], meters=None, groups=None, sites=None) -> LiveTargets:
    """Resolve ids a dashboard asked for, within its organizations only. An id of another
    tenant is reported as missing, exactly like an id that does not exist."""
    orgs = list(organization_ids)
    targets = LiveTargets()
    meter_ids, group_ids, site_ids = _ids(meters), _ids(groups), _ids(sites)
    if meter_ids is None or group_ids is None or site_ids is None:
        raise ValueError("meters, groups and sites are lists of integer ids")

    found_sites = dict(Site.objects.for_orgs(orgs).filter(pk__in=site_ids).values_list("pk", "organization_id"))
    for site_id, org_id in found_sites.items():
        targets.sites[site_id] = (org_id, None)

    wanted: list[tuple[int, int, int]] = list(
        Meter.objects.for_orgs(orgs).filter(pk__in=meter_ids).values_list("pk", "site_id", "organization_id")
    )
    found_groups = set()
    if group_ids:
        for group_id, meter_id, site_id, org_id in (
            MeterGroup.objects.for_orgs(orgs)
            .filter(pk__in=group_ids)
            .values_list("pk", "meters__pk", "meters__site_id", "organization_id")
        ):
            found_groups.add(group_id)
            if meter_id is not None:
                wanted.append((meter_id, site_id, org_id))
    found_meters = {row[0] for row in wanted}
    for meter_id, site_id, org_id in wanted:
        org, watched = targets.sites.get(site_id, (org_id, set()))
        if watched is not None:
            watched.add(meter_id)
        targets.sites[site_id] = (org, watched)

    for name, asked, found in (
        ("meters", meter_ids, found_meters),
        ("groups", group_ids, found_groups),
        ("sites", site_ids, set(found_sites)),
    ):
        missing = sorted(set(asked) - found)
        if missing:
            targets.missing[name] = missing
    return targets


def dashboard_sites(*, organization_ids: Iterable[int]):
    return Site.objects.for_orgs(list(organization_ids)).select_related("organization").order_by("name")


def dashboard_snapshot(*, site: Site, window: timedelta = timedelta(minutes=15), now: datetime | None = None) -> dict:
    """The site's meters, their readings of the last `window` (total_power), KPI inputs, and the
    annotations on those meters since the window began (markers on the charts, the event feed)."""
    now = now or timezone.now()
    since = now - window
    meters = list(Meter.objects.for_org(site.organization_id).filter(site=site).order_by("id"))
    readings = (
        Reading.objects.for_org(site.organization_id)
        .filter(meter__site=site, ts__gte=since)
        .order_by("ts")
        .values_list("meter_id", "ts", "total_power", "total_energy")
    )
    series: dict[int, list] = {meter.pk: [] for meter in meters}
    for meter_id, ts, power, energy in readings[:20000]:
        series.setdefault(meter_id, []).append([ts.timestamp(), power, energy])
    last_seen = dict(
        Reading.objects.for_org(site.organization_id)
        .filter(meter__site=site)
        .values("meter_id")
        .annotate(last=Max("ts"))
        .values_list("meter_id", "last")
    )
    # No upper bound, like the readings: an annotation sits at its reading's timestamp, which a
    # device clock may put a little ahead of ours.
    annotations, _ = annotations_read(
        organization_id=site.organization_id,
        meter_ids=[meter.pk for meter in meters],
        start=since,
        end=now + timedelta(days=1),
        limit=200,
    )
    return {
        "site": {"id": site.pk, "name": site.name, "timezone": site.timezone},
        "annotations": annotations,
        "energy": dashboard_energy(site=site, meters=meters, now=now),
        "events": dashboard_events(site=site, since=now - timedelta(days=1)),
        "alerts": [
            {**alert, "created_at": alert["created_at"].isoformat()}
            for alert in site_open_alerts(organization_ids=[site.organization_id], site_ids=[site.pk])
        ],
        "accounts": site_accounts(organization_id=site.organization_id, site_id=site.pk, now=now),
        "window_seconds": int(window.total_seconds()),
        "fields": list(READING_FIELDS),
        "meters": [
            {
                "id": meter.pk,
                "name": meter.name,
                "serial": meter.serial,
                "kind": meter.kind,
                "kind_label": meter.get_kind_display(),
                "last_seen": last_seen[meter.pk].isoformat() if meter.pk in last_seen else None,
                "series": series.get(meter.pk, []),
            }
            for meter in meters
        ],
    }


# A meter counts as reporting when its last reading is at most this old.
REPORTING_WITHIN = timedelta(minutes=15)


def site_statuses(*, organization_ids: Iterable[int], now: datetime | None = None) -> list[dict]:
    """Per site of these organizations: its meters, how many reported within REPORTING_WITHIN,
    the last reading (aware, in UTC; the caller shows it in the site's zone) and open alerts
    (energy.live.site_alerts). For the admin's landing page."""
    now = now or timezone.now()
    orgs = list(organization_ids)
    sites = list(dashboard_sites(organization_ids=orgs))
    last = dict(
        Reading.objects.for_orgs(orgs)
        .filter(meter__site__in=sites)
        .values("meter_id")
        .annotate(last=Max("ts"))
        .values_list("meter_id", "last")
    )
    meters: dict[int, list[int]] = {}
    for meter_id, site_id in Meter.objects.for_orgs(orgs).filter(site__in=sites).values_list("pk", "site_id"):
        meters.setdefault(site_id, []).append(meter_id)
    alerts: dict[int, int] = {}
    for alert in site_open_alerts(organization_ids=orgs, site_ids=[site.pk for site in sites]):
        alerts[alert["site_id"]] = alerts.get(alert["site_id"], 0) + 1
    statuses = []
    for site in sites:
        seen = [last[m] for m in meters.get(site.pk, []) if m in last]
        statuses.append(
            {
                "site": site,
                "meters": len(meters.get(site.pk, [])),
                "reporting": sum(ts >= now - REPORTING_WITHIN for ts in seen),
                "last_reading": max(seen) if seen else None,
                "open_alerts": alerts.get(site.pk, 0),
            }
        )
    return statuses


def _imported_kwh(site: Site, meters: list[Meter], start: datetime, end: datetime, tz: ZoneInfo) -> float | None:
    if not meters or end <= start:
        return None
    subject = Subject(kind="site", id=site.pk, name=site.name, meters=meters, timezone=site.timezone)
    energy = kpi_compute(organization=site.organization, subject=subject, time_range=TimeRange(start, end), tz=tz)
    return energy["energy"]["imported_kwh"]


def dashboard_energy(*, site: Site, meters: list[Meter], now: datetime) -> dict:
    """The energy tiles: kWh imported from the grid (the grid meters) and generated by PV, today
    and this month in the site's zone (energy.analytics.kpi, the KPI endpoint's computation)."""
    tz = ZoneInfo(site.timezone)
    today = now.astimezone(tz).date()
    starts = {"today": local_midnight(today, tz), "month": local_midnight(today.replace(day=1), tz)}
    by_kind = {kind: [m for m in meters if m.kind == kind] for kind in (Meter.Kind.GRID, Meter.Kind.PV)}
    return {
        period: {
            "grid_import_kwh": _imported_kwh(site, by_kind[Meter.Kind.GRID], start, now, tz),
            "pv_kwh": _imported_kwh(site, by_kind[Meter.Kind.PV], start, now, tz),
        }
        for period, start in starts.items()
    }


def dashboard_events(*, site: Site, since: datetime, limit: int = 50) -> list[dict]:
    """The site's power quality and protection events since `since`, newest first, shaped like
    the live `pq.event` / `protection.event` payloads the feed also receives."""
    pq = (
        PQEvent.objects.for_org(site.organization_id)
        .filter(meter__site=site, start__gte=since)
        .order_by("-start")
        .values("id", "meter_id", "kind", "start", "worst_value", "unit")[:limit]
    )
    protection = (
        ProtectionEvent.objects.for_org(site.organization_id)
        .filter(meter__site=site, occurred_at__gte=since)
        .order_by("-occurred_at")
        .values("id", "meter_id", "kind", "earth_leakage_ma", ts=F("occurred_at"))[:limit]
    )
    events = [{"key": PQ_EVENT, "ts": e["start"], "payload": {**e, "start": e["start"].isoformat()}} for e in pq] + [
        {"key": PROTECTION_EVENT, "ts": e.pop("ts"), "payload": e} for e in protection
    ]
    for event in events:
        event["ts"] = event["ts"].isoformat()
        event["payload"].setdefault("timestamp", event["ts"])
    return sorted(events, key=lambda event: event["ts"], reverse=True)[:limit]

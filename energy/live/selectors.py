"""Reads for live sockets and the dashboard; every query goes through `for_org(s)`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from energy.analytics.annotations import annotations_read
from energy.models import READING_FIELDS, Meter, MeterGroup, Reading, Site


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
        "window_seconds": int(window.total_seconds()),
        "fields": list(READING_FIELDS),
        "meters": [
            {
                "id": meter.pk,
                "name": meter.name,
                "serial": meter.serial,
                "kind": meter.kind,
                "last_seen": last_seen[meter.pk].isoformat() if meter.pk in last_seen else None,
                "series": series.get(meter.pk, []),
            }
            for meter in meters
        ],
    }

"""Allocation runs: from a site's constraint, readings and open sessions to stored setpoints,
`load.setpoint` events and charging profiles sent as device commands (docs/load.md, "Allocator").

available = effective limit - non-controllable load - safety margin, where non-controllable load
= the grid meter's power - the chargers' power (their meters' latest readings). When the grid
meter's latest reading is older than the constraint's `grid_stale_after_seconds` (or missing),
the measured figures are not trusted: the chargers share the constraint's `fallback_limit_kw`
instead, and the allocation's source is `fallback`.

Debounce after ingest: a run is queued at most once per DEBOUNCE_SECONDS per site, claimed with
an atomic cache `add`, so every web process and worker shares the claim (Redis in production).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import transaction

from energy.downlink.services import device_command_send
from energy.events import DATA_INGESTED, LOAD_SETPOINT
from energy.live.fanout import live_notice_send
from energy.load import allocator, peaks, profiles, selectors
from energy.load.models import Allocation, Charger, ChargingSession, Setpoint, SiteConstraint
from energy.load.sessions import session_pause_set
from energy.models import DeviceCommand, Site
from joulepoint.events import publish_many
from joulepoint.events.listeners import listener_answer
from joulepoint.events.types import Event
from joulepoint.platform.enqueue import enqueue
from joulepoint.platform.timefmt import isoz

SOURCE = "energy.load"
SITE_TASK = "energy.load.tasks.site_allocate"
DEBOUNCE_SECONDS = 2
LOAD_NOTICE = "load.allocation"
# How far ahead the dashboard lists the schedule and demand response windows.
WINDOWS_AHEAD = timedelta(hours=24)


def _stale(latest: selectors.LatestPower | None, now: datetime, after_seconds: float) -> bool:
    return latest is None or latest.power_w is None or (now - latest.ts).total_seconds() > after_seconds


def _demand(session: ChargingSession, previous: Setpoint | None) -> allocator.SessionDemand:
    charger = session.charger
    maximum = charger.max_current_a
    if session.evse is not None and session.evse.max_current_a is not None:
        maximum = min(maximum, session.evse.max_current_a)
    priority = session.priority_override if session.priority_override is not None else charger.priority
    return allocator.SessionDemand(
        session_id=session.pk,
        charger_id=charger.pk,
        priority=priority,
        min_current_a=charger.min_current_a,
        max_current_a=maximum,
        phases=charger.phases,
        voltage_v=charger.meter.nominal_voltage,
        departure_ts=session.departure_at.timestamp() if session.departure_at else None,
        previous_current_a=None if previous is None else previous.current_a,
    )


def _station_max_send(charger: Charger, constraint: SiteConstraint) -> None:
    """The station's ceiling (ChargingStationMaxProfile) when it has none in force or it changed."""
    limit = charger.max_current_a
    if constraint.phase_current_limit_a is not None:
        limit = min(limit, constraint.phase_current_limit_a)
    payload = profiles.station_max_profile_payload(charger_id=charger.pk, limit_a=limit, phases=charger.phases)
    last = (
        DeviceCommand.objects.for_org(charger.organization_id)
        .filter(meter_id=charger.meter_id, name=profiles.SET_CHARGING_PROFILE, payload__evseId=0)
        .order_by("-created_at", "-pk")
        .first()
    )
    live = {DeviceCommand.Status.PENDING, DeviceCommand.Status.DELIVERED, DeviceCommand.Status.ACKED}
    if last is None or last.payload != payload or last.status not in live:
        device_command_send(device=charger.meter, name=profiles.SET_CHARGING_PROFILE, payload=payload)


def _phase_available_a(constraint: SiteConstraint, non_controllable_w: float, voltage_v: float) -> float | None:
    """A per phase left at the grid connection. The rest of the site is counted as balanced over
    three phases (readings carry total power; per-phase currents are not sent by every meter)."""
    if constraint.phase_current_limit_a is None:
        return None
    return constraint.phase_current_limit_a - max(non_controllable_w, 0.0) / (3 * voltage_v)


@transaction.atomic
def allocation_run(*, site: Site, now: datetime) -> Allocation | None:
    """Compute, store and send the site's setpoints; None when the site has no constraint. With no
    open session the allocation is computed and shown but not stored (its pk stays None)."""
    constraint = selectors.site_constraint(site_id=site.pk)
    if constraint is None:
        return None
    sessions = selectors.open_sessions(site=site)
    chargers = list(Charger.objects.for_org(site.organization_id).filter(site=site).select_related("meter"))
    meter_ids = [c.meter_id for c in chargers] + ([constraint.grid_meter_id] if constraint.grid_meter_id else [])
    latest = selectors.latest_power(meter_ids=meter_ids)
    stale_after = constraint.grid_stale_after_seconds
    charger_w = {
        c.pk: (0.0 if _stale(latest.get(c.meter_id), now, stale_after) else latest[c.meter_id].power_w)
        for c in chargers
    }
    grid = latest.get(constraint.grid_meter_id) if constraint.grid_meter_id else None
    warnings: list[str] = []
    phase_available_a = None
    if _stale(grid, now, stale_after):
        limit_w = constraint.fallback_limit_kw * 1000.0
        source = Allocation.LimitSource.FALLBACK
        grid_w = None
        non_controllable_w = 0.0
        available_w = limit_w
        warnings.append(f"grid reading missing or older than {stale_after} s: the fallback limit applies")
    else:
        grid_w = grid.power_w
        peak_kw = peaks.imminent_peak_limit_kw(constraint=constraint, now=now, grid_power_kw=grid_w / 1000.0)
        effective = selectors.effective_limit_at(constraint=constraint, at=now, peak_kw=peak_kw)
        limit_w = effective.import_kw * 1000.0
        source = effective.source
        non_controllable_w = grid_w - sum(charger_w.values())
        available_w = limit_w - non_controllable_w - constraint.safety_margin_kw * 1000.0
        voltage = constraint.grid_meter.nominal_voltage if constraint.grid_meter else 230.0
        phase_available_a = _phase_available_a(constraint, non_controllable_w, voltage)

    previous = selectors.previous_setpoints(session_ids=[s.pk for s in sessions])
    demands = [_demand(s, previous.get(s.pk)) for s in sessions]
    grants = allocator.allocate(demands, available_w=available_w, phase_available_a=phase_available_a)
    if any(g.paused for g in grants):
        warnings.append("not every session's minimum fits: the lowest-priority sessions are paused")

    allocation = Allocation(
        organization_id=site.organization_id,
        site=site,
        computed_at=now,
        effective_limit_w=limit_w,
        limit_source=source,
        grid_power_w=grid_w,
        non_controllable_w=non_controllable_w,
        available_w=available_w,
        allocated_w=sum(g.power_w for g in grants),
        warnings=warnings,
    )
    # Without sessions there is nothing to store (a row every few seconds per idle site would be
    # noise); the dashboard still gets the limit and the import.
    if sessions:
        allocation.save()
    by_id = {s.pk: s for s in sessions}
    setpoints: list[Setpoint] = []
    events = []
    station_max_sent: set[int] = set()
    for grant in grants:
        session = by_id[grant.session_id]
        before = previous.get(session.pk)
        changed = before is None or not math.isclose(before.current_a, grant.current_a) or before.paused != grant.paused
        command = before.command if before is not None and not changed else None
        if changed and session.transaction_id:
            if session.charger_id not in station_max_sent:
                _station_max_send(session.charger, constraint)
                station_max_sent.add(session.charger_id)
            command = device_command_send(
                device=session.charger.meter,
                name=profiles.SET_CHARGING_PROFILE,
                payload=profiles.tx_profile_payload(
                    session_id=session.pk,
                    evse_id=session.evse.evse_id if session.evse else 1,
                    transaction_id=session.transaction_id,
                    limit_a=grant.current_a,
                    phases=session.charger.phases,
                ),
            )
        session_pause_set(session, grant.paused)
        setpoint = Setpoint(
            organization_id=site.organization_id,
            allocation=allocation,
            session=session,
            charger=session.charger,
            power_w=grant.power_w,
            current_a=grant.current_a,
            paused=grant.paused,
            command=command,
        )
        setpoints.append(setpoint)
        if changed:
            events.append((site.organization_id, LOAD_SETPOINT, _setpoint_payload(setpoint, allocation), now))
    Setpoint.objects.bulk_create(setpoints)
    if events:
        publish_many(events, source=SOURCE)
    windows = selectors.site_limit_windows(site=site, start=now, end=now + WINDOWS_AHEAD)
    notice = allocation_snapshot(allocation=allocation, setpoints=setpoints, charger_power_w=charger_w, windows=windows)
    transaction.on_commit(
        lambda: live_notice_send(
            organization_id=site.organization_id,
            site_id=site.pk,
            key=LOAD_NOTICE,
            payload=notice,
            ident=f"allocation-{site.pk}-{now.timestamp()}",
            occurred_at=now,
        )
    )
    return allocation


def allocation_history_prune(*, now: datetime, keep_days: int, batch: int = 2000) -> int:
    """Delete allocations (and their setpoints) computed more than `keep_days` ago; 0 keeps them
    all. Returns how many allocations went. A run every few seconds per site with sessions piles
    up ~17,000 allocations a day per site, so the history is bounded like raw readings are.
    Deleted in batches so no statement holds locks on the tables the allocator writes for long."""
    if keep_days <= 0:
        return 0
    cutoff = now - timedelta(days=keep_days)
    expired = Allocation.objects.filter(computed_at__lt=cutoff).order_by().values_list("pk", flat=True)
    deleted = 0
    while ids := list(expired[:batch]):
        with transaction.atomic():
            Setpoint.objects.filter(allocation_id__in=ids).delete()
            Allocation.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
    return deleted


def _setpoint_payload(setpoint: Setpoint, allocation: Allocation) -> dict:
    return {
        "site_id": allocation.site_id,
        "meter_id": setpoint.charger.meter_id,
        "charger_id": setpoint.charger_id,
        "session_id": setpoint.session_id,
        "current_a": setpoint.current_a,
        "power_w": setpoint.power_w,
        "paused": setpoint.paused,
        "effective_limit_w": allocation.effective_limit_w,
        "limit_source": allocation.limit_source,
    }


def allocation_snapshot(
    *,
    allocation: Allocation,
    setpoints: list[Setpoint],
    charger_power_w: dict[int, float],
    windows: list[dict] = (),
) -> dict:
    """What the dashboard's load panel shows: site import vs the limit, each charger's setpoint
    vs its actual power, and the schedule and demand response windows ahead."""
    return {
        "site_id": allocation.site_id,
        "computed_at": isoz(allocation.computed_at),
        "effective_limit_w": allocation.effective_limit_w,
        "limit_source": allocation.limit_source,
        "grid_power_w": allocation.grid_power_w,
        "available_w": allocation.available_w,
        "allocated_w": allocation.allocated_w,
        "warnings": allocation.warnings,
        "chargers": [
            {
                "charger_id": s.charger_id,
                "name": str(s.charger),
                "session_id": s.session_id,
                "setpoint_w": s.power_w,
                "setpoint_a": s.current_a,
                "paused": s.paused,
                "actual_w": charger_power_w.get(s.charger_id),
            }
            for s in setpoints
        ],
        "windows": [
            {**window, "starts_at": isoz(window["starts_at"]), "ends_at": isoz(window["ends_at"])} for window in windows
        ],
    }


def sites_allocate(*, now: datetime) -> list[int]:
    """The beat's fan-out: queue one allocation per load-managed site."""
    site_ids = selectors.load_managed_site_ids()
    for site_id in site_ids:
        enqueue(SITE_TASK, site_id)
    return site_ids


def site_allocate(*, site_id: int, now: datetime) -> Allocation | None:
    """One site's run (the task's room): peaks first, then the allocation."""
    constraint = selectors.site_constraint(site_id=site_id)
    if constraint is None:
        return None
    peaks.peak_watch(constraint=constraint, now=now)
    return allocation_run(site=constraint.site, now=now)


def on_ingested(event: Event) -> None:
    """Event-bus subscriber: after a site's readings are stored, queue its allocation, at most
    once per DEBOUNCE_SECONDS per site across processes (an atomic cache add claims the slot)."""
    if event.key != DATA_INGESTED:
        return
    site_id = (event.payload or {}).get("site_id")
    if site_id is None:
        return
    # Most sites are not load-managed: that answer is kept per process under the listeners' epoch
    # (a constraint's creation moves it), so their ingest costs no round trip here.
    managed = listener_answer(
        ("energy.load.managed", site_id), lambda: SiteConstraint.objects.filter(site_id=site_id).exists()
    )
    if not managed or not cache.add(f"jp:load:debounce:{site_id}", 1, timeout=DEBOUNCE_SECONDS):
        return
    enqueue(SITE_TASK, site_id)

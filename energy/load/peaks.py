"""Peaks: a site's 15-minute average import against SiteConstraint.peak_threshold_kw.

- Detection: the mean of the grid meter's power over the last 15 minutes. Crossing above the
  threshold publishes `peak.detected` with `phase: "detected"`, falling back to it or below
  publishes `phase: "cleared"`; the state lives on the constraint row and moves by a
  conditional UPDATE, so each crossing is announced once whichever process sees it.
- Imminent peak (the allocator's lower limit): the current quarter-hour's average, projected to
  its end at the present grid power, exceeds the threshold. From then until the quarter ends the
  site is held at the import that brings the quarter's average to the threshold (limits.
  peak_limit_kw); holding it to the end of the quarter keeps the allocator from releasing the
  chargers as soon as the projection dips and throttling them again a few seconds later.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from energy.events import PEAK_DETECTED
from energy.load import limits, selectors
from energy.load.models import Allocation, SiteConstraint
from joulepoint.events import publish

SOURCE = "energy.load"


def peak_watch(*, constraint: SiteConstraint, now: datetime) -> str | None:
    """Announce a crossing of the threshold by the last 15 minutes' average import, once.
    Returns "detected", "cleared" or None (nothing crossed, no threshold, no readings)."""
    if constraint.peak_threshold_kw is None or constraint.grid_meter_id is None:
        return None
    average_kw = selectors.grid_average_kw(meter_id=constraint.grid_meter_id, start=now - selectors.QUARTER, end=now)
    if average_kw is None:
        return None
    above = average_kw > constraint.peak_threshold_kw
    with transaction.atomic():
        moved = SiteConstraint.objects.filter(pk=constraint.pk, peak_active=not above).update(
            peak_active=above, peak_changed_at=now
        )
        if not moved:
            return None
        constraint.peak_active, constraint.peak_changed_at = above, now
        phase = "detected" if above else "cleared"
        publish(
            constraint.organization_id,
            PEAK_DETECTED,
            {
                "site_id": constraint.site_id,
                "meter_id": constraint.grid_meter_id,
                "phase": phase,
                "average_kw": round(average_kw, 3),
                "threshold_kw": constraint.peak_threshold_kw,
                "window_seconds": int(selectors.QUARTER.total_seconds()),
            },
            source=SOURCE,
            occurred_at=now,
        )
        return phase


def imminent_peak_limit_kw(*, constraint: SiteConstraint, now: datetime, grid_power_kw: float | None) -> float | None:
    """The lower limit an imminent peak sets for the rest of the quarter-hour, or None."""
    if constraint.peak_threshold_kw is None or constraint.grid_meter_id is None:
        return None
    start = selectors.quarter_start(now)
    elapsed = (now - start).total_seconds()
    average_kw = selectors.grid_average_kw(meter_id=constraint.grid_meter_id, start=start, end=now)
    energy_kwh = 0.0 if average_kw is None else average_kw * elapsed / 3600.0
    projected = limits.projected_quarter_average_kw(
        quarter_energy_kwh=energy_kwh, elapsed_seconds=elapsed, power_kw=grid_power_kw or 0.0
    )
    held = (
        Allocation.objects.filter(site_id=constraint.site_id, computed_at__gte=start, computed_at__lte=now)
        .order_by("-computed_at", "-pk")
        .values_list("limit_source", flat=True)
        .first()
        == Allocation.LimitSource.PEAK
    )
    if projected <= constraint.peak_threshold_kw and not held:
        return None
    return limits.peak_limit_kw(
        threshold_kw=constraint.peak_threshold_kw, quarter_energy_kwh=energy_kwh, elapsed_seconds=elapsed
    )

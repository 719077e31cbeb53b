"""Headroom forecast: what the site can still import over the next 24 h, in 15-minute steps.

headroom(t) = effective limit(t) - (demand forecast(t) - PV forecast(t)), kW, where demand is the
forecast of the site's consumer meters (load, EV chargers, other; not the grid connection, which
is their sum, nor the battery, which the site steers) and PV the forecast of its PV meters, both
from energy.analytics.forecast with the method asked for (a registered provider, such as the
MLOps `model`, serves `method=model`). The limit follows the constraint, schedules and demand
response events known now; peaks are left out (they depend on the import the forecast predicts).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from energy.analytics.forecast import forecast_compute
from energy.analytics.params import AnalyticsParamError
from energy.analytics.subjects import Subject, floor_time
from energy.load import selectors
from energy.load.models import SiteConstraint
from energy.models import Meter
from joulepoint.platform.timefmt import isoz

STEP = timedelta(minutes=15)
HORIZON_HOURS = 24
HISTORY_DAYS = 7
NOT_DEMAND = {Meter.Kind.GRID, Meter.Kind.PV, Meter.Kind.BATTERY}


def _forecast_kw(subject: Subject, *, target: str, method: str, end: datetime) -> list[float]:
    document = forecast_compute(
        subject=subject,
        target=target,
        method=method,
        interval="15min",
        horizon_hours=HORIZON_HOURS,
        history_days=HISTORY_DAYS,
        window_hours=1,
        end=end,
        tz=selectors.site_zone(subject.meters[0].site),
    )
    return [point["kw"] for point in document["points"]]


def headroom_forecast(*, constraint: SiteConstraint, now: datetime, method: str = "seasonal_naive_daily") -> dict:
    """The forecast document (raises AnalyticsParamError when there is too little history)."""
    site = constraint.site
    meters = list(Meter.objects.for_org(site.organization_id).filter(site=site).select_related("site"))
    demand_meters = [m for m in meters if m.kind not in NOT_DEMAND]
    pv_meters = [m for m in meters if m.kind == Meter.Kind.PV]
    if not demand_meters:
        raise AnalyticsParamError("site", "The site has no consumer meters (load, chargers) to forecast demand for.")
    start = floor_time(now, int(STEP.total_seconds()))
    steps = HORIZON_HOURS * 3600 // int(STEP.total_seconds())
    subject = Subject(kind="site", id=site.pk, name=site.name, meters=demand_meters, timezone=site.timezone)
    demand = _forecast_kw(subject, target="demand", method=method, end=start)
    generation = [0.0] * steps
    if pv_meters:
        pv_subject = Subject(kind="site", id=site.pk, name=site.name, meters=pv_meters, timezone=site.timezone)
        generation = _forecast_kw(pv_subject, target="generation", method=method, end=start)
    limits = selectors.effective_limits_over(constraint=constraint, start=start, steps=steps, step=STEP)
    points = []
    for i in range(steps):
        net_kw = demand[i] - max(generation[i], 0.0)
        points.append(
            {
                "ts": isoz(start + STEP * i),
                "limit_kw": limits[i].import_kw,
                "limit_source": limits[i].source,
                "demand_kw": round(demand[i], 3),
                "pv_kw": round(generation[i], 3),
                "net_kw": round(net_kw, 3),
                "headroom_kw": round(limits[i].import_kw - net_kw, 3),
            }
        )
    return {
        "site": site.pk,
        "method": method,
        "interval": "15min",
        "unit": "kW",
        "start": isoz(start),
        "points": points,
    }

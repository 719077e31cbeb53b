"""The demo's month of history: what `make run` shows before the simulator has sent anything.

`demo_history_backfill` runs the depot simulator (energy.simulator) over the 30 days before the
demo's first reading (or before now, on a fresh database) in 15-minute steps and stores the result
through the real ingest path (`readings_prepare` per meter, `readings_store` for all five, one
simulated week per transaction), so power quality detection, rollups and `data.ingested` run as
for any device. On top of the simulator's day/night PV curve, battery cycles and EV sessions it
places a few voltage sags and swells at the grid meter and one protection trip of the EV
charger's breaker (with an earth leakage reading), so rules, alerts and the PQ pages have
something to show.

Idempotent: the window ends at the demo meters' first stored reading, so a second run finds
nothing to fill (and the ingest ignores duplicates anyway). On a fresh database it also writes
the simulator's state file, so the live simulator continues the backfill's registers and battery
charge instead of jumping.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Min
from django.utils import timezone

from energy.ingest.store import readings_prepare, readings_store
from energy.models import Meter, Reading, Site
from energy.simulator import SAG_FACTOR, SWELL_FACTOR, DepotSimulator, disturb

HISTORY_DAYS = 30
HISTORY_STEP = timedelta(minutes=15)  # a billing meter's load-profile interval
# Readings per transaction and meter: each commit recomputes its rollups, so fewer is faster.
BATCH_SPAN = timedelta(days=7)
SOURCE = "demo-backfill"
# (days before the end, local time, what): the disturbances of the month, at the grid meter.
DISTURBANCES: tuple[tuple[int, str, float], ...] = (
    (27, "10:15", SAG_FACTOR),
    (23, "12:30", SWELL_FACTOR),  # midday export lifts the voltage
    (19, "07:40", SAG_FACTOR),
    (12, "13:10", SWELL_FACTOR),
    (8, "16:05", SAG_FACTOR),
    (2, "11:20", SAG_FACTOR),
)
# The EV charger's breaker trips on earth leakage and is closed again 45 minutes later.
TRIP = (15, "18:30", timedelta(minutes=45))
TRIP_LEAKAGE_MA = 42.0


@dataclass
class BackfillResult:
    start: datetime | None
    end: datetime | None
    stored: int
    seconds: float


def simulator_state_path() -> Path:
    return Path(settings.BASE_DIR) / "var" / "simulator-state.json"


def simulator_state_save(path: Path, device_keys: list[str], simulator: DepotSimulator) -> None:
    """The live simulator's state file (registers, battery, time), tied to these device keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"device_keys": sorted(device_keys), "simulator": simulator.state()}, indent=2))
    os.replace(tmp, path)


def _floor(moment: datetime, step: timedelta) -> datetime:
    seconds = step.total_seconds()
    return datetime.fromtimestamp(moment.timestamp() // seconds * seconds, tz=UTC)


def _local_moment(end: datetime, tz, days_before: int, hhmm: str, step: timedelta) -> datetime:
    hour, minute = (int(part) for part in hhmm.split(":"))
    day = (end - timedelta(days=days_before)).astimezone(tz)
    return _floor(day.replace(hour=hour, minute=minute, second=0, microsecond=0).astimezone(UTC), step)


def demo_history_backfill(
    *,
    site: Site,
    meters: dict[str, Meter],
    now: datetime | None = None,
    days: int = HISTORY_DAYS,
    step: timedelta = HISTORY_STEP,
    seed: int | None = 2026,
    state_path: Path | None = None,
) -> BackfillResult:
    """Store `days` of simulated readings for the demo meters (kind → Meter) before their first
    reading; see the module docstring. Returns the window filled and how many readings were stored."""
    started = time.perf_counter()
    now = now or timezone.now()
    first = (
        Reading.objects.for_org(site.organization_id)
        .filter(meter__in=list(meters.values()))
        .aggregate(first=Min("ts"))["first"]
    )
    start = _floor(now - timedelta(days=days), step)
    end = min(first, now) if first is not None else now
    if end - start < step:
        return BackfillResult(None, None, 0, time.perf_counter() - started)

    simulator = DepotSimulator(timezone=site.timezone, latitude=site.latitude, longitude=site.longitude, seed=seed)
    tz = simulator.tz
    disturbances = {_local_moment(end, tz, d, hhmm, step): factor for d, hhmm, factor in DISTURBANCES}
    trip_at = _local_moment(end, tz, TRIP[0], TRIP[1], step)
    reclose_at = trip_at + TRIP[2]

    stored = 0
    day: dict[str, list[dict]] = {kind: [] for kind in meters}
    ts = start
    while ts < end:
        simulator.ev_blocked = trip_at <= ts < reclose_at
        readings = simulator.step(ts)
        if ts in disturbances:
            disturb(readings["grid"], disturbances[ts])
        if ts == trip_at:
            readings["ev_charger"].update(breaker_state="tripped", earth_leakage_ma=TRIP_LEAKAGE_MA)
        elif ts == reclose_at:
            readings["ev_charger"].update(breaker_state="closed", earth_leakage_ma=3.0)
        for kind in meters:
            day[kind].append(readings[kind])
        ts += step
        if len(day[next(iter(meters))]) * step >= BATCH_SPAN or ts >= end:
            stored += _store(meters, day)
            day = {kind: [] for kind in meters}

    if first is None:
        # A fresh demo: the live simulator takes over where the history ends.
        simulator_state_save(
            state_path or simulator_state_path(), [str(m.device_key) for m in meters.values()], simulator
        )
    return BackfillResult(start, end, stored, time.perf_counter() - started)


def _store(meters: dict[str, Meter], items: dict[str, list[dict]]) -> int:
    batches = [readings_prepare(device=meters[kind], items=items[kind]) for kind in meters if items[kind]]
    return sum(result.stored for result in readings_store(batches=batches, source=SOURCE))

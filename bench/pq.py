"""Power quality detection cost in the ingest path, on PostgreSQL, in one process.

    python -m bench.pq                 # 40 rounds of 1,000-reading batches per mode
    python -m bench.pq --rounds 80 --batch 1000 --meters 4

Creates its own database (`jp_bench_pq` on 127.0.0.1:5432, user postgres; dropped at the
end, no other database is touched), migrates it, and calls `reading_batch_ingest` — the one
ingest path of HTTP, bulk, MQTT and WebSocket — with batches of realistic three-phase
readings (noise around nominal, THD around 2-3 %, a breaker state and earth leakage on each
reading), alternating detection off and on round by round so both modes see the same table
sizes and machine noise. Detection off and on write to different meters, each meter's
timeline in order (the common case). Two workloads: `quiet` (the supply stays within limits:
the cost of evaluating the rules) and `storm` (a 3-second sag on one phase every 400
readings, which also opens an imbalance event: ~5 events and ~10 outbox rows per 1,000
readings, far above a real supply; the cost of writing and announcing events).

Prints readings/s for each mode, the ratio on/off and PASS/FAIL against 0.85, then (for
information) the cost of a late batch that makes detection re-evaluate a window. Outbox
rows are written in both modes' transactions as in production; dispatch to Celery is
replaced by a no-op so this measures the ingest path, not the workers.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from bench.database import django_on_database

DEFAULT_DB = "jp_bench_pq"
TARGET_RATIO = 0.85


SAG_EVERY = {"quiet": 0, "storm": 400}


def batch(start: datetime, offset: int, size: int, rng: random.Random, sag_every: int = 400) -> list[dict]:
    """`size` readings one second apart from start + offset s; a 3-reading sag on phase a
    every `sag_every` readings (0: none, the supply stays within limits)."""
    items = []
    for i in range(offset, offset + size):
        sag = bool(sag_every) and i % sag_every in (100, 101, 102)
        base = 190.0 if sag else 230.0
        items.append(
            {
                "timestamp": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                "total_power": 3600.0 + rng.uniform(-200, 200),
                "total_energy": 1500.0 + i * 0.001,
                "voltage_a": base + rng.uniform(-2, 2),
                "voltage_b": 230.0 + rng.uniform(-2, 2),
                "voltage_c": 230.0 + rng.uniform(-2, 2),
                "current_a": 5.2,
                "current_b": 5.1,
                "current_c": 5.3,
                "frequency": 50.0 + rng.uniform(-0.02, 0.02),
                "power_factor": 0.97,
                "thd_v_pct": 2.5 + rng.uniform(-0.5, 0.5),
                "earth_leakage_ma": 4.0 + rng.uniform(0, 2),
                "breaker_state": "closed",
            }
        )
    return items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="batches per mode and workload")
    parser.add_argument("--batch", type=int, default=1000, help="readings per batch")
    parser.add_argument("--meters", type=int, default=4, help="meters per mode (batches rotate over them)")
    parser.add_argument("--database", default=DEFAULT_DB)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    with django_on_database(args.database, keep=args.keep):
        from django.conf import settings

        return run(args, settings)


def run(args, settings) -> int:
    from energy.ingest.store import reading_batch_ingest
    from energy.models import Meter, Site
    from energy.power_quality import detection
    from energy.power_quality.models import PQEvent, ProtectionEvent
    from joulepoint.events import tasks
    from joulepoint.events.models import OutboxEvent
    from joulepoint.tenancy.models import Organization

    # Workers dispatch the outbox in production; here only the ingest transaction is timed.
    tasks.outbox_dispatch_one.delay = lambda *a, **k: None

    # Time spent inside detection itself, to show where the difference goes.
    detect_seconds: list[float] = []
    detect = detection.readings_detect

    def timed_detect(**kwargs):
        began = time.perf_counter()
        try:
            return detect(**kwargs)
        finally:
            detect_seconds.append(time.perf_counter() - began)

    detection.readings_detect = timed_detect

    org = Organization.objects.create(name="Bench PQ", slug="bench-pq")
    site = Site.objects.create(organization=org, name="Depot")
    start = datetime.now(UTC) - timedelta(days=30)
    rng = random.Random(1159)
    offsets: dict[int, int] = {}
    print(f"PostgreSQL, reading_batch_ingest in-process, batches of {args.batch}, {args.rounds} rounds per mode")
    verdicts: dict[str, float] = {}
    for workload, sag_every in SAG_EVERY.items():
        meters = {
            mode: [
                Meter.objects.create(
                    organization=org, site=site, name=f"{workload} {mode} {i}", serial=f"{workload}-{mode}-{i}"
                )
                for i in range(args.meters)
            ]
            for mode in ("off", "on")
        }
        elapsed: dict[str, list[float]] = {"off": [], "on": []}
        detection: list[float] = []

        def one(mode, meter, measure, sag_every=sag_every, elapsed=elapsed, detection=detection) -> None:
            offset = offsets.get(meter.pk, 0)
            items = batch(start, offset, args.batch, rng, sag_every)
            offsets[meter.pk] = offset + args.batch
            settings.PQ_DETECTION_ENABLED = mode == "on"
            detect_seconds.clear()
            began = time.perf_counter()
            result = reading_batch_ingest(device=meter, items=items, source="bench")
            took = time.perf_counter() - began
            assert result.stored == args.batch
            if measure:
                elapsed[mode].append(took)
                if mode == "on":
                    detection.append(sum(detect_seconds))

        warmup = 3
        for r in range(warmup + args.rounds):
            order = ("off", "on") if r % 2 == 0 else ("on", "off")
            for mode in order:
                one(mode, meters[mode][r % args.meters], measure=r >= warmup)

        rate = {mode: args.batch * len(times) / sum(times) for mode, times in elapsed.items()}
        median = {mode: args.batch / statistics.median(times) for mode, times in elapsed.items()}
        ratio = rate["on"] / rate["off"]
        verdicts[workload] = ratio
        events = PQEvent.objects.filter(meter__in=meters["on"]).count()
        label = "no PQ events" if not sag_every else f"a sag every {sag_every} readings"
        print(f"workload {workload} ({label}; {events} PQ events opened with detection on)")
        print(f"  detection off: {rate['off']:10,.0f} readings/s  (median batch {median['off']:,.0f}/s)")
        print(f"  detection on:  {rate['on']:10,.0f} readings/s  (median batch {median['on']:,.0f}/s)")
        print(
            f"  time in detection: median {statistics.median(detection) * 1000:.1f} ms per batch "
            f"(batch with detection off: median {statistics.median(elapsed['off']) * 1000:.1f} ms)"
        )
        print(f"  ratio of medians on/off: {median['on'] / median['off']:.3f}")
        print(f"  ratio on/off: {ratio:.3f}  target >= {TARGET_RATIO}  {'PASS' if ratio >= TARGET_RATIO else 'FAIL'}")

    # Late data (information only): a batch 30 min back in one meter's history makes detection
    # re-read the window from there and reconcile the events in it.
    settings.PQ_DETECTION_ENABLED = True
    meter = meters["on"][0]  # the storm workload's
    late_rate = []
    for back in (1800, 600, 60):
        base = offsets[meter.pk] - back
        items = [
            {**item, "timestamp": (start + timedelta(seconds=base + i, milliseconds=500)).isoformat()}
            for i, item in enumerate(batch(start, base, 100, rng))
        ]
        began = time.perf_counter()
        reading_batch_ingest(device=meter, items=items, source="bench")
        late_rate.append((back, time.perf_counter() - began))
    for back, took in late_rate:
        print(f"  late batch of 100 readings {back:>5} s behind the newest reading: {took * 1000:7.1f} ms")
    print(f"  protection events (breaker constant, leakage under limit): {ProtectionEvent.objects.count()}")
    print(f"  outbox rows written: {OutboxEvent.objects.count()}")
    return 0 if all(ratio >= TARGET_RATIO for ratio in verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

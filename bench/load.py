"""Allocator speed: one allocation for a site with 500 sessions, and a sweep over 200 sites of 20
sessions, against a plain-Python water-filling baseline run on the same sessions in the same run.

    python -m bench.load                # 50 rounds
    python -m bench.load --rounds 200

The allocator (energy.load.allocator.allocate) orders by priority and departure, admits
minimums, water-fills level by level over both budgets (power and per-phase current) with an
exact breakpoint sweep, and applies hysteresis. The baseline is the textbook loop a first version
would write: split what is left equally among the sessions not yet at their maximum, cap, repeat
until nothing changes (one budget, one priority level, no minimums, no pausing): less work per
session, so the ratio says what the extra rules cost. Pure Python, no database: the run's
queries are measured by the tests' query counts, not here. Target: p95 under 50 ms for 500
sessions. (The OCPP half of the load bench is bench/ocpp_stations.py.)
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

TARGET_MS = 50.0


def _sessions(count: int, rng: random.Random, *, first_id: int = 1):
    from energy.load.allocator import SessionDemand

    return [
        SessionDemand(
            session_id=first_id + i,
            charger_id=first_id + i,
            priority=rng.choice([0, 0, 1, 2]),
            min_current_a=6.0,
            max_current_a=rng.choice([16.0, 32.0, 32.0, 63.0]),
            phases=rng.choice([1, 3, 3]),
            voltage_v=230.0,
            departure_ts=rng.choice([None, rng.uniform(0, 86400)]),
            previous_current_a=rng.choice([None, 0.0, rng.uniform(6, 32)]),
        )
        for i in range(count)
    ]


def baseline_water_fill(sessions, available_w: float) -> dict[int, float]:
    """Equal shares of what is left among the unsaturated sessions, capped at their max, repeated."""
    granted = {s.session_id: 0.0 for s in sessions}
    open_sessions = list(sessions)
    left = available_w
    while open_sessions and left > 1e-9:
        weight = sum(s.phases * s.voltage_v for s in open_sessions)
        level = left / weight
        still_open = []
        for s in open_sessions:
            room = s.max_current_a - granted[s.session_id]
            step = min(level, room)
            granted[s.session_id] += step
            left -= step * s.phases * s.voltage_v
            if room > level:
                still_open.append(s)
        if len(still_open) == len(open_sessions):
            break
        open_sessions = still_open
    return granted


def _time_ms(fn, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) >= 20 else max(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args()

    import django

    django.setup()
    from energy.load.allocator import allocate

    rng = random.Random(args.seed)
    big = _sessions(500, rng)
    # Tight enough that some sessions pause and the rest share: 500 sessions, 1.5 MW.
    big_w = 1_500_000.0
    sites = [(_sessions(20, rng, first_id=1 + 20 * i), rng.uniform(20_000.0, 200_000.0)) for i in range(200)]

    ours_big = _time_ms(lambda: allocate(big, available_w=big_w, phase_available_a=4000.0), args.rounds)
    base_big = _time_ms(lambda: baseline_water_fill(big, big_w), args.rounds)
    sweep_rounds = max(3, args.rounds // 10)
    ours_sweep = _time_ms(lambda: [allocate(s, available_w=w) for s, w in sites], sweep_rounds)
    base_sweep = _time_ms(lambda: [baseline_water_fill(s, w) for s, w in sites], sweep_rounds)

    grants = allocate(big, available_w=big_w, phase_available_a=4000.0)
    paused = sum(1 for g in grants if g.paused)
    print(
        f"one site, 500 sessions ({paused} paused, "
        f"{sum(g.power_w for g in grants) / 1000:.1f} kW of {big_w / 1000:.0f}):"
    )
    for name, samples in (("allocator", ours_big), ("baseline water-fill", base_big)):
        print(f"  {name:<20} p50 {statistics.median(samples):7.2f} ms  p95 {_p95(samples):7.2f} ms")
    ratio = statistics.median(ours_big) / statistics.median(base_big)
    print(
        f"  ratio allocator/baseline (p50): {ratio:.2f}x   target p95 < {TARGET_MS:.0f} ms: "
        f"{'met' if _p95(ours_big) < TARGET_MS else 'MISSED'}"
    )
    print("sweep, 200 sites x 20 sessions:")
    for name, samples in (("allocator", ours_sweep), ("baseline water-fill", base_sweep)):
        print(
            f"  {name:<20} p50 {statistics.median(samples):7.2f} ms per sweep "
            f"({statistics.median(samples) / 200 * 1000:.0f} us per site)"
        )
    print(f"  ratio allocator/baseline (p50): {statistics.median(ours_sweep) / statistics.median(base_sweep):.2f}x")


if __name__ == "__main__":
    main()

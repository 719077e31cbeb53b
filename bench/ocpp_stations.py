"""OCPP benchmark: how many charging stations sending MeterValues every 10 s one OCPP server
process (`manage.py ocpp_server`) holds, on PostgreSQL.

    python -m bench.ocpp_stations                      # ramp 500, 1000, 2000, 3000, 4000
    python -m bench.ocpp_stations --stages 500,2000 --measure 30 --interval 10

It creates its own database (`jp_bench_ocpp`, dropped at the end), migrates it, creates one site
with as many chargers (each an ev_charger meter) as the last stage needs, and starts the server.
Stations are lean raw OCPP-J clients in this process (asyncio; a full ChargePoint per station
would make the load generator the bottleneck): each sends one MeterValues (energy register and
power) every `interval` seconds, spread evenly. Latency is from sending the MeterValues to its
CALLRESULT, which the server sends after the reading is committed through the ingest path, so
it is an upper bound of "sent → stored". The ramp adds stations stage by stage and stops when
p95 exceeds --p95-limit-ms or more than 1 % of messages fail.

The baseline, in the same run: the same stations at the target count against a bare server,
the `ocpp` package's ChargePoint on `websockets` with a MeterValues handler that does nothing
(no auth, no database), in its own process. Figures and the ratio are printed; nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.database import django_on_database

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "jp_bench_ocpp"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
PASSWORD = "bench-station-password-0123456789"
TARGET_STATIONS = 2000
# Handshakes in flight at once: a thousand simultaneous connects overflowed the listen backlog
# (half of 2,000 stations failed to connect to the baseline server at once).
MAX_HANDSHAKES = 50
HANDSHAKES: asyncio.Semaphore  # made per ramp: a semaphore belongs to one event loop


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    connect_failures: int = 0

    def reset(self) -> None:
        self.latencies.clear()
        self.errors = 0

    def p(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def meter_values_frame(unique_id: str, register_wh: float, power_w: float) -> str:
    timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    sampled = [
        {"value": round(register_wh, 1), "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}},
        {"value": power_w, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
    ]
    return json.dumps(
        [2, unique_id, "MeterValues", {"evseId": 1, "meterValue": [{"timestamp": timestamp, "sampledValue": sampled}]}]
    )


async def station_run(
    url: str, station_id: str, stats: Stats, stop: asyncio.Event, interval: float, offset: float, connected
):
    from websockets.asyncio.client import connect

    auth = "Basic " + base64.b64encode(f"{station_id}:{PASSWORD}".encode()).decode()
    try:
        async with HANDSHAKES:
            ws = await connect(
            f"{url}/{station_id}", subprotocols=["ocpp2.0.1"], additional_headers={"Authorization": auth},
                ping_interval=None, open_timeout=120, max_queue=4,
            )  # fmt: skip
    except Exception:
        stats.connect_failures += 1
        connected()
        return
    connected()
    counter = itertools.count()
    register = 1_000_000.0
    try:
        await asyncio.sleep(offset)
        while not stop.is_set():
            started = time.perf_counter()
            register += 11_000 * interval / 3600
            unique_id = f"{station_id}-{next(counter)}"
            try:
                await ws.send(meter_values_frame(unique_id, register, 11_000.0))
                answer = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if answer[0] == 3 and answer[1] == unique_id:
                    stats.latencies.append(time.perf_counter() - started)
                else:
                    stats.errors += 1
            except Exception:
                stats.errors += 1
                return
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
    finally:
        await ws.close()


class _Countdown:
    """Sets `done` once called `count` times (each new station, connected or not)."""

    def __init__(self, count: int, done: asyncio.Event):
        self.left, self.done = count, done

    def __call__(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.done.set()


async def ramp(url: str, stages: list[int], *, interval: float, measure: float, p95_limit_ms: float, label: str):
    global HANDSHAKES
    HANDSHAKES = asyncio.Semaphore(MAX_HANDSHAKES)
    stats, stop, tasks, results = Stats(), asyncio.Event(), [], []
    for target in stages:
        started = time.perf_counter()
        done = asyncio.Event()
        connected = _Countdown(target - len(tasks), done)
        for index in range(len(tasks), target):
            offset = interval * (index % 1000) / 1000
            tasks.append(
                asyncio.create_task(station_run(url, f"BENCH-{index:05d}", stats, stop, interval, offset, connected))
            )
        await done.wait()
        connect_seconds = time.perf_counter() - started
        await asyncio.sleep(interval)  # every new station has sent once
        stats.reset()
        await asyncio.sleep(measure)
        sent = len(stats.latencies) + stats.errors
        row = {
            "server": label, "stations": target, "connect_s": connect_seconds, "messages": sent,
            "per_s": sent / measure, "p50_ms": stats.p(0.5), "p95_ms": stats.p(0.95), "p99_ms": stats.p(0.99),
            "errors": stats.errors, "connect_failures": stats.connect_failures,
        }  # fmt: skip
        results.append(row)
        print(
            f"  {label:8} {target:5} stations: connected in {connect_seconds:5.1f} s, "
            f"{row['per_s']:6.1f} MeterValues/s, "
            f"p50 {row['p50_ms']:7.1f} ms, p95 {row['p95_ms']:7.1f} ms, p99 {row['p99_ms']:7.1f} ms, "
            f"errors {stats.errors}, connect failures {stats.connect_failures}",
            flush=True,
        )
        if row["p95_ms"] > p95_limit_ms or stats.errors > 0.01 * max(sent, 1) or stats.connect_failures:
            print(f"  {label}: degraded at {target} stations; ramp stops", flush=True)
            break
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return results


def baseline_serve(port: int) -> None:
    """The baseline server: ocpp's ChargePoint on websockets, MeterValues answered at once."""
    from ocpp.routing import on
    from ocpp.v201 import ChargePoint, call_result
    from ocpp.v201.enums import Action
    from websockets.asyncio.server import serve

    class NoOp(ChargePoint):
        @on(Action.meter_values)
        async def on_meter_values(self, **_):
            return call_result.MeterValues()

    async def handler(connection):
        station = NoOp(connection.request.path.rsplit("/", 1)[-1], connection)
        with contextlib.suppress(Exception):  # the station went away
            await station.start()

    async def main():
        async with serve(handler, "127.0.0.1", port, subprotocols=["ocpp2.0.1"], ping_interval=None) as server:
            await server.serve_forever()

    import logging

    logging.getLogger("ocpp").setLevel(logging.WARNING)
    asyncio.run(main())


def chargers_create(count: int) -> None:
    from energy.load.chargers import station_password_hash
    from energy.load.models import Charger
    from energy.models import Meter, Site
    from joulepoint.tenancy.models import Organization

    organization = Organization.objects.create(name="OCPP bench", slug="ocpp-bench")
    site = Site.objects.create(organization=organization, name="Bench depot", timezone="UTC")
    meters = Meter.objects.bulk_create(
        Meter(
            organization=organization, site=site, name=f"Bench charger {i}", serial=f"BENCH-{i:05d}", kind="ev_charger"
        )
        for i in range(count)
    )
    password_hash = station_password_hash(PASSWORD)
    Charger.objects.bulk_create(
        Charger(
            organization=organization,
            site=site,
            meter=meter,
            charging_station_id=meter.serial,
            password_hash=password_hash,
        )
        for meter in meters
    )


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 300) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("server did not listen in time")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 4 * max(args.stages) + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    print(f"open files: {wanted} (hard limit {hard})", flush=True)
    chargers_create(max(args.stages))
    # As deployed: Redis, so what the ingest queues after commit (rollups, event fan-out) goes to
    # the Celery queue (no worker here: the queue is flushed afterwards), not run eagerly in the server.
    env = dict(os.environ, DB_CONN_MAX_AGE="60", PYTHONUNBUFFERED="1", REDIS_URL=args.redis)
    results = []
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "ocpp_server", "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=open("/tmp/bench-ocpp-server.log", "w"),  # noqa: SIM115
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard)),
    )  # fmt: skip
    try:
        wait_listening(port, server)
        cpu_before, wall_before = cpu_seconds(server.pid), time.perf_counter()
        print(
            f"OCPP server (pid {server.pid}), MeterValues every {args.interval:g} s, "
            f"{args.measure:g} s measured per stage:"
        )
        results += asyncio.run(
            ramp(f"ws://127.0.0.1:{port}/ocpp", args.stages, interval=args.interval, measure=args.measure,
                 p95_limit_ms=args.p95_limit_ms, label="ocpp")
        )  # fmt: skip
        share = (cpu_seconds(server.pid) - cpu_before) / (time.perf_counter() - wall_before)
        print(f"  server CPU over the ramp: {share * 100:.0f}% of one core", flush=True)
    finally:
        server.terminate()
        server.wait(30)
        import redis

        redis.Redis.from_url(args.redis).flushdb()
    base_port = free_port()
    baseline = subprocess.Popen(
        [sys.executable, "-m", "bench.ocpp_stations", "--baseline-serve", str(base_port)], cwd=ROOT, env=env,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard)),
    )  # fmt: skip
    try:
        wait_listening(base_port, baseline)
        print(
            "Baseline (ocpp ChargePoint, no-op MeterValues, no auth, no database) at "
            f"{args.baseline_stations} stations:"
        )
        base = asyncio.run(
            ramp(f"ws://127.0.0.1:{base_port}/ocpp", [args.baseline_stations], interval=args.interval,
                 measure=args.measure, p95_limit_ms=float("inf"), label="baseline")
        )[0]  # fmt: skip
    finally:
        baseline.terminate()
        baseline.wait(30)
    held = [r for r in results if r["p95_ms"] <= args.p95_limit_ms and not r["errors"] and not r["connect_failures"]]
    most = max((r["stations"] for r in held), default=0)
    at_base = next((r for r in results if r["stations"] == args.baseline_stations), None)
    print(f"\nStations held by one process (p95 ≤ {args.p95_limit_ms:g} ms, no errors): {most}")
    if at_base:
        print(
            f"At {args.baseline_stations} stations: p95 {at_base['p95_ms']:.1f} ms vs baseline {base['p95_ms']:.1f} ms "
            f"(ratio {at_base['p95_ms'] / base['p95_ms']:.1f}), "
            f"MeterValues/s {at_base['per_s']:.1f} vs {base['per_s']:.1f}"
        )
    print(f"Target ≥ {TARGET_STATIONS} stations: {'PASS' if most >= TARGET_STATIONS else 'FAIL'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--stages", type=lambda v: [int(x) for x in v.split(",")], default=[500, 1000, 2000, 3000, 4000]
    )
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between a station's MeterValues")
    parser.add_argument("--measure", type=float, default=30.0, help="seconds measured per stage")
    parser.add_argument("--p95-limit-ms", type=float, default=1000.0)
    parser.add_argument("--baseline-stations", type=int, default=TARGET_STATIONS)
    parser.add_argument("--database", default=DEFAULT_DB)
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="a Redis database of its own (flushed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--baseline-serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_serve is not None:
        baseline_serve(args.baseline_serve)
        return 0
    with django_on_database(args.database, keep=args.keep):
        return run(args)


if __name__ == "__main__":
    sys.exit(main())

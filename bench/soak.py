"""Soak: the platform under steady load while its parts fail (issue 17).

    python -m bench.soak              # 20 minutes
    python -m bench.soak --quick      # about 2 minutes, for a check
    python -m bench.soak --minutes 5 --kill-every 60

What runs: PostgreSQL (a database of its own), a redis-server of its own on a free port (cache,
rate limits, channel layer; restarted once half way), RabbitMQ as the Celery broker (a vhost of
its own), uvicorn serving HTTP and WebSockets, one Celery worker (SIGKILLed and started again
every `--kill-every` seconds) and `celery beat` (the sweeps), a webhook receiver.

Load: first the bulk capacity is measured (readings/s with `CLIENTS` clients posting batches);
then bulk batches are paced at half of it, every batch carrying one reading that fires a rule
with a webhook, while 50 `/ws/live/` sockets watch the site.

Prints: memory (RSS) per process at start and end and its growth, error counts by status, p99
latency per minute, readings sent vs stored, and expected vs evaluated vs delivered webhooks
(distinct webhook-ids). Targets: no 5xx, memory growth under 10 %, 0 lost deliveries or
evaluations. Bounded in time and count, loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import orjson
import websockets

from bench.ingest import ROOT, HttpConnection, Platform, free_port, pids_in_group, signed_headers
from bench.ingest import Device as BenchDevice

CLIENTS = 4
BATCH = 100
LIVE_SOCKETS = 50
FIRING_POWER = 9000.0  # one reading a batch; the rule fires above 8 kW
# After the load, the wait for the last evaluations and deliveries lasts while they progress: it
# ends once nothing moved for DRAIN_SECONDS (then what is missing is lost), or at the cap.
DRAIN_SECONDS = 120
DRAIN_MAX_SECONDS = 1800


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Child:
    """A subprocess in its own process group, logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logdir: Path):
        self.name, self.args, self.env, self.logdir = name, args, env, logdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> Child:
        log = (self.logdir / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    def pids(self) -> list[int]:
        return pids_in_group(self.proc.pid) if self.proc and self.proc.poll() is None else []

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)

    def log_tail(self) -> str:
        path = self.logdir / f"{self.name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def rabbit_vhost(name: str) -> None:
    """A vhost of this run's own (the broker's other users keep theirs)."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return
    subprocess.run([ctl, "-q", "delete_vhost", name], capture_output=True, check=False)
    subprocess.run([ctl, "-q", "add_vhost", name], capture_output=True, check=True)
    subprocess.run(
        [ctl, "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"], capture_output=True, check=True
    )


SETUP = """
import json
from automations.models import Action, Rule, RuleAction
from energy.models import Meter, Site
from joulepoint.tenancy.models import Organization
org = Organization.objects.get(pk={org})
site = Site.objects.create(organization=org, name="Soak depot", timezone="UTC")
meters = [
    Meter.objects.create(organization=org, site=site, name=f"soak-{{i}}", serial=f"soak-{{i}}") for i in range({n})
]
config = {{"url": "{url}", "method": "POST", "headers": {{}}, "timeout_seconds": 5,
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}
action = Action.objects.create(organization=org, name="soak hook", type="webhook", config=config)
rule = Rule.objects.create(organization=org, name="soak high power", event_key="data.ingested", throttle_seconds=0,
    dedupe_template="", jsonlogic={{">": [{{"var": ["event.total_power", 0]}}, 8000]}})
RuleAction.objects.create(rule=rule, action=action)
print(json.dumps({{"site": site.pk, "meters": [[m.pk, str(m.device_key), m.device_secret] for m in meters]}}))
"""

COUNTS = """
import json
from collections import Counter
from automations.models import Delivery
from energy.models import Reading
unfinished = Delivery.objects.exclude(status="succeeded").order_by("id")
print(json.dumps({"stored": Reading.objects.count(), "deliveries": Delivery.objects.count(),
    "succeeded": Delivery.objects.filter(status="succeeded").count(),
    "by_status": dict(Counter(Delivery.objects.values_list("status", flat=True))),
    "unfinished": [{k: str(v) for k, v in row.items()} for row in unfinished.values()[:5]]}))
"""


class Soak:
    def __init__(self, args):
        self.args = args
        self.logdir = Path(tempfile.mkdtemp(prefix="jp-soak-"))
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.broker_url = f"amqp://guest:guest@127.0.0.1:5672/{args.vhost}"
        self.platform = Platform(
            server="uvicorn", workers=1, db_name=args.database, redis_url=self.redis_url, logdir=self.logdir
        )
        self.platform.env.update(
            CELERY_BROKER_URL=self.broker_url,
            AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE="1",
            AUTOMATIONS_RETRY_BASE_SECONDS="1",
        )
        self.platform.base_env = dict(self.platform.env)
        self.children: dict[str, Child] = {}
        self.latencies: dict[int, list[float]] = defaultdict(list)
        self.statuses: Counter = Counter()
        self.batches_ok = 0
        self.readings_ok = 0
        self.live_messages = 0
        self.live_reconnects = 0
        self.events: list[str] = []
        # RSS (KiB) per process name, sampled every minute of the soak: a process still warming up
        # (imports, first connections) grows once and then stays flat; a leak keeps growing.
        self.memory_samples: list[dict[str, int]] = []

    # processes
    def child(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Child:
        self.children[name] = Child(name, args, env or self.platform.env, self.logdir).start()
        return self.children[name]

    def start_redis(self) -> None:
        self.child(
            "redis",
            [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port),
             "--save", "", "--appendonly", "no"],
        )  # fmt: skip
        wait_port(self.redis_port)

    def start_worker(self) -> None:
        celery = [sys.executable, "-m", "celery", "-A", "joulepoint"]
        self.child("worker", [*celery, "worker", "-l", "WARNING", "--concurrency", "2", "-Q", "default",
                              "-n", f"soak-{time.time_ns()}@%h", "--without-gossip", "--without-mingle"])  # fmt: skip

    def memory(self) -> dict[str, int]:
        groups = {"server": self.platform.server_pids(), **{n: c.pids() for n, c in self.children.items()}}
        return {name: sum(rss_kib(pid) for pid in pids) for name, pids in groups.items() if pids}

    # load
    async def post_loop(self, device: BenchDevice, index: int, stop_at: float, interval: float, counter: list[int]):
        conn = HttpConnection("127.0.0.1", self.platform.port)
        next_at = time.monotonic()
        while time.monotonic() < stop_at:
            seq = counter[0]
            counter[0] += 1
            body = batch_body(index, seq)
            started = time.monotonic()
            try:
                status, _ = await asyncio.wait_for(
                    conn.post("/api/energy/energy-data/bulk", body, signed_headers(device, body)), 60
                )
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                status = 0  # connection error
                await conn.close()
            elapsed = time.monotonic() - started
            self.statuses[status] += 1
            if self.started_at is not None:
                self.latencies[int((started - self.started_at) // 60)].append(elapsed)
            if status == 201:
                self.batches_ok += 1
                self.readings_ok += BATCH
            if interval:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await conn.close()

    async def live_socket(self, token: str, site: int, stop_at: float) -> None:
        url = f"ws://127.0.0.1:{self.platform.port}/ws/live/?token={token}"
        while time.monotonic() < stop_at:
            try:
                async with websockets.connect(url, open_timeout=10) as ws:
                    await ws.send(orjson.dumps({"type": "subscribe", "sites": [site]}).decode())
                    while time.monotonic() < stop_at:
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(ws.recv(), 1.0)
                            self.live_messages += 1
            except (TimeoutError, OSError, websockets.WebSocketException):
                self.live_reconnects += 1
                await asyncio.sleep(1.0)

    async def sample_memory(self, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            self.memory_samples.append(self.memory())
            await asyncio.sleep(min(60.0, max(0.0, stop_at - time.monotonic())))

    async def chaos(self, stop_at: float) -> None:
        """The worker SIGKILLed and started again every kill_every seconds; Redis restarted once."""
        duration = stop_at - time.monotonic()
        redis_at = time.monotonic() + duration / 2
        next_kill = time.monotonic() + self.args.kill_every
        redis_done = False
        while time.monotonic() < stop_at:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            if now >= next_kill:
                self.children["worker"].kill()
                self.events.append(f"{now - self.started_at:6.0f} s  worker SIGKILLed and started again")
                self.start_worker()
                next_kill += self.args.kill_every
            if not redis_done and now >= redis_at:
                self.children["redis"].kill()
                await asyncio.sleep(2.0)
                self.start_redis()
                redis_done = True
                self.events.append(f"{now - self.started_at:6.0f} s  Redis killed, started again 2 s later (empty)")

    async def capacity(self, devices: list[BenchDevice], seconds: float) -> float:
        self.started_at = None
        before = self.readings_ok
        stop_at = time.monotonic() + seconds
        counters = [[0] for _ in range(CLIENTS)]
        await asyncio.gather(*(self.post_loop(devices[i], i, stop_at, 0.0, counters[i]) for i in range(CLIENTS)))
        return (self.readings_ok - before) / seconds

    async def soak(self, devices, token: str, site: int, seconds: float, rate: float) -> None:
        self.started_at = time.monotonic()
        stop_at = self.started_at + seconds
        interval = CLIENTS * BATCH / rate  # each client's pace for `rate` readings/s together
        counters = [[0] for _ in range(CLIENTS)]
        await asyncio.gather(
            *(self.post_loop(devices[i], i, stop_at, interval, counters[i]) for i in range(CLIENTS)),
            *(self.live_socket(token, site, stop_at) for _ in range(LIVE_SOCKETS)),
            self.chaos(stop_at),
            self.sample_memory(stop_at),
        )

    def counts(self) -> dict:
        return orjson.loads(self.platform.manage("shell", "-c", COUNTS).strip().splitlines()[-1])

    def run(self) -> int:
        args = self.args
        receiver_port = free_port()
        try:
            rabbit_vhost(args.vhost)
            self.start_redis()
            self.platform.create_database()
            self.platform.manage("migrate", "--noinput")
            tenant = orjson.loads(
                self.platform.manage("create_tenant", "Soak Energy", "--json").strip().splitlines()[-1]
            )
            self.child(
                "receiver",
                [sys.executable, "-m", "uvicorn", "bench.webhook_receiver:app", "--host", "127.0.0.1",
                 "--port", str(receiver_port), "--log-level", "warning"],
            )  # fmt: skip
            wait_port(receiver_port)
            setup = orjson.loads(
                self.platform.manage(
                    "shell", "-c",
                    SETUP.format(org=tenant["organization_id"], n=CLIENTS * 2, url=f"http://127.0.0.1:{receiver_port}/hook"),
                ).strip().splitlines()[-1]
            )  # fmt: skip
            devices = [BenchDevice(meter_id=m, key=k, secret=s) for m, k, s in setup["meters"]]
            self.platform.start_server()
            self.start_worker()
            self.child("beat", [sys.executable, "-m", "celery", "-A", "joulepoint", "beat", "-l", "WARNING",
                                "-s", str(self.logdir / "beat-schedule")])  # fmt: skip
            token = httpx.post(
                f"{self.platform.base_url}/o/token/",
                data={"grant_type": "client_credentials", "scope": "energy:read"},
                auth=(tenant["client_id"], tenant["client_secret"]),
                timeout=30,
            ).json()["access_token"]

            capacity = asyncio.run(self.capacity(devices[CLIENTS:], args.capacity_seconds))
            rate = capacity / 2
            print(f"bulk capacity (no chaos, {CLIENTS} clients x {BATCH} readings): {capacity:,.0f} readings/s")
            print(f"soak at half of it: {rate:,.0f} readings/s for {args.minutes:g} min, {LIVE_SOCKETS} live sockets")
            statuses_before = Counter(self.statuses)
            time.sleep(2.0)
            memory_start = self.memory()
            self.statuses.clear()
            self.batches_ok = 0
            self.readings_ok = 0
            asyncio.run(self.soak(devices[:CLIENTS], token, setup["site"], args.minutes * 60, rate))
            memory_end = self.memory()
            # Every stored batch fires the rule once, the capacity phase's too.
            expected_total = statuses_before[201] + self.batches_ok
            # Whatever has not arrived when the load stops is late if it arrives while the drain
            # still sees progress, lost if not.
            drain = self.drain(receiver_port, expected_total, args.drain_seconds, args.drain_max_seconds)
            counts = self.counts()
            delivered = httpx.get(f"http://127.0.0.1:{receiver_port}/", timeout=10).json()
            # What did not arrive is either still queued (late: the worker is behind) or nowhere
            # (lost): the worker stops, and the broker's queue is counted by task.
            self.children["worker"].kill(signal.SIGTERM)
            drain["queued"] = broker_backlog(self.broker_url)
            self.report(memory_start, memory_end, counts, delivered, expected_total, statuses_before, drain)
            failed = (
                any(code >= 500 or code == 0 for code in self.statuses)
                or counts["deliveries"] != expected_total
                or delivered["distinct"] != expected_total
            )
            return 1 if failed else 0
        finally:
            self.platform.stop_server()
            for child in reversed(list(self.children.values())):
                child.kill(signal.SIGTERM)
            self.platform.drop_database()
            print(f"logs: {self.logdir}")

    def drain(self, receiver_port: int, expected_total: int, stall: float, cap: float) -> dict:
        """Wait for the evaluations and deliveries still under way when the load stopped, for as
        long as they progress: until all have arrived, nothing moved for `stall` seconds (what
        is missing then is lost, not late), or `cap` seconds in all. Returns what had arrived
        when the load stopped, and when everything had (or None)."""
        started = time.monotonic()
        at_stop = None
        complete_after = None
        last, moved_at = None, started
        while True:
            counts = self.counts()
            delivered = httpx.get(f"http://127.0.0.1:{receiver_port}/", timeout=10).json()
            now = time.monotonic()
            if at_stop is None:
                at_stop = {"deliveries": counts["deliveries"], "distinct": delivered["distinct"]}
            if counts["deliveries"] >= expected_total and delivered["distinct"] >= expected_total:
                complete_after = now - started
                break
            progress = (counts["deliveries"], delivered["distinct"])
            if progress != last:
                last, moved_at = progress, now
            if now - moved_at >= stall or now - started >= cap:
                break
            time.sleep(2)
        return {"at_stop": at_stop, "complete_after": complete_after, "waited": time.monotonic() - started}

    def report(self, memory_start, memory_end, counts, delivered, expected_total, statuses_before, drain) -> None:
        print("\nevents:")
        for line in self.events:
            print(f"  {line}")
        print("\nmemory (RSS, MiB)         start      end   growth")
        for name in memory_start:
            start, end = memory_start[name] / 1024, memory_end.get(name, 0) / 1024
            growth = (end - start) / start * 100 if start else 0.0
            note = " (restarted: new processes)" if name in ("worker", "redis") else ""
            print(f"  {name:<20} {start:8.1f} {end:8.1f} {growth:+7.1f} %{note}")
        if self.memory_samples:
            names = list(self.memory_samples[0])
            print("\nmemory per minute (RSS, MiB; worker and redis are new processes after each restart):")
            print("  minute " + "".join(f"{name:>12}" for name in names))
            for minute, sample in enumerate(self.memory_samples):
                print(f"  {minute:6d} " + "".join(f"{sample.get(name, 0) / 1024:12.1f}" for name in names))
        print("\nresponses by status (soak):", dict(sorted(self.statuses.items())), "(0 = connection error)")
        print("responses by status (capacity phase):", dict(sorted(statuses_before.items())))
        print("\np99 latency per minute (bulk request of", BATCH, "readings):")
        for minute in sorted(self.latencies):
            values = sorted(self.latencies[minute])
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
            print(f"  minute {minute + 1:3d}: {len(values):6d} requests, p99 {p99 * 1000:8.1f} ms")
        print(f"\nlive sockets: {self.live_messages} messages received, {self.live_reconnects} reconnects")
        print(f"readings stored: {counts['stored']:,}")
        print(
            f"webhooks expected {expected_total}, evaluated (deliveries) {counts['deliveries']}, "
            f"succeeded {counts['succeeded']}, delivered to the receiver {delivered['distinct']} distinct "
            f"({delivered['count']} requests); deliveries by status at the end: {counts['by_status']}"
        )
        at_stop = drain["at_stop"]
        print(
            f"when the load stopped: {at_stop['deliveries']} evaluated, {at_stop['distinct']} delivered; "
            + (
                f"all {expected_total} delivered {drain['complete_after']:.0f} s later"
                if drain["complete_after"] is not None
                else f"not all after {drain['waited']:.0f} s of drain (stalled, or the cap)"
            )
        )
        print(
            f"late (arrived during the drain): evaluations {counts['deliveries'] - at_stop['deliveries']}, "
            f"deliveries {delivered['distinct'] - at_stop['distinct']}"
        )
        print(f"not arrived when the drain ended: evaluations {expected_total - counts['deliveries']}, "
              f"deliveries {expected_total - delivered['distinct']}")  # fmt: skip
        queued = drain.get("queued") or {}
        print(f"still queued in the broker when the drain ended, by task: {queued}")
        queued_evaluations = queued.get("automations.tasks.rules_evaluate_event", 0)
        print(
            f"evaluations not done: {expected_total - counts['deliveries']}, of which queued (late) "
            f"{queued_evaluations}; deliveries not succeeded: {counts['deliveries'] - counts['succeeded']} "
            f"(by status {counts['by_status']})"
        )
        for row in counts["unfinished"][:2]:
            print(
                f"  unfinished delivery {row['id']}: status {row['status']}, attempts {row['attempts']}, "
                f"created {row['created_at']}, last error {row['last_error']!r}"
            )


def broker_backlog(broker_url: str) -> dict[str, int]:
    """Messages waiting in the default queue, by task name: each is fetched unacknowledged and
    goes back to the queue when the connection closes (nobody else consumes by then)."""
    from kombu import Connection

    tasks: Counter = Counter()
    with Connection(broker_url) as connection:
        channel = connection.channel()
        while (message := channel.basic_get("default", no_ack=False)) is not None:
            tasks[(message.headers or {}).get("task")] += 1
    return dict(tasks.most_common())


def batch_body(client: int, seq: int) -> bytes:
    """BATCH readings one second apart, the first above the rule's threshold."""
    base = 1_600_000_000 + client * 20_000_000 + seq * BATCH  # from 2020-09, never in the future
    items = []
    for i in range(BATCH):
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + i))
        power = FIRING_POWER if i == 0 else 1000.0 + random.random() * 100
        items.append(b'{"timestamp":"%s","total_power":%.1f,"voltage_a":230.0}' % (ts.encode(), power))
    return b"[" + b",".join(items) + b"]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--kill-every", type=float, default=300.0, help="seconds between worker SIGKILLs")
    parser.add_argument("--capacity-seconds", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="2 minutes, a kill every 40 s, 8 s of capacity")
    parser.add_argument("--vhost", default="jp_bench_soak", help="RabbitMQ vhost of this run")
    parser.add_argument("--database", default="jp_bench_soak", help="PostgreSQL database of this run (dropped after)")
    parser.add_argument(
        "--drain-seconds", type=float, default=DRAIN_SECONDS,
        help="after the load, how long without progress ends the wait for late evaluations and deliveries",
    )  # fmt: skip
    parser.add_argument("--drain-max-seconds", type=float, default=DRAIN_MAX_SECONDS, help="cap on the whole wait")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.kill_every, args.capacity_seconds = 2.0, 40.0, 8.0
    sys.exit(Soak(args).run())


if __name__ == "__main__":
    main()

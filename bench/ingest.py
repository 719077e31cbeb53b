"""Ingest benchmark: the platform as deployed (real server processes) on PostgreSQL.

    python -m bench.ingest                       # the recommended layout (gunicorn, 2 gthread x 16)
    python -m bench.ingest --workers 3 --threads 8   # the layout recommended before 2026-11-27 night
    python -m bench.ingest --threads 1 --workers 3   # gunicorn with sync workers
    python -m bench.ingest --server uvicorn      # or gunicorn-uvicorn, or all
    python -m bench.ingest --duration 5          # seconds measured per phase

It creates its own database (`jp_bench_ingest`, dropped at the end; no other database is touched),
migrates it, starts the servers, creates a tenant with `manage.py create_tenant --json`, a site
and meters through the REST API (OAuth2 client credentials), then measures in one run:

1. the bare baseline: a DRF view returning 200 (bench-only URLconf), 16 concurrent clients;
2. single-reading ingest, POST /api/energy/energy-data/, 16 concurrent clients;
3. bulk ingest, POST /api/energy/energy-data/bulk, batches of 1,000, 4 concurrent clients;
4. the COPY baseline: the same rows written by psycopg COPY into the readings table.

It prints figures, ratios to the baselines and PASS/FAIL against the targets; it never
asserts. The load generator (asyncio, a lean HTTP/1.1 client) runs in this process, the
servers in their own; on a 2-core machine they compete for CPU, so each phase also prints the
CPU used by the client, the server processes, PostgreSQL and everything else on the machine
(as a share of one core; 200% is the whole of a 2-core machine). The bare and single phases also
print each server process's share (the clients keep their connections alive, and which worker
accepts each one is a race, so they connect 20 ms apart) and the server threads' context
switches per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import psycopg
from psycopg import sql

from bench.database import database_create, database_drop

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "jp_bench_ingest"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
SERVERS = ("gunicorn", "uvicorn", "gunicorn-uvicorn")
ASGI_SERVERS = ("uvicorn", "gunicorn-uvicorn")
RECOMMENDED_SERVER = "gunicorn"
DEFAULT_WORKERS = {"gunicorn": 2, "uvicorn": 2, "gunicorn-uvicorn": 2}
# 1: sync workers; more: gthread workers with that many threads, where concurrent single readings
# share a transaction (group commit, docs/serving.md).
DEFAULT_GUNICORN_THREADS = 16
PHASES = ("bare", "single", "bulk", "bulk_no_pq", "bulk_again", "copy")

BULK_BATCH = 1_000
BULK_CLIENTS = 4
SINGLE_CLIENTS = 16
WARMUP_SECONDS = 2.0
CONNECT_SPACING_SECONDS = 0.02
MAX_REQUESTS_PER_CLIENT = 10_000  # a bound on every load loop besides its deadline

TARGET_BULK_RATE = 20_000
TARGET_BULK_OF_COPY = 0.25
TARGET_SINGLE_OF_BARE = 0.4
TARGET_SINGLE_P99_MS = 100.0
TARGET_PQ_ON_OFF = 0.85  # issue 5: bulk ingest with PQ detection at least 0.85 of the rate without

READING_COLUMNS = (
    "total_power",
    "reactive_power",
    "total_energy",
    "export_energy",
    "voltage_a",
    "voltage_b",
    "voltage_c",
    "current_a",
    "current_b",
    "current_c",
    "frequency",
    "power_factor",
    "thd_v_pct",
    "thd_i_pct",
)
COPY_COLUMNS = ("meter_id", "ts", *READING_COLUMNS, "extra", "received_at")
BASE_TS = datetime(2024, 1, 1, tzinfo=UTC)


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------- readings


WOBBLE_STEPS = 97
ENERGY_COLUMNS = ("total_energy", "export_energy")


def wobble_values(step: int) -> dict[str, float]:
    """The measurements of a plausible three-phase sample that cycle with n (all but the
    energy registers, which only grow)."""
    wobble = step / WOBBLE_STEPS
    power = 12_000.0 + 3_000.0 * wobble
    return {
        "total_power": round(power, 1),
        "reactive_power": round(power * 0.2, 1),
        "voltage_a": round(229.0 + 2 * wobble, 2),
        "voltage_b": round(230.0 + 2 * wobble, 2),
        "voltage_c": round(231.0 - 2 * wobble, 2),
        "current_a": round(power / 3 / 230.0, 3),
        "current_b": round(power / 3 / 230.0 + 0.2, 3),
        "current_c": round(power / 3 / 230.0 - 0.2, 3),
        "frequency": round(49.98 + 0.04 * wobble, 3),
        "power_factor": round(0.95 + 0.04 * wobble, 3),
        "thd_v_pct": round(1.5 + wobble, 2),
        "thd_i_pct": round(4.0 + 2 * wobble, 2),
    }


WOBBLE = [wobble_values(step) for step in range(WOBBLE_STEPS)]


def energy_values(n: int) -> tuple[float, float]:
    return round(10_000.0 + n * 0.0035, 4), round(100.0 + n * 0.0001, 4)


def reading_values(n: int) -> dict[str, float]:
    """A plausible three-phase sample; deterministic in n so HTTP and COPY write the same rows."""
    total, export = energy_values(n)
    return {**WOBBLE[n % WOBBLE_STEPS], "total_energy": total, "export_energy": export}


def reading_ts(n: int) -> datetime:
    return BASE_TS + timedelta(seconds=n)


def reading_json(n: int) -> dict:
    return {"timestamp": reading_ts(n).isoformat().replace("+00:00", "Z"), **reading_values(n)}


# The bulk and COPY loads format readings from these pieces rather than building a dict per
# reading: that cost the client 20 ms of CPU per 1,000 readings (16 ms more for COPY's rows),
# a share of the 2 cores the servers and PostgreSQL then lacked. The values are the same floats
# either way (orjson and repr both write the shortest round-trip form).
WOBBLE_JSON = [orjson.dumps(values)[1:-1] for values in WOBBLE]
WOBBLE_COPY = [
    (
        "\t".join(repr(values[c]) for c in READING_COLUMNS[: READING_COLUMNS.index(ENERGY_COLUMNS[0])]),
        "\t".join(repr(values[c]) for c in READING_COLUMNS[READING_COLUMNS.index(ENERGY_COLUMNS[1]) + 1 :]),
    )
    for values in WOBBLE
]


BASE_EPOCH = int(BASE_TS.timestamp())


def reading_ts_text(n: int, layout: str) -> str:
    """reading_ts(n) formatted by time.strftime `layout` (about a third of datetime's cost)."""
    return time.strftime(layout, time.gmtime(BASE_EPOCH + n))


def bulk_body(first: int, count: int) -> bytes:
    """orjson.dumps([reading_json(n) for n in range(first, first + count)]), formatted faster."""
    items = []
    for n in range(first, first + count):
        total, export = energy_values(n)
        ts = reading_ts_text(n, "%Y-%m-%dT%H:%M:%SZ")
        items.append(
            b'{"timestamp":"%s",%s,"total_energy":%r,"export_energy":%r}'
            % (ts.encode(), WOBBLE_JSON[n % WOBBLE_STEPS], total, export)
        )
    return b"[" + b",".join(items) + b"]"


def copy_text(meter_id: int, first: int, count: int, received_at: datetime) -> str:
    """The same readings as `bulk_body`, as COPY text rows in COPY_COLUMNS order."""
    received = received_at.isoformat()
    lines = []
    for n in range(first, first + count):
        total, export = energy_values(n)
        before, after = WOBBLE_COPY[n % WOBBLE_STEPS]
        ts = reading_ts_text(n, "%Y-%m-%d %H:%M:%S+00")
        lines.append(f"{meter_id}\t{ts}\t{before}\t{total!r}\t{export!r}\t{after}\t{{}}\t{received}\n")
    return "".join(lines)


# --------------------------------------------------------------------------- processes


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime+stime of each given process still alive, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields_ = stat[stat.rindex(")") + 2 :].split()
        seconds[pid] = (int(fields_[11]) + int(fields_[12])) / ticks
    return seconds


def context_switches(pids: list[int]) -> dict[int, int]:
    """Voluntary and involuntary context switches of all threads of each process, from /proc."""
    counts = {}
    for pid in pids:
        counts[pid] = 0
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            try:
                lines = status.read_text().splitlines()
            except OSError:  # the thread ended
                continue
            counts[pid] += sum(int(line.split()[1]) for line in lines if "ctxt_switches:" in line)
    return counts


def pids_in_group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields_ = stat[stat.rindex(")") + 2 :].split()
        if int(fields_[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("postgres"):
            pids.append(int(entry.name))
    return pids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_reachable(url: str) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def server_command(server: str, port: int, workers: int, threads: int = 1) -> list[str]:
    """The server's command line; gunicorn with threads > 1 runs gthread workers, else sync ones."""
    bind = f"127.0.0.1:{port}"
    if server == "gunicorn":
        worker_class = ["--worker-class", "sync"]
        if threads > 1:
            worker_class = ["--worker-class", "gthread", "--threads", str(threads)]
        return [
            sys.executable, "-m", "gunicorn", "joulepoint.wsgi:application",
            "--bind", bind, "--workers", str(workers), *worker_class, "--log-level", "warning",
        ]  # fmt: skip
    if server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "joulepoint.asgi:application",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--loop", "uvloop", "--http", "httptools", "--lifespan", "off",
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
    if server == "gunicorn-uvicorn":
        return [
            sys.executable, "-m", "gunicorn", "joulepoint.asgi:application",
            "--bind", bind, "--workers", str(workers), "--worker-class", "uvicorn.workers.UvicornWorker",
            "--log-level", "warning",
        ]  # fmt: skip
    raise ValueError(server)


class Platform:
    """The database and the server processes of one run; `close()` always cleans up."""

    def __init__(
        self, *, server: str, workers: int, db_name: str, redis_url: str | None, logdir: Path, threads: int = 1
    ):
        self.server = server
        self.workers = workers
        self.threads = threads
        self.db_name = db_name
        self.redis_url = redis_url
        self.logdir = logdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.dsn = f"postgresql://postgres@127.0.0.1:5432/{db_name}"
        self.proc: subprocess.Popen | None = None
        self.db_created = False
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": self.dsn,
            "DEBUG": "0",
            "LOG_LEVEL": "WARNING",
            # The throttle still runs (Redis incr per request); the bench devices just never hit it.
            "DEVICE_RATE_LIMIT_PER_MINUTE": str(10**9),
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        for name in ("REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL_FILE", "REDIS_URL_FILE"):
            self.env.pop(name, None)
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        if server in ASGI_SERVERS:
            # Django runs sync views of an ASGI app in a fresh thread context per request, so
            # persistent connections pile up until PostgreSQL refuses clients ("too many clients
            # already", seen here with the default of 60 s); Django's advice for ASGI is 0.
            self.env["DB_CONN_MAX_AGE"] = "0"
        self.base_env = dict(self.env)

    # database
    def create_database(self) -> None:
        database_create(self.db_name)
        self.db_created = True

    def drop_database(self) -> None:
        if not self.db_created:
            return
        database_drop(self.db_name)
        self.db_created = False

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise BenchError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    # server
    def start_server(self) -> None:
        log = (self.logdir / f"{self.server}.log").open("wb")
        self.proc = subprocess.Popen(
            server_command(self.server, self.port, self.workers, self.threads),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers die with it
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.server} exited with {self.proc.returncode}:\n{self.server_log()}")
            try:
                if httpx.get(f"{self.base_url}/bench/bare", timeout=2).status_code == 200:
                    time.sleep(1.0)  # let every worker finish booting
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise BenchError(f"{self.server} did not answer within 60 s:\n{self.server_log()}")

    def restart_server(self, **env: str) -> None:
        """Restart the server processes with these settings on top of the run's own."""
        self.stop_server()
        self.env = {**self.base_env, **env}
        self.start_server()

    def server_log(self) -> str:
        path = self.logdir / f"{self.server}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def server_pids(self) -> list[int]:
        return pids_in_group(self.proc.pid) if self.proc else []

    def stop_server(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        # Workers of the group that outlived their master.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def close(self) -> None:
        try:
            self.stop_server()
        finally:
            self.drop_database()


# --------------------------------------------------------------------------- tenant


@dataclass
class Device:
    meter_id: int
    key: str
    secret: str


@dataclass
class Fixtures:
    bulk: list[Device]
    bulk_no_pq: list[Device]
    single: list[Device]
    copy_meter_ids: list[int]


def create_fixtures(platform: Platform) -> Fixtures:
    """A tenant from `manage.py create_tenant --json`; its site and meters through the API."""
    tenant = orjson.loads(platform.manage("create_tenant", "Bench Energy", "--json").strip().splitlines()[-1])
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        response = client.post(
            "/o/token/",
            data={"grant_type": "client_credentials", "scope": "energy:read energy:write"},
            auth=(tenant["client_id"], tenant["client_secret"]),
        )
        response.raise_for_status()
        client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        site = client.post("/api/energy/sites/", json={"name": "Bench depot", "timezone": "UTC"})
        site.raise_for_status()

        def meter(name: str) -> Device:
            response = client.post(
                "/api/energy/meters/",
                json={"site": site.json()["id"], "name": name, "serial": name, "kind": "load"},
            )
            response.raise_for_status()
            data = response.json()
            return Device(meter_id=data["id"], key=data["device_key"], secret=data["device_secret"])

        return Fixtures(
            bulk=[meter(f"bulk-{i}") for i in range(BULK_CLIENTS)],
            bulk_no_pq=[meter(f"bulk-nopq-{i}") for i in range(BULK_CLIENTS)],
            single=[meter(f"single-{i}") for i in range(SINGLE_CLIENTS)],
            copy_meter_ids=[meter(f"copy-{i}").meter_id for i in range(1)],
        )


# --------------------------------------------------------------------------- load


@dataclass
class PhaseResult:
    name: str
    requests: int = 0
    rows: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    # Share of one core used by each server process (the gunicorn master near 0); with kept-alive
    # connections, how the clients fell on the workers.
    worker_cpu: list[float] = field(default_factory=list)
    switches_per_s: float = 0.0  # context switches of all server threads

    @property
    def switches_per_request(self) -> float:
        return self.switches_per_s / self.rps if self.rps else float("nan")

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def server_ms_per_request(self) -> float:
        """Server-process CPU per successful request: unlike rates, barely moved by other load."""
        return self.cpu.get("server", 0.0) * 1000 / self.rps if self.rps else float("nan")

    def percentile(self, pct: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))] * 1000


def signed_headers(device: Device, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Device-Key": device.key,
        "X-Signature": hmac.new(device.secret.encode(), body, hashlib.sha256).hexdigest(),
    }


class HttpConnection:
    """A minimal HTTP/1.1 client on asyncio streams, one request at a time per connection.

    httpx costs about 4.5 ms of client CPU per request here against 0.9 ms for this (measured
    under the same load): on a 2-core machine the load generator's CPU is taken from the server,
    so the lean client keeps the figures about the server. Keep-alive when the server allows it
    (uvicorn, gunicorn gthread), a new connection per request when it answers `Connection: close`
    (gunicorn sync).
    """

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.writer.write(body)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        version, status = status_line.split(" ", 2)[:2]
        response_headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            response_headers[name.strip().lower()] = value.strip()
        keep_alive = version == "HTTP/1.1" and response_headers.get("connection", "").lower() != "close"
        if "content-length" in response_headers:
            content = await self.reader.readexactly(int(response_headers["content-length"]))
        elif response_headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            for _ in range(1_000_000):
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            content = b"".join(chunks)
        else:
            content = await self.reader.read()
            keep_alive = False
        if not keep_alive:
            await self.close()
        return int(status), content

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def busy_cpu_seconds() -> float:
    """CPU time all cores spent busy (not idle or waiting), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by the client (this process), the server processes, PostgreSQL and everything
    else, as a share of one core, between start() and stop()."""

    def __init__(self, platform: Platform | None):
        self.platform = platform

    def _sample(self) -> dict:
        sample = {"client": time.process_time()}
        if self.platform is not None:
            server_pids = self.platform.server_pids()
            sample["server"] = cpu_seconds(server_pids)
            sample["switches"] = context_switches(server_pids)
        sample["postgres"] = cpu_seconds(postgres_pids())
        sample["busy"] = busy_cpu_seconds()
        return sample

    def start(self) -> None:
        self.before = self._sample()

    def stop(self, seconds: float) -> dict[str, float]:
        after = self._sample()
        switches, before = after.pop("switches", {}), self.before.get("switches", {})
        self.switches_per_s = sum(n - before.get(pid, n) for pid, n in switches.items()) / seconds
        self.per_server_process = sorted(
            ((cpu - self.before["server"].get(pid, cpu)) / seconds for pid, cpu in after.get("server", {}).items()),
            reverse=True,
        )
        used = {}
        for key, value in after.items():
            if isinstance(value, dict):  # per process: those that exited in between are not counted
                used[key] = sum(cpu - self.before[key].get(pid, 0.0) for pid, cpu in value.items()) / seconds
            else:
                used[key] = (value - self.before[key]) / seconds
        busy = used.pop("busy")
        used["other"] = max(0.0, busy - sum(used.values()))
        return used


async def run_load(
    *,
    name: str,
    platform: Platform,
    clients: int,
    warmup: float,
    duration: float,
    request_for,  # (client index, sequence number) -> (path, body, headers, rows)
) -> PhaseResult:
    """`clients` concurrent closed-loop clients for warmup+duration seconds; only requests that
    start after the warm-up count. Every loop stops at its deadline or after a fixed count."""
    result = PhaseResult(name=name)
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup
    deadline = measure_from + duration
    last_end = measure_from
    cpu = CpuMeter(platform)

    async def client_loop(index: int) -> None:
        nonlocal last_end
        connection = HttpConnection("127.0.0.1", platform.port)
        # Clients connect one after another, as a fleet's devices do (all within the warm-up):
        # 16 connections in one millisecond were all taken by whichever worker's accept loop ran
        # first in about half the runs (89/0/0 %), which moved the rate by up to half.
        await asyncio.sleep(index * CONNECT_SPACING_SECONDS)
        try:
            for seq in range(MAX_REQUESTS_PER_CLIENT):
                began = loop.time()
                if began >= deadline:
                    return
                path, body, headers, rows = request_for(index, seq)
                try:
                    status, content = await asyncio.wait_for(connection.post(path, body, headers), timeout=60)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
                    await connection.close()
                    status, content = type(exc).__name__, b""
                ended = loop.time()
                if began < measure_from:
                    continue
                last_end = max(last_end, ended)
                if isinstance(status, int) and 200 <= status < 300:
                    result.requests += 1
                    result.rows += rows
                    result.latencies.append(ended - began)
                else:
                    key = f"{status} {content[:200].decode(errors='replace')}"
                    result.errors[key] = result.errors.get(key, 0) + 1
        finally:
            await connection.close()

    async def start_cpu_meter() -> None:
        await asyncio.sleep(max(0.0, measure_from - loop.time()))
        cpu.start()

    await asyncio.gather(start_cpu_meter(), *(client_loop(i) for i in range(clients)))
    result.seconds = last_end - measure_from
    if result.seconds > 0:
        result.cpu = cpu.stop(result.seconds)
        result.worker_cpu, result.switches_per_s = cpu.per_server_process, cpu.switches_per_s
    return result


def phase_bare(platform: Platform, duration: float) -> PhaseResult:
    body = orjson.dumps(reading_json(0))
    headers = {"Content-Type": "application/json"}

    def request_for(index: int, seq: int):
        return "/bench/bare/", body, headers, 0

    return asyncio.run(
        run_load(
            name="bare DRF view",
            clients=SINGLE_CLIENTS,
            warmup=WARMUP_SECONDS,
            duration=duration,
            request_for=request_for,
            platform=platform,
        )
    )


def phase_single(platform: Platform, fixtures: Fixtures, duration: float) -> PhaseResult:
    def request_for(index: int, seq: int):
        device = fixtures.single[index]
        body = orjson.dumps(reading_json(seq))
        return "/api/energy/energy-data/", body, signed_headers(device, body), 1

    return asyncio.run(
        run_load(
            name="single readings",
            clients=SINGLE_CLIENTS,
            warmup=WARMUP_SECONDS,
            duration=duration,
            request_for=request_for,
            platform=platform,
        )
    )


def phase_bulk(
    platform: Platform, fixtures: Fixtures, duration: float, *, pq: bool = True, first_request: int = 0
) -> PhaseResult:
    """Bulk ingest; with pq=False on other meters of a server restarted with PQ detection off
    (PQ_DETECTION_ENABLED=0), for the on/off ratio of issue 5. Each client's readings start at
    its `first_request`th batch, so a second phase on the same meters writes new readings."""
    devices = fixtures.bulk if pq else fixtures.bulk_no_pq

    def request_for(index: int, seq: int):
        device = devices[index]
        first = (first_request + seq) * BULK_BATCH
        body = bulk_body(first, BULK_BATCH)
        return "/api/energy/energy-data/bulk/", body, signed_headers(device, body), BULK_BATCH

    return asyncio.run(
        run_load(
            name="bulk readings",
            clients=BULK_CLIENTS,
            warmup=WARMUP_SECONDS,
            duration=duration,
            request_for=request_for,
            platform=platform,
        )
    )


def phase_bulk_restarted(platform: Platform, fixtures: Fixtures, duration: float) -> PhaseResult:
    """The bulk phase on freshly started server processes, like the two after it. On the processes
    that had just served the single phase it cost 5-15 % more server CPU per request than the
    same phase after a restart (2026-11-27), so the PQ on ÷ off ratio compared unlike processes."""
    platform.restart_server()
    return phase_bulk(platform, fixtures, duration)


def phase_without_pq(platform: Platform, fixtures: Fixtures, duration: float) -> PhaseResult:
    """The bulk phase on a server restarted with detection off, then the server as it was."""
    platform.restart_server(PQ_DETECTION_ENABLED="0")
    try:
        return phase_bulk(platform, fixtures, duration, pq=False)
    finally:
        platform.restart_server()


def phase_copy(platform: Platform, fixtures: Fixtures, duration: float) -> PhaseResult:
    """The same rows as the bulk phase (values, extra '{}', received_at), COPY'd by one psycopg
    connection into the readings table in 1,000-row transactions, for the same duration."""
    result = PhaseResult(name="COPY baseline")
    meter_id = fixtures.copy_meter_ids[0]
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in COPY_COLUMNS)
    statement = sql.SQL("COPY energy_reading ({}) FROM STDIN").format(columns)
    with psycopg.connect(platform.dsn) as conn:
        cpu = CpuMeter(None)
        cpu.start()
        start = time.perf_counter()
        deadline = start + duration
        for seq in range(MAX_REQUESTS_PER_CLIENT):
            began = time.perf_counter()
            if began >= deadline:
                break
            now = datetime.now(UTC)
            first = seq * BULK_BATCH
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(statement) as copy:
                copy.write(copy_text(meter_id, first, BULK_BATCH, now))
            result.latencies.append(time.perf_counter() - began)
            result.requests += 1
            result.rows += BULK_BATCH
        result.seconds = time.perf_counter() - start
        result.cpu = cpu.stop(result.seconds)
    return result


def count_readings(platform: Platform) -> int:
    with psycopg.connect(platform.dsn) as conn:
        return conn.execute("SELECT count(*) FROM energy_reading").fetchone()[0]


# --------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def fmt_cpu(cpu: dict[str, float]) -> str:
    return "  ".join(f"{k} {v * 100:.0f}%" for k, v in cpu.items())


def fmt_server(result: PhaseResult) -> str:
    """Where the server's CPU went by process, and its threads' context switches per request."""
    processes = "/".join(f"{share * 100:.0f}" for share in result.worker_cpu)
    return f"\n      server processes {processes} %   context switches/request {result.switches_per_request:5.1f}"


def fmt_errors(result: PhaseResult) -> str:
    if not result.errors:
        return ""
    return "\n      errors: " + "; ".join(f"{n}x {k}" for k, n in sorted(result.errors.items()))


def fmt_bulk(label: str, result: PhaseResult) -> str:
    return (
        f"  {label:17} {result.rows_per_s:9.0f} readings/s  {result.rps:6.1f} req/s  "
        f"p50 {result.percentile(50):6.1f} ms  p99 {result.percentile(99):6.1f} ms  "
        f"({result.rows} readings, {result.seconds:.1f} s)   server cpu/request {result.server_ms_per_request:5.1f} ms"
        f"   cpu: {fmt_cpu(result.cpu)}{fmt_errors(result)}"
    )


def report(layout: str, redis_url: str | None, results: dict[str, PhaseResult], stored: int) -> dict:
    bare, single, bulk, copy = results["bare"], results["single"], results["bulk"], results["copy"]
    bulk_no_pq, bulk_again = results["bulk_no_pq"], results["bulk_again"]
    # The off phase is bracketed by two on phases; their mean cancels the table's growth.
    pq_on = (bulk.rows_per_s + bulk_again.rows_per_s) / 2
    pq_on_off = pq_on / bulk_no_pq.rows_per_s if bulk_no_pq.rows_per_s else 0.0
    bulk_of_copy = bulk.rows_per_s / copy.rows_per_s if copy.rows_per_s else 0.0
    single_of_bare = single.rps / bare.rps if bare.rps else 0.0
    p99 = single.percentile(99)
    print()
    print(f"== {layout}, PostgreSQL, cache/throttle: {'Redis' if redis_url else 'local memory'}")
    print(
        f"  bare DRF view     {bare.rps:9.0f} req/s   p50 {bare.percentile(50):6.1f} ms  "
        f"p99 {bare.percentile(99):6.1f} ms  ({bare.requests} requests, {bare.seconds:.1f} s)"
        f"   server cpu/request {bare.server_ms_per_request:5.2f} ms   cpu: {fmt_cpu(bare.cpu)}"
        f"{fmt_server(bare)}{fmt_errors(bare)}"
    )
    print(
        f"  single reading    {single.rps:9.0f} req/s   p50 {single.percentile(50):6.1f} ms  "
        f"p99 {p99:6.1f} ms  ({single.requests} requests, {single.seconds:.1f} s)"
        f"   server cpu/request {single.server_ms_per_request:5.2f} ms   cpu: {fmt_cpu(single.cpu)}"
        f"{fmt_server(single)}{fmt_errors(single)}"
    )
    for label, result in (("bulk (1,000/req)", bulk), ("bulk, PQ on again", bulk_again), ("bulk, PQ off", bulk_no_pq)):
        print(fmt_bulk(label, result))
    print(
        f"  COPY baseline     {copy.rows_per_s:9.0f} rows/s   ({copy.rows} rows in 1,000-row transactions, "
        f"{copy.seconds:.1f} s)   cpu: {fmt_cpu(copy.cpu)}"
    )
    print(f"  readings table: {stored} rows after the run")
    print("  targets:")
    checks = (
        (f"bulk >= {TARGET_BULK_RATE:,} readings/s", f"{bulk.rows_per_s:9.0f}", bulk.rows_per_s >= TARGET_BULK_RATE),
        (f"bulk >= {TARGET_BULK_OF_COPY} x COPY", f"{bulk_of_copy:9.2f}", bulk_of_copy >= TARGET_BULK_OF_COPY),
        (
            f"single >= {TARGET_SINGLE_OF_BARE} x bare view",
            f"{single_of_bare:9.2f}",
            single_of_bare >= TARGET_SINGLE_OF_BARE,
        ),
        (f"single p99 < {TARGET_SINGLE_P99_MS:.0f} ms", f"{p99:9.1f}", p99 < TARGET_SINGLE_P99_MS),
        (f"bulk PQ on >= {TARGET_PQ_ON_OFF} x off", f"{pq_on_off:9.2f}", pq_on_off >= TARGET_PQ_ON_OFF),
    )
    for label, value, ok in checks:
        print(f"    {label:32} {value}   {verdict(ok)}")
    return {
        "server": layout,
        "bulk_rows_per_s": bulk.rows_per_s,
        "copy_rows_per_s": copy.rows_per_s,
        "bulk_of_copy": bulk_of_copy,
        "single_rps": single.rps,
        "single_p99_ms": p99,
        "bare_rps": bare.rps,
        "single_of_bare": single_of_bare,
        "bare_cpu_ms": bare.server_ms_per_request,
        "single_cpu_ms": single.server_ms_per_request,
        "bulk_cpu_ms": bulk.server_ms_per_request,
        "bulk_no_pq_rows_per_s": bulk_no_pq.rows_per_s,
        "pq_on_off": pq_on_off,
    }


def run_one(args, server: str, redis_url: str | None, logdir: Path) -> dict:
    workers = args.workers or DEFAULT_WORKERS[server]
    threads = args.threads if server == "gunicorn" else 1
    layout = f"{server} ({workers} workers" + (f" x {threads} threads, gthread)" if threads > 1 else ")")
    platform = Platform(
        server=server, workers=workers, threads=threads, db_name=args.database, redis_url=redis_url, logdir=logdir
    )
    try:
        print(f"-- {server}: creating database {args.database} and migrating", flush=True)
        platform.create_database()
        platform.manage("migrate", "--noinput")
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        print(f"-- {server}: starting {layout} on {platform.base_url} ({os.cpu_count()} cores, load {load})")
        platform.start_server()
        fixtures = create_fixtures(platform)
        results = {}
        phases = (
            ("bare", "bare DRF view, 16 clients", lambda: phase_bare(platform, args.duration)),
            ("single", "single readings, 16 clients", lambda: phase_single(platform, fixtures, args.duration)),
            (
                "bulk",
                "bulk 1,000/request, 4 clients (server restarted)",
                lambda: phase_bulk_restarted(platform, fixtures, args.duration),
            ),
            (
                "bulk_no_pq",
                "bulk 1,000/request, 4 clients, PQ detection off (server restarted)",
                lambda: phase_without_pq(platform, fixtures, args.duration),
            ),
            (
                "bulk_again",
                "bulk 1,000/request, 4 clients, PQ detection on again (server restarted)",
                lambda: phase_bulk(platform, fixtures, args.duration, first_request=MAX_REQUESTS_PER_CLIENT),
            ),
            ("copy", "psycopg COPY, 1 connection", lambda: phase_copy(platform, fixtures, args.duration)),
        )
        for key, label, run in phases:
            if key not in args.phases:
                results[key] = PhaseResult(name=key)
                continue
            warmup = f"{WARMUP_SECONDS:g} s warm-up + " if key != "copy" else ""
            print(f"-- {server}: {label} ({warmup}{args.duration:g} s)", flush=True)
            results[key] = run()
        if platform.proc is not None and platform.proc.poll() is not None:
            print(f"!! the server exited during the run:\n{platform.server_log()}")
        elif any(key.startswith("5") for result in results.values() for key in result.errors):
            print(f"!! the server answered 5xx; the end of its log:\n{platform.server_log()}")
        return report(layout, redis_url, results, count_readings(platform))
    finally:
        platform.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server",
        choices=[*SERVERS, "all"],
        default=RECOMMENDED_SERVER,
        help=f"serving layout (default: {RECOMMENDED_SERVER}, the recommended one; 'all' runs each in turn)",
    )
    parser.add_argument("--workers", type=int, default=0, help=f"worker processes (default: {DEFAULT_WORKERS})")
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_GUNICORN_THREADS,
        help=f"threads per gunicorn worker; above 1 runs gthread workers (default {DEFAULT_GUNICORN_THREADS})",
    )
    parser.add_argument(
        "--phases",
        type=lambda value: set(value.split(",")),
        default=set(PHASES),
        help=f"comma-separated phases to run (default all: {','.join(PHASES)}); skipped ones print as zero",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per phase (default 10)")
    parser.add_argument("--database", default=DEFAULT_DB, help=f"scratch database, dropped afterwards ({DEFAULT_DB})")
    parser.add_argument(
        "--redis",
        default=DEFAULT_REDIS,
        help=f"REDIS_URL for the servers' cache and throttle (default {DEFAULT_REDIS}; 'none' for local memory)",
    )
    args = parser.parse_args(argv)
    # The run drops its database: only names marked as scratch ones ("bench" in the name) are taken.
    if args.database in {"postgres", "template0", "template1"} or "bench" not in args.database:
        parser.error("--database must be a scratch database whose name contains 'bench' (jp_bench_ingest)")
    if args.threads < 1 or not args.phases <= set(PHASES):
        parser.error(f"--threads is at least 1; --phases names some of {','.join(PHASES)}")
    if not 1 <= args.duration <= 600:
        parser.error("--duration is between 1 and 600 seconds")

    redis_url = None if args.redis == "none" else args.redis
    if redis_url and not redis_reachable(redis_url):
        print(f"-- Redis at {redis_url} is not reachable: using the local-memory cache")
        redis_url = None

    # Ctrl-C and SIGTERM unwind through the `finally` blocks that stop servers and drop the database.
    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started in the background, where SIGINT is ignored
    servers = SERVERS if args.server == "all" else (args.server,)
    summaries = []
    try:
        with tempfile.TemporaryDirectory(prefix="jp_bench_") as logdir:
            for server in servers:
                summaries.append(run_one(args, server, redis_url, Path(logdir)))
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped, database dropped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    if len(summaries) > 1:
        print("\n== layouts side by side")
        print("  (cpu ms: server-process CPU per request, bulk per 1,000 readings)")
        print(
            f"  {'server':18} {'bulk/s':>9} {'xCOPY':>6} {'single/s':>9} {'p99 ms':>7} {'bare/s':>8} {'xbare':>6}"
            f" {'bare cpu':>9} {'single cpu':>11} {'bulk cpu':>9}"
        )
        for s in summaries:
            print(
                f"  {s['server']:18} {s['bulk_rows_per_s']:9.0f} {s['bulk_of_copy']:6.2f} {s['single_rps']:9.0f}"
                f" {s['single_p99_ms']:7.1f} {s['bare_rps']:8.0f} {s['single_of_bare']:6.2f}"
                f" {s['bare_cpu_ms']:9.2f} {s['single_cpu_ms']:11.2f} {s['bulk_cpu_ms']:9.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

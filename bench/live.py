"""Live streams benchmark: prints figures and PASS/FAIL, asserts nothing. 127.0.0.1 only.

    .venv/bin/python bench/live.py [--seconds 10] [--rate 2000] [--clients 50] [--mqtt-messages 40000]

Needs PostgreSQL (127.0.0.1:5432, database jp_live_bench is dropped and re-created), Redis
(127.0.0.1:6379, db BENCH_REDIS_DB=9 is flushed) and Mosquitto (127.0.0.1:1883).

1. Ingest → dashboard latency. The layout of docs/serving.md: gunicorn (gthread workers) serves the
   HTTP ingest, uvicorn the /ws/live/ dashboards, joined by the Redis channel layer.
   `--clients` dashboard sockets (in a process of their own) subscribe to the site; a gateway posts `--rate`
   readings/s in bulk POSTs of `--batch` (20 meters). Latency per (client, batch) = dashboard
   receipt - start of the ingest POST, and - the ingest's 201 (the issue's "within 100 ms of the
   ingest returning"); wall clock, one machine. Every client must receive every reading.
2. MQTT bridge throughput vs a raw paho loop through the same Mosquitto, same run: N
   single-reading QoS 1 messages, a window of at most 1,000 unanswered ones (Mosquitto drops
   QoS 1 messages beyond max_queued_messages for a slow subscriber, so a publisher must pace).
   Raw: publisher → Mosquitto → a paho subscriber. Bridge: publisher → Mosquitto →
   `manage.py mqtt_bridge` (stores in PostgreSQL, publishes an ack) → the publisher's ack
   subscription. Rate = messages answered per second; every reading must be stored. Then the
   same number of readings as a gateway uploads them: one message per instant with a reading
   of each of the 20 meters (readings/s and messages/s).
Targets: p95 < 50 ms, no message lost; bridge ≥ 5,000 readings/s and ≥ 0.3 x raw.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

DB_NAME = "jp_live_bench"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('BENCH_REDIS_DB', '9')}"
MQTT_PREFIX = f"jpbench{uuid.uuid4().hex[:6]}"
METERS = 20
WINDOW = 1000

os.environ.update(
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=REDIS_URL,
    DJANGO_SETTINGS_MODULE="joulepoint.settings",
    MQTT_TOPIC_PREFIX=MQTT_PREFIX,
    DEVICE_RATE_LIMIT_PER_MINUTE="100000000",
    LOG_LEVEL="ERROR",
    # Sync views under ASGI open a connection per request context; 0 closes them (docs/serving.md).
    DB_CONN_MAX_AGE="0",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


class Proc:
    def __init__(self, name: str, args: list[str], **env: str):
        self.name = name
        self.log = open(f"/tmp/jp-bench-{name}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            args,
            cwd=BASE_DIR,
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


def prepare_database() -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {DB_NAME}"], check=True
    )
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {DB_NAME}"], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=BASE_DIR, check=True)
    subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], check=True, capture_output=True)


def create_tenant():
    import django

    django.setup()
    from oauth2_provider.models import AccessToken

    from energy.models import Gateway, Meter, Site
    from joulepoint.tenancy.models import Organization
    from joulepoint.tenancy.services import api_credential_create

    org = Organization.objects.create(name="Bench", slug="bench")
    site = Site.objects.create(organization=org, name="Bench depot")
    meters = [
        Meter.objects.create(organization=org, site=site, name=f"m{i}", serial=f"B-{i:03d}") for i in range(METERS)
    ]
    gateway = Gateway.objects.create(organization=org, site=site, name="bench gateway")
    credential = api_credential_create(organization=org, name="bench", scopes=["energy:read"])
    token = AccessToken.objects.create(
        application=credential.application,
        token=uuid.uuid4().hex,
        scope="energy:read",
        expires=datetime.now(UTC) + timedelta(hours=1),
    )
    return site, meters, gateway, token.token


def wait_http(url: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def uvicorn(name: str, port: int, workers: int = 1) -> Proc:
    args = [str(Path(sys.executable).parent / "uvicorn"), "joulepoint.asgi:application"]
    args += ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "off", "--log-level", "warning"]
    args += ["--workers", str(workers)]
    return Proc(name, args)


def gunicorn(name: str, port: int, workers: int, threads: int) -> Proc:
    """The HTTP API as docs/serving.md deploys it: WSGI, gthread workers, persistent connections."""
    args = [str(Path(sys.executable).parent / "gunicorn"), "joulepoint.wsgi:application"]
    args += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads)]
    args += ["--worker-class", "gthread" if threads > 1 else "sync"]
    return Proc(name, args, DB_CONN_MAX_AGE="60")


# 1. ingest → dashboard ----------------------------------------------------------------------


def dashboard_clients_process(args, site_id: int, token: str, ws_url: str, expected: int, ready, results) -> None:
    """The dashboards, in a process of their own so their parsing does not slow the ingest
    driver. Reports, per client, the wall-clock receipt time of each batch and the count."""
    import orjson
    import websockets

    async def client(index: int, subscribed: asyncio.Event) -> tuple[int, dict[int, float]]:
        got: dict[int, float] = {}
        count = 0
        async with websockets.connect(
            f"{ws_url}/ws/live/?token={token}", max_size=2**24, compression=args.compression
        ) as ws:
            await ws.recv()  # ready
            await ws.send(orjson.dumps({"type": "subscribe", "sites": [site_id]}).decode())
            await ws.recv()  # subscribed
            subscribed.set()
            while count < expected:
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=15)
                except TimeoutError:
                    break
                now = time.time()
                frame = orjson.loads(raw)
                if frame.get("type") != "readings":
                    continue
                readings = frame["readings"]
                count += len(readings)
                got.setdefault(int(readings[0]["bench_seq"]) // args.batch, now)
        return count, got

    async def run() -> list:
        events = [asyncio.Event() for _ in range(args.clients)]
        tasks = [asyncio.create_task(client(i, events[i])) for i in range(args.clients)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), timeout=60)
        ready.set()
        return await asyncio.gather(*tasks)

    results.put(asyncio.run(run()))


async def ingest_driver(args, meters, gateway, ingest_url: str) -> dict:
    import httpx
    import orjson

    batches = int(args.rate * args.seconds / args.batch)
    interval = args.batch / args.rate
    sent_at: dict[int, float] = {}
    returned_at: dict[int, float] = {}
    errors: list[str] = []
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    per_meter = args.batch // METERS

    def body(k: int) -> bytes:
        items = []
        for i in range(args.batch):
            ts = base + timedelta(seconds=k * per_meter + i // METERS)
            items.append(
                {
                    "meter_id": meters[i % METERS].pk,
                    "timestamp": ts.isoformat().replace("+00:00", "Z"),
                    "total_power": 1000.0 + i,
                    "bench_seq": k * args.batch + i,
                }
            )
        return orjson.dumps(items)

    bodies = [body(k) for k in range(batches)]
    headers = {"X-Device-Key": str(gateway.device_key), "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    async with httpx.AsyncClient(base_url=ingest_url, limits=limits, timeout=30) as http:

        async def post(k: int) -> None:
            sent_at[k] = time.time()
            response = await http.post("/api/energy/energy-data/bulk", content=bodies[k], headers=headers)
            returned_at[k] = time.time()
            if response.status_code != 201:
                errors.append(f"batch {k}: {response.status_code} {response.text[:200]}")

        start = time.perf_counter()
        posts = []
        for k in range(batches):
            delay = start + k * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            posts.append(asyncio.create_task(post(k)))
        await asyncio.gather(*posts)
        seconds = time.perf_counter() - start
    return {"batches": batches, "seconds": seconds, "sent_at": sent_at, "returned_at": returned_at, "errors": errors}


def dashboard_latency(args, site, meters, gateway, token, ingest_url: str, ws_url: str) -> dict:
    import multiprocessing

    from django.db import connections

    connections.close_all()  # a forked child must not share (and later close) our DB socket
    context = multiprocessing.get_context("fork")
    batches = int(args.rate * args.seconds / args.batch)
    expected = batches * args.batch
    ready, results = context.Event(), context.Queue()
    clients = context.Process(
        target=dashboard_clients_process, args=(args, site.pk, token, ws_url, expected, ready, results)
    )
    clients.start()
    if not ready.wait(90):
        raise RuntimeError("dashboard clients did not subscribe")
    driven = asyncio.run(ingest_driver(args, meters, gateway, ingest_url))
    per_client = results.get(timeout=120)
    clients.join(10)
    latencies, after_return = [], []
    for _count, got in per_client:
        for batch, received in got.items():
            latencies.append((received - driven["sent_at"][batch]) * 1000)
            after_return.append((received - driven["returned_at"][batch]) * 1000)
    return {
        "readings": expected,
        "achieved_rate": expected / driven["seconds"],
        "latencies_ms": latencies,
        "after_return_ms": after_return,
        "lost": sum(max(0, expected - count) for count, _ in per_client),
        "clients_complete": sum(1 for count, _ in per_client if count >= expected),
        "errors": driven["errors"],
        "post_ms": [(driven["returned_at"][k] - driven["sent_at"][k]) * 1000 for k in driven["returned_at"]],
    }


# 2. MQTT -------------------------------------------------------------------------------------


class Windowed:
    """Publish `total` QoS 1 messages keeping at most WINDOW unanswered; time until all answered."""

    def __init__(self, total: int):
        self.total = total
        self.answered = 0
        self.cond = threading.Condition()

    def on_answer(self, *args) -> None:
        with self.cond:
            self.answered += 1
            self.cond.notify_all()

    def run(self, publisher, topic_for, payload_for, timeout: float = 120) -> float:
        start = time.perf_counter()
        deadline = time.monotonic() + timeout
        for i in range(self.total):
            with self.cond:
                while i - self.answered >= WINDOW:
                    if not self.cond.wait(timeout=max(0.01, deadline - time.monotonic())):
                        raise TimeoutError(f"{self.answered}/{self.total} answered")
            publisher.publish(topic_for(i), payload_for(i), qos=1)
        with self.cond:
            while self.answered < self.total:
                if not self.cond.wait(timeout=max(0.01, deadline - time.monotonic())):
                    raise TimeoutError(f"{self.answered}/{self.total} answered")
        return time.perf_counter() - start


def mqtt_client(name: str):
    """A bench client (raw publisher and subscriber, device publisher, ack listener alike): MQTT 5
    with a Receive Maximum of WINDOW. Mosquitto keeps at most 20 QoS 1 messages in flight to an
    MQTT 3 client, which capped a subscriber taking every device's messages at 20 per round trip
    (a real device gets only its own few acks)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{MQTT_PREFIX}-{name}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(WINDOW)
    client.max_queued_messages_set(0)
    properties = Properties(PacketTypes.CONNECT)
    properties.ReceiveMaximum = WINDOW
    client.connect("127.0.0.1", 1883, properties=properties)
    client.loop_start()
    return client


def subscribe(client, topic: str) -> None:
    done = threading.Event()
    client.on_subscribe = lambda *args: done.set()
    client.subscribe(topic, qos=1)
    done.wait(5)


def mqtt_raw(total: int) -> float:
    import orjson

    payload = orjson.dumps({"timestamp": "2025-10-16T10:00:00Z", "total_power": 3600.0})
    window = Windowed(total)
    subscriber = mqtt_client("raw-sub")
    subscriber.on_message = window.on_answer
    subscribe(subscriber, f"{MQTT_PREFIX}-raw/+/readings")
    publisher = mqtt_client("raw-pub")
    try:
        seconds = window.run(publisher, lambda i: f"{MQTT_PREFIX}-raw/{i % METERS}/readings", lambda i: payload)
    finally:
        for client in (publisher, subscriber):
            client.loop_stop()
            client.disconnect()
    return total / seconds


def mqtt_bridge(total: int, meters, gateway=None, processes: int = 1) -> tuple[float, float, int]:
    """`total` readings through the bridge: one per message from the meters' own keys, or, with
    `gateway`, one message per instant carrying all METERS readings (a gateway's usual upload).
    `processes` bridges share the subscription (`--shared`), as docs/serving.md scales them.
    Returns (readings/s, messages/s, readings stored)."""
    import orjson

    from energy.models import Reading

    per_message = METERS if gateway is not None else 1
    messages = total // per_message
    # Each variant writes its own hour range, so no variant meets another's readings as duplicates.
    days = 3 + (processes - 1) * 2 if gateway is not None else 2 + (processes - 1) * 2
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days)
    command = [sys.executable, "manage.py", "mqtt_bridge", "--url", "mqtt://127.0.0.1:1883"]
    if processes > 1:
        command += ["--shared", f"{MQTT_PREFIX}-bench"]
    bridges = [
        Proc(f"bridge{n}", [*command, "--client-id", f"{MQTT_PREFIX}-bridge{processes}-{n}"], LOG_LEVEL="WARNING")
        for n in range(processes)
    ]
    deadline = time.monotonic() + 30
    for bridge in bridges:  # every member subscribed before anything is measured
        while "subscribed to" not in Path(bridge.log.name).read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    window = Windowed(messages)
    # Two clients, as in the raw loop: the devices' publisher, and a listener on their ack topics
    # (one paho client doing both spends the bench's own GIL on two network loops' work).
    device, listener = mqtt_client("bridge-dev"), mqtt_client("bridge-acks")
    try:
        subscribe(listener, f"{MQTT_PREFIX}/+/ack")
        # Warm up: wait until the bridge answers one message (a reading outside the measured set).
        warm = Windowed(1)
        listener.on_message = warm.on_answer
        deadline = time.monotonic() + 30
        while warm.answered == 0 and time.monotonic() < deadline:
            device.publish(f"{MQTT_PREFIX}/meter-{meters[0].pk}/readings",
                           orjson.dumps({"timestamp": base.isoformat(), "total_power": 0}), qos=1)  # fmt: skip
            time.sleep(0.5)
        time.sleep(1)  # let warm-up repeats drain
        listener.on_message = window.on_answer
        before = Reading.objects.count()

        def stamp(seconds: int) -> str:
            return (base + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

        if gateway is None:

            def topic(i: int) -> str:
                return f"{MQTT_PREFIX}/meter-{meters[i % METERS].pk}/readings"

            def payload(i: int) -> bytes:
                return orjson.dumps({"timestamp": stamp(1 + i // METERS), "total_power": float(i)})
        else:

            def topic(i: int) -> str:
                return f"{MQTT_PREFIX}/gateway-{gateway.pk}/readings"

            def payload(i: int) -> bytes:
                return orjson.dumps(
                    [{"meter_id": m.pk, "timestamp": stamp(1 + i), "total_power": float(i)} for m in meters]
                )

        seconds = window.run(device, topic, payload)
        stored = Reading.objects.count() - before
    finally:
        for client in (device, listener):
            client.loop_stop()
            client.disconnect()
        for bridge in bridges:
            bridge.stop()
    return messages * per_message / seconds, messages / seconds, stored


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--compression", default=None, choices=[None, "deflate"], help="permessage-deflate on dashboard sockets"
    )
    parser.add_argument("--batch", type=int, default=200, help="readings per bulk POST (a multiple of 20)")
    parser.add_argument("--ingest-workers", type=int, default=2, help="gunicorn workers serving the ingest")
    parser.add_argument("--ingest-threads", type=int, default=16, help="threads per gunicorn worker (1: sync)")
    parser.add_argument("--mqtt-messages", type=int, default=40000)
    parser.add_argument(
        "--bridges", type=int, default=os.cpu_count() or 2, help="bridge processes sharing the subscription"
    )
    args = parser.parse_args()

    prepare_database()
    site, meters, gateway, token = create_tenant()
    ingest_port, ws_port = free_port(), free_port()
    # The serving layout of docs/serving.md: gunicorn for HTTP (the ingest), uvicorn for sockets.
    servers = [
        gunicorn("ingest", ingest_port, args.ingest_workers, args.ingest_threads),
        uvicorn("dashboards", ws_port),
    ]
    try:
        for port in (ingest_port, ws_port):
            wait_http(f"http://127.0.0.1:{port}/api/schema/")
        live = dashboard_latency(
            args, site, meters, gateway, token, f"http://127.0.0.1:{ingest_port}", f"ws://127.0.0.1:{ws_port}"
        )
    finally:
        for server in servers:
            server.stop()
    raw_rate = mqtt_raw(args.mqtt_messages)
    bridge_rate, _, stored = mqtt_bridge(args.mqtt_messages, meters)
    shared_rate, _, shared_stored = mqtt_bridge(args.mqtt_messages, meters, processes=args.bridges)
    gateway_rate, gateway_messages, gateway_stored = mqtt_bridge(args.mqtt_messages, meters, gateway)

    lat = live["latencies_ms"]
    p50, p95, p99 = (percentile(lat, q) for q in (50, 95, 99))
    after = live["after_return_ms"]
    print("== ingest → dashboard (Redis channel layer, gunicorn ingest, uvicorn dashboards, PostgreSQL)")
    print(f"readings ingested        {live['readings']} at {live['achieved_rate']:.0f}/s "
          f"(asked {args.rate}/s, bulk POSTs of {args.batch}, {METERS} meters, "
          f"{args.ingest_workers} ingest workers x {args.ingest_threads} threads)")  # fmt: skip
    print(f"dashboard clients        {args.clients}, complete {live['clients_complete']}/{args.clients}")
    a50, a95, a99 = (percentile(after, q) for q in (50, 95, 99))
    print(
        f"latency from POST start  p50 {p50:.1f} ms  p95 {p95:.1f} ms  p99 {p99:.1f} ms  (n={len(lat)} client-batches)"
    )
    print(f"latency from POST return p50 {a50:.1f} ms  p95 {a95:.1f} ms  p99 {a99:.1f} ms  "
          f"(negative: the dashboard had it before the ingest client had its 201)")  # fmt: skip
    i50, i95, i99 = (percentile(live["post_ms"], q) for q in (50, 95, 99))
    print(f"ingest POST itself       p50 {i50:.1f} ms  p95 {i95:.1f} ms  p99 {i99:.1f} ms")
    print(f"machine load average     {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"readings lost            {live['lost']}   ingest errors {len(live['errors'])}")
    for error in live["errors"][:3]:
        print(f"  {error}")
    print("== MQTT (single-reading QoS 1 messages, window 1000)")
    print(f"raw paho pub→sub         {raw_rate:,.0f} msg/s")
    print(f"bridge pub→store→ack     {bridge_rate:,.0f} readings/s  stored {stored}/{args.mqtt_messages}  (1 process)")
    print(f"{args.bridges} bridges, --shared     {shared_rate:,.0f} readings/s  "
          f"stored {shared_stored}/{args.mqtt_messages}  (docs/serving.md: one per core)")  # fmt: skip
    ratio = bridge_rate / raw_rate if raw_rate else 0.0
    shared_ratio = shared_rate / raw_rate if raw_rate else 0.0
    print(f"ratio bridge/raw         {ratio:.2f} (1 process)  {shared_ratio:.2f} ({args.bridges} processes)")
    print(
        f"bridge, gateway messages {gateway_rate:,.0f} readings/s  ({gateway_messages:,.0f} msg/s of {METERS} "
        f"readings)  stored {gateway_stored}/{args.mqtt_messages}"
    )
    verdicts = {
        "dashboard p95 < 50 ms (from POST start)": p95 < 50,
        "dashboard p95 < 50 ms (from POST return)": a95 < 50,
        "no dashboard message lost": live["lost"] == 0 and not live["errors"],
        "bridge ≥ 5,000 readings/s (single-reading messages, 1 process)": bridge_rate >= 5000,
        f"bridge ≥ 5,000 readings/s (single-reading messages, {args.bridges} processes)": shared_rate >= 5000,
        f"bridge ≥ 5,000 readings/s (gateway messages of {METERS})": gateway_rate >= 5000,
        "bridge ≥ 0.3 x raw (1 process)": ratio >= 0.3,
        "no MQTT reading lost": stored == shared_stored == gateway_stored == args.mqtt_messages,
    }
    for name, ok in verdicts.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")


if __name__ == "__main__":
    main()

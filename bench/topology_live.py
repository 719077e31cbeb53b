"""Live topology through real servers and a real socket: how long from a 1,000-reading frame
ingested to the topology update on a /ws/live/ client, and how many updates a second the
clients receive while readings keep coming. Prints figures; asserts nothing. 127.0.0.1 only.

    python -m bench.topology_live                     # 20 latency rounds, 10 s of continuous ingest
    python -m bench.topology_live --rounds 40 --seconds 20 --clients 5

The serving layout of docs/serving.md: gunicorn serves the HTTP ingest, uvicorn the /ws/live/
sockets, joined by the Redis channel layer (db BENCH_REDIS_DB, default 9, flushed first, as
bench/live.py does). PostgreSQL database
`jp_bench_topology_live` is created and dropped. The site is bench/topology.py's: 2,000 nodes,
1,000 of them metered, a gateway posting for all of them.

1. Latency: `--rounds` times, with a pause longer than the push interval in between, the gateway
   POSTs one bulk frame of a reading for each of the 1,000 meters (the grid meter's power marks
   the round); each client waits for the `topology.update` carrying that mark. Printed: p50/p95
   from the start of the POST and from its 201 answer, for every (round, client).
2. Push rate: for `--seconds` the gateway POSTs such frames back to back; counted: the frames
   stored, the updates each client received per second (the ceiling is 1 / the push interval:
   4/s), and how old the newest frame in each update was when it arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson

from bench.database import django_on_database
from bench.live import Proc, free_port, gunicorn, percentile, uvicorn, wait_http

DEFAULT_DB = "jp_bench_topology_live"
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('BENCH_REDIS_DB', '9')}"
MARK = 1_000_000.0  # the grid meter's power in round k is MARK + k: the update that carries it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=3, help="dashboard sockets watching the topology")
    parser.add_argument("--history", type=int, default=20, help="readings per meter before the run")
    parser.add_argument("--database", default=DEFAULT_DB)
    args = parser.parse_args()
    with django_on_database(args.database):
        return run(args)


def prepare(args):
    """bench/topology.py's site, a gateway of it and a dashboard token."""
    from django.utils import timezone
    from oauth2_provider.models import AccessToken

    from bench.topology import build
    from energy.models import Gateway, Meter
    from energy.topology.models import Node
    from joulepoint.tenancy.services import api_credential_create

    org, site = build(args)
    gateway = Gateway.objects.create(organization=org, site=site, name="bench gateway")
    credential = api_credential_create(organization=org, name="bench", scopes=["energy:read"])
    token = AccessToken.objects.create(
        application=credential.application, token=uuid.uuid4().hex, scope="energy:read",
        expires=timezone.now() + timedelta(hours=1),
    )  # fmt: skip
    grid = Node.objects.get(site=site, kind="grid_connection")
    meter_ids = list(Meter.objects.filter(site=site).order_by("id").values_list("id", flat=True))
    return site, gateway, token.token, grid, meter_ids


def frame_body(meter_ids: list[int], grid_meter_id: int, mark: float) -> bytes:
    stamp = datetime.now(UTC).isoformat(timespec="microseconds")
    return orjson.dumps(
        [
            {
                "meter_id": meter_id,
                "timestamp": stamp,
                "total_power": mark if meter_id == grid_meter_id else 1000.0,
                "current_a": 5.0,
            }
            for meter_id in meter_ids
        ]
    )


class Client:
    """One dashboard socket watching the site's topology; records every update's arrival."""

    def __init__(self, ws_url: str, token: str, site_id: int, grid_id: int):
        self.url, self.token, self.site_id, self.grid_id = f"{ws_url}/ws/live/?token={token}", token, site_id, grid_id
        self.updates: list[tuple[float, float | None]] = []  # (arrival, the grid node's power)
        self.marks: dict[float, float] = {}  # grid power → first arrival
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        import websockets

        async with websockets.connect(self.url, max_size=2**25) as ws:
            assert orjson.loads(await ws.recv())["type"] == "ready"
            await ws.send(orjson.dumps({"type": "subscribe", "topology": [self.site_id]}).decode())
            assert orjson.loads(await ws.recv())["type"] == "subscribed"
            assert orjson.loads(await ws.recv())["type"] == "topology"
            self.ready.set()
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
                except TimeoutError:
                    continue
                arrived = time.perf_counter()
                frame = orjson.loads(raw)
                if frame.get("type") != "topology.update":
                    continue
                power = next((node["power_w"] for node in frame["nodes"] if node["id"] == self.grid_id), None)
                self.updates.append((arrived, power))
                if power is not None:
                    self.marks.setdefault(power, arrived)


async def drive(args, site, gateway, token, grid, meter_ids, http_url: str, ws_url: str) -> None:
    import httpx

    clients = [Client(ws_url, token, site.pk, grid.pk) for _ in range(args.clients)]
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(client.run(stop)) for client in clients]
    await asyncio.wait_for(asyncio.gather(*(client.ready.wait() for client in clients)), timeout=120)
    headers = {"X-Device-Key": str(gateway.device_key), "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=http_url, headers=headers, timeout=60) as http:

        async def post(mark: float) -> tuple[float, float]:
            body = frame_body(meter_ids, grid.meter_id, mark)
            began = time.perf_counter()
            response = await http.post("/api/energy/energy-data/bulk", content=body)
            assert response.status_code == 201, response.text[:300]
            return began, time.perf_counter()

        # 1. latency per frame
        from_post, from_answer = [], []
        for k in range(args.rounds):
            mark = MARK + k
            began, answered = await post(mark)
            deadline = time.perf_counter() + 30
            while any(mark not in client.marks for client in clients) and time.perf_counter() < deadline:
                await asyncio.sleep(0.002)
            for client in clients:
                arrived = client.marks.get(mark)
                if arrived is not None:
                    from_post.append((arrived - began) * 1000)
                    from_answer.append((arrived - answered) * 1000)
            await asyncio.sleep(0.6)  # past the push interval: each round starts unthrottled
        missing = args.rounds * len(clients) - len(from_post)
        print(f"1,000-reading frame ingested -> topology.update, {args.rounds} rounds x {len(clients)} clients")
        for label, values in (("from the POST's start", from_post), ("from its 201 answer  ", from_answer)):
            print(f"  {label}: p50 {statistics.median(values):.1f} ms, p95 {percentile(values, 95):.1f} ms")
        print(f"  updates never received: {missing}")

        # 2. push rate under continuous ingest
        for client in clients:
            client.updates.clear()
        posted: list[tuple[float, float]] = []  # (201 answer, mark)
        began = time.perf_counter()
        k = 0
        while time.perf_counter() - began < args.seconds:
            k += 1
            mark = 2 * MARK + k
            _start, answered = await post(mark)
            posted.append((answered, mark))
        ended = time.perf_counter()
        await asyncio.sleep(1.0)  # the last interval's update
        stop.set()
        await asyncio.gather(*tasks)
    seconds = ended - began
    answered_at = {mark: at for at, mark in posted}
    print(
        f"continuous ingest for {seconds:.1f} s: {len(posted)} frames ({len(posted) * 1000 / seconds:,.0f} readings/s)"
    )
    for index, client in enumerate(clients):
        window = [(at, power) for at, power in client.updates if power is not None and power >= 2 * MARK]
        ages = [(at - answered_at[power]) * 1000 for at, power in window if power in answered_at]
        print(
            f"  client {index}: {len(window)} updates, {len(window) / seconds:.2f}/s; the newest frame in an update "
            f"was stored p50 {statistics.median(ages) if ages else float('nan'):.0f} ms, "
            f"p95 {percentile(ages, 95):.0f} ms before it arrived"
        )
    print("  (ceiling: one update per site every TOPOLOGY_PUSH_INTERVAL_SECONDS = 0.25 s, 4/s, shared by all clients)")


def run(args) -> int:
    site, gateway, token, grid, meter_ids = prepare(args)
    env = {
        "DATABASE_URL": os.environ["DATABASE_URL"],  # the benchmark's database (django_on_database)
        "REDIS_URL": REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "joulepoint.settings",
        "DEVICE_RATE_LIMIT_PER_MINUTE": "100000000",
        "LOG_LEVEL": "ERROR",
        "DB_CONN_MAX_AGE": "0",
    }
    os.environ.update(env)  # the servers below inherit it
    subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], check=True, capture_output=True)
    http_port, ws_port = free_port(), free_port()
    servers: list[Proc] = [
        gunicorn("topology-ingest", http_port, workers=1, threads=4),
        uvicorn("topology-ws", ws_port),
    ]
    try:
        wait_http(f"http://127.0.0.1:{http_port}/api/energy/sites/")
        wait_http(f"http://127.0.0.1:{ws_port}/api/energy/sites/")
        asyncio.run(
            drive(
                args,
                site,
                gateway,
                token,
                grid,
                meter_ids,
                f"http://127.0.0.1:{http_port}",
                f"ws://127.0.0.1:{ws_port}",
            )
        )
    finally:
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

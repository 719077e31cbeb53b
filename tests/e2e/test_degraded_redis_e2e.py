"""Redis down: device ingest goes on from the database (docs/deploy.md, "When Redis is down").

The platform runs under uvicorn against a redis-server of the test's own (cache, rate-limit
counters, channel layer and broker all on it), which the test kills with SIGKILL and starts
again. While it is down, device requests are authenticated from the database and their rate
limit is counted per process (relaxed, logged); never a 500. When it is back, the shared limit
applies again and live sockets get readings again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path

import orjson
import pytest
import websockets

from energy.models import Reading
from tests import factories
from tests.conftest import _token
from tests.e2e.conftest import ServerProcess, _wait_for_http
from tests.e2e.test_live_e2e import next_frame, ws_url
from tests.net import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

RATE_LIMIT = 8
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def ts(seconds: int) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def post_reading(base_url: str, meter, seconds: int, *, secret: str | None = None) -> tuple[int, dict, Message]:
    body = json.dumps({"timestamp": ts(seconds), "total_power": 1000.0 + seconds}).encode()
    signature = hmac.new((secret or meter.device_secret).encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{base_url}/api/energy/energy-data/",
        data=body,
        method="POST",
        headers={"X-Device-Key": str(meter.device_key), "X-Signature": signature, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), error.headers


@pytest.fixture
def server_on_own_redis(own_redis, transactional_db):
    """uvicorn with REDIS_URL (and the broker) on the test's own Redis; yields (base URL, process)."""
    port = free_port()
    server = ServerProcess(
        "uvicorn-own-redis",
        [
            str(Path(sys.executable).parent / "uvicorn"),
            "joulepoint.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--log-level",
            "info",
        ],
        env={
            "REDIS_URL": own_redis.url,
            "CELERY_BROKER_URL": own_redis.url,
            "DEVICE_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
        },
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        # A cheap route (a 401): a cold schema takes longer than the start-up bound on a loaded machine.
        _wait_for_http(server, f"{base_url}/api/energy/meters/", timeout=120)
        yield base_url, server
    finally:
        server.stop()


def full_log(server: ServerProcess) -> str:
    server.log.flush()
    return Path(server.log.name).read_text(errors="replace")


def post_until_limited(base_url: str, meter, first_second: int) -> tuple[list[int], Message]:
    """Post fresh readings until one is refused with 429 (at most two windows' worth, in case a
    minute boundary falls in between); returns the codes and the 429's headers."""
    codes: list[int] = []
    for offset in range(2 * RATE_LIMIT + 2):
        code, body, headers = post_reading(base_url, meter, first_second + offset)
        codes.append(code)
        if code == 429:
            return codes, headers
        assert code == 201, body
    pytest.fail(f"never rate limited: {codes}")


def test_ingest_goes_on_while_redis_is_down(server_on_own_redis, own_redis):
    base_url, server = server_on_own_redis
    meter = factories.MeterFactory(require_signature=True)
    code, body, _ = post_reading(base_url, meter, 0)
    assert code == 201, body

    own_redis.kill()
    answers = [post_reading(base_url, meter, seconds) for seconds in range(1, 4)]
    assert [code for code, _, _ in answers] == [201, 201, 201], server.output()
    assert Reading.objects.filter(meter=meter).count() == 4
    # Authentication still refuses what it must, from the database.
    assert post_reading(base_url, meter, 10, secret="wrong")[0] == 403
    other = factories.MeterFactory.build()
    assert post_reading(base_url, other, 11)[0] == 401
    # The rate limit is relaxed to a count per process, not dropped (this server is one process).
    down_codes, headers = post_until_limited(base_url, meter, 100)
    assert int(headers["Retry-After"]) >= 1
    assert "Redis unavailable" in full_log(server)

    # Redis back (empty, as a restart without persistence leaves it): the shared limit applies.
    own_redis.start()
    up_codes, _ = post_until_limited(base_url, meter, 200)
    assert up_codes.count(201) <= RATE_LIMIT
    # Every 201 is a stored reading; nothing answered 500.
    assert Reading.objects.filter(meter=meter).count() == 4 + down_codes.count(201) + up_codes.count(201)
    assert " 500 " not in full_log(server), server.output()


async def subscribed_socket(base_url: str, token: str, meter):
    live = await websockets.connect(ws_url(base_url, f"/ws/live/?token={token}"))
    await next_frame(live, "ready")
    await live.send(orjson.dumps({"type": "subscribe", "meters": [meter.pk]}).decode())
    await next_frame(live, "subscribed")
    return live


def test_live_streams_recover_when_redis_returns(server_on_own_redis, own_redis):
    """Redis restarted empty (no persistence): a dashboard socket open through the outage gets
    readings again without reconnecting (the server process joins its groups again), a socket
    opening while Redis is down that needs a group the server has not joined is closed with
    1013 "Try Again Later" (the browser reconnects),
    a new socket after the restart streams, and ingest never failed meanwhile."""
    base_url, server = server_on_own_redis
    meter = factories.MeterFactory()
    token = _token(meter.organization, ["energy:read"])
    # Its own token, so its own revocation group, which no socket of the server has joined yet.
    other_token = _token(meter.organization, ["energy:read"])

    async def scenario() -> tuple[dict, int, dict, dict]:
        through = await subscribed_socket(base_url, token, meter)
        assert (await asyncio.to_thread(post_reading, base_url, meter, 0))[0] == 201
        before = await next_frame(through, "readings", timeout=15)

        await asyncio.to_thread(own_redis.kill)
        assert (await asyncio.to_thread(post_reading, base_url, meter, 1))[0] == 201  # stored, not streamed
        during = await websockets.connect(ws_url(base_url, f"/ws/live/?token={other_token}"))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(during.recv(), timeout=30)
        refused_code = closed.value.rcvd.code

        await asyncio.to_thread(own_redis.start)
        # The old socket's next reading: posted until one arrives, since the server process
        # notices Redis is back at its next retry (every second).
        old_socket = None
        for seconds in range(2, 32):
            assert (await asyncio.to_thread(post_reading, base_url, meter, seconds))[0] == 201
            try:
                old_socket = await next_frame(through, "readings", timeout=1)
                break
            except TimeoutError:
                continue
        assert old_socket is not None, server.output()
        await through.close()

        fresh = await subscribed_socket(base_url, token, meter)
        assert (await asyncio.to_thread(post_reading, base_url, meter, 100))[0] == 201
        new_socket = await next_frame(fresh, "readings", timeout=15)
        await fresh.close()
        return before, refused_code, old_socket, new_socket

    before, refused_code, old_socket, new_socket = asyncio.run(scenario())
    assert [r["total_power"] for r in before["readings"]] == [1000.0]
    assert refused_code == 1013
    assert len(old_socket["readings"]) == 1 and old_socket["readings"][0]["total_power"] >= 1002.0
    assert [r["total_power"] for r in new_socket["readings"]] == [1100.0]
    log = full_log(server)
    assert "groups joined again" in log, server.output()
    assert " 500 " not in log and "Exception in ASGI application" not in log, server.output()

"""An idle dashboard socket stays open on the production channel layer (real Redis).

redis-py 8 reads with a 5 s socket timeout by default and channels_redis blocks 5 s in its pop
for a message, so an idle /ws/live/ socket used to be closed after ~5 s and the live relay
logged a traceback every 5 s. Here a subscribed socket stays idle for 30 s (six blocking
receives), then gets the next reading, and the server's log holds no traceback.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
import pytest
import websockets
from django.conf import settings

from tests import factories
from tests.conftest import _token
from tests.e2e.conftest import ServerProcess, _wait_for_http
from tests.e2e.test_live_e2e import http_ingest, next_frame, ts, ws_url
from tests.net import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL: the Redis channel layer is what is tested"),
]

IDLE_SECONDS = 30


@pytest.fixture
def logged_server(transactional_db):
    """uvicorn with INFO logs from Django and uvicorn, so any relay warning shows; yields
    (base URL, the process)."""
    port = free_port()
    server = ServerProcess(
        "uvicorn-idle",
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
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_http(server, f"{base_url}/api/schema/")
        yield base_url, server
    finally:
        server.stop()


def test_an_idle_dashboard_socket_stays_open_and_gets_the_next_reading(logged_server):
    base_url, server = logged_server
    meter = factories.MeterFactory()
    token = _token(meter.organization, ["energy:read"])

    async def scenario() -> dict:
        async with websockets.connect(ws_url(base_url, f"/ws/live/?token={token}")) as live:
            await next_frame(live, "ready")
            await live.send(orjson.dumps({"type": "subscribe", "meters": [meter.pk]}).decode())
            await next_frame(live, "subscribed")
            await asyncio.sleep(IDLE_SECONDS)
            response = await asyncio.to_thread(http_ingest, base_url, meter, {"timestamp": ts(), "total_power": 1234.5})
            assert response.status_code == 201, response.text
            return await next_frame(live, "readings", timeout=10)

    frame = asyncio.run(scenario())
    assert [(r["meter_id"], r["total_power"]) for r in frame["readings"]] == [(meter.pk, 1234.5)]
    server.check_alive()
    log = Path(server.log.name).read_text(errors="replace")
    assert "Traceback" not in log
    assert "TimeoutError" not in log
    assert "live relay" not in log
    assert "WebSocket /ws/live/" in log  # the log is the server's access log: it was written to

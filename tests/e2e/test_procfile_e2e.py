"""docs/deploy.md end to end: the Procfile's processes under honcho (gunicorn, uvicorn, a Celery
worker and beat, the MQTT bridge when Mosquitto runs) on free ports against PostgreSQL and Redis,
behind deploy/nginx.conf when nginx is installed, and the smoke script a newcomer would run:
a token, an ingest, a live frame, a rule's webhook delivery. Then everything is stopped."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import websockets
from django.conf import settings
from django.db import connection

from automations.models import Delivery
from joulepoint.tenancy.services import tenant_create
from tests import factories
from tests.automations.receiver import Receiver
from tests.automations.worker import purge_queue
from tests.e2e.conftest import BASE_DIR, VENV_BIN, subprocess_env
from tests.e2e.test_live_e2e import next_frame, ts
from tests.net import free_port
from tests.test_deploy import NGINX, nginx_main_conf, site_on_ports

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL or connection.vendor != "postgresql",
        reason="the deployment runs on PostgreSQL and Redis: set DATABASE_URL and REDIS_URL",
    ),
]

STARTUP_TIMEOUT = 60.0


def mosquitto_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
        return True
    except OSError:
        return False


class Deployment:
    """`honcho start` in its own process group, logging to a file."""

    def __init__(self, env: dict[str, str], processes: list[str]):
        self.log = tempfile.NamedTemporaryFile(prefix="jp-procfile-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(VENV_BIN / "honcho"), "start", "--no-prefix", *processes],
            cwd=BASE_DIR,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-8000:]

    def wait_for_http(self, url: str) -> None:
        """Until `url` answers at all. Poll a cheap route: a cold /api/schema/ takes seconds, and
        a retry after a client timeout generated it twice at once, which drf-spectacular's lazy
        extension loading does not survive in a threaded worker (an AttributeError, 500)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"honcho exited with {self.process.returncode}:\n{self.output()}")
            try:
                httpx.get(url, timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.3)
        raise RuntimeError(f"nothing answered {url} within {STARTUP_TIMEOUT}s:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # honcho stops its processes in turn
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


@pytest.fixture
def deployment(tmp_path) -> Iterator[dict]:
    """The Procfile's processes (and nginx in front when installed); yields the public base URL
    and the deployment."""
    purge_queue(settings.CELERY_BROKER_URL)
    http_port, ws_port = free_port(), free_port()
    env = subprocess_env()
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        PRODUCTION="1",
        # Plain HTTP on 127.0.0.1: no TLS proxy in front to redirect to (docs/deploy.md, "Hardening").
        SECURE_SSL_REDIRECT="0",
        SECRET_KEY=uuid.uuid4().hex * 2,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        HTTP_PORT=str(http_port),
        WS_PORT=str(ws_port),
        WEB_WORKERS="1",
        WEB_THREADS="4",
        WS_WORKERS="1",
        CELERY_CONCURRENCY="1",
        CELERY_BEAT_SCHEDULE_FILE=str(tmp_path / "celerybeat-schedule"),
        AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE="1",
        MQTT_URL="mqtt://127.0.0.1:1883",
        MQTT_SHARE=f"jp-test-{uuid.uuid4().hex[:8]}",
        MQTT_CLIENT_ID=f"jp-test-{uuid.uuid4().hex[:8]}",
        DB_CONN_MAX_AGE="0",
    )
    processes = ["web", "ws", "worker", "beat", *(["mqtt"] if mosquitto_up() else [])]
    deployed = Deployment(env, processes)
    nginx = None
    try:
        deployed.wait_for_http(f"http://127.0.0.1:{http_port}/api/energy/meters/")
        deployed.wait_for_http(f"http://127.0.0.1:{ws_port}/api/energy/meters/")
        base_url = f"http://127.0.0.1:{http_port}"
        ws_base = f"ws://127.0.0.1:{ws_port}"
        if Path(NGINX).exists():
            listen = free_port()
            conf = nginx_main_conf(tmp_path, site_on_ports(listen=listen, http=http_port, ws=ws_port))
            nginx = subprocess.Popen(
                [NGINX, "-c", str(conf), "-p", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            base_url, ws_base = f"http://127.0.0.1:{listen}", f"ws://127.0.0.1:{listen}"
            deployed.wait_for_http(f"{base_url}/api/energy/meters/")
        yield {"url": base_url, "ws": ws_base, "deployment": deployed, "processes": processes}
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=10)
        deployed.stop()
        purge_queue(settings.CELERY_BROKER_URL)


def test_the_procfile_deployment_passes_the_smoke_script(deployment):
    url, ws_base = deployment["url"], deployment["ws"]
    tenant = tenant_create(name=f"Smoke {uuid.uuid4().hex[:6]}")  # what `manage.py create_tenant` does
    org, credential = tenant.organization, tenant.credential
    meter = factories.MeterFactory(site=factories.SiteFactory(organization=org))
    with Receiver() as receiver:
        action = factories.ActionFactory(
            organization=org,
            config={
                "url": receiver.url,
                "method": "POST",
                "headers": {},
                "secret": "whsec_" + "A" * 32,
                "timeout_seconds": 2,
            },
        )
        factories.RuleFactory(organization=org, actions=[action])  # total_power > 5000 W

        # 1. A token, as the README asks for one.
        basic = base64.b64encode(f"{credential.application.client_id}:{credential.client_secret}".encode()).decode()
        answer = httpx.post(
            f"{url}/o/token/", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
        )
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        assert httpx.get(f"{url}/api/energy/meters/", headers={"Authorization": f"Bearer {token}"}).json()["count"] == 1

        async def ingest_and_watch() -> tuple[int, dict]:
            async with websockets.connect(f"{ws_base}/ws/live/?token={token}") as live:
                await next_frame(live, "ready")
                await live.send(orjson.dumps({"type": "subscribe", "meters": [meter.pk]}).decode())
                await next_frame(live, "subscribed")
                # 2. An ingest, by the device key.
                response = await asyncio.to_thread(
                    httpx.post,
                    f"{url}/api/energy/energy-data/",
                    content=orjson.dumps({"timestamp": ts(), "total_power": 6400.0}),
                    headers={"X-Device-Key": str(meter.device_key), "Content-Type": "application/json"},
                )
                # 3. The live frame.
                return response.status_code, await next_frame(live, "readings", timeout=15)

        code, frame = asyncio.run(ingest_and_watch())
        assert code == 201
        assert [(r["meter_id"], r["total_power"]) for r in frame["readings"]] == [(meter.pk, 6400.0)]

        # 4. The rule's webhook, delivered by the Celery worker.
        deadline = time.monotonic() + 180  # a loaded 2-core CI machine runs every process of the deployment at once
        while not Delivery.objects.filter(status="succeeded").exists():
            assert time.monotonic() < deadline, f"no delivery; processes:\n{deployment['deployment'].output()}"
            time.sleep(0.3)
        assert len(receiver.requests) == 1
        assert orjson.loads(receiver.requests[0]["body"])["data"]["event"]["total_power"] == 6400.0
    log = deployment["deployment"].output()
    assert "Traceback" not in log, log

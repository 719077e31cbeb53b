"""Live streams end to end on real processes: uvicorn (tests/e2e/conftest.py), the MQTT bridge
as a subprocess against Mosquitto on 127.0.0.1:1883, and Debian's chromium driven by Playwright.

(a) HTTP ingest → a /ws/live/ client receives the reading (and WS ingest → the same client);
(b) MQTT publish → reading stored → ack published by `manage.py mqtt_bridge`;
(c) a browser logs into /dashboard/, a reading is ingested over HTTP, chart and feed update;
    the screenshot is saved as $ARTIFACTS/dashboard.png (default ./artifacts/dashboard.png).
"""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import socket
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
import websockets

from energy.models import Reading
from tests import factories
from tests.conftest import _token
from tests.e2e.conftest import CHROMIUM, ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def ts(seconds: float = 0) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=30) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ws_url(live_url: str, path: str) -> str:
    return live_url.replace("http://", "ws://") + path


def http_ingest(live_url: str, meter, body: dict) -> httpx.Response:
    return httpx.post(
        f"{live_url}/api/energy/energy-data/",
        content=orjson.dumps(body),
        headers={"X-Device-Key": str(meter.device_key), "Content-Type": "application/json"},
        timeout=10,
    )


async def next_frame(ws, kind: str, timeout: float = 5) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), timeout=max(0.01, deadline - time.monotonic())))
        if frame["type"] == kind:
            return frame


def test_a_http_ingest_reaches_a_live_websocket_client(live_url):
    meter = factories.MeterFactory()
    foreign = factories.MeterFactory()
    token = _token(meter.organization, ["energy:read"])

    async def scenario() -> tuple[dict, float, dict]:
        async with websockets.connect(ws_url(live_url, f"/ws/live/?token={token}")) as live:
            await next_frame(live, "ready")
            await live.send(orjson.dumps({"type": "subscribe", "sites": [meter.site_id]}).decode())
            await next_frame(live, "subscribed")
            # Another tenant's reading on the same server must not show up.
            assert (
                await asyncio.to_thread(http_ingest, live_url, foreign, {"timestamp": ts(), "total_power": 1})
            ).status_code == 201
            started = time.monotonic()
            response = await asyncio.to_thread(
                http_ingest, live_url, meter, {"timestamp": ts(), "total_power": 3600.0, "voltage_a": 230.1}
            )
            assert response.status_code == 201, response.text
            frame = await next_frame(live, "readings")
            latency = time.monotonic() - started
            # A WebSocket ingest on the same server reaches the same dashboard.
            headers = {"X-Device-Key": str(meter.device_key)}
            async with websockets.connect(ws_url(live_url, "/ws/ingest/"), additional_headers=headers) as device:
                await next_frame(device, "ready")
                await device.send(orjson.dumps({"id": 1, "readings": [{"timestamp": ts(1), "total_power": 42.0}]}))
                ack = await next_frame(device, "ack")
                assert ack == {"type": "ack", "id": 1, "stored": 1, "duplicates": 0}
            second = await next_frame(live, "readings")
            return frame, latency, second

    frame, latency, second = asyncio.run(scenario())
    assert frame["site_id"] == meter.site_id
    assert [(r["meter_id"], r["total_power"], r["voltage_a"]) for r in frame["readings"]] == [(meter.pk, 3600.0, 230.1)]
    assert latency < 5
    assert second["readings"][0]["total_power"] == 42.0
    assert Reading.objects.filter(meter=meter).count() == 2


def _broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _broker_up(), reason="Mosquitto is not running on 127.0.0.1:1883")
def test_b_mqtt_publish_is_stored_and_acked_by_the_bridge_process(transactional_db, monkeypatch):
    prefix = f"jpe2e-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MQTT_TOPIC_PREFIX", prefix)
    meter = factories.MeterFactory()
    bridge = ServerProcess(
        "mqtt-bridge",
        [sys.executable, "manage.py", "mqtt_bridge", "--url", "mqtt://127.0.0.1:1883", "--client-id", prefix],
    )
    answers: queue.Queue = queue.Queue()
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-device")
    device.on_message = lambda client, userdata, message: answers.put(orjson.loads(message.payload))
    try:
        deadline = time.monotonic() + 30
        while "MQTT bridge:" not in bridge.output():
            bridge.check_alive()
            assert time.monotonic() < deadline, bridge.output()
            time.sleep(0.1)
        device.connect("127.0.0.1", 1883)
        device.subscribe(f"{prefix}/meter-{meter.pk}/ack", qos=1)
        device.loop_start()
        # The bridge may still be subscribing: publish until the first answer arrives.
        body = {"id": "m1", "readings": {"timestamp": ts(), "total_power": 1500.0}}
        answer = None
        while answer is None:
            assert time.monotonic() < deadline, bridge.output()
            device.publish(f"{prefix}/meter-{meter.pk}/readings", orjson.dumps(body), qos=1).wait_for_publish(5)
            try:
                answer = answers.get(timeout=1)
            except queue.Empty:
                bridge.check_alive()
        assert answer["type"] == "ack" and answer["id"] == "m1" and answer["stored"] + answer["duplicates"] >= 1
        assert Reading.objects.filter(meter=meter, total_power=1500.0).count() == 1
        device.publish(f"{prefix}/meter-{meter.pk}/readings", b"{oops", qos=1).wait_for_publish(5)
        while (answer := answers.get(timeout=10)).get("id") == "m1":
            pass  # repeats of the first publish
        assert answer["code"] == "malformed_json"
        bridge.check_alive()
    finally:
        device.loop_stop()
        device.disconnect()
        bridge.stop()


def test_c_dashboard_in_chromium_updates_chart_and_feed(live_url, chromium):
    from playwright.sync_api import expect

    from automations.models import Alert
    from energy.power_quality.models import PQEvent

    membership = factories.MembershipFactory()
    org = membership.organization
    site = factories.SiteFactory(organization=org, name="E2E Depot", timezone="Europe/Berlin")
    meter = factories.MeterFactory(site=site, name="Grid connection", kind="grid")
    factories.MeterFactory(site=site, name="Rooftop PV", kind="pv")
    factories.MeterFactory(site=site, name="Charger", kind="ev_charger")
    # Two readings with the import register: 0.5 kWh from the grid today.
    for seconds, register in ((-25, 100.0), (-20, 100.5)):
        body = {"timestamp": ts(seconds), "total_power": 1000.0, "total_energy": register}
        assert http_ingest(live_url, meter, body).status_code == 201
    factories.AnnotationFactory(meter=meter, ts=datetime.now(UTC) - timedelta(seconds=10), text="breaker inspected")
    sag_at = datetime.now(UTC) - timedelta(minutes=3)
    PQEvent.objects.create(
        organization=org, meter=meter, kind="sag", start=sag_at, last_violation_at=sag_at, worst_value=0.78,
        threshold=0.9, unit="pu",
    )  # fmt: skip
    alert = Alert.objects.create(
        organization=org, site=site, severity="critical", message="Breaker tripped on the charger", event_id="e2e"
    )
    artifacts = Path(os.environ.get("ARTIFACTS", "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)

    browser = chromium()
    # A German browser in New York: dates in German, times in the site's zone (Berlin).
    context = browser.new_context(
        viewport={"width": 1366, "height": 900}, locale="de-DE", timezone_id="America/New_York"
    )
    page = context.new_page()
    page.goto(f"{live_url}/dashboard/")
    page.fill("#id_username", membership.user.username)
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.wait_for_url(f"**/dashboard/sites/{site.pk}")
    expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=10_000)
    chart = page.locator(f".chart[data-meter='{meter.pk}']")
    expect(chart).to_have_attribute("data-points", "2")
    # Units and human labels on the charts.
    expect(chart.locator("h3")).to_contain_text("Grid connection · ")
    expect(chart.locator("h3")).to_contain_text("power in kW")
    expect(chart.locator(".now")).to_have_text("1,00 kW")  # German decimal comma
    expect(page.locator(".chart[data-kind='ev_charger'] h3 small")).to_contain_text("EV charger")
    expect(page.locator(".chart[data-kind='pv'] h3 small")).to_contain_text("PV inverter")
    # The annotation from the snapshot: a marker on the meter's chart and a feed line.
    expect(chart).to_have_attribute("data-annotations", "1")
    expect(page.locator("#feed")).to_contain_text("Grid connection · note: breaker inspected")
    # The feed shows events, in the site's zone: the sag at Berlin time.
    sag_local = sag_at.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M:%S")
    expect(page.locator("#feed li.pq")).to_contain_text("Grid connection: Voltage sag (0,78 pu)")
    expect(page.locator("#feed li.pq time")).to_have_text(sag_local)
    # Energy tiles with numbers from the KPI computation.
    expect(page.locator("#kpi-today")).to_have_text("0,5 kWh")
    expect(page.locator("#kpi-month")).to_have_text("0,5 kWh")

    response = http_ingest(live_url, meter, {"timestamp": ts(), "total_power": 3600.0, "voltage_a": 230.1})
    assert response.status_code == 201
    expect(chart).to_have_attribute("data-points", "3", timeout=5_000)
    expect(page.locator("#kpi-power")).to_have_text("3,60 kW")
    expect(page.locator("#kpi-count")).to_have_text("1")
    # Readings stay in the charts: the feed has the annotation and the sag, nothing else.
    expect(page.locator("#feed li")).to_have_count(2)
    last_local = datetime.fromisoformat(ts().replace("Z", "+00:00")).astimezone(ZoneInfo("Europe/Berlin"))
    expect(page.locator("#kpi-last")).to_contain_text(last_local.strftime("%H:"))

    # The open alert, acknowledged from the dashboard.
    row = page.locator(f"#alerts li[data-alert='{alert.pk}']")
    expect(row).to_contain_text("Breaker tripped on the charger")
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    row.get_by_role("button", name="Acknowledge").click()
    expect(row).to_have_class("critical acknowledged")
    alert.refresh_from_db()
    assert alert.status == "acknowledged" and alert.acknowledged_by == f"user:{membership.user.username}"
    assert (artifacts / "dashboard.png").stat().st_size > 10_000
    assert shutil.which("chromium") or Path(CHROMIUM).exists()


def test_outbox_events_reach_a_dashboard_through_the_celery_worker(live_url, celery_worker):
    """pq.event is a must-not-lose event: outbox row → real Celery worker → Redis channel layer →
    the uvicorn process's relay → the dashboard socket. Needs REDIS_URL (skips otherwise)."""
    from django.db import transaction

    from energy.events import PQ_EVENT
    from joulepoint.events import publish

    meter = factories.MeterFactory()
    token = _token(meter.organization, ["energy:read"])

    async def scenario() -> dict:
        async with websockets.connect(ws_url(live_url, f"/ws/live/?token={token}")) as live:
            await next_frame(live, "ready")
            await live.send(orjson.dumps({"type": "subscribe", "meters": [meter.pk]}).decode())
            await next_frame(live, "subscribed")

            def announce() -> None:
                with transaction.atomic():
                    payload = {"site_id": meter.site_id, "meter_id": meter.pk, "kind": "sag", "voltage": 190.0}
                    publish(meter.organization, PQ_EVENT, payload, source="e2e")

            await asyncio.to_thread(announce)
            return await next_frame(live, "event", timeout=20)

    frame = asyncio.run(scenario())
    assert frame["key"] == PQ_EVENT
    assert frame["payload"] == {"site_id": meter.site_id, "meter_id": meter.pk, "kind": "sag", "voltage": 190.0}

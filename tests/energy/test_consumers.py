"""WebSocket ingest (/ws/ingest/) and live dashboards (/ws/live/) through the real ASGI app."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from energy.downlink import services as downlink
from energy.events import PQ_EVENT
from energy.ingest import store
from energy.live.fanout import live_event_fan_out
from energy.models import DeviceCommand, Reading
from joulepoint.asgi import application
from joulepoint.events.types import Event
from tests import factories
from tests.conftest import _token

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


# Fixed once per module: a test that sends ts() twice must get the same timestamp twice.
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


def ts(seconds: int = 0) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def open_ingest(device=None, *, key: str | None = None) -> WebsocketCommunicator:
    headers = []
    if device is not None or key is not None:
        headers.append((b"x-device-key", (key or str(device.device_key)).encode()))
    communicator = WebsocketCommunicator(application, "/ws/ingest/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def recv(communicator, timeout: float = 5) -> dict:
    return orjson.loads(await communicator.receive_from(timeout=timeout))


async def send(communicator, data) -> None:
    await communicator.send_to(text_data=orjson.dumps(data).decode())


async def expect_close(communicator, code: int, timeout: float = 3) -> None:
    while True:
        output = await communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            assert output["code"] == code
            return


@pytest.fixture
def make_meter():
    return database_sync_to_async(factories.MeterFactory)


# --- ingest ------------------------------------------------------------------------------------


async def test_ingest_with_header_stores_and_acks_then_duplicates(make_meter):
    meter = await make_meter()
    ws = await open_ingest(meter)
    ready = await recv(ws)
    assert ready == {"type": "ready", "device": {"kind": "meter", "id": meter.pk, "site_id": meter.site_id}}
    await send(ws, {"timestamp": ts(), "total_power": 3600.0, "voltage_a": 230.1})
    assert await recv(ws) == {"type": "ack", "id": None, "stored": 1, "duplicates": 0}
    # (A reading needs a measurement: a bare timestamp is invalid, not a duplicate.)
    await send(
        ws, {"id": "b2", "readings": [{"timestamp": ts(), "total_power": 1}, {"timestamp": ts(1), "total_power": 2}]}
    )
    assert await recv(ws) == {"type": "ack", "id": "b2", "stored": 1, "duplicates": 1}
    count = await database_sync_to_async(Reading.objects.filter(meter=meter).count)()
    assert count == 2
    await ws.disconnect()


async def test_bad_frames_answer_errors_and_keep_the_connection(make_meter, settings):
    settings.WS_MAX_FRAME_BYTES = 200
    meter = await make_meter()
    ws = await open_ingest(meter)
    await recv(ws)
    await ws.send_to(text_data="{not json")
    assert (await recv(ws))["code"] == "malformed_json"
    await ws.send_to(text_data="[" + ",".join(["{}"] * 100) + "]")
    assert (await recv(ws))["code"] == "frame_too_large"
    await send(ws, {"id": 7, "readings": [{"timestamp": "yesterday", "total_power": "lots"}]})
    error = await recv(ws)
    assert error["code"] == "invalid_readings" and error["id"] == 7
    assert {e["field"] for e in error["errors"]} == {"timestamp", "total_power"}
    await send(ws, [])
    assert (await recv(ws))["code"] == "empty_batch"
    await send(ws, 42)
    assert (await recv(ws))["code"] == "bad_frame"
    await send(ws, {"type": "reboot"})
    assert (await recv(ws))["code"] == "unknown_type"
    await ws.send_to(bytes_data=orjson.dumps({"timestamp": ts(), "total_power": 5.0}))
    assert (await recv(ws))["stored"] == 1
    assert await database_sync_to_async(Reading.objects.count)() == 1
    await ws.disconnect()


async def test_flood_gets_rate_limited_then_closed(make_meter, settings):
    settings.WS_INGEST_FRAMES_PER_SECOND = 1
    settings.WS_INGEST_BURST = 2
    meter = await make_meter()
    ws = await open_ingest(meter)
    await recv(ws)
    for _ in range(10):
        await send(ws, {"type": "ping"})
    frames = []
    while True:
        output = await ws.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            assert output["code"] == 4429
            break
        frames.append(orjson.loads(output["text"]))
    assert [f["type"] for f in frames[:2]] == ["pong", "pong"]
    assert frames[2]["code"] == "rate_limited"
    # Whatever the client still sends after the close is ignored.
    await send(ws, {"timestamp": ts(), "total_power": 1.0})
    await ws.receive_nothing(timeout=0.2)
    assert await database_sync_to_async(Reading.objects.count)() == 0


async def test_flood_let_through_now_and_then_is_still_closed(make_meter, settings):
    """A flood the refill lets a frame through between refusals (here every other frame) is
    closed once more than WS_INGEST_BURST frames were refused within the flood window: the
    count does not start again at each frame let through."""
    settings.WS_INGEST_FRAMES_PER_SECOND = 10
    settings.WS_INGEST_BURST = 3
    settings.WS_INGEST_FLOOD_WINDOW_SECONDS = 60
    meter = await make_meter()
    ws = await open_ingest(meter)
    await recv(ws)
    for _ in range(3):  # the bucket's burst
        await send(ws, {"type": "ping"})
        assert (await recv(ws))["type"] == "pong"
    answers = []
    for _ in range(40):
        await send(ws, {"type": "ping"})
        output = await ws.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            assert output["code"] == 4429
            break
        answers.append(orjson.loads(output["text"]))
        await asyncio.sleep(0.06)  # refills ~0.6 frame: about every other frame passes
    else:
        pytest.fail(f"never closed with 4429: {answers}")
    refused = [a for a in answers if a.get("code") == "rate_limited"]
    assert len(refused) == settings.WS_INGEST_BURST
    assert any(a["type"] == "pong" for a in answers), "the refill let frames through between refusals"


async def test_a_refusal_now_and_then_is_not_closed(make_meter, settings):
    """Slightly over the rate (refusals spread wider than the window) keeps the socket open."""
    settings.WS_INGEST_FRAMES_PER_SECOND = 10
    settings.WS_INGEST_BURST = 1
    settings.WS_INGEST_FLOOD_WINDOW_SECONDS = 1
    meter = await make_meter()
    ws = await open_ingest(meter)
    await recv(ws)
    refused = 0
    for _ in range(3):
        for _ in range(2):  # the burst, then one refused
            await send(ws, {"type": "ping"})
            answer = await recv(ws)
            refused += answer.get("code") == "rate_limited"
        await asyncio.sleep(1.2)  # longer than the window
    assert refused >= 3
    await send(ws, {"type": "ping"})
    assert (await recv(ws))["type"] == "pong"
    await ws.disconnect()


@pytest.mark.parametrize("key", ["not-a-uuid", "9f1c2a3e-0000-4000-8000-000000000000"])
async def test_bad_device_key_closes_4401(key):
    ws = await open_ingest(key=key)
    assert (await recv(ws))["code"] == "unauthenticated"
    await expect_close(ws, 4401)


async def test_disabled_meter_key_closes_4401(make_meter):
    meter = await make_meter(is_active=False)
    ws = await open_ingest(meter)
    await recv(ws)
    await expect_close(ws, 4401)


async def test_auth_message_for_browsers(make_meter):
    meter = await make_meter()
    ws = await open_ingest()
    await send(ws, {"type": "auth", "device_key": str(meter.device_key)})
    assert (await recv(ws))["type"] == "ready"
    await send(ws, {"timestamp": ts(), "total_power": 1.0})
    assert (await recv(ws))["stored"] == 1
    await ws.disconnect()


async def test_first_message_must_be_auth():
    ws = await open_ingest()
    await send(ws, {"timestamp": ts(), "total_power": 1.0})
    await recv(ws)
    await expect_close(ws, 4400)


async def test_auth_timeout(settings):
    settings.WS_AUTH_TIMEOUT_SECONDS = 0
    ws = await open_ingest()
    assert (await recv(ws))["code"] == "auth_timeout"
    await expect_close(ws, 4401)


async def test_gateway_cannot_post_for_another_tenants_meter():
    gateway = await database_sync_to_async(factories.GatewayFactory)()
    foreign = await database_sync_to_async(factories.MeterFactory)()
    ws = await open_ingest(gateway)
    await recv(ws)
    await send(ws, {"timestamp": ts(), "meter_id": foreign.pk, "total_power": 1.0})
    error = await recv(ws)
    assert error["code"] == "invalid_readings"
    assert error["errors"][0]["field"] == "meter_id"
    assert await database_sync_to_async(Reading.objects.count)() == 0
    await ws.disconnect()


def signed(meter, body: str, secret: str | None = None) -> dict:
    secret = secret or meter.device_secret
    return {"id": "s", "body": body, "signature": hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()}


async def test_signed_frames(make_meter):
    meter = await make_meter(require_signature=True)
    ws = await open_ingest(meter)
    await recv(ws)
    body = orjson.dumps({"timestamp": ts(), "total_power": 2.0}).decode()
    await send(ws, signed(meter, body))
    assert await recv(ws) == {"type": "ack", "id": "s", "stored": 1, "duplicates": 0}
    await send(ws, signed(meter, body, secret="wrong"))
    assert (await recv(ws))["code"] == "bad_signature"
    await send(ws, {"timestamp": ts(5), "total_power": 2.0})
    assert (await recv(ws))["code"] == "signature_required"
    await ws.disconnect()


@pytest.fixture
def deliver_inline(monkeypatch):
    """Run the delivery task in-process whatever the Celery mode (no worker in unit tests)."""
    from energy.downlink import tasks

    monkeypatch.setattr(
        tasks.device_command_deliver, "delay", lambda command_id: downlink.device_command_deliver(command_id=command_id)
    )


async def test_downlink_over_open_socket(make_meter, deliver_inline):
    meter = await make_meter()
    ws = await open_ingest(meter)
    await recv(ws)
    command = await database_sync_to_async(downlink.device_command_send)(
        device=meter, name="relay.open", payload={"relay": 1}
    )
    frame = await recv(ws)
    assert frame["type"] == "command" and frame["id"] == command.pk and frame["payload"] == {"relay": 1}
    await ws.receive_nothing(timeout=0.2)
    refreshed = await database_sync_to_async(DeviceCommand.objects.get)(pk=command.pk)
    assert (refreshed.status, refreshed.channel) == ("delivered", "ws")
    await send(ws, {"type": "command_ack", "id": command.pk, "status": "acked", "result": {"relay": "open"}})
    assert await recv(ws) == {"type": "command_status", "id": command.pk, "status": "acked"}
    other = await make_meter()
    foreign = await database_sync_to_async(downlink.device_command_send)(device=other, name="relay.open")
    await send(ws, {"type": "command_ack", "id": foreign.pk, "status": "acked"})
    assert (await recv(ws))["code"] == "not_found"
    await ws.disconnect()


# --- live dashboards ---------------------------------------------------------------------------


async def open_live(query: str = "", headers=None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, f"/ws/live/{query}", headers=headers or [])
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def dashboard_watching(org, site) -> WebsocketCommunicator:
    """A dashboard socket (OAuth2 token, energy:read) subscribed to the site, past its answers."""
    token = await database_sync_to_async(_token)(org, ["energy:read"])
    ws = await open_live(f"?token={token}")
    await recv(ws)
    await send(ws, {"type": "subscribe", "sites": [site.pk]})
    await recv(ws)
    return ws


@database_sync_to_async
def tenant_with_meters():
    org = factories.OrganizationFactory()
    site = factories.SiteFactory(organization=org)
    meters = [factories.MeterFactory(site=site) for _ in range(2)]
    return org, site, meters


@database_sync_to_async
def ingest(meter, seconds: int = 0, power: float = 100.0):
    return store.reading_batch_ingest(
        device=meter, items=[{"timestamp": ts(seconds), "total_power": power}], source="test"
    )


async def test_dashboard_without_auth_is_closed_4401():
    ws = await open_live()
    await send(ws, {"type": "subscribe", "sites": [1]})
    assert (await recv(ws))["code"] == "unauthenticated"
    await expect_close(ws, 4401)


async def test_dashboard_bad_token_4401_and_missing_scope_4403():
    org, _, _ = await tenant_with_meters()
    ws = await open_live("?token=nope")
    await recv(ws)
    await expect_close(ws, 4401)
    token = await database_sync_to_async(_token)(org, ["billing:read"])
    ws = await open_live(f"?token={token}")
    assert (await recv(ws))["code"] == "insufficient_scope"
    await expect_close(ws, 4403)


async def test_dashboard_token_subscribes_to_a_meter_and_receives_only_it():
    org, site, (watched, other) = await tenant_with_meters()
    token = await database_sync_to_async(_token)(org, ["energy:read"])
    ws = await open_live(f"?token={token}")
    assert (await recv(ws)) == {"type": "ready", "organizations": [org.pk]}
    await send(ws, {"type": "subscribe", "meters": [watched.pk]})
    assert await recv(ws) == {"type": "subscribed", "sites": [], "meters": [watched.pk]}
    await ingest(other)
    await ingest(watched, power=4200.0)
    frame = await recv(ws)
    assert frame["type"] == "readings" and frame["site_id"] == site.pk
    assert [(r["meter_id"], r["total_power"]) for r in frame["readings"]] == [(watched.pk, 4200.0)]
    assert "device_key" not in frame
    await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()


async def test_dashboard_auth_message_and_group_subscription():
    org, _site, meters = await tenant_with_meters()
    group = await database_sync_to_async(factories.MeterGroupFactory)(organization=org, meters=meters[:1])
    token = await database_sync_to_async(_token)(org, ["energy:read"])
    ws = await open_live()
    await send(ws, {"type": "auth", "token": token})
    assert (await recv(ws))["type"] == "ready"
    await send(ws, {"type": "subscribe", "groups": [group.pk]})
    assert (await recv(ws))["meters"] == [meters[0].pk]
    await ingest(meters[0])
    assert (await recv(ws))["readings"][0]["meter_id"] == meters[0].pk
    await ws.disconnect()


async def test_dashboard_cannot_subscribe_to_another_tenant():
    org, _, _ = await tenant_with_meters()
    other_org, other_site, other_meters = await tenant_with_meters()
    other_group = await database_sync_to_async(factories.MeterGroupFactory)(organization=other_org, meters=other_meters)
    token = await database_sync_to_async(_token)(org, ["energy:read"])
    ws = await open_live(f"?token={token}")
    await recv(ws)
    for request, name, ids in (
        ({"meters": [other_meters[0].pk]}, "meters", [other_meters[0].pk]),
        ({"sites": [other_site.pk]}, "sites", [other_site.pk]),
        ({"groups": [other_group.pk]}, "groups", [other_group.pk]),
    ):
        await send(ws, {"type": "subscribe", **request})
        error = await recv(ws)
        assert error["code"] == "not_found" and error[name] == ids
    await send(ws, {"type": "subscribe", "meters": "all"})
    assert (await recv(ws))["code"] == "bad_subscription"
    await ingest(other_meters[0])
    await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def login_cookie(user) -> bytes:
    def make():
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    return f"sessionid={await database_sync_to_async(make)()}".encode()


async def test_dashboard_session_site_subscription_and_events():
    org, site, meters = await tenant_with_meters()
    membership = await database_sync_to_async(factories.MembershipFactory)(organization=org)
    cookie = await login_cookie(membership.user)
    headers = [(b"cookie", cookie), (b"origin", b"http://testserver"), (b"host", b"testserver")]
    ws = await open_live(headers=headers)
    assert (await recv(ws))["type"] == "ready"
    await send(ws, {"type": "subscribe", "sites": [site.pk]})
    assert (await recv(ws))["sites"] == [site.pk]
    await ingest(meters[0], power=1.0)
    await ingest(meters[1], power=2.0)
    powers = [(await recv(ws))["readings"][0]["total_power"] for _ in range(2)]
    assert powers == [1.0, 2.0]
    event = Event(
        organization_id=org.pk,
        key=PQ_EVENT,
        payload={"site_id": site.pk, "meter_id": meters[0].pk, "kind": "sag", "device_key": "x"},
        source="test",
        occurred_at=datetime.now(UTC),
    )
    await database_sync_to_async(live_event_fan_out)(event)
    frame = await recv(ws)
    assert frame["type"] == "event" and frame["key"] == PQ_EVENT and frame["payload"]["kind"] == "sag"
    assert "device_key" not in frame["payload"]
    await ws.disconnect()


async def test_a_new_annotation_reaches_the_dashboards_of_its_site():
    from automations.annotations import ANNOTATION_CREATED, annotation_announce

    org, site, meters = await tenant_with_meters()
    ws = await dashboard_watching(org, site)
    note = await database_sync_to_async(factories.AnnotationFactory)(meter=meters[0], text="HighPower fired")
    await database_sync_to_async(annotation_announce)(annotation=note)
    frame = await recv(ws)
    assert frame["type"] == "event" and frame["key"] == ANNOTATION_CREATED
    assert frame["payload"]["id"] == note.pk and frame["payload"]["text"] == "HighPower fired"
    assert frame["payload"]["meter_id"] == meters[0].pk and frame["payload"]["site_id"] == site.pk
    # another tenant's annotation does not reach this dashboard
    _, _, foreign_meters = await tenant_with_meters()
    foreign = await database_sync_to_async(factories.AnnotationFactory)(meter=foreign_meters[0])
    await database_sync_to_async(annotation_announce)(annotation=foreign)
    await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_dashboard_session_from_foreign_origin_is_refused():
    org, _, _ = await tenant_with_meters()
    membership = await database_sync_to_async(factories.MembershipFactory)(organization=org)
    cookie = await login_cookie(membership.user)
    headers = [(b"cookie", cookie), (b"origin", b"https://evil.example"), (b"host", b"testserver")]
    ws = await open_live(headers=headers)
    assert (await recv(ws))["code"] == "forbidden"
    await expect_close(ws, 4403)


async def test_other_tenant_events_do_not_reach_a_dashboard():
    org, site, _meters = await tenant_with_meters()
    other_org, other_site, _ = await tenant_with_meters()
    ws = await dashboard_watching(org, site)
    for org_id, site_id in ((other_org.pk, other_site.pk), (other_org.pk, None)):
        payload = {"site_id": site_id} if site_id else {}
        event = Event(organization_id=org_id, key=PQ_EVENT, payload=payload, source="t", occurred_at=datetime.now(UTC))
        await database_sync_to_async(live_event_fan_out)(event)
    await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_a_dashboard_that_falls_behind_is_closed_4503():
    from energy.live import fanout, relay

    org, site, _ = await tenant_with_meters()
    ws = await dashboard_watching(org, site)
    [consumer] = relay.relay().members[fanout.site_group(org.pk, site.pk)]
    frame = orjson.dumps({"type": "readings", "site_id": site.pk, "readings": []}).decode()
    # The relay hands over faster than this socket is written: more than the queue holds at once.
    for _ in range(relay.LOCAL_QUEUE_SIZE + 5):
        consumer.relay_deliver({"type": "live.readings", "site_id": site.pk, "meter_ids": [], "frame": frame})
    frames = []
    while True:
        output = await ws.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            assert output["code"] == 4503
            break
        frames.append(orjson.loads(output["text"]))
    # The backlog is dropped, not flushed: the socket is told why and closed at once.
    assert frames[-1]["code"] == "too_slow"
    assert len(frames) <= relay.LOCAL_QUEUE_SIZE + 1

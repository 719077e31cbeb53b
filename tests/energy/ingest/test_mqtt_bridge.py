"""The MQTT bridge: batch ingest logic, then the real thing against Mosquitto on 127.0.0.1:1883
(and a private Mosquitto for the broker-restart test)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import queue
import shutil
import socket
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as mqtt
import pytest

from energy.events import DATA_INGESTED
from energy.ingest.mqtt_bridge import Incoming, MqttBridge, messages_ingest
from energy.models import Reading
from joulepoint.events.services import subscribe, unsubscribe
from tests import factories
from tests.net import free_port

BROKER = ("127.0.0.1", 1883)


# Fixed once per module: a test that sends ts() twice must get the same timestamp twice.
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def ts(seconds: int = 0) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def msg(device, payload, prefix: str = "joulepoint", mid: int = 1) -> Incoming:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Incoming(topic=f"{prefix}/{device._meta.model_name}-{device.pk}/readings", payload=raw, mid=mid)


@pytest.mark.django_db
def test_messages_ingest_batches_per_device_and_isolates_bad_messages(meter):
    second = factories.MeterFactory(site=meter.site)
    messages = [
        msg(meter, {"timestamp": ts(0), "total_power": 1.0}),
        msg(meter, {"id": "bad", "readings": [{"timestamp": ts(1), "total_power": "x"}]}),
        msg(second, [{"timestamp": ts(0), "total_power": 2.0}, {"timestamp": ts(1), "total_power": 3.0}]),
        msg(meter, {"id": "dup", "readings": {"timestamp": ts(0), "total_power": 9.0}}),
        msg(meter, b"not json"),
        Incoming(topic="joulepoint/meter-999999/readings", payload=b"{}"),
        Incoming(topic="joulepoint/not-a-device/readings", payload=b"{}"),
        # A key is no longer a topic (unless MQTT_LEGACY_KEY_TOPICS is on).
        Incoming(topic=f"joulepoint/{meter.device_key}/readings", payload=b"{}"),
    ]
    answers = [a.frame for a in messages_ingest(messages)]
    assert answers[0] == {"type": "ack", "id": None, "stored": 1, "duplicates": 0}
    assert answers[1]["code"] == "invalid_readings" and answers[1]["errors"][0]["index"] == 0
    assert answers[1]["errors"][0]["field"] == "total_power"
    assert answers[2] == {"type": "ack", "id": None, "stored": 2, "duplicates": 0}
    assert answers[3] == {"type": "ack", "id": "dup", "stored": 0, "duplicates": 1}
    assert answers[4]["code"] == "malformed_json"
    assert answers[5]["code"] == answers[6]["code"] == answers[7]["code"] == "unauthenticated"
    assert Reading.objects.count() == 3
    assert Reading.objects.get(meter=meter).total_power == 1.0  # first write wins


@pytest.mark.django_db
def test_messages_ingest_refuses_duplicate_keys_and_readings_without_measurement(meter):
    duplicate = f'{{"timestamp": "{ts(40)}", "total_power": 1.0, "total_power": 2.0}}'.encode()
    signed_body = duplicate.decode()
    signature = hmac.new(meter.device_secret.encode(), duplicate, hashlib.sha256).hexdigest()
    answers = messages_ingest(
        [
            msg(meter, duplicate),
            msg(meter, {"id": "e", "body": signed_body, "signature": signature}),
            msg(meter, {"id": "n", "readings": [{"timestamp": ts(41), "total_power": None}]}),
        ]
    )
    assert answers[0].frame["code"] == "duplicate_key" and "'total_power'" in answers[0].frame["detail"]
    assert (answers[1].frame["code"], answers[1].frame["id"]) == ("duplicate_key", "e")  # in a signed body too
    assert answers[2].frame["code"] == "invalid_readings"
    assert "no measurement" in answers[2].frame["errors"][0]["message"]
    assert Reading.objects.count() == 0


@pytest.mark.django_db
def test_messages_ingest_legacy_key_topics_while_enabled(meter, settings):
    legacy = Incoming(topic=f"joulepoint/{str(meter.device_key).upper()}/readings", payload=b"{}")
    settings.MQTT_LEGACY_KEY_TOPICS = False
    assert messages_ingest([legacy])[0].frame["code"] == "unauthenticated"
    settings.MQTT_LEGACY_KEY_TOPICS = True
    legacy.payload = orjson.dumps({"timestamp": ts(30), "total_power": 1.0})
    answers = messages_ingest([legacy, msg(meter, {"timestamp": ts(31), "total_power": 2.0})])
    assert [a.frame["stored"] for a in answers] == [1, 1]
    assert Reading.objects.filter(meter=meter).count() == 2


@pytest.mark.django_db
def test_messages_ingest_other_tenant_meter_through_gateway(gateway):
    foreign = factories.MeterFactory()
    answers = messages_ingest([msg(gateway, {"timestamp": ts(), "meter_id": foreign.pk, "total_power": 1})])
    assert answers[0].frame["code"] == "invalid_readings"
    assert Reading.objects.count() == 0


@pytest.mark.django_db
def test_messages_ingest_stores_every_device_together_first_claim_wins(meter, gateway):
    """A meter and its site's gateway sending the same instant in one batch: one row, the
    earlier message stores it, the later one is told it was a duplicate."""
    answers = messages_ingest(
        [
            msg(meter, {"timestamp": ts(10), "total_power": 1.0}),
            msg(gateway, [{"meter_id": meter.pk, "timestamp": ts(10), "total_power": 5.0},
                          {"meter_id": meter.pk, "timestamp": ts(11), "total_power": 6.0}]),
        ]
    )  # fmt: skip
    assert answers[0].frame == {"type": "ack", "id": None, "stored": 1, "duplicates": 0}
    assert answers[1].frame == {"type": "ack", "id": None, "stored": 1, "duplicates": 1}
    assert sorted(Reading.objects.filter(meter=meter).values_list("total_power", flat=True)) == [1.0, 6.0]


@pytest.mark.django_db
def test_messages_ingest_announces_each_device_batch_to_its_own_organization(meter, django_capture_on_commit_callbacks):
    foreign = factories.MeterFactory()
    seen = []
    subscribe(seen.append, keys=[DATA_INGESTED])
    try:
        with django_capture_on_commit_callbacks(execute=True):
            messages_ingest(
                [
                    msg(meter, {"timestamp": ts(20), "total_power": 1.0}),
                    msg(foreign, {"timestamp": ts(20), "total_power": 2.0}),
                    msg(meter, {"timestamp": ts(21), "total_power": 3.0}),
                ]
            )
    finally:
        unsubscribe(seen.append)
    by_org = {event.organization_id: event.payload for event in seen}
    assert len(seen) == 2 and set(by_org) == {meter.organization_id, foreign.organization_id}
    assert [r["total_power"] for r in by_org[meter.organization_id]["readings"]] == [1.0, 3.0]
    assert [r["meter_id"] for r in by_org[foreign.organization_id]["readings"]] == [foreign.pk]


def broker_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class Device:
    """A test device: publishes readings with QoS 1 and collects the bridge's answers."""

    def __init__(self, device, prefix: str, port: int = BROKER[1]):
        self.key = f"{device._meta.model_name}-{device.pk}"  # the topic's device segment: its MQTT id
        self.prefix = prefix
        self.answers: queue.Queue = queue.Queue()
        self.commands: queue.Queue = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(BROKER[0], port)
        self.client.subscribe([(f"{prefix}/{self.key}/ack", 1), (f"{prefix}/{self.key}/commands", 1)])
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, client, userdata, message):
        target = self.answers if message.topic.endswith("/ack") else self.commands
        target.put(orjson.loads(message.payload))

    def publish(self, payload) -> None:
        raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        self.client.publish(f"{self.prefix}/{self.key}/readings", raw, qos=1).wait_for_publish(5)

    def answer(self, timeout: float = 10) -> dict:
        return self.answers.get(timeout=timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class BridgeThread:
    def __init__(self, url: str, **kwargs):
        self.bridge = MqttBridge(url=url, client_id=f"bridge-test-{uuid.uuid4().hex[:8]}", **kwargs)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.bridge.run(max_seconds=60)), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not (self.bridge.loop and self.bridge.connected.is_set()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.bridge.connected.is_set(), "bridge did not connect"
        time.sleep(0.2)  # SUBSCRIBE is sent right after CONNACK

    def stop(self) -> None:
        self.bridge.stop()
        self.thread.join(10)


@pytest.fixture
def prefix(settings):
    """A topic prefix of this test only, so runs sharing the broker never see each other."""
    settings.MQTT_TOPIC_PREFIX = f"jptest-{uuid.uuid4().hex[:8]}"
    return settings.MQTT_TOPIC_PREFIX


needs_broker = pytest.mark.skipif(not broker_up(*BROKER), reason="Mosquitto is not running on 127.0.0.1:1883")


@needs_broker
@pytest.mark.django_db(transaction=True)
def test_bridge_stores_then_acks_and_survives_bad_payloads(meter, prefix):
    bridge = BridgeThread(f"mqtt://{BROKER[0]}:{BROKER[1]}")
    device = Device(meter, prefix)
    try:
        device.publish({"timestamp": ts(), "total_power": 3600.0})
        assert device.answer() == {"type": "ack", "id": None, "stored": 1, "duplicates": 0}
        assert Reading.objects.filter(meter=meter).count() == 1
        device.publish(b"\x00garbage")
        assert device.answer()["code"] == "malformed_json"
        device.publish({"id": 5, "readings": [{"timestamp": ts(1), "voltage_a": -3}]})
        answer = device.answer()
        assert answer["code"] == "invalid_readings" and answer["id"] == 5
        device.publish(
            {"id": 6, "readings": [{"timestamp": ts(2), "total_power": 1}, {"timestamp": ts(), "total_power": 2}]}
        )
        assert device.answer() == {"type": "ack", "id": 6, "stored": 1, "duplicates": 1}
        assert Reading.objects.filter(meter=meter).count() == 2
    finally:
        device.close()
        bridge.stop()


@needs_broker
@pytest.mark.django_db(transaction=True)
def test_bridges_sharing_a_subscription_split_the_messages_and_answer_each_once(meter, prefix):
    # `mqtt_bridge --shared NAME`: the broker hands each message to one of the group's bridges.
    group = f"bridges-{uuid.uuid4().hex[:8]}"
    url = f"mqtt://{BROKER[0]}:{BROKER[1]}"
    bridges = [BridgeThread(url, shared_group=group), BridgeThread(url, shared_group=group)]
    device = Device(meter, prefix)
    try:
        for second in range(40):
            device.publish({"id": second, "readings": [{"timestamp": ts(second), "total_power": float(second)}]})
        answers = [device.answer() for _ in range(40)]
        with pytest.raises(queue.Empty):
            device.answer(timeout=1)  # nothing answered twice
    finally:
        device.close()
        for bridge in bridges:
            bridge.stop()
    assert sorted(answer["id"] for answer in answers) == list(range(40))
    assert all(answer["stored"] == 1 for answer in answers)
    assert Reading.objects.filter(meter=meter).count() == 40
    assert all(bridge.bridge.processed > 0 for bridge in bridges), [b.bridge.processed for b in bridges]


@needs_broker
@pytest.mark.django_db(transaction=True)
def test_downlink_over_mqtt(meter, prefix, settings, monkeypatch):
    from energy.downlink import services, tasks

    monkeypatch.setattr(tasks.device_command_deliver, "delay", lambda command_id: None)
    settings.MQTT_URL = f"mqtt://{BROKER[0]}:{BROKER[1]}"
    device = Device(meter, prefix)
    try:
        command = services.device_command_send(device=meter, name="relay.open", payload={"relay": 1})
        services.device_command_deliver(command_id=command.pk)
        received = device.commands.get(timeout=5)
        assert received["id"] == command.pk and received["name"] == "relay.open"
        command.refresh_from_db()
        assert (command.status, command.channel) == ("delivered", "mqtt")
    finally:
        device.close()


def start_private_broker(port: int, tmp_path) -> subprocess.Popen:
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    process = subprocess.Popen([shutil.which("mosquitto"), "-c", str(config)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not broker_up("127.0.0.1", port):
        assert time.monotonic() < deadline, "private mosquitto did not start"
        time.sleep(0.05)
    return process


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")
@pytest.mark.django_db(transaction=True)
def test_bridge_reconnects_after_a_broker_restart(meter, prefix, tmp_path):
    port = free_port()
    broker = start_private_broker(port, tmp_path)
    bridge = None
    try:
        bridge = BridgeThread(f"mqtt://127.0.0.1:{port}")
        device = Device(meter, prefix, port=port)
        device.publish({"timestamp": ts(0), "total_power": 1.0})
        assert device.answer()["stored"] == 1
        device.close()
        broker.terminate()
        broker.wait(5)
        time.sleep(0.5)
        broker = start_private_broker(port, tmp_path)
        deadline = time.monotonic() + 20
        while not bridge.bridge.connected.is_set():
            assert time.monotonic() < deadline, "bridge did not reconnect"
            time.sleep(0.1)
        time.sleep(0.3)
        device = Device(meter, prefix, port=port)
        device.publish({"timestamp": ts(1), "total_power": 2.0})
        assert device.answer() == {"type": "ack", "id": None, "stored": 1, "duplicates": 0}
        device.close()
        assert Reading.objects.filter(meter=meter).count() == 2
    finally:
        if bridge is not None:
            bridge.stop()
        broker.terminate()
        broker.wait(5)

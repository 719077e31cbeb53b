"""MQTT identity: the platform writes Mosquitto's password file and ACL, and a private Mosquitto
started on a free port with them refuses anonymous clients, wrong passwords and a device's
publish or subscribe on another device's topics, while the device's own readings are stored
and acknowledged through the bridge's own account (docs/live.md, "MQTT identity")."""

from __future__ import annotations

import asyncio
import queue
import shutil
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from django.core.management import call_command

from energy.devices import mqtt_auth
from energy.devices.services import MQTT_AUTH_SYNC_TASK, device_credential_rotate
from energy.ingest.mqtt_bridge import MqttBridge
from energy.models import Reading
from tests import factories
from tests.net import free_port

needs_mosquitto = pytest.mark.skipif(
    shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None, reason="mosquitto is not installed"
)
NOT_AUTHORIZED = 0x87
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def ts(seconds: int = 0) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def test_acl_gives_each_device_its_own_topics_and_the_bridge_all(settings):
    settings.MQTT_TOPIC_PREFIX = "jp"
    acl = mqtt_auth.broker_acl(bridge_username="bridge")
    assert "user bridge\ntopic read jp/+/readings\ntopic write jp/+/ack\ntopic write jp/+/commands\n" in acl
    assert "pattern write jp/%u/readings\npattern read jp/%u/ack\npattern read jp/%u/commands\n" in acl
    assert "#" not in acl.replace("# Written", "")  # no wildcard grant to anyone


@pytest.mark.django_db
def test_password_file_is_hashed_and_lists_active_devices_only(settings, tmp_path, meter, gateway):
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed")
    disabled = factories.MeterFactory(site=meter.site, is_active=False)
    files = mqtt_auth.mqtt_broker_auth_write(directory=tmp_path)
    text = files.password_file.read_text()
    users = [line.split(":", 1)[0] for line in text.splitlines()]
    assert users == [settings.MQTT_BRIDGE_USERNAME, f"meter-{meter.pk}", f"gateway-{gateway.pk}"]
    assert f"meter-{disabled.pk}" not in users
    assert str(meter.device_key) not in text
    assert all(line.split(":", 1)[1].startswith("$7$") for line in text.splitlines())
    assert files.password_file.stat().st_mode & 0o077 == 0
    # The bridge's generated password is kept: a second run gives the same login.
    assert mqtt_auth.bridge_password(directory=tmp_path) == mqtt_auth.bridge_password(directory=tmp_path)


@pytest.mark.django_db
def test_a_device_change_queues_the_broker_files_rewrite_when_managed(settings, site, monkeypatch, tmp_path):
    from energy.devices import services

    queued = []
    monkeypatch.setattr(services, "enqueue_on_commit", queued.append)
    settings.MQTT_AUTH_DIR = ""
    factories.MeterFactory(site=site)
    assert queued == []
    settings.MQTT_AUTH_DIR = str(tmp_path)
    meter = factories.MeterFactory(site=site)
    device_credential_rotate(device=meter)
    assert queued == [MQTT_AUTH_SYNC_TASK, MQTT_AUTH_SYNC_TASK]
    meter.name = "renamed"
    meter.save(update_fields=["name"])  # nothing the broker knows changed
    assert len(queued) == 2
    meter.is_active = False
    meter.save(update_fields=["is_active"])
    assert len(queued) == 3


class SecuredBroker:
    """A private Mosquitto on a free port, configured by `manage.py mosquitto_auth --listen`."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        # In process, so the command reads this test's database.
        call_command("mosquitto_auth", "--dir", str(directory), "--listen", f"127.0.0.1:{self.port}")
        self.process = subprocess.Popen(
            [shutil.which("mosquitto"), "-c", str(directory / mqtt_auth.CONFIG_FILE)], stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 5
        while not (directory / mqtt_auth.PID_FILE).exists():
            assert time.monotonic() < deadline and self.process.poll() is None, self.process.stderr.read()
            time.sleep(0.05)
        time.sleep(0.2)

    @property
    def bridge_url(self) -> str:
        from django.conf import settings

        password = mqtt_auth.bridge_password(directory=self.directory)
        return f"mqtt://{settings.MQTT_BRIDGE_USERNAME}:{password}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(5)


class Client:
    """An MQTT 5 client that records CONNACK, SUBACK and PUBACK reason codes and messages."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None):
        self.connack: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.pubacks: dict[int, int] = {}
        self.messages: queue.Queue = queue.Queue()
        self.disconnected = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.put(rc.value)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put([rc.value for rc in rcs])
        self.client.on_publish = lambda c, u, mid, rc, p: self.pubacks.__setitem__(mid, rc.value)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, orjson.loads(m.payload)))
        self.client.on_disconnect = lambda *args: self.disconnected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.code = self.connack.get(timeout=5)

    def subscribe(self, topic: str) -> int:
        self.client.subscribe(topic, qos=1)
        return self.subacks.get(timeout=5)[0]

    def publish(self, topic: str, payload: dict) -> int:
        info = self.client.publish(topic, orjson.dumps(payload), qos=1)
        info.wait_for_publish(5)
        deadline = time.monotonic() + 5
        while info.mid not in self.pubacks:
            assert time.monotonic() < deadline, "no PUBACK"
            time.sleep(0.01)
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_broker_refuses_strangers_and_other_devices_topics_and_stores_own_readings(settings, tmp_path, meter):
    settings.MQTT_TOPIC_PREFIX = prefix = f"jpacl{uuid.uuid4().hex[:6]}"
    other = factories.MeterFactory()  # another organization's meter
    broker = SecuredBroker(tmp_path / "mqtt")
    clients: list[Client] = []
    bridge = None
    try:
        anonymous = Client(broker.port)
        assert anonymous.code != 0, "an anonymous client was let in"
        wrong = Client(broker.port, f"meter-{meter.pk}", str(other.device_key))
        assert wrong.code != 0, "a wrong password was accepted"
        clients += [anonymous, wrong]

        bridge = MqttBridge(url=broker.bridge_url, client_id=f"bridge-{uuid.uuid4().hex[:6]}")
        thread = threading.Thread(target=lambda: asyncio.run(bridge.run(max_seconds=60)), daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not (bridge.loop and bridge.connected.is_set()):
            assert time.monotonic() < deadline, "the bridge could not log in"
            time.sleep(0.05)
        time.sleep(0.3)

        device = Client(broker.port, f"meter-{meter.pk}", str(meter.device_key))
        clients.append(device)
        assert device.code == 0
        # Mosquitto grants any subscription and applies the read ACL to each message delivered:
        # this `#` must bring the device nothing but its own ack.
        device.subscribe("#")
        neighbour = Client(broker.port, f"meter-{other.pk}", str(other.device_key))
        clients.append(neighbour)
        neighbour.subscribe(f"{prefix}/meter-{other.pk}/ack")
        # Forging another organization's meter: the broker refuses it, nothing is stored.
        forged = device.publish(f"{prefix}/meter-{other.pk}/readings", {"timestamp": ts(0), "total_power": 9.0})
        assert forged == NOT_AUTHORIZED
        assert device.publish(f"{prefix}/meter-{other.pk}/commands", {"name": "relay.open"}) == NOT_AUTHORIZED
        assert device.publish(f"{prefix}/meter-{meter.pk}/ack", {"type": "ack"}) == NOT_AUTHORIZED
        # Each device's own reading is stored and acknowledged on its own ack topic only.
        assert neighbour.publish(f"{prefix}/meter-{other.pk}/readings", {"timestamp": ts(2), "total_power": 7.0}) == 0
        assert neighbour.messages.get(timeout=10)[1]["stored"] == 1
        assert device.publish(f"{prefix}/meter-{meter.pk}/readings", {"timestamp": ts(1), "total_power": 5.0}) == 0
        topic, answer = device.messages.get(timeout=10)
        assert (topic, answer["stored"]) == (f"{prefix}/meter-{meter.pk}/ack", 1)
        time.sleep(0.5)
        assert device.messages.empty(), device.messages.get()  # nothing of the neighbour's, not its readings
        stored = set(Reading.objects.values_list("meter_id", "total_power"))
        assert stored == {(meter.pk, 5.0), (other.pk, 7.0)}
        old_key = str(meter.device_key)

        # A rotated key: the broker drops the old login on reload and lets only the new one in.
        settings.MQTT_AUTH_DIR = str(broker.directory)
        device_credential_rotate(device=meter)
        mqtt_auth.mqtt_broker_auth_sync()
        assert device.disconnected.wait(5), "the old key's session survived the rotation"
        old = Client(broker.port, f"meter-{meter.pk}", old_key)
        new = Client(broker.port, f"meter-{meter.pk}", str(meter.device_key))
        clients += [old, new]
        assert old.code != 0 and new.code == 0
    finally:
        for client in clients:
            client.close()
        if bridge is not None:
            bridge.stop()
        broker.stop()


def bridge_started(broker: SecuredBroker) -> MqttBridge:
    bridge = MqttBridge(url=broker.bridge_url, client_id=f"bridge-{uuid.uuid4().hex[:6]}")
    threading.Thread(target=lambda: asyncio.run(bridge.run(max_seconds=60)), daemon=True).start()
    deadline = time.monotonic() + 10
    while not (bridge.loop and bridge.connected.is_set()):
        assert time.monotonic() < deadline, "the bridge could not log in"
        time.sleep(0.05)
    time.sleep(0.3)
    return bridge


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_the_demo_simulator_publishes_as_each_meter_and_its_readings_are_stored(settings, tmp_path, meter):
    """What `make run MQTT_URL=…` runs: the simulator's MQTT meters log in as themselves."""
    from energy.simulator_senders import MeterCredential, MqttReadingSender

    settings.MQTT_TOPIC_PREFIX = prefix = f"jpsim{uuid.uuid4().hex[:6]}"
    other = factories.MeterFactory(site=meter.site)
    broker = SecuredBroker(tmp_path / "mqtt")
    bridge = bridge_started(broker)
    url = f"mqtt://127.0.0.1:{broker.port}"
    own = MqttReadingSender(url, [MeterCredential(meter.pk, "pv", str(meter.device_key), "")], prefix=prefix)
    # A meter's key does not open another meter's login: the broker refuses it, nothing is stored.
    borrowed = MqttReadingSender(url, [MeterCredential(other.pk, "load", str(meter.device_key), "")], prefix=prefix)
    try:
        own.send({"pv": {"timestamp": ts(10), "total_power": 1200.0}})
        borrowed.send({"load": {"timestamp": ts(10), "total_power": 99.0}})
        deadline = time.monotonic() + 10
        while not borrowed.refused:
            assert time.monotonic() < deadline, "a borrowed key was let in"
            time.sleep(0.05)
        assert borrowed.refused == {f"meter-{other.pk}"} and borrowed.send({}).pending == 1
        stored = 0
        while stored < 1:
            assert time.monotonic() < deadline, "no ack"
            time.sleep(0.1)
            stored += own.send({}).stored
        assert list(Reading.objects.values_list("meter_id", "total_power")) == [(meter.pk, 1200.0)]
    finally:
        own.close()
        borrowed.close(timeout=0.5)
        bridge.stop()
        broker.stop()

"""Device downlink: the command state machine, HTTP polling with the device key, the commands
API for integrators, and tenant isolation of every new route."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from energy.downlink import services as downlink
from energy.models import DeviceCommand
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_async_delivery(monkeypatch):
    """Delivery is tested on its own; here commands stay pending until polled."""
    from energy.downlink import tasks

    monkeypatch.setattr(tasks.device_command_deliver, "delay", lambda command_id: None)


def test_send_poll_ack_walks_pending_delivered_acked(meter, device_client):
    command = downlink.device_command_send(device=meter, name="relay.open", payload={"relay": 2})
    assert command.status == "pending" and command.organization_id == meter.organization_id
    device = device_client(meter)

    answer = device.client.get("/api/energy/devices/commands/", HTTP_X_DEVICE_KEY=str(meter.device_key))
    assert answer.status_code == 200
    assert [(c["id"], c["name"], c["payload"]) for c in answer.json()] == [(command.pk, "relay.open", {"relay": 2})]
    command.refresh_from_db()
    assert (command.status, command.channel) == ("delivered", "http")
    # A lost poll answer is not a lost command: delivered ones come again until acknowledged.
    again = device.client.get("/api/energy/devices/commands", HTTP_X_DEVICE_KEY=str(meter.device_key))
    assert [c["id"] for c in again.json()] == [command.pk]

    ack = device.post(f"/api/energy/devices/commands/{command.pk}/ack/", {"status": "acked", "result": {"ok": 1}})
    assert ack.status_code == 200 and ack.json() == {"id": command.pk, "status": "acked"}
    command.refresh_from_db()
    assert command.status == "acked" and command.result == {"ok": 1} and command.completed_at
    # Same answer again: idempotent. A different answer: conflict.
    assert device.post(f"/api/energy/devices/commands/{command.pk}/ack", {"status": "acked"}).status_code == 200
    assert device.post(f"/api/energy/devices/commands/{command.pk}/ack", {"status": "failed"}).status_code == 409
    assert device.client.get("/api/energy/devices/commands/", HTTP_X_DEVICE_KEY=str(meter.device_key)).json() == []


def test_failed_and_expired(meter, device_client):
    failing = downlink.device_command_send(device=meter, name="charging.setpoint", payload={"a": 16})
    response = device_client(meter).post(f"/api/energy/devices/commands/{failing.pk}/ack", {"status": "failed"})
    assert response.json()["status"] == "failed"

    stale = downlink.device_command_send(device=meter, name="relay.close", ttl_seconds=60)
    assert downlink.device_commands_expire(now=timezone.now() + timedelta(seconds=61)) == 1
    stale.refresh_from_db()
    assert stale.status == "expired"
    late = device_client(meter).post(f"/api/energy/devices/commands/{stale.pk}/ack", {"status": "acked"})
    assert late.status_code == 409


def test_ack_after_expiry_time_expires_the_command(meter):
    command = downlink.device_command_send(device=meter, name="relay.close", ttl_seconds=1)
    DeviceCommand.objects.filter(pk=command.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(downlink.DeviceCommandError) as error:
        downlink.device_command_ack(device=meter, command_id=command.pk, ok=True)
    assert error.value.code == "conflict"
    command.refresh_from_db()
    assert command.status == "expired"
    assert downlink.device_commands_poll(device=meter) == []
    assert downlink.device_command_mark_delivered(command_id=command.pk, channel="ws") is False


def test_gateway_commands_and_validation(gateway):
    command = downlink.device_command_send(device=gateway, name="reboot")
    assert command.gateway == gateway and command.meter is None
    assert [c.pk for c in downlink.device_commands_poll(device=gateway)] == [command.pk]
    with pytest.raises(ValueError):
        downlink.device_command_send(device=gateway, name="")
    with pytest.raises(ValueError):
        downlink.device_command_send(device=gateway, name="x", ttl_seconds=0)


def test_a_device_sees_and_acks_only_its_own_commands(meter, device_client):
    neighbour = factories.MeterFactory(site=meter.site)
    foreign = factories.MeterFactory()
    mine = downlink.device_command_send(device=meter, name="relay.open")
    theirs = downlink.device_command_send(device=neighbour, name="relay.open")
    outsider = downlink.device_command_send(device=foreign, name="relay.open")
    polled = device_client(meter).client.get("/api/energy/devices/commands/", HTTP_X_DEVICE_KEY=str(meter.device_key))
    assert [c["id"] for c in polled.json()] == [mine.pk]
    for other in (theirs, outsider):
        response = device_client(meter).post(f"/api/energy/devices/commands/{other.pk}/ack", {"status": "acked"})
        assert response.status_code == 404
        other.refresh_from_db()
        assert other.status == "pending"


def test_device_routes_need_a_device_key(api, meter):
    assert api.get("/api/energy/devices/commands/").status_code == 401
    assert api.post("/api/energy/devices/commands/1/ack", {}, format="json").status_code == 401
    bad = api.get("/api/energy/devices/commands/", HTTP_X_DEVICE_KEY="00000000-0000-4000-8000-000000000000")
    assert bad.status_code == 401


def test_ack_body_is_validated(meter, device_client):
    command = downlink.device_command_send(device=meter, name="relay.open")
    response = device_client(meter).post(f"/api/energy/devices/commands/{command.pk}/ack", {"status": "maybe"})
    assert response.status_code == 400 and "status" in response.json()


def test_integrator_sends_and_reads_commands(api, meter, gateway):
    response = api.post(
        "/api/energy/commands/", {"meter": meter.pk, "name": "relay.open", "payload": {"r": 1}}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending" and body["meter"] == meter.pk and body["gateway"] is None
    assert api.get(f"/api/energy/commands/{body['id']}").json()["name"] == "relay.open"
    listed = api.get("/api/energy/commands/", {"status": "pending", "meter": meter.pk}).json()
    assert [c["id"] for c in listed["results"]] == [body["id"]]
    both = api.post("/api/energy/commands", {"meter": meter.pk, "gateway": gateway.pk, "name": "x"}, format="json")
    assert both.status_code == 400
    neither = api.post("/api/energy/commands", {"name": "x"}, format="json")
    assert neither.status_code == 400


def test_commands_api_is_tenant_scoped(api, outsider_api, meter, energy_reader):
    command = downlink.device_command_send(device=meter, name="relay.open")
    assert outsider_api.get(f"/api/energy/commands/{command.pk}/").status_code == 404
    assert outsider_api.get("/api/energy/commands/").json()["results"] == []
    sent = outsider_api.post("/api/energy/commands/", {"meter": meter.pk, "name": "relay.open"}, format="json")
    assert sent.status_code == 400 and "meter" in sent.json()
    assert energy_reader.get("/api/energy/commands/").status_code == 200
    readonly = energy_reader.post("/api/energy/commands/", {"meter": meter.pk, "name": "x"}, format="json")
    assert readonly.status_code == 403
    assert DeviceCommand.objects.count() == 1


def test_commands_api_needs_a_token(anonymous_api):
    assert anonymous_api.get("/api/energy/commands/").status_code == 401


def test_delivery_over_mqtt_marks_delivered(meter, settings, monkeypatch):
    from energy.downlink import mqtt

    sent = []
    monkeypatch.setattr(mqtt, "mqtt_publish", lambda **kwargs: sent.append(kwargs))
    settings.MQTT_URL = "mqtt://127.0.0.1:1883"
    command = downlink.device_command_send(device=meter, name="relay.open")
    downlink.device_command_deliver(command_id=command.pk)
    command.refresh_from_db()
    assert (command.status, command.channel) == ("delivered", "mqtt")
    # The topic names the meter by its MQTT id, never by its key (a subscriber would learn it).
    assert sent[0]["topic_name"] == f"joulepoint/meter-{meter.pk}/commands"
    assert str(meter.device_key) not in sent[0]["topic_name"]
    assert sent[0]["payload"]["id"] == command.pk
    # Running the task twice changes nothing.
    downlink.device_command_deliver(command_id=command.pk)
    assert len(sent) == 1


def test_delivery_over_mqtt_on_legacy_key_topics_too_while_enabled(meter, settings, monkeypatch):
    from energy.downlink import mqtt

    sent = []
    monkeypatch.setattr(mqtt, "mqtt_publish", lambda **kwargs: sent.append(kwargs["topic_name"]))
    settings.MQTT_URL = "mqtt://127.0.0.1:1883"
    settings.MQTT_LEGACY_KEY_TOPICS = True
    command = downlink.device_command_send(device=meter, name="relay.open")
    downlink.device_command_deliver(command_id=command.pk)
    assert sent == [f"joulepoint/meter-{meter.pk}/commands", f"joulepoint/{meter.device_key}/commands"]


def test_delivery_with_broker_down_keeps_it_pending(meter, settings):
    settings.MQTT_URL = "mqtt://127.0.0.1:1"  # nothing listens there
    command = downlink.device_command_send(device=meter, name="relay.open")
    with pytest.raises(OSError):
        downlink.device_command_deliver(command_id=command.pk)
    command.refresh_from_db()
    assert command.status == "pending"

"""Writes through the doors without an HTTP request name their door and device in the audit
trail (a device's WebSocket, the MQTT bridge), and the audited rows that services move with a
conditional QuerySet.update() (expiries, deliveries, demand response) are recorded too
(docs/audit.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from channels.db import database_sync_to_async
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from automations import relay
from automations.models import Annotation, RelayCommand
from energy.downlink import services as downlink
from energy.ingest.mqtt_bridge import Incoming, messages_ingest
from energy.load import demand_response
from energy.models import DeviceCommand
from joulepoint.audit.models import AuditEntry
from tests import factories
from tests.energy.test_consumers import open_ingest, recv, send


def updates_of(row) -> list[AuditEntry]:
    content_type = ContentType.objects.get_for_model(type(row))
    return list(
        AuditEntry.objects.filter(
            content_type=content_type, object_pk=str(row.pk), action=AuditEntry.Action.UPDATE
        ).order_by("pk")
    )


def status_moves(row) -> list[tuple[str, str, str, str]]:
    """(old status, new status, device, source) of each recorded update of the row's status."""
    return [(*e.changes["status"], e.device, e.source) for e in updates_of(row) if "status" in e.changes]


@pytest.fixture
def deliver_inline(monkeypatch):
    from energy.downlink import tasks

    monkeypatch.setattr(
        tasks.device_command_deliver, "delay", lambda command_id: downlink.device_command_deliver(command_id=command_id)
    )


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_command_delivered_and_acknowledged_over_the_socket_is_the_devices(deliver_inline):
    meter = await database_sync_to_async(factories.MeterFactory)()
    ws = await open_ingest(meter)
    await recv(ws)
    command = await database_sync_to_async(downlink.device_command_send)(device=meter, name="relay.open")
    assert (await recv(ws))["id"] == command.pk
    await ws.receive_nothing(timeout=0.3)  # the socket marks it delivered after writing it
    await send(ws, {"type": "command_ack", "id": command.pk, "status": "acked"})
    assert (await recv(ws))["status"] == "acked"
    await ws.disconnect()
    moves = await database_sync_to_async(status_moves)(command)
    device = f"meter:{meter.pk}"
    assert moves == [("pending", "delivered", device, "ws"), ("delivered", "acked", device, "ws")]


@pytest.mark.django_db(transaction=True)
def test_what_an_mqtt_reading_sets_off_is_recorded_as_the_bridges(meter, monkeypatch):
    from joulepoint.celery import app

    # The embedded mode, where the rule's annotation is written in the bridge's own process.
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    action = factories.ActionFactory(organization=meter.organization, type="annotate", config={"text_template": "Peak"})
    factories.RuleFactory(organization=meter.organization, actions=[action])
    stamp = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    payload = orjson.dumps({"timestamp": stamp, "total_power": 9000.0})
    [answer] = messages_ingest([Incoming(topic=f"joulepoint/meter-{meter.pk}/readings", payload=payload)])
    assert answer.frame["stored"] == 1, answer.frame
    annotation = Annotation.objects.get(meter=meter)
    [created] = AuditEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Annotation), object_pk=str(annotation.pk)
    )
    assert (created.source, created.device) == ("mqtt", "")


@pytest.mark.django_db
def test_commands_delivered_by_a_poll_and_expired_are_recorded(meter, monkeypatch):
    from energy.downlink import tasks

    monkeypatch.setattr(tasks.device_command_deliver, "delay", lambda command_id: None)
    polled = downlink.device_command_send(device=meter, name="relay.open")
    downlink.device_commands_poll(device=meter)
    forgotten = downlink.device_command_send(device=meter, name="relay.close")
    later = timezone.now() + timedelta(hours=1)
    assert downlink.device_commands_expire(now=later) == 2
    assert [m[:2] for m in status_moves(polled)] == [("pending", "delivered"), ("delivered", "expired")]
    assert [m[:2] for m in status_moves(forgotten)] == [("pending", "expired")]
    assert DeviceCommand.objects.filter(status="expired").count() == 2


@pytest.mark.django_db
def test_an_unapproved_relay_command_expiring_is_recorded(org, meter):
    command = RelayCommand.objects.create(
        organization=org, meter=meter, command="open", expires_at=timezone.now() + timedelta(minutes=1)
    )
    assert relay.relay_commands_expire(now=timezone.now() + timedelta(minutes=2)) == 1
    assert [m[:2] for m in status_moves(command)] == [("awaiting_approval", "expired")]
    assert relay.relay_commands_expire(now=timezone.now() + timedelta(minutes=3)) == 0
    assert len(status_moves(command)) == 1


@pytest.mark.django_db
def test_demand_response_starts_ends_and_cancellations_are_recorded(site):
    now = timezone.now()
    event = factories.DemandResponseEventFactory(
        site=site, starts_at=now - timedelta(minutes=5), ends_at=now + timedelta(minutes=5)
    )
    demand_response.demand_responses_announce(now=now)
    demand_response.demand_responses_announce(now=now + timedelta(minutes=10))
    assert [m[:2] for m in status_moves(event)] == [("scheduled", "active"), ("active", "ended")]
    upcoming = factories.DemandResponseEventFactory(
        site=site, starts_at=now + timedelta(hours=1), ends_at=now + timedelta(hours=2)
    )
    demand_response.demand_response_cancel(event=upcoming, now=now)
    assert [m[:2] for m in status_moves(upcoming)] == [("scheduled", "cancelled")]


@pytest.mark.django_db
def test_a_wallet_movement_stored_in_one_sql_statement_is_recorded_once(org):
    """On PostgreSQL a movement that crosses no threshold is one INSERT … RETURNING of ours."""
    from decimal import Decimal

    from billing.models import WalletTransaction
    from billing.wallets import wallet_move

    wallet = factories.WalletFactory(organization=org, currency="EUR", low_balance_threshold=Decimal("0"))
    moved = wallet_move(
        organization_id=org.pk, wallet_id=wallet.pk, kind=WalletTransaction.Kind.TOPUP, amount=Decimal("10.00"),
        currency="EUR", idempotency_key="top-1",
    )  # fmt: skip
    content_type = ContentType.objects.get_for_model(WalletTransaction)
    [created] = AuditEntry.objects.filter(content_type=content_type, object_pk=str(moved.transaction.pk))
    assert created.action == AuditEntry.Action.CREATE and created.organization_id == org.pk
    assert Decimal(created.changes["amount"][1]) == Decimal("10") and created.changes["kind"][1] == "topup"

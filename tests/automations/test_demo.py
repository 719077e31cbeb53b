"""Automations' part of the `make run` demo (automations.demo) and its webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from decimal import Decimal
from http.server import ThreadingHTTPServer

import pytest
from django.utils import timezone

from automations.management.commands.demo_webhook_receiver import receiver_handler
from automations.models import Alert, Annotation, Delivery, Rule
from energy.demo import demo_ensure
from energy.ingest.store import reading_batch_ingest
from energy.models import Meter
from tests.net import free_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver(tmp_path, settings):
    log = tmp_path / "webhooks.log"
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), receiver_handler(log))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE = True
    settings.DEMO_WEBHOOK_PORT = server.server_address[1]
    yield log
    server.shutdown()
    server.server_close()


def _readings(volts: list[float], *, start, **extra) -> list[dict]:
    return [
        {"timestamp": (start + timedelta(seconds=5 * i)).isoformat(), "total_power": 1000.0, "voltage_a": v,
         "voltage_b": v, "voltage_c": v, **extra}
        for i, v in enumerate(volts)
    ]  # fmt: skip


def test_the_demo_has_rules_with_an_alert_an_annotation_and_a_webhook(tmp_path, receiver, settings):
    data = demo_ensure(state_path=tmp_path / "demo.json")
    demo_ensure(state_path=tmp_path / "demo.json")  # a second run finds them

    rules = Rule.objects.filter(organization_id=data["organization_id"]).order_by("name")
    assert [(r.name, r.event_key, r.alert_severity) for r in rules] == [
        ("Breaker trip", "protection.event", "critical"),
        ("Demo top-up on low balance", "wallet.low_balance", ""),
        ("Voltage sag or swell", "pq.event", "warning"),
    ]
    for rule in rules.exclude(event_key="wallet.low_balance"):
        assert sorted(rule.actions.values_list("type", flat=True)) == ["annotate", "webhook"]
    assert data["automations"]["webhook_url"] == f"http://127.0.0.1:{settings.DEMO_WEBHOOK_PORT}/joulepoint"


def test_a_sag_and_a_trip_fire_the_demo_rules_up_to_the_receiver(tmp_path, receiver, eager_tasks):
    data = demo_ensure(state_path=tmp_path / "demo.json")
    meters = {m.kind: m for m in Meter.objects.filter(organization_id=data["organization_id"])}
    start = timezone.now() - timedelta(minutes=5)

    reading_batch_ingest(device=meters["grid"], items=_readings([230.0, 180.0, 230.0], start=start), source="test")
    ev = _readings([230.0], start=start, breaker_state="tripped")
    reading_batch_ingest(device=meters["ev_charger"], items=ev, source="test")

    alerts = {a.rule.name: a for a in Alert.objects.select_related("rule")}
    assert alerts["Voltage sag or swell"].severity == "warning"
    assert alerts["Voltage sag or swell"].message.startswith("Voltage sag: 0.78 pu")
    assert alerts["Voltage sag or swell"].meter_id == meters["grid"].pk
    assert alerts["Breaker trip"].severity == "critical" and alerts["Breaker trip"].status == "active"
    notes = Annotation.objects.order_by("meter_id").values_list("meter_id", "text")
    assert list(notes) == [
        (meters["grid"].pk, "Voltage sag or swell: sag"),
        (meters["ev_charger"].pk, "Breaker trip: trip"),
    ]
    deadline = time.monotonic() + 10
    while Delivery.objects.filter(action_type="webhook").exclude(status="succeeded").exists():
        assert time.monotonic() < deadline, list(Delivery.objects.values_list("status", "last_error"))
        time.sleep(0.05)
    received = [json.loads(line) for line in receiver.read_text().splitlines()]
    assert sorted(line["body"]["type"] for line in received) == ["pq.event", "protection.event"]
    assert all(line["webhook_id"] and line["webhook_signature"] for line in received)


def test_the_demo_tops_its_wallet_up_once_when_the_balance_falls_below_the_threshold(tmp_path, eager_tasks):
    from billing.models import Account, WalletTransaction
    from billing.prepaid import account_prepaid_debit
    from tests import factories

    data = demo_ensure(state_path=tmp_path / "demo.json")
    demo_ensure(state_path=tmp_path / "demo.json")  # a second run finds the rule and action
    topup = data["automations_topup"]
    rule = Rule.objects.get(pk=topup["rule"]["id"])
    assert [a.type for a in rule.actions.all()] == ["wallet_topup"]
    assert rule.jsonlogic == {"==": [{"var": "event.wallet_id"}, data["billing"]["wallet_id"]]}
    assert Rule.objects.filter(name="Demo top-up on low balance").count() == 1

    # The demo already stored the grid meter's recent history (its last reading is within the
    # last half hour): the simulator continues its register, drawing 2 kWh every 5 minutes, and
    # the account is charged from that last reading on, which takes the wallet below 5.00 EUR.
    account = Account.objects.get(pk=data["billing"]["account_id"])
    since = factories.readings_continue(account.meters.get(), kwh_per_step=2.0)
    Account.objects.filter(pk=account.pk).update(debited_through=None, created_at=since)
    assert account_prepaid_debit(account_id=account.pk) >= 1  # two at a cycle's turn

    ledger = WalletTransaction.objects.filter(wallet_id=topup["wallet_id"]).order_by("id")
    kinds = [row.kind for row in ledger]
    assert kinds[0] == "credit" and kinds.count("topup") == 1 and set(kinds[1:]) == {"debit", "topup"}, kinds
    [delivery] = Delivery.objects.filter(rule=rule)
    assert delivery.status == "succeeded", delivery.last_error
    assert ledger.get(kind="topup").amount == Decimal(topup["amount"]) == Decimal("20.00")
    account.wallet.refresh_from_db()
    assert account.wallet.balance == sum(row.amount for row in ledger)

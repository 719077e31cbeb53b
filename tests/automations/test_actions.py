"""The non-webhook action types (automations.deliveries.actions): e-mail, annotations, wallet
top-ups waiting for billing, and plugins (settings list and entry points). Relay commands:
test_relay.py."""

from __future__ import annotations

import uuid

import pytest
from django.core import mail
from django.utils import timezone

from automations import plugins
from automations.deliveries import services as delivery_services
from automations.engine import evaluation
from automations.models import Annotation, Delivery
from energy.events import DATA_INGESTED
from joulepoint.events.types import Event
from tests import factories

pytestmark = pytest.mark.django_db


def fire(org, meter, action, power: float = 9000, **event) -> Delivery:
    factories.RuleFactory(organization=org, actions=[action])
    return fire_again(org, meter, power, **event)


def fire_again(org, meter, power: float = 9000, **extra) -> Delivery:
    reading = {
        "meter_id": meter.pk,
        "site_id": meter.site_id,
        "total_power": power,
        "timestamp": "2025-10-16T10:00:00Z",
        **extra,
    }
    event = Event(
        organization_id=org.pk,
        key=DATA_INGESTED,
        payload={"readings": [reading]},
        source="test",
        occurred_at=timezone.now(),
        id=uuid.uuid4(),
    )
    ids = evaluation.rules_evaluate(event=event).deliveries
    delivery_services.delivery_attempt(delivery_id=ids[0])
    return Delivery.objects.get(pk=ids[0])


def test_notify_email(org, meter):
    action = factories.ActionFactory(
        organization=org,
        type="notify_email",
        config={
            "recipients": ["ops@example.com"],
            "subject_template": "High power {total_power:.0f} W",
            "body_template": "Meter {meter_id}: {missing}.",
        },
    )
    delivery = fire(org, meter, action)
    assert delivery.status == "succeeded"
    [message] = mail.outbox
    assert message.subject == "High power 9000 W" and message.to == ["ops@example.com"]
    assert message.body == f"Meter {meter.pk}: ."


def test_annotate_writes_the_meter_timeline_and_the_api_lists_it(api, org, meter, outsider_api):
    action = factories.ActionFactory(
        organization=org, type="annotate", config={"text_template": "Peak {total_power} W"}
    )
    delivery = fire(org, meter, action)
    assert delivery.status == "succeeded"
    annotation = Annotation.objects.get()
    assert annotation.text == "Peak 9000 W" and annotation.meter_id == meter.pk and annotation.source == "rule"
    assert annotation.ts.isoformat().startswith("2025-10-16T10:00:00")
    listed = api.get(
        f"/api/automations/annotations/?meter={meter.pk}&start=2025-10-16T00:00:00Z&end=2025-10-17T00:00:00Z"
    ).json()
    assert listed["count"] == 1 and listed["results"][0]["text"] == "Peak 9000 W"
    assert api.get(f"/api/automations/annotations/?meter={meter.pk}&start=2025-10-17T00:00:00Z").json()["count"] == 0
    assert outsider_api.get("/api/automations/annotations/").json()["count"] == 0
    # running the same delivery again does not annotate twice
    Delivery.objects.filter(pk=delivery.pk).update(status="pending", next_attempt_at=timezone.now())
    delivery_services.delivery_attempt(delivery_id=delivery.pk)
    assert Annotation.objects.count() == 1


def test_a_rules_annotation_is_visible_through_the_analytics_api(api, org, meter, outsider_api):
    action = factories.ActionFactory(
        organization=org, type="annotate", config={"text_template": "Peak {total_power} W"}
    )
    rule = fire(org, meter, action).rule
    window = {"start": "2025-10-16T00:00:00Z", "end": "2025-10-17T00:00:00Z"}
    data = api.get("/api/energy/analytics/annotations", {"meter": meter.pk, **window}).json()
    assert [(a["text"], a["source"], a["rule_id"], a["ts"]) for a in data["annotations"]] == [
        ("Peak 9000 W", "rule", rule.pk, "2025-10-16T10:00:00Z")
    ]
    assert outsider_api.get("/api/energy/analytics/annotations", {"meter": meter.pk, **window}).status_code == 404


def test_annotate_without_a_meter_is_dead_not_a_crash(org, meter):
    action = factories.ActionFactory(organization=org, type="annotate", config={"text_template": "x"})
    factories.RuleFactory(organization=org, actions=[action], event_key="pq.event", jsonlogic={"==": [1, 1]})
    event = Event(
        organization_id=org.pk, key="pq.event", payload={"kind": "sag"}, source="t", occurred_at=timezone.now()
    )
    [delivery_id] = evaluation.rules_evaluate(event=event).deliveries
    assert delivery_services.delivery_attempt(delivery_id=delivery_id) == "dead"


def test_wallet_topup_waits_for_billing(api, org, meter, monkeypatch):
    # As in a deployment without the billing app (billing is installed here: tests/billing covers the credit).
    monkeypatch.setattr("automations.deliveries.actions.wallet_topup.billing_topup_service", lambda: None)
    action = factories.ActionFactory(
        organization=org, type="wallet_topup", config={"wallet_id": 3, "amount": "25.00", "currency": "EUR"}
    )
    delivery = fire(org, meter, action)
    assert delivery.status == "waiting" and delivery.attempts == 0
    assert "billing" in delivery.last_error
    assert delivery.payload == {"wallet_id": 3, "amount": "25.00", "currency": "EUR"}
    assert api.get("/api/automations/deliveries/?status=waiting").json()["count"] == 1


def test_wallet_topup_credits_through_the_billing_seam_once_it_exists(org, meter, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "automations.deliveries.actions.wallet_topup.billing_topup_service",
        lambda: lambda **kwargs: calls.append(kwargs) or {"transaction_id": 1},
    )
    action = factories.ActionFactory(
        organization=org, type="wallet_topup", config={"wallet_id": 3, "amount": "25.00", "currency": "EUR"}
    )
    delivery = fire(org, meter, action)
    assert delivery.status == "succeeded"
    [call] = calls
    assert str(call["amount"]) == "25.00" and call["idempotency_key"] == delivery.idempotency_key


def test_plugin_action_runs_the_example_plugin(org, meter, caplog):
    action = factories.ActionFactory(
        organization=org,
        type="plugin_action",
        config={
            "plugin": "log_event",
            "params": {"message": "meter {meter_id} at {total_power} W", "level": "warning"},
        },
    )
    delivery = fire(org, meter, action)
    assert delivery.status == "succeeded"
    assert delivery.result == {"logged": f"meter {meter.pk} at 9000 W"}
    assert f"meter {meter.pk} at 9000 W" in caplog.text


def test_plugins_register_through_entry_points(monkeypatch, settings):
    class Ping:
        name = "ping"

        def validate_params(self, params):
            return params

        def execute(self, *, params, context, organization_id):
            return {"pong": True}

    class EntryPoint:
        name = "ping"

        def load(self):
            return Ping

    monkeypatch.setattr(
        plugins.metadata, "entry_points", lambda group: [EntryPoint()] if group == plugins.ENTRY_POINT_GROUP else []
    )
    plugins.registry.cache_clear()
    try:
        assert set(plugins.registry()) == {"log_event", "ping"}
    finally:
        plugins.registry.cache_clear()

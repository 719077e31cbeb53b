"""The engine end to end inside one process: ingest over HTTP → one task per batch → rules →
deliveries to a real local receiver; throttle/dedupe; chaining on alerts (alerts themselves:
test_alerts.py)."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import transaction
from django.utils import timezone

from automations import signing, tasks
from automations.engine import evaluation
from automations.models import Alert, Delivery
from energy.events import DATA_INGESTED
from joulepoint.events.models import OutboxEvent
from joulepoint.events.types import Event
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def reading(total_power: float, minute: int = 0) -> dict:
    return {"total_power": total_power, "total_energy": 1500.0, "timestamp": f"2025-10-16T10:{minute:02d}:00Z"}


def test_seed_rule_fires_on_6kw_not_on_4kw(eager_tasks, high_power_rule, meter, device_client, receiver):
    device = device_client(meter)
    assert device.post("/api/energy/energy-data/", reading(4000, 0)).status_code == 201
    assert not Delivery.objects.exists()
    assert device.post("/api/energy/energy-data/", reading(6000, 1)).status_code == 201
    [delivery] = Delivery.objects.all()
    assert delivery.status == "succeeded", delivery.last_error
    assert delivery.response_code == 200 and delivery.attempts == 1 and delivery.latency_ms > 0
    [request] = receiver.requests
    assert signing.verify(
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body=request["body"], headers=request["headers"]
    )
    assert request["headers"]["webhook-id"] == delivery.webhook_id
    assert request["headers"]["x-env"] == "test"
    body = json.loads(request["body"])
    assert body["type"] == "data.ingested"
    assert body["data"]["event"]["total_power"] == 6000 and body["data"]["event"]["meter_id"] == meter.pk
    assert body["data"]["rule"]["name"] == "HighPower"


def test_one_batch_is_one_task_and_throttle_dedupes_per_meter(
    eager_tasks, high_power_rule, site, device_client, receiver, monkeypatch
):
    meters = [factories.MeterFactory(site=site) for _ in range(2)]
    gateway = factories.GatewayFactory(site=site)
    calls = []
    original = tasks.rules_evaluate_event.delay
    monkeypatch.setattr(tasks.rules_evaluate_event, "delay", lambda m: (calls.append(m), original(m))[1])
    batch = [
        {"meter_id": m.pk, **reading(power, minute)} for minute, power in enumerate([6000, 7000, 8000]) for m in meters
    ]
    response = device_client(gateway).post("/api/energy/energy-data/bulk", batch)
    assert response.status_code == 201
    assert len(calls) == 1  # one hop for the batch
    # 6 readings above threshold, but the 300 s throttle per meter lets one per meter through
    assert Delivery.objects.count() == 2
    assert sorted(Delivery.objects.values_list("context__meter_id", flat=True)) == sorted(m.pk for m in meters)
    assert len(receiver.requests) == 2
    # a later batch inside the window is still throttled
    device_client(gateway).post("/api/energy/energy-data/bulk", [{"meter_id": meters[0].pk, **reading(9000, 30)}])
    assert Delivery.objects.count() == 2


def _event(org, key, payload, event_id=None) -> Event:
    return Event(
        organization_id=org.pk,
        key=key,
        payload=payload,
        source="test",
        occurred_at=timezone.now(),
        id=event_id or uuid.uuid4(),
    )


def test_evaluating_the_same_event_twice_creates_nothing_new(high_power_rule, org, meter):
    event = _event(org, DATA_INGESTED, {"readings": [{"meter_id": meter.pk, "total_power": 6500}]})
    first = evaluation.rules_evaluate(event=event)
    second = evaluation.rules_evaluate(event=event)
    assert len(first.deliveries) == 1
    assert Delivery.objects.count() == 1
    assert second.suppressed == 0  # its own throttle mark is recognised, not counted as a repeat


def test_throttle_is_per_dedupe_key_and_expires(org, meter, webhook_action):
    rule = factories.RuleFactory(organization=org, throttle_seconds=1, actions=[webhook_action])
    other = factories.MeterFactory(site=meter.site)
    events = [
        _event(org, DATA_INGESTED, {"readings": [{"meter_id": m.pk, "total_power": 9000}]})
        for m in (meter, meter, other)
    ]
    fired = [len(evaluation.rules_evaluate(event=e).deliveries) for e in events]
    assert fired == [1, 0, 1]
    assert rule.throttle_seconds == 1
    import time

    time.sleep(1.2)
    assert (
        len(
            evaluation.rules_evaluate(
                event=_event(org, DATA_INGESTED, {"readings": [{"meter_id": meter.pk, "total_power": 9000}]})
            ).deliveries
        )
        == 1
    )


def test_chaining_on_alert_triggered_with_a_loop_guard(eager_tasks, org, meter, settings):
    settings.AUTOMATIONS_MAX_CHAIN_DEPTH = 3
    base = factories.RuleFactory(organization=org, name="base", alert_severity="major")
    # escalates any alert into another alert: would loop forever without the guard
    escalate = factories.RuleFactory(
        organization=org,
        name="escalate",
        event_key="alert.triggered",
        alert_severity="critical",
        jsonlogic={"in": [{"var": "event.severity"}, ["major", "critical"]]},
        dedupe_template="escalated:{alert_id}",
    )
    annotate = factories.ActionFactory(organization=org, type="annotate", config={"text_template": "chain {chain}"})
    escalate.rule_actions.create(action=annotate)

    with transaction.atomic():
        evaluation.rules_evaluate(
            event=_event(org, DATA_INGESTED, {"readings": [{"meter_id": meter.pk, "total_power": 9000}]})
        )
    # base raises alert 1 → escalate fires once (alert 2) → escalate is already in the chain: stop
    alerts = list(Alert.objects.order_by("id"))
    assert [a.rule_id for a in alerts] == [base.pk, escalate.pk]
    assert Delivery.objects.filter(action_type="annotate", status="succeeded").count() == 1
    assert OutboxEvent.objects.filter(key="alert.triggered").count() == 2
    assert all(row.status == "dispatched" for row in OutboxEvent.objects.all())


def test_chain_depth_limit_stops_publishing(eager_tasks, org, meter, settings):
    settings.AUTOMATIONS_MAX_CHAIN_DEPTH = 2
    factories.RuleFactory(organization=org, name="r0", alert_severity="major")
    for n in range(1, 4):
        factories.RuleFactory(
            organization=org,
            name=f"r{n}",
            event_key="alert.triggered",
            alert_severity="major",
            jsonlogic={"==": [1, 1]},
            dedupe_template=f"r{n}:{{alert_id}}",
        )

    with transaction.atomic():
        evaluation.rules_evaluate(
            event=_event(org, DATA_INGESTED, {"readings": [{"meter_id": meter.pk, "total_power": 9000}]})
        )
    published = OutboxEvent.objects.filter(key="alert.triggered")
    assert max(len(row.payload["chain"]) for row in published) == 2
    # r0's alert triggers r1..r3 (depth 2); their alerts are at the maximum depth and trigger nothing
    assert Alert.objects.count() == 1 + 3

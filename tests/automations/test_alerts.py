"""Alerts (automations.alerts): lifecycle through the API, one open alert per rule and subject."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from automations import alerts
from automations.engine import evaluation
from automations.models import Alert
from energy.events import DATA_INGESTED
from joulepoint.events.models import OutboxEvent
from tests import factories
from tests.automations.test_engine import _event

pytestmark = pytest.mark.django_db(transaction=True)


def test_alert_lifecycle(api, org, meter):
    rule = factories.RuleFactory(
        organization=org, alert_severity="critical", alert_message_template="{total_power} W on meter {meter_id}"
    )
    for power in (6000, 6100):
        evaluation.rules_evaluate(
            event=_event(
                org,
                DATA_INGESTED,
                {"readings": [{"meter_id": meter.pk, "site_id": meter.site_id, "total_power": power}]},
            )
        )
    [alert] = Alert.objects.all()
    assert alert.severity == "critical" and alert.status == "active" and alert.occurrences == 2
    assert alert.subject == f"meter:{meter.pk}" and alert.meter_id == meter.pk and alert.rule_id == rule.pk
    assert alert.message == f"6000 W on meter {meter.pk}"
    assert alert.event["total_power"] == 6000
    [published] = OutboxEvent.objects.filter(key="alert.triggered")
    assert published.payload["alert_id"] == alert.pk and published.payload["chain"] == [rule.pk]

    listed = api.get("/api/automations/alerts/?status=active&severity=critical").json()
    assert listed["count"] == 1
    assert api.get("/api/automations/alerts/?severity=info").json()["count"] == 0
    ack = api.post(f"/api/automations/alerts/{alert.pk}/acknowledge/").json()
    assert ack["status"] == "acknowledged" and ack["acknowledged_by"].startswith("application:")
    cleared = api.post(f"/api/automations/alerts/{alert.pk}/clear").json()
    assert cleared["status"] == "cleared" and cleared["cleared_at"]
    # once cleared, a new firing opens a new alert
    evaluation.rules_evaluate(
        event=_event(org, DATA_INGESTED, {"readings": [{"meter_id": meter.pk, "total_power": 7000}]})
    )
    assert Alert.objects.filter(status="active").count() == 1 and Alert.objects.count() == 2


def test_one_open_alert_per_rule_and_subject_even_when_two_workers_race(org, meter, monkeypatch):
    rule = factories.RuleFactory(organization=org, alert_severity="major")
    first = _event(org, DATA_INGESTED, {"readings": [{"meter_id": meter.pk, "total_power": 6000}]})
    evaluation.rules_evaluate(event=first)
    [opened] = Alert.objects.all()

    # The database refuses a second open alert for the rule and subject, whoever inserts it.
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(organization=org, rule=rule, subject=opened.subject, event_id="other", event_key="x")

    # A worker that looked before the other committed finds nothing open, inserts, hits the
    # constraint, and counts its firing on the alert the other opened.
    looks = []
    real_bump = alerts._open_alert_bump

    def bump_that_misses_once(**kwargs):
        looks.append(kwargs["sub_id"])
        return False if len(looks) == 1 else real_bump(**kwargs)

    monkeypatch.setattr(alerts, "_open_alert_bump", bump_that_misses_once)
    second = _event(org, DATA_INGESTED, {"readings": [{"meter_id": meter.pk, "total_power": 6100}]})
    evaluation.rules_evaluate(event=second)

    assert len(looks) == 2
    [alert] = Alert.objects.all()
    assert alert.pk == opened.pk and alert.occurrences == 2

"""The listeners' epoch across server processes (joulepoint.events.listeners): a rule created
through the API fires for the next reading whichever gunicorn worker takes it, although both
workers had kept "no rules" for its organization. Real gunicorn workers, Redis, a Celery worker
and a webhook receiver."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from django.conf import settings

from automations.engine import cache as rule_cache
from automations.models import Delivery
from tests import factories
from tests.automations.receiver import Receiver
from tests.automations.test_api import seed_rule
from tests.automations.worker import Worker, purge_queue
from tests.conftest import _token

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL,
        reason="server processes share the epoch through Redis; the embedded default is one process",
    ),
]

READINGS = 12  # each on a new connection: both workers get some, whichever accepts first


def post(url: str, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=10) as response:  # a new connection per request
        return response.status, json.loads(response.read())


def post_readings(base_url: str, meter, minutes: range) -> None:
    for minute in minutes:
        reading = {"total_power": 6000.0, "timestamp": f"2026-02-01T10:{minute:02d}:00Z"}
        status, body = post(f"{base_url}/api/energy/energy-data/", reading, {"X-Device-Key": str(meter.device_key)})
        assert status == 201, body


@pytest.fixture
def worker():
    purge_queue(settings.CELERY_BROKER_URL)
    running = Worker({"AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE": "1"}).start()
    yield running
    running.stop()


def test_a_rule_created_through_the_api_fires_in_every_worker_at_once(wsgi_server, worker, org, site):
    meter = factories.MeterFactory(site=site)
    # Ids restart with each test database; Redis outlives it and may still hold an answer.
    rule_cache.rules_changed(organization_id=org.pk)
    with Receiver() as receiver:
        action = factories.ActionFactory(organization=org)
        action.config["url"] = receiver.url
        action.save()
        # Both workers answer "no rules" for this organization, and keep that answer.
        post_readings(wsgi_server, meter, range(0, READINGS))

        # The seed's HighPower rule, firing for every reading rather than once per meter.
        rule = {**seed_rule(action.pk), "throttle_seconds": 0, "dedupe_template": "{meter_id}:{timestamp}"}
        token = _token(org, ["automations:write", "automations:read"])
        status, body = post(f"{wsgi_server}/api/automations/rules/", rule, {"Authorization": f"Bearer {token}"})
        assert status == 201, body

        post_readings(wsgi_server, meter, range(READINGS, 2 * READINGS))
        deadline = time.monotonic() + 60
        while Delivery.objects.filter(status="succeeded").count() < READINGS and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # a delivery for a reading before the rule would have had its chance too
        assert len(receiver.requests) == READINGS, worker.output()

    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}
    delivered = sorted(delivery.context["timestamp"] for delivery in Delivery.objects.all())
    assert delivered == [f"2026-02-01T10:{minute:02d}:00Z" for minute in range(READINGS, 2 * READINGS)]

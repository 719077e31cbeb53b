"""Automations end to end: readings ingested over HTTP (live server), a real Celery worker on
Redis, a real HTTP receiver. Needs a broker (REDIS_URL / CELERY_BROKER_URL)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.conf import settings

from automations import signing
from automations.models import Delivery
from tests import factories
from tests.automations.receiver import Receiver
from tests.automations.worker import Worker, purge_queue
from tests.net import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.CELERY_BROKER_URL,
        reason="needs a Celery broker: set REDIS_URL (or CELERY_BROKER_URL); "
        "the embedded default runs tasks in-process",
    ),
]

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WORKER_ENV = {
    "AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE": "1",
    "AUTOMATIONS_RETRY_BASE_SECONDS": "1",
    "AUTOMATIONS_RETRY_FACTOR": "2",
    "AUTOMATIONS_RETRY_JITTER": "0.1",
    "AUTOMATIONS_MAX_ATTEMPTS": "12",
    "AUTOMATIONS_BREAKER_FAILURES": "1000",
}


@pytest.fixture
def broker():
    purge_queue(settings.CELERY_BROKER_URL)


@pytest.fixture
def worker(broker):
    w = Worker(WORKER_ENV).start()
    yield w
    w.stop()


def setup_rule(org, url: str):
    action = factories.ActionFactory(
        organization=org,
        config={"url": url, "method": "POST", "headers": {}, "secret": SECRET, "timeout_seconds": 2},
    )
    # the seed's HighPower rule
    return factories.RuleFactory(
        organization=org, name="HighPower", throttle_seconds=300, dedupe_template="meter:{meter_id}", actions=[action]
    )


def post_reading(live_server, meter, power: float, minute: int):
    import httpx
    import orjson

    body = orjson.dumps({"total_power": power, "total_energy": 1500.0, "timestamp": f"2025-10-16T10:{minute:02d}:00Z"})
    response = httpx.post(
        f"{live_server.url}/api/energy/energy-data/",
        content=body,
        headers={"X-Device-Key": str(meter.device_key), "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 201, response.text


def wait_for(predicate, timeout: float, worker: Worker, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}; worker log:\n{worker.output()}")


def assert_exactly_once(receiver: Receiver, deliveries) -> None:
    delivered = [r for r in receiver.requests if r["code"] == 200]
    counts = Counter(r["headers"]["webhook-id"] for r in delivered)
    assert set(counts) == {d.webhook_id for d in deliveries}
    assert set(counts.values()) == {1}, counts
    for r in delivered:
        assert signing.verify(secret=SECRET, body=r["body"], headers=r["headers"])


def test_high_power_rule_fires_on_6kw_not_4kw(live_server, worker, org, site):
    meter = factories.MeterFactory(site=site)
    with Receiver() as receiver:
        setup_rule(org, receiver.url)
        post_reading(live_server, meter, 4000, 0)
        post_reading(live_server, meter, 6000, 1)
        # The first delivery of a run also waits for the worker's cold start (a bound, not a timing).
        wait_for(lambda: Delivery.objects.filter(status="succeeded").exists(), 90, worker, "the delivery")
        time.sleep(1)  # the 4 kW reading had its chance too
        [delivery] = Delivery.objects.all()
        assert delivery.context["total_power"] == 6000
        assert_exactly_once(receiver, [delivery])


def test_receiver_down_then_up_every_event_once(live_server, worker, org, site):
    port = free_port()
    setup_rule(org, f"http://127.0.0.1:{port}/hook")
    meters = [factories.MeterFactory(site=site) for _ in range(5)]
    for minute, meter in enumerate(meters):
        post_reading(live_server, meter, 6000 + minute, minute)
    wait_for(
        lambda: Delivery.objects.filter(status="retrying", attempts__gte=2).count() == 5, 60, worker, "failed attempts"
    )
    with Receiver(port=port) as receiver:
        wait_for(lambda: Delivery.objects.filter(status="succeeded").count() == 5, 60, worker, "all deliveries")
        assert_exactly_once(receiver, Delivery.objects.all())


def test_worker_killed_during_retry_still_delivers(live_server, broker, org, site):
    port = free_port()
    setup_rule(org, f"http://127.0.0.1:{port}/hook")
    meters = [factories.MeterFactory(site=site) for _ in range(3)]
    first = Worker(WORKER_ENV).start()
    try:
        for minute, meter in enumerate(meters):
            post_reading(live_server, meter, 7000, minute)
        wait_for(lambda: Delivery.objects.filter(status="retrying").count() == 3, 60, first, "retrying deliveries")
    finally:
        first.kill()  # SIGKILL: held countdown tasks are never acknowledged
    with Receiver(port=port) as receiver:
        second = Worker(WORKER_ENV).start()
        try:
            wait_for(lambda: Delivery.objects.filter(status="succeeded").count() == 3, 90, second, "redelivery")
        finally:
            second.stop()
        assert_exactly_once(receiver, Delivery.objects.all())

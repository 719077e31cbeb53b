"""The delivery state machine against a real HTTP receiver on 127.0.0.1: failures, retries with
backoff, dead letters and manual retry, circuit breaker open/half-open/close with deferral."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from automations import signing
from automations.deliveries import sender
from automations.deliveries import services as delivery_services
from automations.deliveries.breaker import breaker_allow
from automations.engine import evaluation
from automations.models import CircuitBreaker, Delivery
from energy.events import DATA_INGESTED
from joulepoint.events.types import Event
from tests import factories
from tests.automations.receiver import Receiver

pytestmark = pytest.mark.django_db

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def fire(org, meter, power: float = 9000) -> Delivery:
    event = Event(
        organization_id=org.pk,
        key=DATA_INGESTED,
        payload={"readings": [{"meter_id": meter.pk, "total_power": power}]},
        source="test",
        occurred_at=timezone.now(),
        id=uuid.uuid4(),
    )
    [delivery_id] = evaluation.rules_evaluate(event=event).deliveries
    return Delivery.objects.get(pk=delivery_id)


def attempt(delivery: Delivery, at=None) -> Delivery:
    at = at or delivery.next_attempt_at
    delivery_services.delivery_attempt(delivery_id=delivery.pk, now=at)
    delivery.refresh_from_db()
    return delivery


@pytest.fixture
def rule(org, webhook_action):
    return factories.RuleFactory(organization=org, actions=[webhook_action])


def test_receiver_down_then_up_same_webhook_id_valid_signatures(rule, org, meter, receiver):
    receiver.responses = [500, 503]
    delivery = fire(org, meter)
    assert delivery.status == "pending" and delivery.webhook_id.startswith("msg_")
    delivery = attempt(delivery)
    assert delivery.status == "retrying" and delivery.attempts == 1 and delivery.response_code == 500
    assert "HTTP 500" in delivery.last_error
    first_wait = delivery.next_attempt_at
    delivery = attempt(delivery)
    assert delivery.status == "retrying" and delivery.attempts == 2 and delivery.response_code == 503
    delivery = attempt(delivery)
    assert delivery.status == "succeeded" and delivery.attempts == 3 and delivery.last_error == ""
    assert delivery.completed_at and first_wait
    ids = {r["headers"]["webhook-id"] for r in receiver.requests}
    assert ids == {delivery.webhook_id} and len(receiver.requests) == 3
    bodies = {r["body"] for r in receiver.requests}
    assert len(bodies) == 1  # the same body each time
    for r in receiver.requests:
        assert signing.verify(secret=SECRET, body=r["body"], headers=r["headers"])


def test_an_attempt_that_is_not_due_or_held_elsewhere_is_skipped(rule, org, meter, receiver):
    delivery = fire(org, meter)
    early = delivery.next_attempt_at - timedelta(seconds=1)
    assert delivery_services.delivery_attempt(delivery_id=delivery.pk, now=early) is None
    Delivery.objects.filter(pk=delivery.pk).update(
        status="in_flight", lease_until=timezone.now() + timedelta(minutes=1)
    )
    assert delivery_services.delivery_attempt(delivery_id=delivery.pk) is None
    assert receiver.requests == []
    # a worker that died mid-flight: once its lease is over, the delivery is taken over
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert delivery.pk in delivery_services.deliveries_due()
    assert delivery_services.delivery_attempt(delivery_id=delivery.pk) == "succeeded"


def test_backoff_schedule_is_exponential_with_bounded_jitter(settings):
    settings.AUTOMATIONS_RETRY_BASE_SECONDS = 5
    settings.AUTOMATIONS_RETRY_FACTOR = 4
    settings.AUTOMATIONS_RETRY_JITTER = 0.2
    settings.AUTOMATIONS_RETRY_MAX_DELAY_SECONDS = 3600
    rng = random.Random(7)
    for attempt_no, nominal in [(1, 5), (2, 20), (3, 80), (4, 320), (5, 1280), (6, 3600), (9, 3600)]:
        delays = [delivery_services.retry_delay(attempt_no, rng=rng) for _ in range(200)]
        assert min(delays) >= nominal * 0.8 and max(delays) <= nominal * 1.2
        assert max(delays) - min(delays) > nominal * 0.1  # jitter is real


def test_dead_after_max_attempts_then_manual_retry(api, rule, org, meter, receiver, settings):
    settings.AUTOMATIONS_MAX_ATTEMPTS = 3
    settings.AUTOMATIONS_BREAKER_FAILURES = 10
    receiver.default = 500
    delivery = fire(org, meter)
    for _ in range(3):
        delivery = attempt(delivery)
    assert delivery.status == "dead" and delivery.attempts == 3 and delivery.next_attempt_at is None
    listed = api.get("/api/automations/deliveries/?status=dead").json()
    assert listed["count"] == 1 and listed["results"][0]["last_error"].startswith("HTTP 500")
    receiver.default = 200
    response = api.post(f"/api/automations/deliveries/{delivery.pk}/retry/")
    assert response.status_code == 200 and response.json()["status"] in ("pending", "succeeded")
    delivery.refresh_from_db()
    if delivery.status == "pending":  # with a broker the attempt is queued; run it here
        delivery = attempt(delivery, timezone.now())
    assert delivery.status == "succeeded"
    assert {r["headers"]["webhook-id"] for r in receiver.requests} == {delivery.webhook_id}
    assert api.post(f"/api/automations/deliveries/{delivery.pk}/retry/").status_code == 400


def test_breaker_opens_defers_half_opens_and_closes(rule, org, meter, receiver, settings):
    settings.AUTOMATIONS_BREAKER_FAILURES = 2
    settings.AUTOMATIONS_BREAKER_COOLDOWN_SECONDS = 30
    settings.AUTOMATIONS_MAX_ATTEMPTS = 8
    receiver.default = 500
    a, b, c = (fire(org, meter) for _ in range(3))
    t0 = timezone.now()
    attempt(a, t0)
    breaker = CircuitBreaker.objects.get()
    assert breaker.state == "closed" and breaker.consecutive_failures == 1
    attempt(b, t0)
    breaker.refresh_from_db()
    assert breaker.state == "open" and breaker.retry_at > t0
    # open: the next delivery is deferred to the end of the cool-down, not attempted, not dropped
    sent = len(receiver.requests)
    c = attempt(c, t0)
    assert c.status == "deferred" and c.attempts == 0 and c.next_attempt_at == breaker.retry_at
    assert "circuit breaker open" in c.last_error and len(receiver.requests) == sent
    # after the cool-down one trial goes through (half-open); others wait for it
    receiver.default = 200
    later = breaker.retry_at + timedelta(seconds=1)
    b.refresh_from_db()
    assert breaker_allow(organization_id=org.pk, endpoint=c.endpoint, now=later, lease_seconds=60)[0]
    breaker.refresh_from_db()
    assert breaker.state == "half_open"
    assert not breaker_allow(organization_id=org.pk, endpoint=c.endpoint, now=later, lease_seconds=60)[0]
    CircuitBreaker.objects.filter(pk=breaker.pk).update(state="open")  # undo the probe above
    c = attempt(c, later)
    assert c.status == "succeeded"
    breaker.refresh_from_db()
    assert breaker.state == "closed" and breaker.consecutive_failures == 0


def test_a_failed_half_open_trial_reopens(rule, org, meter, receiver, settings):
    settings.AUTOMATIONS_BREAKER_FAILURES = 1
    receiver.default = 500
    a, b = fire(org, meter), fire(org, meter)
    t0 = timezone.now()
    attempt(a, t0)
    breaker = CircuitBreaker.objects.get()
    assert breaker.state == "open"
    b = attempt(b, breaker.retry_at + timedelta(seconds=1))
    assert b.status == "retrying" and b.attempts == 1
    breaker.refresh_from_db()
    assert breaker.state == "open" and breaker.retry_at > t0 + timedelta(seconds=29)


def test_deferred_deliveries_are_released_when_the_breaker_closes(rule, org, meter, receiver, settings, api):
    settings.AUTOMATIONS_BREAKER_FAILURES = 1
    receiver.default = 500
    first = fire(org, meter)
    t0 = timezone.now()
    attempt(first, t0)
    deferred = [attempt(d, timezone.now()) for d in [fire(org, meter) for _ in range(3)]]
    assert {d.status for d in deferred} == {"deferred"}
    metrics = api.get("/api/automations/deliveries/metrics").json()
    assert metrics["breakers"][0]["state"] == "open"
    assert metrics["overall"]["by_status"]["deferred"] == 3
    receiver.default = 200
    breaker = CircuitBreaker.objects.get()
    first.refresh_from_db()
    attempt(first, breaker.retry_at + timedelta(seconds=1))
    now = timezone.now()
    assert all(d.next_attempt_at <= now for d in Delivery.objects.filter(status="deferred"))
    for d in Delivery.objects.filter(status="deferred"):
        attempt(d, now)
    assert Delivery.objects.filter(status="succeeded").count() == 4


def test_metrics(api, rule, org, meter, receiver):
    receiver.responses = [500]
    for _ in range(3):
        attempt(fire(org, meter))
    body = api.get("/api/automations/deliveries/metrics/").json()
    overall = body["overall"]
    assert overall["total"] == 3 and overall["by_status"]["succeeded"] == 2 and overall["by_status"]["retrying"] == 1
    assert overall["success_rate"] == 1.0 and overall["latency_ms_p50"] > 0 and overall["latency_ms_p95"] > 0
    [per_action] = body["actions"]
    assert per_action["action_id"] == rule.rule_actions.get().action_id and per_action["total"] == 3
    assert body["breakers"][0]["state"] == "closed"
    assert api.get("/api/automations/deliveries/metrics?since=yesterday").status_code == 400
    assert api.get("/api/automations/deliveries/metrics?since=2025-13-45T00:00:00Z").status_code == 400
    far = api.get("/api/automations/deliveries/metrics", {"since": "2025-01-01T00:00:00+23:00"})
    assert far.status_code == 200 and far.json()["overall"]["total"] == 3
    odd = api.get("/api/automations/alerts/", {"created_after": "2025-01-01T00:00:00+23:59"})
    assert odd.status_code == 200


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        ("slow", "timeout after"),
        ("redirect", "redirect to http://169.254.169.254/ not followed"),
        ("refused", "ConnectError"),
    ],
)
def test_bad_receivers_fail_the_attempt_not_the_worker(org, meter, setup, error, settings):
    with Receiver() as receiver:
        url = receiver.url
        if setup == "slow":
            receiver.delay = 1.5
        elif setup == "redirect":
            receiver.default = 302
            receiver.redirect_to = "http://169.254.169.254/"
        action = factories.ActionFactory(
            organization=org,
            config={"url": url, "method": "POST", "headers": {}, "secret": SECRET, "timeout_seconds": 0.5},
        )
        factories.RuleFactory(organization=org, actions=[action])
    if setup != "refused":
        receiver = Receiver()
        receiver.delay = 1.5 if setup == "slow" else 0
        receiver.default = 302 if setup == "redirect" else 200
        receiver.redirect_to = "http://169.254.169.254/" if setup == "redirect" else ""
        action.config["url"] = receiver.url
        action.save()
    delivery = attempt(fire(org, meter))
    assert delivery.status == "retrying"
    assert error in delivery.last_error
    if setup != "refused":
        receiver.stop()


def test_a_huge_response_body_is_not_read_to_the_end(org, meter, receiver, webhook_action, settings):
    settings.AUTOMATIONS_WEBHOOK_MAX_RESPONSE_BYTES = 1024
    factories.RuleFactory(organization=org, actions=[webhook_action])
    receiver.body = b"x" * (20 * 1024 * 1024)
    delivery = attempt(fire(org, meter))
    assert delivery.status == "succeeded" and len(delivery.result["response"]) <= 500


def test_ssrf_guard_at_send_time(org, meter, webhook_action, settings, receiver):
    factories.RuleFactory(organization=org, actions=[webhook_action])
    delivery = fire(org, meter)
    settings.AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE = False
    delivery = attempt(delivery)
    assert delivery.status == "dead"
    assert "loopback" in delivery.last_error
    assert receiver.requests == []


def test_sweeper_requeues_due_deliveries_and_expires_commands(org, meter, rule, receiver, eager_tasks):
    delivery = fire(org, meter)
    Delivery.objects.filter(pk=delivery.pk).update(
        status="retrying", next_attempt_at=timezone.now() - timedelta(seconds=5)
    )
    result = delivery_services.deliveries_sweep()
    assert result["queued"] == 1
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"


def test_with_a_broker_the_sweeper_requeues_a_delivery_once_per_grace_period(org, meter, rule, settings, monkeypatch):
    """Its first message is on its way (or in a backlog); only one lost for the whole grace
    period is queued again, and then not again on every 5-second run."""
    settings.AUTOMATIONS_SWEEP_GRACE_SECONDS = 60
    queued: list[list[int]] = []
    monkeypatch.setattr(delivery_services, "queue_is_eager", lambda: False)
    monkeypatch.setattr(delivery_services, "deliveries_enqueue", lambda ids: queued.append(list(ids)))
    delivery = fire(org, meter)
    abandoned = fire(org, meter)
    t0 = delivery.next_attempt_at
    Delivery.objects.filter(pk=abandoned.pk).update(status="in_flight", lease_until=t0 + timedelta(seconds=30))

    assert delivery_services.deliveries_sweep(now=t0 + timedelta(seconds=5))["queued"] == 0
    assert delivery_services.deliveries_sweep(now=t0 + timedelta(seconds=61))["queued"] == 2
    assert delivery_services.deliveries_sweep(now=t0 + timedelta(seconds=66))["queued"] == 0
    assert delivery_services.deliveries_sweep(now=t0 + timedelta(seconds=122))["queued"] == 2

    assert [sorted(ids) for ids in queued if ids] == [sorted([delivery.pk, abandoned.pk])] * 2
    abandoned.refresh_from_db()
    assert (abandoned.status, abandoned.lease_until) == ("pending", None)  # claimable by the queued message
    assert delivery_services.delivery_attempt(delivery_id=abandoned.pk, now=t0 + timedelta(seconds=123)) == "succeeded"


def fire_many(org, meter, count: int) -> list[Delivery]:
    event = Event(
        organization_id=org.pk,
        key=DATA_INGESTED,
        payload={"readings": [{"meter_id": meter.pk, "total_power": 9000 + i} for i in range(count)]},
        source="test",
        occurred_at=timezone.now(),
        id=uuid.uuid4(),
    )
    ids = evaluation.rules_evaluate(event=event).deliveries
    return list(Delivery.objects.filter(pk__in=ids).order_by("pk"))


def test_a_batch_records_each_outcome_on_its_own_row(rule, org, meter, receiver, settings):
    """One task's attempts are written back in one statement; each row still gets its own result."""
    settings.AUTOMATIONS_BREAKER_FAILURES = 10
    receiver.responses = [200, 500, 200, 404]
    deliveries = fire_many(org, meter, 4)
    now = timezone.now()
    results = delivery_services.deliveries_attempt(delivery_ids=[d.pk for d in deliveries], now=now)
    assert results == {deliveries[0].pk: "succeeded", deliveries[1].pk: "retrying",
                       deliveries[2].pk: "succeeded", deliveries[3].pk: "retrying"}  # fmt: skip
    rows = {d.pk: d for d in Delivery.objects.filter(pk__in=results)}
    ok, failed = rows[deliveries[0].pk], rows[deliveries[1].pk]
    assert ok.attempts == 1 and ok.response_code == 200 and ok.result == {"response": "ok"}
    assert ok.completed_at is not None and ok.next_attempt_at is None and ok.lease_until is None
    assert ok.latency_ms is not None and ok.last_error == ""
    assert failed.attempts == 1 and failed.response_code == 500 and "HTTP 500" in failed.last_error
    assert failed.next_attempt_at > now and failed.completed_at is None and failed.lease_until is None
    assert rows[deliveries[3].pk].response_code == 404
    # the same webhook-id goes out again on the retry
    delivery_services.deliveries_attempt(delivery_ids=[failed.pk], now=failed.next_attempt_at)
    failed.refresh_from_db()
    assert failed.status == "succeeded" and failed.attempts == 2
    sent = [r["headers"]["webhook-id"] for r in receiver.requests]
    assert sent.count(failed.webhook_id) == 2 and len(sent) == 5


class SpyPool:
    """Stands in for the sender thread pool; records what was handed to it."""

    def __init__(self):
        self.batches: list[int] = []

    def map(self, fn, items):
        self.batches.append(len(items))
        return [fn(item) for item in items]


@pytest.mark.parametrize(("budget_ms", "handed_to_threads"), [(60_000, []), (0, [4])])
def test_a_task_sends_one_by_one_until_its_sends_take_long(
    rule, org, meter, receiver, settings, monkeypatch, budget_ms, handed_to_threads
):
    """Fast receivers: no threads (they cost CPU); once the sends exceed the budget, the rest go
    to the sender threads at once."""
    settings.AUTOMATIONS_WEBHOOK_SEQUENTIAL_MS = budget_ms
    pool = SpyPool()
    monkeypatch.setattr(sender, "_sender_pool", lambda: pool)
    deliveries = fire_many(org, meter, 5)
    results = delivery_services.deliveries_attempt(delivery_ids=[d.pk for d in deliveries])
    assert set(results.values()) == {"succeeded"} and len(receiver.requests) == 5
    assert pool.batches == handed_to_threads

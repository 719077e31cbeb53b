"""The event bus: publish(), the outbox and the fan-out to subscribers.

Celery is made eager here explicitly (whatever the environment's broker), so a committed
must-not-lose event is dispatched in-process; tests that want the row left pending capture
the on-commit hooks without running them and call the dispatch service themselves.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from energy.models import Site
from joulepoint.celery import app as celery_app
from joulepoint.events import publish, publish_many
from joulepoint.events.models import OutboxEvent
from joulepoint.events.services import (
    outbox_event_dispatch,
    outbox_event_fail,
    outbox_pending_ids,
    subscribe,
    unsubscribe,
)
from joulepoint.events.tasks import outbox_dispatch, outbox_dispatch_many
from joulepoint.events.types import Event

pytestmark = pytest.mark.django_db

ALERT = {"rule": "overload", "meter_id": 7, "value": 41250.0}


@pytest.fixture(autouse=True)
def eager_celery():
    """Tasks run in this process, so no test depends on (or leaks messages to) a broker."""
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = False
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = saved


class Recorder:
    def __init__(self):
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def keys(self) -> list[str]:
        return [event.key for event in self.events]


@pytest.fixture
def received():
    """Every event that reaches subscribers, in order."""
    recorder = Recorder()
    subscribe(recorder)
    yield recorder
    unsubscribe(recorder)


@pytest.fixture
def failing_subscriber():
    calls = []

    def handler(event: Event) -> None:
        calls.append(event)
        # A subscriber's own writes must not survive its failure.
        Site.objects.create(organization_id=event.organization_id, name=f"written by failed handler {len(calls)}")
        raise RuntimeError("webhook endpoint unreachable")

    subscribe(handler, keys=["alert.triggered"])
    yield calls
    unsubscribe(handler)


def publish_uncommitted(django_capture_on_commit_callbacks, org, key="alert.triggered", payload=None) -> Event:
    """Publish and commit, but keep the post-commit hand-off to Celery from running."""
    with django_capture_on_commit_callbacks(execute=False):
        return publish(org, key, payload or ALERT, source="tests")


def test_must_not_lose_event_is_an_outbox_row_in_the_callers_transaction(
    org, received, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False), transaction.atomic():
        event = publish(org, "alert.triggered", ALERT, source="automations")
        row = OutboxEvent.objects.get()  # visible inside the transaction, before commit
        assert received.events == []
    assert row.pk == event.id
    assert row.organization == org
    assert row.key == "alert.triggered"
    assert row.payload == ALERT
    assert row.source == "automations"
    assert row.status == OutboxEvent.Status.PENDING
    assert row.attempts == 0


@pytest.mark.parametrize("key", ["alert.triggered", "data.ingested"])
def test_rolled_back_cause_takes_its_event_with_it(org, received, django_capture_on_commit_callbacks, key):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        Site.objects.create(organization=org, name="the cause")
        publish(org, key, ALERT, source="tests")
        raise RuntimeError("the cause failed")
    assert not Site.objects.filter(name="the cause").exists()
    assert not OutboxEvent.objects.exists()
    assert callbacks == []
    assert received.events == []


def test_data_ingested_reaches_subscribers_once_after_commit(org, received, django_capture_on_commit_callbacks):
    payload = {"meter_ids": [1, 2], "count": 1000}
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            publish(org, "data.ingested", payload, source="ingest.http")
            assert received.events == []
        assert received.events == []  # still inside the test's outer transaction
    assert received.keys == ["data.ingested"]
    event = received.events[0]
    assert event.organization_id == org.pk
    assert event.payload == payload
    assert event.source == "ingest.http"
    # Telemetry events are transient: no outbox row per batch.
    assert not OutboxEvent.objects.exists()


def test_committed_must_not_lose_event_is_dispatched_to_subscribers(org, received, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        event = publish(org, "alert.triggered", ALERT, source="automations")
    assert received.keys == ["alert.triggered"]
    assert received.events[0].id == event.id
    assert received.events[0].payload == ALERT
    row = OutboxEvent.objects.get(pk=event.id)
    assert row.status == OutboxEvent.Status.DISPATCHED
    assert row.dispatched_at is not None
    assert row.attempts == 1


def test_publish_accepts_an_organization_id(org, received, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        publish(org.pk, "data.ingested", {"count": 1}, source="tests")
    assert received.events[0].organization_id == org.pk


def test_unknown_key_is_refused(org, received, django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(ValueError, match=r"alert\.trigered"),
    ):
        publish(org, "alert.trigered", ALERT, source="tests")
    assert callbacks == []
    assert not OutboxEvent.objects.exists()
    assert received.events == []


def test_subscriber_receives_only_its_keys(org, django_capture_on_commit_callbacks):
    alerts = Recorder()
    subscribe(alerts, keys=["alert.triggered", "pq.event"])
    try:
        with django_capture_on_commit_callbacks(execute=True):
            publish(org, "data.ingested", {"count": 3}, source="tests")
            publish(org, "pq.event", {"kind": "sag"}, source="tests")
            publish(org, "wallet.low_balance", {"balance": "1.00"}, source="tests")
    finally:
        unsubscribe(alerts)
    assert alerts.keys == ["pq.event"]


def test_subscribe_twice_calls_once(org, django_capture_on_commit_callbacks):
    recorder = Recorder()
    subscribe(recorder)
    subscribe(recorder)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            publish(org, "data.ingested", {}, source="tests")
    finally:
        unsubscribe(recorder)
    assert recorder.keys == ["data.ingested"]


def test_dispatch_calls_subscribers_and_marks_dispatched(org, received, django_capture_on_commit_callbacks):
    event = publish_uncommitted(django_capture_on_commit_callbacks, org)
    assert received.events == []
    assert OutboxEvent.objects.get().status == OutboxEvent.Status.PENDING

    assert outbox_event_dispatch(event_id=str(event.id)) is True

    assert received.keys == ["alert.triggered"]
    delivered = received.events[0]
    assert (delivered.id, delivered.organization_id, delivered.payload, delivered.occurred_at) == (
        event.id,
        org.pk,
        ALERT,
        event.occurred_at,
    )
    row = OutboxEvent.objects.get()
    assert row.status == OutboxEvent.Status.DISPATCHED
    assert row.attempts == 1
    assert row.dispatched_at is not None


def test_dispatch_twice_is_safe(org, received, django_capture_on_commit_callbacks):
    event = publish_uncommitted(django_capture_on_commit_callbacks, org)
    assert outbox_event_dispatch(event_id=str(event.id)) is True
    dispatched_at = OutboxEvent.objects.get().dispatched_at

    assert outbox_event_dispatch(event_id=str(event.id)) is False

    assert len(received.events) == 1
    row = OutboxEvent.objects.get()
    assert row.attempts == 1
    assert row.dispatched_at == dispatched_at


def test_dispatch_of_a_missing_row_is_a_no_op(received):
    assert outbox_event_dispatch(event_id="00000000-0000-0000-0000-000000000000") is False
    assert received.events == []


def test_failing_subscriber_leaves_the_row_pending_with_its_error(
    org, failing_subscriber, django_capture_on_commit_callbacks
):
    event = publish_uncommitted(django_capture_on_commit_callbacks, org)

    with pytest.raises(RuntimeError, match="webhook endpoint unreachable"):
        outbox_event_dispatch(event_id=str(event.id))
    row = OutboxEvent.objects.get()
    assert row.status == OutboxEvent.Status.PENDING
    assert row.attempts == 1
    assert "webhook endpoint unreachable" in row.last_error
    assert row.dispatched_at is None
    assert not Site.objects.filter(name__startswith="written by failed handler").exists()

    with pytest.raises(RuntimeError):
        outbox_event_dispatch(event_id=str(event.id))
    assert OutboxEvent.objects.get().attempts == 2
    assert len(failing_subscriber) == 2
    # An attempted row is in its task's retry schedule; the beat sweep leaves it alone.
    assert str(event.id) not in outbox_pending_ids(older_than=timedelta(0))


def test_a_row_given_up_on_is_failed_and_keeps_its_error(org, failing_subscriber, django_capture_on_commit_callbacks):
    event = publish_uncommitted(django_capture_on_commit_callbacks, org)
    with pytest.raises(RuntimeError):
        outbox_event_dispatch(event_id=str(event.id))

    outbox_event_fail(event_id=str(event.id))

    row = OutboxEvent.objects.get()
    assert row.status == OutboxEvent.Status.FAILED
    assert "webhook endpoint unreachable" in row.last_error
    assert str(event.id) not in outbox_pending_ids(older_than=timedelta(0))


def test_row_is_dispatched_once_the_subscriber_recovers(org, received, django_capture_on_commit_callbacks):
    healthy = {"yes": False}

    def flaky(event: Event) -> None:
        if not healthy["yes"]:
            raise ConnectionError("broker down")

    subscribe(flaky, keys=["alert.triggered"])
    try:
        event = publish_uncommitted(django_capture_on_commit_callbacks, org)
        with pytest.raises(ConnectionError):
            outbox_event_dispatch(event_id=str(event.id))
        healthy["yes"] = True
        assert outbox_event_dispatch(event_id=str(event.id)) is True
    finally:
        unsubscribe(flaky)
    row = OutboxEvent.objects.get()
    assert row.status == OutboxEvent.Status.DISPATCHED
    assert row.attempts == 2
    assert row.last_error == ""


def test_failing_telemetry_subscriber_does_not_stop_the_others(org, django_capture_on_commit_callbacks):
    def broken(event: Event) -> None:
        raise RuntimeError("dashboard group gone")

    recorder = Recorder()
    subscribe(broken, keys=["data.ingested"])
    subscribe(recorder, keys=["data.ingested"])
    try:
        with django_capture_on_commit_callbacks(execute=True):
            publish(org, "data.ingested", {"count": 1}, source="tests")
    finally:
        unsubscribe(broken)
        unsubscribe(recorder)
    assert recorder.keys == ["data.ingested"]


def _age(event_id, seconds: int) -> None:
    OutboxEvent.objects.filter(pk=event_id).update(created_at=timezone.now() - timedelta(seconds=seconds))


def test_pending_ids_finds_rows_left_pending(org, other_org, django_capture_on_commit_callbacks):
    stale = publish_uncommitted(django_capture_on_commit_callbacks, org)
    stale_other_org = publish_uncommitted(django_capture_on_commit_callbacks, other_org)
    fresh = publish_uncommitted(django_capture_on_commit_callbacks, org)
    done = publish_uncommitted(django_capture_on_commit_callbacks, org)
    for event in (stale, stale_other_org, done):
        _age(event.id, 60)
    assert outbox_event_dispatch(event_id=str(done.id)) is True

    pending = outbox_pending_ids()
    assert sorted(pending) == sorted([str(stale.id), str(stale_other_org.id)])
    assert str(fresh.id) in outbox_pending_ids(older_than=timedelta(0))
    assert len(outbox_pending_ids(older_than=timedelta(0), limit=1)) == 1


def test_beat_task_redispatches_rows_left_pending(org, received, django_capture_on_commit_callbacks):
    """A process that died between commit and enqueue: the beat task finds and delivers the row."""
    event = publish_uncommitted(django_capture_on_commit_callbacks, org)
    _age(event.id, 60)

    assert outbox_dispatch() == 1

    assert received.keys == ["alert.triggered"]
    assert OutboxEvent.objects.get().status == OutboxEvent.Status.DISPATCHED
    assert outbox_dispatch() == 0


def test_outbox_rows_are_tenant_scoped(org, other_org, django_capture_on_commit_callbacks):
    mine = publish_uncommitted(django_capture_on_commit_callbacks, org)
    publish_uncommitted(django_capture_on_commit_callbacks, other_org)
    assert [row.pk for row in OutboxEvent.objects.for_org(org)] == [mine.id]


def test_publish_many_dispatches_its_rows_in_order_in_one_task(org, received, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as hooks:
        events = publish_many(
            [(org, "alert.triggered", {**ALERT, "value": value}, None) for value in (1.0, 2.0, 3.0)], source="tests"
        )
    assert len(hooks) == 1  # one hand-off to the broker for the three rows
    assert [event.payload["value"] for event in received.events] == [1.0, 2.0, 3.0]
    assert [event.id for event in received.events] == [event.id for event in events]
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {OutboxEvent.Status.DISPATCHED}


def test_a_failing_row_of_publish_many_stays_pending_and_the_others_are_dispatched(
    org, received, django_capture_on_commit_callbacks
):
    def refuse_the_second(event: Event) -> None:
        if event.payload["value"] == 2.0:
            raise ConnectionError("webhook endpoint unreachable")

    subscribe(refuse_the_second, keys=["alert.triggered"])
    try:
        with django_capture_on_commit_callbacks(execute=False) as hooks:
            events = publish_many(
                [(org, "alert.triggered", {**ALERT, "value": value}, None) for value in (1.0, 2.0, 3.0)],
                source="tests",
            )
        assert outbox_dispatch_many.delay([str(event.id) for event in events]).get() == 2
    finally:
        unsubscribe(refuse_the_second)
    assert len(hooks) == 1
    status = dict(OutboxEvent.objects.values_list("payload__value", "status"))
    assert status == {1.0: "dispatched", 2.0: "pending", 3.0: "dispatched"}
    assert "webhook endpoint unreachable" in OutboxEvent.objects.get(payload__value=2.0).last_error

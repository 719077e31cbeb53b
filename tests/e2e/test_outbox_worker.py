"""Must-not-lose events reach a real Celery worker through the broker.

Subscribers registered in this process do not exist in the worker, so the tests watch the
outbox row: the worker marks it dispatched once every (worker-side) subscriber ran.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from joulepoint.events import publish
from joulepoint.events.models import OutboxEvent
from joulepoint.events.services import outbox_event_dispatch
from joulepoint.events.tasks import outbox_dispatch
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TIMEOUT = 30.0


def wait_for_status(event_id, status: str) -> OutboxEvent:
    deadline = time.monotonic() + TIMEOUT
    while True:
        row = OutboxEvent.objects.get(pk=event_id)
        if row.status == status:
            return row
        if time.monotonic() > deadline:
            pytest.fail(f"outbox row still {row.status!r} after {TIMEOUT}s (attempts={row.attempts}): {row.last_error}")
        time.sleep(0.2)


def test_committed_event_is_dispatched_by_the_worker(celery_worker):
    org = factories.OrganizationFactory()
    with transaction.atomic():
        event = publish(org, "alert.triggered", {"rule": "overload", "value": 41250.0}, source="e2e")
        assert OutboxEvent.objects.get(pk=event.id).status == OutboxEvent.Status.PENDING

    row = wait_for_status(event.id, OutboxEvent.Status.DISPATCHED)
    assert row.attempts == 1
    assert row.dispatched_at is not None
    assert row.last_error == ""
    # Delivered once: a second dispatch finds nothing to do.
    assert outbox_event_dispatch(event_id=str(event.id)) is False


def test_rolled_back_event_never_reaches_the_worker(celery_worker):
    org = factories.OrganizationFactory()
    with pytest.raises(RuntimeError), transaction.atomic():
        rolled_back = publish(org, "alert.triggered", {"rule": "rolled back"}, source="e2e")
        raise RuntimeError("the cause failed")
    # A committed event published after it is a marker: once the worker has done it, it had its chance.
    with transaction.atomic():
        marker = publish(org, "alert.triggered", {"rule": "marker"}, source="e2e")
    wait_for_status(marker.id, OutboxEvent.Status.DISPATCHED)
    assert not OutboxEvent.objects.filter(pk=rolled_back.id).exists()


def test_row_left_pending_by_a_crashed_process_is_recovered_by_the_beat_task(celery_worker):
    org = factories.OrganizationFactory()
    # The process died between commit and enqueue: the row exists, no message was sent.
    row = OutboxEvent.objects.create(
        organization=org, key="pq.event", payload={"kind": "sag"}, source="e2e", occurred_at=timezone.now()
    )
    OutboxEvent.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(minutes=1))

    outbox_dispatch.delay()  # what beat sends every few seconds

    row = wait_for_status(row.pk, OutboxEvent.Status.DISPATCHED)
    assert row.attempts == 1

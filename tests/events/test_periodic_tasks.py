"""`manage.py periodic_tasks`: the beat schedule run in-process for the embedded default."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from automations.alerts import ALERT_TRIGGERED
from joulepoint.celery import app as celery_app
from joulepoint.events.management.commands.periodic_tasks import beat_schedule
from joulepoint.events.models import OutboxEvent
from joulepoint.events.services import subscribe, unsubscribe


@pytest.fixture(autouse=True)
def eager_celery():
    """As in the embedded default: tasks the periodic ones queue run in this process."""
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = True, False
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = saved


def test_every_beat_entry_names_a_registered_task_with_an_interval():
    celery_app.loader.import_default_modules()
    schedule = beat_schedule()
    assert set(schedule) == set(settings.CELERY_BEAT_SCHEDULE)
    for task, every in schedule.values():
        assert task in celery_app.tasks, task
        assert every > 0


@pytest.mark.django_db
def test_once_runs_the_outbox_sweep_that_delivers_a_row_left_pending(org, capsys):
    # A process died between committing an alert and handing it to a worker.
    received = []

    def record(event):
        received.append(event.id)

    row = OutboxEvent.objects.create(
        id=uuid.uuid4(), organization=org, key=ALERT_TRIGGERED, payload={"rule": "overload"}, source="test",
        occurred_at=timezone.now(),
    )  # fmt: skip
    OutboxEvent.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(minutes=1))
    subscribe(record, keys=[ALERT_TRIGGERED])
    try:
        call_command("periodic_tasks", "--once")
    finally:
        unsubscribe(record)

    row.refresh_from_db()
    assert row.status == OutboxEvent.Status.DISPATCHED
    assert received == [row.id]
    assert f"ran {len(settings.CELERY_BEAT_SCHEDULE)} periodic task(s), 0 failed" in capsys.readouterr().out

"""A Celery worker killed with SIGKILL in the middle of rule evaluations loses none of them, on
the production broker (RabbitMQ, docs/deploy.md): the broker gives a dead consumer's
unacknowledged messages to the next worker at once, and evaluation is safe to run twice.

The evaluations are held mid-way deterministically: the test locks the deliveries table, so each
evaluation blocks on its INSERT after matching its rule (PostgreSQL shows the backend waiting);
then the worker is killed, the lock released, and a second worker must deliver every webhook
exactly once. On Redis as the broker the same test waits out the 1 h visibility timeout, which
is why RabbitMQ is the documented production broker (`.ci/run` runs this file on it).
"""

from __future__ import annotations

import time

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from automations.models import Delivery
from joulepoint.celery import app
from tests import factories
from tests.automations.receiver import Receiver
from tests.automations.worker import Worker
from tests.e2e.test_automations_e2e import WORKER_ENV, assert_exactly_once, post_reading, setup_rule, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (settings.CELERY_BROKER_URL or "").startswith("amqp"),
        reason="needs RabbitMQ as the broker: set CELERY_BROKER_URL=amqp://… (.ci/run does)",
    ),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="holds evaluations with a PostgreSQL table lock"),
]

READINGS = 12
# Bound on how long a killed worker's evaluations may wait for another worker (docs/deploy.md):
# RabbitMQ redelivers at once, so this is startup time on a loaded machine, not a broker timeout.
REDELIVERY_BOUND_SECONDS = 120


def locking_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=False)


def blocked_evaluations() -> int:
    """Worker backends waiting for the deliveries table lock (inside an evaluation)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE %s",
            ["%automations_delivery%"],
        )
        return cursor.fetchone()[0]


def test_worker_killed_mid_evaluation_loses_no_delivery(live_server, org, site):
    app.control.purge()
    meters = [factories.MeterFactory(site=site) for _ in range(READINGS)]
    with Receiver() as receiver:
        setup_rule(org, receiver.url)
        locker = locking_connection()
        first = Worker(WORKER_ENV, beat=False).start()
        try:
            with locker.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {Delivery._meta.db_table} IN EXCLUSIVE MODE")
            for minute, meter in enumerate(meters):
                post_reading(live_server, meter, 7000, minute)
            wait_for(lambda: blocked_evaluations() >= 1, 60, first, "an evaluation held mid-way")
            first.kill()  # SIGKILL: the held evaluations and the prefetched ones are never acknowledged
        finally:
            first.kill()
            locker.rollback()
            locker.close()
        assert not Delivery.objects.exists()
        killed_at = time.monotonic()
        second = Worker(WORKER_ENV, beat=False).start()
        try:
            wait_for(
                lambda: Delivery.objects.filter(status="succeeded").count() == READINGS,
                REDELIVERY_BOUND_SECONDS,
                second,
                f"all {READINGS} deliveries after the kill",
            )
        finally:
            second.stop()
        print(f"every delivery {time.monotonic() - killed_at:.1f} s after the kill")
        deliveries = list(Delivery.objects.all())
        assert len(deliveries) == READINGS
        assert_exactly_once(receiver, deliveries)

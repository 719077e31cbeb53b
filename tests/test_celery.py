"""joulepoint/celery.py: the orjson serializer of batch messages, and how a worker keeps its
database connection from one task to the next."""

from __future__ import annotations

from types import SimpleNamespace

import psycopg
import pytest
from django.db import connection
from kombu.serialization import dumps, loads, prepare_accept_content

from automations import taskqueue as automations_tasks
from joulepoint.celery import ORJSON, app, database_connections_check, database_connections_drop
from joulepoint.platform.enqueue import registered_task
from mlops import taskqueue as mlops_tasks


def _task(*, eager: bool) -> SimpleNamespace:
    return SimpleNamespace(request=SimpleNamespace(is_eager=eager))


def test_batch_messages_go_as_orjson_and_come_back_equal():
    message = {
        "id": "0b9d5b1e-8f0e-4f7e-9a53-5d7a3c1e2f10",
        "organization_id": 7,
        "key": "data.ingested",
        "payload": {"readings": [{"meter_id": 3, "timestamp": "2026-01-01T00:00:00Z", "total_power": 1.5e3}]},
        "source": "api",
        "occurred_at": "2026-01-01T00:00:01+00:00",
    }
    for name in (mlops_tasks.BATCH_SCORE, automations_tasks.RULES_EVALUATE_EVENT):
        assert registered_task(name).serializer == ORJSON
    content_type, encoding, body = dumps(((message,), {}, {}), serializer=ORJSON)
    assert content_type == "application/x-orjson"
    accept = prepare_accept_content(app.conf.accept_content)  # what a worker takes
    assert loads(body, content_type, encoding, accept=accept) == [[message], {}, {}]


@pytest.mark.django_db(transaction=True)
def test_a_failed_task_leaves_no_connection_for_the_next_one():
    connection.ensure_connection()
    database_connections_drop(sender=_task(eager=True))
    assert connection.connection is not None  # in-process: the caller's connection stays
    database_connections_drop(sender=_task(eager=False))
    assert connection.connection is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="a backend PostgreSQL can terminate")
def test_a_kept_connection_the_database_dropped_is_replaced_before_the_next_task_queries():
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=connection.get_connection_params()["dbname"],
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        user=settings["USER"] or None,
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    database_connections_check(task=_task(eager=False))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid

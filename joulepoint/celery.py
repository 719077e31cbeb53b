import os

import orjson
from celery import Celery, signals
from kombu.serialization import register

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "joulepoint.settings")

# "orjson": the serializer of the tasks that carry a whole ingested batch (rule evaluation,
# anomaly scoring). kombu's json is the standard library's, which spent about a millisecond of
# every 1,000-reading ingest encoding that message and as much again in the worker decoding it;
# orjson takes a tenth of that. Only for messages of JSON types: kombu's json also round-trips
# datetimes, UUIDs and Decimals, which orjson turns into plain strings.
ORJSON = "orjson"
register(ORJSON, orjson.dumps, orjson.loads, content_type="application/x-orjson", content_encoding="binary")

app = Celery("joulepoint")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Database connections in workers. Celery's Django fixup closes every connection before and after
# each task unless CELERY_DB_REUSE_MAX is set, and opening one costs PostgreSQL about 3 ms: more
# than half of a 1,000-reading scoring task's own work. We set it (settings), and treat each task
# as Django treats a request, plus what Celery's maintainers warn of (celery#9824: a task
# interrupted mid-query, e.g. by a time limit, leaves a connection Django thinks usable).
def _worker_connections():
    from django.db import connections

    return connections.all(initialized_only=True)


@signals.task_prerun.connect
def database_connections_check(task=None, **kwargs) -> None:
    """Before a task: drop a connection that saw errors and fails a ping or outlived
    CONN_MAX_AGE, and ping a kept one at its first use (Django's health check), since the
    database may have restarted since the last task."""
    if task is None or task.request.is_eager:
        return  # in-process: the caller's connection and transaction
    for connection in _worker_connections():
        connection.close_if_unusable_or_obsolete()
        connection.health_check_enabled = True


@signals.task_failure.connect
@signals.task_retry.connect
def database_connections_drop(sender=None, **kwargs) -> None:
    """After a task that failed: never reuse its connections (it may have been interrupted
    mid-query)."""
    if getattr(sender, "request", None) is not None and sender.request.is_eager:
        return
    for connection in _worker_connections():
        connection.close()

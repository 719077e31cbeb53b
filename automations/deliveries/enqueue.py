"""Queueing delivery attempts on the workers, by task name (automations.taskqueue)."""

from __future__ import annotations

from celery import current_app

from automations import taskqueue
from joulepoint.platform.enqueue import enqueue


def queue_is_eager() -> bool:
    """Tasks run in-process (the embedded default): nothing can be queued for later."""
    return bool(current_app.conf.task_always_eager)


ENQUEUE_CHUNK = 25


def deliveries_enqueue(ids: list[int], *, countdown: float = 0) -> None:
    """Queue attempts, up to ENQUEUE_CHUNK deliveries per task (a batch of 2,000 firings is 80
    broker messages, not 2,000). In-process (eager) Celery cannot wait, so delayed retries are left
    to the sweeper; with a broker they are also queued with a countdown (the sweeper is the
    safety net for a countdown held by a worker that died)."""
    if not ids or (countdown > 0 and queue_is_eager()):
        return
    for start in range(0, len(ids), ENQUEUE_CHUNK):
        enqueue(taskqueue.DELIVERY_ATTEMPT_MANY, ids[start : start + ENQUEUE_CHUNK], countdown=countdown or None)

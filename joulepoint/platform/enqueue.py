"""Queueing a Celery task from a service, by the task's registered name.

Services never import their app's tasks module: that module imports the services (a task is a
door into one), so the import would be a cycle. A service names the task instead and it is
looked up in the Celery app's registry when the transaction commits, so a worker never sees a
row that was rolled back. In the embedded default (no broker) `delay` runs it in process.
"""

from __future__ import annotations

from django.db import transaction

from joulepoint.celery import app


def enqueue(task_name: str, *args, countdown: float | None = None) -> None:
    """Send the task now (the caller has nothing to commit first), to run after `countdown`
    seconds if given."""
    task = app.tasks[task_name]
    if countdown is None:
        task.delay(*args)
    else:
        task.apply_async(args, countdown=countdown)


def enqueue_on_commit(task_name: str, *args) -> None:
    """Send the task once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: enqueue(task_name, *args))

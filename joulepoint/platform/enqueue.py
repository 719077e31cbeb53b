"""Queueing a Celery task from a service, by the task's registered name.

Services never import their app's tasks module: that module imports the services (a task is a
door into one), so the import would be a cycle. A service names the task instead and it is
looked up in the Celery app's registry when the transaction commits, so a worker never sees a
row that was rolled back. In the embedded default (no broker) `delay` runs it in process.
"""

from __future__ import annotations

from celery import Task
from celery.exceptions import NotRegistered
from django.db import transaction

from joulepoint.celery import app


def registered_task(task_name: str) -> Task:
    """The task registered under `task_name`.

    A worker imports every tasks module when it starts; a web process, the MQTT bridge or a
    management command imports one only when something asks for it. So on a miss the modules a
    worker would import (CELERY_IMPORTS and each app's tasks module) are imported, once."""
    try:
        return app.tasks[task_name]
    except NotRegistered:
        app.loader.import_default_modules()
        return app.tasks[task_name]


def enqueue(task_name: str, *args, countdown: float | None = None) -> None:
    """Send the task now (the caller has nothing to commit first), to run after `countdown`
    seconds if given."""
    task = registered_task(task_name)
    if countdown is None:
        task.delay(*args)
    else:
        task.apply_async(args, countdown=countdown)


def enqueue_on_commit(task_name: str, *args) -> None:
    """Send the task once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: enqueue(task_name, *args))

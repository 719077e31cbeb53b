"""Queueing automations' Celery tasks by name, so the services never import automations.tasks
(the tasks import the services; importing back would be a cycle).

A task is looked up in the Celery app's registry under the name it is registered with, and queued
with `apply_async`: the same routing as calling the task object, and in-process (eager) Celery
still runs it at once, which `send_task` would not. The names are the tasks' public contract
(queued messages and the beat schedule refer to them): automations.tasks registers each task under
its constant here, and AutomationsConfig.ready() imports automations.tasks in every process.
"""

from __future__ import annotations

from celery import Task, current_app

RULES_EVALUATE_EVENT = "automations.tasks.rules_evaluate_event"
DELIVERY_ATTEMPT = "automations.tasks.delivery_attempt"
DELIVERY_ATTEMPT_MANY = "automations.tasks.delivery_attempt_many"
DELIVERIES_SWEEP = "automations.tasks.deliveries_sweep"


def task(name: str) -> Task:
    """The registered task called `name` (KeyError naming it when automations.tasks is not loaded)."""
    return current_app.tasks[name]

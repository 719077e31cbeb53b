"""The names automations' Celery tasks are registered under. Services queue a task by its name
(joulepoint.platform.enqueue), never by importing automations.tasks (the tasks import the
services; importing back would be a cycle). The names are the tasks' public contract: queued
messages and the beat schedule refer to them.
"""

from __future__ import annotations

RULES_EVALUATE_EVENT = "automations.tasks.rules_evaluate_event"
DELIVERY_ATTEMPT = "automations.tasks.delivery_attempt"
DELIVERY_ATTEMPT_MANY = "automations.tasks.delivery_attempt_many"
DELIVERIES_SWEEP = "automations.tasks.deliveries_sweep"

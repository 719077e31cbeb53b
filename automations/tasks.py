"""Thin Celery tasks: take ids or a message, call one service, safe to run twice (acks_late).

Each task is registered under its name in automations.taskqueue, through which the services queue
them; the names must not change (queued messages and the beat schedule refer to them).
"""

from __future__ import annotations

from celery import shared_task

from automations import taskqueue
from automations.deliveries import services as deliveries
from automations.engine import evaluation
from joulepoint.celery import ORJSON


@shared_task(
    name=taskqueue.RULES_EVALUATE_EVENT,
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=10,
    serializer=ORJSON,
)
def rules_evaluate_event(message: dict) -> int:
    """One batch (one `data.ingested` event) → one task, however many readings it holds."""
    summary = evaluation.rules_evaluate(event=evaluation.event_from_message(message))
    return len(summary.deliveries)


@shared_task(name=taskqueue.DELIVERY_ATTEMPT, acks_late=True)
def delivery_attempt(delivery_id: int) -> str | None:
    return deliveries.delivery_attempt(delivery_id=delivery_id)


@shared_task(name=taskqueue.DELIVERY_ATTEMPT_MANY, acks_late=True)
def delivery_attempt_many(delivery_ids: list[int]) -> dict[int, str]:
    return deliveries.deliveries_attempt(delivery_ids=delivery_ids)


@shared_task(name=taskqueue.DELIVERIES_SWEEP, acks_late=True)
def deliveries_sweep() -> dict:
    return deliveries.deliveries_sweep()

"""Thin Celery tasks: take ids or a message, call one service, safe to run twice (acks_late)."""

from __future__ import annotations

from celery import shared_task

from automations import services


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=10)
def rules_evaluate_event(message: dict) -> int:
    """One batch (one `data.ingested` event) → one task, however many readings it holds."""
    summary = services.rules_evaluate(event=services.event_from_message(message))
    return len(summary.deliveries)


@shared_task(acks_late=True)
def delivery_attempt(delivery_id: int) -> str | None:
    return services.delivery_attempt(delivery_id=delivery_id)


@shared_task(acks_late=True)
def delivery_attempt_many(delivery_ids: list[int]) -> dict[int, str]:
    return services.deliveries_attempt(delivery_ids=delivery_ids)


@shared_task(acks_late=True)
def deliveries_sweep() -> dict:
    return services.deliveries_sweep()

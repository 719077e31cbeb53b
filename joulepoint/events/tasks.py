from __future__ import annotations

from celery import shared_task

from joulepoint.events import services


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=10)
def outbox_dispatch_one(event_id: str) -> bool:
    return services.outbox_event_dispatch(event_id=event_id)


@shared_task
def outbox_dispatch() -> int:
    """Beat: re-enqueue outbox rows a crashed process committed but never handed to a worker."""
    ids = services.outbox_pending_ids()
    for event_id in ids:
        outbox_dispatch_one.delay(event_id)
    return len(ids)

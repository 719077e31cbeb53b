from __future__ import annotations

from celery import shared_task

from joulepoint.events import services

OUTBOX_MAX_RETRIES = 10


@shared_task(bind=True, acks_late=True, max_retries=OUTBOX_MAX_RETRIES)
def outbox_dispatch_one(self, event_id: str) -> bool:
    """Deliver one outbox event; retried with exponential backoff (10 s … ~1.4 h), then failed."""
    try:
        return services.outbox_event_dispatch(event_id=event_id)
    except Exception as exc:
        if self.request.is_eager:
            # In-process (embedded default) a retry would run at once inside the request; the
            # row stays pending with its error for an operator or `outbox_dispatch` to pick up.
            return False
        if self.request.retries >= self.max_retries:
            services.outbox_event_fail(event_id=event_id)
            return False
        raise self.retry(exc=exc, countdown=min(5 * 2 ** (self.request.retries + 1), 3600)) from exc


@shared_task
def outbox_dispatch() -> int:
    """Beat: enqueue outbox rows a crashed process committed but never handed to a worker."""
    ids = services.outbox_pending_ids()
    for event_id in ids:
        outbox_dispatch_one.delay(event_id)
    return len(ids)

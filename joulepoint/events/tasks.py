from __future__ import annotations

import logging

from celery import shared_task

from joulepoint.events import services

OUTBOX_MAX_RETRIES = 10
logger = logging.getLogger(__name__)


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


@shared_task(bind=True, acks_late=True)
def outbox_dispatch_many(self, event_ids: list[str]) -> int:
    """Deliver the rows of one `publish_many` in order. A row whose subscribers fail goes on
    `outbox_dispatch_one`'s retry schedule alone, so it holds up none of the others; a redelivered
    message skips the rows already dispatched."""
    delivered = 0
    for event_id in event_ids:
        try:
            delivered += services.outbox_event_dispatch(event_id=event_id)
        except Exception:
            logger.warning("outbox event %s failed; retried on its own", event_id, exc_info=True)
            if not self.request.is_eager:  # in process the row stays pending, as outbox_dispatch_one leaves it
                outbox_dispatch_one.apply_async((event_id,), countdown=10)
    return delivered


@shared_task
def outbox_dispatch() -> int:
    """Beat: enqueue outbox rows a crashed process committed but never handed to a worker."""
    ids = services.outbox_pending_ids()
    for event_id in ids:
        outbox_dispatch_one.delay(event_id)
    return len(ids)

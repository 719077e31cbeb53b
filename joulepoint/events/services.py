"""Publishing and fan-out.

Subscribers (Channels groups for dashboards, the automations engine, webhooks) register with
`subscribe()` from their AppConfig.ready(). They are called only after the publishing
transaction commits: transient events in the publishing process, outbox events in a Celery
worker, which marks the row dispatched. A beat task re-dispatches rows left pending by a
process that died between commit and enqueue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from joulepoint.events.keys import event_key_is_transient, event_key_require
from joulepoint.events.models import OutboxEvent
from joulepoint.events.types import Event
from joulepoint.platform.enqueue import enqueue_on_commit

logger = logging.getLogger(__name__)

# joulepoint.events.tasks.outbox_dispatch_one/_many, named: the tasks module imports this one.
DISPATCH_TASK = "joulepoint.events.tasks.outbox_dispatch_one"
DISPATCH_MANY_TASK = "joulepoint.events.tasks.outbox_dispatch_many"

Subscriber = Callable[[Event], None]
_subscribers: list[tuple[frozenset[str] | None, Subscriber]] = []
_fan_out_memo: ContextVar[dict | None] = ContextVar("fan_out_memo", default=None)


def fan_out_memo() -> dict | None:
    """While the transient events of one `event_publish_many` are fanned out together, a dict
    where subscribers may keep something for the rest of them (joulepoint.events.listeners
    reads the listeners' epoch once per fan-out with it); None otherwise."""
    return _fan_out_memo.get()


def subscribe(handler: Subscriber, *, keys: Iterable[str] | None = None) -> Subscriber:
    """Register `handler` for the given event keys (all keys when None). Idempotent."""
    entry = (frozenset(keys) if keys is not None else None, handler)
    if entry not in _subscribers:
        _subscribers.append(entry)
    return handler


def unsubscribe(handler: Subscriber) -> None:
    _subscribers[:] = [entry for entry in _subscribers if entry[1] is not handler]


def subscribers_for(key: str) -> list[Subscriber]:
    return [handler for keys, handler in _subscribers if keys is None or key in keys]


def event_publish(*, org, key: str, payload: dict, source: str, occurred_at: datetime | None = None) -> Event:
    """Announce an event of `org`. Must-not-lose keys are written to the outbox in the caller's
    transaction; every key reaches subscribers once the transaction commits."""
    event_key_require(key)
    org_id = getattr(org, "pk", org)
    event = Event(
        organization_id=org_id,
        key=key,
        payload=payload,
        source=source,
        occurred_at=occurred_at or timezone.now(),
    )
    if event_key_is_transient(key):
        transaction.on_commit(lambda: event_fan_out(event=event))
    else:
        OutboxEvent.objects.create(
            id=event.id,
            organization_id=org_id,
            key=key,
            payload=payload,
            source=source,
            occurred_at=event.occurred_at,
        )
        enqueue_on_commit(DISPATCH_TASK, str(event.id))
    return event


def event_publish_many(*, events: list[tuple[Any, str, dict, datetime | None]], source: str) -> list[Event]:
    """`event_publish` for several events of one cause, e.g. the PQ events of an ingest batch:
    (org, key, payload, occurred_at) each, written to the outbox in one INSERT, in order.
    Same guarantees as event_publish: must-not-lose rows in the caller's transaction, every
    event reaches subscribers after commit."""
    published: list[Event] = []
    rows: list[OutboxEvent] = []
    transient: list[Event] = []
    for org, key, payload, occurred_at in events:
        event_key_require(key)
        event = Event(
            organization_id=getattr(org, "pk", org),
            key=key,
            payload=payload,
            source=source,
            occurred_at=occurred_at or timezone.now(),
        )
        published.append(event)
        if event_key_is_transient(key):
            transient.append(event)
        else:
            rows.append(
                OutboxEvent(
                    id=event.id,
                    organization_id=event.organization_id,
                    key=key,
                    payload=payload,
                    source=source,
                    occurred_at=event.occurred_at,
                )
            )
    if transient:
        transaction.on_commit(lambda: _fan_out_together(transient))
    if len(rows) == 1:
        OutboxEvent.objects.bulk_create(rows)
        enqueue_on_commit(DISPATCH_TASK, str(rows[0].id))
    elif rows:
        OutboxEvent.objects.bulk_create(rows)
        # One message for the lot: a send costs about as much as dispatching a row, and a
        # scored batch with a dozen anomalies would otherwise pay a dozen broker round trips.
        enqueue_on_commit(DISPATCH_MANY_TASK, [str(row.id) for row in rows])
    return published


def _fan_out_together(events: list[Event]) -> None:
    """Fan out transient events of one cause in order, sharing one `fan_out_memo()`."""
    token = _fan_out_memo.set({})
    try:
        for event in events:
            event_fan_out(event=event)
    finally:
        _fan_out_memo.reset(token)


def event_fan_out(*, event: Event) -> None:
    """Call every subscriber of the event's key; one failing subscriber does not stop the rest."""
    for handler in subscribers_for(event.key):
        try:
            handler(event)
        except Exception:
            logger.exception("event subscriber %r failed for %s", handler, event.key)
            if not event_key_is_transient(event.key):
                raise


def outbox_event_dispatch(*, event_id: str) -> bool:
    """Deliver one outbox row to its subscribers and mark it dispatched; safe to run twice.

    A failing subscriber leaves the row pending with `attempts` and `last_error` recorded (its
    own writes are rolled back to a savepoint), then the error is raised so the task retries.
    """
    with transaction.atomic():
        row = OutboxEvent.objects.select_for_update().filter(pk=event_id).first()
        if row is None or row.status == OutboxEvent.Status.DISPATCHED:
            return False
        row.attempts += 1
        event = Event(
            organization_id=row.organization_id,
            key=row.key,
            payload=row.payload,
            source=row.source,
            occurred_at=row.occurred_at,
            id=row.id,
        )
        try:
            with transaction.atomic():
                event_fan_out(event=event)
        except Exception as exc:
            failure = exc
            row.last_error = repr(exc)[:2000]
            row.save(update_fields=["attempts", "last_error"])
        else:
            row.status = OutboxEvent.Status.DISPATCHED
            row.dispatched_at = timezone.now()
            row.last_error = ""
            row.save(update_fields=["attempts", "status", "dispatched_at", "last_error"])
            return True
    # Raised after the commit above: raising inside the block would roll back the record of it.
    raise failure


def outbox_event_fail(*, event_id: str) -> None:
    """Give up on a row after its last retry: it stays visible as failed, with its last error."""
    OutboxEvent.objects.filter(pk=event_id, status=OutboxEvent.Status.PENDING).update(status=OutboxEvent.Status.FAILED)


def outbox_pending_ids(*, older_than: timedelta = timedelta(seconds=10), limit: int = 500) -> list[str]:
    """Rows committed but never attempted: their process died before handing them to a worker.
    Rows already attempted are in their own task's retry schedule and are left to it."""
    cutoff = timezone.now() - older_than
    rows = OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING, attempts=0, created_at__lte=cutoff)
    return [str(pk) for pk in rows.values_list("pk", flat=True)[:limit]]

"""The delivery state machine: claim due deliveries with a lease, attempt them (through the
breaker and the sender), record each outcome, retry with backoff until done or dead.

A worker killed mid-attempt leaves a lease that expires: the delivery is attempted again with the
same webhook-id (at least once; receivers dedupe). Nothing here keeps state in one process's memory.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from automations.deliveries.actions import wallet_topup
from automations.deliveries.actions.base import Outcome
from automations.deliveries.actions.registry import handler_for
from automations.deliveries.breaker import breaker_allow, breaker_record, healthy_endpoints
from automations.deliveries.enqueue import deliveries_enqueue, queue_is_eager
from automations.deliveries.sender import webhooks_send
from automations.models import Delivery
from automations.relay import relay_commands_expire


def retry_delay(attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based), with jitter."""
    base = settings.AUTOMATIONS_RETRY_BASE_SECONDS * settings.AUTOMATIONS_RETRY_FACTOR ** (attempt - 1)
    base = min(base, settings.AUTOMATIONS_RETRY_MAX_DELAY_SECONDS)
    jitter = settings.AUTOMATIONS_RETRY_JITTER
    return base * (rng or random).uniform(1 - jitter, 1 + jitter)


def _relaxed_commit() -> None:
    """Inside a transaction on PostgreSQL: commit without waiting for the WAL flush. Used for the
    delivery lease and result: if the database itself crashes right after, the delivery is attempted
    again (same webhook-id, receivers dedupe), never lost; in exchange an attempt costs no fsync."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


CLAIMABLE = [Delivery.Status.PENDING, Delivery.Status.RETRYING, Delivery.Status.DEFERRED]


def delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> str | None:
    """Run one attempt of a due delivery; returns the new status, or None when it was not due or
    another worker holds it."""
    return deliveries_attempt(delivery_ids=[delivery_id], now=now).get(delivery_id)


def _claim_many(delivery_ids: list[int], now: datetime, lease_seconds: float) -> list[int]:
    """Take the due ones among `delivery_ids`: one locking read and one UPDATE setting a lease, so
    two workers (a countdown task and the sweeper, or a redelivered task) never send the same
    attempt twice, and a worker that dies mid-attempt leaves a lease that expires and is taken over."""
    due = Q(status__in=CLAIMABLE, next_attempt_at__lte=now) | Q(status=Delivery.Status.IN_FLIGHT, lease_until__lt=now)
    with transaction.atomic():
        _relaxed_commit()
        rows = Delivery.objects.filter(due, pk__in=delivery_ids)
        if connection.features.has_select_for_update_skip_locked:
            rows = rows.select_for_update(skip_locked=True)
        claimed = list(rows.values_list("pk", flat=True))
        if claimed:
            Delivery.objects.filter(pk__in=claimed).update(
                status=Delivery.Status.IN_FLIGHT, lease_until=now + timedelta(seconds=lease_seconds)
            )
    return claimed


def deliveries_attempt(*, delivery_ids: list[int], now: datetime | None = None) -> dict[int, str]:
    """Attempt each due delivery among `delivery_ids` once: {id: new status} for those attempted.
    Claims, loads and checks breakers for the whole set in a few queries, sends the webhooks of
    the set concurrently (threads; they touch no database), and records all outcomes in one
    UPDATE. A worker killed in between leaves leases that expire: those deliveries are attempted
    again with the same webhook-id (at least once)."""
    now = now or timezone.now()
    lease = settings.AUTOMATIONS_WEBHOOK_TIMEOUT_SECONDS + 60
    claimed = _claim_many(delivery_ids, now, lease)
    if not claimed:
        return {}
    deliveries = list(Delivery.objects.select_related("action", "rule").filter(pk__in=claimed).order_by("pk"))
    healthy_ones = healthy_endpoints(deliveries)
    results: dict[int, str] = {}
    ready: list[tuple[Delivery, bool]] = []
    finished: list[tuple[Delivery, Outcome]] = []
    for delivery in deliveries:
        if delivery.action is None:
            finished.append((delivery, Outcome(ok=False, retry=False, error="the action was deleted")))
            continue
        healthy = delivery.endpoint in healthy_ones
        if delivery.endpoint and not healthy:
            allowed, retry_at, healthy = breaker_allow(
                organization_id=delivery.organization_id, endpoint=delivery.endpoint, now=now, lease_seconds=lease
            )
            if not allowed:
                results[delivery.pk] = _defer(delivery, retry_at)
                continue
        ready.append((delivery, healthy))
    outcomes = webhooks_send([delivery for delivery, _ in ready if delivery.action_type == "webhook"])
    for delivery, healthy in ready:
        outcome = outcomes.get(delivery.pk) or handler_for(delivery.action_type).execute(delivery)
        if delivery.endpoint and not outcome.waiting and not (outcome.ok and healthy):
            breaker_record(
                organization_id=delivery.organization_id, endpoint=delivery.endpoint, ok=outcome.ok, now=timezone.now()
            )
        finished.append((delivery, outcome))
    if finished:
        results.update(_finish_many(finished, now))
    return results


def _defer(delivery: Delivery, retry_at: datetime) -> str:
    delivery.status = Delivery.Status.DEFERRED
    delivery.next_attempt_at = retry_at
    delivery.lease_until = None
    delivery.last_error = f"circuit breaker open for {delivery.endpoint}; deferred, not dropped"
    delivery.save(update_fields=["status", "next_attempt_at", "lease_until", "last_error", "updated_at"])
    countdown = max((retry_at - timezone.now()).total_seconds(), 0)
    delivery_id = delivery.pk
    transaction.on_commit(lambda: deliveries_enqueue([delivery_id], countdown=countdown or 0.01))
    return delivery.status


FINISH_FIELDS = [
    "status", "attempts", "response_code", "latency_ms", "lease_until", "completed_at",
    "last_error", "result", "next_attempt_at", "updated_at",
]  # fmt: skip


def _apply_outcome(delivery: Delivery, outcome: Outcome, now: datetime) -> float:
    """Move the delivery to its next state (in memory); returns the retry countdown, or 0."""
    delivery.attempts += 1
    delivery.response_code = outcome.response_code
    delivery.latency_ms = outcome.latency_ms
    delivery.lease_until = None
    delivery.updated_at = finished = timezone.now()
    if outcome.ok:
        delivery.status = Delivery.Status.SUCCEEDED
        delivery.completed_at = finished
        delivery.last_error = ""
        delivery.result = outcome.result
        delivery.next_attempt_at = None
    elif outcome.waiting:
        delivery.status = Delivery.Status.WAITING
        delivery.attempts -= 1  # not an attempt: nothing was tried
        delivery.last_error = outcome.error
        delivery.next_attempt_at = None
    elif not outcome.retry or delivery.attempts >= settings.AUTOMATIONS_MAX_ATTEMPTS:
        delivery.status = Delivery.Status.DEAD
        delivery.completed_at = finished
        delivery.last_error = outcome.error
        delivery.next_attempt_at = None
    else:
        delivery.status = Delivery.Status.RETRYING
        delivery.last_error = outcome.error
        countdown = retry_delay(delivery.attempts)
        delivery.next_attempt_at = now + timedelta(seconds=countdown)
        return countdown
    return 0.0


def _finish_many(finished: list[tuple[Delivery, Outcome]], now: datetime) -> dict[int, str]:
    """Record the outcomes of a task's attempts in one (relaxed) commit: one UPDATE statement
    sent for all rows with `executemany`, which psycopg 3 pipelines into a single round trip.
    Per-row ORM `.update()` calls cost worker CPU per delivery (a query compilation plus a round
    trip each), and Django's bulk_update builds a CASE expression per field that
    cost far more; the rows differ in nearly every field, so one plain statement it is."""
    retries: list[tuple[int, float]] = []
    for delivery, outcome in finished:
        countdown = _apply_outcome(delivery, outcome, now)
        if countdown:
            retries.append((delivery.pk, countdown))
    fields = [Delivery._meta.get_field(name) for name in FINISH_FIELDS]
    quote = connection.ops.quote_name
    # Only model metadata (quoted names) is formatted in; every value is a parameter.
    sql = "UPDATE {} SET {} WHERE {} = %s".format(  # noqa: S608
        quote(Delivery._meta.db_table),
        ", ".join(f"{quote(field.column)} = %s" for field in fields),
        quote(Delivery._meta.pk.column),
    )
    params = [
        [field.get_db_prep_save(getattr(delivery, field.attname), connection) for field in fields] + [delivery.pk]
        for delivery, _ in finished
    ]
    with transaction.atomic():
        _relaxed_commit()
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)
    for delivery_id, countdown in retries:
        transaction.on_commit(lambda d=delivery_id, c=countdown: deliveries_enqueue([d], countdown=c))
    return {delivery.pk: delivery.status for delivery, _ in finished}


def _finish(delivery: Delivery, outcome: Outcome, now: datetime) -> str:
    return _finish_many([(delivery, outcome)], now)[delivery.pk]


@transaction.atomic
def delivery_retry(*, delivery: Delivery) -> Delivery:
    """By hand: a dead (or waiting) delivery gets a fresh round of attempts, same webhook-id."""
    delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
    if delivery.status not in (Delivery.Status.DEAD, Delivery.Status.WAITING):
        raise ValueError(f"only dead or waiting deliveries can be retried; this one is {delivery.status}")
    delivery.status = Delivery.Status.PENDING
    delivery.attempts = 0
    delivery.completed_at = None
    delivery.next_attempt_at = timezone.now()
    delivery.save()
    delivery_id = delivery.pk
    transaction.on_commit(lambda: deliveries_enqueue([delivery_id]))
    return delivery


def deliveries_due(*, now: datetime | None = None, limit: int = 1000, overdue_seconds: float = 0) -> list[int]:
    """Deliveries an attempt may take now (due for at least `overdue_seconds`), or whose lease
    ran out; oldest first."""
    now = now or timezone.now()
    due = Q(status__in=CLAIMABLE, next_attempt_at__lte=now - timedelta(seconds=overdue_seconds)) | Q(
        status=Delivery.Status.IN_FLIGHT, lease_until__lt=now
    )
    return list(Delivery.objects.filter(due).order_by("next_attempt_at").values_list("pk", flat=True)[:limit])


def deliveries_sweep(*, now: datetime | None = None) -> dict:
    """Periodic safety net (beat): queue due and abandoned deliveries, release waiting wallet
    top-ups once billing is installed, expire unapproved relay commands.

    With a broker every due delivery already has a message on its way (queued when it was
    created, or with its retry's countdown); the sweep is for those whose message was lost. So
    it takes only deliveries due for longer than AUTOMATIONS_SWEEP_GRACE_SECONDS and marks them
    due as of now (an abandoned lease becomes pending), so each is queued again at most once per
    grace period: re-queueing every due delivery every 5 s multiplied a backlog (the 20-minute
    soak ended with 6,555 attempt messages queued for 3,408 deliveries). In-process Celery
    queues no countdowns, so there the sweep is how retries happen, as soon as they are due."""
    now = now or timezone.now()
    grace = 0.0 if queue_is_eager() else settings.AUTOMATIONS_SWEEP_GRACE_SECONDS
    ids = deliveries_due(now=now, overdue_seconds=grace)
    if grace and ids:
        Delivery.objects.filter(pk__in=ids, status__in=CLAIMABLE).update(next_attempt_at=now)
        Delivery.objects.filter(pk__in=ids, status=Delivery.Status.IN_FLIGHT, lease_until__lt=now).update(
            status=Delivery.Status.PENDING, next_attempt_at=now, lease_until=None
        )
    released: list[int] = []
    if wallet_topup.billing_topup_service() is not None:
        waiting = Delivery.objects.filter(status=Delivery.Status.WAITING, action_type="wallet_topup")
        released = list(waiting.values_list("pk", flat=True)[:1000])
        Delivery.objects.filter(pk__in=released, status=Delivery.Status.WAITING).update(
            status=Delivery.Status.PENDING, next_attempt_at=now
        )
    deliveries_enqueue(ids + released)
    expired = relay_commands_expire(now=now)
    return {"queued": len(ids), "released": len(released), "expired": expired}

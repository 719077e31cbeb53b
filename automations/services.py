"""The automations engine: rule evaluation, dry runs, the delivery state machine with retry,
backoff and per-endpoint circuit breakers, alerts and relay-command approval.

Tenant scope: every function acts for one organization, named by the event or the row it loads.
Throttle keys live in Django's cache (Redis in production; `cache.add` is atomic across workers),
breaker state in the database; nothing here keeps state in one process's memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from automations import jsonlogic, templating
from automations.actions import ConfigError, Outcome, handler_for, template_context
from automations.models import Action, Alert, Annotation, CircuitBreaker, Delivery, RelayCommand, Rule, Severity
from joulepoint.events import publish
from joulepoint.events.listeners import listener_answer, listeners_changed
from joulepoint.events.types import ALERT_TRIGGERED, DATA_INGESTED, Event
from joulepoint.tenancy.models import Membership

logger = logging.getLogger(__name__)

RULES_CACHE_SECONDS = 30


# --- rule lookup ---------------------------------------------------------------------------------


def _has_rules_key(organization_id: int, event_key: str) -> str:
    return f"jp:auto:has-rules:{organization_id}:{event_key}"


def rules_changed(*, organization_id: int) -> None:
    """Forget the cached "does this organization have rules for key X" answers, shared and kept
    by each process."""
    from joulepoint.events.types import EVENT_KEYS

    cache.delete_many([_has_rules_key(organization_id, key) for key in EVENT_KEYS])
    listeners_changed()


def rules_exist(*, organization_id: int, event_key: str) -> bool:
    """Cheap check on the ingest path, so telemetry of an organization without rules costs no task.

    Kept by the process while the listeners' epoch stands (joulepoint.events.listeners), behind
    the shared cache entry that spares the database."""

    def look_up() -> bool:
        key = _has_rules_key(organization_id, event_key)
        answer = cache.get(key)
        if answer is None:
            answer = Rule.objects.for_org(organization_id).filter(event_key=event_key, is_active=True).exists()
            cache.set(key, answer, RULES_CACHE_SECONDS)
        return answer

    return listener_answer(("has-rules", organization_id, event_key), look_up)


def active_rules(*, organization_id: int, event_key: str) -> list[Rule]:
    return list(
        Rule.objects.for_org(organization_id)
        .filter(event_key=event_key, is_active=True)
        .prefetch_related("rule_actions__action")
        .order_by("id")
    )


# --- events → contexts ---------------------------------------------------------------------------


def event_contexts(event: Event) -> list[tuple[str, dict]]:
    """(sub-event id, the JsonLogic `event` object) for each thing a rule judges: each reading of a
    `data.ingested` batch, or the event itself."""
    occurred_at = event.occurred_at.isoformat().replace("+00:00", "Z")
    payload = event.payload
    if event.key == DATA_INGESTED:
        return [
            (
                f"{event.id}:{index}",
                {**reading, "key": event.key, "occurred_at": occurred_at},
            )
            for index, reading in enumerate(payload.get("readings", []))
        ]
    context = {
        **payload,
        "key": event.key,
        "meter_id": payload.get("meter_id"),
        "site_id": payload.get("site_id"),
        "occurred_at": occurred_at,
    }
    return [(str(event.id), context)]


def rule_matches(rule_logic: Any, event: dict) -> bool:
    """The rule's JsonLogic on `{"event": event}`; an evaluation error is "no match" (logged)."""
    try:
        return jsonlogic.truthy(jsonlogic.evaluate(rule_logic, {"event": event}))
    except Exception:
        logger.warning("rule evaluation failed", exc_info=True)
        return False


def rule_compiled(rule: Rule):
    """The rule's condition compiled once per loaded rule (see jsonlogic.compile_logic)."""
    compiled = getattr(rule, "_compiled_condition", None)
    if compiled is None or compiled[0] is not rule.jsonlogic:
        compiled = (rule.jsonlogic, jsonlogic.compile_logic(rule.jsonlogic))
        rule._compiled_condition = compiled
    return compiled[1]


def engine_match(rules: list[Rule], contexts: list[tuple[str, dict]]) -> list[tuple[Rule, str, dict]]:
    """The hot loop: every rule against every context; returns (rule, sub-id, event) matches."""
    matches = []
    truthy = jsonlogic.truthy
    max_depth = settings.AUTOMATIONS_MAX_CHAIN_DEPTH
    compiled = [(rule, rule_compiled(rule)) for rule in rules]
    for sub_id, event in contexts:
        data = {"event": event}
        chain = event.get("chain") if event.get("key") == ALERT_TRIGGERED else None
        if chain and len(chain) >= max_depth:
            continue  # loop guard: an alert chain triggers no rule past the maximum depth
        for rule, condition in compiled:
            if chain and rule.pk in chain:
                continue  # loop guard: a rule fires once per alert chain
            try:
                matched = truthy(condition(data))
            except Exception:
                logger.warning("rule %s evaluation failed", rule.pk, exc_info=True)
                continue
            if matched:
                matches.append((rule, sub_id, event))
    return matches


# --- throttle ------------------------------------------------------------------------------------


def dedupe_key_render(rule: Rule, event: dict) -> str:
    return templating.render(rule.dedupe_template, template_context(event, _rule_ref(rule)))


def _throttle_key(rule: Rule, dedupe_key: str) -> str:
    digest = hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]
    return f"jp:auto:throttle:{rule.uid}:{digest}"


def throttle_acquire(*, rule: Rule, dedupe_key: str, firing_id: str) -> bool:
    """True when this firing may go ahead: first in its window for (rule, dedupe key), or the same
    firing run again (a retried task must not be throttled by its own first run)."""
    if rule.throttle_seconds <= 0:
        return True
    key = _throttle_key(rule, dedupe_key)
    if cache.add(key, firing_id, timeout=rule.throttle_seconds):
        return True
    return cache.get(key) == firing_id


def throttle_would_suppress(*, rule: Rule, dedupe_key: str) -> bool:
    if rule.throttle_seconds <= 0:
        return False
    return cache.get(_throttle_key(rule, dedupe_key)) is not None


# --- evaluation ----------------------------------------------------------------------------------


@dataclass
class EvaluationSummary:
    evaluated: int = 0
    matched: int = 0
    suppressed: int = 0
    deliveries: list[int] = field(default_factory=list)
    alerts: list[int] = field(default_factory=list)


def _rule_ref(rule: Rule) -> dict:
    return {"id": rule.pk, "name": rule.name}


def _idempotency_key(sub_id: str, rule: Rule, action: Action) -> str:
    return f"{sub_id}:r{rule.pk}:a{action.pk}"


def _webhook_id(idempotency_key: str) -> str:
    return "msg_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def rules_evaluate(*, event: Event) -> EvaluationSummary:
    """Run the organization's active rules for the event and record what fires: deliveries
    (one per action), alerts, throttle marks. Safe to run twice for the same event: deliveries
    are unique per (event, rule, action) and a firing recognises its own throttle mark."""
    summary = EvaluationSummary()
    rules = active_rules(organization_id=event.organization_id, event_key=event.key)
    if not rules:
        return summary
    contexts = event_contexts(event)
    summary.evaluated = len(rules) * len(contexts)
    fired = []
    for rule, sub_id, ev in engine_match(rules, contexts):
        summary.matched += 1
        dedupe_key = dedupe_key_render(rule, ev)
        if not throttle_acquire(rule=rule, dedupe_key=dedupe_key, firing_id=sub_id):
            summary.suppressed += 1
            continue
        fired.append((rule, sub_id, ev, dedupe_key))
    if not fired:
        return summary
    now = timezone.now()
    with transaction.atomic():
        rows = []
        for rule, sub_id, ev, _dedupe_key in fired:
            tctx = template_context(ev, _rule_ref(rule))
            for rule_action in rule.rule_actions.all():
                action = rule_action.action
                if not action.is_active:
                    continue
                handler = handler_for(action.type)
                key = _idempotency_key(sub_id, rule, action)
                rows.append(
                    Delivery(
                        organization_id=event.organization_id,
                        action=action,
                        action_type=action.type,
                        rule=rule,
                        event_id=sub_id,
                        event_key=event.key,
                        idempotency_key=key,
                        webhook_id=_webhook_id(key) if action.type == "webhook" else "",
                        endpoint=handler.endpoint(action.config),
                        context=ev,
                        payload=handler.render(action.config, tctx),
                        next_attempt_at=now,
                    )
                )
        if rows:
            Delivery.objects.bulk_create(rows, ignore_conflicts=True)
            keys = [row.idempotency_key for row in rows]
            summary.deliveries = list(
                Delivery.objects.filter(idempotency_key__in=keys, status=Delivery.Status.PENDING).values_list(
                    "pk", flat=True
                )
            )
        for rule, sub_id, ev, dedupe_key in fired:
            if rule.alert_severity:
                alert = alert_raise(rule=rule, event_key=event.key, sub_id=sub_id, event=ev, subject=dedupe_key)
                if alert is not None:
                    summary.alerts.append(alert.pk)
        ids = list(summary.deliveries)
        transaction.on_commit(lambda: deliveries_enqueue(ids))
    return summary


def on_event(event: Event) -> None:
    """Event-bus subscriber. `data.ingested` arrives in the ingesting process after commit: hand
    the whole batch to one worker task. Every other key arrives in a worker already (through the
    outbox), inside the transaction that marks the outbox row dispatched: evaluate right here."""
    if not rules_exist(organization_id=event.organization_id, event_key=event.key):
        return
    if event.key == DATA_INGESTED:
        from automations.tasks import rules_evaluate_event

        rules_evaluate_event.delay(event_to_message(event))
    else:
        rules_evaluate(event=event)


def event_to_message(event: Event) -> dict:
    return event.as_dict()


def event_from_message(message: dict) -> Event:
    return Event(
        organization_id=message["organization_id"],
        key=message["key"],
        payload=message["payload"],
        source=message["source"],
        occurred_at=datetime.fromisoformat(message["occurred_at"]),
        id=uuid.UUID(message["id"]),
    )


# --- dry run -------------------------------------------------------------------------------------


def rule_dry_run(*, rule: Rule, actions: list[Action], event: dict) -> dict:
    """What the rule would do with this sample event, with no side effect at all: no row, no
    cache write, no event, no request."""
    event = {"key": rule.event_key, "occurred_at": timezone.now().isoformat().replace("+00:00", "Z"), **event}
    try:
        value = jsonlogic.evaluate(rule.jsonlogic, {"event": event})
        error = ""
    except Exception as exc:
        value, error = None, f"{type(exc).__name__}: {exc}"
    matched = jsonlogic.truthy(value) and not error
    dedupe_key = dedupe_key_render(rule, event)
    suppressed = bool(rule.pk) and throttle_would_suppress(rule=rule, dedupe_key=dedupe_key)
    tctx = template_context(event, _rule_ref(rule))
    planned = []
    for action in actions:
        planned.append(
            {
                "action_id": action.pk,
                "name": action.name,
                "type": action.type,
                "active": action.is_active,
                "payload": handler_for(action.type).render(action.config, tctx),
            }
        )
    return {
        "matched": matched,
        "result": value,
        "error": error,
        "dedupe_key": dedupe_key,
        "throttled": suppressed,
        "would_fire": matched and not suppressed,
        "alert": {"severity": rule.alert_severity, "subject": dedupe_key} if rule.alert_severity else None,
        "actions": planned if matched and not suppressed else [],
        "event": event,
    }


# --- actions and rules ---------------------------------------------------------------------------


def action_config_validate(*, action_type: str, config: dict, organization) -> dict:
    """The action type's clean config, or ConfigError naming each bad key."""
    if not isinstance(config, dict):
        raise ConfigError({"config": "must be an object"})
    return handler_for(action_type).validate(config, organization=organization)


@transaction.atomic
def rule_save(*, rule: Rule, action_ids: list[int] | None) -> Rule:
    """Save a rule and, when given, replace its actions (in the given order)."""
    rule.save()
    if action_ids is not None:
        rule.rule_actions.all().delete()
        from automations.models import RuleAction

        RuleAction.objects.bulk_create(
            [RuleAction(rule=rule, action_id=action_id, position=index) for index, action_id in enumerate(action_ids)]
        )
    # Now and again after commit: a reader between the two may cache the old answer for a moment.
    rules_changed(organization_id=rule.organization_id)
    transaction.on_commit(lambda: rules_changed(organization_id=rule.organization_id))
    return rule


# --- alerts --------------------------------------------------------------------------------------


def _open_alert_bump(*, rule: Rule, subject: str, sub_id: str) -> bool:
    """Count a firing on the open (active or acknowledged) alert of this rule and subject, if
    there is one; the same firing seen twice counts once."""
    open_alert = (
        Alert.objects.for_org(rule.organization_id)
        .select_for_update()
        .filter(rule=rule, subject=subject, status__in=Alert.OPEN_STATUSES)
        .first()
    )
    if open_alert is None:
        return False
    if open_alert.event_id != sub_id:
        open_alert.occurrences += 1
        open_alert.last_seen_at = timezone.now()
        open_alert.save(update_fields=["occurrences", "last_seen_at"])
    return True


def alert_raise(*, rule: Rule, event_key: str, sub_id: str, event: dict, subject: str) -> Alert | None:
    """Open an alert (and publish `alert.triggered`), or bump the open one for (rule, subject).
    Chains stop at AUTOMATIONS_MAX_CHAIN_DEPTH: an alert raised deeper is not published."""
    chain = list(event.get("chain") or []) if event_key == ALERT_TRIGGERED else []
    chain.append(rule.pk)
    message = templating.render(rule.alert_message_template, template_context(event, _rule_ref(rule)))
    meter_id = event.get("meter_id") if isinstance(event.get("meter_id"), int) else None
    site_id = event.get("site_id") if isinstance(event.get("site_id"), int) else None
    from energy.models import Meter, Site

    if meter_id and not Meter.objects.for_org(rule.organization_id).filter(pk=meter_id).exists():
        meter_id = None
    if site_id and not Site.objects.for_org(rule.organization_id).filter(pk=site_id).exists():
        site_id = None
    if _open_alert_bump(rule=rule, subject=subject, sub_id=sub_id):
        return None
    if Alert.objects.filter(organization_id=rule.organization_id, rule=rule, event_id=sub_id).exists():
        return None  # this firing already raised (and maybe cleared) its alert
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                organization_id=rule.organization_id,
                rule=rule,
                severity=rule.alert_severity or Severity.WARNING,
                subject=subject,
                meter_id=meter_id,
                site_id=site_id,
                message=message[:500],
                event_id=sub_id,
                event_key=event_key,
                event=event,
            )
    except IntegrityError:
        # Another worker opened one for this rule and subject since we looked (the constraint
        # alert_one_open_per_rule_subject): this firing is an occurrence of that alert.
        _open_alert_bump(rule=rule, subject=subject, sub_id=sub_id)
        return None
    if len(chain) > settings.AUTOMATIONS_MAX_CHAIN_DEPTH:
        logger.warning("alert chain %s reached the maximum depth; alert %s not published", chain, alert.pk)
        return alert
    publish(
        rule.organization_id,
        ALERT_TRIGGERED,
        {
            "alert_id": alert.pk,
            "severity": alert.severity,
            "status": alert.status,
            "subject": subject,
            "message": alert.message,
            "rule_id": rule.pk,
            "rule_name": rule.name,
            "meter_id": meter_id,
            "site_id": site_id,
            "source_event_key": event_key,
            "source_event_id": sub_id,
            "chain": chain,
        },
        source="automations",
    )
    return alert


@transaction.atomic
def alert_acknowledge(*, alert: Alert, by: str) -> Alert:
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status == Alert.Status.ACTIVE:
        alert.status = Alert.Status.ACKNOWLEDGED
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = by[:200]
        alert.save(update_fields=["status", "acknowledged_at", "acknowledged_by"])
    return alert


@transaction.atomic
def alert_clear(*, alert: Alert, by: str) -> Alert:
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status != Alert.Status.CLEARED:
        alert.status = Alert.Status.CLEARED
        alert.cleared_at = timezone.now()
        alert.cleared_by = by[:200]
        alert.save(update_fields=["status", "cleared_at", "cleared_by"])
    return alert


# --- deliveries ----------------------------------------------------------------------------------


def retry_delay(attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based), with jitter."""
    base = settings.AUTOMATIONS_RETRY_BASE_SECONDS * settings.AUTOMATIONS_RETRY_FACTOR ** (attempt - 1)
    base = min(base, settings.AUTOMATIONS_RETRY_MAX_DELAY_SECONDS)
    jitter = settings.AUTOMATIONS_RETRY_JITTER
    return base * (rng or random).uniform(1 - jitter, 1 + jitter)


def _eager() -> bool:
    return bool(current_app.conf.task_always_eager)


ENQUEUE_CHUNK = 25


def deliveries_enqueue(ids: list[int], *, countdown: float = 0) -> None:
    """Queue attempts, up to ENQUEUE_CHUNK deliveries per task (a batch of 2,000 firings is 80
    broker messages, not 2,000). In-process (eager) Celery cannot wait, so delayed retries are left
    to the sweeper; with a broker they are also queued with a countdown (the sweeper is the
    safety net for a countdown held by a worker that died)."""
    if not ids or (countdown > 0 and _eager()):
        return
    from automations.tasks import delivery_attempt_many

    for start in range(0, len(ids), ENQUEUE_CHUNK):
        delivery_attempt_many.apply_async((ids[start : start + ENQUEUE_CHUNK],), countdown=countdown or None)


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
    healthy_endpoints = _healthy_endpoints(deliveries)
    results: dict[int, str] = {}
    ready: list[tuple[Delivery, bool]] = []
    finished: list[tuple[Delivery, Outcome]] = []
    for delivery in deliveries:
        if delivery.action is None:
            finished.append((delivery, Outcome(ok=False, retry=False, error="the action was deleted")))
            continue
        healthy = delivery.endpoint in healthy_endpoints
        if delivery.endpoint and not healthy:
            allowed, retry_at, healthy = breaker_allow(
                organization_id=delivery.organization_id, endpoint=delivery.endpoint, now=now, lease_seconds=lease
            )
            if not allowed:
                results[delivery.pk] = _defer(delivery, retry_at)
                continue
        ready.append((delivery, healthy))
    outcomes = _webhooks_send([delivery for delivery, _ in ready if delivery.action_type == "webhook"])
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


def _webhooks_send(deliveries: list[Delivery]) -> dict[int, Outcome]:
    """Send a task's webhooks one after another while the receivers answer quickly; once the
    task's sends have taken AUTOMATIONS_WEBHOOK_SEQUENTIAL_MS in all, send the rest side by side
    on the sender threads.

    Why not always threads: against a fast receiver an attempt is ~1 ms of CPU, and 25 threads
    taking turns on the GIL tripled the worker CPU per delivery (measured in-process on PostgreSQL:
    0.9 ms sequential, 1.4 ms with 4 threads, 3.3 ms with 25); on a busy worker host that CPU is
    what caps deliveries/s. Why threads at all: when receivers are slow (or time out), waiting
    dominates and threads are cheap, so 25 slow receivers cost about one wait instead of 25. The
    budget is a sum, not a per-attempt limit, so one attempt delayed by a busy host does not
    switch a task of fast receivers to threads."""
    outcomes: dict[int, Outcome] = {}
    handler = handler_for("webhook")
    budget = settings.AUTOMATIONS_WEBHOOK_SEQUENTIAL_MS / 1000
    started = time.perf_counter()
    for index, delivery in enumerate(deliveries):
        outcomes[delivery.pk] = handler.execute(delivery)
        rest = deliveries[index + 1 :]
        if rest and time.perf_counter() - started > budget:
            for other, outcome in zip(rest, _sender_pool().map(handler.execute, rest), strict=True):
                outcomes[other.pk] = outcome
            break
    return outcomes


_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None


def _sender_pool() -> ThreadPoolExecutor:
    """Threads that send one task's webhooks side by side; one pool per (forked) process."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool = ThreadPoolExecutor(max_workers=ENQUEUE_CHUNK, thread_name_prefix="webhook")
        _pool_pid = os.getpid()
    return _pool


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


def _healthy_endpoints(deliveries) -> set[str]:
    """Endpoints whose breaker is closed with no failure counted (or has no row yet)."""
    by_org: dict[int, set[str]] = {}
    for delivery in deliveries:
        if delivery.endpoint:
            by_org.setdefault(delivery.organization_id, set()).add(delivery.endpoint)
    healthy: set[str] = set()
    for organization_id, endpoints in by_org.items():
        unhealthy = set(
            CircuitBreaker.objects.filter(organization_id=organization_id, endpoint__in=endpoints)
            .exclude(state=CircuitBreaker.State.CLOSED, consecutive_failures=0)
            .values_list("endpoint", flat=True)
        )
        healthy |= endpoints - unhealthy
    return healthy


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
    Per-row ORM `.update()` calls cost ~0.5 ms of worker CPU per delivery (query compilation
    plus a round trip each), and Django's bulk_update builds a CASE expression per field that
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


def deliveries_due(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    now = now or timezone.now()
    due = Q(status__in=CLAIMABLE, next_attempt_at__lte=now) | Q(status=Delivery.Status.IN_FLIGHT, lease_until__lt=now)
    return list(Delivery.objects.filter(due).order_by("next_attempt_at").values_list("pk", flat=True)[:limit])


def deliveries_sweep(*, now: datetime | None = None) -> dict:
    """Periodic safety net (beat): queue due and abandoned deliveries, release waiting wallet
    top-ups once billing is installed, expire unapproved relay commands."""
    from automations.actions import billing_topup_service

    now = now or timezone.now()
    ids = deliveries_due(now=now)
    deliveries_enqueue(ids)
    released = 0
    if billing_topup_service() is not None:
        released = Delivery.objects.filter(status=Delivery.Status.WAITING, action_type="wallet_topup").update(
            status=Delivery.Status.PENDING, next_attempt_at=now
        )
    expired = relay_commands_expire(now=now)
    return {"queued": len(ids), "released": released, "expired": expired}


# --- circuit breaker -----------------------------------------------------------------------------


def breaker_allow(
    *, organization_id: int, endpoint: str, now: datetime, lease_seconds: float
) -> tuple[bool, Any, bool]:
    """(may this attempt go, when to come back if not, was the breaker closed with no failures).
    Closed: go. Open before the cool-down: wait. Open after it: this attempt becomes the
    half-open trial. Half-open: wait for the trial (or take over a trial whose worker died)."""
    row = (
        CircuitBreaker.objects.filter(organization_id=organization_id, endpoint=endpoint)
        .values_list("state", "consecutive_failures")
        .first()
    )
    if row is None:
        return True, None, True
    if row[0] == CircuitBreaker.State.CLOSED:
        return True, None, row[1] == 0
    with transaction.atomic():
        breaker = CircuitBreaker.objects.select_for_update().get(organization_id=organization_id, endpoint=endpoint)
        if breaker.state == CircuitBreaker.State.CLOSED:
            return True, None, False
        if breaker.state == CircuitBreaker.State.OPEN and now < breaker.retry_at:
            return False, breaker.retry_at, False
        if breaker.state == CircuitBreaker.State.HALF_OPEN and breaker.trial_until and now < breaker.trial_until:
            return False, breaker.trial_until, False
        breaker.state = CircuitBreaker.State.HALF_OPEN
        breaker.trial_until = now + timedelta(seconds=lease_seconds)
        breaker.save(update_fields=["state", "trial_until", "updated_at"])
        return True, None, False


def breaker_record(*, organization_id: int, endpoint: str, ok: bool, now: datetime) -> None:
    """Count a success (close, and release what was deferred) or a failure (open after N in a row,
    or at once when the half-open trial fails)."""
    if ok:
        changed = (
            CircuitBreaker.objects.filter(organization_id=organization_id, endpoint=endpoint)
            .exclude(state=CircuitBreaker.State.CLOSED, consecutive_failures=0)
            .update(state=CircuitBreaker.State.CLOSED, consecutive_failures=0, retry_at=None, trial_until=None)
        )
        if changed:
            deferred = Delivery.objects.filter(
                organization_id=organization_id, endpoint=endpoint, status=Delivery.Status.DEFERRED
            )
            ids = list(deferred.values_list("pk", flat=True))
            deferred.update(next_attempt_at=now)
            transaction.on_commit(lambda: deliveries_enqueue(ids))
        return
    with transaction.atomic():
        breaker, _ = CircuitBreaker.objects.select_for_update().get_or_create(
            organization_id=organization_id, endpoint=endpoint
        )
        breaker.consecutive_failures += 1
        threshold = settings.AUTOMATIONS_BREAKER_FAILURES
        if breaker.state == CircuitBreaker.State.HALF_OPEN or breaker.consecutive_failures >= threshold:
            breaker.state = CircuitBreaker.State.OPEN
            breaker.opened_at = now
            breaker.retry_at = now + timedelta(seconds=settings.AUTOMATIONS_BREAKER_COOLDOWN_SECONDS)
            breaker.trial_until = None
        breaker.save()


# --- relay commands ------------------------------------------------------------------------------


class NotAllowed(Exception):
    pass


def relay_command_may_decide(*, command: RelayCommand, user, scopes: set[str]) -> bool:
    """A token with relay:approve, or a user holding the command's approver role (or admin)."""
    if "relay:approve" in scopes:
        return True
    if user is None:
        return False
    roles = {command.approver_role, Membership.Role.ADMIN}
    return Membership.objects.filter(organization_id=command.organization_id, user=user, role__in=roles).exists()


@transaction.atomic
def relay_command_decide(
    *, command: RelayCommand, approve: bool, user=None, application=None, note: str = ""
) -> RelayCommand:
    """Approve or reject a command awaiting approval (who and when are recorded). An approved
    command goes to the device through the downlink service at once."""
    command = RelayCommand.objects.select_for_update().get(pk=command.pk)
    now = timezone.now()
    if command.status == RelayCommand.Status.AWAITING_APPROVAL and command.expires_at <= now:
        command.status = RelayCommand.Status.EXPIRED
        command.save(update_fields=["status", "updated_at"])
    if command.status != RelayCommand.Status.AWAITING_APPROVAL:
        raise NotAllowed(f"the command is {command.status}, not awaiting approval")
    command.status = RelayCommand.Status.APPROVED if approve else RelayCommand.Status.REJECTED
    command.decided_at = now
    command.decided_by = user
    command.decided_by_application = application
    command.decision_note = note[:500]
    command.save()
    if approve:
        relay_command_dispatch(command=command)
    return command


def relay_command_dispatch(*, command: RelayCommand) -> RelayCommand:
    """Hand an approved command to the energy app's device downlink (MQTT, open socket or HTTP
    polling); the downlink command's id and status are recorded on the relay command."""
    from energy.downlink import services as energy_services

    try:
        sent = energy_services.device_command_send(
            device=command.meter,
            name=f"relay.{command.command}",
            payload={"action": command.command, "relay_command_id": command.pk},
        )
    except ValueError as exc:
        command.status = RelayCommand.Status.FAILED
        command.downlink_status = f"error: {exc}"[:30]
        command.save(update_fields=["status", "downlink_status", "updated_at"])
        return command
    command.status = RelayCommand.Status.SENT
    command.downlink_id = str(sent.pk)
    command.downlink_status = sent.status
    command.save(update_fields=["status", "downlink_id", "downlink_status", "updated_at"])
    return command


def relay_commands_expire(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    return RelayCommand.objects.filter(status=RelayCommand.Status.AWAITING_APPROVAL, expires_at__lte=now).update(
        status=RelayCommand.Status.EXPIRED, updated_at=now
    )


# --- annotations ---------------------------------------------------------------------------------

ANNOTATION_CREATED = "annotation.created"  # a dashboard frame only, not a bus event key


def annotation_announce(*, annotation: Annotation) -> None:
    """After commit, show a new annotation on the live dashboards watching its meter's site
    (energy.live.fanout; the dashboard draws a marker and adds it to the feed). Not a bus event:
    rules must not fire on their own annotations."""
    from automations.selectors import ANNOTATION_FIELDS
    from energy.live.fanout import live_notice_send
    from joulepoint.platform.timefmt import isoz

    # The shape the analytics API and the dashboard snapshot give an annotation, plus its site.
    payload = {
        **{name: getattr(annotation, name) for name in ANNOTATION_FIELDS},
        "ts": isoz(annotation.ts),
        "site_id": annotation.meter.site_id,
    }
    transaction.on_commit(
        lambda: live_notice_send(
            organization_id=annotation.organization_id,
            site_id=payload["site_id"],
            key=ANNOTATION_CREATED,
            payload=payload,
            ident=f"annotation:{annotation.pk}",
            occurred_at=annotation.created_at or timezone.now(),
        )
    )


# --- metrics -------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    index = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return round(values[index], 2)


def deliveries_metrics(*, organization_id: int, since: datetime | None = None) -> dict:
    """Counts by status, success rate and p50/p95 latency, overall and per action, plus every
    endpoint's breaker state."""
    rows = Delivery.objects.for_org(organization_id)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    data = list(rows.values_list("action_id", "action__name", "action_type", "status", "latency_ms"))

    def block(items) -> dict:
        counts = {status: 0 for status in Delivery.Status.values}
        latencies = []
        for *_ignored, status, latency in items:
            counts[status] += 1
            if latency is not None:
                latencies.append(latency)
        finished = counts["succeeded"] + counts["dead"]
        return {
            "total": len(items),
            "by_status": counts,
            "success_rate": round(counts["succeeded"] / finished, 4) if finished else None,
            "latency_ms_p50": _percentile(latencies, 0.50),
            "latency_ms_p95": _percentile(latencies, 0.95),
        }

    per_action: dict[Any, list] = {}
    for row in data:
        per_action.setdefault((row[0], row[1], row[2]), []).append(row)
    breakers = CircuitBreaker.objects.for_org(organization_id).order_by("endpoint")
    return {
        "overall": block(data),
        "actions": [
            {"action_id": key[0], "name": key[1], "type": key[2], **block(items)}
            for key, items in sorted(per_action.items(), key=lambda item: (item[0][0] is None, item[0][0] or 0))
        ],
        "breakers": [
            {
                "endpoint": b.endpoint,
                "state": b.state,
                "consecutive_failures": b.consecutive_failures,
                "opened_at": b.opened_at,
                "retry_at": b.retry_at,
            }
            for b in breakers
        ],
    }

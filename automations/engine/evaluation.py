"""Rule evaluation: match an event's contexts against the organization's active rules and record
what fires (deliveries, alerts, throttle marks); the event-bus subscriber that starts it.

Tenant scope: every function acts for the one organization the event names.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from automations import jsonlogic, taskqueue, templating
from automations.alerts import ALERT_TRIGGERED, alert_raise
from automations.deliveries.actions.registry import handler_for
from automations.deliveries.enqueue import deliveries_enqueue
from automations.engine import cache as rule_cache
from automations.engine.contexts import event_contexts
from automations.engine.throttle import dedupe_key_render, throttle_acquire
from automations.models import Action, Delivery, Rule
from automations.selectors import active_rules
from energy.events import DATA_INGESTED
from joulepoint.events.types import Event
from joulepoint.platform.enqueue import enqueue

logger = logging.getLogger(__name__)


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


@dataclass
class EvaluationSummary:
    evaluated: int = 0
    matched: int = 0
    suppressed: int = 0
    deliveries: list[int] = field(default_factory=list)
    alerts: list[int] = field(default_factory=list)


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
            tctx = templating.template_context(ev, templating.rule_ref(rule))
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
    if not rule_cache.rules_exist(organization_id=event.organization_id, event_key=event.key):
        return
    if event.key == DATA_INGESTED:
        enqueue(taskqueue.RULES_EVALUATE_EVENT, event_to_message(event))
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

"""Dry runs: what a rule would do with a sample event, with no side effect."""

from __future__ import annotations

from django.utils import timezone

from automations import jsonlogic, templating
from automations.deliveries.actions.registry import handler_for
from automations.engine.throttle import dedupe_key_render, throttle_would_suppress
from automations.models import Action, Rule
from joulepoint.platform.timefmt import isoz


def rule_dry_run(*, rule: Rule, actions: list[Action], event: dict) -> dict:
    """What the rule would do with this sample event, with no side effect at all: no row, no
    cache write, no event, no request."""
    event = {"key": rule.event_key, "occurred_at": isoz(timezone.now()), **event}
    try:
        value = jsonlogic.evaluate(rule.jsonlogic, {"event": event})
        error = ""
    except Exception as exc:
        value, error = None, f"{type(exc).__name__}: {exc}"
    matched = jsonlogic.truthy(value) and not error
    dedupe_key = dedupe_key_render(rule, event)
    suppressed = bool(rule.pk) and throttle_would_suppress(rule=rule, dedupe_key=dedupe_key)
    tctx = templating.template_context(event, templating.rule_ref(rule))
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

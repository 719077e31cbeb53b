"""Automations' part of the `make run` demo (registered with energy.demo in AutomationsConfig.ready()).

Two rules on what the demo depot's history and simulator produce:

- "Voltage sag or swell" (`pq.event`, opened sag or swell): a warning alert, a note on the
  meter's timeline (annotate) and a webhook to the demo's receiver;
- "Breaker trip" (`protection.event`, kind trip): a critical alert, a note and the webhook.

And, when the billing app is installed, "Demo top-up on low balance" (`wallet.low_balance` of
the demo wallet): a `wallet_topup` action credits the wallet its suggested top-up, once per
event (the delivery's idempotency key). It is registered to run after the history, so billing's
part (registered after ours) has created the wallet; billing does not import automations, so the
rule is made here from what `billing.demo.billing_demo_topup` answers.

Created through the same services as the API (action configs validated by their handlers, rules
saved by `rule_save`), found by name on later runs. The webhook goes to the small receiver that
`make run` starts on 127.0.0.1 (`manage.py demo_webhook_receiver`, log in var/): loopback targets
need AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE, which `make run` sets; without it the rules are created
without the webhook.
"""

from __future__ import annotations

from django.apps import apps
from django.conf import settings

from automations import jsonlogic, templating
from automations.deliveries.actions.base import ConfigError
from automations.deliveries.actions.registry import action_config_validate
from automations.engine.rules import rule_save
from automations.models import Action, ActionType, Rule, Severity
from energy.events import PQ_EVENT, PROTECTION_EVENT

ANNOTATE = "Demo: note on the meter's timeline"
TOPUP_ACTION = "Demo: wallet top-up"
TOPUP_RULE = "Demo top-up on low balance"
WEBHOOK = "Demo: webhook to the local receiver"
RULES = (
    {
        "name": "Voltage sag or swell",
        "description": "A voltage sag or swell opened at a meter (IEEE 1159 thresholds).",
        "event_key": PQ_EVENT,
        "jsonlogic": {
            "and": [
                {"==": [{"var": "event.action"}, "opened"]},
                {"in": [{"var": "event.kind"}, ["sag", "swell"]]},
            ]
        },
        "alert_severity": Severity.WARNING,
        "alert_message_template": "Voltage {event.kind}: {event.worst_value:.2f} {event.unit}",
    },
    {
        "name": "Breaker trip",
        "description": "A breaker tripped: the feeder is off until someone closes it.",
        "event_key": PROTECTION_EVENT,
        "jsonlogic": {"==": [{"var": "event.kind"}, "trip"]},
        "alert_severity": Severity.CRITICAL,
        "alert_message_template": "Breaker tripped",
    },
)


def demo_webhook_url() -> str:
    return f"http://127.0.0.1:{settings.DEMO_WEBHOOK_PORT}/joulepoint"


def _action(organization, name: str, action_type: str, config: dict) -> Action:
    clean = action_config_validate(action_type=action_type, config=config, organization=organization)
    action, _ = Action.objects.update_or_create(
        organization=organization, name=name, defaults={"type": action_type, "config": clean, "is_active": True}
    )
    return action


def demo_automations_ensure(*, organization, user, site, meters) -> dict:
    """The demo's actions and rules (idempotent); what var/demo.json records about them."""
    actions = [
        _action(
            organization,
            ANNOTATE,
            ActionType.ANNOTATE,
            {"text_template": "{rule.name}: {event.kind}"},
        )
    ]
    webhook_url = None
    try:
        actions.append(
            _action(
                organization,
                WEBHOOK,
                ActionType.WEBHOOK,
                {"url": demo_webhook_url(), "method": "POST", "timeout_seconds": 5},
            )
        )
        webhook_url = demo_webhook_url()
    except ConfigError:
        pass  # loopback refused (AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE off): no webhook in this demo
    rules = []
    for spec in RULES:
        jsonlogic.validate(spec["jsonlogic"])  # what the API checks before a save
        templating.check(spec["alert_message_template"])
        rule = Rule.objects.filter(organization=organization, name=spec["name"]).first() or Rule(
            organization=organization
        )
        for key, value in spec.items():
            setattr(rule, key, value)
        rule.is_active = True
        rule_save(rule=rule, action_ids=[action.pk for action in actions])
        rules.append({"id": rule.pk, "name": rule.name, "event_key": rule.event_key})
    return {"rules": rules, "webhook_url": webhook_url}


def demo_wallet_topup_ensure(*, organization, user, site, meters) -> dict | None:
    """The demo wallet's top-up rule and action (idempotent); None without billing."""
    if not apps.is_installed("billing"):
        return None
    from billing.apps import WALLET_LOW_BALANCE
    from billing.demo import billing_demo_topup

    config = billing_demo_topup(organization=organization)
    if config is None:
        return None
    action = _action(organization, TOPUP_ACTION, ActionType.WALLET_TOPUP, config)
    spec = {
        "name": TOPUP_RULE,
        "description": "The demo wallet fell below its threshold: credit its suggested top-up.",
        "event_key": WALLET_LOW_BALANCE,
        "jsonlogic": {"==": [{"var": "event.wallet_id"}, config["wallet_id"]]},
        "throttle_seconds": 0,
        "dedupe_template": "",
    }
    jsonlogic.validate(spec["jsonlogic"])
    rule = Rule.objects.filter(organization=organization, name=TOPUP_RULE).first() or Rule(organization=organization)
    for key, value in spec.items():
        setattr(rule, key, value)
    rule.is_active = True
    rule_save(rule=rule, action_ids=[action.pk])
    return {"rule": {"id": rule.pk, "name": rule.name, "event_key": rule.event_key}, "action_id": action.pk, **config}

"""Saving a rule with its ordered actions, and forgetting the cached answers it changes."""

from __future__ import annotations

from django.db import transaction

from automations.engine.cache import rules_changed
from automations.models import Rule, RuleAction


@transaction.atomic
def rule_save(*, rule: Rule, action_ids: list[int] | None) -> Rule:
    """Save a rule and, when given, replace its actions (in the given order)."""
    rule.save()
    if action_ids is not None:
        rule.rule_actions.all().delete()
        RuleAction.objects.bulk_create(
            [RuleAction(rule=rule, action_id=action_id, position=index) for index, action_id in enumerate(action_ids)]
        )
    # Now and again after commit: a reader between the two may cache the old answer for a moment.
    rules_changed(organization_id=rule.organization_id)
    transaction.on_commit(lambda: rules_changed(organization_id=rule.organization_id))
    return rule

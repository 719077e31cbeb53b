"""The per-process rule cache: does an organization have active rules for an event key?

Asked on the ingest path for every batch, so telemetry of an organization without rules costs no
task. The answer lives in Django's cache (shared by the processes) and in each process's
listener answers (joulepoint.events.listeners), which a rule change invalidates everywhere.
"""

from __future__ import annotations

from django.core.cache import cache

from automations.models import Rule
from joulepoint.events.keys import event_keys
from joulepoint.events.listeners import listener_answer, listeners_changed
from joulepoint.platform.degraded import REDIS_ERRORS, redis_outage_log

RULES_CACHE_SECONDS = 30


def _has_rules_key(organization_id: int, event_key: str) -> str:
    return f"jp:auto:has-rules:{organization_id}:{event_key}"


def rules_changed(*, organization_id: int) -> None:
    """Forget the cached "does this organization have rules for key X" answers, shared and kept
    by each process."""
    try:
        cache.delete_many([_has_rules_key(organization_id, key) for key in event_keys()])
    except REDIS_ERRORS as error:
        # Redis unreachable: its entries expire within RULES_CACHE_SECONDS (and a Redis back
        # without its data has none); a rule save must not fail for it.
        redis_outage_log("rule cache entries left to expire", error)
    listeners_changed()


def rules_exist(*, organization_id: int, event_key: str) -> bool:
    """Cheap check on the ingest path, so telemetry of an organization without rules costs no task.

    Kept by the process while the listeners' epoch stands (joulepoint.events.listeners), behind
    the shared cache entry that spares the database."""

    def look_up() -> bool:
        key = _has_rules_key(organization_id, event_key)
        try:
            answer = cache.get(key)
        except REDIS_ERRORS as error:
            redis_outage_log("rule checks from the database", error)
            return Rule.objects.for_org(organization_id).filter(event_key=event_key, is_active=True).exists()
        if answer is None:
            answer = Rule.objects.for_org(organization_id).filter(event_key=event_key, is_active=True).exists()
            try:
                cache.set(key, answer, RULES_CACHE_SECONDS)
            except REDIS_ERRORS as error:
                redis_outage_log("rule checks from the database", error)
        return answer

    return listener_answer(("has-rules", organization_id, event_key), look_up)

"""Throttle per (rule, dedupe key): at most one firing per window.

Throttle marks live in Django's cache (Redis in production; `cache.add` is atomic across workers),
never in one process's memory.
"""

from __future__ import annotations

import hashlib

from django.core.cache import cache

from automations import templating
from automations.models import Rule


def dedupe_key_render(rule: Rule, event: dict) -> str:
    return templating.render(rule.dedupe_template, templating.template_context(event, templating.rule_ref(rule)))


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

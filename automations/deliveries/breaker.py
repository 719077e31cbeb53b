"""Per-endpoint circuit breakers (state in the database, shared by the workers): after N failures
in a row an endpoint's deliveries are deferred, not dropped, until a half-open trial succeeds."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from automations.deliveries.enqueue import deliveries_enqueue
from automations.models import CircuitBreaker, Delivery


def healthy_endpoints(deliveries) -> set[str]:
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

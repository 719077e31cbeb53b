"""Celery doors of load management: take ids, call one service, safe to run twice (a second run
recomputes the same setpoints and sends nothing that did not change)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from energy.load import demand_response, services

SITES_TASK = "energy.load.tasks.sites_allocate"
DEMAND_RESPONSE_TASK = "energy.load.tasks.demand_responses_announce"
PRUNE_TASK = "energy.load.tasks.allocation_history_prune"


@shared_task(name=SITES_TASK)
def sites_allocate() -> int:
    """Beat, every few seconds: one allocation task per load-managed site."""
    return len(services.sites_allocate(now=timezone.now()))


@shared_task(name=services.SITE_TASK)
def site_allocate(site_id: int) -> int | None:
    allocation = services.site_allocate(site_id=site_id, now=timezone.now())
    return allocation.pk if allocation else None


@shared_task(name=DEMAND_RESPONSE_TASK)
def demand_responses_announce() -> int:
    return demand_response.demand_responses_announce(now=timezone.now())


@shared_task(name=PRUNE_TASK)
def allocation_history_prune() -> int:
    """Beat, hourly: allocations older than LOAD_HISTORY_RETENTION_DAYS go."""
    return services.allocation_history_prune(now=timezone.now(), keep_days=settings.LOAD_HISTORY_RETENTION_DAYS)

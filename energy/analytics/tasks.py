"""Celery doors of the analytics: thin, idempotent, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from energy.analytics.retention import retention_enforce_all
from energy.analytics.rollups import rollups_refresh_pending


@shared_task(name="energy.analytics.rollups_refresh_pending", ignore_result=True)
def rollups_refresh_pending_task() -> int:
    return rollups_refresh_pending()


@shared_task(name="energy.analytics.retention_enforce", ignore_result=True)
def retention_enforce_task() -> dict:
    return retention_enforce_all()

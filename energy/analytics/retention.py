"""Per-organization retention: raw readings expire after `raw_retention_days`, rollups after
`rollup_retention_days`. Rollups are brought up to date before raw rows go, so downsampled
history survives the raw data (downsampling, not plain TTL deletion)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from energy.analytics.models import ROLLUP_MODELS, AnalyticsSettings
from energy.models import Meter, Reading
from joulepoint.tenancy.models import Organization

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    raw_days: int | None
    rollup_days: int | None
    expected_interval_seconds: int


def _days(value: int) -> int | None:
    return value or None


def retention_for(organization_id: int) -> Retention:
    """The organization's settings row, or the ANALYTICS_* defaults when it has none."""
    row = AnalyticsSettings.objects.filter(organization_id=organization_id).first()
    if row is None:
        return Retention(
            raw_days=_days(settings.ANALYTICS_RAW_RETENTION_DAYS),
            rollup_days=_days(settings.ANALYTICS_ROLLUP_RETENTION_DAYS),
            expected_interval_seconds=settings.ANALYTICS_EXPECTED_INTERVAL_SECONDS,
        )
    return Retention(row.raw_retention_days, row.rollup_retention_days, row.expected_interval_seconds)


def raw_cutoff_for_meter(meter_id: int, *, now: datetime | None = None) -> datetime | None:
    organization_id = Meter.objects.filter(pk=meter_id).values_list("organization_id", flat=True).first()
    if organization_id is None:
        return None
    days = retention_for(organization_id).raw_days
    return None if days is None else (now or timezone.now()) - timedelta(days=days)


def retention_enforce(*, organization: Organization, now: datetime | None = None, batch_size: int = 10_000) -> dict:
    """Delete this organization's raw readings and rollups older than its retention, in batches
    of `batch_size` rows per meter and transaction (short locks, bounded WAL). Returns counts."""
    from energy.analytics.rollups import rollups_ensure_current

    now = now or timezone.now()
    retention = retention_for(organization.pk)
    meter_ids = list(Meter.objects.for_org(organization).values_list("pk", flat=True))
    deleted = {"raw": 0, "rollups": 0}
    if retention.raw_days is not None:
        # Pending rollup windows first: their raw readings are about to go.
        rollups_ensure_current(meter_ids=meter_ids)
        cutoff = now - timedelta(days=retention.raw_days)
        for meter_id in meter_ids:
            deleted["raw"] += _delete_in_batches(Reading, meter_id, cutoff, batch_size)
    if retention.rollup_days is not None:
        cutoff = now - timedelta(days=retention.rollup_days)
        for model in ROLLUP_MODELS:
            for meter_id in meter_ids:
                deleted["rollups"] += _delete_in_batches(model, meter_id, cutoff, batch_size)
    if deleted["raw"] or deleted["rollups"]:
        logger.info("retention of organization %s deleted %s", organization.pk, deleted)
    return deleted


def _delete_in_batches(model, meter_id: int, cutoff: datetime, batch_size: int) -> int:
    total = 0
    while True:
        with transaction.atomic():
            ids = list(
                model.objects.filter(meter_id=meter_id, ts__lt=cutoff)
                .order_by("ts")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                return total
            model.objects.filter(pk__in=ids).delete()
        total += len(ids)


def retention_enforce_all(*, now: datetime | None = None) -> dict:
    """Run every organization's retention (the daily beat task)."""
    totals = {"raw": 0, "rollups": 0}
    for organization in Organization.objects.all():
        counts = retention_enforce(organization=organization, now=now)
        totals["raw"] += counts["raw"]
        totals["rollups"] += counts["rollups"]
    return totals

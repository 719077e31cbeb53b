"""Per-organization retention: raw readings expire after `raw_retention_days`, rollups after
`rollup_retention_days`. Rollups are brought up to date before raw rows go, so downsampled
history survives the raw data (downsampling, not plain TTL deletion)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from energy.analytics.models import ROLLUP_MODELS, AnalyticsSettings, analytics_settings_errors
from energy.analytics.policy import Retention, retention_for
from energy.analytics.rollups import rollups_ensure_current
from energy.analytics.subjects import floor_time
from energy.models import Meter, Reading
from joulepoint.tenancy.models import Organization

logger = logging.getLogger(__name__)


class AnalyticsSettingsInvalid(Exception):
    """Settings that break a rule; `errors` maps each field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(errors)
        self.errors = errors


@transaction.atomic
def analytics_settings_update(*, organization: Organization, values: dict, partial: bool = False) -> Retention:
    """Set an organization's retention and expected interval; returns the settings now in force.

    `partial`: fields missing from `values` keep their current value (the organization's, or the
    platform defaults it had so far); otherwise they take the model's defaults (keep forever,
    60 s). The rules are checked on the result, so a PATCH of one field cannot break them.
    Expired rows are deleted by the next hourly retention run, not here.
    Tenant scope: the organization's own settings row only."""
    # The row is created (with the values in force so far) if missing, then locked, so two
    # concurrent updates neither collide on the one-per-organization row nor lose a field.
    before = retention_for(organization.pk)
    created, _ = AnalyticsSettings.objects.get_or_create(
        organization=organization,
        defaults={
            "raw_retention_days": before.raw_days,
            "rollup_retention_days": before.rollup_days,
            "expected_interval_seconds": before.expected_interval_seconds,
        },
    )
    row = AnalyticsSettings.objects.select_for_update().get(pk=created.pk)
    merged = {
        "raw_retention_days": row.raw_retention_days if partial else None,
        "rollup_retention_days": row.rollup_retention_days if partial else None,
        "expected_interval_seconds": row.expected_interval_seconds if partial else 60,
    }
    merged.update({key: value for key, value in values.items() if key in merged})
    errors = analytics_settings_errors(**merged)
    if errors:
        raise AnalyticsSettingsInvalid(errors)
    for key, value in merged.items():
        setattr(row, key, value)
    row.save()
    return retention_for(organization.pk)


def retention_enforce(*, organization: Organization, now: datetime | None = None, batch_size: int = 10_000) -> dict:
    """Delete this organization's raw readings and rollups older than its retention, in batches
    of `batch_size` rows per meter and transaction (short locks, bounded WAL). Returns counts."""
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
        # On a whole hour, so every level keeps or drops the same hours: KPIs read the hourly
        # rollups for whole hours and the 15-minute ones for the demand series.
        cutoff = floor_time(now - timedelta(days=retention.rollup_days), 3600)
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

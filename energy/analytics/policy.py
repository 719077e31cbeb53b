"""The retention policy in force for an organization: its settings row, or the ANALYTICS_*
defaults when it has none. Read by the rollups (which windows may still be recomputed), the
KPIs (the expected reporting interval) and retention enforcement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from energy.analytics.models import AnalyticsSettings
from energy.models import Meter


@dataclass(frozen=True)
class Retention:
    raw_days: int | None
    rollup_days: int | None
    expected_interval_seconds: int
    source: str = "organization"  # or "defaults": the organization has no settings row


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
            source="defaults",
        )
    return Retention(row.raw_retention_days, row.rollup_retention_days, row.expected_interval_seconds)


def raw_cutoff_for_meter(meter_id: int, *, now: datetime | None = None) -> datetime | None:
    organization_id = Meter.objects.filter(pk=meter_id).values_list("organization_id", flat=True).first()
    if organization_id is None:
        return None
    days = retention_for(organization_id).raw_days
    return None if days is None else (now or timezone.now()) - timedelta(days=days)

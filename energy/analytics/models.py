"""Rollup tables, the queue of windows to roll up, and per-organization retention settings.

Imported by `energy.models`, so the models belong to the `energy` app.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from energy.models.devices import Meter
from energy.models.readings import READING_FIELDS
from joulepoint.tenancy.models import Organization, TenantModel

# Aggregates kept per reading field in every rollup row.
ROLLUP_AGGREGATES = ("avg", "min", "max", "last")
# Cumulative registers: each rollup row also keeps the energy attributed to its readings.
REGISTER_FIELDS = ("total_energy", "export_energy")


def _rollup_attrs() -> dict:
    attrs: dict = {
        "__module__": __name__,
        "meter": models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+"),
        "ts": models.DateTimeField(help_text="Bucket start (UTC)"),
        "n": models.PositiveIntegerField(help_text="Readings in the bucket"),
        "Meta": type("Meta", (), {"abstract": True}),
    }
    for name in READING_FIELDS:
        for agg in ROLLUP_AGGREGATES:
            attrs[f"{name}_{agg}"] = models.FloatField(null=True, blank=True)
    for name in REGISTER_FIELDS:
        attrs[f"{name}_inc"] = models.FloatField(
            null=True, blank=True, help_text="kWh counted by the bucket's readings (resets handled)"
        )
        attrs[f"{name}_gap"] = models.FloatField(
            null=True,
            blank=True,
            help_text="kWh the register moved across gaps longer than ANALYTICS_MAX_GAP_SECONDS ending here",
        )
    return attrs


ReadingRollupBase = type("ReadingRollupBase", (TenantModel,), _rollup_attrs())
ReadingRollupBase.__doc__ = """Aggregates of one meter's readings in one UTC-aligned bucket.

For each reading field: avg, min, max and last (the value of the bucket's last reading that
carries the field). For the registers, `<field>_inc` is the energy attributed to the bucket's
readings: the increase since the previous reading that carried the register (in this bucket
or before), with a counter reset (a decrease) counting the new value as energy since zero.
An increase across a gap longer than `ANALYTICS_MAX_GAP_SECONDS` is not the bucket's energy
(it happened at some unknown time in the gap): it goes to `<field>_gap` instead, on the bucket
of the reading that ends the gap.
Tenant scope: through the meter's organization.
"""


class ReadingRollup1m(ReadingRollupBase):
    """1-minute rollup (see ReadingRollupBase)."""

    tenant_path = "meter__organization"
    bucket_seconds = 60

    class Meta:
        constraints = [models.UniqueConstraint(fields=["meter", "ts"], name="uniq_rollup1m_meter_ts")]


class ReadingRollup15m(ReadingRollupBase):
    """15-minute rollup (see ReadingRollupBase); the source of KPIs, the matrix and forecasts."""

    tenant_path = "meter__organization"
    bucket_seconds = 900

    class Meta:
        constraints = [models.UniqueConstraint(fields=["meter", "ts"], name="uniq_rollup15m_meter_ts")]


class ReadingRollup1h(ReadingRollupBase):
    """Hourly rollup (see ReadingRollupBase)."""

    tenant_path = "meter__organization"
    bucket_seconds = 3600

    class Meta:
        constraints = [models.UniqueConstraint(fields=["meter", "ts"], name="uniq_rollup1h_meter_ts")]


ROLLUP_MODELS: tuple[type[models.Model], ...] = (ReadingRollup1m, ReadingRollup15m, ReadingRollup1h)


class RollupDirty(TenantModel):
    """A window of a meter's readings that changed since its rollups were computed.

    Written by ingest in the same transaction as the readings; a worker recomputes the window's
    rollups and deletes the row. Tenant scope: through the meter.
    """

    tenant_path = "meter__organization"

    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+")
    start = models.DateTimeField()
    end = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["meter", "start"], name="rollupdirty_meter_idx")]


# Bounds of the settings: a century of retention (a cutoff further back would overflow dates) and
# a reporting interval of at most a day.
MAX_RETENTION_DAYS = 36_500
MAX_EXPECTED_INTERVAL_SECONDS = 86_400


def analytics_settings_errors(
    *, raw_retention_days: int | None, rollup_retention_days: int | None, expected_interval_seconds: int
) -> dict[str, str]:
    """What is wrong with a set of settings (empty when nothing). The admin and the API share it.

    Rollups are the downsampled history that outlives raw data, so they are kept at least as
    long as the raw readings they summarise: otherwise a KPI over a range whose raw rows still
    exist would find no rollups there (and a late reading would recreate some of them)."""
    errors: dict[str, str] = {}
    for name, days in (("raw_retention_days", raw_retention_days), ("rollup_retention_days", rollup_retention_days)):
        if days is not None and not 1 <= days <= MAX_RETENTION_DAYS:
            errors[name] = f"Must be a whole number of days from 1 to {MAX_RETENTION_DAYS}, or null (keep forever)."
    if not 1 <= expected_interval_seconds <= MAX_EXPECTED_INTERVAL_SECONDS:
        errors["expected_interval_seconds"] = f"Must be from 1 to {MAX_EXPECTED_INTERVAL_SECONDS} seconds."
    if errors:
        return errors
    if rollup_retention_days is not None:
        if raw_retention_days is None:
            errors["rollup_retention_days"] = (
                "Raw readings are kept forever, so rollups must be too (null): rollups may not expire "
                "before the raw readings they summarise."
            )
        elif rollup_retention_days < raw_retention_days:
            errors["rollup_retention_days"] = (
                f"Must be at least raw_retention_days ({raw_retention_days}) or null: rollups may not "
                "expire before the raw readings they summarise."
            )
    return errors


class AnalyticsSettings(TenantModel):
    """An organization's data retention: raw readings are kept `raw_retention_days`, rollups
    `rollup_retention_days` (empty: forever). Without a row, the settings' defaults apply."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="analytics_settings")
    raw_retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Delete raw readings older than this many days (empty: keep forever)"
    )
    rollup_retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Delete rollups older than this many days (empty: keep forever)"
    )
    expected_interval_seconds = models.PositiveIntegerField(
        default=60, help_text="How often meters are expected to report; the base of data completeness"
    )

    class Meta:
        verbose_name = "analytics and retention settings"
        verbose_name_plural = "analytics and retention settings"

    def __str__(self) -> str:
        return f"Analytics settings of {self.organization}"

    def clean(self) -> None:
        # The same rules as the API (rollups outlive raw data; bounded days), for the admin form.
        if self.expected_interval_seconds is None:
            return  # the form reports the missing value itself
        errors = analytics_settings_errors(
            raw_retention_days=self.raw_retention_days,
            rollup_retention_days=self.rollup_retention_days,
            expected_interval_seconds=self.expected_interval_seconds,
        )
        if errors:
            raise ValidationError(errors)

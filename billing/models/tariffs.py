"""Tariffs and their versions.

A tariff names a currency and a holiday calendar; its prices live in versions, each valid from a
local date until the next version's date, so a price change applies from its date and a range
spanning it is costed part by part. Time-of-use periods are a JSON list on the version, checked
by billing.tariffs.validation (coverage of every 15-minute window exactly once per day type and
month) before anything is saved; money is stored as decimal strings there and as DecimalField
here, never float.
"""

from __future__ import annotations

from django.db import models

from joulepoint.tenancy.models import Organization, TenantModel

MONEY = {"max_digits": 14, "decimal_places": 4}
RATE = {"max_digits": 14, "decimal_places": 6}


class Tariff(TenantModel):
    """A named price list in one ISO 4217 currency. Tenant: `organization`.

    `country`/`subdivision` choose the public-holiday calendar (the `holidays` package) that makes
    a date a `holiday` day type; empty country: no holidays."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="tariffs")
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, help_text="ISO 4217, e.g. EUR")
    country = models.CharField(max_length=2, blank=True, default="", help_text="ISO 3166-1 alpha-2, for holidays")
    subdivision = models.CharField(max_length=10, blank=True, default="", help_text="e.g. BE for Berlin")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.currency})"


class TariffVersion(TenantModel):
    """The prices of a tariff from `valid_from` (a local date at the site) until the next
    version's `valid_from`. (tariff, valid_from) is unique. Tenant: through the tariff.

    `periods` (energy, time of use) and `demand_periods` (optional, TOU demand charges) are lists
    of `{name, months: [from, to], day_types: [...], start: "HH:MM", end: "HH:MM", rate | tiers}`
    with rates as decimal strings; billing.tariffs.validation is their schema."""

    tenant_path = "tariff__organization"

    tariff = models.ForeignKey(Tariff, on_delete=models.CASCADE, related_name="versions")
    valid_from = models.DateField()
    periods = models.JSONField(default=list)
    demand_periods = models.JSONField(default=list, blank=True)
    export_rate = models.DecimalField(null=True, blank=True, help_text="Credit per exported kWh", **RATE)
    fixed_per_day = models.DecimalField(default=0, **MONEY)
    fixed_per_month = models.DecimalField(default=0, help_text="Per billing cycle", **MONEY)
    demand_rate = models.DecimalField(default=0, help_text="Flat, per kW of the cycle's peak", **RATE)
    minimum_charge = models.DecimalField(default=0, help_text="Per billing cycle, before tax", **MONEY)
    tax_pct = models.DecimalField(default=0, max_digits=6, decimal_places=3)

    class Meta:
        ordering = ["tariff_id", "valid_from"]
        constraints = [models.UniqueConstraint(fields=["tariff", "valid_from"], name="uniq_tariff_version_from")]

    def __str__(self) -> str:
        return f"{self.tariff} from {self.valid_from}"

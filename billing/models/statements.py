"""Issued statements: immutable, numbered snapshots of a closed period's bill."""

from __future__ import annotations

from django.db import models

from billing.models.accounts import Account
from billing.models.tariffs import MONEY
from joulepoint.tenancy.models import Organization, TenantModel


class Statement(TenantModel):
    """The bill of one account for [period_start, period_end) (UTC instants of local
    midnights). Written once by billing.statements.statement_generate and never changed: `lines`
    holds the costing as decimal strings, so a later tariff edit never re-costs it. (account,
    period_start, period_end) and (organization, number) are unique. Tenant: `organization`."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="statements")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="statements")
    sequence = models.PositiveIntegerField(editable=False)
    number = models.CharField(max_length=40, editable=False)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    currency = models.CharField(max_length=3)
    lines = models.JSONField(default=list)
    data_quality = models.JSONField(default=dict)
    subtotal = models.DecimalField(**MONEY)
    tax = models.DecimalField(**MONEY)
    total = models.DecimalField(**MONEY)
    prepaid_debited = models.DecimalField(default=0, **MONEY)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-period_start", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "period_start", "period_end"], name="uniq_statement_period"),
            models.UniqueConstraint(fields=["organization", "sequence"], name="uniq_statement_sequence"),
        ]

    def __str__(self) -> str:
        return self.number

"""Billing accounts: what is billed (meters and groups), at which tariff, how and when."""

from __future__ import annotations

from django.db import models

from billing.models.tariffs import Tariff
from billing.models.wallets import Wallet
from joulepoint.tenancy.models import Organization, TenantModel


class Account(TenantModel):
    """A customer account: the meters (and the meters of the groups) whose import and export
    registers are billed at `tariff`, in the site's time zone, in cycles starting on
    `cycle_day` (1-28) at local midnight. Prepaid accounts have a wallet in the tariff's currency
    and are debited as intervals complete (`debited_through` is that cursor, UTC).

    Invariants (billing.accounts): every meter, group, the site, tariff and wallet belong to
    `organization`; the wallet's currency is the tariff's. Tenant: `organization`."""

    class Mode(models.TextChoices):
        POSTPAID = "postpaid", "Postpaid"
        PREPAID = "prepaid", "Prepaid"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="billing_accounts")
    name = models.CharField(max_length=200)
    site = models.ForeignKey("energy.Site", on_delete=models.PROTECT, related_name="+", help_text="Time zone")
    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="accounts")
    meters = models.ManyToManyField("energy.Meter", related_name="+", blank=True)
    groups = models.ManyToManyField("energy.MeterGroup", related_name="+", blank=True)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.POSTPAID)
    cycle_day = models.PositiveSmallIntegerField(default=1, help_text="Day of month a cycle starts (1-28)")
    wallet = models.OneToOneField(Wallet, on_delete=models.PROTECT, null=True, blank=True, related_name="account")
    debited_through = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

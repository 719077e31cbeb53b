"""Prepaid wallets and their append-only ledger."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from billing.models.tariffs import MONEY
from joulepoint.tenancy.models import Organization, TenantModel


class Wallet(TenantModel):
    """A prepaid balance in one currency. `balance` is the sum of the wallet's ledger, kept in
    the same transaction as each movement under a row lock (billing.wallets); it is never
    written otherwise. `low_balance_notified` remembers that the balance is below the
    threshold, so `wallet.low_balance` is published once per crossing. Tenant: `organization`."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="wallets")
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3)
    balance = models.DecimalField(default=0, editable=False, **MONEY)
    low_balance_threshold = models.DecimalField(default=0, **MONEY)
    auto_topup_amount = models.DecimalField(
        null=True, blank=True, help_text="Suggested top-up carried by wallet.low_balance (for rules)", **MONEY
    )
    low_balance_notified = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.balance} {self.currency})"


class WalletTransaction(TenantModel):
    """One ledger movement, never updated or deleted. `amount` is signed (credits, top-ups and
    refunds positive; debits negative; adjustments either), `balance_after` the wallet's balance
    once it applied. (wallet, idempotency_key) is unique: a repeated key answers this row.
    Tenant: `organization`."""

    class Kind(models.TextChoices):
        CREDIT = "credit", "Credit"
        DEBIT = "debit", "Debit"
        TOPUP = "topup", "Top-up"
        REFUND = "refund", "Refund"
        ADJUSTMENT = "adjustment", "Adjustment"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="wallet_transactions")
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="transactions")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    balance_after = models.DecimalField(**MONEY)
    idempotency_key = models.CharField(max_length=200)
    reference = models.CharField(max_length=200, blank=True, default="", help_text="statement:ID, delivery, …")
    source = models.CharField(max_length=200, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["wallet", "idempotency_key"], name="uniq_wallet_idempotency")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.currency}"

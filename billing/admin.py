"""Billing in the admin: tariffs with their versions, accounts, wallets, the ledger (manual
adjustments only, with a reason and the admin user recorded) and statements (read only)."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin

from billing.accounts import account_errors
from billing.models import Account, Statement, Tariff, TariffVersion, Wallet, WalletTransaction
from billing.money import currency_valid
from billing.tariffs.validation import PeriodsInvalid, periods_parse
from billing.wallets import LedgerError, wallet_move
from joulepoint.tenancy.admin import MemberInlinePermissions, OrganizationScopedAdmin, ReadOnlyScopedAdmin


class TariffVersionForm(forms.ModelForm):
    class Meta:
        model = TariffVersion
        fields = [
            "valid_from", "periods", "demand_periods", "export_rate", "fixed_per_day", "fixed_per_month",
            "demand_rate", "minimum_charge", "tax_pct",
        ]  # fmt: skip

    def clean(self):
        cleaned = super().clean()
        for name, required in (("periods", True), ("demand_periods", False)):
            try:
                periods_parse(cleaned.get(name) or [], field=name, required=required)
            except PeriodsInvalid as exc:
                self.add_error(name, exc.errors)
        return cleaned


class TariffVersionInline(MemberInlinePermissions, admin.StackedInline):
    model = TariffVersion
    form = TariffVersionForm
    extra = 0


class TariffForm(forms.ModelForm):
    class Meta:
        model = Tariff
        fields = ["organization", "name", "currency", "country", "subdivision"]

    def clean_currency(self):
        currency = self.cleaned_data["currency"]
        if not currency_valid(currency):
            raise forms.ValidationError("An ISO 4217 currency code such as EUR.")
        return currency


@admin.register(Tariff)
class TariffAdmin(OrganizationScopedAdmin):
    form = TariffForm
    list_display = ["name", "currency", "country", "subdivision", "organization"]
    search_fields = ["name"]
    inlines = [TariffVersionInline]


class AccountForm(forms.ModelForm):
    class Meta:
        model = Account
        fields = ["organization", "name", "site", "tariff", "meters", "groups", "mode", "cycle_day", "wallet"]

    def clean(self):
        cleaned = super().clean()
        organization = cleaned.get("organization") or getattr(self.instance, "organization", None)
        if organization is not None:
            values = {k: v for k, v in cleaned.items() if k != "organization"}
            values["meters"] = list(values.get("meters") or [])
            values["groups"] = list(values.get("groups") or [])
            for name, message in account_errors(
                organization_id=organization.pk, values=values, instance=self.instance if self.instance.pk else None
            ).items():
                if name in self.fields:
                    self.add_error(name, message)
        return cleaned


@admin.register(Account)
class AccountAdmin(OrganizationScopedAdmin):
    form = AccountForm
    list_display = ["name", "mode", "tariff", "wallet", "cycle_day", "organization"]
    list_filter = ["mode"]
    search_fields = ["name"]
    filter_horizontal = ["meters", "groups"]
    readonly_fields = ["debited_through"]


@admin.register(Wallet)
class WalletAdmin(OrganizationScopedAdmin):
    list_display = ["name", "balance", "currency", "low_balance_threshold", "low_balance_notified", "organization"]
    readonly_fields = ["balance", "low_balance_notified"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the ledger refers to it


class AdjustmentForm(forms.ModelForm):
    """A manual adjustment: signed amount and a reason; the ledger service writes it."""

    class Meta:
        model = WalletTransaction
        fields = ["wallet", "amount", "reason"]

    def clean_reason(self):
        reason = self.cleaned_data.get("reason", "").strip()
        if not reason:
            raise forms.ValidationError("An adjustment needs a reason.")
        return reason


@admin.register(WalletTransaction)
class WalletTransactionAdmin(ReadOnlyScopedAdmin):
    """Browse the ledger; "add" records a manual adjustment (never an edit of a movement)."""

    list_display = ["created_at", "wallet", "kind", "amount", "currency", "balance_after", "reference", "created_by"]
    list_filter = ["kind"]
    search_fields = ["idempotency_key", "reference"]

    def has_add_permission(self, request) -> bool:
        return OrganizationScopedAdmin.has_add_permission(self, request)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = AdjustmentForm
            kwargs["fields"] = ["wallet", "amount", "reason"]
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return ["wallet", "amount", "reason"] if obj is None else super().get_fields(request, obj)

    def save_model(self, request, obj, form, change) -> None:
        if change:
            return
        wallet = form.cleaned_data["wallet"]
        try:
            movement = wallet_move(
                organization_id=wallet.organization_id, wallet_id=wallet.pk, kind=WalletTransaction.Kind.ADJUSTMENT,
                amount=form.cleaned_data["amount"], currency=wallet.currency,
                idempotency_key=f"admin:{uuid.uuid4()}", reference=f"admin:{request.user.pk}",
                source="admin", reason=form.cleaned_data["reason"], created_by=request.user,
            )  # fmt: skip
        except LedgerError as exc:
            raise forms.ValidationError({exc.field: exc.message}) from None
        obj.pk = movement.transaction.pk


@admin.register(Statement)
class StatementAdmin(ReadOnlyScopedAdmin):
    list_display = ["number", "account", "period_start", "period_end", "total", "currency", "organization"]
    search_fields = ["number"]

"""Filters of the billing lists (time ranges are half-open [start, end))."""

from __future__ import annotations

import django_filters

from billing.models import Account, Statement, Tariff, Wallet, WalletTransaction
from joulepoint.tenancy.filters import IdFilter, UtcDateTimeFilter


class TariffFilter(django_filters.FilterSet):
    currency = django_filters.CharFilter()

    class Meta:
        model = Tariff
        fields = ["currency"]


class AccountFilter(django_filters.FilterSet):
    site = IdFilter(field_name="site_id")
    tariff = IdFilter(field_name="tariff_id")
    mode = django_filters.ChoiceFilter(choices=Account.Mode.choices)

    class Meta:
        model = Account
        fields = ["site", "tariff", "mode"]


class StatementFilter(django_filters.FilterSet):
    account = IdFilter(field_name="account_id")
    start = UtcDateTimeFilter(field_name="period_end", lookup_expr="gt", label="Periods ending after (exclusive)")
    end = UtcDateTimeFilter(field_name="period_start", lookup_expr="lt", label="Periods starting before (exclusive)")

    class Meta:
        model = Statement
        fields = ["account", "start", "end"]


class WalletFilter(django_filters.FilterSet):
    currency = django_filters.CharFilter()

    class Meta:
        model = Wallet
        fields = ["currency"]


class WalletTransactionFilter(django_filters.FilterSet):
    wallet = IdFilter(field_name="wallet_id")
    kind = django_filters.ChoiceFilter(choices=WalletTransaction.Kind.choices)
    start = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte", label="From (inclusive)")
    end = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt", label="Until (exclusive)")

    class Meta:
        model = WalletTransaction
        fields = ["wallet", "kind", "start", "end"]

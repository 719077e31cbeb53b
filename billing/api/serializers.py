"""Billing API shapes. Money travels as decimal strings (a JSON number with a fraction is refused:
it has already been through a float). The rules (period coverage, account consistency) live in
billing.tariffs.validation and billing.accounts; these call them and shape the answers."""

from __future__ import annotations

from decimal import Decimal

import holidays
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.accounts import account_errors
from billing.models import Account, Statement, Tariff, TariffVersion, Wallet, WalletTransaction
from billing.money import MoneyInvalid, currency_valid, decimal_of, round_money
from billing.tariffs.validation import PeriodsInvalid, periods_parse
from energy.models import Meter, MeterGroup, Site
from joulepoint.tenancy.viewsets import TenantRelatedField

MAX_MONEY = Decimal("1000000000")
MAX_RATE = Decimal("10000000")  # rate columns keep 8 integer digits


@extend_schema_field({"type": "string", "format": "decimal", "example": "0.2500"})
class MoneyField(serializers.Field):
    """A decimal string (or an integer); never a float."""

    def __init__(
        self, *, places: int = 4, minimum: Decimal | None = Decimal(0), maximum: Decimal = MAX_MONEY, **kwargs
    ):
        self.places, self.minimum, self.maximum = places, minimum, maximum
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> Decimal:
        try:
            value = decimal_of(data, places=self.places)
        except MoneyInvalid as exc:
            raise serializers.ValidationError(str(exc)) from None
        if self.minimum is not None and value < self.minimum:
            raise serializers.ValidationError(f"must be at least {self.minimum}")
        if abs(value) > self.maximum:
            raise serializers.ValidationError(f"must be at most {self.maximum}")
        return value

    def to_representation(self, value) -> str:
        return str(value)


class CurrencyField(serializers.CharField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not currency_valid(value):
            raise serializers.ValidationError("an ISO 4217 currency code such as EUR")
        return value


def _periods(value, field: str, required: bool):
    try:
        periods_parse(value, field=field, required=required)
    except PeriodsInvalid as exc:
        raise serializers.ValidationError(exc.errors) from None
    return value


class TariffVersionSerializer(serializers.ModelSerializer):
    periods = serializers.JSONField(help_text="Energy TOU periods (docs/billing.md)")
    demand_periods = serializers.JSONField(required=False, help_text="TOU demand periods, optional")
    export_rate = MoneyField(places=6, maximum=MAX_RATE, required=False, allow_null=True)
    fixed_per_day = MoneyField(required=False)
    fixed_per_month = MoneyField(required=False)
    demand_rate = MoneyField(places=6, maximum=MAX_RATE, required=False)
    minimum_charge = MoneyField(required=False)
    tax_pct = MoneyField(places=3, required=False)

    class Meta:
        model = TariffVersion
        fields = [
            "id", "valid_from", "periods", "demand_periods", "export_rate", "fixed_per_day", "fixed_per_month",
            "demand_rate", "minimum_charge", "tax_pct",
        ]  # fmt: skip
        read_only_fields = ["id"]

    def validate_periods(self, value):
        return _periods(value, "periods", True)

    def validate_demand_periods(self, value):
        return _periods(value, "demand_periods", False)

    def validate_tax_pct(self, value):
        if value > 100:
            raise serializers.ValidationError("must be at most 100")
        return value


class TariffSerializer(serializers.ModelSerializer):
    currency = CurrencyField(max_length=3)
    versions = TariffVersionSerializer(many=True, help_text="Replaced as a whole when given")

    class Meta:
        model = Tariff
        fields = ["id", "name", "currency", "country", "subdivision", "versions", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_versions(self, value):
        if not value:
            raise serializers.ValidationError("at least one version is required")
        days = [version["valid_from"] for version in value]
        if len(set(days)) != len(days):
            raise serializers.ValidationError("two versions have the same valid_from")
        return sorted(value, key=lambda version: version["valid_from"])

    def validate(self, attrs):
        country = attrs.get("country", getattr(self.instance, "country", ""))
        subdivision = attrs.get("subdivision", getattr(self.instance, "subdivision", ""))
        if country:
            supported = holidays.list_supported_countries()
            if country not in supported:
                raise serializers.ValidationError(
                    {"country": "not a country the holidays calendar knows (ISO alpha-2)"}
                )
            if subdivision and subdivision not in supported[country]:
                raise serializers.ValidationError({"subdivision": f"not a subdivision of {country}"})
        elif subdivision:
            raise serializers.ValidationError({"subdivision": "needs a country"})
        currency = attrs.get("currency")
        changed = self.instance is not None and currency and currency != self.instance.currency
        if changed and self.instance.accounts.filter(wallet__isnull=False).exclude(wallet__currency=currency).exists():
            raise serializers.ValidationError({"currency": "accounts on this tariff have wallets in another currency"})
        return attrs


class UrdbImportSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    currency = CurrencyField(max_length=3, default="USD")
    country = serializers.CharField(max_length=2, default="US", allow_blank=True)
    subdivision = serializers.CharField(max_length=10, default="", allow_blank=True)
    valid_from = serializers.DateField()
    urdb = serializers.JSONField(help_text="A URDB rate object (energyratestructure, schedules, …)")


class AccountSerializer(serializers.ModelSerializer):
    site = TenantRelatedField(queryset=Site.objects.all())
    tariff = TenantRelatedField(queryset=Tariff.objects.all())
    meters = TenantRelatedField(queryset=Meter.objects.all(), many=True, required=False)
    groups = TenantRelatedField(queryset=MeterGroup.objects.all(), many=True, required=False)
    wallet = TenantRelatedField(queryset=Wallet.objects.all(), required=False, allow_null=True)

    class Meta:
        model = Account
        fields = [
            "id",
            "name",
            "site",
            "tariff",
            "meters",
            "groups",
            "mode",
            "cycle_day",
            "wallet",
            "debited_through",
            "created_at",
        ]
        read_only_fields = ["id", "debited_through", "created_at"]

    def validate(self, attrs):
        organization = self.context["organization"]
        errors = account_errors(organization_id=organization.pk, values=attrs, instance=self.instance)
        if self.instance is None and not attrs.get("meters") and not attrs.get("groups"):
            errors.setdefault("meters", "name at least one meter or group")
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class RangeSerializer(serializers.Serializer):
    start = serializers.DateTimeField(required=False, help_text="Inclusive; default: the current cycle's start")
    end = serializers.DateTimeField(required=False, help_text="Exclusive; default: now")

    def _bounded(self, value):
        if not 1970 <= value.year <= 2200:
            raise serializers.ValidationError("must be between the years 1970 and 2200")
        return value

    validate_start = validate_end = _bounded


class BillLineSerializer(serializers.Serializer):
    kind = serializers.CharField()
    label = serializers.CharField()
    period = serializers.CharField()
    tier = serializers.IntegerField(allow_null=True)
    version_from = serializers.DateField()
    quantity = serializers.CharField()
    unit = serializers.CharField()
    rate = serializers.CharField(allow_null=True)
    amount = serializers.CharField()
    peak_at = serializers.DateTimeField(allow_null=True)


class PreviewSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    currency = serializers.CharField()
    lines = BillLineSerializer(many=True)
    import_kwh = serializers.CharField()
    export_kwh = serializers.CharField()
    subtotal = serializers.CharField()
    tax = serializers.CharField()
    total = serializers.CharField()
    data_quality = serializers.DictField()


class StatementSerializer(serializers.ModelSerializer):
    lines = BillLineSerializer(many=True, read_only=True)
    subtotal = MoneyField(read_only=True)
    tax = MoneyField(read_only=True)
    total = MoneyField(read_only=True)
    prepaid_debited = MoneyField(read_only=True)
    html_url = serializers.SerializerMethodField()

    class Meta:
        model = Statement
        fields = [
            "id", "number", "account", "period_start", "period_end", "currency", "lines", "subtotal", "tax", "total",
            "prepaid_debited", "data_quality", "created_at", "html_url",
        ]  # fmt: skip
        read_only_fields = fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        for name in ("subtotal", "tax", "total", "prepaid_debited"):  # in the currency's minor unit
            data[name] = str(round_money(Decimal(data[name]), instance.currency))
        return data

    def get_html_url(self, obj) -> str:
        return f"/api/energy/billing/statements/{obj.pk}/html"


class WalletSerializer(serializers.ModelSerializer):
    currency = CurrencyField(max_length=3)
    balance = MoneyField(read_only=True)
    low_balance_threshold = MoneyField(required=False)
    auto_topup_amount = MoneyField(required=False, allow_null=True)

    class Meta:
        model = Wallet
        fields = [
            "id",
            "name",
            "currency",
            "balance",
            "low_balance_threshold",
            "auto_topup_amount",
            "low_balance_notified",
            "created_at",
        ]
        read_only_fields = ["id", "balance", "low_balance_notified", "created_at"]

    def validate_currency(self, value):
        if self.instance is not None and value != self.instance.currency:
            raise serializers.ValidationError("a wallet's currency never changes")
        return value


class WalletTransactionSerializer(serializers.ModelSerializer):
    amount = MoneyField(read_only=True)
    balance_after = MoneyField(read_only=True)

    class Meta:
        model = WalletTransaction
        fields = [
            "id", "wallet", "kind", "amount", "currency", "balance_after", "idempotency_key", "reference", "source",
            "reason", "created_by", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class WalletTransactionInSerializer(serializers.Serializer):
    wallet = TenantRelatedField(queryset=Wallet.objects.all())
    kind = serializers.ChoiceField(choices=WalletTransaction.Kind.choices)
    amount = MoneyField(minimum=None, help_text="Positive; the kind gives the sign (adjustments are signed)")
    currency = CurrencyField(max_length=3)
    idempotency_key = serializers.CharField(max_length=200)
    reference = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    reason = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class TariffLoadSchedulesSerializer(serializers.Serializer):
    """POST /tariffs/{id}/load-schedules: the site and the import limit of its peak windows."""

    site = TenantRelatedField(queryset=Site.objects.all())
    max_import_kw = serializers.FloatField(min_value=0, help_text="Import limit in the peak windows, kW")
    period = serializers.CharField(
        required=False, max_length=60, help_text="The period to follow (default: the highest-rate periods)"
    )
    on = serializers.DateField(required=False, help_text="Read the version in force on this day (default: today)")

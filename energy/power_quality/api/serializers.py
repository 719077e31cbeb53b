"""Power quality and protection API shapes. Validation of shapes only; the physical-range
rules of a configuration live in energy.pq_services (one place for API, admin and tests)."""

from __future__ import annotations

import math
from datetime import timedelta

import orjson
from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from energy.ingest.validation import parse_timestamp
from energy.models import Meter
from energy.power_quality.config import CONFIG_DEFAULTS, pq_config_effective
from energy.power_quality.models import PQConfig, PQEvent, ProtectionEvent
from joulepoint.platform.timefmt import isoz
from joulepoint.tenancy.viewsets import TenantRelatedField

MAX_DETAILS_BYTES = 4096


class FiniteFloatField(serializers.FloatField):
    """A JSON number (not a string, not a boolean) that is finite."""

    default_error_messages = {"invalid": "A finite JSON number is required."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        value = float(data)
        if not math.isfinite(value):
            self.fail("invalid")
        return super().to_internal_value(value)


@extend_schema_field(OpenApiTypes.DATETIME)
class UtcTimestampField(serializers.Field):
    """ISO 8601 with an offset, converted to UTC; no further in the future than ingest allows."""

    def to_internal_value(self, data):
        try:
            ts = parse_timestamp(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        window = settings.INGEST_MAX_FUTURE_SECONDS
        if ts > timezone.now() + timedelta(seconds=window):
            raise serializers.ValidationError(f"is more than {window} s in the future")
        return ts

    def to_representation(self, value):
        return isoz(value)


def _threshold(help_text: str, **kwargs) -> FiniteFloatField:
    return FiniteFloatField(required=False, help_text=help_text, **kwargs)


class PQConfigInSerializer(serializers.Serializer):
    """The seed's body. Omitted thresholds take their defaults (POST replaces the whole set)."""

    meter_id = TenantRelatedField(queryset=Meter.objects.all(), source="meter")
    sag_v_threshold = _threshold(f"Per-unit of nominal voltage; default {CONFIG_DEFAULTS['sag_v_threshold']}")
    swell_v_threshold = _threshold(f"Per-unit of nominal voltage; default {CONFIG_DEFAULTS['swell_v_threshold']}")
    thd_pct_threshold = _threshold(f"Voltage THD %; default {CONFIG_DEFAULTS['thd_pct_threshold']}")
    imbalance_pct_threshold = _threshold(
        f"Voltage unbalance % (IEEE PVUR / NEMA LVUR); default {CONFIG_DEFAULTS['imbalance_pct_threshold']}"
    )
    earth_leakage_ma_threshold = _threshold(
        f"Earth leakage limit, mA; default {CONFIG_DEFAULTS['earth_leakage_ma_threshold']}"
    )
    nominal_frequency_hz = _threshold(f"50 or 60; default {CONFIG_DEFAULTS['nominal_frequency_hz']}")


class PQConfigReplaceSerializer(PQConfigInSerializer):
    """PUT on /pq/config/{meter_id}: the meter is in the path."""

    meter_id = None


class PQConfigSerializer(serializers.Serializer):
    """A meter's effective configuration: its own, or the defaults (`is_default`)."""

    meter_id = serializers.IntegerField(source="pk")
    site_id = serializers.IntegerField()
    nominal_voltage = serializers.FloatField(help_text="Phase-neutral volts (the meter's)")
    phases = serializers.IntegerField(help_text="1 or 3 (the meter's); single-phase meters have no imbalance")
    sag_v_threshold = serializers.FloatField()
    swell_v_threshold = serializers.FloatField()
    thd_pct_threshold = serializers.FloatField()
    imbalance_pct_threshold = serializers.FloatField()
    earth_leakage_ma_threshold = serializers.FloatField()
    nominal_frequency_hz = serializers.FloatField()
    is_default = serializers.BooleanField()
    updated_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, meter: Meter) -> dict:
        config: PQConfig | None = getattr(meter, "pq_config", None)
        return {
            "meter_id": meter.pk,
            "site_id": meter.site_id,
            "nominal_voltage": meter.nominal_voltage,
            "phases": meter.phases,
            **pq_config_effective(meter=meter, config=config),
            "is_default": config is None,
            "updated_at": serializers.DateTimeField().to_representation(config.updated_at) if config else None,
        }


class PQEventSerializer(serializers.ModelSerializer):
    site = serializers.IntegerField(source="meter.site_id", read_only=True)
    is_open = serializers.BooleanField(read_only=True)

    class Meta:
        model = PQEvent
        fields = [
            "id", "meter", "site", "kind", "start", "end", "is_open", "duration_s", "duration_class",
            "ieee_category", "phases", "worst_value", "unit", "threshold", "method", "reading_count",
            "last_violation_at", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class ProtectionEventSerializer(serializers.ModelSerializer):
    site = serializers.IntegerField(source="meter.site_id", read_only=True)
    timestamp = serializers.DateTimeField(source="occurred_at", read_only=True)

    class Meta:
        model = ProtectionEvent
        fields = ["id", "meter", "site", "kind", "timestamp", "earth_leakage_ma", "details", "origin", "created_at"]
        read_only_fields = fields


class ProtectionEventStoredSerializer(ProtectionEventSerializer):
    duplicate = serializers.BooleanField(read_only=True)

    class Meta(ProtectionEventSerializer.Meta):
        fields = [*ProtectionEventSerializer.Meta.fields, "duplicate"]
        read_only_fields = fields


class ProtectionEventInSerializer(serializers.Serializer):
    """What a device posts. A gateway names the meter (meter_id or meter_serial)."""

    kind = serializers.ChoiceField(choices=ProtectionEvent.Kind.choices)
    timestamp = UtcTimestampField(help_text="ISO 8601 with offset, e.g. 2025-10-16T10:00:00Z")
    earth_leakage_ma = FiniteFloatField(
        required=False, allow_null=True, min_value=0, help_text="Required for earth_leakage"
    )
    details = serializers.JSONField(required=False, help_text=f"Free JSON object, at most {MAX_DETAILS_BYTES} bytes")
    meter_id = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    meter_serial = serializers.CharField(required=False, max_length=100)

    def validate_details(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object")
        if len(orjson.dumps(value)) > MAX_DETAILS_BYTES:
            raise serializers.ValidationError(f"must be at most {MAX_DETAILS_BYTES} bytes as JSON")
        return value

    def validate(self, attrs: dict) -> dict:
        if attrs["kind"] == ProtectionEvent.Kind.EARTH_LEAKAGE and attrs.get("earth_leakage_ma") is None:
            raise serializers.ValidationError({"earth_leakage_ma": "is required for an earth_leakage event"})
        return attrs


class BreakerStateSerializer(serializers.Serializer):
    """A meter's current breaker position: its latest-timestamped observation."""

    meter_id = serializers.IntegerField()
    site_id = serializers.IntegerField()
    breaker_state = serializers.ChoiceField(choices=["open", "closed", "unknown"])
    changed_at = serializers.DateTimeField(allow_null=True, help_text="Timestamp of the observation")
    origin = serializers.CharField(allow_null=True, help_text="device (posted event) or reading")

    def to_representation(self, meter: Meter) -> dict:
        state = getattr(meter, "pq_state", None)
        observed = state is not None and state.breaker_state_at is not None
        return {
            "meter_id": meter.pk,
            "site_id": meter.site_id,
            "breaker_state": state.breaker_state if observed else "unknown",
            "changed_at": serializers.DateTimeField().to_representation(state.breaker_state_at) if observed else None,
            "origin": state.breaker_state_origin if observed else None,
        }

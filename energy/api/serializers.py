from __future__ import annotations

from datetime import datetime, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone
from rest_framework import serializers

from energy.ingest.validation import BREAKER_STATE, BREAKER_STATES, KNOWN_EXTRA_NUMERIC
from energy.models import READING_FIELDS, DeviceCommand, Gateway, Meter, MeterGroup, Reading, Site
from joulepoint.tenancy.serializers import TenantModelSerializer
from joulepoint.tenancy.viewsets import TenantRelatedField

if TYPE_CHECKING:
    from energy.ingest.store import StoredReading


class SiteSerializer(TenantModelSerializer):
    class Meta:
        model = Site
        fields = ["id", "name", "timezone", "address", "latitude", "longitude", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_timezone(self, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise serializers.ValidationError(f"{value!r} is not an IANA time zone such as Europe/Berlin.") from None
        return value

    def validate_latitude(self, value: float | None) -> float | None:
        if value is not None and not -90 <= value <= 90:
            raise serializers.ValidationError("Latitude is between -90 and 90.")
        return value

    def validate_longitude(self, value: float | None) -> float | None:
        if value is not None and not -180 <= value <= 180:
            raise serializers.ValidationError("Longitude is between -180 and 180.")
        return value


class MeterSerializer(TenantModelSerializer):
    site = TenantRelatedField(queryset=Site.objects.all())
    nominal_voltage = serializers.FloatField(min_value=1, max_value=100_000, default=230.0)

    class Meta:
        model = Meter
        fields = [
            "id", "site", "name", "serial", "kind", "nominal_voltage", "phases",
            "device_key", "mqtt_username", "require_signature", "is_active", "key_rotated_at", "created_at",
        ]  # fmt: skip
        read_only_fields = ["id", "device_key", "mqtt_username", "key_rotated_at", "created_at"]


class GatewaySerializer(TenantModelSerializer):
    site = TenantRelatedField(queryset=Site.objects.all())

    class Meta:
        model = Gateway
        fields = [
            "id", "site", "name", "device_key", "mqtt_username", "require_signature", "is_active", "key_rotated_at",
            "created_at",
        ]  # fmt: skip
        read_only_fields = ["id", "device_key", "mqtt_username", "key_rotated_at", "created_at"]


class DeviceSecretSerializer(serializers.Serializer):
    """The credential pair, shown only on creation and rotation."""

    id = serializers.IntegerField()
    device_key = serializers.UUIDField()
    device_secret = serializers.CharField()


class MeterCreatedSerializer(MeterSerializer):
    device_secret = serializers.CharField(read_only=True)

    class Meta(MeterSerializer.Meta):
        fields = [*MeterSerializer.Meta.fields, "device_secret"]


class GatewayCreatedSerializer(GatewaySerializer):
    device_secret = serializers.CharField(read_only=True)

    class Meta(GatewaySerializer.Meta):
        fields = [*GatewaySerializer.Meta.fields, "device_secret"]


class MeterGroupSerializer(TenantModelSerializer):
    meters = TenantRelatedField(queryset=Meter.objects.all(), many=True, required=False)

    class Meta:
        model = MeterGroup
        fields = ["id", "name", "description", "meters", "created_at"]
        read_only_fields = ["id", "created_at"]


class ReadingSerializer(serializers.ModelSerializer):
    timestamp = serializers.DateTimeField(source="ts")

    class Meta:
        model = Reading
        fields = ["id", "meter", "timestamp", *READING_FIELDS, "extra", "received_at"]
        read_only_fields = fields


class StoredReadingSerializer(ReadingSerializer):
    """The answer to a single-reading POST: the stored row, and whether it was already there."""

    duplicate = serializers.BooleanField(read_only=True)

    class Meta(ReadingSerializer.Meta):
        fields = [*ReadingSerializer.Meta.fields, "duplicate"]
        read_only_fields = fields


def _datetime_text(value: datetime, zone: tzinfo) -> str:
    """DateTimeField.to_representation of an aware datetime in the current time zone `zone`
    (ISO 8601, `Z` for UTC), without the settings look-ups it makes on every call."""
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def stored_reading_data(reading: StoredReading, *, duplicate: bool) -> dict:
    """What StoredReadingSerializer gives for `reading`, built directly: a ModelSerializer builds
    its fields again for every instance, a large share of the CPU of a single-reading ingest
    (bench/ingest_pieces.py shows it). tests/energy/ingest/test_ingest_api.py holds the two to the same document."""
    values, zone = reading.values, timezone.get_current_timezone()
    return {
        "id": reading.id,
        "meter": reading.meter_id,
        "timestamp": _datetime_text(reading.ts, zone),
        **{name: values.get(name) for name in READING_FIELDS},
        "extra": reading.extra,
        "received_at": _datetime_text(reading.received_at, zone),
        "duplicate": duplicate,
    }


def _reading_input_fields() -> dict[str, serializers.Field]:
    fields: dict[str, serializers.Field] = {
        "timestamp": serializers.DateTimeField(help_text="ISO 8601 with offset, e.g. 2025-10-16T10:00:00Z"),
        "meter_id": serializers.IntegerField(required=False, help_text="Gateways: the meter this reading is for"),
        "meter_serial": serializers.CharField(required=False, help_text="Gateways: or the meter's serial"),
    }
    for name, (unit, low, high) in READING_FIELDS.items():
        fields[name] = serializers.FloatField(
            required=False, allow_null=True, min_value=low, max_value=high, help_text=unit or None
        )
    # Kept in `extra`, read by power quality and protection (docs/power-quality.md).
    for name, (unit, low, high) in KNOWN_EXTRA_NUMERIC.items():
        fields[name] = serializers.FloatField(
            required=False, allow_null=True, min_value=low, max_value=high, help_text=f"{unit}, stored in extra"
        )
    fields[BREAKER_STATE] = serializers.ChoiceField(
        choices=sorted(BREAKER_STATES), required=False, allow_null=True, help_text="Breaker position, stored in extra"
    )
    return fields


# Documents the device payload in the OpenAPI schema; validation itself is energy.ingest.validation.
ReadingInSerializer = type("ReadingInSerializer", (serializers.Serializer,), _reading_input_fields())


class BulkResultSerializer(serializers.Serializer):
    stored = serializers.IntegerField()
    duplicates = serializers.IntegerField()


class FieldErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField(allow_null=True)
    field = serializers.CharField()
    message = serializers.CharField()


class IngestErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = FieldErrorSerializer(many=True, required=False)


class DeviceCommandSerializer(serializers.ModelSerializer):
    """A downlink command as integrators see it (status pending → delivered → acked/failed/expired)."""

    class Meta:
        model = DeviceCommand
        fields = [
            "id", "meter", "gateway", "name", "payload", "status", "channel", "result",
            "created_at", "expires_at", "delivered_at", "completed_at",
        ]  # fmt: skip
        read_only_fields = fields


class DeviceCommandCreateSerializer(serializers.Serializer):
    meter = TenantRelatedField(queryset=Meter.objects.all(), required=False, allow_null=True)
    gateway = TenantRelatedField(queryset=Gateway.objects.all(), required=False, allow_null=True)
    name = serializers.CharField(max_length=100, help_text="e.g. relay.open, charging.setpoint")
    payload = serializers.DictField(required=False, default=dict)
    ttl_seconds = serializers.IntegerField(required=False, min_value=1, max_value=7 * 24 * 3600)

    def validate(self, attrs: dict) -> dict:
        if bool(attrs.get("meter")) == bool(attrs.get("gateway")):
            raise serializers.ValidationError("Name exactly one target: meter or gateway.")
        return attrs


class DeviceCommandMessageSerializer(serializers.Serializer):
    """A command as the device receives it (HTTP polling, MQTT and WebSocket alike)."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    payload = serializers.DictField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()


class DeviceCommandAckSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["acked", "failed"], default="acked")
    result = serializers.DictField(required=False, default=dict)


class DeviceCommandStatusSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()

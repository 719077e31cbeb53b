"""Shapes of the charging API (chargers, EVSEs, ID tokens, sessions). Shapes and ranges only; the
rules (meter kind, min ≤ max, one charger per station id, offline chargers) live in
energy.load.chargers and energy.load.sessions."""

from __future__ import annotations

from rest_framework import serializers

from energy.load.models import Charger, ChargingSession, Evse, IdToken
from energy.models import Meter, Site
from energy.power_quality.api.serializers import FiniteFloatField
from joulepoint.tenancy.serializers import TenantModelSerializer
from joulepoint.tenancy.viewsets import TenantRelatedField

# OCPP 2.0.1 IdTokenEnumType.
ID_TOKEN_TYPES = ["Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local", "MacAddress", "NoAuthorization"]
MAX_CURRENT_A = 1000.0


class EvseSerializer(serializers.ModelSerializer):
    class Meta:
        model = Evse
        fields = ["id", "evse_id", "connector_id", "status", "max_current_a", "updated_at"]
        read_only_fields = fields


class ChargerSerializer(serializers.ModelSerializer):
    """A charger: give `meter` (an ev_charger meter of yours) or `site` (a meter is created there)."""

    meter = TenantRelatedField(queryset=Meter.objects.all(), required=False, help_text="An ev_charger meter")
    site = TenantRelatedField(
        queryset=Site.objects.all(), required=False, help_text="On create without a meter: where to create it"
    )
    charging_station_id = serializers.RegexField(
        r"^[A-Za-z0-9._:*+@-]{1,48}$",
        max_length=48,
        help_text="The OCPP identity (ws://…/ocpp/{charging_station_id}); letters, digits and ._:*+@-",
    )
    min_current_a = FiniteFloatField(min_value=0, max_value=MAX_CURRENT_A, required=False, help_text="A per phase")
    max_current_a = FiniteFloatField(min_value=0, max_value=MAX_CURRENT_A, required=False, help_text="A per phase")
    evses = EvseSerializer(many=True, read_only=True)

    class Meta:
        model = Charger
        fields = [
            "id", "site", "meter", "charging_station_id", "min_current_a", "max_current_a", "phases", "priority",
            "vendor", "model", "serial_number", "firmware_version", "is_online", "last_seen_at", "evses", "created_at",
        ]  # fmt: skip
        read_only_fields = [
            "id", "vendor", "model", "serial_number", "firmware_version", "is_online", "last_seen_at", "created_at",
        ]  # fmt: skip

    def validate(self, attrs: dict) -> dict:
        if self.instance is not None:
            for name in ("meter", "site", "charging_station_id"):
                if name in attrs and attrs[name] != getattr(self.instance, name):
                    raise serializers.ValidationError({name: "cannot be changed; create another charger"})
        elif "meter" not in attrs and "site" not in attrs:
            raise serializers.ValidationError({"meter": "give an ev_charger meter, or a site to create one at"})
        low = attrs.get("min_current_a", getattr(self.instance, "min_current_a", 6.0))
        high = attrs.get("max_current_a", getattr(self.instance, "max_current_a", 32.0))
        if low > high:
            raise serializers.ValidationError({"max_current_a": f"must be ≥ min_current_a ({low} A)"})
        return attrs


class ChargerCreatedSerializer(ChargerSerializer):
    password = serializers.CharField(
        read_only=True, help_text="The station's HTTP Basic password: shown here once, stored hashed"
    )

    class Meta(ChargerSerializer.Meta):
        fields = [*ChargerSerializer.Meta.fields, "password"]


class StationPasswordSerializer(serializers.Serializer):
    charging_station_id = serializers.CharField()
    password = serializers.CharField(help_text="Shown once; the old one stops working at the next connection")


class ResetSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["Immediate", "OnIdle"], default="Immediate")


class IdTokenSerializer(TenantModelSerializer):
    id_token = serializers.CharField(max_length=36, help_text="Case-insensitive in OCPP; stored as given")
    type = serializers.ChoiceField(choices=ID_TOKEN_TYPES, default="ISO14443")

    class Meta:
        model = IdToken
        fields = ["id", "id_token", "type", "label", "is_active", "valid_until", "created_at"]
        read_only_fields = ["id", "created_at"]


class ChargingSessionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChargingSession
        fields = [
            "id", "site", "charger", "evse", "transaction_id", "remote_start_id", "id_token", "source", "state",
            "energy_wanted_kwh", "departure_at", "priority_override", "energy_delivered_kwh", "meter_start_kwh",
            "stop_reason", "started_at", "ended_at", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class ChargingSessionRequestSerializer(serializers.Serializer):
    """An API-requested session: the station is asked to start (OCPP RequestStartTransaction)."""

    charger = TenantRelatedField(queryset=Charger.objects.all())
    evse = TenantRelatedField(queryset=Evse.objects.all(), required=False, allow_null=True)
    energy_wanted_kwh = FiniteFloatField(min_value=0, max_value=1000, required=False, allow_null=True)
    departure_at = serializers.DateTimeField(required=False, allow_null=True)
    priority_override = serializers.IntegerField(min_value=-1000, max_value=1000, required=False, allow_null=True)
    id_token = serializers.CharField(max_length=36, required=False, allow_blank=True, default="")

    def validate(self, attrs: dict) -> dict:
        evse = attrs.get("evse")
        if evse is not None and evse.charger_id != attrs["charger"].pk:
            raise serializers.ValidationError(
                {"evse": f"EVSE {evse.pk} is not an EVSE of charger {attrs['charger'].pk}"}
            )
        return attrs


class ChargingSessionRequestedSerializer(ChargingSessionSerializer):
    command = serializers.IntegerField(read_only=True, help_text="The ocpp.RequestStartTransaction command's id")

    class Meta(ChargingSessionSerializer.Meta):
        fields = [*ChargingSessionSerializer.Meta.fields, "command"]
        read_only_fields = fields


class SessionStopSerializer(serializers.Serializer):
    session = ChargingSessionSerializer()
    command = serializers.IntegerField(allow_null=True, help_text="The ocpp.RequestStopTransaction command's id")

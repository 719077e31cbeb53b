"""Automations API shapes. Validation of JsonLogic, templates and action configs is delegated to
the domain modules; serializers only map their errors to fields."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from automations import jsonlogic, templating
from automations.deliveries.actions.base import ConfigError
from automations.deliveries.actions.registry import action_config_validate
from automations.engine.rules import rule_save
from automations.models import Action, Alert, Annotation, Delivery, RelayCommand, Rule
from energy.models import Meter
from joulepoint.events.keys import event_keys
from joulepoint.tenancy.serializers import TenantModelSerializer
from joulepoint.tenancy.viewsets import TenantRelatedField

SECRET_MASK = "whsec_********"


class ActionSerializer(TenantModelSerializer):
    config = serializers.JSONField(
        help_text="Per type: webhook {url, method, headers, secret, body_template, timeout_seconds}; "
        "plugin_action {plugin, params}; relay_command {meter_id, command, approver_role, expires_in_seconds}; "
        "notify_email {recipients, subject_template, body_template}; annotate {text_template, meter_id}; "
        "wallet_topup {wallet_id, amount, currency}"
    )

    class Meta:
        model = Action
        fields = ["id", "name", "type", "config", "is_active", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        action_type = attrs.get("type", getattr(self.instance, "type", None))
        config = attrs.get("config", getattr(self.instance, "config", None))
        # A masked secret sent back unchanged keeps the stored one.
        if (
            self.instance is not None
            and action_type == "webhook"
            and isinstance(attrs.get("config"), dict)
            and attrs["config"].get("secret") == SECRET_MASK
        ):
            attrs["config"] = {**attrs["config"], "secret": self.instance.config.get("secret")}
            config = attrs["config"]
        if (
            self.instance is not None
            and "type" in attrs
            and "config" not in attrs
            and attrs["type"] != self.instance.type
        ):
            raise serializers.ValidationError({"config": ["send a config for the new type"]})
        try:
            attrs["config"] = action_config_validate(
                action_type=action_type, config=config, organization=self.context.get("organization")
            )
        except ConfigError as exc:
            raise serializers.ValidationError({"config": exc.errors}) from None
        return attrs

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if instance.type == "webhook" and not self.context.get("reveal_secret"):
            data["config"] = {**data["config"], "secret": SECRET_MASK}
        return data


class RuleActionSerializer(serializers.Serializer):
    action_id = TenantRelatedField(queryset=Action.objects.all(), help_text="An action of your organization")


class RuleSerializer(TenantModelSerializer):
    """The seed's rule JSON is accepted as is: name, event_key, throttle_seconds, dedupe_template,
    jsonlogic, rule_actions[{action_id}]."""

    jsonlogic = serializers.JSONField()
    rule_actions = RuleActionSerializer(many=True, required=False)
    # Choices are the keys every app registered once ready (joulepoint.events.keys), set per instance.
    event_key = serializers.ChoiceField(choices=[])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["event_key"].choices = sorted(event_keys())

    class Meta:
        model = Rule
        fields = [
            "id",
            "name",
            "description",
            "event_key",
            "jsonlogic",
            "throttle_seconds",
            "dedupe_template",
            "alert_severity",
            "alert_message_template",
            "is_active",
            "rule_actions",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"throttle_seconds": {"max_value": 30 * 86400}}

    def validate_jsonlogic(self, value):
        if not isinstance(value, dict | list | bool):
            raise serializers.ValidationError('must be a JsonLogic expression (an object such as {">": [...]})')
        try:
            jsonlogic.validate(value)
        except jsonlogic.JsonLogicError as exc:
            raise serializers.ValidationError(f"invalid JsonLogic: {exc}") from None
        return value

    def _template(self, value: str) -> str:
        try:
            templating.check(value)
        except templating.TemplateError as exc:
            raise serializers.ValidationError(f"invalid template: {exc}") from None
        return value

    def validate_dedupe_template(self, value: str) -> str:
        return self._template(value)

    def validate_alert_message_template(self, value: str) -> str:
        return self._template(value)

    def validate_rule_actions(self, value: list) -> list:
        # A PATCH makes nested fields optional; an item still needs its action.
        if any("action_id" not in item for item in value):
            raise serializers.ValidationError("each item needs an action_id")
        ids = [item["action_id"].pk for item in value]
        if len(ids) != len(set(ids)):
            raise serializers.ValidationError("an action may appear only once in a rule")
        return value

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["rule_actions"] = [{"action_id": ra.action_id} for ra in instance.rule_actions.all()]
        return data

    def create(self, validated_data):
        rule_actions = validated_data.pop("rule_actions", [])
        rule = Rule(**validated_data)
        return rule_save(rule=rule, action_ids=[item["action_id"].pk for item in rule_actions])

    def update(self, instance, validated_data):
        rule_actions = validated_data.pop("rule_actions", None)
        for key, value in validated_data.items():
            setattr(instance, key, value)
        ids = None if rule_actions is None else [item["action_id"].pk for item in rule_actions]
        return rule_save(rule=instance, action_ids=ids)


class DryRunSerializer(serializers.Serializer):
    event = serializers.DictField(
        help_text="The sample event as rules see it under `event` (e.g. one reading: meter_id, total_power, …)"
    )


class UnsavedDryRunSerializer(DryRunSerializer):
    rule = RuleSerializer()


class DryRunActionSerializer(serializers.Serializer):
    action_id = serializers.IntegerField(allow_null=True)
    name = serializers.CharField()
    type = serializers.CharField()
    active = serializers.BooleanField()
    payload = serializers.JSONField()


class DryRunResultSerializer(serializers.Serializer):
    matched = serializers.BooleanField()
    result = serializers.JSONField(allow_null=True)
    error = serializers.CharField()
    dedupe_key = serializers.CharField()
    throttled = serializers.BooleanField()
    would_fire = serializers.BooleanField()
    alert = serializers.JSONField(allow_null=True)
    actions = DryRunActionSerializer(many=True)
    event = serializers.JSONField()


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = [
            "id",
            "action",
            "action_type",
            "rule",
            "event_id",
            "event_key",
            "webhook_id",
            "endpoint",
            "status",
            "attempts",
            "next_attempt_at",
            "response_code",
            "latency_ms",
            "last_error",
            "payload",
            "result",
            "created_at",
            "updated_at",
            "completed_at",
        ]
        read_only_fields = fields


class MetricsBlockSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    success_rate = serializers.FloatField(allow_null=True)
    latency_ms_p50 = serializers.FloatField(allow_null=True)
    latency_ms_p95 = serializers.FloatField(allow_null=True)


class ActionMetricsSerializer(MetricsBlockSerializer):
    action_id = serializers.IntegerField(allow_null=True)
    name = serializers.CharField(allow_null=True)
    type = serializers.CharField()


class BreakerSerializer(serializers.Serializer):
    endpoint = serializers.CharField()
    state = serializers.CharField()
    consecutive_failures = serializers.IntegerField()
    opened_at = serializers.DateTimeField(allow_null=True)
    retry_at = serializers.DateTimeField(allow_null=True)


class MetricsSerializer(serializers.Serializer):
    overall = MetricsBlockSerializer()
    actions = ActionMetricsSerializer(many=True)
    breakers = BreakerSerializer(many=True)


class AlertSerializer(serializers.ModelSerializer):
    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "severity",
            "status",
            "subject",
            "meter",
            "site",
            "message",
            "event_id",
            "event_key",
            "event",
            "occurrences",
            "created_at",
            "last_seen_at",
            "acknowledged_at",
            "acknowledged_by",
            "cleared_at",
            "cleared_by",
        ]
        read_only_fields = fields


class RelayCommandSerializer(serializers.ModelSerializer):
    decided_by = serializers.SerializerMethodField()

    class Meta:
        model = RelayCommand
        fields = [
            "id",
            "meter",
            "command",
            "status",
            "approver_role",
            "rule",
            "delivery",
            "reason",
            "expires_at",
            "decided_at",
            "decided_by",
            "decided_by_application",
            "decision_note",
            "downlink_id",
            "downlink_status",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_decided_by(self, obj) -> str | None:
        return obj.decided_by.get_username() if obj.decided_by_id else None


class RelayDecisionSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class AnnotationSerializer(TenantModelSerializer):
    meter = TenantRelatedField(queryset=Meter.objects.all())

    class Meta:
        model = Annotation
        fields = ["id", "meter", "ts", "text", "source", "rule", "delivery", "created_at"]
        read_only_fields = ["id", "source", "rule", "delivery", "created_at"]


class PluginSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()

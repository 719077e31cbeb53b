from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from joulepoint.audit.api.filters import ACTIONS, object_type_of
from joulepoint.audit.models import AuditEntry

ACTION_NAMES = {value: name for name, value in ACTIONS.items()}


class AuditActorSerializer(serializers.Serializer):
    user = serializers.IntegerField(allow_null=True, help_text="the user's id (admin session or token owner)")
    username = serializers.CharField(allow_null=True)
    application = serializers.CharField(allow_null=True, help_text="the OAuth2 client id of the request's token")
    device = serializers.CharField(allow_null=True, help_text='"meter:<id>" or "gateway:<id>"')


class AuditEntrySerializer(serializers.ModelSerializer):
    action = serializers.SerializerMethodField()
    object_type = serializers.SerializerMethodField(help_text="app_label.model, e.g. energy.meter")
    object_id = serializers.CharField(source="object_pk")
    actor = serializers.SerializerMethodField()
    changes = serializers.SerializerMethodField(
        help_text="field → [old, new]; secret fields are recorded as changed, never with their values"
    )

    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "timestamp",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "actor",
            "source",
            "remote_addr",
            "cid",
        ]

    @extend_schema_field(serializers.ChoiceField(choices=list(ACTIONS)))
    def get_action(self, entry: AuditEntry) -> str:
        return ACTION_NAMES.get(entry.action, "access")

    def get_object_type(self, entry: AuditEntry) -> str:
        return object_type_of(entry)

    @extend_schema_field(AuditActorSerializer)
    def get_actor(self, entry: AuditEntry) -> dict:
        return {
            "user": entry.actor_id,
            "username": entry.actor.get_username() if entry.actor else None,
            "application": entry.application.client_id if entry.application else None,
            "device": entry.device or None,
        }

    @extend_schema_field(serializers.DictField(child=serializers.ListField()))
    def get_changes(self, entry: AuditEntry) -> dict:
        return entry.changes or {}

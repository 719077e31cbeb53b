"""Shapes of the MLOps API: validation of bodies (fields, choices, own rows) and responses.
Business rules live in the services; foreign rows read as "does not exist" (400)."""

from __future__ import annotations

from rest_framework import serializers

from energy.models import Meter, MeterGroup, Site
from energy.models.readings import READING_FIELDS
from joulepoint.tenancy.viewsets import TenantRelatedField
from mlops.datasets.labels import LABELS
from mlops.features import FEATURES
from mlops.models import (
    Assignment,
    Dataset,
    DatasetVersion,
    ModelVersion,
    Promotion,
    Purpose,
    RegisteredModel,
    TrainingJob,
)
from mlops.registry.services import ALIAS_PATTERN


class DatasetVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = DatasetVersion
        fields = [
            "id", "dataset", "number", "status", "error", "row_count", "schema", "checksum", "size_bytes",
            "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class DatasetSerializer(serializers.ModelSerializer):
    meters = TenantRelatedField(queryset=Meter.objects.all(), many=True, required=False)
    group = TenantRelatedField(queryset=MeterGroup.objects.all(), required=False, allow_null=True)
    site = TenantRelatedField(queryset=Site.objects.all(), required=False, allow_null=True)
    fields = serializers.ListField(child=serializers.ChoiceField(choices=list(READING_FIELDS)), min_length=1)
    features = serializers.ListField(child=serializers.ChoiceField(choices=list(FEATURES)), required=False)
    labels = serializers.ListField(
        child=serializers.ChoiceField(choices=list(LABELS)),
        required=False,
        help_text="Label columns: pq_events, protection_events, annotations (docs/mlops.md)",
    )
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = [
            "id", "name", "meters", "group", "site", "fields", "features", "start", "end", "interval",
            "holiday_country", "labels", "created_by", "created_at", "latest_version",
        ]  # fmt: skip
        read_only_fields = ["created_by", "created_at"]

    def get_latest_version(self, dataset) -> DatasetVersionSerializer(allow_null=True):  # type: ignore[valid-type]
        version = dataset.versions.order_by("-number").first()
        return DatasetVersionSerializer(version).data if version else None


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id", "model", "number", "status", "job", "dataset_version", "trainer", "params", "metrics", "features",
            "threshold", "checksum", "size_bytes", "created_by", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class RegisteredModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = RegisteredModel
        fields = ["id", "name", "purpose", "description", "created_at"]
        read_only_fields = ["created_at"]


class TrainingJobSerializer(serializers.ModelSerializer):
    model = TenantRelatedField(queryset=RegisteredModel.objects.all())
    dataset_version = TenantRelatedField(queryset=DatasetVersion.objects.all())
    trainer = serializers.ChoiceField(choices=TrainingJob.Trainer.choices)
    params = serializers.DictField(required=False)

    class Meta:
        model = TrainingJob
        fields = [
            "id", "model", "dataset_version", "trainer", "params", "timeout_seconds", "status", "logs", "metrics",
            "error", "progress_percent", "progress_message", "progress_at", "created_by", "created_at", "started_at",
            "finished_at",
        ]  # fmt: skip
        read_only_fields = [
            "status",
            "progress_percent",
            "progress_message",
            "progress_at",
            "logs",
            "metrics",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]


class AssignmentSerializer(serializers.ModelSerializer):
    model = TenantRelatedField(queryset=RegisteredModel.objects.all())
    purpose = serializers.ChoiceField(choices=Purpose.choices)
    meter = TenantRelatedField(queryset=Meter.objects.all(), required=False, allow_null=True)
    group = TenantRelatedField(queryset=MeterGroup.objects.all(), required=False, allow_null=True)
    site = TenantRelatedField(queryset=Site.objects.all(), required=False, allow_null=True)
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = Assignment
        fields = ["id", "model", "purpose", "meter", "group", "site", "aliases", "created_at"]
        read_only_fields = ["created_at"]

    def get_aliases(self, assignment) -> dict[str, int]:
        return {alias.alias: alias.version_id for alias in assignment.aliases.all()}


class PromotionSerializer(serializers.ModelSerializer):
    assignment = TenantRelatedField(queryset=Assignment.objects.all())
    version = TenantRelatedField(queryset=ModelVersion.objects.all())
    alias = serializers.RegexField(
        ALIAS_PATTERN, help_text="production, staging, or a named challenger (lower case, digits, - and _)"
    )

    class Meta:
        model = Promotion
        fields = ["id", "assignment", "alias", "version", "previous_version", "reason", "actor", "created_at"]
        read_only_fields = ["previous_version", "actor", "created_at"]

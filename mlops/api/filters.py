"""Filters of the MLOps lists (ids are plain numbers: a foreign id matches nothing)."""

from __future__ import annotations

import django_filters

from joulepoint.tenancy.filters import IdFilter
from mlops.models import Assignment, Dataset, ModelVersion, Promotion, Purpose, RegisteredModel, TrainingJob


class DatasetFilter(django_filters.FilterSet):
    class Meta:
        model = Dataset
        fields = ["interval"]


class TrainingJobFilter(django_filters.FilterSet):
    model = IdFilter(field_name="model_id")
    dataset_version = IdFilter(field_name="dataset_version_id")
    status = django_filters.ChoiceFilter(choices=TrainingJob.Status.choices)
    trainer = django_filters.ChoiceFilter(choices=TrainingJob.Trainer.choices)

    class Meta:
        model = TrainingJob
        fields = ["model", "dataset_version", "status", "trainer"]


class RegisteredModelFilter(django_filters.FilterSet):
    purpose = django_filters.ChoiceFilter(choices=Purpose.choices)

    class Meta:
        model = RegisteredModel
        fields = ["purpose"]


class AssignmentFilter(django_filters.FilterSet):
    model = IdFilter(field_name="model_id")
    purpose = django_filters.ChoiceFilter(choices=Purpose.choices)
    meter = IdFilter(field_name="meter_id")
    group = IdFilter(field_name="group_id")
    site = IdFilter(field_name="site_id")

    class Meta:
        model = Assignment
        fields = ["model", "purpose", "meter", "group", "site"]


class PromotionFilter(django_filters.FilterSet):
    assignment = IdFilter(field_name="assignment_id")
    alias = django_filters.CharFilter()

    class Meta:
        model = Promotion
        fields = ["assignment", "alias"]


class ModelVersionFilter(django_filters.FilterSet):
    class Meta:
        model = ModelVersion
        fields = ["status"]

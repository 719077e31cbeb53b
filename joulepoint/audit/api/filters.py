"""Filters of GET /api/audit/: object type and id, actor, action, door, time range."""

from __future__ import annotations

import django_filters
from django import forms
from django.apps import apps
from django.db.models import Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from joulepoint.audit.models import AuditEntry
from joulepoint.tenancy.filters import IdFilter, UtcDateTimeFilter

ACTIONS = {"create": AuditEntry.Action.CREATE, "update": AuditEntry.Action.UPDATE, "delete": AuditEntry.Action.DELETE}


def object_type_of(entry: AuditEntry) -> str:
    return f"{entry.content_type.app_label}.{entry.content_type.model}"


class ObjectTypeField(forms.CharField):
    def clean(self, value):
        value = super().clean(value)
        if not value:
            return None
        label, _, model = value.lower().partition(".")
        try:
            return apps.get_model(label, model)
        except (LookupError, ValueError):
            # The value goes in as a parameter: django-filter %-formats every message, so a `%`
            # typed into the query would otherwise break the 400 into a 500.
            raise forms.ValidationError(
                "Unknown object type %(value)s: give app_label.model, e.g. energy.meter.", params={"value": repr(value)}
            ) from None


@extend_schema_field(OpenApiTypes.STR)
class ObjectTypeFilter(django_filters.Filter):
    field_class = ObjectTypeField

    def filter(self, queryset: QuerySet, value) -> QuerySet:
        if value is None:
            return queryset
        return queryset.filter(
            content_type__app_label=value._meta.app_label, content_type__model=value._meta.model_name
        )


class AuditEntryFilter(django_filters.FilterSet):
    object_type = ObjectTypeFilter(help_text="app_label.model of the audited row, e.g. energy.meter")
    object_id = IdFilter(field_name="object_id")
    action = django_filters.ChoiceFilter(choices=[(name, name) for name in ACTIONS], method="filter_action")
    actor = IdFilter(field_name="actor_id", help_text="a user id")
    application = django_filters.CharFilter(
        field_name="application__client_id", help_text="the client id of an OAuth2 credential"
    )
    device = django_filters.CharFilter(field_name="device", help_text='"meter:<id>" or "gateway:<id>"')
    source = django_filters.CharFilter(method="filter_source", help_text="api, admin, web, command, system")
    start = UtcDateTimeFilter(field_name="timestamp", lookup_expr="gte", help_text="inclusive")
    end = UtcDateTimeFilter(field_name="timestamp", lookup_expr="lt", help_text="exclusive")

    class Meta:
        model = AuditEntry
        fields = ["object_type", "object_id", "action", "actor", "application", "device", "source", "start", "end"]

    def filter_action(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(action=ACTIONS[value])

    def filter_source(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # "command" matches every command:<name>.
        return queryset.filter(Q(source=value) | Q(source__startswith=f"{value}:"))

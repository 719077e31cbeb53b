from __future__ import annotations

import django_filters

from automations.models import Action, Alert, Annotation, Delivery, RelayCommand, Rule
from joulepoint.tenancy.filters import IdFilter, UtcDateTimeFilter


class ActionFilter(django_filters.FilterSet):
    class Meta:
        model = Action
        fields = ["type", "is_active"]


class RuleFilter(django_filters.FilterSet):
    class Meta:
        model = Rule
        fields = ["event_key", "is_active"]


class DeliveryFilter(django_filters.FilterSet):
    action = IdFilter(field_name="action_id")
    rule = IdFilter(field_name="rule_id")
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Delivery
        fields = ["status", "action_type", "event_key", "webhook_id"]


class AlertFilter(django_filters.FilterSet):
    rule = IdFilter(field_name="rule_id")
    meter = IdFilter(field_name="meter_id")
    site = IdFilter(field_name="site_id")
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Alert
        fields = ["status", "severity", "subject", "event_key"]


class RelayCommandFilter(django_filters.FilterSet):
    meter = IdFilter(field_name="meter_id")

    class Meta:
        model = RelayCommand
        fields = ["status", "command"]


class AnnotationFilter(django_filters.FilterSet):
    meter = IdFilter(field_name="meter_id")
    start = UtcDateTimeFilter(field_name="ts", lookup_expr="gte")
    end = UtcDateTimeFilter(field_name="ts", lookup_expr="lt")

    class Meta:
        model = Annotation
        fields = ["source"]

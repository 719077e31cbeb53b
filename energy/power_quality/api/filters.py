"""Filters of the power quality and protection lists (time ranges are half-open [start, end))."""

from __future__ import annotations

import django_filters
from django.db.models import Q

from energy.models import Meter
from energy.power_quality.models import PQEvent, ProtectionEvent
from joulepoint.tenancy.filters import IdFilter, UtcDateTimeFilter


class PQEventFilter(django_filters.FilterSet):
    meter = IdFilter(field_name="meter_id")
    site = IdFilter(field_name="meter__site_id")
    kind = django_filters.ChoiceFilter(choices=PQEvent.Kind.choices)
    duration_class = django_filters.ChoiceFilter(choices=PQEvent.DurationClass.choices)
    is_open = django_filters.BooleanFilter(field_name="end", lookup_expr="isnull", label="Open (not yet closed)")
    # Overlap with [start, end): events still running at `start` or later, begun before `end`.
    start = UtcDateTimeFilter(method="filter_start", label="Overlapping from (inclusive)")
    end = UtcDateTimeFilter(field_name="start", lookup_expr="lt", label="Overlapping until (exclusive)")

    class Meta:
        model = PQEvent
        fields = ["meter", "site", "kind", "duration_class", "is_open", "start", "end"]

    def filter_start(self, queryset, name, value):
        return queryset.filter(Q(end__isnull=True) | Q(end__gt=value))


class ProtectionEventFilter(django_filters.FilterSet):
    meter = IdFilter(field_name="meter_id")
    site = IdFilter(field_name="meter__site_id")
    kind = django_filters.ChoiceFilter(choices=ProtectionEvent.Kind.choices)
    origin = django_filters.ChoiceFilter(choices=ProtectionEvent.Origin.choices)
    start = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="gte", label="From (inclusive)")
    end = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="lt", label="Until (exclusive)")

    class Meta:
        model = ProtectionEvent
        fields = ["meter", "site", "kind", "origin", "start", "end"]


class MeterConfigFilter(django_filters.FilterSet):
    meter_id = IdFilter(field_name="id")
    site = IdFilter(field_name="site_id")

    class Meta:
        model = Meter
        fields = ["meter_id", "site"]


class BreakerStateFilter(MeterConfigFilter):
    breaker_state = django_filters.ChoiceFilter(
        choices=[("open", "Open"), ("closed", "Closed"), ("unknown", "Unknown")], method="filter_breaker_state"
    )

    class Meta(MeterConfigFilter.Meta):
        fields = ["meter_id", "site", "breaker_state"]

    def filter_breaker_state(self, queryset, name, value):
        if value == "unknown":
            return queryset.filter(Q(pq_state__isnull=True) | Q(pq_state__breaker_state_at__isnull=True))
        return queryset.filter(pq_state__breaker_state=value, pq_state__breaker_state_at__isnull=False)

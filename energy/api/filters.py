from __future__ import annotations

import django_filters

from energy.models import Gateway, Meter, MeterGroup, Reading, Site
from joulepoint.tenancy.filters import IdFilter, UtcDateTimeFilter


class SiteFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Site
        fields = ["name", "timezone"]


class MeterFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    site = IdFilter(field_name="site_id")
    group = IdFilter(field_name="groups")

    class Meta:
        model = Meter
        fields = ["site", "kind", "serial", "is_active", "name", "group"]


class MeterGroupFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    meter = IdFilter(field_name="meters")

    class Meta:
        model = MeterGroup
        fields = ["name", "meter"]


class GatewayFilter(django_filters.FilterSet):
    site = IdFilter(field_name="site_id")

    class Meta:
        model = Gateway
        fields = ["site", "is_active"]


class ReadingFilter(django_filters.FilterSet):
    start = UtcDateTimeFilter(field_name="ts", lookup_expr="gte", label="From (inclusive)")
    end = UtcDateTimeFilter(field_name="ts", lookup_expr="lt", label="Until (exclusive)")
    meter = IdFilter(field_name="meter_id")
    site = IdFilter(field_name="meter__site_id")

    class Meta:
        model = Reading
        fields = ["meter", "site", "start", "end"]

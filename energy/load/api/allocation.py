"""Allocation API doors (energy:read): the setpoints history and the headroom forecast.

- GET /api/energy/load/setpoints[/{id}]?site=&charger=&session=&start=&end=
- GET /api/energy/load/forecast?site=[&method=]
- GET /api/energy/load/windows?site=[&hours=]
"""

from __future__ import annotations

from datetime import timedelta

import django_filters
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from energy.analytics.forecast import ALL_METHODS
from energy.load import forecast, selectors
from energy.load.models import Allocation, Setpoint, SiteConstraint
from energy.models import Site
from joulepoint.tenancy.filters import IdFilter, UtcDateTimeFilter
from joulepoint.tenancy.viewsets import OrganizationAPIView, OrganizationViewSet

ID_REGEX = "[0-9]{1,18}"
BIGINT_MAX = 2**63 - 1


class SetpointSerializer(serializers.ModelSerializer):
    site = serializers.IntegerField(source="allocation.site_id", read_only=True)
    computed_at = serializers.DateTimeField(source="allocation.computed_at", read_only=True)
    effective_limit_w = serializers.FloatField(source="allocation.effective_limit_w", read_only=True)
    limit_source = serializers.ChoiceField(
        source="allocation.limit_source", choices=Allocation.LimitSource.choices, read_only=True
    )
    available_w = serializers.FloatField(source="allocation.available_w", read_only=True)

    class Meta:
        model = Setpoint
        fields = [
            "id", "allocation", "site", "computed_at", "charger", "session", "current_a", "power_w", "paused",
            "command", "effective_limit_w", "limit_source", "available_w", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class SetpointFilter(django_filters.FilterSet):
    site = IdFilter(field_name="allocation__site_id")
    charger = IdFilter(field_name="charger_id")
    session = IdFilter(field_name="session_id")
    start = UtcDateTimeFilter(field_name="allocation__computed_at", lookup_expr="gte", label="From (inclusive)")
    end = UtcDateTimeFilter(field_name="allocation__computed_at", lookup_expr="lt", label="Until (exclusive)")

    class Meta:
        model = Setpoint
        fields = ["site", "charger", "session", "start", "end"]


class SetpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """What the allocator gave each charging session, run by run (newest first)."""

    queryset = Setpoint.objects.select_related("allocation")
    serializer_class = SetpointSerializer
    scope_domain = "energy"
    filterset_class = SetpointFilter
    ordering_fields = ["id", "created_at", "current_a", "power_w"]
    ordering = ["-created_at", "-id"]
    lookup_value_regex = ID_REGEX


class HeadroomPointSerializer(serializers.Serializer):
    ts = serializers.DateTimeField(help_text="Start of the 15-minute step")
    limit_kw = serializers.FloatField(help_text="Effective import limit (constraint, schedules, demand response)")
    limit_source = serializers.CharField()
    demand_kw = serializers.FloatField(help_text="Forecast consumption of the site's consumer meters")
    pv_kw = serializers.FloatField(help_text="Forecast PV generation")
    net_kw = serializers.FloatField(help_text="demand - PV")
    headroom_kw = serializers.FloatField(help_text="limit - net: what could still be imported")


class HeadroomSerializer(serializers.Serializer):
    site = serializers.IntegerField()
    method = serializers.CharField()
    interval = serializers.CharField()
    unit = serializers.CharField()
    start = serializers.DateTimeField()
    points = HeadroomPointSerializer(many=True)


def _site_param(raw: str | None) -> int:
    if raw is None or raw == "":
        raise ValidationError({"site": ["is required (a site id)"]})
    if not raw.isdigit() or not 1 <= int(raw) <= BIGINT_MAX:
        raise ValidationError({"site": ["must be a site id (a positive integer)"]})
    return int(raw)


class HeadroomForecastView(OrganizationAPIView):
    scope_domain = "energy"

    @extend_schema(
        operation_id="load_forecast",
        parameters=[
            OpenApiParameter("site", OpenApiTypes.INT, OpenApiParameter.QUERY, required=True, description="Site id"),
            OpenApiParameter(
                "method",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=list(ALL_METHODS),
                description="Forecast method of energy analytics (default seasonal_naive_daily; `model` = MLOps)",
            ),
        ],
        responses={
            200: HeadroomSerializer,
            400: OpenApiResponse(description="Missing or bad parameter, no constraint, or too little history"),
            404: OpenApiResponse(description="No such site in this organization"),
        },
        summary="Expected import headroom of a site for the next 24 h (15-minute steps)",
    )
    def get(self, request):
        site_id = _site_param(request.query_params.get("site"))
        method = request.query_params.get("method") or "seasonal_naive_daily"
        if method not in ALL_METHODS:
            raise ValidationError({"method": [f"must be one of {', '.join(ALL_METHODS)}"]})
        constraint = (
            SiteConstraint.objects.for_org(self.organization).select_related("site").filter(site_id=site_id).first()
        )
        if constraint is None:
            if not Site.objects.for_org(self.organization).filter(pk=site_id).exists():
                raise NotFound("No such site.")
            raise ValidationError({"site": ["has no constraint (the site is not load-managed)"]})
        return Response(forecast.headroom_forecast(constraint=constraint, now=timezone.now(), method=method))


class LimitWindowSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["schedule", "demand_response"])
    id = serializers.IntegerField(help_text="The schedule's or the demand response event's id")
    name = serializers.CharField()
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    max_import_kw = serializers.FloatField(allow_null=True)
    reduction_percent = serializers.FloatField(allow_null=True)
    status = serializers.CharField(help_text="A demand response event's status (empty for a schedule)")


class LimitWindowsSerializer(serializers.Serializer):
    site = serializers.IntegerField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    windows = LimitWindowSerializer(many=True)


class LimitWindowsView(OrganizationAPIView):
    """The schedules view: when a site's limits are lowered over the next hours, schedule
    occurrences (in the site's local time, across midnight and DST) and demand response events
    together, in time order."""

    scope_domain = "energy"

    @extend_schema(
        operation_id="load_windows",
        parameters=[
            OpenApiParameter("site", OpenApiTypes.INT, OpenApiParameter.QUERY, required=True, description="Site id"),
            OpenApiParameter(
                "hours", OpenApiTypes.INT, OpenApiParameter.QUERY, description="How far ahead, 1-168 (default 24)"
            ),
        ],
        responses={
            200: LimitWindowsSerializer,
            400: OpenApiResponse(description="Missing or bad parameter"),
            404: OpenApiResponse(description="No such site in this organization"),
        },
        summary="A site's schedule windows and demand response events over the next hours",
    )
    def get(self, request):
        site_id = _site_param(request.query_params.get("site"))
        raw_hours = request.query_params.get("hours") or "24"
        if not raw_hours.isdigit() or not 1 <= int(raw_hours) <= 168:
            raise ValidationError({"hours": ["must be a whole number of hours from 1 to 168"]})
        site = Site.objects.for_org(self.organization).filter(pk=site_id).first()
        if site is None:
            raise NotFound("No such site.")
        start = timezone.now()
        end = start + timedelta(hours=int(raw_hours))
        windows = selectors.site_limit_windows(site=site, start=start, end=end)
        return Response(LimitWindowsSerializer({"site": site.pk, "start": start, "end": end, "windows": windows}).data)

"""Limits API doors: site constraints, load schedules and demand response events (energy:read /
energy:write). Rules live in energy.load.constraints and energy.load.demand_response; these
views shape and hand over.

- /api/energy/constraints[/{id}]                    CRUD, one per site; `warnings` when a limit is
                                                    below the chargers' minimums together
- /api/energy/schedules[/{id}]                      CRUD of recurring local-time windows
- /api/energy/demand-response/events[/{id}]         list, create, retrieve
- POST /api/energy/demand-response/events/{id}/cancel
"""

from __future__ import annotations

from contextlib import contextmanager

import django_filters
from django.db import IntegrityError
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from energy.load import constraints, demand_response
from energy.load.models import DemandResponseEvent, LoadSchedule, SiteConstraint
from energy.models import Meter, Site
from energy.power_quality.api.serializers import FiniteFloatField
from joulepoint.tenancy.filters import IdFilter, UtcDateTimeFilter
from joulepoint.tenancy.viewsets import OrganizationModelViewSet, OrganizationViewSet, TenantRelatedField

ID_REGEX = "[0-9]{1,18}"


@contextmanager
def _invalid_as_400():
    try:
        yield
    except constraints.LoadInvalid as exc:
        raise ValidationError({field: [message] for field, message in exc.errors.items()}) from None
    except IntegrityError:
        # A concurrent request took the site's one constraint between the check and the insert.
        raise ValidationError({"detail": "This conflicts with a concurrent change; retry."}) from None


def _kw(help_text: str, *, required: bool = False) -> FiniteFloatField:
    return FiniteFloatField(required=required, allow_null=not required, min_value=0, help_text=help_text)


class SiteConstraintSerializer(serializers.ModelSerializer):
    site = TenantRelatedField(queryset=Site.objects.all())
    grid_meter = TenantRelatedField(queryset=Meter.objects.all(), required=False, allow_null=True)
    max_import_kw = _kw("Most the site may import, kW (>= 0)", required=True)
    max_export_kw = _kw("Most the site may export, kW (empty: no limit)")
    phase_current_limit_a = _kw("Per-phase current limit at the grid connection, A")
    safety_margin_kw = FiniteFloatField(required=False, min_value=0, help_text="Kept free below the limit, kW")
    fallback_limit_kw = FiniteFloatField(
        required=False, min_value=0, help_text="What the chargers may draw together while the grid reading is stale"
    )
    peak_threshold_kw = _kw("A 15-minute average import above this is a peak")
    warnings = serializers.SerializerMethodField()

    class Meta:
        model = SiteConstraint
        fields = [
            "id", "site", "max_import_kw", "max_export_kw", "phase_current_limit_a", "safety_margin_kw", "grid_meter",
            "grid_stale_after_seconds", "fallback_limit_kw", "peak_threshold_kw", "peak_active", "peak_changed_at",
            "warnings", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["id", "peak_active", "peak_changed_at", "created_at", "updated_at"]

    def get_warnings(self, obj: SiteConstraint) -> list[str]:
        return constraints.limit_warnings(site=obj.site, limit_kw=obj.max_import_kw, what="max_import_kw")


class LoadScheduleSerializer(serializers.ModelSerializer):
    site = TenantRelatedField(queryset=Site.objects.all())
    days_of_week = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=7),
        allow_empty=False,
        max_length=7,
        help_text="ISO weekdays the window starts on, 1 = Monday … 7 = Sunday",
    )
    max_import_kw = _kw("Import limit in the window, kW")
    max_export_kw = _kw("Export limit in the window, kW")
    warnings = serializers.SerializerMethodField()

    class Meta:
        model = LoadSchedule
        fields = [
            "id", "site", "name", "days_of_week", "start_time", "end_time", "valid_from", "valid_to", "max_import_kw",
            "max_export_kw", "source", "source_reference", "is_active", "warnings", "created_at",
        ]  # fmt: skip
        read_only_fields = ["id", "source", "source_reference", "created_at"]

    def get_warnings(self, obj: LoadSchedule) -> list[str]:
        return constraints.limit_warnings(site=obj.site, limit_kw=obj.max_import_kw, what="max_import_kw")


class DemandResponseEventSerializer(serializers.ModelSerializer):
    site = TenantRelatedField(queryset=Site.objects.all())
    limit_kw = _kw("Hold the site's import at or below this, kW (or give reduction_percent)")
    reduction_percent = FiniteFloatField(
        required=False, allow_null=True, min_value=0, max_value=100, help_text="Or cut the limit by this share, %"
    )

    class Meta:
        model = DemandResponseEvent
        fields = [
            "id", "site", "starts_at", "ends_at", "limit_kw", "reduction_percent", "program", "external_id", "status",
            "started_published_at", "ended_published_at", "created_at",
        ]  # fmt: skip
        read_only_fields = ["id", "status", "started_published_at", "ended_published_at", "created_at"]


class SiteConstraintFilter(django_filters.FilterSet):
    site = IdFilter(field_name="site_id")

    class Meta:
        model = SiteConstraint
        fields = ["site"]


class LoadScheduleFilter(django_filters.FilterSet):
    site = IdFilter(field_name="site_id")
    is_active = django_filters.BooleanFilter()

    class Meta:
        model = LoadSchedule
        fields = ["site", "is_active"]


class DemandResponseFilter(django_filters.FilterSet):
    site = IdFilter(field_name="site_id")
    status = django_filters.ChoiceFilter(choices=DemandResponseEvent.Status.choices)
    start = UtcDateTimeFilter(field_name="ends_at", lookup_expr="gt", label="Events ending after")
    end = UtcDateTimeFilter(field_name="starts_at", lookup_expr="lt", label="Events starting before")

    class Meta:
        model = DemandResponseEvent
        fields = ["site", "status", "start", "end"]


class SiteBoundSaves:
    """Create and update through the service (its rules answer 400); a row never moves to another site."""

    site_fixed_message: str

    def site_save(self, *, site: Site, values: dict, instance):
        raise NotImplementedError

    def perform_create(self, serializer) -> None:
        values = dict(serializer.validated_data)
        site = values.pop("site")
        with _invalid_as_400():
            serializer.instance = self.site_save(site=site, values=values, instance=None)

    def perform_update(self, serializer) -> None:
        values = dict(serializer.validated_data)
        site = values.pop("site", serializer.instance.site)
        if site.pk != serializer.instance.site_id:
            raise ValidationError({"site": [self.site_fixed_message]})
        with _invalid_as_400():
            serializer.instance = self.site_save(site=site, values=values, instance=serializer.instance)


class SiteConstraintViewSet(SiteBoundSaves, OrganizationModelViewSet):
    """Site constraints: what each load-managed site's grid connection allows (one per site)."""

    queryset = SiteConstraint.objects.select_related("site")
    serializer_class = SiteConstraintSerializer
    scope_domain = "energy"
    filterset_class = SiteConstraintFilter
    ordering_fields = ["id", "site"]
    ordering = ["id"]
    lookup_value_regex = ID_REGEX

    site_fixed_message = "A constraint stays with its site; delete it and create another."

    def site_save(self, *, site: Site, values: dict, instance: SiteConstraint | None) -> SiteConstraint:
        return constraints.constraint_save(site=site, values=values, constraint=instance)


class LoadScheduleViewSet(SiteBoundSaves, OrganizationModelViewSet):
    """Recurring local-time windows that lower a site's limits (an end before the start runs into
    the next day; the lowest active limit wins)."""

    queryset = LoadSchedule.objects.select_related("site")
    serializer_class = LoadScheduleSerializer
    scope_domain = "energy"
    filterset_class = LoadScheduleFilter
    ordering_fields = ["id", "site", "start_time"]
    ordering = ["id"]
    lookup_value_regex = ID_REGEX

    site_fixed_message = "A schedule stays with its site."

    def site_save(self, *, site: Site, values: dict, instance: LoadSchedule | None) -> LoadSchedule:
        return constraints.schedule_save(site=site, values=values, schedule=instance)


class DemandResponseEventViewSet(
    mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.ListModelMixin, OrganizationViewSet
):
    """Demand response events: a window in which the site holds a limit (kW) or cuts its limit by
    a share (%). Overlapping events are allowed; the lowest resulting limit wins."""

    queryset = DemandResponseEvent.objects.all()
    serializer_class = DemandResponseEventSerializer
    scope_domain = "energy"
    filterset_class = DemandResponseFilter
    ordering_fields = ["id", "starts_at", "ends_at"]
    ordering = ["-starts_at", "id"]
    lookup_value_regex = ID_REGEX

    def perform_create(self, serializer) -> None:
        values = dict(serializer.validated_data)
        site = values.pop("site")
        with _invalid_as_400():
            serializer.instance = demand_response.demand_response_create(site=site, values=values)

    @extend_schema(
        request=None,
        responses={200: DemandResponseEventSerializer, 404: OpenApiResponse(description="No such event")},
        summary="Cancel a scheduled or active event (an active one is announced as ended)",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        event = demand_response.demand_response_cancel(event=self.get_object(), now=timezone.now())
        return Response(self.get_serializer(event).data)

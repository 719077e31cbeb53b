"""Charging API doors: thin views over energy.load.chargers and energy.load.sessions.

- /api/energy/chargers[/{id}]            CRUD; create answers the station password once
  POST …/{id}/rotate_password            a new station password
  POST …/{id}/reset                      OCPP Reset through the downlink
- /api/energy/id-tokens[/{id}]           the organization's accepted ID tokens
- /api/energy/charging-sessions[/{id}]   list, filter, POST requests a session (OCPP
  RequestStartTransaction); POST …/{id}/stop sends RequestStopTransaction
"""

from __future__ import annotations

from contextlib import contextmanager

import django_filters
from django.db.models import Q
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from energy.api.serializers import DeviceCommandSerializer
from energy.load import chargers, sessions
from energy.load.api.charging import serializers as s
from energy.load.models import Charger, ChargingSession, IdToken
from joulepoint.tenancy.filters import IdFilter, UtcDateTimeFilter
from joulepoint.tenancy.viewsets import OrganizationModelViewSet, OrganizationViewSet

ID_REGEX = "[0-9]{1,18}"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


@contextmanager
def _invalid_as_400():
    try:
        yield
    except chargers.ChargerInvalid as exc:
        raise exceptions.ValidationError({field: [message] for field, message in exc.errors.items()}) from None


class ChargerFilter(django_filters.FilterSet):
    site = IdFilter(field_name="site_id")
    meter = IdFilter(field_name="meter_id")

    class Meta:
        model = Charger
        fields = ["site", "meter", "is_online", "charging_station_id"]


class IdTokenFilter(django_filters.FilterSet):
    class Meta:
        model = IdToken
        fields = ["id_token", "type", "is_active"]


class ChargingSessionFilter(django_filters.FilterSet):
    site = IdFilter(field_name="site_id")
    charger = IdFilter(field_name="charger_id")
    start = UtcDateTimeFilter(method="filter_start", help_text="Sessions still open at or ending after this instant")
    end = UtcDateTimeFilter(method="filter_end", help_text="Sessions created before this instant")

    class Meta:
        model = ChargingSession
        fields = ["site", "charger", "state", "source", "transaction_id"]

    def filter_start(self, queryset, name, value):
        return queryset.filter(Q(ended_at__isnull=True) | Q(ended_at__gte=value))

    def filter_end(self, queryset, name, value):
        return queryset.filter(created_at__lt=value)


@extend_schema_view(create=extend_schema(responses={201: s.ChargerCreatedSerializer}))
class ChargerViewSet(OrganizationModelViewSet):
    """EV chargers (OCPP charging stations) with their EVSEs; each is a meter of kind ev_charger."""

    queryset = Charger.objects.select_related("meter").prefetch_related("evses")
    serializer_class = s.ChargerSerializer
    scope_domain = "energy"
    filterset_class = ChargerFilter
    ordering_fields = ["id", "charging_station_id", "priority", "created_at"]
    ordering = ["id"]
    lookup_value_regex = ID_REGEX

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        with _invalid_as_400():
            charger, password = chargers.charger_create(organization=self.organization, **values)
        data = s.ChargerCreatedSerializer(charger, context=self.get_serializer_context()).data
        data["password"] = password
        return Response(data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer) -> None:
        with _invalid_as_400():
            serializer.instance = chargers.charger_update(
                charger=serializer.instance, values=dict(serializer.validated_data)
            )

    @extend_schema(request=None, responses=s.StationPasswordSerializer, summary="Issue a new station password")
    @action(detail=True, methods=["post"], url_path="rotate_password")
    def rotate_password(self, request, pk=None):
        charger = self.get_object()
        password = chargers.charger_password_rotate(charger=charger)
        return Response({"charging_station_id": charger.charging_station_id, "password": password})

    @extend_schema(
        request=s.ResetSerializer,
        responses={202: DeviceCommandSerializer, 409: OpenApiResponse(description="The charger is offline")},
        summary="Reset the station (OCPP Reset, sent while it is connected)",
    )
    @action(detail=True, methods=["post"])
    def reset(self, request, pk=None):
        charger = self.get_object()
        body = s.ResetSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if not charger.is_online:
            raise Conflict(
                f"Charger {charger.charging_station_id} is offline; a reset can only be sent while connected."
            )
        with _invalid_as_400():
            command = chargers.charger_reset_request(charger=charger, reset_type=body.validated_data["type"])
        return Response(DeviceCommandSerializer(command).data, status=status.HTTP_202_ACCEPTED)


class IdTokenViewSet(OrganizationModelViewSet):
    """ID tokens (RFID cards, app keys) the organization's chargers accept on OCPP Authorize."""

    queryset = IdToken.objects.all()
    serializer_class = s.IdTokenSerializer
    scope_domain = "energy"
    filterset_class = IdTokenFilter
    ordering_fields = ["id", "id_token", "created_at"]
    ordering = ["id"]
    lookup_value_regex = ID_REGEX


@extend_schema_view(
    create=extend_schema(
        request=s.ChargingSessionRequestSerializer,
        responses={
            201: s.ChargingSessionRequestedSerializer,
            409: OpenApiResponse(description="The charger is offline"),
        },
        summary="Request a charging session (OCPP RequestStartTransaction)",
    )
)
class ChargingSessionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, OrganizationViewSet
):
    """Charging sessions: opened by the station (OCPP TransactionEvent) or requested here."""

    queryset = ChargingSession.objects.all()
    serializer_class = s.ChargingSessionSerializer
    scope_domain = "energy"
    filterset_class = ChargingSessionFilter
    ordering_fields = ["id", "created_at", "started_at", "ended_at", "energy_delivered_kwh"]
    ordering = ["-created_at", "-id"]
    lookup_value_regex = ID_REGEX

    def create(self, request, *args, **kwargs):
        body = s.ChargingSessionRequestSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        try:
            session, command = sessions.session_request(**body.validated_data)
        except sessions.SessionRefused as exc:
            if exc.field:
                raise exceptions.ValidationError({exc.field: [exc.detail]}) from None
            raise Conflict(exc.detail) from None
        data = s.ChargingSessionSerializer(session).data
        data["command"] = command.pk
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={
            202: s.SessionStopSerializer,
            409: OpenApiResponse(description="The session has already ended"),
        },
        summary="Stop the session (OCPP RequestStopTransaction)",
    )
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        session = self.get_object()
        try:
            command = sessions.session_stop_request(session=session)
        except sessions.SessionRefused as exc:
            raise Conflict(exc.detail) from None
        session.refresh_from_db()
        data = {"session": s.ChargingSessionSerializer(session).data, "command": command.pk if command else None}
        return Response(data, status=status.HTTP_202_ACCEPTED)

"""Power quality and protection API doors: thin views over energy.power_quality (config, protection).

- /api/energy/pq/config            POST (create or replace, the seed's body), GET list
- /api/energy/pq/config/{meter}    GET, PUT (replace), DELETE (back to defaults)
- /api/energy/pq/events[/{id}]     GET (OAuth2, energy:read)
- /api/energy/protection/events    POST (device key), GET (OAuth2); /{id} GET
- /api/energy/protection/breakers[/{meter}]  GET each meter's current breaker position
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from energy.api.authentication import DeviceWritesMixin
from energy.ingest import store
from energy.ingest.validation import ReadingInput, ReadingsInvalid
from energy.models import Meter
from energy.power_quality import config, protection
from energy.power_quality.api import filters
from energy.power_quality.api import serializers as s
from energy.power_quality.models import PQEvent, ProtectionEvent
from joulepoint.tenancy.viewsets import OrganizationViewSet

ID_REGEX = "[0-9]{1,18}"  # a path id that cannot overflow a bigint
ERRORS = {
    400: OpenApiResponse(description="Invalid body: a JSON object naming each bad field; nothing was written"),
    401: OpenApiResponse(description="Missing or invalid credentials"),
    403: OpenApiResponse(description="Token lacks the scope"),
}


class PQConfigViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Each meter's PQ thresholds (its own, or the defaults); the id in the path is the meter's."""

    queryset = Meter.objects.select_related("pq_config")
    serializer_class = s.PQConfigSerializer
    scope_domain = "energy"
    filterset_class = filters.MeterConfigFilter
    ordering_fields = ["id"]
    ordering = ["id"]
    lookup_value_regex = ID_REGEX

    def _set(self, meter: Meter, values: dict) -> Response:
        try:
            _config, created = config.pq_config_set(meter=meter, values=values)
        except config.ConfigInvalid as exc:
            raise ValidationError({field: [message] for field, message in exc.errors.items()}) from None
        meter = self.get_queryset().get(pk=meter.pk)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(s.PQConfigSerializer(meter).data, status=code)

    @extend_schema(
        request=s.PQConfigInSerializer,
        responses={201: s.PQConfigSerializer, 200: s.PQConfigSerializer, **ERRORS},
        summary="Create or replace a meter's PQ configuration",
    )
    def create(self, request, *args, **kwargs):
        serializer = s.PQConfigInSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        return self._set(values.pop("meter"), values)

    @extend_schema(
        request=s.PQConfigReplaceSerializer,
        responses={200: s.PQConfigSerializer, 201: s.PQConfigSerializer, **ERRORS, 404: None},
        summary="Replace a meter's PQ configuration",
    )
    def update(self, request, *args, **kwargs):
        meter = self.get_object()
        serializer = s.PQConfigReplaceSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        return self._set(meter, dict(serializer.validated_data))

    @extend_schema(responses={204: None, 404: None}, summary="Reset a meter's PQ configuration to the defaults")
    def destroy(self, request, *args, **kwargs):
        config.pq_config_reset(meter=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class PQEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Detected power quality events, newest first."""

    queryset = PQEvent.objects.select_related("meter")
    serializer_class = s.PQEventSerializer
    scope_domain = "energy"
    filterset_class = filters.PQEventFilter
    ordering_fields = ["start", "end", "duration_s", "worst_value", "id"]
    ordering = ["-start", "id"]
    lookup_value_regex = ID_REGEX


class ProtectionEventViewSet(DeviceWritesMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Protection events: devices POST them with their key; integrators read them with OAuth2."""

    queryset = ProtectionEvent.objects.select_related("meter")
    serializer_class = s.ProtectionEventSerializer
    scope_domain = "energy"
    filterset_class = filters.ProtectionEventFilter
    ordering_fields = ["occurred_at", "id"]
    ordering = ["-occurred_at", "id"]
    lookup_value_regex = ID_REGEX
    device_actions = frozenset({"create"})

    @extend_schema(
        request=s.ProtectionEventInSerializer,
        responses={
            201: s.ProtectionEventStoredSerializer,
            200: s.ProtectionEventStoredSerializer,
            400: ERRORS[400],
            401: ERRORS[401],
            403: OpenApiResponse(description="Bad or missing signature"),
            415: OpenApiResponse(description="Content-Type is not application/json"),
            429: OpenApiResponse(description="Device rate limit; see Retry-After"),
        },
        summary="Record a protection event (device key); a re-sent one is a 200 duplicate",
    )
    def create(self, request, *args, **kwargs):
        serializer = s.ProtectionEventInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        meter = self._meter_of(request.auth, data)
        event, created = protection.protection_event_record(
            meter=meter,
            kind=data["kind"],
            occurred_at=data["timestamp"],
            earth_leakage_ma=data.get("earth_leakage_ma"),
            details=data.get("details"),
            source="http",
        )
        event.duplicate = not created
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(s.ProtectionEventStoredSerializer(event).data, status=code)

    def _meter_of(self, device, data: dict) -> Meter:
        """A meter key posts for itself; a gateway names a meter of its site (as for readings)."""
        probe = ReadingInput(
            index=0,
            ts=data["timestamp"],
            values={},
            extra={},
            meter_id=data.get("meter_id"),
            meter_serial=data.get("meter_serial"),
        )
        try:
            (meter_id,) = store.bind_meters(device, [probe])
        except ReadingsInvalid as exc:
            raise ValidationError({error.field: [error.message] for error in exc.errors}) from None
        if isinstance(device, Meter):
            return device
        return Meter.objects.get(pk=meter_id)


class BreakerStateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Each meter's current breaker position; the id in the path is the meter's."""

    queryset = Meter.objects.select_related("pq_state")
    serializer_class = s.BreakerStateSerializer
    scope_domain = "energy"
    filterset_class = filters.BreakerStateFilter
    ordering_fields = ["id"]
    ordering = ["id"]
    lookup_value_regex = ID_REGEX

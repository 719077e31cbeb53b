"""Energy API doors: thin views over energy.services and the tenant-scoped querysets."""

from __future__ import annotations

import orjson
from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework import exceptions, mixins, permissions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from energy import services
from energy.api import filters, serializers
from energy.api.authentication import DeviceKeyAuthentication
from energy.api.throttling import DeviceRateThrottle
from energy.models import DeviceCredential, Gateway, Meter, MeterGroup, Reading, Site
from energy.validation import ReadingsInvalid
from joulepoint.tenancy.permissions import OrganizationTokenHasScope
from joulepoint.tenancy.viewsets import OrganizationModelViewSet, OrganizationViewSet


class SiteViewSet(OrganizationModelViewSet):
    queryset = Site.objects.all()
    serializer_class = serializers.SiteSerializer
    scope_domain = "energy"
    filterset_class = filters.SiteFilter
    ordering_fields = ["id", "name", "created_at"]


class DeviceCredentialViewSet(OrganizationModelViewSet):
    """Meters and gateways: the secret is in the create and rotate answers, and nowhere else."""

    created_serializer_class: type

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)
        return Response(self.created_serializer_class(serializer.instance).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=serializers.DeviceSecretSerializer)
    @action(detail=True, methods=["post"], url_path="rotate_key")
    def rotate_key(self, request, pk=None):
        device = services.device_credential_rotate(device=self.get_object())
        return Response(serializers.DeviceSecretSerializer(device).data)


@extend_schema_view(create=extend_schema(responses={201: serializers.MeterCreatedSerializer}))
class MeterViewSet(DeviceCredentialViewSet):
    queryset = Meter.objects.all()
    serializer_class = serializers.MeterSerializer
    created_serializer_class = serializers.MeterCreatedSerializer
    scope_domain = "energy"
    filterset_class = filters.MeterFilter
    ordering_fields = ["id", "name", "serial", "kind", "created_at"]


@extend_schema_view(create=extend_schema(responses={201: serializers.GatewayCreatedSerializer}))
class GatewayViewSet(DeviceCredentialViewSet):
    queryset = Gateway.objects.all()
    serializer_class = serializers.GatewaySerializer
    created_serializer_class = serializers.GatewayCreatedSerializer
    scope_domain = "energy"
    filterset_class = filters.GatewayFilter
    ordering_fields = ["id", "name", "created_at"]


class MeterGroupViewSet(OrganizationModelViewSet):
    queryset = MeterGroup.objects.prefetch_related("meters")
    serializer_class = serializers.MeterGroupSerializer
    scope_domain = "energy"
    filterset_class = filters.MeterGroupFilter
    ordering_fields = ["id", "name", "created_at"]


class IsDevice(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, DeviceCredential):
            raise exceptions.NotAuthenticated("Devices authenticate with the X-Device-Key header.")
        return True


INGEST_ERRORS = {
    400: OpenApiResponse(serializers.IngestErrorSerializer, description="Invalid readings; nothing was stored"),
    401: OpenApiResponse(description="Missing, malformed or unknown device key"),
    403: OpenApiResponse(description="Bad or missing signature"),
    413: OpenApiResponse(description="Body over INGEST_MAX_BODY_BYTES"),
    415: OpenApiResponse(description="Content-Type is not application/json"),
    429: OpenApiResponse(description="Device rate limit; see Retry-After"),
}


class ReadingViewSet(mixins.ListModelMixin, OrganizationViewSet):
    """Readings: devices POST them with their key; integrators read them back with OAuth2."""

    queryset = Reading.objects.all()
    serializer_class = serializers.ReadingSerializer
    scope_domain = "energy"
    filterset_class = filters.ReadingFilter
    ordering_fields = ["ts", "meter", "id"]
    ordering = ["meter_id", "ts"]
    device_actions = frozenset({"create", "bulk"})

    @property
    def is_device_action(self) -> bool:
        # DRF picks authenticators before it sets `self.action`, so look the action up here.
        action = getattr(self, "action", None)
        if action is None and getattr(self, "request", None) is not None:
            action = self.action_map.get(self.request.method.lower())
        return action in self.device_actions

    def get_authenticators(self):
        # Devices write with their key; integrators read with OAuth2. Choosing per action keeps
        # a stray X-Device-Key header from hiding a valid bearer token on GET.
        if self.is_device_action:
            return [DeviceKeyAuthentication()]
        return [OAuth2Authentication()]

    def get_permissions(self):
        if self.is_device_action:
            return [IsDevice()]
        return [OrganizationTokenHasScope()]

    def get_throttles(self):
        if self.is_device_action:
            return [DeviceRateThrottle()]
        return super().get_throttles()

    def _json_body(self, request) -> object:
        content_type = request.content_type.split(";")[0].strip().lower()
        if content_type != "application/json":
            raise exceptions.UnsupportedMediaType(
                content_type or "(none)", detail="Send Content-Type: application/json."
            )
        length = int(request.headers.get("Content-Length") or 0)
        if length > settings.INGEST_MAX_BODY_BYTES:
            raise RequestTooLarge()
        try:
            return orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise exceptions.ParseError(f"Malformed JSON: {exc}") from None

    def _ingest(self, request, items: list):
        try:
            return services.reading_batch_ingest(device=request.auth, items=items, source="http")
        except ReadingsInvalid as exc:
            raise IngestInvalid(exc) from None

    @extend_schema(
        request=serializers.ReadingInSerializer,
        responses={201: serializers.StoredReadingSerializer, 200: serializers.StoredReadingSerializer, **INGEST_ERRORS},
        auth=[{"deviceKey": []}],
        summary="Ingest one reading (device key)",
    )
    def create(self, request, *args, **kwargs):
        body = self._json_body(request)
        if not isinstance(body, dict):
            raise exceptions.ParseError("Send one reading as a JSON object; arrays go to /api/energy/energy-data/bulk.")
        result = self._ingest(request, [body])
        key = result.keys[0]
        reading = result.stored_reading(key)
        if reading is None:
            meter_id, ts = key
            reading = Reading.objects.get(meter_id=meter_id, ts=ts)
        reading.duplicate = result.duplicates == 1
        code = status.HTTP_200_OK if reading.duplicate else status.HTTP_201_CREATED
        return Response(serializers.StoredReadingSerializer(reading).data, status=code)

    @extend_schema(
        request=serializers.ReadingInSerializer(many=True),
        responses={201: serializers.BulkResultSerializer, 200: serializers.BulkResultSerializer, **INGEST_ERRORS},
        auth=[{"deviceKey": []}],
        summary="Ingest up to 5,000 readings, all or nothing (device key)",
    )
    def bulk(self, request, *args, **kwargs):
        body = self._json_body(request)
        if not isinstance(body, list):
            raise exceptions.ParseError("Send a JSON array of readings.")
        if not body:
            raise exceptions.ParseError("The array of readings is empty.")
        if len(body) > settings.INGEST_MAX_BATCH:
            raise exceptions.ParseError(f"At most {settings.INGEST_MAX_BATCH} readings per request; got {len(body)}.")
        result = self._ingest(request, body)
        code = status.HTTP_201_CREATED if result.stored else status.HTTP_200_OK
        return Response({"stored": result.stored, "duplicates": result.duplicates}, status=code)


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = f"Request body is larger than {settings.INGEST_MAX_BODY_BYTES} bytes."
    default_code = "body_too_large"


class IngestInvalid(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_readings"

    def __init__(self, invalid: ReadingsInvalid):
        super().__init__(detail="Invalid readings; nothing was stored.")
        self.extra = {"errors": [error.as_dict() for error in invalid.errors]}

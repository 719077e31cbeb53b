"""Energy API doors: thin views over energy.services and the tenant-scoped querysets."""

from __future__ import annotations

import orjson
from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from energy.api import filters, serializers
from energy.api.authentication import DeviceKeyAuthentication, DeviceWritesMixin, IsDevice
from energy.api.throttling import DeviceRateThrottle
from energy.devices import services as devices
from energy.downlink import services as downlink
from energy.ingest import group_commit, store
from energy.ingest.validation import ReadingsInvalid
from energy.models import DeviceCommand, Gateway, Meter, MeterGroup, Reading, Site
from joulepoint.platform.jsonbody import DuplicateKey, charset_is_utf8, json_loads_strict
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
        device = devices.device_credential_rotate(device=self.get_object())
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


INGEST_ERRORS = {
    400: OpenApiResponse(serializers.IngestErrorSerializer, description="Invalid readings; nothing was stored"),
    401: OpenApiResponse(description="Missing, malformed or unknown device key"),
    403: OpenApiResponse(description="Bad or missing signature"),
    413: OpenApiResponse(description="Body over INGEST_MAX_BODY_BYTES"),
    415: OpenApiResponse(description="Content-Type is not application/json, or its charset is not UTF-8"),
    429: OpenApiResponse(description="Device rate limit; see Retry-After"),
}


class ReadingViewSet(DeviceWritesMixin, mixins.ListModelMixin, OrganizationViewSet):
    """Readings: devices POST them with their key; integrators read them back with OAuth2."""

    queryset = Reading.objects.all()
    serializer_class = serializers.ReadingSerializer
    scope_domain = "energy"
    filterset_class = filters.ReadingFilter
    ordering_fields = ["ts", "meter", "id"]
    ordering = ["meter_id", "ts"]
    device_actions = frozenset({"create", "bulk"})

    def _json_body(self, request) -> object:
        content_type = request.content_type.split(";")[0].strip().lower()
        if content_type != "application/json":
            raise exceptions.UnsupportedMediaType(
                content_type or "(none)", detail="Send Content-Type: application/json."
            )
        if not charset_is_utf8(request.content_type):
            raise exceptions.UnsupportedMediaType(
                request.content_type, detail="JSON bodies must be UTF-8 (charset=utf-8)."
            )
        try:  # META, not request.headers: see DeviceKeyAuthentication
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise exceptions.ParseError("Content-Length must be the body's length in bytes.") from None
        if length > settings.INGEST_MAX_BODY_BYTES:
            raise RequestTooLarge()
        try:
            return json_loads_strict(request.body)
        except DuplicateKey as exc:
            raise exceptions.ParseError(str(exc)) from None
        except orjson.JSONDecodeError as exc:
            raise exceptions.ParseError(f"Malformed JSON: {exc}") from None

    def _ingest(self, request, items: list, *, grouped: bool = False):
        # Single readings join concurrent requests' transaction (group commit); a bulk batch is
        # already its own group.
        ingest = group_commit.reading_batch_ingest_grouped if grouped else store.reading_batch_ingest
        try:
            return ingest(device=request.auth, items=items, source="http")
        except ReadingsInvalid as exc:
            raise IngestInvalid(exc) from None

    @extend_schema(
        request=serializers.ReadingInSerializer,
        responses={201: serializers.StoredReadingSerializer, 200: serializers.StoredReadingSerializer, **INGEST_ERRORS},
        summary="Ingest one reading (device key)",
    )
    def create(self, request, *args, **kwargs):
        body = self._json_body(request)
        if not isinstance(body, dict):
            raise exceptions.ParseError("Send one reading as a JSON object; arrays go to /api/energy/energy-data/bulk.")
        result = self._ingest(request, [body], grouped=True)
        duplicate = result.duplicates == 1
        code = status.HTTP_200_OK if duplicate else status.HTTP_201_CREATED
        data = serializers.stored_reading_data(result.stored_reading(result.keys[0]), duplicate=duplicate)
        return Response(data, status=code)

    @extend_schema(
        request=serializers.ReadingInSerializer(many=True),
        responses={201: serializers.BulkResultSerializer, 200: serializers.BulkResultSerializer, **INGEST_ERRORS},
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


@extend_schema_view(
    create=extend_schema(
        request=serializers.DeviceCommandCreateSerializer, responses={201: serializers.DeviceCommandSerializer}
    )
)
class DeviceCommandViewSet(
    mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet
):
    """Downlink commands to the organization's meters and gateways (energy:write to send)."""

    queryset = DeviceCommand.objects.all()
    serializer_class = serializers.DeviceCommandSerializer
    scope_domain = "energy"
    filterset_class = filters.DeviceCommandFilter
    ordering_fields = ["id", "created_at", "status"]

    def create(self, request, *args, **kwargs):
        incoming = serializers.DeviceCommandCreateSerializer(data=request.data, context=self.get_serializer_context())
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        command = downlink.device_command_send(
            device=data.get("meter") or data["gateway"],
            name=data["name"],
            payload=data["payload"],
            ttl_seconds=data.get("ttl_seconds"),
        )
        command.refresh_from_db()
        return Response(self.get_serializer(command).data, status=status.HTTP_201_CREATED)


class DeviceCommandPollView(viewsets.ViewSet):
    """Devices without MQTT or an open socket poll for commands and acknowledge them."""

    authentication_classes = [DeviceKeyAuthentication]
    permission_classes = [IsDevice]
    throttle_classes = [DeviceRateThrottle]
    model = DeviceCommand  # what it serves; rows come from energy.services, scoped to the device

    @extend_schema(
        responses={200: serializers.DeviceCommandMessageSerializer(many=True)},
        summary="Open commands for this device (device key); pending ones become delivered",
    )
    def list(self, request):
        commands = downlink.device_commands_poll(device=request.auth)
        return Response([downlink.device_command_as_message(command) for command in commands])

    @extend_schema(
        request=serializers.DeviceCommandAckSerializer,
        responses={
            200: serializers.DeviceCommandStatusSerializer,
            404: OpenApiResponse(description="Not a command of this device"),
            409: OpenApiResponse(description="Already final (expired, or answered differently)"),
        },
        summary="Acknowledge (or report failure of) a command (device key)",
    )
    def ack(self, request, pk=None):
        incoming = serializers.DeviceCommandAckSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            command_id = int(pk)
        except (TypeError, ValueError):
            raise exceptions.NotFound("Not a command of this device.") from None
        try:
            command = downlink.device_command_ack(
                device=request.auth,
                command_id=command_id,
                ok=incoming.validated_data["status"] == "acked",
                result=incoming.validated_data["result"],
            )
        except downlink.DeviceCommandError as exc:
            if exc.code == "not_found":
                raise exceptions.NotFound(exc.detail) from None
            return Response({"detail": exc.detail, "code": "conflict"}, status=status.HTTP_409_CONFLICT)
        return Response({"id": command.pk, "status": command.status})

"""Billing API doors: thin views over billing's services and selectors.

- /api/energy/billing/tariffs[/{id}]                  CRUD; POST …/import_urdb; POST …/{id}/load-schedules
- /api/energy/billing/accounts[/{id}]                 CRUD; POST …/{id}/preview, …/{id}/generate_statement
- /api/energy/billing/statements[/{id}]               GET; …/{id}/html (printable page), …/{id}/pdf
- /api/energy/wallets[/{id}]                          GET, POST, PATCH/PUT (no delete: the ledger stays)
- /api/energy/wallet-transactions[/{id}]              GET; POST appends a movement (idempotency key)
"""

from __future__ import annotations

from django.db.models import ProtectedError
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response

from billing.api import filters
from billing.api import serializers as s
from billing.load_schedules import tariff_load_schedules_generate
from billing.models import Account, Statement, Tariff, Wallet, WalletTransaction
from billing.preview import RangeInvalid, account_preview
from billing.statements import statement_generate, statement_html, statement_pdf
from billing.tariffs.services import tariff_save
from billing.tariffs.urdb import urdb_version
from billing.tariffs.validation import PeriodsInvalid
from billing.wallets import LedgerError, wallet_move
from energy.load.api.limits import LoadScheduleSerializer
from energy.load.constraints import LoadInvalid
from joulepoint.tenancy.viewsets import OrganizationModelViewSet, OrganizationViewSet

ID_REGEX = "[0-9]{1,18}"
ERRORS = {
    400: OpenApiResponse(description="Invalid body: a JSON object naming each bad field; nothing was written"),
    401: OpenApiResponse(description="Missing or invalid credentials"),
    403: OpenApiResponse(description="Token lacks the scope"),
}


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Conflict."


class ProtectedDestroyMixin:
    def perform_destroy(self, instance) -> None:
        try:
            instance.delete()
        except ProtectedError:
            raise Conflict(
                {"detail": "Still in use (accounts or statements refer to it); nothing was deleted."}
            ) from None


class TariffViewSet(ProtectedDestroyMixin, OrganizationModelViewSet):
    """Tariffs with their dated versions and time-of-use periods (docs/billing.md)."""

    queryset = Tariff.objects.prefetch_related("versions")
    serializer_class = s.TariffSerializer
    scope_domain = "billing"
    # Generating load schedules reads the tariff and writes the site's schedules (energy).
    action_scopes = {"load_schedules": ["billing:read", "energy:write"]}
    filterset_class = filters.TariffFilter
    ordering_fields = ["name", "id", "created_at"]
    ordering = ["name", "id"]
    lookup_value_regex = ID_REGEX

    def perform_create(self, serializer) -> None:
        data = dict(serializer.validated_data)
        versions = data.pop("versions")
        serializer.instance = tariff_save(organization_id=self.organization.pk, values=data, versions=versions)

    def perform_update(self, serializer) -> None:
        data = dict(serializer.validated_data)
        versions = data.pop("versions", None)
        serializer.instance = tariff_save(
            organization_id=self.organization.pk, values=data, versions=versions, tariff=serializer.instance
        )

    @extend_schema(request=s.UrdbImportSerializer, responses={201: s.TariffSerializer, **ERRORS},
                   summary="Import a URDB-style rate as a new tariff")  # fmt: skip
    @action(detail=False, methods=["post"], url_path="import_urdb")
    def import_urdb(self, request):
        serializer = s.UrdbImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        try:
            version = urdb_version(data.pop("urdb"))
        except PeriodsInvalid as exc:
            raise ValidationError({"urdb": exc.errors}) from None
        version["valid_from"] = data.pop("valid_from")
        check = s.TariffSerializer(data={**data, "versions": []}, context=self.get_serializer_context())
        check.is_valid()
        errors = {k: v for k, v in check.errors.items() if k != "versions"}
        if errors:
            raise ValidationError(errors)
        tariff = tariff_save(organization_id=self.organization.pk, values=data, versions=[version])
        return Response(s.TariffSerializer(tariff).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=s.TariffLoadSchedulesSerializer,
        responses={201: LoadScheduleSerializer(many=True), **ERRORS},
        summary="Generate a site's load schedules from this tariff's peak periods",
    )
    @action(detail=True, methods=["post"], url_path="load-schedules")
    def load_schedules(self, request, pk=None):
        tariff = self.get_object()
        serializer = s.TariffLoadSchedulesSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            schedules = tariff_load_schedules_generate(
                tariff=tariff, site=data["site"], max_import_kw=data["max_import_kw"],
                on=data.get("on") or timezone.localdate(), period=data.get("period"),
            )  # fmt: skip
        except LoadInvalid as exc:
            raise ValidationError({field: [message] for field, message in exc.errors.items()}) from None
        return Response(LoadScheduleSerializer(schedules, many=True).data, status=status.HTTP_201_CREATED)


class AccountViewSet(ProtectedDestroyMixin, OrganizationModelViewSet):
    """Billing accounts: meters and groups billed at a tariff, postpaid or prepaid."""

    queryset = Account.objects.select_related("site", "tariff").prefetch_related("meters", "groups")
    serializer_class = s.AccountSerializer
    scope_domain = "billing"
    filterset_class = filters.AccountFilter
    ordering_fields = ["name", "id", "created_at"]
    ordering = ["name", "id"]
    lookup_value_regex = ID_REGEX

    def _range(self, request) -> dict:
        serializer = s.RangeSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    @extend_schema(request=s.RangeSerializer, responses={200: s.PreviewSerializer, **ERRORS, 404: None},
                   summary="Cost the account over a range (default: this cycle to now); writes nothing")  # fmt: skip
    @action(detail=True, methods=["post"])
    def preview(self, request, pk=None):
        account = self.get_object()
        try:
            costing = account_preview(account=account, **self._range(request))
        except RangeInvalid as exc:
            raise ValidationError({exc.field: [exc.message]}) from None
        return Response(costing.as_dict())

    @extend_schema(request=s.RangeSerializer,
                   responses={201: s.StatementSerializer, 200: s.StatementSerializer, **ERRORS, 404: None},
                   summary="Issue the statement of a closed period (default: the last cycle); idempotent")  # fmt: skip
    @action(detail=True, methods=["post"])
    def generate_statement(self, request, pk=None):
        account = self.get_object()
        try:
            statement, created = statement_generate(account=account, **self._range(request))
        except RangeInvalid as exc:
            raise ValidationError({exc.field: [exc.message]}) from None
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(s.StatementSerializer(statement).data, status=code)


class StatementViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Issued statements (immutable), newest first."""

    queryset = Statement.objects.select_related("account")
    serializer_class = s.StatementSerializer
    scope_domain = "billing"
    filterset_class = filters.StatementFilter
    ordering_fields = ["period_start", "id", "sequence"]
    ordering = ["-period_start", "-id"]
    lookup_value_regex = ID_REGEX

    @extend_schema(responses={(200, "text/html"): OpenApiResponse(description="Printable statement"), 404: None},
                   summary="The statement as a printable HTML page")  # fmt: skip
    @action(detail=True, methods=["get"])
    def html(self, request, pk=None):
        statement = self.get_object()
        return HttpResponse(statement_html(statement=statement), content_type="text/html; charset=utf-8")

    @extend_schema(
        responses={
            (200, "application/pdf"): OpenApiResponse(description="The printable statement as a PDF"),
            404: None,
        },
        summary="The statement as a PDF (rendered from the printable page)",
    )
    @action(detail=True, methods=["get"])
    def pdf(self, request, pk=None):
        statement = self.get_object()
        response = HttpResponse(statement_pdf(statement=statement), content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{statement.number}.pdf"'
        return response


class WalletViewSet(
    mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, mixins.ListModelMixin,
    OrganizationViewSet,
):  # fmt: skip
    """Prepaid wallets; the balance is the sum of the ledger and only movements change it."""

    queryset = Wallet.objects.all()
    serializer_class = s.WalletSerializer
    scope_domain = "billing"
    filterset_class = filters.WalletFilter
    ordering_fields = ["name", "id", "balance"]
    ordering = ["name", "id"]
    lookup_value_regex = ID_REGEX

    def perform_create(self, serializer) -> None:
        serializer.save(organization=self.organization)


class WalletTransactionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """The append-only ledger; POST appends one movement, once per idempotency key."""

    queryset = WalletTransaction.objects.all()
    serializer_class = s.WalletTransactionSerializer
    scope_domain = "billing"
    filterset_class = filters.WalletTransactionFilter
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]
    lookup_value_regex = ID_REGEX

    @extend_schema(
        request=s.WalletTransactionInSerializer,
        responses={
            201: s.WalletTransactionSerializer, 200: s.WalletTransactionSerializer, **ERRORS,
            409: OpenApiResponse(description="The idempotency key was used for another amount or kind"),
        },
        summary="Append a movement; a repeated idempotency key answers the first movement (200)",
    )  # fmt: skip
    def create(self, request, *args, **kwargs):
        serializer = s.WalletTransactionInSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        application = getattr(request.auth, "application", None)
        try:
            movement = wallet_move(
                organization_id=self.organization.pk, wallet_id=data["wallet"].pk, kind=data["kind"],
                amount=data["amount"], currency=data["currency"], idempotency_key=data["idempotency_key"],
                reference=data["reference"], reason=data["reason"],
                source=f"api:application:{application.pk}" if application is not None else "api",
            )  # fmt: skip
        except LedgerError as exc:
            if exc.status == status.HTTP_409_CONFLICT:
                raise Conflict({exc.field: [exc.message]}) from None
            raise ValidationError({exc.field: [exc.message]}) from None
        code = status.HTTP_201_CREATED if movement.created else status.HTTP_200_OK
        return Response(s.WalletTransactionSerializer(movement.transaction).data, status=code)

"""The one base viewset that scopes every API query to the token's organization."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from rest_framework import exceptions, mixins, serializers, viewsets

from joulepoint.tenancy.permissions import token_organization


class OrganizationViewSet(viewsets.GenericViewSet):
    """Subclasses set `queryset` (a TenantQuerySet) and `scope_domain`; they may refine the query
    in `safely_get_queryset` but never override `get_queryset`, so no view forgets the tenant."""

    scope_domain: str = ""
    action_scopes: dict[str, list[str]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__} must implement safely_get_queryset, not get_queryset")

    @property
    def organization(self):
        return token_organization(self.request)

    def get_queryset(self) -> QuerySet:
        queryset = self.queryset.all()
        if getattr(self, "swagger_fake_view", False):
            return queryset.none()
        return self.safely_get_queryset(queryset.for_org(self.organization))

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset

    def get_serializer_context(self) -> dict:
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context["organization"] = self.organization
        return context


class TenantRelatedField(serializers.PrimaryKeyRelatedField):
    """A foreign key that only accepts rows of the request's organization (others read as missing)."""

    def get_queryset(self):
        queryset = super().get_queryset()
        organization = self.context.get("organization")
        if organization is None:
            return queryset.none()
        return queryset.for_org(organization)


class OrganizationModelViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    OrganizationViewSet,
):
    """CRUD on a tenant model; created rows belong to the token's organization."""

    def perform_create(self, serializer) -> None:
        with _conflict_as_400():
            serializer.save(organization=self.organization)

    def perform_update(self, serializer) -> None:
        with _conflict_as_400():
            serializer.save()


@contextmanager
def _conflict_as_400() -> Iterator[None]:
    """Serializers check unique constraints first; two requests racing past that check meet the
    database constraint, and the loser gets a 400 rather than a 500."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError:
        raise exceptions.ValidationError(
            {"detail": "This conflicts with an existing row (a unique field is taken)."}
        ) from None

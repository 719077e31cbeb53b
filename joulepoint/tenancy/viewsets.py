"""The base views that scope every API request to the token's organization.

A subclass may not override what decides who is asking and what they may see (`get_queryset`,
`get_object`, `get_permissions`, `get_authenticators`): a view that forgets the tenant, or
swaps the token check for something weaker, must be impossible to write by accident. It refines
the query in `safely_get_queryset`; where a door really authenticates differently (devices
posting with their key, relay approval by role), it overrides `dangerously_get_permissions` /
`dangerously_get_authenticators`, names that make a reviewer look twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from rest_framework import exceptions, mixins, serializers, viewsets
from rest_framework.views import APIView

from joulepoint.tenancy.permissions import OrganizationTokenHasScope, token_organization

GUARDED = ("get_queryset", "get_object", "get_permissions", "get_authenticators")


# Refuses subclasses (and mixins placed before the base) that override a guarded method. (A
# comment: drf-spectacular describes operations with the nearest docstring of a view's classes.)
class TenantGuard:
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for klass in cls.__mro__:
            if klass.__dict__.get("guard_base"):
                break  # the base's own methods are the guarded ones
            overridden = [name for name in GUARDED if name in klass.__dict__]
            if overridden:
                raise TypeError(
                    f"{cls.__name__} must not override {', '.join(overridden)} (in {klass.__name__}): refine the "
                    "query in safely_get_queryset, or override dangerously_get_permissions / "
                    "dangerously_get_authenticators where a door really authenticates differently"
                )

    def get_permissions(self):
        return self.dangerously_get_permissions()

    def get_authenticators(self):
        return self.dangerously_get_authenticators()

    def dangerously_get_permissions(self):
        """The token-scope check; a replacement must authenticate and authorize on its own."""
        return super().get_permissions()

    def dangerously_get_authenticators(self):
        return super().get_authenticators()

    @property
    def organization(self):
        return token_organization(self.request)


class OrganizationViewSet(TenantGuard, viewsets.GenericViewSet):
    """Subclasses set `queryset` (a TenantQuerySet) and `scope_domain`; they may refine the query
    in `safely_get_queryset` but never override `get_queryset`, so no view forgets the tenant."""

    guard_base = True
    scope_domain: str = ""
    action_scopes: dict[str, list[str]] = {}

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


# A view over the token's organization that is not a queryset (analytics, settings): it reads
# through services and selectors with `self.organization`, under the same token check. (A
# comment, not a docstring: drf-spectacular would describe every subclass's operations with it.)
class OrganizationAPIView(TenantGuard, APIView):
    guard_base = True
    permission_classes = [OrganizationTokenHasScope]
    scope_domain: str = ""


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

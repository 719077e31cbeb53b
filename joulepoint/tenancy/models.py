"""Organizations, their members and their OAuth2 applications.

Every tenant-owned row reaches an Organization through `tenant_path`; `TenantQuerySet`
is the one way API views, the admin and consumers read tenant data.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from oauth2_provider.models import AbstractApplication, ApplicationManager


class TenantQuerySet(models.QuerySet):
    """Row-level isolation: `for_org` filters on the model's `tenant_path` to an Organization."""

    def for_org(self, org: Organization | int) -> TenantQuerySet:
        return self.filter(**{self.model.tenant_path: org})

    def for_orgs(self, orgs: Iterable[Organization | int]) -> TenantQuerySet:
        return self.filter(**{f"{self.model.tenant_path}__in": list(orgs)})


class TenantModel(models.Model):
    """Base for tenant-owned models; subclasses set `tenant_path` when not a direct FK."""

    tenant_path = "organization"
    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True


class Organization(models.Model):
    """A tenant: a company or operator whose sites, meters and credentials are isolated."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    tenant_path = "pk"
    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(TenantModel):
    """A user's role in an organization; staff users manage their organizations' rows in the admin."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Administrator"
        OPERATOR = "operator", "Operator"
        APPROVER = "approver", "Relay approver"
        VIEWER = "viewer", "Viewer"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.OPERATOR)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="uniq_membership")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization} ({self.role})"


def scope_choices() -> list[tuple[str, str]]:
    return list(settings.OAUTH2_PROVIDER["SCOPES"].items())


class Application(AbstractApplication, TenantModel):
    """An OAuth2 client owned by an organization; tokens it gets act for that organization only.

    `allowed_scopes` bounds what a token may ask for (space-separated, as in OAuth2).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="applications")
    allowed_scopes = models.TextField(blank=True, default="")

    objects = ApplicationManager.from_queryset(TenantQuerySet)()

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"
        verbose_name = "API access credential"

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"

    @property
    def scope_list(self) -> list[str]:
        return self.allowed_scopes.split()

    def allows_grant_type(self, *grant_types: str) -> bool:
        """DOT's validator asks this for every token and authorization request: a credential of a
        grant the deployment turned off (password, implicit) gets nothing, even if saved earlier."""
        return self.authorization_grant_type in grant_types and grant_type_enabled(self.authorization_grant_type)

    def clean(self) -> None:
        super().clean()
        if not grant_type_enabled(self.authorization_grant_type):
            grant = self.get_authorization_grant_type_display()
            raise ValidationError(
                {
                    "authorization_grant_type": f"The {grant} grant is turned off on this deployment "
                    "(OAUTH2_ALLOW_PASSWORD_GRANT / OAUTH2_ALLOW_IMPLICIT_GRANT)."
                }
            )


def grant_type_enabled(grant_type: str) -> bool:
    """The password and implicit grants (RFC 9700 says must not be used) only when enabled."""
    if grant_type == AbstractApplication.GRANT_PASSWORD:
        return settings.OAUTH2_ALLOW_PASSWORD_GRANT
    if grant_type == AbstractApplication.GRANT_IMPLICIT:
        return settings.OAUTH2_ALLOW_IMPLICIT_GRANT
    return True

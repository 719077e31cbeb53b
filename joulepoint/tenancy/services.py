"""Creating tenants and their credentials (the admin, `create_tenant` and the demo use these)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.text import slugify
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from joulepoint.tenancy.models import Application, Membership, Organization

AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()


@dataclass(frozen=True)
class ApiCredential:
    application: Application
    client_secret: str  # plain text: DOT keeps only a hash, so this is the one time it exists


@dataclass(frozen=True)
class NewTenant:
    organization: Organization
    admin_username: str
    admin_password: str
    credential: ApiCredential

    def as_dict(self) -> dict:
        return {
            "organization_id": self.organization.pk,
            "client_id": self.credential.application.client_id,
            "client_secret": self.credential.client_secret,
            "admin_username": self.admin_username,
            "admin_password": self.admin_password,
        }


def all_scopes() -> list[str]:
    return list(settings.OAUTH2_PROVIDER["SCOPES"])


def api_credential_create(*, organization: Organization, name: str, scopes: list[str], user=None) -> ApiCredential:
    """A confidential client-credentials application of `organization`, limited to `scopes`."""
    unknown = set(scopes) - set(all_scopes())
    if unknown:
        raise ValueError(f"unknown scopes: {' '.join(sorted(unknown))}")
    secret = generate_client_secret()
    application = Application.objects.create(
        name=name,
        organization=organization,
        user=user,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,
        allowed_scopes=" ".join(scopes),
    )
    return ApiCredential(application=application, client_secret=secret)


@transaction.atomic
def tenant_create(*, name: str, admin_username: str | None = None, admin_password: str | None = None) -> NewTenant:
    """An organization with a staff admin (facility manager) and a full-scope API credential."""
    slug = slugify(name) or secrets.token_hex(4)
    organization = Organization.objects.create(name=name, slug=slug)
    username = admin_username or f"{slug}-admin"
    password = admin_password or secrets.token_urlsafe(12)
    user = get_user_model().objects.create_user(username=username, password=password, is_staff=True)
    Membership.objects.create(organization=organization, user=user, role=Membership.Role.ADMIN)
    credential = api_credential_create(
        organization=organization, name=f"{name} integration", scopes=all_scopes(), user=user
    )
    return NewTenant(organization=organization, admin_username=username, admin_password=password, credential=credential)


@transaction.atomic
def api_credential_tokens_revoke(*, application: Application, scopes: set[str]) -> int:
    """Revoke every access token of `application` that holds one of `scopes`, with its refresh
    token (which could otherwise mint it again); returns how many. Tokens holding none of them
    keep working.

    A token's scopes are fixed when it is issued and checked against the token alone on each
    request, so narrowing a credential reaches its outstanding tokens only through this."""
    revoked = 0
    tokens = AccessToken.objects.filter(application=application)
    for token in tokens:
        if not scopes & set(token.scope.split()):
            continue
        refresh = RefreshToken.objects.filter(access_token=token, revoked__isnull=True).first()
        if refresh is not None:
            refresh.revoke()  # revokes (deletes) its access token too
        else:
            token.revoke()
        revoked += 1
    return revoked


def application_scopes_remember(sender, instance: Application, **kwargs) -> None:
    """pre_save receiver of Application (tenancy.apps): the scopes it had, for the post_save one."""
    if instance.pk is None:
        instance._scopes_before = set()
        return
    before = Application.objects.filter(pk=instance.pk).values_list("allowed_scopes", flat=True).first()
    instance._scopes_before = set((before or "").split())


def application_scopes_narrowed(sender, instance: Application, created: bool, **kwargs) -> None:
    """post_save receiver of Application: scopes taken away (admin, shell, any save) are taken
    from its outstanding tokens too, in the same transaction."""
    removed = getattr(instance, "_scopes_before", set()) - set(instance.scope_list)
    if removed and not created:
        api_credential_tokens_revoke(application=instance, scopes=removed)

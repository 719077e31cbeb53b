"""Narrowing a credential's scopes revokes its outstanding tokens that hold a removed scope
(and their refresh tokens); other tokens, and widening, leave tokens alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from oauth2_provider.models import AccessToken, RefreshToken

from joulepoint.tenancy.services import api_credential_create, api_credential_tokens_revoke

pytestmark = pytest.mark.django_db


def issue(application, scopes: str, name: str, *, user=None) -> AccessToken:
    token = AccessToken.objects.create(
        application=application, token=name, scope=scopes, expires=timezone.now() + timedelta(hours=1), user=user
    )
    if user is not None:  # an authorization-code grant's token comes with a refresh token
        RefreshToken.objects.create(application=application, token=f"r-{name}", access_token=token, user=user)
    return token


def test_removing_a_scope_revokes_the_tokens_holding_it_only(org, owner):
    application = api_credential_create(
        organization=org, name="integrator", scopes=["energy:read", "billing:read"]
    ).application
    both = issue(application, "energy:read billing:read", "both", user=owner)
    billing_only = issue(application, "billing:read", "billing")
    application.allowed_scopes = "billing:read"
    application.save()
    assert not AccessToken.objects.filter(pk=both.pk).exists()
    assert RefreshToken.objects.get(token="r-both").revoked is not None  # cannot mint it again
    assert AccessToken.objects.filter(pk=billing_only.pk).exists()


def test_the_api_refuses_a_narrowed_credentials_old_token(org, client):
    application = api_credential_create(organization=org, name="i", scopes=["energy:read"]).application
    token = issue(application, "energy:read", "tok-old")
    assert client.get("/api/energy/meters/", HTTP_AUTHORIZATION=f"Bearer {token.token}").status_code == 200
    application.allowed_scopes = ""
    application.save()
    assert client.get("/api/energy/meters/", HTTP_AUTHORIZATION=f"Bearer {token.token}").status_code == 401


def test_widening_or_renaming_revokes_nothing(org):
    application = api_credential_create(organization=org, name="i", scopes=["energy:read"]).application
    token = issue(application, "energy:read", "keep")
    application.allowed_scopes = "energy:read energy:write"
    application.name = "renamed"
    application.save()
    assert AccessToken.objects.filter(pk=token.pk).exists()
    assert api_credential_tokens_revoke(application=application, scopes={"ml:read"}) == 0


def test_narrowing_in_the_admin_revokes(org, owner, client):
    from joulepoint.integrations.admin import ApiAccessForm

    application = api_credential_create(organization=org, name="i", scopes=["energy:read", "ml:read"]).application
    token = issue(application, "energy:read ml:read", "admin-tok")
    form = ApiAccessForm(
        data={
            "name": application.name,
            "organization": org.pk,
            "scopes": ["energy:read"],
            "client_type": application.client_type,
            "authorization_grant_type": application.authorization_grant_type,
            "redirect_uris": "",
        },
        instance=application,
    )
    assert form.is_valid(), form.errors
    form.save()
    assert not AccessToken.objects.filter(pk=token.pk).exists()

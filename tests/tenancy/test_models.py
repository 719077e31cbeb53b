"""The OAuth2 application model: grants RFC 9700 says must not be used are off unless enabled
(OAUTH2_ALLOW_PASSWORD_GRANT, OAUTH2_ALLOW_IMPLICIT_GRANT; docs/deploy.md, "Hardening")."""

from __future__ import annotations

import base64

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from oauth2_provider.settings import oauth2_settings

from joulepoint.tenancy.models import Application

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _application(org, grant: str, user=None) -> tuple[Application, str]:
    # objects.create skips clean(): a credential saved before the grant was turned off.
    application = Application.objects.create(
        name=f"{grant} app",
        organization=org,
        user=user,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=grant,
        client_secret="s3cret-for-tests",
        redirect_uris="https://app.example.com/callback",
        allowed_scopes="energy:read",
    )
    return application, "s3cret-for-tests"


def _password_token(application: Application, secret: str, username: str):
    basic = base64.b64encode(f"{application.client_id}:{secret}".encode()).decode()
    return Client().post(
        "/o/token/",
        {"grant_type": "password", "username": username, "password": "pw-for-tests"},
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )


@pytest.mark.parametrize("grant", [Application.GRANT_PASSWORD, Application.GRANT_IMPLICIT])
def test_a_credential_of_a_turned_off_grant_cannot_be_saved(org, grant):
    application = Application(
        name="legacy",
        organization=org,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=grant,
        redirect_uris="https://app.example.com/callback",
    )
    with pytest.raises(ValidationError) as refused:
        application.full_clean()
    assert "turned off" in " ".join(refused.value.message_dict["authorization_grant_type"])


@pytest.mark.parametrize("grant", [Application.GRANT_CLIENT_CREDENTIALS, Application.GRANT_AUTHORIZATION_CODE])
def test_the_recommended_grants_stay_available(org, grant):
    application, _secret = _application(org, grant)
    application.full_clean()
    assert application.allows_grant_type(grant)


def test_the_password_grant_gets_no_token(org, owner):
    owner.set_password("pw-for-tests")
    owner.save()
    application, secret = _application(org, Application.GRANT_PASSWORD, user=owner)
    assert not application.allows_grant_type(Application.GRANT_PASSWORD)
    response = _password_token(application, secret, owner.username)
    assert response.status_code in (400, 401), response.content
    assert "access_token" not in response.json()


def test_the_implicit_grant_gets_no_token(org, owner):
    application, _secret = _application(org, Application.GRANT_IMPLICIT, user=owner)
    assert not application.allows_grant_type(Application.GRANT_IMPLICIT)
    client = Client()
    client.force_login(owner)
    response = client.get(
        "/o/authorize/",
        {"response_type": "token", "client_id": application.client_id, "redirect_uri": application.redirect_uris},
    )
    assert "access_token" not in response.get("Location", ""), response.get("Location")
    assert "access_token" not in response.content.decode()


def test_an_operator_can_turn_the_password_grant_back_on(settings, org, owner):
    owner.set_password("pw-for-tests")
    owner.save()
    application, secret = _application(org, Application.GRANT_PASSWORD, user=owner)
    settings.OAUTH2_ALLOW_PASSWORD_GRANT = True
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": False}
    assert oauth2_settings.COMPLIANT_BCP_RFC9700_PASSWORD_GRANT is False  # DOT reloads on setting_changed
    application.full_clean()
    response = _password_token(application, secret, owner.username)
    assert response.status_code == 200, response.content

"""`manage.py create_tenant NAME --json`: the credentials it prints are the ones that work."""

from __future__ import annotations

import base64
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from joulepoint.tenancy.models import Application, Membership, Organization
from joulepoint.tenancy.services import all_scopes

pytestmark = pytest.mark.django_db

CREDENTIAL_KEYS = {"organization_id", "client_id", "client_secret", "admin_username", "admin_password"}


def create_tenant(name: str) -> dict:
    out = StringIO()
    call_command("create_tenant", name, "--json", stdout=out)
    return json.loads(out.getvalue())


def token_request(client_id: str, client_secret: str, scope: str | None = None):
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    data = {"grant_type": "client_credentials"}
    if scope is not None:
        data["scope"] = scope
    return Client().post("/o/token/", data, HTTP_AUTHORIZATION=f"Basic {basic}")


@pytest.fixture
def tenant() -> dict:
    return create_tenant("Northwind Utilities")


def test_json_output_has_exactly_the_documented_keys(tenant):
    assert set(tenant) == CREDENTIAL_KEYS
    organization = Organization.objects.get(pk=tenant["organization_id"])
    assert organization.name == "Northwind Utilities"
    application = Application.objects.get(client_id=tenant["client_id"])
    assert application.organization == organization
    assert set(application.scope_list) == set(all_scopes())
    membership = Membership.objects.get(user__username=tenant["admin_username"])
    assert membership.organization == organization
    assert membership.role == Membership.Role.ADMIN


def test_client_credentials_grant_returns_token_with_requested_scopes(tenant):
    response = token_request(tenant["client_id"], tenant["client_secret"], "energy:read energy:write")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["access_token"]
    assert set(body["scope"].split()) == {"energy:read", "energy:write"}


def test_wrong_client_secret_is_refused(tenant):
    response = token_request(tenant["client_id"], "not-the-secret", "energy:read")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_scope_the_application_does_not_allow_is_refused(tenant):
    application = Application.objects.get(client_id=tenant["client_id"])
    application.allowed_scopes = "energy:read"
    application.save(update_fields=["allowed_scopes"])

    response = token_request(tenant["client_id"], tenant["client_secret"], "energy:read energy:write")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"

    allowed = token_request(tenant["client_id"], tenant["client_secret"], "energy:read")
    assert allowed.status_code == 200
    assert allowed.json()["scope"] == "energy:read"


def test_scope_nobody_defines_is_refused(tenant):
    response = token_request(tenant["client_id"], tenant["client_secret"], "energy:read root")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_token_works_on_the_sites_api(tenant):
    token = token_request(tenant["client_id"], tenant["client_secret"], "energy:read energy:write").json()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token['access_token']}"}
    client = Client()

    created = client.post("/api/energy/sites/", {"name": "Depot", "timezone": "UTC"}, "application/json", **auth)
    assert created.status_code == 201, created.content

    listed = client.get("/api/energy/sites/", **auth)
    assert listed.status_code == 200
    assert [site["name"] for site in listed.json()["results"]] == ["Depot"]

    anonymous = client.get("/api/energy/sites/")
    assert anonymous.status_code == 401


def test_read_only_token_cannot_write_sites(tenant):
    token = token_request(tenant["client_id"], tenant["client_secret"], "energy:read").json()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token['access_token']}"}
    response = Client().post("/api/energy/sites/", {"name": "Depot"}, "application/json", **auth)
    assert response.status_code == 403


def test_admin_credentials_log_into_the_admin(tenant):
    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": tenant["admin_username"], "password": tenant["admin_password"], "next": "/admin/"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    index = client.get("/admin/")
    assert index.status_code == 200
    assert index.context["user"].username == tenant["admin_username"]


def test_wrong_admin_password_does_not_log_in(tenant):
    client = Client()
    response = client.post("/admin/login/", {"username": tenant["admin_username"], "password": "wrong"})
    assert response.status_code == 200  # the login form again, with an error
    assert client.get("/admin/").status_code == 302


def test_text_output_without_json_lists_every_credential():
    out = StringIO()
    call_command("create_tenant", "Plain Output Co", stdout=out)
    lines = dict(line.split(": ", 1) for line in out.getvalue().splitlines())
    assert set(lines) == CREDENTIAL_KEYS


def test_duplicate_name_is_a_command_error(tenant):
    with pytest.raises(CommandError):
        create_tenant("Northwind Utilities")
    assert Organization.objects.filter(name="Northwind Utilities").count() == 1


def test_the_readmes_token_without_scope_carries_every_scope_of_the_credential(tenant):
    """README, "Integrators: OAuth2": no `scope` → the credential's scopes, so the newcomer's
    token reads energy and automations alike (issue 16 item 6: asking for energy only got 403s)."""
    response = token_request(tenant["client_id"], tenant["client_secret"])
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body["scope"].split()) == set(all_scopes())
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {body['access_token']}"}
    for path in ("/api/energy/meters/", "/api/automations/rules/", "/api/automations/alerts/"):
        assert Client().get(path, **bearer).status_code == 200, path


def test_a_token_narrowed_to_energy_is_refused_automations(tenant):
    token = token_request(tenant["client_id"], tenant["client_secret"], "energy:read").json()["access_token"]
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert Client().get("/api/energy/meters/", **bearer).status_code == 200
    assert Client().get("/api/automations/rules/", **bearer).status_code == 403

"""The seed's curl example and the OAuth2 flow, against the platform served by uvicorn."""

from __future__ import annotations

import hashlib
import hmac
import json
import shlex
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode

import pytest

from energy.models import Reading
from joulepoint.tenancy.services import tenant_create
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Copied verbatim from the seed (seed/000_ca0de46ff1490c61.txt, "Device auth"); only the host
# and the two placeholders are replaced before it runs.
SEED_CURL = (
    "curl -sS -X POST https://api.joulepoint.com/api/energy/energy-data/"
    "   -H 'X-Device-Key: <api-key>'"
    "   -H 'X-Signature: <hmac sha256 of raw body>'"
    "   -H 'Content-Type: application/json'"
    """   -d '{"total_power":3600.0,"total_energy":1500.0,"voltage_a":230.1,"timestamp":"2025-10-16T10:00:00Z"}'"""
)
SEED_BODY = b'{"total_power":3600.0,"total_energy":1500.0,"voltage_a":230.1,"timestamp":"2025-10-16T10:00:00Z"}'


def run_seed_curl(base_url: str, device_key: str, signature: str) -> tuple[int, dict]:
    command = (
        SEED_CURL.replace("https://api.joulepoint.com", base_url)
        .replace("<api-key>", device_key)
        .replace("<hmac sha256 of raw body>", signature)
    )
    # The status code is printed on its own last line; the seed's command is otherwise unchanged.
    command += " -w '\\n%{http_code}'"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30, check=True)
    body, _, code = result.stdout.rpartition("\n")
    return int(code), json.loads(body)


def http(method: str, url: str, *, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.fixture
def tenant():
    return tenant_create(name="Live Test Energy")


@pytest.fixture
def live_meter(tenant):
    site = factories.SiteFactory(organization=tenant.organization, name="Live Depot")
    return factories.MeterFactory(site=site, name="Live Grid", serial="LIVE-1", require_signature=True)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")
def test_seed_curl_example_stores_once_then_reports_duplicate(live_url, live_meter):
    assert SEED_CURL.split("-d ")[1] == shlex.quote(SEED_BODY.decode())  # the body signed is the body sent
    signature = hmac.new(live_meter.device_secret.encode(), SEED_BODY, hashlib.sha256).hexdigest()

    code, body = run_seed_curl(live_url, str(live_meter.device_key), signature)
    assert code == 201, body
    assert body["duplicate"] is False
    assert body["meter"] == live_meter.pk
    assert body["total_power"] == 3600.0
    assert body["total_energy"] == 1500.0
    assert body["voltage_a"] == 230.1

    code, body = run_seed_curl(live_url, str(live_meter.device_key), signature)
    assert code == 200, body
    assert body["duplicate"] is True

    assert Reading.objects.filter(meter=live_meter).count() == 1
    stored = Reading.objects.get(meter=live_meter)
    assert stored.ts.isoformat() == "2025-10-16T10:00:00+00:00"
    assert stored.total_power == 3600.0


def test_seed_curl_with_a_wrong_signature_is_refused_and_stores_nothing(live_url, live_meter):
    wrong = hmac.new(b"not-the-secret", SEED_BODY, hashlib.sha256).hexdigest()
    code, body = run_seed_curl(live_url, str(live_meter.device_key), wrong)
    assert code == 403, body
    assert "detail" in body
    assert not Reading.objects.filter(meter=live_meter).exists()


def test_oauth2_client_credentials_flow_against_the_live_server(live_url, tenant, live_meter):
    credentials = tenant.as_dict()
    basic = b64encode(f"{credentials['client_id']}:{credentials['client_secret']}".encode()).decode()
    code, token = http(
        "POST",
        f"{live_url}/o/token/",
        data=urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "energy:read"}).encode(),
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert code == 200, token
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "energy:read"
    bearer = {"Authorization": f"Bearer {token['access_token']}"}

    code, sites = http("GET", f"{live_url}/api/energy/sites/", headers=bearer)
    assert code == 200, sites
    assert [site["name"] for site in sites["results"]] == ["Live Depot"]

    code, meters = http("GET", f"{live_url}/api/energy/meters", headers=bearer)  # no trailing slash, no redirect
    assert code == 200, meters
    assert [meter["serial"] for meter in meters["results"]] == ["LIVE-1"]

    # A read-only token may not write.
    code, body = http(
        "POST",
        f"{live_url}/api/energy/sites/",
        data=json.dumps({"name": "Nope"}).encode(),
        headers={**bearer, "Content-Type": "application/json"},
    )
    assert code == 403, body

    code, body = http("GET", f"{live_url}/api/energy/sites/", headers={"Authorization": "Bearer not-a-token"})
    assert code == 401, body


def test_oauth2_scope_outside_the_application_is_refused_live(live_url, tenant):
    application = tenant.credential.application
    application.allowed_scopes = "energy:read"
    application.save(update_fields=["allowed_scopes"])
    basic = b64encode(f"{application.client_id}:{tenant.credential.client_secret}".encode()).decode()
    code, body = http(
        "POST",
        f"{live_url}/o/token/",
        data=urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "energy:write"}).encode(),
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert code == 400
    assert body["error"] == "invalid_scope"

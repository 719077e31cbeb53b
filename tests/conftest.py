"""Fixtures shared by every test: tenants, their credentials and API clients per scope.

The three-party setup: `org` (the tenant under test, with an admin `owner` and a `member`)
and `other_org` (an outsider), so any API test can assert the outsider's 404 in one line.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import connections
from django.utils import timezone
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient

from joulepoint.events.listeners import listeners_changed
from joulepoint.platform import degraded
from joulepoint.tenancy.services import all_scopes, api_credential_create
from tests import factories
from tests.net import free_port


def pytest_sessionfinish(session, exitstatus):
    """Leave no `var/test.sqlite3-wal`/`-shm` behind. pytest-django has removed the test database
    by now, but Django's SQLite teardown deletes the main file only, and the WAL sidecars stay
    while any connection is open: ones that threads (asgiref's executor, group commit) opened and
    that only the interpreter's exit drops. With the main file gone they are orphans; a kept
    database (--reuse-db) keeps them."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        return
    name = str((database.get("TEST") or {}).get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:") or Path(name).exists():
        return
    for suffix in ("-wal", "-shm", "-journal"):
        Path(name + suffix).unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def listeners_epoch_moved():
    """Each test starts with no kept "does anyone listen" answer (joulepoint.events.listeners):
    tests create rules and group members directly, without telling, and ids are reused."""
    listeners_changed()


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Files written through Django's storage (MLOps datasets and models) go to the test's
    temporary directory, never to var/."""
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(autouse=True)
def orm_thread_closed():
    """Async tests call the ORM through sync_to_async (channels' database_sync_to_async too):
    outside an async_to_sync it runs in asgiref's one shared executor thread, whose connection
    Django keeps open, and PostgreSQL then refuses to drop the test database at the end of the
    run ("being accessed by other users"). Closed after each test."""
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture
def org():
    return factories.OrganizationFactory(name="Acme Energy", slug="acme")


@pytest.fixture
def other_org():
    return factories.OrganizationFactory(name="Outsider Power", slug="outsider")


@pytest.fixture
def owner(org):
    return factories.MembershipFactory(organization=org, role="admin").user


@pytest.fixture
def member(org):
    return factories.MembershipFactory(organization=org, role="viewer").user


def _token(organization, scopes: list[str]) -> str:
    credential = api_credential_create(organization=organization, name=f"test {' '.join(scopes)}", scopes=scopes)
    token = AccessToken.objects.create(
        application=credential.application,
        token=f"tok-{organization.pk}-{credential.application.pk}",
        scope=" ".join(scopes),
        expires=timezone.now() + timedelta(hours=1),
    )
    return token.token


@pytest.fixture
def api_client_factory(db):
    """`make(org, scopes)` → an APIClient with a bearer token of that organization and scopes."""

    def make(organization, scopes: list[str] | None = None) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {_token(organization, scopes or all_scopes())}")
        return client

    return make


@pytest.fixture
def api(api_client_factory, org):
    """Every scope, as the tenant under test."""
    return api_client_factory(org)


@pytest.fixture
def energy_reader(api_client_factory, org):
    return api_client_factory(org, ["energy:read"])


@pytest.fixture
def outsider_api(api_client_factory, other_org):
    """Every scope, as another organization."""
    return api_client_factory(other_org)


@pytest.fixture
def anonymous_api():
    return APIClient()


@pytest.fixture
def site(org):
    return factories.SiteFactory(organization=org)


@pytest.fixture
def meter(site):
    return factories.MeterFactory(site=site)


@pytest.fixture
def gateway(site):
    return factories.GatewayFactory(site=site)


class DeviceClient:
    """Posts raw bodies the way a device does: key header, optional HMAC signature."""

    def __init__(self, device, client: APIClient | None = None):
        self.device = device
        self.client = client or APIClient()

    def post(self, path: str, payload=None, *, raw: bytes | None = None, sign: bool = False, headers=None, **kwargs):
        body = raw if raw is not None else orjson.dumps(payload)
        extra = {"HTTP_X_DEVICE_KEY": str(self.device.device_key)}
        if sign:
            extra["HTTP_X_SIGNATURE"] = hmac.new(self.device.device_secret.encode(), body, hashlib.sha256).hexdigest()
        extra.update(headers or {})
        kwargs.setdefault("content_type", "application/json")
        return self.client.post(path, data=body, **kwargs, **extra)


@pytest.fixture
def device_client():
    """`device_client(meter_or_gateway)` → a DeviceClient for it."""
    return DeviceClient


@pytest.fixture
def dead_redis(settings):
    """Settings pointing the cache at a port where no Redis listens (a Redis that is down)."""
    degraded._last_logged.clear()  # each test sees its own first warning
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.CACHES = {
        "default": {
            "BACKEND": "joulepoint.platform.cache.PooledClientRedisCache",
            "LOCATION": settings.REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    return settings.REDIS_URL

"""Every API route and every method it answers: 401 without credentials, 403 with a token of the
same organization that lacks the route's scope.

The routes come from the URL resolver (tests/routes.py), as for the tenant walk, so a route added
later is walked too. Each (route, method) is classified from its view:

- **token**: OAuth2 bearer tokens with `OrganizationTokenHasScope`. Reads need `<scope_domain>:read`,
  writes `<scope_domain>:write`, unless the view names other scopes for the action in
  `action_scopes` (joulepoint/tenancy/permissions.py). Walked with a token holding every scope
  but those: it must get 403 naming them.
- **device**: `X-Device-Key` (energy.api.authentication). 401 without a key, and a bearer token
  is no key. They have no scopes: each is named in DEVICE_METHODS with the reason.
- public by design (schema, docs): left out by name (tests/routes.py's SKIPPED_ROUTE_NAMES).

Anything else fails and asks to be taught here.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.urls import URLPattern, reverse
from django.utils import timezone
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from oauth2_provider.models import AccessToken
from rest_framework.permissions import SAFE_METHODS
from rest_framework.test import APIClient

from energy.api.authentication import DeviceKeyAuthentication, DeviceWritesMixin, IsDevice
from joulepoint.tenancy.permissions import OrganizationTokenHasScope
from joulepoint.tenancy.services import all_scopes, api_credential_create
from mlops.api.trainer import TrainerTokenAuthentication
from tests import factories
from tests.routes import api_routes, route_methods

pytestmark = pytest.mark.django_db

# Device methods: authenticated by X-Device-Key (and X-Signature), which names one meter or gateway
# and carries no scope; the key and signature rules (401 unknown key, 403 bad signature) are
# tested in tests/energy/ingest/test_ingest_api.py, tests/energy/power_quality/test_protection.py
# and tests/energy/downlink/test_services.py.
DEVICE_METHODS = {
    ("reading-list", "post"): "a device ingests one reading",
    ("reading-bulk", "post"): "a device or gateway ingests a batch",
    ("protection-event-list", "post"): "a device posts a protection event",
    ("device-commands", "get"): "a device polls its downlink commands",
    ("device-command-ack", "post"): "a device acknowledges a command",
}

# Trainer methods: authenticated by a training job's single-purpose token from its signed job spec
# (mlops.api.trainer), never by OAuth2: an external trainer holds no credential of the
# organization. Token rules (401 wrong, 403 expired or used, 413 too large) are tested in
# tests/mlops/test_external.py.
TRAINER_METHODS = {
    ("ml-training-job-trainer-dataset", "get"): "an external trainer downloads its job's dataset",
    ("ml-training-job-trainer-complete", "post"): "an external trainer completes its job, once",
    ("ml-training-job-trainer-progress", "post"): "an external trainer reports progress (token not spent)",
}

ROUTES = api_routes()
WALK = [(route, pattern, method) for route, pattern in ROUTES for method in route_methods(pattern)]
WALK_IDS = [f"{method.upper()} {route}" for route, _pattern, method in WALK]


def _view_class(pattern: URLPattern):
    callback = pattern.callback
    return getattr(callback, "cls", None) or getattr(callback, "view_class", None)


def _action(pattern: URLPattern, method: str) -> str | None:
    actions = getattr(pattern.callback, "actions", None)
    return actions.get(method) if actions else None


def classify(pattern: URLPattern, method: str) -> tuple[str, list[str]]:
    """("device", []) or ("token", the scopes the route requires); fails for anything else."""
    view_class = _view_class(pattern)
    action = _action(pattern, method)
    authentication = list(getattr(view_class, "authentication_classes", ()))
    permission = list(getattr(view_class, "permission_classes", ()))
    if issubclass(view_class, DeviceWritesMixin):  # chooses per action (see its get_authenticators)
        device = action in view_class.device_actions
        authentication = [DeviceKeyAuthentication] if device else [OAuth2Authentication]
        permission = [IsDevice] if device else [OrganizationTokenHasScope]

    if authentication == [TrainerTokenAuthentication]:
        assert (pattern.name, method) in TRAINER_METHODS, (
            f"{method.upper()} {pattern.name} is a trainer-token route: name it in TRAINER_METHODS with the reason"
        )
        return "trainer", []
    if authentication == [DeviceKeyAuthentication] and permission == [IsDevice]:
        assert (pattern.name, method) in DEVICE_METHODS, (
            f"{method.upper()} {pattern.name} is a device route: name it in DEVICE_METHODS with the reason"
        )
        return "device", []
    assert (pattern.name, method) not in DEVICE_METHODS, f"{pattern.name} {method} is no device route any more"

    taught = f"teach tests/test_scope_walk.py how {method.upper()} {pattern.name} ({view_class.__name__}) is authorized"
    assert OAuth2Authentication in authentication and permission == [OrganizationTokenHasScope], (
        f"{taught}: authentication {authentication}, permissions {permission}"
    )
    action_scopes = getattr(view_class, "action_scopes", None) or {}
    if action in action_scopes:
        return "token", list(action_scopes[action])
    domain = getattr(view_class, "scope_domain", "")
    assert domain, f"{taught}: it names no scope_domain"
    return "token", [f"{domain}:read" if method.upper() in SAFE_METHODS else f"{domain}:write"]


def _url(pattern: URLPattern) -> str:
    # Permissions are checked before any object is looked up, so any id does.
    names = list(pattern.pattern.regex.groupindex)
    # `number`: a dataset's version number (/api/ml/datasets/{pk}/versions/{number}/download).
    assert set(names) <= {"pk", "number"}, f"{pattern.name}: teach the scope walk a value for {names}"
    return reverse(pattern.name, kwargs={name: 1 for name in names})


@pytest.fixture(scope="module")
def tokens_without(django_db_setup, django_db_blocker):
    """`tokens_without(scopes)` → a bearer token of one organization holding every scope but
    `scopes`. One organization and one credential per scope set, for the whole module."""
    made: dict[tuple[str, ...], str] = {}
    with (
        django_db_blocker.unblock(),
        override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]),
    ):
        organization = factories.OrganizationFactory(name="Scope Walk", slug="scope-walk")

        def tokens(scopes: list[str]) -> str:
            key = tuple(sorted(scopes))
            if key not in made:
                held = [scope for scope in all_scopes() if scope not in scopes]
                credential = api_credential_create(
                    organization=organization, name=f"without {' '.join(key)}", scopes=held
                )
                made[key] = AccessToken.objects.create(
                    application=credential.application,
                    token=f"scope-walk-{len(made)}",
                    scope=" ".join(held),
                    expires=timezone.now() + timedelta(hours=1),
                ).token
            return made[key]

        def made_already(scopes: list[str]) -> str:
            return made[tuple(sorted(scopes))]  # one made inside a test would be rolled back with it

        # Made here, outside the tests' rolled-back transactions, so every test can use them.
        tokens([])
        for _route, pattern, method in WALK:
            kind, required = classify(pattern, method)
            if kind == "token":
                tokens(required)
    yield made_already
    with django_db_blocker.unblock():
        AccessToken.objects.filter(application__organization=organization).delete()
        organization.delete()


def test_the_walk_sees_every_kind_of_route():
    kinds = {}
    for _route, pattern, method in WALK:
        kinds.setdefault(classify(pattern, method)[0], set()).add((pattern.name, method))
    assert set(DEVICE_METHODS) == kinds["device"], "DEVICE_METHODS names a method the API no longer has"
    assert set(TRAINER_METHODS) == kinds["trainer"], "TRAINER_METHODS names a method the API no longer has"
    assert {("site-list", "get"), ("automation-relay-command-approve", "post")} <= kinds["token"]
    assert len(WALK) == len(set(WALK_IDS))


@pytest.mark.parametrize("route,pattern,method", WALK, ids=WALK_IDS)
def test_no_credentials_is_401(route, pattern, method):
    response = getattr(APIClient(), method)(_url(pattern), {}, format="json")
    assert response.status_code == 401, (method, route, response.status_code, response.content[:300])
    assert response.has_header("WWW-Authenticate")


@pytest.mark.parametrize("route,pattern,method", WALK, ids=WALK_IDS)
def test_token_without_the_scope_is_403(tokens_without, route, pattern, method):
    kind, required = classify(pattern, method)
    client = APIClient()
    if kind == "trainer":
        # Scopes do not apply; an OAuth2 token with every scope is no job token.
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_without([])}")
        response = getattr(client, method)(_url(pattern), {}, format="multipart" if method == "post" else None)
        assert response.status_code == 401, (method, route, response.status_code, response.content[:300])
        pytest.skip(
            f"{method.upper()} {pattern.name}: job token, no scopes ({TRAINER_METHODS[(pattern.name, method)]})"
        )
    if kind == "device":
        # Scopes do not apply; but a bearer token with every scope must not pass for a device key.
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_without([])}")
        response = getattr(client, method)(_url(pattern), {}, format="json")
        assert response.status_code == 401, (method, route, response.status_code, response.content[:300])
        pytest.skip(
            f"{method.upper()} {pattern.name}: device key, no scopes ({DEVICE_METHODS[(pattern.name, method)]})"
        )

    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_without(required)}")
    response = getattr(client, method)(_url(pattern), {}, format="json")
    assert response.status_code == 403, (method, route, required, response.status_code, response.content[:300])
    assert " ".join(required) in response.json()["detail"]

    # The other side: with those scopes the same request gets past authorization (a 400 for the
    # empty body, a 404 for id 1, a 200 for a list), so the 403 above is the scope's doing.
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_without([])}")
    allowed = getattr(client, method)(_url(pattern), {}, format="json")
    assert allowed.status_code not in (401, 403), (method, route, allowed.status_code, allowed.content[:300])

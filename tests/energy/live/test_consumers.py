"""Revocation reaches open dashboard sockets (/ws/live/, energy.live.consumers): a token revoked
at /o/revoke_token/, taken by narrowing its credential's scopes, or expired while the socket is
open closes it with 4401, through the real ASGI app and django-oauth-toolkit's views."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken

from joulepoint.asgi import application
from joulepoint.tenancy.services import api_credential_create
from tests import factories

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def credential_with_token(scopes: list[str]):
    org = factories.OrganizationFactory()
    credential = api_credential_create(organization=org, name="dashboard", scopes=scopes)
    # A real token from the token endpoint, as an integrator gets one.
    basic = base64.b64encode(f"{credential.application.client_id}:{credential.client_secret}".encode()).decode()
    response = Client().post("/o/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=f"Basic {basic}")
    assert response.status_code == 200, response.content
    return credential, basic, response.json()["access_token"]


async def open_live(token: str) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, f"/ws/live/?token={token}")
    connected, _ = await ws.connect(timeout=10)
    assert connected
    assert orjson.loads(await ws.receive_from(timeout=5))["type"] == "ready"
    return ws


async def closed_with(ws: WebsocketCommunicator, timeout: float = 5) -> tuple[int, dict | None]:
    """The close code, and the error frame sent just before it; then the client side goes too
    (the consumer leaves its groups, as after a browser's close, before this test's loop ends)."""
    frame = None
    while True:
        output = await ws.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            await ws.disconnect()
            return output["code"], frame
        frame = orjson.loads(output["text"])


async def test_revoke_token_closes_the_socket_at_once(settings):
    settings.WS_LIVE_TOKEN_RECHECK_SECONDS = 3600  # the periodic check cannot be what closes it
    _credential, basic, token = await credential_with_token(["energy:read"])
    ws = await open_live(token)
    response = await database_sync_to_async(Client().post)(
        "/o/revoke_token/", {"token": token}, HTTP_AUTHORIZATION=f"Basic {basic}"
    )
    assert response.status_code == 200, response.content
    code, frame = await closed_with(ws)
    assert code == 4401 and frame["code"] == "token_revoked"


async def test_another_tokens_revocation_leaves_the_socket_open(settings):
    settings.WS_LIVE_TOKEN_RECHECK_SECONDS = 3600
    _credential, _basic, token = await credential_with_token(["energy:read"])
    _other, other_basic, other_token = await credential_with_token(["energy:read"])
    ws = await open_live(token)
    await database_sync_to_async(Client().post)(
        "/o/revoke_token/", {"token": other_token}, HTTP_AUTHORIZATION=f"Basic {other_basic}"
    )
    await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()


async def test_narrowing_the_credential_revokes_the_token_and_closes_the_socket(settings):
    settings.WS_LIVE_TOKEN_RECHECK_SECONDS = 3600
    credential, _basic, token = await credential_with_token(["energy:read", "billing:read"])
    ws = await open_live(token)

    @database_sync_to_async
    def narrow():
        app = credential.application
        app.allowed_scopes = "billing:read"
        app.save()

    await narrow()
    code, _frame = await closed_with(ws)
    assert code == 4401
    response = await database_sync_to_async(Client().get)("/api/energy/meters/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401


async def test_an_expired_token_is_caught_by_the_periodic_check(settings):
    settings.WS_LIVE_TOKEN_RECHECK_SECONDS = 0.2
    _credential, _basic, token = await credential_with_token(["energy:read"])
    ws = await open_live(token)
    await ws.receive_nothing(timeout=0.5)  # still valid: the checks let it be
    # A queryset update sends no signal: only the periodic check can notice.
    # Tokens are stored as their SHA-256 checksum (settings: DOT's hashed tokens).
    checksum = hashlib.sha256(token.encode()).hexdigest()
    await database_sync_to_async(AccessToken.objects.filter(token_checksum=checksum).update)(
        expires=timezone.now() - timedelta(seconds=1)
    )
    code, frame = await closed_with(ws)
    assert code == 4401 and frame["code"] == "token_revoked"

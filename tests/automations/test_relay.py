"""Relay commands (automations.relay and the relay_command action): approval by scope, by role
and in the admin, expiry, and dispatch to the device downlink."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient

from automations import relay
from automations.models import RelayCommand
from energy.models import DeviceCommand
from joulepoint.tenancy.services import api_credential_create
from tests import factories
from tests.automations.test_actions import fire

pytestmark = pytest.mark.django_db


@pytest.fixture
def relay_action(org, meter):
    return factories.ActionFactory(
        organization=org,
        type="relay_command",
        config={"meter_id": None, "command": "open", "approver_role": "approver", "expires_in_seconds": 900},
    )


def user_client(org, user, scopes):
    """A token issued to a user (authorization-code style) of an application of `org`."""
    credential = api_credential_create(organization=org, name=f"user app {user.pk}", scopes=scopes)
    token = AccessToken.objects.create(
        application=credential.application,
        user=user,
        token=f"user-{user.pk}-{uuid.uuid4().hex}",
        scope=" ".join(scopes),
        expires=timezone.now() + timedelta(hours=1),
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
    return client


def test_relay_command_waits_for_approval_then_approved_by_scope(api_client_factory, org, meter, relay_action):
    delivery = fire(org, meter, relay_action)
    assert delivery.status == "succeeded"
    command = RelayCommand.objects.get()
    assert command.status == "awaiting_approval" and command.meter_id == meter.pk and command.command == "open"
    assert delivery.result["relay_command_id"] == command.pk
    writer = api_client_factory(org, ["automations:read", "automations:write"])
    assert writer.post(f"/api/automations/relay-commands/{command.pk}/approve/").status_code == 403
    approver = api_client_factory(org, ["automations:read", "relay:approve"])
    response = approver.post(f"/api/automations/relay-commands/{command.pk}/approve/", {"note": "ok"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    # approved commands go straight to the device downlink, which tracks their delivery
    assert body["status"] == "sent" and body["downlink_status"] == "pending"
    downlink = DeviceCommand.objects.get(pk=int(body["downlink_id"]))
    assert downlink.meter_id == meter.pk and downlink.name == "relay.open"
    assert downlink.payload == {"action": "open", "relay_command_id": command.pk}
    assert body["decided_at"] and body["decided_by_application"] and body["decision_note"] == "ok"
    again = approver.post(f"/api/automations/relay-commands/{command.pk}/reject/")
    assert again.status_code == 409


def test_relay_command_approval_by_role(org, meter, relay_action):
    fire(org, meter, relay_action)
    command = RelayCommand.objects.get()
    viewer = factories.MembershipFactory(organization=org, role="viewer").user
    approver = factories.MembershipFactory(organization=org, role="approver").user
    scopes = ["automations:read", "automations:write"]
    refused = user_client(org, viewer, scopes).post(f"/api/automations/relay-commands/{command.pk}/approve/")
    assert refused.status_code == 403 and "approver" in refused.json()["detail"]
    response = user_client(org, approver, scopes).post(f"/api/automations/relay-commands/{command.pk}/reject/")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "rejected" and response.json()["decided_by"] == approver.username


def test_an_approver_of_another_organization_cannot_decide(org, other_org, meter, relay_action):
    fire(org, meter, relay_action)
    command = RelayCommand.objects.get()
    stranger = factories.MembershipFactory(organization=other_org, role="approver").user
    response = user_client(other_org, stranger, ["automations:write", "relay:approve"]).post(
        f"/api/automations/relay-commands/{command.pk}/approve/"
    )
    assert response.status_code == 404
    assert RelayCommand.objects.get().status == "awaiting_approval"


def test_unapproved_relay_commands_expire(api, org, meter, relay_action):
    fire(org, meter, relay_action)
    command = RelayCommand.objects.get()
    assert relay.relay_commands_expire(now=command.expires_at - timedelta(seconds=1)) == 0
    assert relay.relay_commands_expire(now=command.expires_at + timedelta(seconds=1)) == 1
    command.refresh_from_db()
    assert command.status == "expired"
    assert api.post(f"/api/automations/relay-commands/{command.pk}/approve/").status_code == 409


def test_relay_approval_in_the_admin(client, org, meter, relay_action):
    fire(org, meter, relay_action)
    command = RelayCommand.objects.get()
    approver = factories.MembershipFactory(organization=org, role="approver").user
    client.force_login(approver)
    response = client.post(
        "/admin/automations/relaycommand/", {"action": "approve", "_selected_action": [command.pk]}, follow=True
    )
    assert response.status_code == 200
    command.refresh_from_db()
    assert command.status == "sent" and command.decided_by == approver


def test_approved_command_reaches_the_device_by_http_polling(org, meter, relay_action):
    fire(org, meter, relay_action)
    command = relay.relay_command_decide(command=RelayCommand.objects.get(), approve=True, note="t")
    assert command.status == "sent"
    polled = APIClient().get("/api/energy/devices/commands/", HTTP_X_DEVICE_KEY=str(meter.device_key))
    assert polled.status_code == 200
    assert [(c["id"], c["name"]) for c in polled.json()] == [(int(command.downlink_id), "relay.open")]

"""What the audit trail always records (docs/audit.md): key rotations, credential creation (API
helper, admin, management command), relay approvals, ML promotions, wallet adjustments; devices
as actors; and what it never records: secrets' values, and readings."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.utils import timezone

from automations.models import RelayCommand
from billing.models import WalletTransaction
from energy.downlink import services as downlink
from energy.models import Meter, Reading
from joulepoint.audit.models import AuditEntry
from joulepoint.tenancy.models import Application
from mlops.models import Promotion
from tests import factories
from tests.automations.test_relay import user_client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def entries_for(row, **filters) -> list[AuditEntry]:
    content_type = ContentType.objects.get_for_model(type(row))
    return list(AuditEntry.objects.filter(content_type=content_type, object_pk=str(row.pk), **filters))


def text_of(entry: AuditEntry) -> str:
    return json.dumps([entry.changes, entry.object_repr, entry.serialized_data, entry.additional_data])


def test_a_key_rotation_is_recorded_without_the_keys(api, meter):
    old_key, old_secret = str(meter.device_key), meter.device_secret
    response = api.post(f"/api/energy/meters/{meter.pk}/rotate_key/")
    assert response.status_code == 200, response.content
    new_key, new_secret = response.json()["device_key"], response.json()["device_secret"]

    [rotation] = entries_for(meter, action=AuditEntry.Action.UPDATE)
    assert {"device_key", "device_secret", "key_rotated_at"} <= set(rotation.changes)
    assert rotation.application is not None and rotation.source == "api"
    assert rotation.organization_id == meter.organization_id
    for secret in (old_key, old_secret, new_key, new_secret, old_secret[32:], new_secret[32:]):
        assert secret not in text_of(rotation)


def test_credential_creation_in_the_admin_is_recorded_with_the_user_and_no_secret(owner, org, monkeypatch):
    secret = "shown-once-" + "x" * 40
    monkeypatch.setattr("joulepoint.integrations.admin.generate_client_secret", lambda: secret)
    client = Client()
    client.force_login(owner)
    response = client.post(
        "/admin/integrations/apiaccess/add/",
        {
            "name": "Billing export",
            "organization": org.pk,
            "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_CLIENT_CREDENTIALS,
            "scopes": ["billing:read"],
        },
        REMOTE_ADDR="192.0.2.44",
    )
    assert response.status_code == 302, response.content[:2000]
    application = Application.objects.get(name="Billing export")
    [created] = entries_for(application, action=AuditEntry.Action.CREATE)
    assert (created.actor, created.source, created.remote_addr) == (owner, "admin", "192.0.2.44")
    assert created.organization_id == org.pk
    assert created.changes["client_secret"][1] == "********"
    assert secret not in text_of(created) and secret[20:] not in text_of(created)


@pytest.mark.django_db(transaction=True)
def test_a_management_command_names_itself(tmp_path):
    from tests.e2e.conftest import subprocess_env

    result = subprocess.run(
        [sys.executable, "manage.py", "create_tenant", "Audited Co", "--json"],
        cwd=settings.BASE_DIR,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    application = Application.objects.get(client_id=made["client_id"])
    [created] = entries_for(application, action=AuditEntry.Action.CREATE)
    assert created.source == "command:create_tenant"
    assert created.organization_id == made["organization_id"]
    assert made["client_secret"] not in text_of(created)
    assert made["admin_password"] not in json.dumps(
        [e.changes for e in AuditEntry.objects.filter(content_type__model="user")]
    )


def test_a_relay_approval_is_recorded_with_the_approver(org, meter):
    approver = factories.MembershipFactory(organization=org, role="approver").user
    command = RelayCommand.objects.create(
        organization=org, meter=meter, command="open", expires_at=timezone.now() + timedelta(minutes=10)
    )
    client = user_client(org, approver, ["automations:read", "relay:approve"])
    response = client.post(f"/api/automations/relay-commands/{command.pk}/approve/", {"note": "ok"}, format="json")
    assert response.status_code == 200, response.content
    updates = entries_for(command, action=AuditEntry.Action.UPDATE)
    [decision] = [e for e in updates if e.changes.get("status") == ["awaiting_approval", "approved"]]
    assert decision.actor == approver and decision.application is not None and decision.source == "api"


def test_a_promotion_is_recorded(api, org, meter):
    model = factories.RegisteredModelFactory(organization=org)
    assignment = factories.AssignmentFactory(model=model, meter=meter)
    version = factories.ModelVersionFactory(model=model)
    body = {"assignment": assignment.pk, "alias": "production", "version": version.pk, "reason": "better recall"}
    response = api.post("/api/ml/promotions", body, format="json")
    assert response.status_code == 201, response.content
    promotion = Promotion.objects.get(pk=response.json()["id"])
    [created] = entries_for(promotion, action=AuditEntry.Action.CREATE)
    assert created.application is not None and created.organization_id == org.pk
    assert created.changes["version"][1] == version.pk


def test_a_wallet_adjustment_is_recorded(api, org):
    wallet = factories.WalletFactory(organization=org, currency="EUR")
    body = {
        "wallet": wallet.pk, "kind": "adjustment", "amount": "-2.50", "currency": "EUR",
        "idempotency_key": "fix-1", "reason": "meter swap",
    }  # fmt: skip
    response = api.post("/api/energy/wallet-transactions", body, format="json")
    assert response.status_code == 201, response.content
    movement = WalletTransaction.objects.get(pk=response.json()["id"])
    [created] = entries_for(movement, action=AuditEntry.Action.CREATE)
    assert created.changes["kind"][1] == "adjustment" and created.application is not None


def test_a_device_is_the_actor_of_its_own_writes(meter, device_client, monkeypatch):
    from energy.downlink import tasks

    monkeypatch.setattr(tasks.device_command_deliver, "delay", lambda command_id: None)
    command = downlink.device_command_send(device=meter, name="relay.open", payload={"relay": 2})
    ack = device_client(meter).post(f"/api/energy/devices/commands/{command.pk}/ack/", {"status": "acked"})
    assert ack.status_code == 200, ack.content
    acked = [
        e for e in entries_for(command, action=AuditEntry.Action.UPDATE) if e.changes.get("status", [""])[1] == "acked"
    ]
    assert [(e.device, e.actor, e.application) for e in acked] == [(f"meter:{meter.pk}", None, None)]


def test_readings_are_not_audited(meter, device_client):
    before = AuditEntry.objects.count()
    start = datetime(2025, 10, 16, 10, tzinfo=UTC)
    batch = [{"timestamp": (start + timedelta(minutes=i)).isoformat(), "total_power": 100.0 + i} for i in range(50)]
    response = device_client(meter).post("/api/energy/energy-data/bulk", batch)
    assert response.status_code == 201, response.content
    assert Reading.objects.filter(meter=meter).count() == 50
    assert AuditEntry.objects.count() == before
    assert not AuditEntry.objects.filter(content_type=ContentType.objects.get_for_model(Reading)).exists()
    Meter.objects.get(pk=meter.pk)  # the meter row itself was not saved by ingest either

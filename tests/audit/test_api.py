"""GET /api/audit/: API writes are recorded with their credential, address and door; the list is
the organization's own and filterable. (Tenant and scope walks: tests/test_tenant_isolation.py,
tests/test_scope_walk.py.)"""

from __future__ import annotations

import hashlib

import pytest

from joulepoint.audit.models import AuditEntry
from joulepoint.tenancy.models import Application
from tests import factories

pytestmark = pytest.mark.django_db

AUDIT = "/api/audit/"


def client_id_of(api) -> str:
    token = api._credentials["HTTP_AUTHORIZATION"].split()[1]
    return Application.objects.get(accesstoken__token_checksum=_checksum(token)).client_id


def _checksum(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_an_api_write_is_recorded_with_its_credential_address_and_changes(api, org):
    created = api.post("/api/energy/sites/", {"name": "Depot", "timezone": "Europe/Berlin"}, format="json")
    assert created.status_code == 201, created.content
    site_id = created.json()["id"]
    renamed = api.patch(
        f"/api/energy/sites/{site_id}/", {"name": "Depot North"}, format="json", REMOTE_ADDR="198.51.100.7"
    )
    assert renamed.status_code == 200, renamed.content

    response = api.get(AUDIT, {"object_type": "energy.site", "object_id": site_id})
    assert response.status_code == 200, response.content
    entries = response.json()["results"]
    assert [entry["action"] for entry in entries] == ["update", "create"]
    update = entries[0]
    assert update["changes"]["name"] == ["Depot", "Depot North"]
    assert update["object_type"] == "energy.site" and update["object_id"] == str(site_id)
    assert update["actor"]["application"] == client_id_of(api)
    assert update["actor"]["device"] is None
    assert update["source"] == "api"
    assert update["remote_addr"] == "198.51.100.7"


def test_filters_by_action_time_and_source(api, org):
    site = api.post("/api/energy/sites/", {"name": "A", "timezone": "UTC"}, format="json").json()
    api.delete(f"/api/energy/sites/{site['id']}/")
    deletes = api.get(AUDIT, {"action": "delete", "object_type": "energy.site"}).json()["results"]
    assert [(e["action"], e["object_id"]) for e in deletes] == [("delete", str(site["id"]))]
    latest = deletes[0]["timestamp"]
    assert api.get(AUDIT, {"start": latest, "object_type": "energy.site"}).json()["count"] == 1
    assert api.get(AUDIT, {"end": latest, "object_type": "energy.site"}).json()["count"] == 1  # the create
    assert api.get(AUDIT, {"source": "admin", "object_type": "energy.site"}).json()["count"] == 0
    assert api.get(AUDIT, {"source": "api", "object_type": "energy.site"}).json()["count"] == 2


@pytest.mark.parametrize(
    "params,field",
    [
        ({"object_type": "energy.nothing"}, "object_type"),
        ({"object_type": "%e.%s"}, "object_type"),  # a % in the value once made the 400 a 500
        ({"action": "explode"}, "action"),
        ({"start": "yesterday"}, "start"),
        ({"object_id": "-1"}, "object_id"),
    ],
)
def test_bad_filters_are_400_naming_the_parameter(api, params, field):
    response = api.get(AUDIT, params)
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_the_list_is_the_organizations_own(api, outsider_api, org, other_org):
    mine = factories.SiteFactory(organization=org, name="Mine")
    theirs = factories.SiteFactory(organization=other_org, name="Theirs")
    listed = {(e["object_type"], e["object_id"]) for e in api.get(AUDIT, {"limit": 1000}).json()["results"]}
    assert ("energy.site", str(mine.pk)) in listed
    assert ("energy.site", str(theirs.pk)) not in listed
    entry = AuditEntry.objects.get(content_type__model="site", object_id=theirs.pk)
    assert entry.organization_id == other_org.pk
    assert api.get(f"{AUDIT}{entry.pk}").status_code == 404
    assert outsider_api.get(f"{AUDIT}{entry.pk}").status_code == 200


def test_a_forwarded_address_counts_only_from_the_local_proxy(api):
    site = api.post("/api/energy/sites/", {"name": "B", "timezone": "UTC"}, format="json").json()
    # nginx on 127.0.0.1 appends the client's address; what the client put before it is ignored.
    api.patch(f"/api/energy/sites/{site['id']}/", {"name": "B1"}, format="json",
              REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.5")  # fmt: skip
    # From anyone else the header is the client's own word.
    api.patch(f"/api/energy/sites/{site['id']}/", {"name": "B2"}, format="json",
              REMOTE_ADDR="198.51.100.9", HTTP_X_FORWARDED_FOR="10.9.9.9")  # fmt: skip
    entries = api.get(AUDIT, {"object_type": "energy.site", "object_id": site["id"], "action": "update"}).json()
    assert [e["remote_addr"] for e in entries["results"]] == ["198.51.100.9", "203.0.113.5"]

"""The charging API: chargers (password once, validation), ID tokens, sessions (request, offline,
stop, filters), reset, tenancy and scopes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from energy.load import chargers
from energy.load.models import Charger, ChargingSession
from energy.models import DeviceCommand, Meter
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ev_meter(site):
    return factories.MeterFactory(site=site, kind="ev_charger")


def test_create_on_a_meter_returns_the_password_once(api, ev_meter):
    response = api.post(
        "/api/energy/chargers/",
        {"meter": ev_meter.pk, "charging_station_id": "CS-A1", "min_current_a": 6, "max_current_a": 16, "phases": 3},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    password = body["password"]
    assert 16 <= len(password) <= 40
    charger = Charger.objects.get(pk=body["id"])
    assert chargers.station_password_check(password, charger.password_hash) and password not in charger.password_hash
    assert charger.password_hash.startswith("pbkdf2_sha256_station$1000$")
    assert body["site"] == ev_meter.site_id and [e["evse_id"] for e in body["evses"]] == [1]
    detail = api.get(f"/api/energy/chargers/{charger.pk}/").json()
    assert "password" not in detail and "password_hash" not in detail
    assert chargers.charger_authenticate(charging_station_id="CS-A1", password=password) == charger
    rotated = api.post(f"/api/energy/chargers/{charger.pk}/rotate_password/").json()["password"]
    assert chargers.charger_authenticate(charging_station_id="CS-A1", password=password) is None
    assert chargers.charger_authenticate(charging_station_id="CS-A1", password=rotated) == charger


def test_create_with_a_new_meter_at_a_site(api, site):
    response = api.post("/api/energy/chargers", {"site": site.pk, "charging_station_id": "CS-NEW"}, format="json")
    assert response.status_code == 201, response.content
    meter = Meter.objects.get(pk=response.json()["meter"])
    assert meter.kind == "ev_charger" and meter.site == site and meter.organization == site.organization


@pytest.mark.parametrize(
    "body,field",
    [
        ({"min_current_a": 20, "max_current_a": 10}, "max_current_a"),
        ({"min_current_a": -1}, "min_current_a"),
        ({"charging_station_id": "has/slash"}, "charging_station_id"),
        ({"max_current_a": "lots"}, "max_current_a"),
    ],
)
def test_bad_charger_input_is_a_400_naming_the_field(api, ev_meter, body, field):
    response = api.post(
        "/api/energy/chargers/", {"meter": ev_meter.pk, "charging_station_id": "CS-X", **body}, format="json"
    )
    assert response.status_code == 400 and field in response.json(), response.content
    assert not Charger.objects.exists()


def test_meter_rules(api, site, ev_meter, other_org):
    load_meter = factories.MeterFactory(site=site, kind="load")
    wrong_kind = api.post("/api/energy/chargers/", {"meter": load_meter.pk, "charging_station_id": "C1"}, format="json")
    assert wrong_kind.status_code == 400 and "ev_charger" in str(wrong_kind.json()["meter"])
    foreign = factories.MeterFactory(site=factories.SiteFactory(organization=other_org), kind="ev_charger")
    other = api.post("/api/energy/chargers/", {"meter": foreign.pk, "charging_station_id": "C2"}, format="json")
    assert other.status_code == 400 and "meter" in other.json()
    factories.ChargerFactory(charging_station_id="TAKEN", organization=other_org)
    taken = api.post("/api/energy/chargers/", {"meter": ev_meter.pk, "charging_station_id": "TAKEN"}, format="json")
    assert taken.status_code == 400 and "charging_station_id" in taken.json()
    assert not Charger.objects.filter(meter=ev_meter).exists()


def test_update_keeps_min_below_max_and_identity_fixed(api, org):
    charger = factories.ChargerFactory(organization=org, min_current_a=6, max_current_a=16)
    url = f"/api/energy/chargers/{charger.pk}/"
    assert api.patch(url, {"min_current_a": 20}, format="json").status_code == 400
    assert api.patch(url, {"charging_station_id": "OTHER"}, format="json").status_code == 400
    ok = api.patch(url, {"max_current_a": 32, "priority": 5}, format="json")
    assert ok.status_code == 200 and ok.json()["priority"] == 5
    charger.refresh_from_db()
    assert charger.max_current_a == 32 and charger.min_current_a == 6


def test_id_tokens_crud_and_duplicate(api):
    created = api.post("/api/energy/id-tokens/", {"id_token": "CARD-9", "label": "Fleet van"}, format="json")
    assert created.status_code == 201 and created.json()["type"] == "ISO14443"
    again = api.post("/api/energy/id-tokens/", {"id_token": "CARD-9"}, format="json")
    assert again.status_code == 400
    assert api.post("/api/energy/id-tokens/", {"id_token": "X", "type": "Magic"}, format="json").status_code == 400


def test_id_token_status(org):
    now = timezone.now()
    factories.IdTokenFactory(organization=org, id_token="OK")
    factories.IdTokenFactory(organization=org, id_token="OFF", is_active=False)
    factories.IdTokenFactory(organization=org, id_token="OLD", valid_until=now - timedelta(days=1))
    factories.IdTokenFactory(id_token="ELSEWHERE")
    status = lambda token: chargers.id_token_status(organization_id=org.pk, id_token=token, token_type="ISO14443")  # noqa: E731
    assert [status(t) for t in ("OK", "OFF", "OLD", "ELSEWHERE", "NEVER")] == [
        "Accepted", "Blocked", "Expired", "Invalid", "Invalid",
    ]  # fmt: skip


def test_session_request_for_an_offline_charger_is_a_409(api, org):
    charger = factories.ChargerFactory(organization=org, is_online=False)
    response = api.post(
        "/api/energy/charging-sessions/", {"charger": charger.pk, "energy_wanted_kwh": 10}, format="json"
    )
    assert response.status_code == 409 and "offline" in response.json()["detail"]
    assert not ChargingSession.objects.exists() and not DeviceCommand.objects.exists()


def test_session_request_sends_request_start_transaction(api, org):
    charger = factories.ChargerFactory(organization=org, is_online=True)
    evse = factories.EvseFactory(charger=charger, evse_id=2)
    departure = (timezone.now() + timedelta(hours=4)).isoformat()
    response = api.post(
        "/api/energy/charging-sessions/",
        {"charger": charger.pk, "evse": evse.pk, "energy_wanted_kwh": 25.5, "departure_at": departure,
         "priority_override": 3},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["state"] == "requested" and body["source"] == "api" and body["remote_start_id"] == body["id"]
    command = DeviceCommand.objects.get(pk=body["command"])
    assert command.name == "ocpp.RequestStartTransaction" and command.meter_id == charger.meter_id
    assert command.payload["remoteStartId"] == body["id"] and command.payload["evseId"] == 2
    assert command.payload["idToken"]["type"] == "Central"


def test_session_request_rejects_an_evse_of_another_charger(api, org):
    charger = factories.ChargerFactory(organization=org, is_online=True)
    evse = factories.EvseFactory(charger=factories.ChargerFactory(organization=org))
    response = api.post("/api/energy/charging-sessions/", {"charger": charger.pk, "evse": evse.pk}, format="json")
    assert response.status_code == 400 and "evse" in response.json()


def test_stop_sends_request_stop_transaction_or_cancels(api, org):
    started = factories.ChargingSessionFactory(charger=factories.ChargerFactory(organization=org))
    response = api.post(f"/api/energy/charging-sessions/{started.pk}/stop/")
    assert response.status_code == 202
    command = DeviceCommand.objects.get(pk=response.json()["command"])
    assert command.name == "ocpp.RequestStopTransaction" and command.payload == {
        "transactionId": started.transaction_id
    }
    requested = factories.ChargingSessionFactory(
        charger=started.charger, transaction_id=None, state="requested", source="api"
    )
    cancelled = api.post(f"/api/energy/charging-sessions/{requested.pk}/stop")
    assert cancelled.status_code == 202 and cancelled.json()["command"] is None
    assert cancelled.json()["session"]["state"] == "ended"
    assert api.post(f"/api/energy/charging-sessions/{requested.pk}/stop").status_code == 409


def test_session_filters(api, org):
    charger = factories.ChargerFactory(organization=org)
    other_charger = factories.ChargerFactory(organization=org)
    active = factories.ChargingSessionFactory(charger=charger)
    ended = factories.ChargingSessionFactory(
        charger=other_charger, state="ended", ended_at=timezone.now() - timedelta(days=2)
    )
    ids = lambda query: [row["id"] for row in api.get(f"/api/energy/charging-sessions/?{query}").json()["results"]]  # noqa: E731
    assert ids(f"charger={charger.pk}") == [active.pk]
    assert ids("state=ended") == [ended.pk]
    assert ids(f"site={charger.site_id}") == [active.pk]
    since = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert ids(f"start={since}") == [active.pk]
    assert api.get("/api/energy/charging-sessions/?start=yesterday").status_code == 400


def test_reset_needs_an_online_charger(api, org):
    charger = factories.ChargerFactory(organization=org, is_online=False)
    assert api.post(f"/api/energy/chargers/{charger.pk}/reset/", {}, format="json").status_code == 409
    Charger.objects.filter(pk=charger.pk).update(is_online=True)
    response = api.post(f"/api/energy/chargers/{charger.pk}/reset/", {"type": "OnIdle"}, format="json")
    assert response.status_code == 202 and response.json()["payload"] == {"type": "OnIdle"}
    assert api.post(f"/api/energy/chargers/{charger.pk}/reset/", {"type": "Hard"}, format="json").status_code == 400


def test_another_tenant_sees_nothing(outsider_api, org):
    charger = factories.ChargerFactory(organization=org, is_online=True)
    session = factories.ChargingSessionFactory(charger=charger)
    assert outsider_api.get("/api/energy/chargers/").json()["results"] == []
    assert outsider_api.get(f"/api/energy/chargers/{charger.pk}/").status_code == 404
    assert outsider_api.post(f"/api/energy/charging-sessions/{session.pk}/stop/").status_code == 404
    refused = outsider_api.post("/api/energy/charging-sessions/", {"charger": charger.pk}, format="json")
    assert refused.status_code == 400 and not DeviceCommand.objects.exists()


def test_reading_scope_cannot_write(energy_reader, org):
    charger = factories.ChargerFactory(organization=org, is_online=True)
    assert energy_reader.get("/api/energy/chargers/").status_code == 200
    assert energy_reader.post(f"/api/energy/chargers/{charger.pk}/reset/").status_code == 403

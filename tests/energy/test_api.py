"""The integrator REST API under /api/energy/: CRUD, device credentials, scopes, lists, readings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from energy.models import Gateway, Meter, MeterGroup, Reading, Site
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    # OAuth2 client secrets are hashed on creation; the production hasher costs ~1 s per token here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


SITES = "/api/energy/sites/"
METERS = "/api/energy/meters/"
GROUPS = "/api/energy/groups/"
GATEWAYS = "/api/energy/gateways/"
READINGS = "/api/energy/energy-data/"
SEED_BODY = b'{"total_power":3600.0,"total_energy":1500.0,"voltage_a":230.1,"timestamp":"2025-10-16T10:00:00Z"}'
T0 = datetime(2025, 10, 16, 10, tzinfo=UTC)
# A list answer costs a fixed number of queries (token, organization, count, page, one prefetch),
# whatever its length; an N+1 over the 30 rows below would blow far past it.
LIST_MAX_QUERIES = 5


def ids(response) -> list[int]:
    return [row["id"] for row in response.json()["results"]]


def add_reading(meter, ts: datetime, **values) -> Reading:
    return Reading.objects.create(meter=meter, ts=ts, received_at=timezone.now(), **values)


# --- sites ----------------------------------------------------------------------------------


def test_site_crud(api, org):
    created = api.post(SITES, {"name": "Depot North", "timezone": "Europe/Berlin", "latitude": 52.5}, format="json")
    assert created.status_code == 201, created.content
    site_id = created.json()["id"]
    assert Site.objects.get(pk=site_id).organization == org

    detail = api.get(f"{SITES}{site_id}/")
    assert detail.status_code == 200
    assert detail.json()["name"] == "Depot North"
    assert detail.json()["timezone"] == "Europe/Berlin"

    patched = api.patch(f"{SITES}{site_id}/", {"address": "Hafenstr. 1"}, format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["address"] == "Hafenstr. 1"

    put = api.put(f"{SITES}{site_id}/", {"name": "Depot South", "timezone": "UTC"}, format="json")
    assert put.status_code == 200, put.content
    assert Site.objects.get(pk=site_id).name == "Depot South"

    assert api.delete(f"{SITES}{site_id}/").status_code == 204
    assert not Site.objects.filter(pk=site_id).exists()
    assert api.get(f"{SITES}{site_id}/").status_code == 404


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "UTC+2", "../../etc/passwd"])
def test_site_with_a_bad_timezone_is_a_400(api, tz):
    response = api.post(SITES, {"name": "Depot", "timezone": tz}, format="json")
    assert response.status_code == 400, response.content
    assert "timezone" in response.json()
    assert not Site.objects.exists()


def test_site_timezone_update_is_validated_too(api, site):
    response = api.patch(f"{SITES}{site.pk}/", {"timezone": "Nowhere/Land"}, format="json")
    assert response.status_code == 400
    site.refresh_from_db()
    assert site.timezone == "Europe/Berlin"


@pytest.mark.parametrize("field,value", [("latitude", 91), ("longitude", -181)])
def test_site_with_impossible_coordinates_is_a_400(api, field, value):
    response = api.post(SITES, {"name": "Depot", field: value}, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_duplicate_site_name_in_one_org_is_a_400_but_fine_in_another(api, outsider_api, site):
    assert api.post(SITES, {"name": site.name}, format="json").status_code == 400
    assert outsider_api.post(SITES, {"name": site.name}, format="json").status_code == 201


def test_deleting_a_site_deletes_its_meters(api, meter):
    assert api.delete(f"{SITES}{meter.site_id}/").status_code == 204
    assert not Meter.objects.filter(pk=meter.pk).exists()


# --- meters and gateways: device credentials ------------------------------------------------


def test_meter_crud(api, org, site):
    created = api.post(METERS, {"site": site.pk, "name": "Grid", "serial": "GRID-1", "kind": "grid"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    meter = Meter.objects.get(pk=body["id"])
    assert meter.organization == org and meter.site == site
    assert (body["site"], body["name"], body["serial"], body["kind"]) == (site.pk, "Grid", "GRID-1", "grid")

    patched = api.patch(f"{METERS}{meter.pk}/", {"name": "Grid import", "require_signature": True}, format="json")
    assert patched.status_code == 200, patched.content
    meter.refresh_from_db()
    assert meter.name == "Grid import" and meter.require_signature

    assert api.get(f"{METERS}{meter.pk}").json()["name"] == "Grid import"
    assert api.delete(f"{METERS}{meter.pk}/").status_code == 204
    assert not Meter.objects.filter(pk=meter.pk).exists()


@pytest.mark.parametrize(
    "collection,payload",
    [(METERS, {"name": "PV", "serial": "PV-1", "kind": "pv"}), (GATEWAYS, {"name": "Edge box"})],
    ids=["meter", "gateway"],
)
def test_device_create_returns_key_and_secret_once_and_get_never_shows_the_secret(
    api, site, device_client, collection, payload
):
    created = api.post(collection, {"site": site.pk, **payload}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    model = Meter if collection == METERS else Gateway
    device = model.objects.get(pk=body["id"])
    assert body["device_key"] == str(device.device_key)
    assert body["device_secret"] == device.device_secret
    assert len(body["device_secret"]) >= 32
    uuid.UUID(body["device_key"])
    # The MQTT login (and topic segment) names the device without its key.
    assert body["mqtt_username"] == f"{model._meta.model_name}-{device.pk}"

    for response in (
        api.get(f"{collection}{device.pk}/"),
        api.get(collection),
        api.patch(f"{collection}{device.pk}/", {"name": "renamed"}, format="json"),
    ):
        assert response.status_code == 200
        assert "device_secret" not in response.content.decode()
        assert device.device_secret not in response.content.decode()
    assert api.get(f"{collection}{device.pk}/").json()["device_key"] == str(device.device_key)


def test_returned_meter_credentials_work_for_signed_ingest(api, site, device_client):
    body = api.post(METERS, {"site": site.pk, "name": "Load", "serial": "L-1"}, format="json").json()
    meter = Meter(device_key=body["device_key"], device_secret=body["device_secret"])

    response = device_client(meter).post(READINGS, raw=SEED_BODY, sign=True)
    assert response.status_code == 201, response.content
    assert Reading.objects.get().meter_id == body["id"]


def test_device_secret_cannot_be_set_by_the_client(api, site):
    chosen_key = str(uuid.uuid4())
    body = api.post(
        METERS,
        {"site": site.pk, "name": "M", "serial": "S", "device_key": chosen_key, "device_secret": "a" * 64},
        format="json",
    ).json()
    meter = Meter.objects.get(pk=body["id"])
    assert str(meter.device_key) != chosen_key
    assert meter.device_secret != "a" * 64


@pytest.mark.parametrize("kind", ["meter", "gateway"])
def test_rotate_key_returns_a_new_pair_and_the_old_key_stops_at_once(api, site, device_client, kind):
    target = factories.MeterFactory(site=site)
    device = target if kind == "meter" else factories.GatewayFactory(site=site)
    collection = METERS if kind == "meter" else GATEWAYS
    old = Meter(device_key=device.device_key, device_secret=device.device_secret)
    payload = SEED_BODY if kind == "meter" else SEED_BODY.replace(b"{", b'{"meter_id":%d,' % target.pk, 1)
    assert device_client(old).post(READINGS, raw=payload, sign=True).status_code == 201
    Reading.objects.all().delete()

    response = api.post(f"{collection}{device.pk}/rotate_key/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == device.pk
    assert body["device_key"] != str(old.device_key)
    assert body["device_secret"] != old.device_secret
    device.refresh_from_db()
    assert (str(device.device_key), device.device_secret) == (body["device_key"], body["device_secret"])
    assert device.key_rotated_at is not None

    refused = device_client(old).post(READINGS, raw=payload, sign=True)
    assert refused.status_code == 401
    assert refused.json()["detail"]
    new = Meter(device_key=body["device_key"], device_secret=body["device_secret"])
    assert device_client(new).post(READINGS, raw=payload, sign=True).status_code == 201
    # The new secret is not shown again afterwards.
    assert body["device_secret"] not in api.get(f"{collection}{device.pk}/").content.decode()


def test_rotate_key_without_trailing_slash(api, meter):
    response = api.post(f"{METERS}{meter.pk}/rotate_key")
    assert response.status_code == 200, response.content


def test_rotate_key_of_unknown_meter_is_404(api):
    assert api.post(f"{METERS}999999/rotate_key/").status_code == 404


def test_gateway_crud(api, org, site):
    created = api.post(GATEWAYS, {"site": site.pk, "name": "Edge 1"}, format="json")
    assert created.status_code == 201, created.content
    gateway = Gateway.objects.get(pk=created.json()["id"])
    assert gateway.organization == org and gateway.site == site
    assert api.patch(f"{GATEWAYS}{gateway.pk}/", {"is_active": False}, format="json").status_code == 200
    gateway.refresh_from_db()
    assert gateway.is_active is False
    assert api.delete(f"{GATEWAYS}{gateway.pk}").status_code == 204
    assert not Gateway.objects.filter(pk=gateway.pk).exists()


def test_unique_serial_per_org_is_a_400_not_a_500(api, outsider_api, other_org, meter):
    response = api.post(METERS, {"site": meter.site_id, "name": "Again", "serial": meter.serial}, format="json")
    assert response.status_code == 400, response.content
    assert "serial" in response.json()
    assert Meter.objects.count() == 1

    other_site = factories.SiteFactory(organization=other_org)
    response = outsider_api.post(
        METERS, {"site": other_site.pk, "name": "Same serial", "serial": meter.serial}, format="json"
    )
    assert response.status_code == 201, response.content


def test_changing_a_serial_to_a_taken_one_is_a_400(api, site, meter):
    second = factories.MeterFactory(site=site)
    response = api.patch(f"{METERS}{second.pk}/", {"serial": meter.serial}, format="json")
    assert response.status_code == 400
    assert "serial" in response.json()
    # Saving a meter with its own serial is no clash.
    assert api.patch(f"{METERS}{meter.pk}/", {"serial": meter.serial}, format="json").status_code == 200


@pytest.mark.parametrize("collection", [METERS, GATEWAYS])
def test_device_on_another_orgs_site_is_a_400(api, other_org, collection):
    foreign_site = factories.SiteFactory(organization=other_org)
    response = api.post(collection, {"site": foreign_site.pk, "name": "Sneaky", "serial": "X-1"}, format="json")
    assert response.status_code == 400, response.content
    assert "site" in response.json()
    assert not Meter.objects.exists() and not Gateway.objects.exists()


def test_moving_a_meter_to_another_orgs_site_is_a_400(api, other_org, meter):
    foreign_site = factories.SiteFactory(organization=other_org)
    response = api.patch(f"{METERS}{meter.pk}/", {"site": foreign_site.pk}, format="json")
    assert response.status_code == 400
    meter.refresh_from_db()
    assert meter.site.organization_id == meter.organization_id


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"kind": "nuclear"}, "kind"),
        ({"phases": 2}, "phases"),
        ({"nominal_voltage": -230}, "nominal_voltage"),
        ({"site": 999999}, "site"),
        ({"site": "abc"}, "site"),
    ],
)
def test_meter_validation_errors_are_400s_naming_the_field(api, site, payload, field):
    response = api.post(METERS, {"site": site.pk, "name": "M", "serial": "S-1", **payload}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()


# --- groups ---------------------------------------------------------------------------------


def test_group_crud(api, org, site):
    a, b = factories.MeterFactory(site=site), factories.MeterFactory(site=site)
    created = api.post(GROUPS, {"name": "EV chargers", "meters": [a.pk, b.pk]}, format="json")
    assert created.status_code == 201, created.content
    group = MeterGroup.objects.get(pk=created.json()["id"])
    assert group.organization == org
    assert set(group.meters.values_list("pk", flat=True)) == {a.pk, b.pk}
    assert sorted(api.get(f"{GROUPS}{group.pk}/").json()["meters"]) == sorted([a.pk, b.pk])

    assert api.patch(f"{GROUPS}{group.pk}/", {"meters": [b.pk]}, format="json").status_code == 200
    assert list(group.meters.values_list("pk", flat=True)) == [b.pk]
    assert api.delete(f"{GROUPS}{group.pk}/").status_code == 204
    assert not MeterGroup.objects.filter(pk=group.pk).exists()
    assert Meter.objects.filter(pk=a.pk).exists()


def test_group_with_another_orgs_meter_is_a_400(api, other_org, meter):
    foreign = factories.MeterFactory(site=factories.SiteFactory(organization=other_org))
    response = api.post(GROUPS, {"name": "Mixed", "meters": [meter.pk, foreign.pk]}, format="json")
    assert response.status_code == 400, response.content
    assert "meters" in response.json()
    assert not MeterGroup.objects.exists()


def test_duplicate_group_name_is_a_400(api, org):
    factories.MeterGroupFactory(organization=org, name="Roof")
    response = api.post(GROUPS, {"name": "Roof"}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()


# --- authentication and scopes --------------------------------------------------------------

COLLECTIONS = [SITES, METERS, GROUPS, GATEWAYS]


@pytest.fixture
def one_of_each(org, site, meter, gateway):
    group = factories.MeterGroupFactory(organization=org, meters=[meter])
    return {SITES: site, METERS: meter, GROUPS: group, GATEWAYS: gateway}


@pytest.mark.parametrize("collection", [*COLLECTIONS, READINGS])
def test_anonymous_is_401_on_lists(anonymous_api, collection):
    response = anonymous_api.get(collection)
    assert response.status_code == 401
    assert response.json()["detail"]


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_anonymous_is_401_on_details_and_writes(anonymous_api, one_of_each, collection):
    pk = one_of_each[collection].pk
    for response in (
        anonymous_api.get(f"{collection}{pk}/"),
        anonymous_api.post(collection, {"name": "x"}, format="json"),
        anonymous_api.patch(f"{collection}{pk}/", {"name": "x"}, format="json"),
        anonymous_api.delete(f"{collection}{pk}/"),
    ):
        assert response.status_code == 401, response.content


def test_invalid_bearer_token_is_401(anonymous_api):
    anonymous_api.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert anonymous_api.get(SITES).status_code == 401


def test_expired_token_is_401(api_client_factory, org):
    from oauth2_provider.models import AccessToken

    client = api_client_factory(org, ["energy:read"])
    AccessToken.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert client.get(SITES).status_code == 401


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_read_only_token_reads_but_gets_403_on_every_write(energy_reader, one_of_each, site, collection):
    obj = one_of_each[collection]
    assert energy_reader.get(collection).status_code == 200
    assert energy_reader.get(f"{collection}{obj.pk}/").status_code == 200
    writes = [
        energy_reader.post(collection, {"site": site.pk, "name": "New", "serial": "NEW-1"}, format="json"),
        energy_reader.patch(f"{collection}{obj.pk}/", {"name": "Renamed"}, format="json"),
        energy_reader.put(f"{collection}{obj.pk}/", {"site": site.pk, "name": "Renamed", "serial": "R"}, format="json"),
        energy_reader.delete(f"{collection}{obj.pk}/"),
    ]
    if collection in (METERS, GATEWAYS):
        writes.append(energy_reader.post(f"{collection}{obj.pk}/rotate_key/"))
    for response in writes:
        assert response.status_code == 403, response.content
        assert "energy:write" in response.json()["detail"]
    obj.refresh_from_db()
    assert obj.name != "Renamed"
    assert type(obj).objects.count() == 1


def test_rotate_key_with_a_read_only_token_keeps_the_old_key(energy_reader, meter):
    old_key = meter.device_key
    assert energy_reader.post(f"{METERS}{meter.pk}/rotate_key/").status_code == 403
    meter.refresh_from_db()
    assert meter.device_key == old_key


@pytest.mark.parametrize("collection", [*COLLECTIONS, READINGS])
def test_token_without_any_energy_scope_is_403(api_client_factory, org, collection):
    client = api_client_factory(org, ["billing:read", "billing:write"])
    assert client.get(collection).status_code == 403


def test_write_only_token_cannot_read(api_client_factory, org, site):
    client = api_client_factory(org, ["energy:write"])
    assert client.get(SITES).status_code == 403
    assert client.post(SITES, {"name": "Write only"}, format="json").status_code == 201


# --- slashes --------------------------------------------------------------------------------


@pytest.mark.parametrize("collection", [*COLLECTIONS, READINGS])
def test_every_list_answers_with_and_without_trailing_slash(api, one_of_each, collection):
    with_slash = api.get(collection)
    without = api.get(collection.rstrip("/"))
    assert with_slash.status_code == 200
    assert without.status_code == 200
    assert with_slash.json() == without.json()


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_every_detail_answers_with_and_without_trailing_slash(api, one_of_each, collection):
    pk = one_of_each[collection].pk
    assert api.get(f"{collection}{pk}/").json() == api.get(f"{collection}{pk}").json()
    assert api.patch(f"{collection}{pk}", {"name": "No slash"}, format="json").status_code == 200
    assert type(one_of_each[collection]).objects.get(pk=pk).name == "No slash"


@pytest.mark.parametrize(
    "collection,payload",
    [
        (SITES, {"name": "No slash site"}),
        (METERS, {"name": "No slash meter", "serial": "NS-1"}),
        (GROUPS, {"name": "No slash group"}),
        (GATEWAYS, {"name": "No slash gateway"}),
    ],
)
def test_post_without_trailing_slash_creates_and_is_no_redirect(api, site, collection, payload):
    if collection in (METERS, GATEWAYS):
        payload = {**payload, "site": site.pk}
    response = api.post(collection.rstrip("/"), payload, format="json")
    assert response.status_code == 201, (response.status_code, response.get("Location"))
    assert response.json()["name"] == payload["name"]


def test_unknown_api_path_is_a_json_404(api):
    response = api.get("/api/energy/nothing-here/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")


# --- pagination, filters, ordering ----------------------------------------------------------


def test_pagination_with_limit_and_offset(api, org):
    sites = [factories.SiteFactory(organization=org, name=f"Site {i:02d}") for i in range(7)]
    page = api.get(SITES, {"limit": 3, "offset": 2}).json()
    assert page["count"] == 7
    assert [row["id"] for row in page["results"]] == [s.pk for s in sites[2:5]]
    assert "offset=5" in page["next"]
    assert page["previous"] is not None
    last = api.get(SITES, {"limit": 3, "offset": 6}).json()
    assert [row["id"] for row in last["results"]] == [sites[6].pk]
    assert last["next"] is None


@pytest.mark.parametrize("collection", [*COLLECTIONS, READINGS])
def test_every_list_is_paginated(api, one_of_each, collection):
    add_reading(one_of_each[METERS], T0)
    body = api.get(collection, {"limit": 1}).json()
    assert set(body) >= {"count", "next", "previous", "results"}
    assert body["count"] == 1
    assert len(body["results"]) == 1


def test_site_filters_and_ordering(api, org):
    berlin = factories.SiteFactory(organization=org, name="Berlin depot", timezone="Europe/Berlin")
    lisbon = factories.SiteFactory(organization=org, name="Lisbon depot", timezone="Europe/Lisbon")
    factories.SiteFactory(organization=org, name="Warehouse", timezone="Europe/Berlin")
    assert ids(api.get(SITES, {"name": "DEPOT"})) == [berlin.pk, lisbon.pk]
    assert ids(api.get(SITES, {"timezone": "Europe/Lisbon"})) == [lisbon.pk]
    names = [row["name"] for row in api.get(SITES, {"ordering": "-name"}).json()["results"]]
    assert names == ["Warehouse", "Lisbon depot", "Berlin depot"]


def test_meter_filters_and_ordering(api, org, site):
    other_site = factories.SiteFactory(organization=org)
    grid = factories.MeterFactory(site=site, kind=Meter.Kind.GRID, name="B grid", serial="S-3")
    pv = factories.MeterFactory(site=site, kind=Meter.Kind.PV, name="C roof pv", serial="S-1")
    ev = factories.MeterFactory(site=other_site, kind=Meter.Kind.EV_CHARGER, name="A charger", serial="S-2")
    ev.is_active = False
    ev.save()
    group = factories.MeterGroupFactory(organization=org, meters=[grid, ev])

    assert ids(api.get(METERS, {"site": site.pk})) == [grid.pk, pv.pk]
    assert ids(api.get(METERS, {"kind": "pv"})) == [pv.pk]
    assert ids(api.get(METERS, {"serial": "S-2"})) == [ev.pk]
    assert ids(api.get(METERS, {"is_active": "false"})) == [ev.pk]
    assert ids(api.get(METERS, {"name": "roof"})) == [pv.pk]
    assert ids(api.get(METERS, {"group": group.pk})) == [grid.pk, ev.pk]
    assert ids(api.get(METERS, {"ordering": "name"})) == [ev.pk, grid.pk, pv.pk]
    assert ids(api.get(METERS, {"ordering": "-serial"})) == [grid.pk, ev.pk, pv.pk]
    assert api.get(METERS, {"kind": "nuclear"}).status_code == 400


def test_group_filters_and_ordering(api, org, meter):
    roof = factories.MeterGroupFactory(organization=org, name="Roof", meters=[meter])
    cellar = factories.MeterGroupFactory(organization=org, name="Cellar")
    assert ids(api.get(GROUPS, {"meter": meter.pk})) == [roof.pk]
    assert ids(api.get(GROUPS, {"name": "cell"})) == [cellar.pk]
    assert ids(api.get(GROUPS, {"ordering": "name"})) == [cellar.pk, roof.pk]
    assert ids(api.get(GROUPS, {"ordering": "-id"})) == [cellar.pk, roof.pk]


def test_gateway_filters_and_ordering(api, org, site):
    other_site = factories.SiteFactory(organization=org)
    b = factories.GatewayFactory(site=site, name="B")
    a = factories.GatewayFactory(site=other_site, name="A", is_active=False)
    assert ids(api.get(GATEWAYS, {"site": site.pk})) == [b.pk]
    assert ids(api.get(GATEWAYS, {"is_active": "false"})) == [a.pk]
    assert ids(api.get(GATEWAYS, {"ordering": "name"})) == [a.pk, b.pk]
    assert ids(api.get(GATEWAYS, {"ordering": "-name"})) == [b.pk, a.pk]


@pytest.mark.parametrize(
    "collection,params",
    [(METERS, {"site": "abc"}), (GROUPS, {"meter": "x"}), (READINGS, {"start": "not-a-date"})],
)
def test_bad_filter_values_are_400s(api, collection, params):
    response = api.get(collection, params)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")


# --- reading back stored readings -----------------------------------------------------------


def test_energy_data_returns_stored_readings_of_a_meter_in_range(api, site, meter):
    other = factories.MeterFactory(site=site)
    for minutes in range(5):
        add_reading(meter, T0 + timedelta(minutes=minutes), total_power=100.0 * minutes)
    add_reading(other, T0 + timedelta(minutes=1), total_power=9.0)

    response = api.get(
        READINGS,
        {"meter": meter.pk, "start": "2025-10-16T10:01:00Z", "end": "2025-10-16T10:04:00Z"},
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 3  # start inclusive, end exclusive
    rows = body["results"]
    assert [row["timestamp"] for row in rows] == [
        "2025-10-16T10:01:00Z",
        "2025-10-16T10:02:00Z",
        "2025-10-16T10:03:00Z",
    ]
    assert [row["total_power"] for row in rows] == [100.0, 200.0, 300.0]
    assert {row["meter"] for row in rows} == {meter.pk}


def test_energy_data_accepts_offsets_in_the_range(api, meter):
    add_reading(meter, T0)
    response = api.get(READINGS, {"meter": meter.pk, "start": "2025-10-16T12:00:00+02:00"})
    assert response.json()["count"] == 1
    response = api.get(READINGS, {"meter": meter.pk, "start": "2025-10-16T12:00:01+02:00"})
    assert response.json()["count"] == 0


def test_energy_data_accepts_any_offset_python_reads(api, meter):
    # PostgreSQL refuses offsets beyond ±15:59 on its own; the filter converts to UTC first.
    add_reading(meter, T0)
    response = api.get(READINGS, {"meter": meter.pk, "end": "2025-10-15T12:19:00-21:42"})
    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_energy_data_with_an_instant_out_of_range_is_a_400(api, meter):
    response = api.get(READINGS, {"meter": meter.pk, "start": "0001-01-01T00:00:00+05:00"})
    assert response.status_code == 400
    assert "start" in response.json()


def test_energy_data_reads_back_what_a_device_posted(api, meter, device_client):
    assert device_client(meter).post(READINGS, raw=SEED_BODY, sign=True).status_code == 201
    rows = api.get(READINGS, {"meter": meter.pk}).json()["results"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["timestamp"], row["total_power"], row["total_energy"], row["voltage_a"]) == (
        "2025-10-16T10:00:00Z",
        3600.0,
        1500.0,
        230.1,
    )


def test_energy_data_filters_by_site_and_orders(api, org, site, meter):
    elsewhere = factories.MeterFactory(site=factories.SiteFactory(organization=org))
    first = add_reading(meter, T0)
    second = add_reading(meter, T0 + timedelta(minutes=1))
    add_reading(elsewhere, T0)
    assert ids(api.get(READINGS, {"site": site.pk})) == [first.pk, second.pk]
    assert ids(api.get(READINGS, {"meter": meter.pk, "ordering": "-ts"})) == [second.pk, first.pk]


def test_energy_data_with_an_unknown_meter_is_empty(api, meter):
    add_reading(meter, T0)
    assert api.get(READINGS, {"meter": 999999}).json()["count"] == 0


# --- query counts: an N+1 is a failing test -------------------------------------------------


@pytest.fixture
def many_rows(org):
    sites = [factories.SiteFactory(organization=org) for _ in range(3)]
    meters = [factories.MeterFactory(site=sites[i % 3]) for i in range(30)]
    for i in range(30):
        factories.GatewayFactory(site=sites[i % 3])
        factories.MeterGroupFactory(organization=org, meters=meters[i : i + 4])
    for meter in meters:
        for minutes in range(3):
            add_reading(meter, T0 + timedelta(minutes=minutes))
    return meters


@pytest.mark.parametrize("collection", [*COLLECTIONS, READINGS])
def test_list_query_count_does_not_grow_with_rows(api, many_rows, collection, django_assert_max_num_queries):
    with django_assert_max_num_queries(LIST_MAX_QUERIES):
        response = api.get(collection)
    assert response.status_code == 200
    assert len(response.json()["results"]) >= 3

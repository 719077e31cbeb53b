"""The power quality and protection API: configuration, event lists and filters, breaker
states, scopes and tenant isolation on every new route, and the admin pages."""

from __future__ import annotations

import pytest

from energy.power_quality.config import pq_config_set
from energy.power_quality.models import PQConfig, PQEvent
from energy.power_quality.protection import protection_event_record
from tests import factories
from tests.energy.power_quality.helpers import at, ingest, reading

CONFIG = "/api/energy/pq/config/"
PQ_EVENTS = "/api/energy/pq/events/"
PROTECTION = "/api/energy/protection/events/"
BREAKERS = "/api/energy/protection/breakers/"
SEED_BODY = {
    "sag_v_threshold": 0.9,
    "swell_v_threshold": 1.1,
    "thd_pct_threshold": 5.0,
    "imbalance_pct_threshold": 2.0,
}
DEFAULTS = {**SEED_BODY, "earth_leakage_ma_threshold": 30.0, "nominal_frequency_hz": 50.0}


def results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


# Configuration ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_defaults_apply_when_no_configuration_is_set(api, meter):
    response = api.get(f"{CONFIG}{meter.pk}")
    assert response.status_code == 200
    data = response.json()
    assert {k: data[k] for k in DEFAULTS} == DEFAULTS
    assert data["is_default"] is True and data["updated_at"] is None
    assert (data["meter_id"], data["site_id"], data["nominal_voltage"], data["phases"]) == (
        meter.pk,
        meter.site_id,
        230.0,
        3,
    )


@pytest.mark.django_db
def test_post_the_seed_body_creates_then_replaces(api, meter):
    body = {"meter_id": meter.pk, **SEED_BODY, "sag_v_threshold": 0.85}
    created = api.post(CONFIG.rstrip("/"), body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["sag_v_threshold"] == 0.85 and created.json()["is_default"] is False
    replaced = api.post(CONFIG, {"meter_id": meter.pk, "thd_pct_threshold": 8.0}, format="json")
    assert replaced.status_code == 200
    data = replaced.json()
    # Replace, not patch: omitted thresholds go back to their defaults.
    assert data["thd_pct_threshold"] == 8.0 and data["sag_v_threshold"] == 0.9
    assert PQConfig.objects.count() == 1
    assert api.get(f"{CONFIG}{meter.pk}/").json()["thd_pct_threshold"] == 8.0


@pytest.mark.django_db
def test_put_replaces_and_delete_resets_to_defaults(api, meter):
    response = api.put(f"{CONFIG}{meter.pk}", {"swell_v_threshold": 1.2, "nominal_frequency_hz": 60}, format="json")
    assert response.status_code == 201 and response.json()["swell_v_threshold"] == 1.2
    assert api.delete(f"{CONFIG}{meter.pk}/").status_code == 204
    assert api.get(f"{CONFIG}{meter.pk}").json()["is_default"] is True


@pytest.mark.django_db
def test_config_list_covers_every_meter_and_filters(api, site, meter):
    other_site_meter = factories.MeterFactory(site=factories.SiteFactory(organization=site.organization))
    pq_config_set(meter=meter, values={"thd_pct_threshold": 3.0})
    rows = results(api.get(CONFIG))
    assert [(r["meter_id"], r["is_default"]) for r in rows] == [(meter.pk, False), (other_site_meter.pk, True)]
    assert [r["meter_id"] for r in results(api.get(CONFIG, {"meter_id": meter.pk}))] == [meter.pk]
    assert [r["meter_id"] for r in results(api.get(CONFIG, {"site": other_site_meter.site_id}))] == [
        other_site_meter.pk
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sag_v_threshold": 1.1, "swell_v_threshold": 1.1}, "sag_v_threshold"),  # sag >= swell
        ({"sag_v_threshold": 0.95, "swell_v_threshold": 1.05}, None),  # valid
        ({"sag_v_threshold": -0.9}, "sag_v_threshold"),
        ({"sag_v_threshold": 0.05}, "sag_v_threshold"),  # below the 0.1 pu interruption level
        ({"swell_v_threshold": 0.9}, "swell_v_threshold"),
        ({"swell_v_threshold": 3.0}, "swell_v_threshold"),
        ({"thd_pct_threshold": 100.5}, "thd_pct_threshold"),
        ({"thd_pct_threshold": -1}, "thd_pct_threshold"),
        ({"thd_pct_threshold": 0}, "thd_pct_threshold"),
        ({"imbalance_pct_threshold": -2.0}, "imbalance_pct_threshold"),
        ({"imbalance_pct_threshold": 101}, "imbalance_pct_threshold"),
        ({"earth_leakage_ma_threshold": 0}, "earth_leakage_ma_threshold"),
        ({"nominal_frequency_hz": 55}, "nominal_frequency_hz"),
        ({"thd_pct_threshold": "5"}, "thd_pct_threshold"),
        ({"thd_pct_threshold": True}, "thd_pct_threshold"),
        ({"thd_pct_threshold": None}, "thd_pct_threshold"),
    ],
)
@pytest.mark.django_db
def test_config_out_of_physical_range_is_400_and_writes_nothing(api, meter, body, field):
    response = api.post(CONFIG, {"meter_id": meter.pk, **body}, format="json")
    if field is None:
        assert response.status_code == 201
        return
    assert response.status_code == 400, response.json()
    assert field in response.json()
    assert PQConfig.objects.count() == 0


@pytest.mark.django_db
def test_config_bad_requests(api, meter, other_org):
    foreign = factories.MeterFactory(site=factories.SiteFactory(organization=other_org))
    for body in ({}, {"meter_id": 999999}, {"meter_id": foreign.pk}, {"meter_id": "x"}, {"meter_id": 2**70}):
        response = api.post(CONFIG, body, format="json")
        assert response.status_code == 400 and "meter_id" in response.json(), body
    assert api.post(CONFIG, b"{", content_type="application/json").status_code == 400
    assert api.post(CONFIG, [], format="json").status_code == 400
    assert api.put(f"{CONFIG}{foreign.pk}", SEED_BODY, format="json").status_code == 404
    assert api.get(f"{CONFIG}99999999999999999999").status_code == 404
    assert PQConfig.objects.count() == 0


@pytest.mark.django_db
def test_config_scopes(energy_reader, anonymous_api, meter):
    assert energy_reader.get(CONFIG).status_code == 200
    assert energy_reader.post(CONFIG, {"meter_id": meter.pk}, format="json").status_code == 403
    assert energy_reader.delete(f"{CONFIG}{meter.pk}").status_code == 403
    assert anonymous_api.get(CONFIG).status_code == 401
    assert PQConfig.objects.count() == 0


# Event lists ----------------------------------------------------------------------------


@pytest.fixture
def pq_history(site, meter):
    """A closed sag and an open THD event on `meter`, a swell on another meter at another site."""
    ingest(meter, [reading(0, thd_v_pct=1.0), reading(10, va=200.0, vb=200.0, vc=200.0), reading(20, thd_v_pct=9.0)])
    elsewhere = factories.MeterFactory(site=factories.SiteFactory(organization=site.organization))
    ingest(elsewhere, [reading(100, va=260.0, vb=260.0, vc=260.0)])
    return meter, elsewhere


@pytest.mark.django_db
def test_pq_events_list_and_filters(api, pq_history):
    meter, elsewhere = pq_history
    rows = results(api.get(PQ_EVENTS))
    assert [(r["kind"], r["meter"]) for r in rows] == [("swell", elsewhere.pk), ("thd", meter.pk), ("sag", meter.pk)]
    sag = rows[-1]
    assert sag["is_open"] is False and sag["end"] == "2025-10-16T10:00:20Z" and sag["duration_s"] == 10.0
    assert sag["duration_class"] == "temporary" and sag["ieee_category"] == "temporary_sag"
    assert sag["phases"] == ["a", "b", "c"] and sag["unit"] == "pu" and sag["site"] == meter.site_id

    def kinds(**params):
        return [r["kind"] for r in results(api.get(PQ_EVENTS, params))]

    assert kinds(meter=meter.pk) == ["thd", "sag"]
    assert kinds(site=elsewhere.site_id) == ["swell"]
    assert kinds(kind="sag") == ["sag"]
    assert kinds(is_open="true") == ["swell", "thd"]
    assert kinds(is_open="false") == ["sag"]
    assert kinds(duration_class="temporary") == ["sag"]
    assert kinds(start=at(50).isoformat()) == ["swell", "thd"]  # still running at 50 s
    assert kinds(end=at(15).isoformat()) == ["sag"]
    assert kinds(start=at(0).isoformat(), end=at(15).isoformat()) == ["sag"]
    assert kinds(ordering="start") == ["sag", "thd", "swell"]
    page = api.get(PQ_EVENTS, {"limit": 1, "offset": 1}).json()
    assert page["count"] == 3 and [r["kind"] for r in page["results"]] == ["thd"]
    detail = api.get(f"{PQ_EVENTS}{sag['id']}")
    assert detail.status_code == 200 and detail.json() == sag


@pytest.mark.parametrize(
    "params", [{"kind": "flicker"}, {"meter": "x"}, {"meter": 2**70}, {"start": "soon"}, {"duration_class": "x"}]
)
@pytest.mark.django_db
def test_pq_events_bad_filters_are_400(api, params):
    response = api.get(PQ_EVENTS, params)
    assert response.status_code == 400
    assert isinstance(response.json(), dict)


@pytest.mark.django_db
def test_protection_events_list_filters_and_breaker_states(api, site, meter):
    other = factories.MeterFactory(site=site)
    protection_event_record(meter=meter, kind="trip", occurred_at=at(0), source="test")
    protection_event_record(meter=meter, kind="breaker_closed", occurred_at=at(60), source="test")
    ingest(other, [reading(30, breaker_state="open", earth_leakage_ma=45.0)])
    rows = results(api.get(PROTECTION))
    assert [(r["kind"], r["meter"], r["origin"]) for r in rows] == [
        ("breaker_closed", meter.pk, "device"),
        ("breaker_open", other.pk, "reading"),
        ("earth_leakage", other.pk, "reading"),
        ("trip", meter.pk, "device"),
    ]

    def kinds(**params):
        return [r["kind"] for r in results(api.get(PROTECTION, params))]

    assert kinds(meter=meter.pk) == ["breaker_closed", "trip"]
    assert kinds(kind="earth_leakage") == ["earth_leakage"]
    assert kinds(origin="device") == ["breaker_closed", "trip"]
    assert kinds(start=at(30).isoformat(), end=at(60).isoformat()) == ["breaker_open", "earth_leakage"]
    assert kinds(site=site.pk) == ["breaker_closed", "breaker_open", "earth_leakage", "trip"]
    assert api.get(PROTECTION, {"kind": "meltdown"}).status_code == 400

    unobserved = factories.MeterFactory(site=site)
    states = {r["meter_id"]: r for r in results(api.get(BREAKERS))}
    assert states[meter.pk]["breaker_state"] == "closed" and states[meter.pk]["origin"] == "device"
    assert states[meter.pk]["changed_at"] == "2025-10-16T10:01:00Z"
    assert states[other.pk]["breaker_state"] == "open" and states[other.pk]["origin"] == "reading"
    assert states[unobserved.pk] == {
        "meter_id": unobserved.pk,
        "site_id": site.pk,
        "breaker_state": "unknown",
        "changed_at": None,
        "origin": None,
    }
    assert [r["meter_id"] for r in results(api.get(BREAKERS, {"breaker_state": "open"}))] == [other.pk]
    assert [r["meter_id"] for r in results(api.get(BREAKERS, {"breaker_state": "unknown"}))] == [unobserved.pk]
    assert api.get(f"{BREAKERS}{meter.pk}").json()["breaker_state"] == "closed"


@pytest.mark.django_db
def test_list_query_counts_do_not_grow_with_rows(api, site, meter, django_assert_max_num_queries):
    for t in range(0, 40, 2):
        ingest(meter, [reading(t, va=200.0, breaker_state="open"), reading(t + 1, breaker_state="closed")])
    for path in (PQ_EVENTS, PROTECTION, BREAKERS, CONFIG):
        with django_assert_max_num_queries(6):
            assert len(results(api.get(path))) >= 1


# Tenant isolation on every new route ---------------------------------------------------------


@pytest.mark.django_db
def test_outsider_sees_nothing_on_any_pq_route(outsider_api, api, pq_history, device_client):
    meter, _elsewhere = pq_history
    pq_config_set(meter=meter, values={"thd_pct_threshold": 3.0})
    event = protection_event_record(meter=meter, kind="trip", occurred_at=at(0), source="test")[0]
    pq_event = PQEvent.objects.filter(meter=meter).first()
    for path in (CONFIG, PQ_EVENTS, PROTECTION, BREAKERS):
        for variant in (path, path.rstrip("/")):
            assert results(outsider_api.get(variant)) == [], variant
        assert results(outsider_api.get(path, {"meter": meter.pk, "meter_id": meter.pk})) == []
    for path in (
        f"{CONFIG}{meter.pk}",
        f"{PQ_EVENTS}{pq_event.pk}",
        f"{PROTECTION}{event.pk}",
        f"{BREAKERS}{meter.pk}",
    ):
        assert outsider_api.get(path).status_code == 404, path
        assert api.get(path).status_code == 200, path
    assert outsider_api.put(f"{CONFIG}{meter.pk}", SEED_BODY, format="json").status_code == 404
    assert outsider_api.delete(f"{CONFIG}{meter.pk}").status_code == 404
    response = outsider_api.post(CONFIG, {"meter_id": meter.pk, **SEED_BODY}, format="json")
    assert response.status_code == 400
    assert PQConfig.objects.get(meter=meter).thd_pct_threshold == 3.0


@pytest.mark.django_db
def test_anonymous_gets_401_on_every_read_route(anonymous_api):
    for path in (CONFIG, PQ_EVENTS, PROTECTION, BREAKERS, f"{CONFIG}1", f"{PQ_EVENTS}1"):
        response = anonymous_api.get(path)
        assert response.status_code == 401 and "detail" in response.json()


# Admin ------------------------------------------------------------------------------------


@pytest.fixture
def admin_client_for(client, owner):
    client.force_login(owner)
    return client


@pytest.mark.django_db
def test_admin_meter_page_has_the_pq_inline_and_saves_it(admin_client_for, meter):
    page = admin_client_for.get(f"/admin/energy/meter/{meter.pk}/change/")
    assert page.status_code == 200
    assert b"pq_config-TOTAL_FORMS" in page.content
    data = {
        "site": meter.site_id,
        "name": meter.name,
        "serial": meter.serial,
        "kind": meter.kind,
        "nominal_voltage": "230",
        "phases": "3",
        "is_active": "on",
        "pq_config-TOTAL_FORMS": "1",
        "pq_config-INITIAL_FORMS": "0",
        "pq_config-MIN_NUM_FORMS": "0",
        "pq_config-MAX_NUM_FORMS": "1",
        "pq_config-0-sag_v_threshold": "0.92",
        "pq_config-0-swell_v_threshold": "1.08",
        "pq_config-0-thd_pct_threshold": "6",
        "pq_config-0-imbalance_pct_threshold": "2.5",
        "pq_config-0-earth_leakage_ma_threshold": "30",
        "pq_config-0-nominal_frequency_hz": "50.0",
        "pq_config-0-meter": meter.pk,
        "pq_state-TOTAL_FORMS": "0",
        "pq_state-INITIAL_FORMS": "0",
        "pq_state-MIN_NUM_FORMS": "0",
        "pq_state-MAX_NUM_FORMS": "0",
    }
    bad = admin_client_for.post(
        f"/admin/energy/meter/{meter.pk}/change/", {**data, "pq_config-0-sag_v_threshold": "1.5"}
    )
    assert bad.status_code == 200 and not PQConfig.objects.exists()
    saved = admin_client_for.post(f"/admin/energy/meter/{meter.pk}/change/", data)
    assert saved.status_code == 302, saved.content[:2000]
    config = PQConfig.objects.get(meter=meter)
    assert config.sag_v_threshold == 0.92 and config.organization_id == meter.organization_id


@pytest.mark.django_db
def test_admin_lists_pq_and_protection_events_with_filters_scoped(admin_client_for, meter, other_org):
    ingest(meter, [reading(0, va=200.0, breaker_state="open")])
    foreign = factories.MeterFactory(site=factories.SiteFactory(organization=other_org), name="Foreign meter")
    ingest(foreign, [reading(0, va=200.0, breaker_state="open")])
    for path, text in (("/admin/energy/pqevent/", b"sag"), ("/admin/energy/protectionevent/", b"breaker_open")):
        page = admin_client_for.get(path)
        assert page.status_code == 200
        assert meter.name.encode() in page.content and b"Foreign meter" not in page.content
        assert b'id="changelist-filter"' in page.content
        assert admin_client_for.get(path, {"kind": text.decode()}).status_code == 200
    assert admin_client_for.get("/admin/energy/pqevent/", {"end__isnull": "True"}).status_code == 200
    event = PQEvent.objects.get(meter=meter, kind="sag")
    assert admin_client_for.get(f"/admin/energy/pqevent/{event.pk}/change/").status_code == 200
    foreign_event = PQEvent.objects.get(meter=foreign, kind="sag")
    assert admin_client_for.get(f"/admin/energy/pqevent/{foreign_event.pk}/change/").status_code == 302


def test_event_lists_accept_any_offset_python_reads(api):
    # PostgreSQL refuses offsets beyond ±15:59 on its own; the filters convert to UTC first.
    for path in ("/api/energy/pq/events/", "/api/energy/protection/events/"):
        response = api.get(path, {"start": "2025-10-15T12:19:00-21:42", "end": "2025-10-16T12:19:00-21:31"})
        assert response.status_code == 200, response.json()
        assert response.json()["count"] == 0

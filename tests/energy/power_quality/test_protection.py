"""Protection: breaker state and earth leakage carried by readings, events posted by devices,
each meter's current breaker position, and `protection.event` in the outbox."""

from __future__ import annotations

import random
import uuid

import pytest

from energy.events import PROTECTION_EVENT
from energy.models import Reading
from energy.power_quality.config import pq_config_set
from energy.power_quality.models import MeterPQState, ProtectionEvent
from joulepoint.events.models import OutboxEvent
from tests import factories
from tests.energy.power_quality.helpers import at, ingest, iso, outbox, protection_shapes, reading

EVENTS = "/api/energy/protection/events/"
BULK = "/api/energy/energy-data/bulk"


def kinds(meter) -> list[tuple[str, object]]:
    return [(e.kind, e.occurred_at) for e in ProtectionEvent.objects.filter(meter=meter).order_by("occurred_at")]


def breaker(meter) -> str:
    state = MeterPQState.objects.filter(meter=meter).first()
    return state.breaker_state if state else "unknown"


# Readings that carry breaker_state / earth_leakage_ma --------------------------------------------


@pytest.mark.django_db
def test_breaker_state_is_validated_and_stored_in_extra(meter, device_client):
    response = device_client(meter).post(BULK, [{"timestamp": iso(0), "breaker_state": "ajar"}])
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "breaker_state"
    response = device_client(meter).post(BULK, [{"timestamp": iso(0), "breaker_state": 1}])
    assert response.status_code == 400
    response = device_client(meter).post(BULK, [{"timestamp": iso(0), "earth_leakage_ma": -1}])
    assert response.status_code == 400
    assert Reading.objects.count() == 0 and ProtectionEvent.objects.count() == 0
    response = device_client(meter).post(BULK, [{"timestamp": iso(0), "breaker_state": " OPEN "}])
    assert response.status_code == 201
    assert Reading.objects.get().extra == {"breaker_state": "open"}


@pytest.mark.django_db
def test_breaker_transitions_in_readings_become_protection_events(meter):
    ingest(meter, [reading(0, breaker_state="closed")])
    assert kinds(meter) == [] and breaker(meter) == "closed"  # closed is the normal position
    ingest(meter, [reading(1, breaker_state="closed"), reading(2, breaker_state="open"), reading(3)])
    ingest(meter, [reading(4, breaker_state="open"), reading(5, breaker_state="closed")])
    ingest(meter, [reading(6, breaker_state="tripped"), reading(7, breaker_state="tripped")])
    assert kinds(meter) == [("breaker_open", at(2)), ("breaker_closed", at(5)), ("trip", at(6))]
    assert breaker(meter) == "open"
    assert {e.origin for e in ProtectionEvent.objects.filter(meter=meter)} == {"reading"}


@pytest.mark.django_db
def test_first_reading_of_an_open_breaker_is_an_event(meter):
    ingest(meter, [reading(0, breaker_state="open")])
    assert kinds(meter) == [("breaker_open", at(0))]


@pytest.mark.parametrize(("milliamps", "fires"), [(30.0, False), (30.1, True), (29.9, False)])
@pytest.mark.django_db
def test_earth_leakage_at_over_and_under_the_default_limit(meter, milliamps, fires):
    ingest(meter, [reading(0, earth_leakage_ma=1.0), reading(1, earth_leakage_ma=milliamps)])
    assert kinds(meter) == ([("earth_leakage", at(1))] if fires else [])


@pytest.mark.django_db
def test_earth_leakage_fires_once_per_excursion_and_uses_the_configured_limit(meter):
    pq_config_set(meter=meter, values={"earth_leakage_ma_threshold": 100.0})
    ingest(meter, [reading(0, earth_leakage_ma=50.0), reading(1, earth_leakage_ma=120.0)])
    ingest(meter, [reading(2, earth_leakage_ma=150.0), reading(3), reading(4, earth_leakage_ma=20.0)])
    ingest(meter, [reading(5, earth_leakage_ma=101.0)])
    events = ProtectionEvent.objects.filter(meter=meter).order_by("occurred_at")
    assert [(e.occurred_at, e.earth_leakage_ma) for e in events] == [(at(1), 120.0), (at(5), 101.0)]
    assert events[0].details == {"limit_ma": 100.0}


@pytest.mark.django_db
def test_protection_from_readings_is_the_same_in_any_arrival_order(site):
    rng = random.Random(42)
    items = [
        reading(
            t,
            breaker_state=rng.choice(["open", "closed", "closed", "tripped", None]),
            earth_leakage_ma=rng.choice([5.0, 40.0, None]),
        )
        for t in range(40)
    ]
    items[10]["breaker_state"], items[11]["breaker_state"] = "closed", "tripped"
    items = [{k: v for k, v in item.items() if v is not None} for item in items]
    in_order, shuffled, batched = (factories.MeterFactory(site=site) for _ in range(3))
    for item in items:
        ingest(in_order, [item])
    expected = protection_shapes(in_order)
    assert {kind for kind, *_ in expected} >= {"breaker_open", "breaker_closed", "trip", "earth_leakage"}
    order = items[:]
    rng.shuffle(order)
    for item in order:
        ingest(shuffled, [item])
    assert protection_shapes(shuffled) == expected
    for start in range(0, 40, 6):
        ingest(batched, order[start : start + 6])
    assert protection_shapes(batched) == expected
    assert breaker(shuffled) == breaker(batched) == breaker(in_order)


@pytest.mark.django_db
def test_a_late_reading_moves_a_transition_and_retracts_the_old_one(meter):
    ingest(meter, [reading(0, breaker_state="closed"), reading(3, breaker_state="open")])
    ingest(meter, [reading(2, breaker_state="open")])
    assert kinds(meter) == [("breaker_open", at(2))]
    assert sorted(p["action"] for p in outbox(PROTECTION_EVENT, meter)) == ["recorded", "recorded", "retracted"]


@pytest.mark.django_db
def test_duplicate_readings_do_not_fire_twice(meter):
    items = [reading(0, breaker_state="open", earth_leakage_ma=50.0)]
    ingest(meter, items)
    ingest(meter, items)
    assert len(kinds(meter)) == 2
    assert len(outbox(PROTECTION_EVENT, meter)) == 2


# Events posted by devices -----------------------------------------------------------------


@pytest.mark.django_db
def test_device_posts_a_trip_with_details(meter, device_client):
    body = {"kind": "trip", "timestamp": iso(0), "details": {"curve": "C16", "current_a": 480}}
    response = device_client(meter).post(EVENTS, body, sign=True)
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["kind"] == "trip" and data["meter"] == meter.pk and data["site"] == meter.site_id
    assert data["details"] == {"curve": "C16", "current_a": 480} and data["origin"] == "device"
    assert data["duplicate"] is False and data["timestamp"] == "2025-10-16T10:00:00Z"
    assert breaker(meter) == "open"
    (payload,) = outbox(PROTECTION_EVENT, meter)
    assert payload["kind"] == "trip" and payload["action"] == "recorded" and payload["breaker_state"] == "open"


@pytest.mark.django_db
def test_resent_device_event_is_a_duplicate_without_a_second_row(meter, device_client):
    body = {"kind": "earth_leakage", "timestamp": iso(0), "earth_leakage_ma": 42.5}
    first = device_client(meter).post(EVENTS, body)
    again = device_client(meter).post(EVENTS.rstrip("/"), body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["duplicate"] is True and again.json()["id"] == first.json()["id"]
    assert ProtectionEvent.objects.count() == 1
    assert OutboxEvent.objects.filter(key=PROTECTION_EVENT).count() == 1


@pytest.mark.django_db
def test_current_breaker_state_is_the_latest_timestamp_whatever_the_arrival_order(meter, device_client):
    client = device_client(meter)
    assert client.post(EVENTS, {"kind": "breaker_closed", "timestamp": iso(10)}).status_code == 201
    assert client.post(EVENTS, {"kind": "breaker_open", "timestamp": iso(5)}).status_code == 201
    assert breaker(meter) == "closed"
    ingest(meter, [reading(20, breaker_state="open")])
    assert breaker(meter) == "open"
    assert client.post(EVENTS, {"kind": "earth_leakage", "timestamp": iso(30), "earth_leakage_ma": 40}).status_code
    assert breaker(meter) == "open"  # earth leakage alone does not move the breaker


@pytest.mark.django_db
def test_gateway_posts_for_a_meter_of_its_site(site, gateway, device_client, other_org):
    meter = factories.MeterFactory(site=site)
    foreign = factories.MeterFactory(site=factories.SiteFactory(organization=other_org))
    client = device_client(gateway)
    ok = client.post(EVENTS, {"kind": "trip", "timestamp": iso(0), "meter_serial": meter.serial})
    assert ok.status_code == 201 and ok.json()["meter"] == meter.pk
    for body in (
        {"kind": "trip", "timestamp": iso(1)},
        {"kind": "trip", "timestamp": iso(1), "meter_id": foreign.pk},
        {"kind": "trip", "timestamp": iso(1), "meter_serial": foreign.serial},
    ):
        response = client.post(EVENTS, body)
        assert response.status_code == 400, body
        assert set(response.json()) <= {"meter_id", "meter_serial"}
    assert ProtectionEvent.objects.count() == 1


@pytest.mark.django_db
def test_a_meter_key_posts_only_for_its_own_meter(site, meter, device_client):
    other = factories.MeterFactory(site=site)
    response = device_client(meter).post(EVENTS, {"kind": "trip", "timestamp": iso(0), "meter_id": other.pk})
    assert response.status_code == 400 and "meter_id" in response.json()
    assert ProtectionEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "explosion", "timestamp": iso(0)}, "kind"),
        ({"timestamp": iso(0)}, "kind"),
        ({"kind": "trip"}, "timestamp"),
        ({"kind": "trip", "timestamp": "yesterday"}, "timestamp"),
        ({"kind": "trip", "timestamp": "2025-10-16T10:00:00"}, "timestamp"),
        ({"kind": "trip", "timestamp": "2999-01-01T00:00:00Z"}, "timestamp"),
        ({"kind": "earth_leakage", "timestamp": iso(0)}, "earth_leakage_ma"),
        ({"kind": "earth_leakage", "timestamp": iso(0), "earth_leakage_ma": -3}, "earth_leakage_ma"),
        ({"kind": "earth_leakage", "timestamp": iso(0), "earth_leakage_ma": "12"}, "earth_leakage_ma"),
        ({"kind": "earth_leakage", "timestamp": iso(0), "earth_leakage_ma": True}, "earth_leakage_ma"),
        ({"kind": "trip", "timestamp": iso(0), "details": [1, 2]}, "details"),
        ({"kind": "trip", "timestamp": iso(0), "details": {"x": "y" * 5000}}, "details"),
    ],
)
@pytest.mark.django_db
def test_bad_protection_events_are_400_with_the_field_and_no_write(meter, device_client, body, field):
    response = device_client(meter).post(EVENTS, body)
    assert response.status_code == 400
    assert field in response.json()
    assert ProtectionEvent.objects.count() == 0 and OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_malformed_bodies_and_credentials(meter, device_client, api, anonymous_api):
    client = device_client(meter)
    assert client.post(EVENTS, raw=b"{nope").status_code == 400
    assert client.post(EVENTS, [{"kind": "trip"}]).status_code == 400
    assert client.post(EVENTS, {"kind": "trip", "timestamp": iso(0)}, content_type="text/plain").status_code == 415
    bad_signature = client.post(EVENTS, {"kind": "trip", "timestamp": iso(0)}, headers={"HTTP_X_SIGNATURE": "0" * 64})
    assert bad_signature.status_code == 403
    unknown = anonymous_api.post(
        EVENTS, {"kind": "trip", "timestamp": iso(0)}, format="json", HTTP_X_DEVICE_KEY=str(uuid.uuid4())
    )
    assert unknown.status_code == 401
    assert anonymous_api.post(EVENTS, {"kind": "trip", "timestamp": iso(0)}, format="json").status_code == 401
    # An integrator's token does not post device events.
    assert api.post(EVENTS, {"kind": "trip", "timestamp": iso(0)}, format="json").status_code == 401
    for response in (bad_signature, unknown):
        assert "detail" in response.json()
    assert ProtectionEvent.objects.count() == 0


@pytest.mark.django_db
def test_a_posted_event_older_than_the_latest_breaker_reading_does_not_move_the_breaker(meter, device_client):
    ingest(meter, [reading(0, breaker_state="closed"), reading(100, breaker_state="closed")])
    response = device_client(meter).post(EVENTS, {"kind": "breaker_open", "timestamp": iso(50)})
    assert response.status_code == 201  # recorded as history
    assert breaker(meter) == "closed"
    assert device_client(meter).post(EVENTS, {"kind": "breaker_open", "timestamp": iso(150)}).status_code == 201
    assert breaker(meter) == "open"
    ingest(meter, [reading(120, breaker_state="closed")])  # late reading, older than the event
    assert breaker(meter) == "open"


@pytest.mark.django_db
def test_confirming_readings_do_not_write_the_state_row(meter):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ingest(meter, [reading(0, breaker_state="closed", earth_leakage_ma=3.0)])
    with CaptureQueriesContext(connection) as queries:
        ingest(meter, [reading(t, breaker_state="closed", earth_leakage_ma=3.0) for t in range(1, 50)])
    writes = [q["sql"] for q in queries.captured_queries if "meterpqstate" in q["sql"] and "SELECT" not in q["sql"]]
    assert writes == []

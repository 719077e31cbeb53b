"""Device ingest over HTTP: POST /api/energy/energy-data/ and /api/energy/energy-data/bulk.

Every rejected request must answer 4xx with a JSON body saying what is wrong, and write nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.utils import timezone

from energy.api.authentication import signature_is_valid
from energy.api.serializers import StoredReadingSerializer
from energy.events import DATA_INGESTED
from energy.models import Reading
from joulepoint.events.services import subscribe, unsubscribe
from tests import factories
from tests.conformance import vectors

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    # OAuth2 client secrets are hashed on creation; the production hasher costs ~1 s per token here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


SINGLE = "/api/energy/energy-data/"
BULK = "/api/energy/energy-data/bulk"
SEED_BODY = b'{"total_power":3600.0,"total_energy":1500.0,"voltage_a":230.1,"timestamp":"2025-10-16T10:00:00Z"}'
BASE = datetime(2025, 10, 16, tzinfo=UTC)
HMAC_VECTORS = "hmac-body-signing-vectors.json"


def ts(seconds: int = 0) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def reading(seconds: int = 0, **values) -> dict:
    return {"timestamp": ts(seconds), "total_power": 1000.0 + seconds, **values}


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def assert_rejected(response, status: int) -> dict:
    """A 4xx JSON error that says something, and no reading stored anywhere."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body.get("detail"), body
    assert Reading.objects.count() == 0
    return body


def error_fields(body: dict) -> list[tuple[int | None, str]]:
    return [(error["index"], error["field"]) for error in body["errors"]]


@pytest.fixture
def events():
    """Records every data.ingested event handed to subscribers (after commit)."""
    seen = []

    def record(event):
        seen.append(event)

    subscribe(record, keys=[DATA_INGESTED])
    yield seen
    unsubscribe(record)


# --- the seed's example, single readings ---------------------------------------------------


def test_seed_example_signed_is_stored_and_answered_with_201(meter, device_client):
    response = device_client(meter).post(SINGLE, raw=SEED_BODY, sign=True)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["meter"] == meter.pk
    assert body["timestamp"] == "2025-10-16T10:00:00Z"
    assert (body["total_power"], body["total_energy"], body["voltage_a"]) == (3600.0, 1500.0, 230.1)
    assert body["duplicate"] is False
    stored = Reading.objects.get()
    assert stored.meter_id == meter.pk
    assert stored.ts == datetime(2025, 10, 16, 10, tzinfo=UTC)
    assert (stored.total_power, stored.total_energy, stored.voltage_a) == (3600.0, 1500.0, 230.1)
    assert stored.voltage_b is None
    assert body["id"] == stored.pk


def test_same_body_again_is_a_200_duplicate_with_no_second_row(meter, device_client):
    client = device_client(meter)
    first = client.post(SINGLE, raw=SEED_BODY, sign=True)
    again = client.post(SINGLE, raw=SEED_BODY, sign=True)

    assert first.status_code == 201
    assert again.status_code == 200, again.content
    assert again.json()["duplicate"] is True
    assert again.json()["id"] == first.json()["id"]
    assert Reading.objects.count() == 1


def test_single_answer_is_the_stored_reading_serializer_document(meter, device_client):
    # The view builds the answer without the serializer (hot path); both must say the same,
    # timestamps sent with an offset included.
    client = device_client(meter)
    sent = {"timestamp": "2025-10-16T12:00:00.250+02:00", "voltage_a": 231.5, "earth_leakage_ma": 3.0}
    first = client.post(SINGLE, sent)
    again = client.post(SINGLE, sent)

    stored = Reading.objects.get()
    for response, duplicate in ((first, False), (again, True)):
        stored.duplicate = duplicate
        assert response.json() == StoredReadingSerializer(stored).data


@pytest.mark.parametrize("path", [SINGLE, BULK])
def test_devices_are_answered_in_json_whatever_they_accept(meter, device_client, path):
    payload = reading(0) if path == SINGLE else [reading(0)]
    response = device_client(meter).post(path, payload, headers={"HTTP_ACCEPT": "text/html"})

    assert response.status_code == 201, response.content
    assert response["Content-Type"] == "application/json"
    assert Reading.objects.count() == 1


def test_first_write_wins_for_the_same_meter_and_timestamp(meter, device_client):
    client = device_client(meter)
    client.post(SINGLE, reading(0, total_power=10.0))
    response = client.post(SINGLE, reading(0, total_power=99.0))

    assert response.status_code == 200
    assert response.json()["total_power"] == 10.0
    assert Reading.objects.get().total_power == 10.0


def test_path_without_trailing_slash_stores_and_does_not_redirect(meter, device_client):
    response = device_client(meter).post("/api/energy/energy-data", raw=SEED_BODY, sign=True)
    assert response.status_code == 201, response.content
    assert Reading.objects.count() == 1


def test_bulk_path_with_trailing_slash_stores(meter, device_client):
    response = device_client(meter).post(BULK + "/", [reading(0)])
    assert response.status_code == 201, response.content
    assert Reading.objects.count() == 1


def test_unsigned_reading_is_accepted_when_the_meter_does_not_require_a_signature(meter, device_client):
    assert device_client(meter).post(SINGLE, raw=SEED_BODY).status_code == 201


def test_same_timestamp_on_two_meters_is_two_readings(site, device_client):
    a, b = factories.MeterFactory(site=site), factories.MeterFactory(site=site)
    assert device_client(a).post(SINGLE, raw=SEED_BODY).status_code == 201
    assert device_client(b).post(SINGLE, raw=SEED_BODY).status_code == 201
    assert Reading.objects.count() == 2


def test_unknown_numeric_fields_are_kept_in_extra(meter, device_client):
    response = device_client(meter).post(SINGLE, reading(0, battery_soc=81.5, cabinet_temp=-3))
    assert response.status_code == 201, response.content
    assert response.json()["extra"] == {"battery_soc": 81.5, "cabinet_temp": -3.0}
    assert Reading.objects.get().extra == {"battery_soc": 81.5, "cabinet_temp": -3.0}


def test_extra_names_with_quotes_backslashes_and_braces_come_back_as_sent(meter, device_client):
    # PostgreSQL receives each column as an array literal, where `"` and `\\` must be escaped.
    # (Control characters are refused by validation.)
    names = {'say "hi"': 1.5, "back\\slash": 2.0, "{braces}, commas": 3.0, "ünïcödé NULL": 4.0}
    # A null measurement is absent (item 1 keeps one other measurement: a reading with none is a 400).
    items = [reading(0, **names), reading(1, total_power=None, frequency=50.0), reading(2, voltage_a=230.5)]
    response = device_client(meter).post(BULK, items, sign=True)
    assert response.status_code == 201, response.content
    stored = Reading.objects.filter(meter=meter).order_by("ts")
    assert [r.extra for r in stored] == [names, {}, {}]
    assert [(r.total_power, r.voltage_a) for r in stored] == [(1000.0, None), (None, None), (1002.0, 230.5)]


def test_unknown_non_numeric_field_is_a_400(meter, device_client):
    body = assert_rejected(device_client(meter).post(SINGLE, reading(0, firmware="1.2.3")), 400)
    assert error_fields(body) == [(0, "firmware")]


def test_gateway_single_reading_names_its_meter(site, gateway, device_client):
    target = factories.MeterFactory(site=site)
    response = device_client(gateway).post(SINGLE, reading(0, meter_serial=target.serial))
    assert response.status_code == 201, response.content
    assert response.json()["meter"] == target.pk
    assert Reading.objects.get().meter_id == target.pk


# --- bulk -----------------------------------------------------------------------------------


def test_bulk_of_exactly_5000_readings_is_stored(meter, device_client):
    items = [reading(i) for i in range(5000)]
    response = device_client(meter).post(BULK, items, sign=True)

    assert response.status_code == 201, response.content[:500]
    assert response.json() == {"stored": 5000, "duplicates": 0}
    assert Reading.objects.filter(meter=meter).count() == 5000
    last = Reading.objects.get(meter=meter, ts=BASE + timedelta(seconds=4999))
    assert last.total_power == 5999.0


def test_bulk_of_5001_readings_is_a_400_and_nothing_is_written(meter, device_client):
    items = [reading(i) for i in range(5001)]
    body = assert_rejected(device_client(meter).post(BULK, items), 400)
    assert "5000" in body["detail"]


def test_bulk_counts_stored_and_duplicates_including_repeats_inside_the_batch(meter, device_client):
    client = device_client(meter)
    client.post(SINGLE, reading(0))
    items = [reading(0), reading(1), reading(2), reading(1), reading(3)]

    response = client.post(BULK, items)

    assert response.status_code == 201, response.content
    assert response.json() == {"stored": 3, "duplicates": 2}
    assert Reading.objects.count() == 4


def test_bulk_of_only_duplicates_answers_200(meter, device_client):
    client = device_client(meter)
    client.post(BULK, [reading(0), reading(1)])
    response = client.post(BULK, [reading(1), reading(0)])
    assert response.status_code == 200, response.content
    assert response.json() == {"stored": 0, "duplicates": 2}
    assert Reading.objects.count() == 2


def test_gateway_posts_for_several_meters_of_its_site_by_id_and_by_serial(site, gateway, device_client):
    grid, pv, ev = (factories.MeterFactory(site=site) for _ in range(3))
    items = [
        reading(0, meter_id=grid.pk),
        reading(0, meter_serial=pv.serial),
        reading(1, meter_id=ev.pk),
        reading(1, meter_serial=grid.serial),
    ]

    response = device_client(gateway).post(BULK, items, sign=True)

    assert response.status_code == 201, response.content
    assert response.json() == {"stored": 4, "duplicates": 0}
    stored = set(Reading.objects.values_list("meter_id", "ts"))
    assert stored == {
        (grid.pk, BASE),
        (pv.pk, BASE),
        (ev.pk, BASE + timedelta(seconds=1)),
        (grid.pk, BASE + timedelta(seconds=1)),
    }


def test_gateway_reading_by_id_and_by_serial_of_the_same_meter_is_a_duplicate(site, gateway, device_client):
    target = factories.MeterFactory(site=site)
    response = device_client(gateway).post(
        BULK, [reading(0, meter_id=target.pk), reading(0, meter_serial=target.serial)]
    )
    assert response.json() == {"stored": 1, "duplicates": 1}


def test_batch_with_bad_items_lists_each_index_and_field_and_writes_nothing(meter, device_client):
    items = [
        reading(0),
        reading(1, total_power="lots"),
        reading(2),
        {"total_power": 5.0},
        reading(4, total_energy=-1.0, voltage_a=True),
    ]
    body = assert_rejected(device_client(meter).post(BULK, items), 400)
    assert sorted(error_fields(body)) == [
        (1, "total_power"),
        (3, "timestamp"),
        (4, "total_energy"),
        (4, "voltage_a"),
    ]
    assert all(error["message"] for error in body["errors"])


# --- bad input: each a 4xx JSON error and no write ------------------------------------------


@pytest.mark.parametrize("path", [SINGLE, BULK])
def test_malformed_json(meter, device_client, path):
    body = assert_rejected(device_client(meter).post(path, raw=b'{"total_power": 3600, "timestamp": '), 400)
    assert "JSON" in body["detail"]


@pytest.mark.parametrize("path", [SINGLE, BULK])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_wrong_content_type_is_415(meter, device_client, path, content_type):
    response = device_client(meter).post(path, raw=SEED_BODY, content_type=content_type)
    assert_rejected(response, 415)


def test_json_content_type_with_charset_is_accepted(meter, device_client):
    response = device_client(meter).post(SINGLE, raw=SEED_BODY, content_type="application/json; charset=utf-8")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("path", [SINGLE, BULK])
@pytest.mark.parametrize("charset", ["utf-16", "latin-1", '"UTF-16LE"'])
def test_json_in_another_charset_is_415(meter, device_client, path, charset):
    payload = orjson.loads(SEED_BODY)
    raw = orjson.dumps(payload if path == SINGLE else [payload])
    response = device_client(meter).post(path, raw=raw, content_type=f"application/json; charset={charset}")
    assert "UTF-8" in assert_rejected(response, 415)["detail"]


@pytest.mark.parametrize("path", [SINGLE, BULK])
@pytest.mark.parametrize(
    "raw",
    [
        b'{"timestamp": "2025-10-16T10:00:00Z", "total_power": 1.0, "total_power": 9e9}',
        b'{"timestamp":"2025-10-16T10:00:00Z","total_power" : 1.0,"voltage_a":230,"total_power":2}',
        # An escape hides nothing: "total_\u0070ower" is total_power too.
        b'{"timestamp": "2025-10-16T10:00:00Z", "total_power": 1.0, "total_\\u0070ower": 2.0}',
    ],
    ids=["plain", "spaced", "escaped"],
)
def test_duplicate_key_is_a_400_naming_it(meter, device_client, path, raw):
    raw = raw.replace(b"2025-10-16T10:00:00Z", ts().encode())
    if path == BULK:
        raw = b"[" + raw + b"]"
    body = assert_rejected(device_client(meter).post(path, raw=raw), 400)
    assert "Duplicate key 'total_power'" in body["detail"]


def test_same_key_in_different_readings_is_no_duplicate(meter, device_client):
    response = device_client(meter).post(BULK, [reading(0, note_a=1.0), reading(1, note_a=2.0)])
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("path", [SINGLE, BULK])
@pytest.mark.parametrize("extra", [{}, {"total_power": None}, {"total_power": None, "voltage_a": None}])
def test_reading_without_measurement_is_a_400(meter, device_client, path, extra):
    item = {"timestamp": ts(), **extra}
    body = assert_rejected(device_client(meter).post(path, item if path == SINGLE else [reading(1), item]), 400)
    assert error_fields(body) == [(0 if path == SINGLE else 1, "")]
    assert "no measurement" in body["errors"][0]["message"]


@pytest.mark.parametrize("path", [SINGLE, BULK])
@pytest.mark.parametrize("sign_it", [False, True], ids=["unsigned", "signed"])
def test_body_over_the_limit_is_413(meter, device_client, settings, path, sign_it):
    settings.INGEST_MAX_BODY_BYTES = 200
    items = [reading(i) for i in range(10)]
    payload = items if path == BULK else {**items[0], **{f"x{i}": 1.0 for i in range(20)}}
    assert len(orjson.dumps(payload)) > 200
    assert_rejected(device_client(meter).post(path, payload, sign=sign_it), 413)


@pytest.mark.parametrize("path", [SINGLE, BULK])
def test_a_content_length_that_is_no_number_is_400(meter, device_client, path):
    response = device_client(meter).post(path, raw=SEED_BODY, headers={"CONTENT_LENGTH": "abc"})
    assert "Content-Length" in assert_rejected(response, 400)["detail"]


def test_body_just_under_the_limit_is_accepted(meter, device_client, settings):
    settings.INGEST_MAX_BODY_BYTES = len(SEED_BODY)
    assert device_client(meter).post(SINGLE, raw=SEED_BODY).status_code == 201


@pytest.mark.parametrize(
    "item",
    [
        {"total_power": 1.0},
        {"timestamp": "not a time", "total_power": 1.0},
        {"timestamp": "2025-10-16 25:61", "total_power": 1.0},
        {"timestamp": None, "total_power": 1.0},
        {"timestamp": 1760608800, "total_power": 1.0},
        {"timestamp": "2025-10-16T10:00:00", "total_power": 1.0},
        {"timestamp": "0001-01-01T00:00:00+01:00", "total_power": 1.0},
    ],
    ids=["missing", "words", "impossible", "null", "epoch", "naive", "before-year-1-in-utc"],
)
@pytest.mark.parametrize("path", [SINGLE, BULK])
def test_bad_timestamp_is_a_400_naming_the_field(meter, device_client, item, path):
    payload = [item] if path == BULK else item
    body = assert_rejected(device_client(meter).post(path, payload), 400)
    assert error_fields(body) == [(0, "timestamp")]


def test_timestamp_too_far_in_the_future_is_a_400(meter, device_client, settings):
    future = timezone.now() + timedelta(seconds=settings.INGEST_MAX_FUTURE_SECONDS + 60)
    body = assert_rejected(device_client(meter).post(SINGLE, {"timestamp": future.isoformat(), "total_power": 1}), 400)
    assert error_fields(body) == [(0, "timestamp")]


def test_timestamp_slightly_in_the_future_is_accepted(meter, device_client, settings):
    # Device clocks drift; a few seconds ahead is inside the documented window.
    soon = timezone.now() + timedelta(seconds=settings.INGEST_MAX_FUTURE_SECONDS // 2)
    assert device_client(meter).post(SINGLE, {"timestamp": soon.isoformat(), "total_power": 1}).status_code == 201


@pytest.mark.parametrize(
    "token",
    [b"NaN", b"Infinity", b"-Infinity", b"1e999"],
)
def test_non_finite_numbers_as_raw_json_tokens_are_rejected(meter, device_client, token):
    raw = b'{"timestamp":"2025-10-16T10:00:00Z","total_power":' + token + b"}"
    response = device_client(meter).post(SINGLE, raw=raw)
    assert_rejected(response, 400)


@pytest.mark.parametrize("value", ["3600", "NaN", "Infinity", "-Infinity", "", True, False, [3600.0], {"w": 1}])
@pytest.mark.parametrize("path", [SINGLE, BULK])
def test_non_numbers_where_numbers_belong_are_rejected(meter, device_client, value, path):
    item = {"timestamp": "2025-10-16T10:00:00Z", "total_power": value}
    body = assert_rejected(device_client(meter).post(path, [item] if path == BULK else item), 400)
    assert error_fields(body) == [(0, "total_power")]


@pytest.mark.parametrize("field", ["total_energy", "export_energy"])
def test_negative_energy_register_is_rejected(meter, device_client, field):
    body = assert_rejected(device_client(meter).post(SINGLE, reading(0, **{field: -0.1})), 400)
    assert error_fields(body) == [(0, field)]


def test_empty_bulk_array_is_a_400(meter, device_client):
    assert_rejected(device_client(meter).post(BULK, []), 400)


@pytest.mark.parametrize("payload", [{"timestamp": ts(0)}, "readings", 42, None])
def test_bulk_needs_an_array(meter, device_client, payload):
    assert_rejected(device_client(meter).post(BULK, payload), 400)


@pytest.mark.parametrize("payload", [[reading(0)], "reading", 42, None])
def test_single_endpoint_needs_an_object(meter, device_client, payload):
    assert_rejected(device_client(meter).post(SINGLE, payload), 400)


def test_bulk_items_must_be_objects(meter, device_client):
    body = assert_rejected(device_client(meter).post(BULK, [reading(0), "x", 3]), 400)
    assert [index for index, _field in error_fields(body)] == [1, 2]


def test_gateway_reading_for_a_meter_of_another_organization_is_rejected(site, gateway, device_client, other_org):
    foreign = factories.MeterFactory(site=factories.SiteFactory(organization=other_org))
    own = factories.MeterFactory(site=site)
    items = [reading(0, meter_id=own.pk), reading(1, meter_id=foreign.pk), reading(2, meter_serial=foreign.serial)]
    body = assert_rejected(device_client(gateway).post(BULK, items), 400)
    assert error_fields(body) == [(1, "meter_id"), (2, "meter_serial")]


def test_gateway_reading_for_a_meter_of_another_site_is_rejected(org, gateway, device_client):
    elsewhere = factories.MeterFactory(site=factories.SiteFactory(organization=org))
    body = assert_rejected(device_client(gateway).post(SINGLE, reading(0, meter_id=elsewhere.pk)), 400)
    assert error_fields(body) == [(0, "meter_id")]


def test_gateway_reading_for_a_disabled_meter_is_rejected(site, gateway, device_client):
    disabled = factories.MeterFactory(site=site, is_active=False)
    body = assert_rejected(device_client(gateway).post(SINGLE, reading(0, meter_id=disabled.pk)), 400)
    assert error_fields(body) == [(0, "meter_id")]


def test_gateway_reading_whose_id_and_serial_name_different_meters_is_rejected(site, gateway, device_client):
    first, second = factories.MeterFactory(site=site), factories.MeterFactory(site=site)
    item = reading(0, meter_id=first.pk, meter_serial=second.serial)
    body = assert_rejected(device_client(gateway).post(SINGLE, item), 400)
    assert error_fields(body) == [(0, "meter_serial")]


@pytest.mark.parametrize("path", [SINGLE, BULK])
def test_gateway_reading_naming_no_meter_is_rejected(site, gateway, device_client, path):
    factories.MeterFactory(site=site)
    body = assert_rejected(device_client(gateway).post(path, [reading(0)] if path == BULK else reading(0)), 400)
    assert error_fields(body) == [(0, "meter_id")]


def test_meter_key_posting_for_another_meter_is_rejected(site, meter, device_client):
    other = factories.MeterFactory(site=site)
    items = [reading(0), reading(1, meter_id=other.pk), reading(2, meter_serial=other.serial)]
    body = assert_rejected(device_client(meter).post(BULK, items), 400)
    assert error_fields(body) == [(1, "meter_id"), (2, "meter_serial")]


def test_meter_key_naming_itself_is_accepted(meter, device_client):
    items = [reading(0, meter_id=meter.pk), reading(1, meter_serial=meter.serial)]
    assert device_client(meter).post(BULK, items).json() == {"stored": 2, "duplicates": 0}


# --- device authentication ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["not-a-uuid", "1234", "", "' OR 1=1 --"])
@pytest.mark.parametrize("path", [SINGLE, BULK])
def test_device_key_in_the_wrong_format_is_401(meter, device_client, key, path):
    payload = SEED_BODY if path == SINGLE else b"[" + SEED_BODY + b"]"
    response = device_client(meter).post(path, raw=payload, headers={"HTTP_X_DEVICE_KEY": key})
    assert_rejected(response, 401)


@pytest.mark.parametrize("path", [SINGLE, BULK])
def test_unknown_device_key_is_401(meter, device_client, path):
    payload = SEED_BODY if path == SINGLE else b"[" + SEED_BODY + b"]"
    response = device_client(meter).post(path, raw=payload, headers={"HTTP_X_DEVICE_KEY": str(uuid.uuid4())})
    assert_rejected(response, 401)


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="device lookups are cached only in a shared (Redis) cache")
def test_with_redis_a_made_up_key_asked_again_costs_no_database_query(meter, device_client, django_assert_num_queries):
    cache.clear()
    made_up = {"HTTP_X_DEVICE_KEY": str(uuid.uuid4())}
    assert_rejected(device_client(meter).post(SINGLE, raw=SEED_BODY, headers=made_up), 401)

    with django_assert_num_queries(0):
        again = device_client(meter).post(SINGLE, raw=SEED_BODY, headers=made_up)
    assert_rejected(again, 401)


def test_a_key_refused_as_unknown_works_as_soon_as_its_device_exists(site, device_client):
    cache.clear()
    key = uuid.uuid4()
    stranger = factories.MeterFactory.build(site=site, organization=site.organization, device_key=key)
    assert_rejected(device_client(stranger).post(SINGLE, reading(0)), 401)

    meter = factories.MeterFactory(site=site, device_key=key)

    assert device_client(meter).post(SINGLE, reading(0)).status_code == 201


def test_missing_device_key_is_401(anonymous_api):
    response = anonymous_api.post(SINGLE, data=SEED_BODY, content_type="application/json")
    assert_rejected(response, 401)


def test_oauth_token_cannot_post_readings(api):
    response = api.post(SINGLE, data=SEED_BODY, content_type="application/json")
    assert_rejected(response, 401)


def test_disabled_meter_key_is_401_at_once(meter, device_client):
    # Accepted first, so a deployment with a device cache has the key cached when it is disabled.
    assert device_client(meter).post(SINGLE, reading(0)).status_code == 201
    Reading.objects.all().delete()
    meter.is_active = False
    meter.save()
    assert_rejected(device_client(meter).post(SINGLE, raw=SEED_BODY, sign=True), 401)


@pytest.mark.parametrize("signature", ["abc123", "0" * 63, "0" * 65, "sha256=" + "0" * 40, "0" * 128])
def test_signature_of_the_wrong_length_is_403(meter, device_client, signature):
    response = device_client(meter).post(SINGLE, raw=SEED_BODY, headers={"HTTP_X_SIGNATURE": signature})
    assert_rejected(response, 403)


@pytest.mark.parametrize(
    "signature",
    ["0" * 64, "z" * 64, "é" * 64, "sha256=" + "f" * 64],
    ids=["zeros", "non-hex", "non-ascii", "prefixed-wrong"],
)
def test_bad_signature_is_403(meter, device_client, signature):
    response = device_client(meter).post(SINGLE, raw=SEED_BODY, headers={"HTTP_X_SIGNATURE": signature})
    assert_rejected(response, 403)


def test_signature_of_another_body_is_403(meter, device_client):
    other_body = SEED_BODY.replace(b"3600.0", b"3601.0")
    signature = sign(meter.device_secret, other_body)
    response = device_client(meter).post(SINGLE, raw=SEED_BODY, headers={"HTTP_X_SIGNATURE": signature})
    assert_rejected(response, 403)


def test_signature_with_another_devices_secret_is_403(site, meter, device_client):
    other = factories.MeterFactory(site=site)
    signature = sign(other.device_secret, SEED_BODY)
    response = device_client(meter).post(SINGLE, raw=SEED_BODY, headers={"HTTP_X_SIGNATURE": signature})
    assert_rejected(response, 403)


def test_meter_requiring_a_signature_rejects_an_unsigned_request(meter, device_client):
    meter.require_signature = True
    meter.save()
    assert_rejected(device_client(meter).post(SINGLE, raw=SEED_BODY), 403)
    assert device_client(meter).post(SINGLE, raw=SEED_BODY, sign=True).status_code == 201


def test_gateway_requiring_a_signature_rejects_an_unsigned_request(site, gateway, device_client):
    gateway.require_signature = True
    gateway.save()
    target = factories.MeterFactory(site=site)
    assert_rejected(device_client(gateway).post(BULK, [reading(0, meter_id=target.pk)]), 403)


@pytest.mark.parametrize("prefix", ["sha256=", "SHA256="])
def test_signature_with_sha256_prefix_is_accepted(meter, device_client, prefix):
    signature = prefix + sign(meter.device_secret, SEED_BODY)
    response = device_client(meter).post(SINGLE, raw=SEED_BODY, headers={"HTTP_X_SIGNATURE": signature})
    assert response.status_code == 201, response.content


def test_signature_is_computed_over_the_raw_body_not_reserialized_json(meter, device_client):
    raw = b'{ "timestamp" : "2025-10-16T10:00:00Z",\n  "total_power" : 3600 }'
    response = device_client(meter).post(SINGLE, raw=raw, sign=True)
    assert response.status_code == 201, response.content


def _vector(name: str) -> dict:
    cases = vectors(HMAC_VECTORS)["cases"]
    return next(case for case in cases if case["name"] == name)


def test_signature_is_valid_matches_githubs_known_answer_vector():
    case = _vector("github_docs_kat")
    header = case["header"]["X-Hub-Signature-256"]
    assert header.startswith("sha256=")
    signature = header.removeprefix("sha256=")

    assert case["expected_valid"] is True
    assert signature_is_valid(secret=case["secret"], body=case["body"].encode(), signature=signature) is True
    assert signature_is_valid(secret=case["secret"], body=b"Hello, World?", signature=signature) is False
    assert signature_is_valid(secret=case["secret"] + "!", body=case["body"].encode(), signature=signature) is False


def test_device_signing_the_github_vector_body_is_accepted_end_to_end(meter, device_client):
    # The same algorithm the conformance vector pins, through the HTTP door with a meter's secret.
    case = _vector("github_docs_kat")
    meter.device_secret = case["secret"]
    meter.save()
    response = device_client(meter).post(
        SINGLE, raw=SEED_BODY, headers={"HTTP_X_SIGNATURE": "sha256=" + sign(case["secret"], SEED_BODY)}
    )
    assert response.status_code == 201, response.content


# --- rate limit -----------------------------------------------------------------------------


def _wait_for_fresh_rate_window(margin: float = 5.0) -> None:
    # The limit counts per wall-clock minute; don't straddle a window boundary.
    into = time.time() % 60
    if into > 60 - margin:
        time.sleep(60 - into + 0.1)


def test_fourth_request_in_a_minute_is_429_with_retry_after(meter, site, device_client, settings):
    settings.DEVICE_RATE_LIMIT_PER_MINUTE = 3
    cache.clear()
    _wait_for_fresh_rate_window()
    client = device_client(meter)
    answers = [client.post(SINGLE, reading(i)).status_code for i in range(3)]
    assert answers == [201, 201, 201]

    limited = client.post(SINGLE, reading(3))

    assert limited.status_code == 429, limited.content
    assert limited["Content-Type"].startswith("application/json")
    assert limited.json()["detail"]
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert Reading.objects.count() == 3
    # The limit is per device: another meter still gets through.
    assert device_client(factories.MeterFactory(site=site)).post(SINGLE, reading(3)).status_code == 201


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="the shared round trip needs the Redis cache")
def test_with_redis_the_cached_device_lookup_counts_the_rate_limit_hit_in_the_same_round_trip(
    meter, device_client, settings, monkeypatch
):
    from energy.api import throttling
    from energy.devices import services as devices

    settings.DEVICE_RATE_LIMIT_PER_MINUTE = 2
    cache.clear()
    _wait_for_fresh_rate_window()
    client = device_client(meter)
    assert client.post(SINGLE, reading(0)).status_code == 201  # caches the device

    def separate_round_trip(**kwargs):
        raise AssertionError("a second Redis round trip")

    monkeypatch.setattr(devices, "device_for_key", separate_round_trip)
    monkeypatch.setattr(throttling, "window_hit", lambda *args, **kwargs: separate_round_trip())
    assert client.post(SINGLE, reading(1)).status_code == 201
    limited = client.post(SINGLE, reading(2))
    assert limited.status_code == 429 and 1 <= int(limited["Retry-After"]) <= 60
    assert Reading.objects.count() == 2


# --- data.ingested --------------------------------------------------------------------------


def test_one_data_ingested_event_per_batch_with_only_the_stored_readings(
    org, meter, device_client, events, django_capture_on_commit_callbacks
):
    client = device_client(meter)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(SINGLE, reading(0))
    events.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(BULK, [reading(0), reading(1), reading(2), reading(1), reading(3, battery_soc=50.0)])

    assert response.json() == {"stored": 3, "duplicates": 2}
    assert len(events) == 1
    event = events[0]
    assert event.key == DATA_INGESTED
    assert event.organization_id == org.pk
    assert event.payload["count"] == 3
    readings = event.payload["readings"]
    assert [(r["meter_id"], r["timestamp"]) for r in readings] == [
        (meter.pk, ts(1)),
        (meter.pk, ts(2)),
        (meter.pk, ts(3)),
    ]
    assert readings[0]["total_power"] == 1001.0
    assert readings[2]["battery_soc"] == 50.0
    assert event.payload["device"] == {"kind": "meter", "id": meter.pk}


def test_data_ingested_never_carries_the_device_credential(
    site, gateway, device_client, events, django_capture_on_commit_callbacks
):
    target = factories.MeterFactory(site=site)
    with django_capture_on_commit_callbacks(execute=True):
        device_client(gateway).post(SINGLE, reading(0, meter_id=target.pk))
    text = str(events[0].payload)
    assert str(gateway.device_key) not in text
    assert gateway.device_secret not in text
    assert events[0].payload["device"] == {"kind": "gateway", "id": gateway.pk}


def test_single_reading_publishes_one_event(meter, device_client, events, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        device_client(meter).post(SINGLE, raw=SEED_BODY, sign=True)
    assert len(events) == 1
    assert events[0].payload["readings"][0]["total_power"] == 3600.0


def test_a_batch_of_1000_makes_one_event(meter, device_client, events, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        device_client(meter).post(BULK, [reading(i) for i in range(1000)])
    assert len(events) == 1
    assert events[0].payload["count"] == 1000
    assert len(events[0].payload["readings"]) == 1000


def test_duplicates_only_and_rejected_batches_publish_nothing(
    meter, device_client, events, django_capture_on_commit_callbacks
):
    client = device_client(meter)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(SINGLE, reading(0))
    events.clear()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        client.post(SINGLE, reading(0))
        client.post(BULK, [reading(5), reading(6, total_power="x")])
    assert events == []
    assert callbacks == []


@pytest.mark.parametrize("name", ["temp\u0000c", "\u0000"])
def test_extra_field_name_with_a_nul_character_is_a_400(meter, device_client, name):
    # PostgreSQL's jsonb cannot hold \u0000; the name is nonsense anyway, so say so.
    body = assert_rejected(device_client(meter).post(SINGLE, reading(0, **{name: 1.0})), 400)
    assert error_fields(body) == [(0, name)]

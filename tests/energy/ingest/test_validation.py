"""energy.ingest.validation: one reading and a batch, as devices send them (no database needed)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from energy.ingest.validation import NO_MEASUREMENT, ReadingsInvalid, reading_parse, readings_parse
from energy.models import READING_FIELDS

NOW = datetime(2025, 10, 16, 10, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=300)
SEED_BODY = {"total_power": 3600.0, "total_energy": 1500.0, "voltage_a": 230.1, "timestamp": "2025-10-16T10:00:00Z"}


def parse(item, index=0):
    return reading_parse(item, index=index, now=NOW, max_future=WINDOW)


def errors_of(item) -> list[dict]:
    with pytest.raises(ReadingsInvalid) as caught:
        parse(item)
    return [error.as_dict() for error in caught.value.errors]


def fields_of(item) -> set[str]:
    return {error["field"] for error in errors_of(item)}


def test_seed_reading_is_parsed_into_typed_values():
    reading = parse(SEED_BODY)
    assert reading.ts == NOW
    assert reading.values == {"total_power": 3600.0, "total_energy": 1500.0, "voltage_a": 230.1}
    assert reading.extra == {}
    assert reading.meter_id is None and reading.meter_serial is None


def test_offset_timestamp_is_converted_to_utc():
    reading = parse({"timestamp": "2025-10-16T12:00:00+02:00", "total_power": 1})
    assert reading.ts == NOW
    assert reading.ts.utcoffset() == timedelta(0)


def test_integers_are_accepted_as_floats():
    reading = parse({"timestamp": "2025-10-16T10:00:00Z", "total_power": 7})
    assert reading.values["total_power"] == 7.0
    assert isinstance(reading.values["total_power"], float)


def test_null_measurement_is_treated_as_absent():
    reading = parse({"timestamp": "2025-10-16T10:00:00Z", "total_power": None, "voltage_a": 230.0})
    assert reading.values == {"voltage_a": 230.0}


@pytest.mark.parametrize(
    "item",
    [
        {"timestamp": "2025-10-16T10:00:00Z"},
        {"timestamp": "2025-10-16T10:00:00Z", "total_power": None, "earth_leakage_ma": None},
        {"timestamp": "2025-10-16T10:00:00Z", "meter_serial": "SN-1", "meter_id": 3},
    ],
)
def test_reading_without_any_measurement_is_refused(item):
    assert errors_of(item) == [{"index": 0, "field": "", "message": NO_MEASUREMENT}]


def test_breaker_state_alone_is_a_measurement():
    assert parse({"timestamp": "2025-10-16T10:00:00Z", "breaker_state": "open"}).extra == {"breaker_state": "open"}


def test_unknown_numeric_fields_go_to_extra():
    reading = parse({"timestamp": "2025-10-16T10:00:00Z", "total_power": 1.0, "battery_soc": 81.5, "temp_c": -4})
    assert reading.extra == {"battery_soc": 81.5, "temp_c": -4.0}
    assert "battery_soc" not in reading.values


def test_gateway_routing_fields_are_kept():
    reading = parse({"timestamp": "2025-10-16T10:00:00Z", "meter_id": 12, "total_power": 1.0})
    assert reading.meter_id == 12
    reading = parse({"timestamp": "2025-10-16T10:00:00Z", "meter_serial": "SN-1", "total_power": 1.0})
    assert reading.meter_serial == "SN-1"


@pytest.mark.parametrize(
    "item",
    [
        {"total_power": 1.0},
        {"timestamp": None, "total_power": 1.0},
        {"timestamp": "", "total_power": 1.0},
        {"timestamp": "yesterday", "total_power": 1.0},
        {"timestamp": "2025-13-40T99:00:00Z", "total_power": 1.0},
        {"timestamp": 1760608800, "total_power": 1.0},
        {"timestamp": "2025-10-16T10:00:00", "total_power": 1.0},  # naive
    ],
    ids=["missing", "null", "empty", "words", "impossible-date", "epoch-number", "naive"],
)
def test_bad_timestamps_are_rejected(item):
    assert fields_of(item) == {"timestamp"}


def test_timestamp_just_inside_the_future_window_is_accepted():
    ts = (NOW + WINDOW).isoformat()
    assert parse({"timestamp": ts, "total_power": 1.0}).ts == NOW + WINDOW


def test_timestamp_beyond_the_future_window_is_rejected():
    ts = (NOW + WINDOW + timedelta(seconds=1)).isoformat()
    errors = errors_of({"timestamp": ts, "total_power": 1.0})
    assert errors[0]["field"] == "timestamp"
    assert "future" in errors[0]["message"]


@pytest.mark.parametrize(
    "value",
    ["3600", "abc", True, False, float("nan"), float("inf"), float("-inf"), "NaN", "Infinity", [1.0], {"v": 1.0}],
    ids=repr,
)
def test_non_numbers_are_rejected_where_numbers_belong(value):
    errors = errors_of({"timestamp": "2025-10-16T10:00:00Z", "total_power": value})
    assert errors == [{"index": 0, "field": "total_power", "message": "must be a finite number"}]


def test_non_numeric_unknown_field_is_rejected_not_stored_in_extra():
    assert fields_of({"timestamp": "2025-10-16T10:00:00Z", "firmware": "1.2.3"}) == {"firmware"}


@pytest.mark.parametrize("name", ["total_energy", "export_energy", "voltage_a", "frequency", "thd_v_pct"])
def test_negative_values_are_rejected_where_physics_forbids_them(name):
    assert fields_of({"timestamp": "2025-10-16T10:00:00Z", name: -0.5}) == {name}


def test_negative_power_is_accepted_for_export():
    assert parse({"timestamp": "2025-10-16T10:00:00Z", "total_power": -4200.0}).values["total_power"] == -4200.0


@pytest.mark.parametrize("value", [-1.01, 1.01])
def test_power_factor_outside_unit_range_is_rejected(value):
    assert fields_of({"timestamp": "2025-10-16T10:00:00Z", "power_factor": value}) == {"power_factor"}


@pytest.mark.parametrize("field,value", [("meter_id", "7"), ("meter_id", True), ("meter_id", 1.5), ("meter_serial", 7)])
def test_bad_routing_fields_are_rejected(field, value):
    assert field in fields_of({"timestamp": "2025-10-16T10:00:00Z", "total_power": 1.0, field: value})


@pytest.mark.parametrize("item", [[], "reading", 3, None])
def test_a_reading_must_be_an_object(item):
    assert errors_of(item)[0]["index"] == 0


def test_every_bad_field_of_one_reading_is_reported():
    errors = errors_of({"timestamp": "nope", "total_power": "x", "total_energy": -1})
    assert {error["field"] for error in errors} == {"timestamp", "total_power", "total_energy"}


def test_batch_reports_each_bad_item_by_index_and_field():
    items = [
        SEED_BODY,
        {"timestamp": "2025-10-16T10:01:00Z", "total_power": "high"},
        SEED_BODY,
        {"total_power": 1.0},
    ]
    with pytest.raises(ReadingsInvalid) as caught:
        readings_parse(items, now=NOW, max_future=WINDOW)
    assert [(e.index, e.field) for e in caught.value.errors] == [(1, "total_power"), (3, "timestamp")]


def test_valid_batch_keeps_request_order_and_indexes():
    items = [{"timestamp": f"2025-10-16T09:0{i}:00Z", "total_power": float(i)} for i in range(5)]
    parsed = readings_parse(items, now=NOW, max_future=WINDOW)
    assert [r.index for r in parsed] == [0, 1, 2, 3, 4]
    assert [r.values["total_power"] for r in parsed] == [0.0, 1.0, 2.0, 3.0, 4.0]


@given(st.floats(min_value=-1e10, max_value=1e10))
def test_any_plausible_float_is_accepted_as_total_power(value):
    reading = parse({"timestamp": "2025-10-16T10:00:00Z", "total_power": value})
    assert reading.values["total_power"] == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("total_power", 1.7e308),  # finite, but no installation draws it (issue 17: it broke analytics)
        ("total_power", -2e10),
        ("total_energy", 1.7e308),
        ("export_energy", 2e12),
        ("voltage_a", 2e6),
        ("frequency", 5000.0),
        ("current_b", -2e6),
        ("power_factor", 1.5),
        ("earth_leakage_ma", 1e7),
        ("voltage_ab", 1e9),
    ],
)
def test_implausible_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ReadingsInvalid) as caught:
        parse({"timestamp": "2025-10-16T10:00:00Z", field: value})
    assert [(error.field, "must be between" in error.message) for error in caught.value.errors] == [(field, True)]


@given(
    field=st.sampled_from(sorted(READING_FIELDS)),
    value=st.floats(allow_nan=False, allow_infinity=False),
)
def test_every_typed_field_is_accepted_exactly_within_its_bounds(field, value):
    _unit, low, high = READING_FIELDS[field]
    item = {"timestamp": "2025-10-16T10:00:00Z", field: value}
    if low <= value <= high:
        assert parse(item).values[field] == value
    else:
        with pytest.raises(ReadingsInvalid):
            parse(item)


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00Z", "1900-01-01T00:00:00Z", "1999-12-31T23:59:59Z"])
def test_readings_from_a_clock_never_set_are_refused(stamp):
    with pytest.raises(ReadingsInvalid) as caught:
        parse({"timestamp": stamp, "total_power": 1.0})
    assert [error.field for error in caught.value.errors] == ["timestamp"]
    assert "2000-01-01" in caught.value.errors[0].message


def test_the_earliest_accepted_instant_is_the_first_of_the_year():
    assert parse({"timestamp": "2000-01-01T00:00:00Z", "total_power": 1.0}).ts == datetime(2000, 1, 1, tzinfo=UTC)


non_numbers = st.one_of(
    st.text(),
    st.booleans(),
    st.lists(st.floats()),
    st.dictionaries(st.text(), st.floats()),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)


@given(non_numbers)
def test_any_non_number_is_rejected_as_total_power(value):
    with pytest.raises(ReadingsInvalid) as caught:
        parse({"timestamp": "2025-10-16T10:00:00Z", "total_power": value})
    assert [e.field for e in caught.value.errors] == ["total_power"]


def test_reading_fields_cover_the_documented_units():
    # Every typed column the issue lists must be a known reading field (not routed to extra).
    expected = {
        "total_power", "total_energy", "voltage_a", "voltage_b", "voltage_c", "current_a", "current_b",
        "current_c", "frequency", "power_factor", "thd_v_pct", "thd_i_pct", "reactive_power", "export_energy",
    }  # fmt: skip
    assert expected <= set(READING_FIELDS)
    reading = parse({"timestamp": "2025-10-16T10:00:00Z", **dict.fromkeys(expected, 0.5)})
    assert reading.extra == {}


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-05:00"])
def test_timestamp_that_leaves_the_calendar_in_utc_is_a_field_error(value):
    # Valid ISO 8601, but converting it to UTC leaves year 1..9999: a 400, never a 500.
    assert fields_of({"timestamp": value, "total_power": 1.0}) == {"timestamp"}


@given(st.one_of(st.text(), st.datetimes(timezones=st.timezones()).map(datetime.isoformat)))
def test_any_timestamp_string_is_parsed_or_reported_never_crashes(value):
    try:
        reading = parse({"timestamp": value, "total_power": 1.0})
    except ReadingsInvalid as exc:
        assert [e.field for e in exc.errors] == ["timestamp"]
    else:
        assert reading.ts.utcoffset() == timedelta(0)

"""Validation of device readings as they arrive over HTTP, MQTT or WebSockets.

Written by hand rather than with a DRF serializer per item: a bulk request carries up to
5,000 readings and must report every bad item's index and field at once, route unknown numeric
fields into `extra`, and cost microseconds per reading (a serializer per item costs well over
an order of magnitude more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from energy.models import READING_FIELDS

# Keys a reading may carry besides its measurements.
TIMESTAMP = "timestamp"
METER_ID = "meter_id"
METER_SERIAL = "meter_serial"
RESERVED = frozenset({TIMESTAMP, METER_ID, METER_SERIAL})
MAX_EXTRA_FIELDS = 64
NO_MEASUREMENT = "has no measurement: send at least one non-null field besides timestamp, meter_id and meter_serial"
MAX_EXTRA_NAME = 64
# Readings stamped earlier are a device clock that was never set (year 1, 1970, 1900), not history.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)

# Fields without a typed column that the platform still understands (power quality and
# protection, docs/power-quality.md). They are stored in `extra` under the same name, so the
# readings table keeps one shape; these bounds are checked like a typed column's.
KNOWN_EXTRA_NUMERIC: dict[str, tuple[str, float, float]] = {
    "voltage_ab": ("V", 0.0, 1e6),  # line-line voltages: imbalance uses NEMA's LVUR when all three are sent
    "voltage_bc": ("V", 0.0, 1e6),
    "voltage_ca": ("V", 0.0, 1e6),
    "earth_leakage_ma": ("mA", 0.0, 1e6),  # residual (earth leakage) current
}
# The one non-numeric reading field: the breaker position the meter reports. "tripped" is an
# open breaker that protection opened (a trip), as distinct from an operator opening it.
BREAKER_STATE = "breaker_state"
BREAKER_STATES = frozenset({"open", "closed", "tripped"})


@dataclass(frozen=True, slots=True)
class ReadingInput:
    """A validated reading, not yet bound to a stored meter."""

    index: int
    ts: datetime
    values: dict[str, float]
    extra: dict[str, float | str]
    meter_id: int | None = None
    meter_serial: str | None = None


@dataclass(frozen=True, slots=True)
class FieldError:
    index: int | None
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"index": self.index, "field": self.field, "message": self.message}


class ReadingsInvalid(Exception):
    """Raised with every problem found; the batch is rejected as a whole."""

    def __init__(self, errors: list[FieldError]):
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


def _out_of_bounds(spec: tuple[str, float, float]) -> str:
    unit, low, high = spec
    if low == -1.0 and high == 1.0:
        return "must be between -1 and 1"
    return f"must be between {low:g} and {high:g}{' ' + unit if unit else ''}"


def _number(value: object) -> float | None:
    # bool is an int subclass in Python but never a measurement.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def parse_timestamp(value: object) -> datetime:
    if not isinstance(value, str) or not value:
        raise ValueError("must be an ISO 8601 string such as 2025-10-16T10:00:00Z")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 timestamp") from None
    if ts.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2025-10-16T10:00:00Z")
    try:
        return ts.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError(f"{value!r} is out of range in UTC") from None


def reading_parse(
    item: object, *, index: int, now: datetime, max_future: timedelta, earliest: datetime = EARLIEST
) -> ReadingInput:
    """Validate one reading; raises ReadingsInvalid listing each bad field of it."""
    if not isinstance(item, dict):
        raise ReadingsInvalid([FieldError(index, "", "each reading must be a JSON object")])
    errors: list[FieldError] = []
    values: dict[str, float] = {}
    extra: dict[str, float | str] = {}
    ts = None
    if TIMESTAMP not in item:
        errors.append(FieldError(index, TIMESTAMP, "is required"))
    else:
        try:
            ts = parse_timestamp(item[TIMESTAMP])
        except ValueError as exc:
            errors.append(FieldError(index, TIMESTAMP, str(exc)))
        else:
            if ts > now + max_future:
                errors.append(
                    FieldError(index, TIMESTAMP, f"is more than {int(max_future.total_seconds())} s in the future")
                )
            elif ts < earliest:
                errors.append(FieldError(index, TIMESTAMP, f"is before {earliest:%Y-%m-%d} (INGEST_EARLIEST_YEAR)"))
    meter_id = item.get(METER_ID)
    if meter_id is not None and (isinstance(meter_id, bool) or not isinstance(meter_id, int)):
        errors.append(FieldError(index, METER_ID, "must be an integer meter id"))
    meter_serial = item.get(METER_SERIAL)
    if meter_serial is not None and not isinstance(meter_serial, str):
        errors.append(FieldError(index, METER_SERIAL, "must be a string"))
    for name, raw in item.items():
        if raw is None:
            continue
        # Typed measurements first: they are nearly every field of nearly every reading.
        spec = READING_FIELDS.get(name)
        if spec is not None:
            # orjson gives a JSON number as an exact float or int; finite floats need no more checks.
            number = raw if type(raw) is float and math.isfinite(raw) else _number(raw)
            if number is None:
                errors.append(FieldError(index, name, "must be a finite number"))
            elif not spec[1] <= number <= spec[2]:
                errors.append(FieldError(index, name, _out_of_bounds(spec)))
            else:
                values[name] = number
            continue
        if name in RESERVED:
            continue
        if name == BREAKER_STATE:
            state = raw.strip().lower() if isinstance(raw, str) else None
            if state not in BREAKER_STATES:
                errors.append(FieldError(index, name, f"must be one of {', '.join(sorted(BREAKER_STATES))}"))
            else:
                extra[name] = state
            continue
        number = _number(raw)
        if number is None:
            errors.append(FieldError(index, name, "must be a finite number"))
            continue
        known = KNOWN_EXTRA_NUMERIC.get(name)
        if known is not None and not known[1] <= number <= known[2]:
            errors.append(FieldError(index, name, _out_of_bounds(known)))
            continue
        if len(name) > MAX_EXTRA_NAME:
            errors.append(FieldError(index, name, f"field names are at most {MAX_EXTRA_NAME} characters"))
        elif not name.isprintable():
            # Control characters (\u0000 above all: PostgreSQL jsonb rejects it) make no field name.
            errors.append(FieldError(index, name, "field names may not contain control characters"))
        extra[name] = number
    if len(extra) > MAX_EXTRA_FIELDS:
        errors.append(FieldError(index, "", f"at most {MAX_EXTRA_FIELDS} extra numeric fields"))
    elif not values and not extra and not errors:
        # A timestamp alone (or with every measurement null) says nothing, yet would claim the
        # meter's instant: the reading that follows with values would become a duplicate.
        errors.append(FieldError(index, "", NO_MEASUREMENT))
    if errors:
        raise ReadingsInvalid(errors)
    return ReadingInput(index=index, ts=ts, values=values, extra=extra, meter_id=meter_id, meter_serial=meter_serial)


def readings_parse(
    items: list, *, now: datetime, max_future: timedelta, earliest: datetime = EARLIEST
) -> list[ReadingInput]:
    """Validate a batch; raises ReadingsInvalid with the errors of every bad item."""
    parsed: list[ReadingInput] = []
    errors: list[FieldError] = []
    for index, item in enumerate(items):
        try:
            parsed.append(reading_parse(item, index=index, now=now, max_future=max_future, earliest=earliest))
        except ReadingsInvalid as exc:
            errors.extend(exc.errors)
    if errors:
        raise ReadingsInvalid(errors)
    return parsed

"""Storing readings: validation and binding to meters (`readings_prepare`), the INSERT and
detection in one transaction (`readings_store`), and the `data.ingested` announcement.

`reading_batch_ingest` is the one ingest path: the HTTP views and the WebSocket consumer call
it; the MQTT bridge, which holds many devices' batches at once, calls its two halves,
`readings_prepare` per device and `readings_store` once for all of them; the single-reading
HTTP view calls `reading_batch_ingest_grouped` (energy.ingest.group_commit), which does the same
for concurrent requests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from energy.analytics.rollups import rollups_dirty_cte_sql, rollups_mark_dirty, rollups_refresh_on_commit
from energy.events import DATA_INGESTED
from energy.ingest.validation import METER_ID, METER_SERIAL, FieldError, ReadingInput, ReadingsInvalid, readings_parse
from energy.models import READING_FIELDS, Gateway, Meter, Reading
from energy.power_quality import detection
from energy.power_quality.rules import Sample, sample_from
from joulepoint.events import publish_many
from joulepoint.platform.db import prepared_cursor

logger = logging.getLogger(__name__)


COLUMNS = ("meter_id", "ts", *READING_FIELDS, "extra", "received_at")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
# Types of the arrays PostgreSQL inserts from, by column; every other column is float8.
PG_ARRAY_TYPES = {"meter_id": "bigint", "ts": "timestamptz", "extra": "jsonb", "received_at": "timestamptz"}


class StoredReading(NamedTuple):
    """A reading as stored: what a single-reading POST answers with."""

    id: int
    meter_id: int
    ts: datetime
    values: dict[str, float | None]  # the measurements of READING_FIELDS sent; the others are NULL
    extra: dict
    received_at: datetime

    @classmethod
    def of(cls, reading: Reading) -> StoredReading:
        values = {name: getattr(reading, name) for name in READING_FIELDS}
        return cls(reading.pk, reading.meter_id, reading.ts, values, reading.extra, reading.received_at)


@dataclass
class IngestResult:
    stored: int
    duplicates: int
    # (meter_id, ts) of each reading this call stored, in request order.
    stored_keys: list[tuple[int, datetime]] = field(default_factory=list)
    # (meter_id, ts) of each accepted reading, stored or duplicate, in request order.
    keys: list[tuple[int, datetime]] = field(default_factory=list)
    # Database id of each reading this call stored, and what was stored, to answer without a query.
    reading_ids: dict[tuple[int, datetime], int] = field(default_factory=dict)
    inputs: dict[tuple[int, datetime], ReadingInput] = field(default_factory=dict)
    received_at: datetime | None = None

    def stored_reading(self, key: tuple[int, datetime]) -> StoredReading:
        """The reading stored under `key`: built without a query when this call stored it (no
        model instance either: a measurable share of a single-reading request's CPU), read back when
        it was a duplicate of one stored before."""
        if key not in self.reading_ids:
            return StoredReading.of(Reading.objects.get(meter_id=key[0], ts=key[1]))
        reading = self.inputs[key]
        return StoredReading(self.reading_ids[key], key[0], reading.ts, reading.values, reading.extra, self.received_at)


def _bind_meters(device: Meter | Gateway, readings: list[ReadingInput]) -> list[int]:
    """The meter id of each reading; a meter key posts for itself, a gateway for its site's meters."""
    errors: list[FieldError] = []
    if isinstance(device, Meter):
        for reading in readings:
            if reading.meter_id not in (None, device.pk):
                errors.append(FieldError(reading.index, METER_ID, "a meter key posts only its own readings"))
            elif reading.meter_serial not in (None, device.serial):
                errors.append(FieldError(reading.index, METER_SERIAL, "a meter key posts only its own readings"))
        if errors:
            raise ReadingsInvalid(errors)
        return [device.pk] * len(readings)

    # A disabled meter is refused through a gateway just as its own key is.
    site_meters = Meter.objects.filter(site_id=device.site_id, organization_id=device.organization_id, is_active=True)
    by_id: dict[int, int] = {}
    by_serial: dict[str, int] = {}
    for pk, serial in site_meters.values_list("pk", "serial"):
        by_id[pk] = pk
        by_serial[serial] = pk
    meter_ids: list[int] = []
    for reading in readings:
        if reading.meter_id is not None:
            pk = by_id.get(reading.meter_id)
            if pk is not None and reading.meter_serial is not None and by_serial.get(reading.meter_serial) != pk:
                errors.append(FieldError(reading.index, METER_SERIAL, "names a different meter than meter_id"))
            elif pk is None:
                errors.append(
                    FieldError(reading.index, METER_ID, f"meter {reading.meter_id} is not at this gateway's site")
                )
        elif reading.meter_serial is not None:
            pk = by_serial.get(reading.meter_serial)
            if pk is None:
                errors.append(
                    FieldError(
                        reading.index, METER_SERIAL, f"meter {reading.meter_serial!r} is not at this gateway's site"
                    )
                )
        else:
            pk = None
            errors.append(
                FieldError(reading.index, METER_ID, "a gateway must name each reading's meter_id or meter_serial")
            )
        meter_ids.append(pk)
    if errors:
        raise ReadingsInvalid(errors)
    return meter_ids


# Public name for other doors that bind a device's payload to meters (protection events).
bind_meters = _bind_meters


def _insert_readings(rows: list[dict], *, lock_meter_ids: list[int]) -> dict[tuple[int, datetime], int]:
    """Insert rows (dicts keyed by COLUMNS, `extra` a dict; a missing measurement is NULL),
    skipping (meter, ts) already stored, and mark the rollup windows of the stored ones dirty;
    returns the id of each (meter, ts) stored. Before any row is inserted, the PQ detection lock
    of `lock_meter_ids` is taken (detection.meters_lock_sql) on PostgreSQL; SQLite needs none,
    its IMMEDIATE transactions (settings) already serialize writers.

    PostgreSQL gets one INSERT … SELECT FROM unnest(one array per column): a 5,000-row batch is
    a single round trip, several times faster than Django's multi-row bulk_create. orjson writes
    each array in C (`_pg_array`), where psycopg would adapt a list element by element in
    Python. Typed arrays rather than one JSON document: PostgreSQL reads them in about half the
    time json_to_recordset took, and the database is what bulk ingest waits on
    (docs/perf-history.md). The rollup windows are marked by a CTE of the same statement. Other
    databases take one statement per row in the same transaction, and one more for the rollup
    windows.
    """
    # Only identifiers from the model are formatted into the SQL; every value is a parameter.
    table = Reading._meta.db_table
    columns = ", ".join(COLUMNS)
    stored: dict[tuple[int, datetime], int] = {}
    with prepared_cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{PG_ARRAY_TYPES.get(c, 'float8')}[]" for c in COLUMNS)
            select = ", ".join(f"t.{c}" for c in COLUMNS)
            # Stored rows come back with ts as integer microseconds since the epoch: Django's
            # timestamptz loader is psycopg's pure-Python one, where an int8's is C.
            # The lock is an uncorrelated subquery of the INSERT's source (an InitPlan), which
            # PostgreSQL runs before the source yields its first row: whoever inserts a meter's
            # readings holds its lock, so two batches never wait on each other's rows in turn.
            lock, locked = "", ""
            params: list = [
                _pg_jsonb_array([row["extra"] for row in rows])
                if column == "extra"
                else _pg_array([row.get(column) for row in rows])
                for column in COLUMNS
            ]
            if lock_meter_ids:
                lock = f"locked AS ({detection.meters_lock_sql('%s')}), "
                locked = "WHERE (SELECT count(*) FROM locked) >= 0 "
                params.insert(0, lock_meter_ids)
            sql = (
                f"WITH {lock}stored AS (INSERT INTO {table} ({columns}) SELECT {select} "  # noqa: S608
                f"FROM unnest({arrays}) AS t({columns}) {locked}"
                "ON CONFLICT (meter_id, ts) DO NOTHING RETURNING id, meter_id, ts), "
                f"dirty AS ({rollups_dirty_cte_sql(stored='stored')}) "
                "SELECT id, meter_id, (extract(epoch FROM ts) * 1000000)::int8 FROM stored"
            )
            cursor.execute(sql, params)
            key_of = {(row["meter_id"], (row["ts"] - EPOCH) // MICROSECOND): row for row in rows}
            for pk, meter_id, micros in cursor.fetchall():
                row = key_of[(meter_id, micros)]
                stored[(meter_id, row["ts"])] = pk
        else:
            placeholders = ", ".join(["%s"] * len(COLUMNS))
            sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) ON CONFLICT (meter_id, ts) DO NOTHING"  # noqa: S608
            ts_field = Reading._meta.get_field("ts")
            for row in rows:
                adapted = [row.get(column) for column in COLUMNS]
                adapted[1] = ts_field.get_db_prep_save(row["ts"], connection)
                adapted[-2] = orjson.dumps(row["extra"]).decode()
                adapted[-1] = ts_field.get_db_prep_save(row["received_at"], connection)
                cursor.execute(sql, adapted)
                if cursor.rowcount == 1:
                    stored[(row["meter_id"], row["ts"])] = cursor.lastrowid
            rollups_mark_dirty(keys=stored)
    return stored


def _pg_array(values: list) -> str:
    """A PostgreSQL array literal of numbers or aware datetimes (None for NULL), written by orjson:
    its JSON array is the literal once [] become {} and null NULL (no element of these types is
    a string that could hold "null"). Timestamps come out as ISO 8601 with an offset, floats in
    their shortest round-trip form, so PostgreSQL reads back the same values."""
    return "{" + orjson.dumps(values).decode()[1:-1].replace("null", "NULL") + "}"


def _pg_jsonb_array(documents: list[dict]) -> str:
    """A PostgreSQL array literal of JSON documents: each quoted with `"` and `\\` escaped, as
    array input requires, so the JSON text inside arrives unchanged."""
    quoted = (orjson.dumps(document).decode().replace("\\", "\\\\").replace('"', '\\"') for document in documents)
    return "{" + ",".join(f'"{text}"' for text in quoted) + "}"


@dataclass
class PreparedReadings:
    """A device's batch, validated and bound to its meters, not yet stored."""

    device: Meter | Gateway
    # (meter_id, ts) of each accepted reading, in request order (repeats included).
    keys: list[tuple[int, datetime]]
    # The first reading of each (meter_id, ts), in request order.
    by_key: dict[tuple[int, datetime], ReadingInput]
    received_at: datetime


def readings_prepare(*, device: Meter | Gateway, items: list, now: datetime | None = None) -> PreparedReadings:
    """Validate a device's batch and bind each reading to its meter; writes nothing.

    Invalid items reject the whole batch: ReadingsInvalid lists every bad index and field."""
    now = now or timezone.now()
    readings = readings_parse(
        items,
        now=now,
        max_future=timedelta(seconds=settings.INGEST_MAX_FUTURE_SECONDS),
        earliest=datetime(settings.INGEST_EARLIEST_YEAR, 1, 1, tzinfo=UTC),
    )
    meter_ids = _bind_meters(device, readings)
    keys: list[tuple[int, datetime]] = []
    by_key: dict[tuple[int, datetime], ReadingInput] = {}
    for reading, meter_id in zip(readings, meter_ids, strict=True):
        key = (meter_id, reading.ts)
        keys.append(key)
        by_key.setdefault(key, reading)
    return PreparedReadings(device=device, keys=keys, by_key=by_key, received_at=now)


def readings_store(*, batches: list[PreparedReadings], source: str) -> list[IngestResult]:
    """Store prepared batches of one or many devices together: one INSERT, one detection pass
    and one commit for all of them, and one `data.ingested` per batch (its device's readings).

    This is how a door that holds several devices' batches at once (the MQTT bridge) pays the
    per-transaction cost once. A reading whose (meter, timestamp) is already stored, or was
    claimed by an earlier reading of these batches, counts as a duplicate of the later one.
    Power quality and protection detection (energy.power_quality.detection, when PQ_DETECTION_ENABLED)
    runs on the stored readings in the same transaction, so events stand or fall with them.
    """
    rows: list[dict] = []
    claimed: dict[tuple[int, datetime], int] = {}  # key → index of the batch whose reading it is
    detect = settings.PQ_DETECTION_ENABLED
    samples: dict[tuple[int, datetime], Sample] = {}
    for index, batch in enumerate(batches):
        for key, reading in batch.by_key.items():
            if key in claimed:
                continue
            claimed[key] = index
            if detect:
                samples[key] = sample_from(reading.ts, reading.values, reading.extra)
            rows.append(
                {
                    "meter_id": key[0],
                    "ts": reading.ts,
                    **reading.values,
                    "extra": reading.extra,
                    "received_at": batch.received_at,
                }
            )

    # The INSERT itself locks every meter that detection may evaluate.
    lock_meter_ids = detection.detection_meters(samples) if detect else []
    # No savepoint when nested (the MQTT bridge stores many devices' batches in one transaction):
    # a failure here fails the caller's whole transaction, which it retries as a whole.
    with transaction.atomic(savepoint=False):
        stored = _insert_readings(rows, lock_meter_ids=lock_meter_ids) if rows else {}
        stored_keys_of: list[list[tuple[int, datetime]]] = [
            [key for key in batch.by_key if key in stored and claimed[key] == index]
            for index, batch in enumerate(batches)
        ]
        if stored and detect:
            stored_samples: dict[int, list] = {}
            for stored_keys in stored_keys_of:
                for key in stored_keys:
                    stored_samples.setdefault(key[0], []).append(samples[key])
            detection.readings_detect(samples_by_meter=stored_samples, source=source)
        if stored:
            # The rollups of these readings' hours (marked by the insert) are recomputed after
            # commit (analytics).
            rollups_refresh_on_commit()
        # One event per batch, published together: fanned out in order after commit.
        events = [
            (
                batch.device.organization_id,
                DATA_INGESTED,
                _ingested_payload(batch.device, stored_keys, batch.by_key),
                None,
            )
            for batch, stored_keys in zip(batches, stored_keys_of, strict=True)
            if stored_keys
        ]
        if events:
            publish_many(events, source=source)
    return [
        IngestResult(
            stored=len(stored_keys),
            duplicates=len(batch.keys) - len(stored_keys),
            stored_keys=stored_keys,
            keys=batch.keys,
            reading_ids={key: stored[key] for key in stored_keys},
            inputs=batch.by_key,
            received_at=batch.received_at,
        )
        for batch, stored_keys in zip(batches, stored_keys_of, strict=True)
    ]


def reading_batch_ingest(*, device: Meter | Gateway, items: list, source: str) -> IngestResult:
    """Validate and store a batch of readings sent by a device, all or nothing.

    Invalid items reject the whole batch (ReadingsInvalid lists every bad index and field) and
    nothing is written. A reading whose (meter, timestamp) is already stored, or repeats an
    earlier item of the batch, counts as a duplicate. One `data.ingested` event announces the
    readings stored by this call, after commit; see readings_store.
    """
    return readings_store(batches=[readings_prepare(device=device, items=items)], source=source)[0]


def _ingested_payload(device: Meter | Gateway, stored_keys, by_key) -> dict:
    """The batch as automations and dashboards see it: one entry per stored reading.

    The sender is named by kind and id, never by its key: a device key is a credential, and
    this payload reaches webhooks and browsers.
    """
    site_id = device.site_id
    readings = []
    for key in stored_keys:
        reading = by_key[key]
        # orjson writes the UTC timestamp as isoformat() + "Z" would, in a fifth of the time
        # (this runs once per reading of every batch).
        timestamp = orjson.dumps(key[1], option=orjson.OPT_UTC_Z).decode()[1:-1]
        readings.append(
            {"meter_id": key[0], "site_id": site_id, "timestamp": timestamp, **reading.values, **reading.extra}
        )
    return {
        "site_id": site_id,
        "device": {"kind": "meter" if isinstance(device, Meter) else "gateway", "id": device.pk},
        "count": len(stored_keys),
        "readings": readings,
    }

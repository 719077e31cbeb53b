"""Writes and domain logic of the energy app: device credentials and reading ingest.

`reading_batch_ingest` is the one ingest path: the HTTP views call it today, the MQTT bridge
and the WebSocket consumer call it too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from energy import pq_services
from energy.models import READING_FIELDS, DeviceCredential, Gateway, Meter, Reading, new_device_secret
from energy.power_quality import sample_from
from energy.validation import METER_ID, METER_SERIAL, FieldError, ReadingInput, ReadingsInvalid, readings_parse
from joulepoint.events import publish
from joulepoint.events.types import DATA_INGESTED

COLUMNS = ("meter_id", "ts", *READING_FIELDS, "extra", "received_at")
# Column types of the JSON record PostgreSQL inserts from; every other column is float8.
PG_RECORD_TYPES = {"meter_id": "bigint", "ts": "timestamptz", "extra": "text", "received_at": "timestamptz"}


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

    def stored_reading(self, key: tuple[int, datetime]) -> Reading | None:
        """The reading this call stored under `key`, as stored, built without a query."""
        if key not in self.reading_ids:
            return None
        reading = self.inputs[key]
        return Reading(
            id=self.reading_ids[key],
            meter_id=key[0],
            ts=reading.ts,
            extra=reading.extra,
            received_at=self.received_at,
            **reading.values,
        )


def device_credential_rotate(*, device: DeviceCredential) -> DeviceCredential:
    """Give a meter or gateway a new key and secret; the old key stops working at once."""
    device.device_key = uuid.uuid4()
    device.device_secret = new_device_secret()
    device.key_rotated_at = timezone.now()
    device.save(update_fields=["device_key", "device_secret", "key_rotated_at"])
    return device


def device_for_key(*, device_key: uuid.UUID) -> Meter | Gateway | None:
    """The active meter or gateway holding this key."""
    meter = Meter.objects.filter(device_key=device_key, is_active=True).first()
    if meter is not None:
        return meter
    return Gateway.objects.filter(device_key=device_key, is_active=True).first()


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


def _insert_readings(rows: list[dict]) -> dict[tuple[int, datetime], int]:
    """Insert rows (dicts keyed by COLUMNS; a missing measurement is NULL), skipping (meter, ts)
    already stored; returns the id of each (meter, ts) stored.

    PostgreSQL gets one INSERT … SELECT FROM json_to_recordset(document): the batch travels as
    one JSON parameter that orjson encodes in C, so a 5,000-row batch is a single round trip
    parsed once (several times faster than Django's multi-row bulk_create, and about a third of
    the client CPU of one array parameter per column, which psycopg adapts element by element
    in Python). Other databases take one statement per row in the same transaction.
    """
    # Only identifiers from the model are formatted into the SQL; every value is a parameter.
    table = Reading._meta.db_table
    columns = ", ".join(COLUMNS)
    stored: dict[tuple[int, datetime], int] = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Timestamps are aware UTC datetimes, which orjson writes as ISO 8601 with an offset;
            # floats are written in their shortest round-trip form, so float8 gets the same value.
            record = ", ".join(f"{c} {PG_RECORD_TYPES.get(c, 'float8')}" for c in COLUMNS)
            select = ", ".join(f"t.{c}::jsonb" if c == "extra" else f"t.{c}" for c in COLUMNS)
            sql = (
                f"INSERT INTO {table} ({columns}) SELECT {select} "  # noqa: S608
                f"FROM json_to_recordset(%s::json) AS t({record}) "
                "ON CONFLICT (meter_id, ts) DO NOTHING RETURNING id, meter_id, ts"
            )
            cursor.execute(sql, [orjson.dumps(rows).decode()])
            stored.update(((meter_id, ts), pk) for pk, meter_id, ts in cursor.fetchall())
        else:
            placeholders = ", ".join(["%s"] * len(COLUMNS))
            sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) ON CONFLICT (meter_id, ts) DO NOTHING"  # noqa: S608
            ts_field = Reading._meta.get_field("ts")
            for row in rows:
                adapted = [row.get(column) for column in COLUMNS]
                adapted[1] = ts_field.get_db_prep_save(row["ts"], connection)
                adapted[-1] = ts_field.get_db_prep_save(row["received_at"], connection)
                cursor.execute(sql, adapted)
                if cursor.rowcount == 1:
                    stored[(row["meter_id"], row["ts"])] = cursor.lastrowid
    return stored


def reading_batch_ingest(*, device: Meter | Gateway, items: list, source: str) -> IngestResult:
    """Validate and store a batch of readings sent by a device, all or nothing.

    Invalid items reject the whole batch (ReadingsInvalid lists every bad index and field) and
    nothing is written. A reading whose (meter, timestamp) is already stored, or repeats an
    earlier item of the batch, counts as a duplicate. One `data.ingested` event announces the
    readings stored by this call, after commit. Power quality and protection detection
    (energy.pq_services, when PQ_DETECTION_ENABLED) runs on the stored readings in the same
    transaction.
    """
    now = timezone.now()
    readings = readings_parse(items, now=now, max_future=timedelta(seconds=settings.INGEST_MAX_FUTURE_SECONDS))
    meter_ids = _bind_meters(device, readings)

    keys: list[tuple[int, datetime]] = []
    rows: list[dict] = []
    by_key: dict[tuple[int, datetime], ReadingInput] = {}
    for reading, meter_id in zip(readings, meter_ids, strict=True):
        key = (meter_id, reading.ts)
        keys.append(key)
        if key in by_key:
            continue
        by_key[key] = reading
        rows.append(
            {
                "meter_id": meter_id,
                "ts": reading.ts,
                **reading.values,
                "extra": orjson.dumps(reading.extra).decode(),
                "received_at": now,
            }
        )

    with transaction.atomic():
        stored = _insert_readings(rows) if rows else {}
        stored_keys = [key for key in by_key if key in stored]
        if stored_keys and settings.PQ_DETECTION_ENABLED:
            # Same transaction: PQ and protection events stand or fall with their readings.
            samples: dict[int, list] = {}
            for meter_id, ts in stored_keys:
                reading = by_key[(meter_id, ts)]
                samples.setdefault(meter_id, []).append(sample_from(ts, reading.values, reading.extra))
            pq_services.readings_detect(samples_by_meter=samples, source=source)
        if stored_keys:
            publish(
                device.organization_id,
                DATA_INGESTED,
                _ingested_payload(device, stored_keys, by_key),
                source=source,
            )
    return IngestResult(
        stored=len(stored_keys),
        duplicates=len(keys) - len(stored_keys),
        stored_keys=stored_keys,
        keys=keys,
        reading_ids=stored,
        inputs=by_key,
        received_at=now,
    )


def _ingested_payload(device: Meter | Gateway, stored_keys, by_key) -> dict:
    """The batch as automations and dashboards see it: one entry per stored reading."""
    return {
        "site_id": device.site_id,
        "device_key": str(device.device_key),
        "count": len(stored_keys),
        "readings": [
            {
                "meter_id": meter_id,
                "site_id": device.site_id,
                "timestamp": ts.isoformat().replace("+00:00", "Z"),
                **by_key[(meter_id, ts)].values,
                **by_key[(meter_id, ts)].extra,
            }
            for meter_id, ts in stored_keys
        ],
    }

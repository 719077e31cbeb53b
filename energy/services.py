"""Writes and domain logic of the energy app: device credentials and reading ingest.

`reading_batch_ingest` is the one ingest path: the HTTP views and the WebSocket consumer call
it; the MQTT bridge, which holds many devices' batches at once, calls its two halves,
`readings_prepare` per device and `readings_store` once for all of them; the single-reading
HTTP view calls `reading_batch_ingest_grouped`, which does the same for concurrent requests
(group commit).
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import orjson
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from energy import pq_services
from energy.analytics.rollups import rollups_dirty_cte_sql, rollups_mark_dirty, rollups_refresh_on_commit
from energy.models import (
    READING_FIELDS,
    DeviceCommand,
    DeviceCredential,
    Gateway,
    Meter,
    Reading,
    new_device_secret,
)
from energy.power_quality import Sample, sample_from
from energy.validation import METER_ID, METER_SERIAL, FieldError, ReadingInput, ReadingsInvalid, readings_parse
from joulepoint.db import prepared_cursor
from joulepoint.events import listeners, publish_many
from joulepoint.events.types import DATA_INGESTED
from joulepoint.ratelimit import window_hit_and_cache_get

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
        model instance either: it cost a single-reading request ~3 % of its CPU), read back when
        it was a duplicate of one stored before."""
        if key not in self.reading_ids:
            return StoredReading.of(Reading.objects.get(meter_id=key[0], ts=key[1]))
        reading = self.inputs[key]
        return StoredReading(self.reading_ids[key], key[0], reading.ts, reading.values, reading.extra, self.received_at)


# Device lookups are cached only where the cache is shared by every process (Redis): a key
# rotated or a meter disabled in one process must stop working in all of them at once, which
# only a shared entry deleted on change can promise. The TTL bounds what a write that bypasses
# model signals (a queryset update) could leave behind.
DEVICE_CACHE_SECONDS = 300
# A key that names no active device is remembered too, so a stream of requests with made-up keys
# costs one Redis round trip each rather than two database queries. Saving a device deletes its
# key's entry (energy.apps), so a device created or re-enabled is never hidden by it.
UNKNOWN_DEVICE = "unknown"
UNKNOWN_DEVICE_CACHE_SECONDS = 60


def _device_cache_key(device_key: uuid.UUID | str) -> str:
    return f"jp:device:{device_key}"


def device_cache_forget(*, device_key: uuid.UUID | str) -> None:
    """Drop the cached lookup of a key (its device changed, was rotated away or deleted).

    Again after commit: a request in another process may have cached the row as it was before
    this transaction committed."""
    if settings.REDIS_URL:
        key = _device_cache_key(device_key)
        cache.delete(key)
        transaction.on_commit(lambda: cache.delete(key))


def device_credential_rotate(*, device: DeviceCredential) -> DeviceCredential:
    """Give a meter or gateway a new key and secret; the old key stops working at once."""
    old_key = device.device_key
    device.device_key = uuid.uuid4()
    device.device_secret = new_device_secret()
    device.key_rotated_at = timezone.now()
    device.save(update_fields=["device_key", "device_secret", "key_rotated_at"])
    device_cache_forget(device_key=old_key)
    return device


def device_for_key(*, device_key: uuid.UUID) -> Meter | Gateway | None:
    """The active meter or gateway holding this key (every device request starts here)."""
    cached = cache.get(_device_cache_key(device_key)) if settings.REDIS_URL else None
    return _device_from_cache(device_key, cached)


def device_for_key_with_hit(
    *, device_key: uuid.UUID, rate_key: str, window_seconds: int
) -> tuple[Meter | Gateway | None, tuple[int, float] | None]:
    """`device_for_key`, and one hit on the rate-limit window `rate_key` counted in the same
    Redis round trip as the cached lookup: (device or None, (hits so far, seconds to the next
    window)). The hit is None where the cache is not Redis: the caller counts it itself.

    The same round trip reads the listeners' epoch (joulepoint.events.listeners), so the
    fan-out after this request's ingest asks Redis nothing.

    The hit is counted before the key is known to be valid, so an unknown key counts too (its
    counter expires with the window)."""
    if not settings.REDIS_URL:
        return device_for_key(device_key=device_key), None
    (cached, epoch), count, retry_after = window_hit_and_cache_get(
        rate_key, window_seconds=window_seconds, cache_keys=[_device_cache_key(device_key), listeners.EPOCH_KEY]
    )
    listeners.listeners_epoch_seen(epoch)
    return _device_from_cache(device_key, cached), (count, retry_after)


def _device_from_cache(device_key: uuid.UUID, cached: object) -> Meter | Gateway | None:
    """The device a cache entry names (None for a key remembered as unknown); loaded on a miss."""
    if cached is None:
        return _device_load(device_key)
    return None if cached == UNKNOWN_DEVICE else cached


def _device_load(device_key: uuid.UUID) -> Meter | Gateway | None:
    """The device from the database, cached for the next request where the cache is shared."""
    device = Meter.objects.filter(device_key=device_key, is_active=True).first()
    if device is None:
        device = Gateway.objects.filter(device_key=device_key, is_active=True).first()
    if settings.REDIS_URL:
        if device is None:
            cache.set(_device_cache_key(device_key), UNKNOWN_DEVICE, UNKNOWN_DEVICE_CACHE_SECONDS)
        else:
            cache.set(_device_cache_key(device_key), device, DEVICE_CACHE_SECONDS)
    return device


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
    of `lock_meter_ids` is taken (pq_services.meters_lock_sql) on PostgreSQL; SQLite needs none,
    its IMMEDIATE transactions (settings) already serialize writers.

    PostgreSQL gets one INSERT … SELECT FROM unnest(one array per column): a 5,000-row batch is
    a single round trip, several times faster than Django's multi-row bulk_create. orjson writes
    each array in C (`_pg_array`), where psycopg would adapt a list element by element in
    Python. Typed arrays rather than one JSON document: PostgreSQL's json_to_recordset took
    18 ms of database time for 1,000 readings, arrays take 10, and the database is what bulk
    ingest waits on. The rollup windows are marked by a CTE of the same statement. Other
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
            # timestamptz loader is psycopg's pure-Python one, ~7 µs a row, where an int8 is C.
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
                lock = f"locked AS ({pq_services.meters_lock_sql('%s')}), "
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
    readings = readings_parse(items, now=now, max_future=timedelta(seconds=settings.INGEST_MAX_FUTURE_SECONDS))
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
    Power quality and protection detection (energy.pq_services, when PQ_DETECTION_ENABLED)
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
    lock_meter_ids = pq_services.detection_meters(samples) if detect else []
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
            pq_services.readings_detect(samples_by_meter=stored_samples, source=source)
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


# Group commit ------------------------------------------------------------------------------
#
# Hand-written rather than taken from a library: what is grouped is a Django transaction on
# the calling thread's own connection, with per-batch results and a per-batch retry, which no
# queue or pool library models; the whole protocol is a lock, a list and an Event per caller.


@dataclass(eq=False)
class _GroupWaiter:
    """One caller's batch in the queue, and what the leader of its group sends back."""

    batch: PreparedReadings
    woken: threading.Event = field(default_factory=threading.Event)
    result: IngestResult | None = None
    error: BaseException | None = None
    lead: bool = False  # promoted: this caller stores the next group
    alone: bool = False  # its group failed: this caller stores its batch in a transaction of its own


class ReadingsGroupCommit:
    """Joins concurrent callers of one process into one `readings_store` transaction.

    The first caller becomes the leader: it takes every batch queued so far (its own included)
    and stores them together on its own connection; whoever queues meanwhile waits, and once the
    group has committed the first of them leads the next group with everything queued by then. A
    group therefore grows with the load and costs no added wait: alone, a caller is a group of
    one and runs today's path. Waiting callers never touch their own connection, so no caller's
    request runs inside another's open transaction.

    If a group of several fails, its transaction is rolled back whole and every member stores
    its batch again on its own (in its own thread), so one bad batch fails only its own caller.
    Once committed, every member gets its result, even if after-commit work then fails.
    """

    def __init__(self, *, source: str) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._queue: list[_GroupWaiter] = []
        self._leading = False

    def ingest(self, batch: PreparedReadings) -> IngestResult:
        waiter = _GroupWaiter(batch=batch)
        with self._lock:
            self._queue.append(waiter)
            lead = not self._leading
            self._leading = True
        if not lead:
            waiter.woken.wait()
            if not waiter.lead:
                return self._outcome(waiter)
        self._lead(own=waiter)
        return self._outcome(waiter)

    def _outcome(self, waiter: _GroupWaiter) -> IngestResult:
        if waiter.alone:
            return readings_store(batches=[waiter.batch], source=self.source)[0]
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    def _lead(self, *, own: _GroupWaiter) -> None:
        with self._lock:
            group, self._queue = self._queue, []
        results: list[IngestResult] | None = None
        handed_off = False

        def hand_off(results: list[IngestResult] | None, error: BaseException | None) -> None:
            # The next caller leads and every member is woken, once, whatever happened (even a
            # worker being killed mid-store): nobody waits on a leader that is gone.
            nonlocal handed_off
            if handed_off:
                return
            handed_off = True
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.woken.set()
                else:
                    self._leading = False
            for index, waiter in enumerate(group):
                if results is not None:
                    waiter.result = results[index]
                elif waiter is own and (len(group) == 1 or not isinstance(error, Exception)):
                    # Its own batch alone failed, or its thread is being stopped (SystemExit…).
                    waiter.error = error
                else:
                    waiter.alone = True
                waiter.woken.set()

        try:
            with transaction.atomic():
                # Registered before the store's own hooks, so it runs first after COMMIT: the
                # members answer and the next group stores while this thread still runs the
                # group's after-commit work (event fan-out, rollup refresh).
                transaction.on_commit(lambda: hand_off(results, None))
                results = readings_store(batches=[waiter.batch for waiter in group], source=self.source)
        except BaseException as exc:
            if not handed_off:
                hand_off(None, exc)
            elif isinstance(exc, Exception):
                # Committed and answered; only after-commit work failed.
                logger.exception("after-commit work of a readings group failed")
            else:
                raise


_group_commits: dict[str, ReadingsGroupCommit] = {}
_group_commits_lock = threading.Lock()


def reading_batch_ingest_grouped(*, device: Meter | Gateway, items: list, source: str) -> IngestResult:
    """`reading_batch_ingest`, with the store joined to concurrent callers' (group commit).

    Under a threaded server, requests that arrive while another group is being stored are
    stored together in the next group: one INSERT, one detection pass, one commit for all of
    them. The answer is the caller's own, as `reading_batch_ingest` would give it: validation
    errors are raised before any grouping; a reading repeating one of an earlier request of the
    same group is a duplicate of it; nothing is answered before its group has committed.

    A caller already inside a transaction (ATOMIC_REQUESTS, or its own atomic block) takes the
    ungrouped path: its readings must commit or roll back with that transaction, never with
    another caller's, and nobody else's readings may wait on a transaction it leaves open.
    """
    batch = readings_prepare(device=device, items=items)
    if connection.in_atomic_block:
        return readings_store(batches=[batch], source=source)[0]
    group_commit = _group_commits.get(source)
    if group_commit is None:
        with _group_commits_lock:
            group_commit = _group_commits.setdefault(source, ReadingsGroupCommit(source=source))
    return group_commit.ingest(batch)


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


# Downlink ------------------------------------------------------------------------------------


class DeviceCommandError(Exception):
    """A command cannot move as asked: `code` is not_found (not this device's) or conflict."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


def device_command_as_message(command: DeviceCommand) -> dict:
    """What a device receives, over MQTT, WebSocket or HTTP polling alike."""
    return {
        "id": command.pk,
        "name": command.name,
        "payload": command.payload,
        "created_at": command.created_at.isoformat().replace("+00:00", "Z"),
        "expires_at": command.expires_at.isoformat().replace("+00:00", "Z"),
    }


@transaction.atomic
def device_command_send(
    *, device: Meter | Gateway, name: str, payload: dict | None = None, ttl_seconds: int | None = None
) -> DeviceCommand:
    """Queue a command for a meter or gateway (of the device's organization) and start delivery.

    Delivery runs after commit in a Celery task (`energy.tasks.device_command_deliver`): over
    MQTT when MQTT_URL is set, and to the device's open ingest WebSocket if any; a device with
    neither picks it up by polling `GET /api/energy/devices/commands/`. The command expires
    after `ttl_seconds` (DEVICE_COMMAND_TTL_SECONDS) unless acknowledged."""
    if not name or len(name) > 100:
        raise ValueError("a command name is 1 to 100 characters")
    ttl = settings.DEVICE_COMMAND_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    if ttl <= 0:
        raise ValueError("ttl_seconds must be positive")
    target = {"meter": device} if isinstance(device, Meter) else {"gateway": device}
    command = DeviceCommand.objects.create(
        organization_id=device.organization_id,
        name=name,
        payload=payload or {},
        expires_at=timezone.now() + timedelta(seconds=ttl),
        **target,
    )
    from energy.tasks import device_command_deliver

    transaction.on_commit(lambda: device_command_deliver.delay(command.pk))
    return command


def _commands_of(device: Meter | Gateway):
    field_name = "meter" if isinstance(device, Meter) else "gateway"
    return DeviceCommand.objects.for_org(device.organization_id).filter(**{field_name: device})


def device_command_deliver(*, command_id: int) -> DeviceCommand | None:
    """Push a pending command to the device: MQTT (marks it delivered once the broker has it)
    and the device's open ingest sockets (the socket marks it delivered when it writes it).
    Safe to run twice: a command that is no longer pending is left alone."""
    from energy.live import fanout, mqtt

    command = DeviceCommand.objects.select_related("meter", "gateway").filter(pk=command_id).first()
    if command is None or command.status != DeviceCommand.Status.PENDING:
        return command
    if command.expires_at <= timezone.now():
        device_commands_expire()
        return command
    device = command.device
    message = device_command_as_message(command)
    fanout.group_send(fanout.device_group(device.device_key), {"type": "downlink.command", "command": message})
    if settings.MQTT_URL:
        mqtt.mqtt_publish(topic_name=mqtt.topic(device.device_key, "commands"), payload=message, qos=1)
        device_command_mark_delivered(command_id=command.pk, channel=DeviceCommand.Channel.MQTT)
    command.refresh_from_db()
    return command


def device_command_mark_delivered(*, command_id: int, channel: str) -> bool:
    """pending → delivered, if still pending and not expired; True when this call moved it."""
    now = timezone.now()
    moved = DeviceCommand.objects.filter(pk=command_id, status=DeviceCommand.Status.PENDING, expires_at__gt=now).update(
        status=DeviceCommand.Status.DELIVERED, channel=channel, delivered_at=now
    )
    return moved == 1


def device_commands_poll(*, device: Meter | Gateway, limit: int = 50) -> list[DeviceCommand]:
    """The device's open commands (pending or delivered, not expired), oldest first; pending
    ones become delivered over HTTP. Delivered ones are returned again until acknowledged, so a
    device that lost a poll answer still gets them."""
    now = timezone.now()
    open_commands = _commands_of(device).filter(
        status__in=[DeviceCommand.Status.PENDING, DeviceCommand.Status.DELIVERED], expires_at__gt=now
    )
    commands = list(open_commands.order_by("created_at", "pk")[:limit])
    pending = [c.pk for c in commands if c.status == DeviceCommand.Status.PENDING]
    if pending:
        DeviceCommand.objects.filter(pk__in=pending, status=DeviceCommand.Status.PENDING).update(
            status=DeviceCommand.Status.DELIVERED, channel=DeviceCommand.Channel.HTTP, delivered_at=now
        )
        for command in commands:
            if command.pk in pending:
                command.status, command.channel, command.delivered_at = "delivered", "http", now
    return commands


def device_command_ack(*, device: Meter | Gateway, command_id: object, ok: bool, result: dict | None = None):
    """The device's answer: delivered (or still pending, when it came over MQTT first) → acked or
    failed. Only the command's own device may answer (anything else is not_found); an answer to a
    final command is a conflict, except the same answer again, which is accepted (idempotent).
    An answer after `expires_at` expires the command (committed) and is a conflict."""
    if isinstance(command_id, bool) or not isinstance(command_id, int):
        raise DeviceCommandError("not_found", "Unknown command id.")
    with transaction.atomic():
        command, error = _command_answer(device=device, command_id=command_id, ok=ok, result=result)
    if error is not None:
        raise error
    return command


def _command_answer(*, device, command_id: int, ok: bool, result: dict | None):
    command = _commands_of(device).select_for_update().filter(pk=command_id).first()
    if command is None:
        return None, DeviceCommandError("not_found", f"Command {command_id} is not a command of this device.")
    target = DeviceCommand.Status.ACKED if ok else DeviceCommand.Status.FAILED
    now = timezone.now()
    if command.status in DeviceCommand.FINAL:
        if command.status == target:
            return command, None
        return command, DeviceCommandError("conflict", f"Command {command_id} is already {command.status}.")
    if command.expires_at <= now:
        command.status = DeviceCommand.Status.EXPIRED
        command.completed_at = now
        command.save(update_fields=["status", "completed_at"])
        return command, DeviceCommandError("conflict", f"Command {command_id} expired at {command.expires_at}.")
    command.status = target
    command.result = result or {}
    command.completed_at = now
    if command.delivered_at is None:
        command.delivered_at = now
    command.save(update_fields=["status", "result", "completed_at", "delivered_at"])
    return command, None


def device_commands_expire(*, now: datetime | None = None) -> int:
    """pending/delivered commands past `expires_at` → expired; returns how many moved."""
    now = now or timezone.now()
    return DeviceCommand.objects.filter(
        status__in=[DeviceCommand.Status.PENDING, DeviceCommand.Status.DELIVERED], expires_at__lte=now
    ).update(status=DeviceCommand.Status.EXPIRED, completed_at=now)

"""CSV export: raw readings or resampled rollups, streamed in constant memory.

Rows come from a server-side cursor (PostgreSQL) in chunks and leave as CSV text chunks, so
a year of 1-minute data for many meters never sits in memory. Resampled values: the average
of instantaneous fields over the interval (weighted by readings) and the last value of the
cumulative registers; `readings` says how many raw readings each row summarises.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import connection

from energy.analytics.models import REGISTER_FIELDS, ReadingRollup1h, ReadingRollup1m, ReadingRollup15m
from energy.analytics.rollups import rollups_ensure_current
from energy.analytics.subjects import Subject, TimeRange, local_days, whole_hour_offsets
from energy.models import READING_FIELDS, Reading

CHUNK_ROWS = 5000
# Per-query time windows of the PostgreSQL export: about 10,000-40,000 rows at 1-minute data.
WINDOWS = {
    Reading: timedelta(days=3),
    ReadingRollup1m: timedelta(days=14),
    ReadingRollup15m: timedelta(days=366),
    ReadingRollup1h: timedelta(days=366),
}
EXPORT_INTERVALS = ("raw", "1min", "5min", "15min", "1h", "1d")


def header(fields: list[str], interval: str) -> list[str]:
    columns = ["timestamp", "meter_id"]
    if interval != "raw":
        columns.append("readings")
    for name in fields:
        unit = READING_FIELDS[name][0]
        columns.append(f"{name} ({unit})" if unit else name)
    return columns


def _number(value) -> str:
    """Floats as PostgreSQL prints them (shortest round-trip, no trailing ".0"), so the CSV is
    the same from either database and from either path."""
    if value is None:
        return ""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def _iso(ts) -> str:
    if isinstance(ts, datetime):
        text = ts.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return str(ts)


class _Sink:
    """csv.writer into a buffer that is drained every chunk."""

    def __init__(self):
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\n")

    def drain(self) -> str:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text


def _rollup_column(name: str) -> str:
    return f"{name}_last" if name in REGISTER_FIELDS else f"{name}_avg"


def export_csv(
    *, subject: Subject, time_range: TimeRange, tz: ZoneInfo, fields: list[str], interval: str
) -> Iterator[str]:
    """CSV text chunks: the header, then one row per meter and timestamp (ordered by meter, time)."""
    if interval == "1d":
        time_range = local_days(time_range, tz)
    sink = _Sink()
    sink.writer.writerow(header(fields, interval))
    yield sink.drain()
    if not subject.meter_ids:
        return
    direct = {"raw": Reading, "1min": ReadingRollup1m, "15min": ReadingRollup15m, "1h": ReadingRollup1h}
    if interval != "raw":
        rollups_ensure_current(meter_ids=subject.meter_ids)
    if connection.vendor == "postgresql" and interval in direct:
        yield from _server_lines(direct[interval], subject, time_range, fields, resampled=interval != "raw")
        return
    if interval == "raw":
        source = (
            Reading.objects.filter(meter_id__in=subject.meter_ids, ts__gte=time_range.start, ts__lt=time_range.end)
            .order_by("meter_id", "ts")
            .values_list("ts", "meter_id", *fields)
            .iterator(chunk_size=CHUNK_ROWS)
        )
        rows = ((_iso(ts), meter_id, *map(_number, values)) for ts, meter_id, *values in source)
    else:
        rows = _resampled(subject, time_range, tz, fields, interval)
    writerows = sink.writer.writerows
    batch: list = []
    append = batch.append
    for row in rows:
        append(row)
        if len(batch) >= CHUNK_ROWS:
            writerows(batch)
            batch.clear()
            yield sink.drain()
    if batch:
        writerows(batch)
        yield sink.drain()


# The same text as `_iso`: whole seconds without a fraction, else microseconds.
_PG_ISO = (
    "CASE WHEN date_trunc('second', ts) = ts "
    "THEN to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
    "ELSE to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') END"
)


_PG_ISO_SECONDS = "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

# The same text from the timestamp's own output, about twice as cheap for the server as to_char:
# `2026-06-10 10:00:00` or `… 10:00:00.25` (DateStyle ISO, which psycopg needs anyway), ' ' → 'T',
# a fraction padded to microseconds. `t` is the text; the raw export checks its length.
_PG_TEXT = "replace((ts AT TIME ZONE 'UTC')::text, ' ', 'T')"
_PG_TEXT_ISO = "CASE WHEN length(t) = 19 THEN t ELSE rpad(t, 26, '0') END || 'Z'"


def _iso_datestyle() -> bool:
    info = getattr(connection.connection, "info", None)
    return bool(info) and (info.parameter_status("DateStyle") or "").startswith("ISO")


def _server_lines(
    model, subject: Subject, time_range: TimeRange, fields: list[str], *, resampled: bool
) -> Iterator[str]:
    """PostgreSQL: the server formats each CSV line (float8 text is the shortest round-trip, as
    in COPY), so Python only joins strings: no per-value work in Python."""
    columns = [*(["n"] if resampled else []), *(_rollup_column(f) if resampled else f for f in fields)]
    values = ["meter_id::text", *(f"coalesce({column}::text, '')" for column in columns)]
    # Identifiers come from the model and READING_FIELDS only; values are bound by psycopg.
    table, where = model._meta.db_table, "WHERE meter_id = %s AND ts >= %s AND ts < %s ORDER BY ts"
    with connection.cursor():
        iso_text = _iso_datestyle()
    source = table
    if not iso_text:
        # Rollup buckets are whole seconds; raw timestamps may carry microseconds.
        stamp = _PG_ISO_SECONDS if resampled else _PG_ISO
    elif resampled:
        stamp = _PG_TEXT + " || 'Z'"
    else:
        # The text once per row (OFFSET 0 keeps the planner from inlining it three times).
        stamp, source = _PG_TEXT_ISO, f"{table}, LATERAL (SELECT {_PG_TEXT} AS t OFFSET 0) stamp"
    line = ", ".join([stamp, *values])
    statement = f"SELECT concat_ws(',', {line}) FROM {source} {where}"  # noqa: S608
    # One index range scan per meter and time window, already in order, fetched whole by a
    # client-side cursor: memory is bounded by the window (WINDOWS), not by the export. (A
    # server-side cursor outside a transaction is WITH HOLD, which makes PostgreSQL materialize
    # the whole result first; over `meter_id = ANY(…) ORDER BY meter_id, ts` it also gets a
    # fast-start plan that is slower overall.)
    window = WINDOWS[model]
    with connection.cursor() as cursor:
        for meter_id in sorted(subject.meter_ids):
            start = time_range.start
            while start < time_range.end:
                end = min(start + window, time_range.end)
                cursor.execute(statement, [meter_id, start, end])
                rows = cursor.fetchall()
                if rows:
                    yield "\n".join([row[0] for row in rows]) + "\n"
                start = end


def _rollup_rows(model, subject: Subject, time_range: TimeRange, fields: list[str]):
    return (
        model.objects.filter(meter_id__in=subject.meter_ids, ts__gte=time_range.start, ts__lt=time_range.end)
        .order_by("meter_id", "ts")
        .values_list("ts", "meter_id", "n", *(_rollup_column(name) for name in fields))
        .iterator(chunk_size=CHUNK_ROWS)
    )


def _resampled(subject: Subject, time_range: TimeRange, tz: ZoneInfo, fields: list[str], interval: str):
    direct = {"1min": ReadingRollup1m, "15min": ReadingRollup15m, "1h": ReadingRollup1h}
    if interval in direct:
        for ts, meter_id, n, *values in _rollup_rows(direct[interval], subject, time_range, fields):
            yield (_iso(ts), meter_id, n, *map(_number, values))
        return
    if interval == "5min":
        source = _rollup_rows(ReadingRollup1m, subject, time_range, fields)

        def bucket(ts: datetime):
            return ts.replace(minute=ts.minute - ts.minute % 5, second=0, microsecond=0)
    else:  # 1d: local calendar days, from hourly rollups unless the zone has a fractional offset
        model = ReadingRollup1h if whole_hour_offsets(tz, time_range) else ReadingRollup15m
        source = _rollup_rows(model, subject, time_range, fields)

        def bucket(ts: datetime):
            local = ts.astimezone(tz)
            return local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)

    yield from _combine(source, bucket, [name in REGISTER_FIELDS for name in fields])


def _combine(source, bucket, is_register: list[bool]):
    """Merge consecutive rollup rows of one meter into coarser buckets."""
    width = len(is_register)
    current = None
    count, sums, weights, lasts = 0, [0.0] * width, [0] * width, [None] * width
    for ts, meter_id, n, *values in source:
        key = (meter_id, bucket(ts))
        if key != current:
            if current is not None:
                yield _emit(current, count, sums, weights, lasts, is_register)
            current, count = key, 0
            sums, weights, lasts = [0.0] * width, [0] * width, [None] * width
        count += n
        for index, value in enumerate(values):
            if value is None:
                continue
            if is_register[index]:
                lasts[index] = value
            else:
                sums[index] += value * n
                weights[index] += n
    if current is not None:
        yield _emit(current, count, sums, weights, lasts, is_register)


def _emit(key, count, sums, weights, lasts, is_register):
    meter_id, start = key
    values = [
        _number(lasts[index] if register else (sums[index] / weights[index] if weights[index] else None))
        for index, register in enumerate(is_register)
    ]
    return (_iso(start.astimezone(ZoneInfo("UTC"))), meter_id, count, *values)

"""Keeping the rollup tables current, and reading them.

Ingest marks the hour-aligned window of each meter it wrote (`rollups_mark_dirty`, in the
ingest transaction); a worker recomputes those windows from raw readings
(`rollups_refresh_pending`, queued after commit and also run by beat, so a lost task only
delays the rollups). Analytics queries call `rollups_ensure_current` for their meters first,
so a reading that got a 2xx is in the very next KPI even before a worker ran.

Every level (1 minute, 15 minutes, 1 hour) is computed from the raw readings, never from a
finer level: in SQL on PostgreSQL (no rows travel to Python), with pandas elsewhere, under the
same definitions (tested against a hand-rolled raw aggregate on both databases).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection, transaction

from energy.analytics.models import (
    REGISTER_FIELDS,
    ROLLUP_AGGREGATES,
    ROLLUP_MODELS,
    RollupDirty,
)
from energy.analytics.policy import raw_cutoff_for_meter
from energy.analytics.subjects import ceil_time, floor_time
from energy.models import READING_FIELDS, Reading
from joulepoint.platform.enqueue import enqueue

logger = logging.getLogger(__name__)

HOUR = 3600
# Raw readings are recomputed in chunks of this length, so memory stays bounded.
CHUNK = timedelta(days=7)
ROLLUP_COLUMNS = (
    "n",
    *(f"{name}_{agg}" for name in READING_FIELDS for agg in ROLLUP_AGGREGATES),
    *(f"{name}_inc" for name in REGISTER_FIELDS),
    *(f"{name}_gap" for name in REGISTER_FIELDS),
)
_EPOCH = pd.Timestamp(0, tz="UTC")


def rollups_dirty_cte_sql(*, stored: str) -> str:
    """PostgreSQL: the data-modifying CTE body that records the hour-aligned window of each meter
    in the rows of CTE `stored` (columns meter_id, ts), for the ingest INSERT to run in its own
    statement (one round trip and no ORM insert per request). What `rollups_mark_dirty` writes;
    the caller queues the refresh with `rollups_refresh_on_commit`."""
    table = RollupDirty._meta.db_table
    # The session time zone is UTC (Django sets it), so date_trunc cuts UTC hours as floor_time does.
    return (
        f'INSERT INTO {table} (meter_id, start, "end", created_at) '  # noqa: S608
        "SELECT meter_id, date_trunc('hour', min(ts)), date_trunc('hour', max(ts)) + interval '1 hour', now() "
        f"FROM {stored} GROUP BY meter_id"
    )


def rollups_refresh_on_commit() -> None:
    transaction.on_commit(_queue_refresh)


def rollups_mark_dirty(*, keys: Iterable[tuple[int, datetime]]) -> None:
    """Record the hour-aligned window of each meter's new readings (the caller queues the
    refresh with `rollups_refresh_on_commit`)."""
    spans: dict[int, list[datetime]] = {}
    for meter_id, ts in keys:
        span = spans.setdefault(meter_id, [ts, ts])
        span[0] = min(span[0], ts)
        span[1] = max(span[1], ts)
    if not spans:
        return
    RollupDirty.objects.bulk_create(
        [
            RollupDirty(meter_id=meter_id, start=floor_time(low, HOUR), end=floor_time(high, HOUR) + timedelta(hours=1))
            for meter_id, (low, high) in spans.items()
        ]
    )


# A broker-backed process queues at most one refresh per this many seconds, delayed by as much:
# the refresh takes every dirty window pending when it runs, so the windows marked in between
# ride along, and a stream of single readings costs one task a second instead of one each.
REFRESH_COALESCE_SECONDS = 1.0
REFRESH_TASK = "energy.analytics.rollups_refresh_pending"
_refresh_queued_at = -REFRESH_COALESCE_SECONDS


def _queue_refresh() -> None:
    """After commit: a broker outage must not turn a stored batch into an error; the dirty rows
    stay and the beat task (or the next query of these meters) picks them up."""
    global _refresh_queued_at
    eager = settings.CELERY_TASK_ALWAYS_EAGER
    now = time.monotonic()
    if not eager and now - _refresh_queued_at < REFRESH_COALESCE_SECONDS:
        return
    try:
        if eager:
            enqueue(REFRESH_TASK)
        else:
            enqueue(REFRESH_TASK, countdown=REFRESH_COALESCE_SECONDS)
            _refresh_queued_at = now
    except Exception:
        logger.exception("could not queue the rollup refresh; beat will catch up")


def _merge(windows: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[list[datetime]] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


# The namespace of the rollup refresh's advisory locks (pg_advisory_xact_lock(namespace, meter)),
# so they never collide with another use of advisory locks.
ADVISORY_LOCK_NAMESPACE = 0x4A50  # "JP"


def rollups_refresh_pending(*, meter_ids: Iterable[int] | None = None, limit: int = 1000, wait: bool = False) -> int:
    """Recompute the rollups of pending dirty windows (of these meters, or all); returns how
    many windows were processed.

    Safe to run twice and side by side: each meter's windows are taken with
    SELECT … FOR UPDATE SKIP LOCKED (another worker already has them) and recomputed under the
    meter's advisory lock. A query that needs fresh rollups passes `wait=True` to wait for a
    worker holding them instead of skipping.

    Never blocks ingest or key rotation: the advisory lock is the refresh's own (the meter row is
    not locked: ingest's foreign-key check and a rotation's UPDATE would wait on it for the
    whole aggregation), and the dirty rows it claims are ones ingest never touches again (it
    inserts new ones).

    Meters are isolated: one whose refresh fails is logged and keeps its dirty rows (its
    transaction rolls back), so the next run retries it; the others are refreshed.
    """
    pending = RollupDirty.objects.order_by("meter_id")
    if meter_ids is not None:
        pending = pending.filter(meter_id__in=list(meter_ids))
    processed = 0
    for meter_id in list(pending.values_list("meter_id", flat=True).distinct()[:limit]):
        try:
            processed += _refresh_meter_pending(meter_id, wait=wait)
        except Exception:
            logger.exception("rollup refresh of meter %s failed; its windows stay pending for the next run", meter_id)
    return processed


def _refresh_meter_pending(meter_id: int, *, wait: bool) -> int:
    with transaction.atomic():
        if not _meter_refresh_lock(meter_id, wait=wait):
            return 0  # another worker is refreshing this meter
        rows = list(
            RollupDirty.objects.select_for_update(skip_locked=not wait)
            .filter(meter_id=meter_id)
            .values_list("pk", "start", "end")
        )
        if not rows:
            return 0
        for start, end in _merge([(start, end) for _, start, end in rows]):
            rollups_refresh(meter_id=meter_id, start=start, end=end)
        RollupDirty.objects.filter(pk__in=[pk for pk, _, _ in rows]).delete()
        return len(rows)


def _meter_refresh_lock(meter_id: int, *, wait: bool) -> bool:
    """Serialize refreshes of one meter until the transaction ends (PostgreSQL; SQLite has one
    writer). False when another holds it and `wait` is off."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [ADVISORY_LOCK_NAMESPACE, meter_id])
            return True
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [ADVISORY_LOCK_NAMESPACE, meter_id])
        return bool(cursor.fetchone()[0])


def rollups_ensure_current(*, meter_ids: Iterable[int]) -> None:
    """Bring these meters' rollups up to date before a query reads them."""
    meter_ids = list(meter_ids)
    if meter_ids and RollupDirty.objects.filter(meter_id__in=meter_ids).exists():
        rollups_refresh_pending(meter_ids=meter_ids, wait=True)


def rollups_refresh(*, meter_id: int, start: datetime, end: datetime) -> None:
    """Recompute every rollup level of one meter for [start, end), widened to whole hours.

    The reading right after the window counts its energy from the window's last register
    reading, so its hour is recomputed too. Buckets older than the organization's raw
    retention are left alone: their raw readings may already be gone.
    """
    start, end = floor_time(start, HOUR), ceil_time(end, HOUR)
    cutoff = raw_cutoff_for_meter(meter_id)
    if cutoff is not None:
        start = max(start, ceil_time(cutoff, HOUR))
    if start >= end:
        return
    with transaction.atomic():
        chunk_start = start
        while chunk_start < end:
            chunk_end = min(chunk_start + CHUNK, end)
            _refresh_chunk(meter_id, chunk_start, chunk_end)
            chunk_start = chunk_end
        next_ts = (
            Reading.objects.filter(meter_id=meter_id, ts__gte=end).order_by("ts").values_list("ts", flat=True).first()
        )
        if next_ts is not None:
            hour = floor_time(next_ts, HOUR)
            _refresh_chunk(meter_id, hour, hour + timedelta(hours=1))


def max_gap() -> timedelta:
    """The longest silence across which a register increase is still the next reading's energy."""
    return timedelta(seconds=settings.ANALYTICS_MAX_GAP_SECONDS)


def _previous_register(meter_id: int, before: datetime, name: str) -> tuple[datetime, float] | None:
    """(ts, value) of the meter's last reading carrying the register before `before`."""
    return (
        Reading.objects.filter(meter_id=meter_id, ts__lt=before, **{f"{name}__isnull": False})
        .order_by("-ts")
        .values_list("ts", name)
        .first()
    )


def register_increments(
    values: pd.Series, times: pd.Series, previous: tuple[datetime, float] | None, gap: timedelta
) -> tuple[pd.Series, pd.Series]:
    """Energy attributed to each reading of a cumulative register (kWh), and gap energy.

    The increase since the previous reading carrying the register; a decrease is a counter reset
    (meter replaced or rolled over), so the new value is the energy since zero. When that
    previous reading is more than `gap` older, the increase happened at some unknown time in the
    silence: it is the reading's gap energy, not its increment. The very first reading of a meter
    has no predecessor and counts nothing. Readings without the register get NaN in both.
    """
    present = values.dropna()
    at = times.loc[present.index]
    before, before_at = present.shift(1), at.shift(1)
    if len(present):
        before.iloc[0] = np.nan if previous is None else previous[1]
        before_at.iloc[0] = pd.NaT if previous is None else pd.Timestamp(previous[0])
    delta = present - before
    moved = delta.where(delta >= 0, present).where(before.notna())
    across_gap = (at - before_at) > pd.Timedelta(gap)
    increments = moved.where(~across_gap)
    gaps = moved.where(across_gap)
    return increments.reindex(values.index), gaps.reindex(values.index)


def readings_frame(meter_id: int, start: datetime, end: datetime) -> pd.DataFrame:
    """Raw readings of one meter in [start, end) with their register increments."""
    rows = list(
        Reading.objects.filter(meter_id=meter_id, ts__gte=start, ts__lt=end)
        .order_by("ts")
        .values_list("ts", *READING_FIELDS)
    )
    frame = pd.DataFrame.from_records(rows, columns=["ts", *READING_FIELDS])
    frame[list(READING_FIELDS)] = frame[list(READING_FIELDS)].astype("float64")
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["epoch"] = (frame["ts"] - _EPOCH) // pd.Timedelta(seconds=1)
    for name in REGISTER_FIELDS:
        # No predecessor lookup for a register the chunk lacks (it would scan the whole history).
        previous = _previous_register(meter_id, start, name) if frame[name].notna().any() else None
        frame[f"{name}_inc"], frame[f"{name}_gap"] = register_increments(frame[name], frame["ts"], previous, max_gap())
    return frame


def aggregate_frame(frame: pd.DataFrame, seconds: int) -> pd.DataFrame:
    """Rollup rows (bucket epoch → ROLLUP_COLUMNS) of a readings frame."""
    grouped = frame.groupby(frame["epoch"] // seconds * seconds, sort=True)
    fields = list(READING_FIELDS)
    parts = {"n": grouped.size()}
    means, mins, maxs, lasts = (
        grouped[fields].mean(),
        grouped[fields].min(),
        grouped[fields].max(),
        grouped[fields].last(),
    )
    for name in fields:
        parts[f"{name}_avg"] = means[name]
        parts[f"{name}_min"] = mins[name]
        parts[f"{name}_max"] = maxs[name]
        parts[f"{name}_last"] = lasts[name]
    for name in REGISTER_FIELDS:
        parts[f"{name}_inc"] = grouped[f"{name}_inc"].sum(min_count=1)
    for name in REGISTER_FIELDS:
        parts[f"{name}_gap"] = grouped[f"{name}_gap"].sum(min_count=1)
    return pd.DataFrame(parts)[list(ROLLUP_COLUMNS)]


def _refresh_chunk(meter_id: int, start: datetime, end: datetime) -> None:
    if connection.vendor == "postgresql":
        _refresh_chunk_sql(meter_id, start, end)
        return
    frame = readings_frame(meter_id, start, end)
    for model in ROLLUP_MODELS:
        model.objects.filter(meter_id=meter_id, ts__gte=start, ts__lt=end).delete()
        if frame.empty:
            continue
        _write(model, meter_id, aggregate_frame(frame, model.bucket_seconds))


def _write(model, meter_id: int, rows: pd.DataFrame) -> None:
    stamps = [datetime.fromtimestamp(int(epoch), tz=UTC) for epoch in rows.index]
    values = rows.astype(object).where(rows.notna(), None).to_numpy().tolist()
    model.objects.bulk_create(
        [
            model(meter_id=meter_id, ts=ts, **dict(zip(ROLLUP_COLUMNS, row, strict=True)))
            for ts, row in zip(stamps, values, strict=True)
        ],
        batch_size=500,
    )


def _increments_cte(name: str, table: str) -> str:
    """Register increments of one meter's readings carrying `name`, the predecessor included;
    an increase across a gap longer than the `gap` parameter is the reading's gap energy instead."""
    return f"""{name}_i AS (
        SELECT ts, CASE WHEN ts - prev_ts > %(gap)s THEN NULL ELSE moved END AS inc,
               CASE WHEN ts - prev_ts > %(gap)s THEN moved END AS gap
        FROM (
            SELECT ts, prev_ts, CASE WHEN prev IS NULL THEN NULL WHEN v >= prev THEN v - prev ELSE v END AS moved
            FROM (
            SELECT ts, {name} AS v, lag({name}) OVER (ORDER BY ts) AS prev, lag(ts) OVER (ORDER BY ts) AS prev_ts
            FROM {table}
            WHERE meter_id = %(meter)s AND {name} IS NOT NULL AND ts < %(end)s AND ts >= COALESCE(
                (SELECT max(ts) FROM {table} WHERE meter_id = %(meter)s AND ts < %(start)s AND {name} IS NOT NULL),
                %(start)s)
            ) steps
        ) moves WHERE ts >= %(start)s
    )"""  # noqa: S608


def _refresh_chunk_sql(meter_id: int, start: datetime, end: datetime) -> None:
    """PostgreSQL: the same aggregates as `aggregate_frame`, computed in the database (no rows
    travel to Python), one INSERT … SELECT per level. Same definitions: `last` is the last
    non-empty value, increments skip readings without the register."""
    table = Reading._meta.db_table
    fields = list(READING_FIELDS)
    params = {"meter": meter_id, "start": start, "end": end, "gap": max_gap()}
    with connection.cursor() as cursor:
        # Meters send a subset of the fields: aggregate only those present in the chunk.
        cursor.execute(
            f"SELECT count(*), {', '.join(f'count({name})' for name in fields)} FROM {table} "  # noqa: S608
            "WHERE meter_id = %(meter)s AND ts >= %(start)s AND ts < %(end)s",
            params,
        )
        total, *counts = cursor.fetchone()
        present = {name for name, count in zip(fields, counts, strict=True) if count}
    aggregates = []
    for name in fields:
        if name not in present:
            aggregates += ["NULL"] * 4
            continue
        aggregates += [
            f"avg(r.{name})",
            f"min(r.{name})",
            f"max(r.{name})",
            f"(array_agg(r.{name} ORDER BY r.ts DESC) FILTER (WHERE r.{name} IS NOT NULL))[1]",
        ]
    # Increments only for registers the chunk carries: looking for the predecessor of a register
    # the meter never sends would scan its whole history.
    registers = [name for name in REGISTER_FIELDS if name in present]
    aggregates += [f"sum({name}_i.inc)" if name in present else "NULL" for name in REGISTER_FIELDS]
    aggregates += [f"sum({name}_i.gap)" if name in present else "NULL" for name in REGISTER_FIELDS]
    joins = " ".join(f"LEFT JOIN {name}_i ON {name}_i.ts = r.ts" for name in registers)
    ctes = ("WITH " + ", ".join(_increments_cte(name, table) for name in registers)) if registers else ""
    with connection.cursor() as cursor:
        for model in ROLLUP_MODELS:
            model.objects.filter(meter_id=meter_id, ts__gte=start, ts__lt=end).delete()
            if not total:
                continue
            seconds = int(model.bucket_seconds)
            # Identifiers and the bucket size come from the models only; values are parameters.
            cursor.execute(
                f"""{ctes}
                INSERT INTO {model._meta.db_table} (meter_id, ts, {", ".join(ROLLUP_COLUMNS)})
                SELECT %(meter)s, to_timestamp(floor(extract(epoch FROM r.ts) / {seconds}) * {seconds}), count(*),
                       {", ".join(aggregates)}
                FROM {table} r {joins}
                WHERE r.meter_id = %(meter)s AND r.ts >= %(start)s AND r.ts < %(end)s
                GROUP BY 2""",  # noqa: S608
                params,
            )

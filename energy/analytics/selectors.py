"""Shared reads over the 15-minute rollups: the subject's import energy and demand expressions.

A meter "has a register" in a range when any of its rollups there carries `total_energy`;
its import energy is then the sum of register increments, otherwise the positive part of its
average power integrated over the 15-minute buckets (method `integrated_power`).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Case, Count, Exists, F, FloatField, OuterRef, QuerySet, Sum, Value, When, Window
from django.db.models.functions import Lag
from django.utils.dateparse import parse_datetime

from energy.analytics.models import ReadingRollup15m
from energy.analytics.rollups import rollups_ensure_current
from energy.analytics.subjects import Subject, TimeRange
from energy.models import Meter
from energy.power_quality.models import PQEvent, ProtectionEvent

QUARTER_HOURS_KWH = 0.25 / 1000.0  # W averaged over 15 minutes → kWh


def rollups_15m(subject: Subject, time_range: TimeRange) -> QuerySet:
    """The subject's 15-minute rollups in the range, current (pending windows recomputed first)."""
    rollups_ensure_current(meter_ids=subject.meter_ids)
    return ReadingRollup15m.objects.filter(
        meter_id__in=subject.meter_ids, ts__gte=time_range.start, ts__lt=time_range.end
    ).order_by()


def register_meter_ids(meter_ids: list[int], time_range: TimeRange) -> set[int]:
    """The meters whose 15-minute rollups in the range carry the register. An EXISTS per meter:
    the index on (meter, ts) stops at its first such row instead of counting every row."""
    carries = ReadingRollup15m.objects.filter(
        meter_id=OuterRef("pk"), ts__gte=time_range.start, ts__lt=time_range.end, total_energy_last__isnull=False
    )
    return set(Meter.objects.filter(pk__in=meter_ids).filter(Exists(carries)).values_list("pk", flat=True))


def import_expression(register_meters: set[int], meter_ids: list[int] | None = None):
    """kWh imported in one rollup row, by the meter's method. When every meter of the subject
    (`meter_ids`) has a register, the increment itself: no per-row CASE over a list of ids."""
    integrated = Case(
        When(total_power_avg__gt=0, then=F("total_power_avg") * Value(QUARTER_HOURS_KWH)),
        default=Value(0.0),
        output_field=FloatField(),
    )
    if not register_meters:
        return integrated
    if meter_ids is not None and register_meters >= set(meter_ids):
        return F("total_energy_inc")
    return Case(
        When(meter_id__in=sorted(register_meters), then=F("total_energy_inc")),
        default=integrated,
        output_field=FloatField(),
    )


def export_expression(register_meters: set[int]):
    integrated = Case(
        When(total_power_avg__lt=0, then=-F("total_power_avg") * Value(QUARTER_HOURS_KWH)),
        default=Value(0.0),
        output_field=FloatField(),
    )
    if not register_meters:
        return integrated
    return Case(
        When(meter_id__in=sorted(register_meters), then=F("export_energy_inc")),
        default=integrated,
        output_field=FloatField(),
    )


def energy_method(register_meters: set[int], meter_ids: list[int]) -> str:
    if not register_meters:
        return "integrated_power"
    return "register" if register_meters >= set(meter_ids) else "mixed"


def aggregate_subquery(queryset: QuerySet, select: str, *, suffix: str = "", width: int | None = None) -> tuple:
    """Run `SELECT <select> FROM (<queryset>) s <suffix>`: aggregates over an aggregated
    queryset, in SQL. Answers a row of NULLs when the queryset is empty."""
    width = width or len(select.split(","))
    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:  # e.g. a group without meters
        return (None,) * width
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {select} FROM ({sql}) s {suffix}", params)  # noqa: S608 (select is ours)
        row = cursor.fetchone()
    return row if row is not None else (None,) * width


def raw_rows(queryset: QuerySet) -> list[tuple]:
    """The queryset's rows as the driver returns them, without Django's per-value converters
    (which cost more than the query for a few thousand aggregated rows)."""
    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:
        return []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def as_datetime(value) -> datetime | None:
    """A timestamp read by raw SQL: a datetime (PostgreSQL) or text in UTC (SQLite)."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = parse_datetime(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# Counters of events per subject and range: PQ events that started in the range (an opening
# and a closing are one event) and protection events that occurred in it.
EventCounter = Callable[..., int]


def _pq_events(*, organization, meter_ids: list[int], start: datetime, end: datetime) -> int:
    return PQEvent.objects.for_org(organization).filter(meter_id__in=meter_ids, start__gte=start, start__lt=end).count()


def _protection_events(*, organization, meter_ids: list[int], start: datetime, end: datetime) -> int:
    return (
        ProtectionEvent.objects.for_org(organization)
        .filter(meter_id__in=meter_ids, occurred_at__gte=start, occurred_at__lt=end)
        .count()
    )


EVENT_COUNTERS: dict[str, EventCounter] = {"pq": _pq_events, "protection": _protection_events}


def event_counts(*, organization, subject: Subject, time_range: TimeRange) -> dict[str, int]:
    if not subject.meter_ids:
        return dict.fromkeys(EVENT_COUNTERS, 0)
    return {
        name: counter(
            organization=organization, meter_ids=subject.meter_ids, start=time_range.start, end=time_range.end
        )
        for name, counter in EVENT_COUNTERS.items()
    }


def sum_or_none(*values):
    present = [value for value in values if value is not None]
    return sum(present) if present else None


@dataclass
class IntervalEnergy:
    """The energy of a set of meters per 15-minute UTC bucket, with what a bill reports about it."""

    intervals: list[tuple[datetime, float, float]]  # (bucket start, import kWh, export kWh), summed over meters
    register_meter_ids: set[int]  # meters with an import register in the range; others are estimated
    buckets_per_meter: dict[int, int]  # buckets each meter has rows in
    resets: list[tuple[int, datetime]]  # (meter, bucket) where the register went down (counter reset)
    estimated: int  # buckets of meters without a register (energy from average power)
    estimated_examples: list[tuple[int, datetime]]


def interval_energy(
    *, organization, meter_ids: list[int], start: datetime, end: datetime, examples: int = 20
) -> IntervalEnergy:
    """Import and export kWh per 15-minute bucket in [start, end) of the organization's meters,
    current, aggregated in the database (a few thousand rows travel, not one per meter and
    bucket). Per meter, a register's increments when it has one in the range, else its positive
    (import) or negative (export) average power x 0.25 h, as the KPIs count it. The read other
    apps (billing) cost energy from; they never read the rollup tables themselves."""
    own = list(Meter.objects.for_org(organization).filter(pk__in=meter_ids).values_list("pk", flat=True))
    if not own:
        return IntervalEnergy([], set(), {}, [], 0, [])
    rollups_ensure_current(meter_ids=own)
    time_range = TimeRange(start, end)
    registers = register_meter_ids(own, time_range)
    rows = ReadingRollup15m.objects.filter(meter_id__in=own, ts__gte=start, ts__lt=end).order_by()
    sums = rows.values("ts").annotate(imp=Sum(import_expression(registers, own)), exp=Sum(export_expression(registers)))
    intervals = [
        (_aware(as_datetime(ts)), imp or 0.0, exp or 0.0)
        for ts, imp, exp in raw_rows(sums.order_by("ts").values_list("ts", "imp", "exp"))
    ]
    counts = dict(rows.values("meter_id").annotate(n=Count("pk")).values_list("meter_id", "n"))
    previous = Window(Lag("total_energy_last"), partition_by=[F("meter_id")], order_by=F("ts").asc())
    resets = [
        (meter_id, _aware(as_datetime(ts)))
        for meter_id, ts in rows.filter(meter_id__in=registers, total_energy_last__isnull=False)
        .annotate(previous=previous)
        .filter(total_energy_last__lt=F("previous"))
        .order_by("meter_id", "ts")
        .values_list("meter_id", "ts")
    ]
    integrated = rows.exclude(meter_id__in=registers).filter(total_power_avg__isnull=False)
    estimated = integrated.count()
    estimated_examples = [
        (meter_id, _aware(as_datetime(ts)))
        for meter_id, ts in integrated.order_by("meter_id", "ts").values_list("meter_id", "ts")[:examples]
    ]
    return IntervalEnergy(intervals, registers, counts, resets, estimated, estimated_examples)


def _aware(moment: datetime) -> datetime:
    """SQLite's driver may hand back naive datetimes; the database stores UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def rollups_15m_frame(*, meter_ids: list[int], time_range: TimeRange, fields: list[str]) -> pd.DataFrame:
    """The 15-minute rollups of these meters in the range as a frame: `meter_id`, `ts` (UTC) and
    each field's bucket average (`<field>`), sorted by meter and time; current (pending windows
    recomputed first). Other apps (mlops' dataset builds) read energy's history through this."""
    rollups_ensure_current(meter_ids=meter_ids)
    columns = [f"{name}_avg" for name in fields]
    queryset = ReadingRollup15m.objects.filter(
        meter_id__in=meter_ids, ts__gte=time_range.start, ts__lt=time_range.end
    ).order_by("meter_id", "ts")
    if connection.vendor == "postgresql" and meter_ids:
        # A year of 50 meters is 1.75 M rows: epoch seconds as floats instead of a timezone-aware
        # datetime per row make the fetch several times cheaper.
        table = ReadingRollup15m._meta.db_table
        selected = ", ".join(f'"{column}"' for column in columns)
        # COPY as CSV read by pandas' C parser rather than a Python tuple per row: the fetch and
        # the frame built from tuples were half of a year's dataset build.
        query = (
            f'COPY (SELECT meter_id, EXTRACT(EPOCH FROM ts)::float8, {selected} FROM "{table}" '  # noqa: S608
            "WHERE meter_id = ANY(%s) AND ts >= %s AND ts < %s ORDER BY meter_id, ts) TO STDOUT (FORMAT csv)"
        )
        buffer = io.BytesIO()
        with (
            connection.cursor() as cursor,
            cursor.copy(query, [list(meter_ids), time_range.start, time_range.end]) as copy,
        ):
            for chunk in copy:
                buffer.write(chunk)
        names = ["meter_id", "ts", *fields]
        dtypes = {"meter_id": "int64", **{name: "float64" for name in names[1:]}}
        if buffer.tell() == 0:  # read_csv refuses an empty input
            frame = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()})
        else:
            buffer.seek(0)
            frame = pd.read_csv(buffer, header=None, names=names, dtype=dtypes)
        frame["ts"] = pd.to_datetime(frame["ts"], unit="s", utc=True)
        return frame
    frame = pd.DataFrame.from_records(
        list(queryset.values_list("meter_id", "ts", *columns)), columns=["meter_id", "ts", *fields]
    )
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame

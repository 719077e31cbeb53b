"""Key figures of a subject over a range, read from rollups (definitions in docs/analytics.md).
The range is widened to whole 15-minute intervals."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, F, Max, Min, Q, Sum, Value

from energy.analytics import selectors
from energy.analytics.models import ReadingRollup1h, ReadingRollup15m
from energy.analytics.policy import retention_for
from energy.analytics.rollups import rollups_ensure_current
from energy.analytics.subjects import Subject, TimeRange, ceil_time, floor_time
from joulepoint.platform.timefmt import isoz

QUARTER = 900
HOUR = 3600
PHASES = ("a", "b", "c")


def _round(value, digits: int = 6):
    return None if value is None else round(float(value), digits)


def kpi_compute(*, organization, subject: Subject, time_range: TimeRange, tz: ZoneInfo) -> dict:
    time_range = TimeRange(floor_time(time_range.start, QUARTER), ceil_time(time_range.end, QUARTER))
    rollups_ensure_current(meter_ids=subject.meter_ids)
    rollups = ReadingRollup15m.objects.filter(
        meter_id__in=subject.meter_ids, ts__gte=time_range.start, ts__lt=time_range.end
    ).order_by()

    per_meter = _per_meter(subject.meter_ids, time_range)
    registers = {meter_id for meter_id, row in per_meter.items() if row["registers"]}
    integrated = _integrated(rollups, [meter_id for meter_id in per_meter if meter_id not in registers])
    for meter_id, row in per_meter.items():
        if meter_id in registers:
            row["imported"], row["exported"] = row["register_imported"], row["register_exported"]
        else:
            row["imported"], row["exported"] = integrated.get(meter_id, (None, None))
    meters = [per_meter.get(meter_id, {}) for meter_id in subject.meter_ids]

    if any(row.get("powers") for row in meters):
        demand, demand_method = POWER_DEMAND, "power"
    else:
        demand, demand_method = REGISTER_DEMAND, "register"
    # The demand series: one row per 15-minute interval (a group's meters summed: the coincident
    # peak); its peak row, maximum, mean and length in one SQL pass, so only one row leaves.
    if len(subject.meter_ids) == 1:
        series = rollups.annotate(d=demand).filter(d__isnull=False).values("ts", "d")
    else:
        series = rollups.values("ts").annotate(d=Sum(demand)).filter(d__isnull=False).values("ts", "d")
    peak_at, _, peak_kw, average_kw, intervals = selectors.aggregate_subquery(
        series,
        "ts, d, MAX(d) OVER (), AVG(d) OVER (), COUNT(*) OVER ()",
        suffix="ORDER BY d DESC, ts LIMIT 1",
        width=5,
    )
    peak_at = selectors.as_datetime(peak_at)

    received = sum(row.get("readings") or 0 for row in meters)
    interval = retention_for(organization.pk).expected_interval_seconds
    expected = int(len(subject.meter_ids) * time_range.seconds // interval)
    pf_readings = sum(row.get("pf_readings") or 0 for row in meters)
    pf_weighted = sum(row.get("pf_weighted") or 0.0 for row in meters)

    def extreme(func, key):
        values = [row.get(key) for row in meters if row.get(key) is not None]
        return func(values) if values else None

    return {
        "subject": subject.as_dict(),
        "start": isoz(time_range.start),
        "end": isoz(time_range.end),
        "tz": str(tz),
        "source": "rollup_15m",
        "energy": {
            "imported_kwh": _round(selectors.sum_or_none(*(row.get("imported") for row in meters))),
            "exported_kwh": _round(selectors.sum_or_none(*(row.get("exported") for row in meters))),
            "method": selectors.energy_method(registers, subject.meter_ids),
            # Register increases across silences longer than max_gap_seconds: energy of some
            # unknown time in the gap, so in neither the figures above nor peak demand.
            "gap_imported_kwh": _round(selectors.sum_or_none(*(row.get("gap_imported") for row in meters))),
            "gap_exported_kwh": _round(selectors.sum_or_none(*(row.get("gap_exported") for row in meters))),
            "max_gap_seconds": settings.ANALYTICS_MAX_GAP_SECONDS,
            "meters": [
                {
                    "meter_id": meter_id,
                    "method": "register" if meter_id in registers else "integrated_power",
                    "imported_kwh": _round(row.get("imported")),
                    "exported_kwh": _round(row.get("exported")),
                    "gap_imported_kwh": _round(row.get("gap_imported")),
                    "gap_exported_kwh": _round(row.get("gap_exported")),
                }
                for meter_id, row in zip(subject.meter_ids, meters, strict=True)
            ],
        },
        "peak_demand": {
            "kw": _round(peak_kw),
            "interval_start": isoz(peak_at),
            "interval_start_local": peak_at.astimezone(tz).isoformat() if peak_at else None,
            "method": demand_method,
        },
        "average_power_kw": _round(average_kw),
        "load_factor": _round(average_kw / peak_kw) if peak_kw else None,
        "demand_intervals": intervals or 0,
        "voltage": {
            phase: {"min": extreme(min, f"v{phase}_min"), "max": extreme(max, f"v{phase}_max")} for phase in PHASES
        },
        "power_factor_avg": _round(pf_weighted / pf_readings) if pf_readings else None,
        "completeness": {
            "expected_readings": expected,
            "received_readings": received,
            "percent": _round(min(100.0, 100.0 * received / expected), 2) if expected else None,
            "expected_interval_seconds": interval,
        },
        "events": selectors.event_counts(organization=organization, subject=subject, time_range=time_range),
    }


POWER_DEMAND = F("total_power_avg") / Value(1000.0)  # kW averaged over the quarter hour
REGISTER_DEMAND = F("total_energy_inc") * Value(4.0)  # kWh in a quarter hour → kW

# Per-meter figures that add up across buckets (sums, counts, extremes): the same from hourly
# rollups as from 15-minute ones, so whole hours are read from the hourly table (4x fewer rows).
PER_METER = {
    "readings": Sum("n"),
    "registers": Count("total_energy_last"),
    "powers": Count("total_power_avg"),
    "register_imported": Sum("total_energy_inc"),
    "register_exported": Sum("export_energy_inc"),
    "gap_imported": Sum("total_energy_gap"),
    "gap_exported": Sum("export_energy_gap"),
    "pf_weighted": Sum(F("power_factor_avg") * F("n")),
    "pf_readings": Sum("n", filter=~Q(power_factor_avg__isnull=True)),
    **{f"v{phase}_min": Min(f"voltage_{phase}_min") for phase in PHASES},
    **{f"v{phase}_max": Max(f"voltage_{phase}_max") for phase in PHASES},
}


def _spans(time_range: TimeRange) -> list[tuple[type, datetime, datetime]]:
    """Whole hours from the hourly rollups, the quarters before and after them from 15-minute ones."""
    first, last = ceil_time(time_range.start, HOUR), floor_time(time_range.end, HOUR)
    if first >= last:
        return [(ReadingRollup15m, time_range.start, time_range.end)]
    spans = [(ReadingRollup1h, first, last)]
    spans += [(ReadingRollup15m, low, high) for low, high in ((time_range.start, first), (last, time_range.end))]
    return [(model, low, high) for model, low, high in spans if low < high]


def _per_meter(meter_ids: list[int], time_range: TimeRange) -> dict[int, dict]:
    merged: dict[int, dict] = {}
    for model, low, high in _spans(time_range):
        rows = (
            model.objects.filter(meter_id__in=meter_ids, ts__gte=low, ts__lt=high)
            .order_by()
            .values("meter_id")
            .annotate(**PER_METER)
        )
        for row in rows:
            into = merged.setdefault(row["meter_id"], {})
            for key in PER_METER:
                into[key] = _combine(key, into.get(key), row[key])
    return merged


def _combine(key: str, left, right):
    if left is None or right is None:
        return right if left is None else left
    if key.endswith("_min"):
        return min(left, right)
    if key.endswith("_max"):
        return max(left, right)
    return left + right


def _integrated(rollups, meter_ids: list[int]) -> dict[int, tuple[float | None, float | None]]:
    """Energy integrated from power, for meters that send no register: the positive (import) and
    negative (export) part of each 15-minute average, not linear, so read from 15-minute rollups."""
    if not meter_ids:
        return {}
    rows = (
        rollups.filter(meter_id__in=meter_ids)
        .values("meter_id")
        .annotate(imported=Sum(selectors.import_expression(set())), exported=Sum(selectors.export_expression(set())))
    )
    return {row["meter_id"]: (row["imported"], row["exported"]) for row in rows}

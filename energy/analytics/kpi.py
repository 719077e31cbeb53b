"""Key figures of a subject over a range, read from 15-minute rollups (definitions in
docs/analytics.md). The range is widened to whole 15-minute intervals."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from django.db.models import Avg, Count, F, Max, Min, Q, Sum, Value

from energy.analytics import selectors
from energy.analytics.params import Subject, TimeRange, ceil_time, floor_time, isoz
from energy.analytics.retention import retention_for

QUARTER = 900
PHASES = ("a", "b", "c")


def _round(value, digits: int = 6):
    return None if value is None else round(float(value), digits)


def kpi_compute(*, organization, subject: Subject, time_range: TimeRange, tz: ZoneInfo) -> dict:
    time_range = TimeRange(floor_time(time_range.start, QUARTER), ceil_time(time_range.end, QUARTER))
    rollups = selectors.rollups_15m(subject, time_range)

    # One pass per meter: both energy methods are summed, the meter's method picks one after.
    per_meter = {
        row["meter_id"]: row
        for row in rollups.values("meter_id").annotate(
            readings=Sum("n"),
            registers=Count("total_energy_last"),
            powers=Count("total_power_avg"),
            register_imported=Sum("total_energy_inc"),
            register_exported=Sum("export_energy_inc"),
            integrated_imported=Sum(selectors.import_expression(set())),
            integrated_exported=Sum(selectors.export_expression(set())),
            pf_weighted=Sum(F("power_factor_avg") * F("n")),
            pf_readings=Sum("n", filter=~_null("power_factor_avg")),
            **{f"v{phase}_min": Min(f"voltage_{phase}_min") for phase in PHASES},
            **{f"v{phase}_max": Max(f"voltage_{phase}_max") for phase in PHASES},
            # One meter's demand series is its own rows: its figures come from this pass too.
            **(_demand_aggregates() if len(subject.meter_ids) == 1 else {}),
        )
    }
    registers = {meter_id for meter_id, row in per_meter.items() if row["registers"]}
    for meter_id, row in per_meter.items():
        method = "register" if meter_id in registers else "integrated"
        row["imported"], row["exported"] = row[f"{method}_imported"], row[f"{method}_exported"]
    meters = [per_meter.get(meter_id, {}) for meter_id in subject.meter_ids]

    if any(row.get("powers") for row in meters):
        demand, demand_method = POWER_DEMAND, "power"
    else:
        demand, demand_method = REGISTER_DEMAND, "register"
    if len(meters) == 1:
        row = meters[0]
        peak_kw, average_kw, intervals = (row.get(f"{demand_method}_{agg}") for agg in ("peak", "avg", "count"))
        peak_at = None
        if peak_kw is not None:
            # A top-1 sort of one meter's rows, not a sort of the whole series.
            peak_at = (
                rollups.annotate(d=demand).filter(d__isnull=False).order_by("-d", "ts").values_list("ts", flat=True)[:1]
            ).first()
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
            "meters": [
                {
                    "meter_id": meter_id,
                    "method": "register" if meter_id in registers else "integrated_power",
                    "imported_kwh": _round(row.get("imported")),
                    "exported_kwh": _round(row.get("exported")),
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


def _demand_aggregates() -> dict:
    return {
        f"{method}_{agg}": func(expression)
        for method, expression in (("power", POWER_DEMAND), ("register", REGISTER_DEMAND))
        for agg, func in (("peak", Max), ("avg", Avg), ("count", Count))
    }


def _null(field: str) -> Q:
    return Q(**{f"{field}__isnull": True})

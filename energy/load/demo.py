"""Load management's part of `make run`'s demo (registered with energy.demo.demo_extension_register
in EnergyConfig.ready()): the depot's grid connection becomes load-managed, with a 60 kW import
limit, a 2 kW margin, a 45 kW peak threshold, and an evening peak window (weekdays 17:00-20:00
local) at 40 kW, the tariff's peak hours. The allocation beat is in CELERY_BEAT_SCHEDULE, which
`make run` runs in process (manage.py periodic_tasks). The OCPP side adds the chargers and the
simulated stations whose sessions it shares. Idempotent."""

from __future__ import annotations

from datetime import time

from energy.load.models import LoadSchedule, SiteConstraint
from energy.models import Meter

DEMO_CONSTRAINT = {
    "max_import_kw": 60.0,
    "max_export_kw": 30.0,
    "phase_current_limit_a": 100.0,
    "safety_margin_kw": 2.0,
    "fallback_limit_kw": 11.0,
    "peak_threshold_kw": 45.0,
}
DEMO_SCHEDULE = "Evening peak (weekdays 17:00-20:00)"


def load_demo_extend(*, organization, site, meters, **_context) -> dict:
    grid = meters.get(Meter.Kind.GRID)
    constraint, _ = SiteConstraint.objects.update_or_create(
        site=site, defaults={"organization": organization, "grid_meter": grid, **DEMO_CONSTRAINT}
    )
    schedule, _ = LoadSchedule.objects.update_or_create(
        site=site,
        name=DEMO_SCHEDULE,
        defaults={
            "organization": organization,
            "days_of_week": [1, 2, 3, 4, 5],
            "start_time": time(17, 0),
            "end_time": time(20, 0),
            "max_import_kw": 40.0,
        },
    )
    return {"constraint_id": constraint.pk, "schedule_id": schedule.pk}

"""Shared reads of MLOps: what serves whom.

Tenant scope: each function reads one organization's rows.
"""

from __future__ import annotations

from energy.models import Meter
from mlops.models import ModelAlias, Purpose

SERVING_ALIASES = ("production", "staging")
_PRECEDENCE = {"meter": 0, "group": 1, "site": 2}  # the most specific assignment wins


def anomaly_serving_exists(*, organization_id: int) -> bool:
    return ModelAlias.objects.filter(
        organization_id=organization_id, alias__in=SERVING_ALIASES, assignment__purpose=Purpose.ANOMALY
    ).exists()


def anomaly_serving_plan(*, organization_id: int) -> dict[int, dict]:
    """meter id → {"zone": the site's zone, "site_id", "models": {alias: version description}}
    for every meter with a production or staging anomaly model (meter over group over site)."""
    aliases = ModelAlias.objects.filter(
        organization_id=organization_id, alias__in=SERVING_ALIASES, assignment__purpose=Purpose.ANOMALY
    ).select_related("assignment", "version", "version__model")
    chosen: dict[tuple[int, str], tuple[int, dict]] = {}
    meters_of: dict[int, Meter] = {}
    for alias in aliases:
        assignment = alias.assignment
        kind, pk = assignment.target
        meters = Meter.objects.filter(organization_id=organization_id).select_related("site")
        if kind == "meter":
            meters = meters.filter(pk=pk)
        elif kind == "group":
            meters = meters.filter(groups__pk=pk)
        else:
            meters = meters.filter(site_id=pk)
        version = alias.version
        described = {
            "version_id": version.pk,
            "model_id": version.model_id,
            "model": version.model.name,
            "version": version.number,
            "features": list(version.features),
            "threshold": version.threshold,
            "artifact": version.artifact,
        }
        for meter in meters:
            meters_of[meter.pk] = meter
            key = (meter.pk, alias.alias)
            rank = _PRECEDENCE[kind]
            if key not in chosen or rank < chosen[key][0]:
                chosen[key] = (rank, described)
    plan: dict[int, dict] = {}
    for (meter_id, alias), (_rank, described) in chosen.items():
        meter = meters_of[meter_id]
        entry = plan.setdefault(meter_id, {"zone": meter.site.timezone, "site_id": meter.site_id, "models": {}})
        entry["models"][alias] = described
    return plan


def forecast_alias(*, organization_id: int, kind: str, pk: int, meter_ids: list[int], purpose: str):
    """The production alias (with its version) serving a forecast subject for `purpose`: an
    assignment to the subject itself (the meter, or the group), else to the site of its meters."""
    aliases = ModelAlias.objects.filter(
        organization_id=organization_id, alias="production", assignment__purpose=purpose
    ).select_related("version", "version__model", "version__dataset_version__dataset", "assignment")
    exact = aliases.filter(**({"assignment__meter_id": pk} if kind == "meter" else {"assignment__group_id": pk}))
    found = exact.order_by("-updated_at").first()
    if found is None and meter_ids:
        site_ids = set(Meter.objects.filter(pk__in=meter_ids).values_list("site_id", flat=True))
        if len(site_ids) == 1:
            found = aliases.filter(assignment__site_id__in=site_ids).order_by("-updated_at").first()
    return found

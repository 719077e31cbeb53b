"""MLOps' part of `make run`'s demo (registered with energy.demo.demo_extension_register in
MlopsConfig.ready()): an anomaly model on the depot's grid connection and a PV forecaster on its
rooftop array, both in production.

Idempotent like demo_ensure: when the demo organization already has the model, nothing is done.
Otherwise, if the grid meter has no history yet, a week of the depot simulator's readings at
15-minute steps is ingested through energy's ingest service (as devices would post them);
then a dataset is built, the built-in anomaly trainer trains on it, and the version is assigned
to the grid meter and promoted to production, all through the same services as the API. The
grid meter sees EV sessions and battery peaks, so the dashboard's feed shows `anomaly.detected`
within minutes of the simulator starting. The PV meter's model (pvlib clear sky at the site scaled
to what the array made that week) serves `GET /api/energy/analytics/forecast?meter=<pv>&method=model`.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from energy.analytics.subjects import floor_time
from energy.ingest.store import reading_batch_ingest
from energy.models import Meter, Reading
from energy.simulator import DepotSimulator
from mlops.datasets.services import dataset_build_request, dataset_create, dataset_version_build
from mlops.models import RegisteredModel
from mlops.registry.services import assignment_create, model_create, promotion_create
from mlops.training.services import training_job_create, training_job_execute, training_job_run

DEMO_MODEL_NAME = "Demo grid anomalies"
DEMO_PV_MODEL_NAME = "Demo PV forecast"
HISTORY_DAYS = 7
STEP = timedelta(minutes=15)


def demo_extend(*, organization, user, site, meters: dict) -> dict | None:
    grid = meters.get(Meter.Kind.GRID)
    if grid is None:
        return None
    end = floor_time(timezone.now(), int(STEP.total_seconds()))
    start = end - timedelta(days=HISTORY_DAYS)
    actor = f"user:{user.get_username()}"
    existing = RegisteredModel.objects.filter(organization=organization, name=DEMO_MODEL_NAME).first()
    if existing is not None:
        data = {"anomaly_model_id": existing.pk}
    else:
        if not Reading.objects.filter(meter=grid, ts__gte=start, ts__lt=end).exists():
            _seed_history(site=site, meters=meters, start=start, end=end)
        data = _anomaly_model(organization=organization, grid=grid, start=start, end=end, actor=actor)
    pv = meters.get(Meter.Kind.PV)
    if pv is not None and site.latitude is not None and site.longitude is not None:
        data.update(_pv_model(organization=organization, pv=pv, start=start, end=end, actor=actor))
    return data


def _anomaly_model(*, organization, grid, start, end, actor: str) -> dict:
    dataset = dataset_create(
        organization=organization,
        name="Demo grid, last week",
        meters=[grid],
        fields=["total_power"],
        features=["local_hour", "weekday", "holiday", "rolling_mean_1h", "lag_1d"],
        start=start,
        end=end,
        holiday_country="DE",
        created_by=actor,
    )
    version = dataset_build_request(dataset=dataset)
    dataset_version_build(version_id=version.pk)  # now, not on commit: the job below needs it
    model = model_create(organization=organization, name=DEMO_MODEL_NAME, purpose="anomaly")
    job = training_job_create(
        organization=organization,
        model=model,
        dataset_version=version,
        trainer="anomaly_isolation_forest",
        params={"contamination": 0.01, "n_estimators": 30},  # 30 trees: a quick ONNX export at start-up
        created_by=actor,
    )
    training_job_run(job=job)
    job = training_job_execute(job_id=job.pk)
    if job is None or job.status != job.Status.SUCCEEDED:
        return {"anomaly_model_id": model.pk, "error": getattr(job, "error", "")}
    assignment = assignment_create(organization=organization, model=model, purpose="anomaly", meter=grid)
    promotion_create(
        organization=organization,
        assignment=assignment,
        alias="production",
        version=model.versions.get(),
        reason="demo: trained on the simulated week",
        actor=actor,
    )
    return {"anomaly_model_id": model.pk, "dataset_id": dataset.pk}


def _pv_model(*, organization, pv, start, end, actor: str) -> dict:
    """The PV meter's forecaster, trained on the same week and promoted, once."""
    existing = RegisteredModel.objects.filter(organization=organization, name=DEMO_PV_MODEL_NAME).first()
    if existing is not None:
        return {"pv_model_id": existing.pk}
    dataset = dataset_create(
        organization=organization, name="Demo PV, last week", meters=[pv], fields=["total_power"],
        start=start, end=end, created_by=actor,
    )  # fmt: skip
    version = dataset_build_request(dataset=dataset)
    dataset_version_build(version_id=version.pk)
    model = model_create(organization=organization, name=DEMO_PV_MODEL_NAME, purpose="pv_forecast")
    job = training_job_create(
        organization=organization, model=model, dataset_version=version, trainer="pv_forecaster", created_by=actor
    )
    training_job_run(job=job)
    job = training_job_execute(job_id=job.pk)
    if job is None or job.status != job.Status.SUCCEEDED:
        return {"pv_model_id": model.pk, "pv_error": getattr(job, "error", "")}
    assignment = assignment_create(organization=organization, model=model, purpose="pv_forecast", meter=pv)
    promotion_create(
        organization=organization, assignment=assignment, alias="production", version=model.versions.get(),
        reason="demo: clear sky scaled to the simulated week", actor=actor,
    )  # fmt: skip
    return {"pv_model_id": model.pk, "pv_dataset_id": dataset.pk}


def _seed_history(*, site, meters: dict, start, end) -> None:
    simulator = DepotSimulator(timezone=site.timezone, latitude=site.latitude, longitude=site.longitude, seed=19)
    items: dict[str, list] = {kind: [] for kind in meters}
    moment = start
    while moment < end:
        for kind, reading in simulator.step(moment).items():
            if kind in items:
                items[kind].append(reading)
        moment += STEP
    for kind, readings in items.items():
        reading_batch_ingest(device=meters[kind], items=readings, source="demo")

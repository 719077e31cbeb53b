"""Training jobs: create one on a ready dataset version, queue it, cancel it, and execute it in
an `ml` worker with a built-in trainer, registering the ONNX model version it produces.

Tenant scope: the job's organization; its model and dataset version belong to it (checked).
The timeout is checked between the stages (load, fit, export): a trainer that overruns it fails
the job and registers nothing.
"""

from __future__ import annotations

import logging
import time

import pandas as pd
from django.db import transaction
from django.utils import timezone

from joulepoint.platform.enqueue import enqueue_on_commit
from mlops import artifacts, taskqueue
from mlops.datasets.services import dataset_meters
from mlops.errors import MlopsConflict, MlopsInvalid
from mlops.models import DatasetVersion, Purpose, RegisteredModel, TrainingJob
from mlops.registry.services import model_version_register
from mlops.training import anomaly, forecaster, pv
from mlops.training.external import external_job_dispatch

logger = logging.getLogger(__name__)
TRAINERS = {
    TrainingJob.Trainer.ANOMALY: (Purpose.ANOMALY, anomaly.params_clean, anomaly.anomaly_train),
    TrainingJob.Trainer.DEMAND: (Purpose.DEMAND_FORECAST, forecaster.params_clean, forecaster.demand_train),
    TrainingJob.Trainer.PV: (Purpose.PV_FORECAST, pv.params_clean, pv.pv_train),
    # Any purpose; its parameters are the trainer's business (passed in the spec as they are).
    TrainingJob.Trainer.EXTERNAL: (None, lambda params: params, None),
}
MAX_TIMEOUT_SECONDS = 6 * 3600
OPEN = (TrainingJob.Status.CREATED, TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING)


class JobTimedOut(Exception):
    pass


@transaction.atomic
def training_job_create(
    *,
    organization,
    model: RegisteredModel,
    dataset_version: DatasetVersion,
    trainer: str,
    params: dict | None = None,
    timeout_seconds: int = 600,
    created_by: str = "",
) -> TrainingJob:
    """A job (status created) training `model` on `dataset_version`: both of `organization`, the
    trainer fit for the model's purpose, its parameters valid. The version may still be building
    (it must be ready when the job runs)."""
    params = dict(params or {})
    if model.organization_id != organization.pk:
        raise MlopsInvalid("model", "Unknown model.")
    if dataset_version.organization_id != organization.pk:
        raise MlopsInvalid("dataset_version", "Unknown dataset version.")
    if trainer not in TRAINERS:
        raise MlopsInvalid("trainer", f"One of {', '.join(TRAINERS)}.")
    purpose, clean, _train = TRAINERS[trainer]
    if purpose is not None and model.purpose != purpose:
        raise MlopsInvalid("trainer", f"{trainer} trains {purpose} models; the model is for {model.purpose}.")
    clean(params)
    if trainer == TrainingJob.Trainer.PV:
        dataset_location(dataset=dataset_version.dataset)  # refuse now, not in the worker
    if not 1 <= timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise MlopsInvalid("timeout_seconds", f"From 1 to {MAX_TIMEOUT_SECONDS}.")
    return TrainingJob.objects.create(
        organization=organization,
        model=model,
        dataset_version=dataset_version,
        trainer=trainer,
        params=params,
        timeout_seconds=timeout_seconds,
        created_by=created_by,
    )


def dataset_location(*, dataset) -> dict[str, float]:
    """{latitude, longitude} of the one site a PV dataset's meters are on (the clear sky is the
    site's), or MlopsInvalid naming what is missing."""
    sites = {meter.site for meter in dataset_meters(dataset=dataset)}
    if len(sites) != 1:
        raise MlopsInvalid("dataset_version", "The PV forecaster needs a dataset of meters on one site.")
    site = sites.pop()
    if site.latitude is None or site.longitude is None:
        raise MlopsInvalid(
            "dataset_version", f"The PV forecaster needs the site's latitude and longitude; {site.name} has none."
        )
    return {"latitude": site.latitude, "longitude": site.longitude}


@transaction.atomic
def training_job_run(*, job: TrainingJob) -> TrainingJob:
    """Queue the job on the `ml` queue. 409 when its dataset version is not ready, or the job
    already ran or is running; a failed or cancelled job may run again."""
    job = TrainingJob.objects.select_for_update().select_related("dataset_version").get(pk=job.pk)
    if job.dataset_version.status != DatasetVersion.Status.READY:
        raise MlopsConflict("dataset_version", f"The dataset version is {job.dataset_version.status}, not ready.")
    if job.status in (TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING, TrainingJob.Status.SUCCEEDED):
        raise MlopsConflict("status", f"The job is {job.status}.")
    job.status = TrainingJob.Status.QUEUED
    job.error = ""
    job.started_at = job.finished_at = None
    job.save(update_fields=["status", "error", "started_at", "finished_at"])
    enqueue_on_commit(taskqueue.TRAINING_JOB_EXECUTE, job.pk)
    return job


@transaction.atomic
def training_job_cancel(*, job: TrainingJob) -> TrainingJob:
    """Cancel a job that has not finished (409 otherwise); a running trainer notices before it
    registers its model, and registers nothing."""
    job = TrainingJob.objects.select_for_update().get(pk=job.pk)
    if job.status not in OPEN:
        raise MlopsConflict("status", f"The job is {job.status} already.")
    job.status = TrainingJob.Status.CANCELLED
    job.finished_at = timezone.now()
    job.logs += "cancelled\n"
    job.save(update_fields=["status", "finished_at", "logs"])
    return job


def training_job_execute(*, job_id: int) -> TrainingJob | None:
    """Run a queued job (safe to run twice: anything else is left alone)."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != TrainingJob.Status.QUEUED:
            return job
        job.status = TrainingJob.Status.RUNNING
        job.started_at = timezone.now()
        job.logs = ""
        job.save(update_fields=["status", "started_at", "logs"])
    began = time.monotonic()
    log: list[str] = []

    def stage(message: str) -> None:
        elapsed = time.monotonic() - began
        log.append(f"{elapsed:8.2f}s {message}")
        if elapsed > job.timeout_seconds:
            raise JobTimedOut(f"Timed out after {elapsed:.0f} s (timeout {job.timeout_seconds} s).")

    if job.trainer == TrainingJob.Trainer.EXTERNAL:
        try:
            log.append(external_job_dispatch(job=job))
        except MlopsInvalid as exc:
            return _job_finish(job, log, error=exc.message)
        TrainingJob.objects.filter(pk=job.pk).update(logs="\n".join(log) + "\n")
        return job  # running until the trainer completes it (or its tokens expire)
    try:
        _purpose, _clean, train = TRAINERS[job.trainer]
        version = job.dataset_version
        stage(f"loading dataset version {version.number} ({version.row_count} rows)")
        with artifacts.artifact_open(version.artifact) as handle:
            frame = pd.read_parquet(handle, engine="pyarrow")
        stage("training")
        context = dataset_location(dataset=version.dataset) if job.trainer == TrainingJob.Trainer.PV else {}
        trained = train(frame, job.params, **context)
        stage(f"trained; exported ONNX of {len(trained.onnx)} bytes")
    except (MlopsInvalid, JobTimedOut) as exc:
        return _job_finish(job, log, error=getattr(exc, "message", str(exc)))
    except Exception as exc:
        logger.exception("training job %s failed", job_id)
        return _job_finish(job, log, error=f"{type(exc).__name__}: {exc}")
    with transaction.atomic():
        locked = TrainingJob.objects.select_for_update().get(pk=job.pk)
        if locked.status != TrainingJob.Status.RUNNING:
            return locked  # cancelled meanwhile: register nothing
        model_version_register(
            model=job.model,
            onnx=trained.onnx,
            trainer=job.trainer,
            params=trained.params,
            metrics=trained.metrics,
            features=trained.features,
            threshold=trained.threshold,
            job=job,
            dataset_version=job.dataset_version,
            created_by=job.created_by,
        )
        job.metrics = trained.metrics
        return _job_finish(job, log, error="")


def _job_finish(job: TrainingJob, log: list[str], *, error: str) -> TrainingJob:
    with transaction.atomic():
        current = TrainingJob.objects.select_for_update().get(pk=job.pk)
        if current.status != TrainingJob.Status.RUNNING:
            return current
        job.status = TrainingJob.Status.FAILED if error else TrainingJob.Status.SUCCEEDED
        job.error = error
        job.logs = "\n".join([*log, f"failed: {error}" if error else "succeeded"]) + "\n"
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "logs", "metrics", "finished_at"])
        return job

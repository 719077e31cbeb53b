"""MLOps' Celery tasks, all on the `ml` queue: doors that take ids (or the event message), load
and call one service. Safe to run twice (the services check state first)."""

from __future__ import annotations

from celery import shared_task

from joulepoint.celery import ORJSON
from mlops import taskqueue
from mlops.datasets.services import dataset_version_build
from mlops.inference.scoring import batch_score, event_from_message
from mlops.training.external import training_jobs_expire
from mlops.training.services import training_job_execute


@shared_task(name=taskqueue.DATASET_VERSION_BUILD, queue=taskqueue.QUEUE, acks_late=True)
def dataset_version_build_task(version_id: int) -> None:
    dataset_version_build(version_id=version_id)


@shared_task(name=taskqueue.TRAINING_JOB_EXECUTE, queue=taskqueue.QUEUE, acks_late=True)
def training_job_execute_task(job_id: int) -> None:
    training_job_execute(job_id=job_id)


@shared_task(name=taskqueue.BATCH_SCORE, queue=taskqueue.QUEUE, acks_late=True, serializer=ORJSON)
def batch_score_task(message: dict) -> None:
    batch_score(event=event_from_message(message))


@shared_task(name=taskqueue.TRAINING_JOBS_EXPIRE, queue=taskqueue.QUEUE, ignore_result=True)
def training_jobs_expire_task() -> int:
    return training_jobs_expire()

"""MLOps' Celery tasks: doors that take ids (or the event messages), load and call one service.
Builds and training on the `ml` queue, scoring on `inference` (a training job must not hold
up scoring). Safe to run twice (the services check state first)."""

from __future__ import annotations

from celery import shared_task

from joulepoint.celery import ORJSON
from joulepoint.platform.coalescing import CoalescedTask
from mlops import taskqueue
from mlops.datasets.services import dataset_version_build
from mlops.inference.scoring import batches_score, event_from_message
from mlops.training.external import training_jobs_expire
from mlops.training.services import training_job_execute


@shared_task(name=taskqueue.DATASET_VERSION_BUILD, queue=taskqueue.QUEUE, acks_late=True)
def dataset_version_build_task(version_id: int) -> None:
    dataset_version_build(version_id=version_id)


@shared_task(name=taskqueue.TRAINING_JOB_EXECUTE, queue=taskqueue.QUEUE, acks_late=True)
def training_job_execute_task(job_id: int) -> None:
    training_job_execute(job_id=job_id)


# Coalesced: the batches that queue up while one run scores are scored together by the next
# (one model run and one transaction for all of them; joulepoint/platform/coalescing.py).
@shared_task(
    name=taskqueue.BATCH_SCORE, queue=taskqueue.INFERENCE_QUEUE, base=CoalescedTask, acks_late=True, serializer=ORJSON
)
def batch_score_task(*messages: dict) -> None:
    batches_score(events=[event_from_message(message) for message in messages])


@shared_task(name=taskqueue.TRAINING_JOBS_EXPIRE, queue=taskqueue.QUEUE, ignore_result=True)
def training_jobs_expire_task() -> int:
    return training_jobs_expire()

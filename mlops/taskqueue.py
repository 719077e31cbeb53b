"""The names of MLOps' Celery tasks: services queue them by name (joulepoint.platform.enqueue),
mlops.tasks registers them. Builds and training run on the `ml` queue, anomaly scoring on its
own `inference` queue (its own worker: a training job must not hold up scoring for its
timeout). The names must not change (queued messages refer to them)."""

from __future__ import annotations

QUEUE = "ml"
INFERENCE_QUEUE = "inference"
DATASET_VERSION_BUILD = "mlops.dataset_version_build"
TRAINING_JOB_EXECUTE = "mlops.training_job_execute"
BATCH_SCORE = "mlops.batch_score"
TRAINING_JOBS_EXPIRE = "mlops.training_jobs_expire"

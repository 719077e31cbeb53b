"""External trainers: a job spec out, signed; the dataset and the model back in, by token.

When an `external` job runs (in an `ml` worker), two random tokens are made for it (only their
SHA-256 is stored): one that only downloads the job's dataset version, one that only completes
the job, once. The spec (job, trainer parameters, dataset download URL, callback URL, both
tokens, the expiry) is POSTed to MLOPS_EXTERNAL_TRAINER_URL signed with Standard Webhooks
headers, exactly as webhooks are (automations.signing), so a trainer verifies it the same way.

The trainer completes with `POST /api/ml/training-jobs/{id}/complete` (its token as a Bearer
token), uploading the model as ONNX and its metrics. The upload is checked by onnx's checker and
by loading it in onnxruntime (nothing is ever unpickled); over MLOPS_MAX_MODEL_BYTES it is a 413.
A wrong token is a 401 (whether or not the job exists); an expired or used one, or a job no
longer running, a 403; nothing changes on a refusal.

While it trains, the trainer may report progress (`POST …/{id}/progress`, percent and message,
with the same completion token, which a report does not spend). A report is also a sign of
life: it renews the tokens for MLOPS_EXTERNAL_TOKEN_TTL_SECONDS from now. A trainer that never
completes is found by the periodic sweep (`training_jobs_expire`) once its tokens expire: the
job becomes `expired`, saying when it last heard from the trainer.
Tenant scope: the job's organization; a token names one job of one organization.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import timedelta

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from automations import signing
from joulepoint.audit.registry import audited_update
from joulepoint.platform.timefmt import isoz
from mlops.errors import MlopsInvalid
from mlops.models import TrainingJob
from mlops.registry.services import model_version_register

MAX_PROGRESS_MESSAGE = 500
# A built-in job past its timeout gets this long to notice it itself before the sweep takes it.
EXPIRY_GRACE_SECONDS = 60


class TokenRefused(Exception):
    """`status` 401 (not this job's token) or 403 (expired, used, or the job is not waiting)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ModelTooLarge(Exception):
    pass


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def external_job_dispatch(*, job: TrainingJob) -> str:
    """Make the job's tokens and POST its signed spec to the trainer; returns a log line.
    Raises MlopsInvalid when no trainer is configured or it does not accept the spec."""
    url, secret = settings.MLOPS_EXTERNAL_TRAINER_URL, settings.MLOPS_EXTERNAL_TRAINER_SECRET
    if not url or not signing.secret_is_valid(secret):
        raise MlopsInvalid("trainer", "No external trainer is configured (MLOPS_EXTERNAL_TRAINER_URL and _SECRET).")
    download, completion = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = timezone.now() + timedelta(seconds=settings.MLOPS_EXTERNAL_TOKEN_TTL_SECONDS)
    audited_update(
        TrainingJob.objects.filter(pk=job.pk),
        download_token_hash=_digest(download),
        completion_token_hash=_digest(completion),
        tokens_expire_at=expires,
    )
    base = settings.MLOPS_PUBLIC_URL.rstrip("/")
    spec = {
        "job_id": job.pk,
        "model": {"id": job.model_id, "name": job.model.name, "purpose": job.model.purpose},
        "params": job.params,
        "timeout_seconds": job.timeout_seconds,
        "dataset": {
            "version_id": job.dataset_version_id,
            "schema": job.dataset_version.schema,
            "url": f"{base}/api/ml/training-jobs/{job.pk}/dataset",
            "token": download,
        },
        "callback": {"url": f"{base}/api/ml/training-jobs/{job.pk}/complete", "token": completion},
        "expires_at": expires.isoformat(),
    }
    body = json.dumps(spec).encode()
    headers = {"Content-Type": "application/json", **signing.headers(secret=secret, msg_id=f"job_{job.pk}", body=body)}
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        raise MlopsInvalid("trainer", f"The external trainer could not be reached: {exc}") from None
    if response.status_code >= 300:
        raise MlopsInvalid("trainer", f"The external trainer answered {response.status_code}.")
    return f"job spec accepted by the external trainer ({response.status_code}); waiting for completion"


def _job_for(*, job_id: int, token: str, field: str) -> TrainingJob:
    """The running job whose `field` token this is (locked), or TokenRefused."""
    job = TrainingJob.objects.select_for_update().select_related("model", "dataset_version").filter(pk=job_id).first()
    stored = getattr(job, field, "") if job is not None else ""
    if not token or not stored or not hmac.compare_digest(stored, _digest(token)):
        if job is not None and job.trainer == TrainingJob.Trainer.EXTERNAL and job.tokens_expire_at and not stored:
            raise TokenRefused(403, "This token was used already.")
        raise TokenRefused(401, "Not a token of this training job.")
    if job.tokens_expire_at is None or job.tokens_expire_at <= timezone.now():
        raise TokenRefused(403, "The token has expired.")
    if job.status != TrainingJob.Status.RUNNING:
        raise TokenRefused(403, f"The job is {job.status}, not waiting for its trainer.")
    return job


@transaction.atomic
def external_token_check(*, job_id: int, token: str) -> None:
    """Refuse a request that does not carry this job's completion token before reading its body
    (the completion re-checks it, locked)."""
    _job_for(job_id=job_id, token=token, field="completion_token_hash")


@transaction.atomic
def external_dataset_artifact(*, job_id: int, token: str) -> tuple[TrainingJob, str]:
    """The dataset artifact an external trainer may download with its download token."""
    job = _job_for(job_id=job_id, token=token, field="download_token_hash")
    return job, job.dataset_version.artifact


def onnx_validate(data: bytes) -> None:
    """A well-formed ONNX model that onnxruntime loads, or MlopsInvalid("model")."""
    import onnx  # imported here: only a completing trainer's request needs it (and onnxruntime)
    import onnxruntime

    try:
        onnx.checker.check_model(onnx.load_model_from_string(data))
        onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise MlopsInvalid("model", f"Not a valid ONNX model: {type(exc).__name__}.") from None


@transaction.atomic
def external_job_complete(
    *,
    job_id: int,
    token: str,
    model_file,
    metrics: dict,
    features: list[str],
    threshold: float | None,
) -> TrainingJob:
    """Register the uploaded ONNX as the job's model version and finish the job; the completion
    token is spent. Refusals (TokenRefused, ModelTooLarge, MlopsInvalid) change nothing."""
    job = _job_for(job_id=job_id, token=token, field="completion_token_hash")
    if model_file.size > settings.MLOPS_MAX_MODEL_BYTES:
        raise ModelTooLarge(f"The model is larger than {settings.MLOPS_MAX_MODEL_BYTES} bytes.")
    data = model_file.read()
    onnx_validate(data)
    model_version_register(
        model=job.model,
        onnx=data,
        trainer=job.trainer,
        params=job.params,
        metrics=metrics,
        features=features,
        threshold=threshold,
        job=job,
        dataset_version=job.dataset_version,
        created_by=job.created_by,
    )
    job.status = TrainingJob.Status.SUCCEEDED
    job.metrics = metrics
    job.completion_token_hash = ""
    job.download_token_hash = ""
    job.finished_at = timezone.now()
    job.logs += f"completed by the external trainer ({len(data)} bytes of ONNX)\nsucceeded\n"
    job.save()
    return job


@transaction.atomic
def external_job_progress(*, job_id: int, token: str, percent: float, message: str = "") -> TrainingJob:
    """Record the trainer's progress on its running job (completion token, not spent) and renew
    its tokens' lifetime: a trainer that reports is alive. Refusals (TokenRefused,
    MlopsInvalid) change nothing."""
    job = _job_for(job_id=job_id, token=token, field="completion_token_hash")
    if not isinstance(percent, int | float) or isinstance(percent, bool) or not 0 <= percent <= 100:
        raise MlopsInvalid("percent", "A number from 0 to 100.")
    if not isinstance(message, str) or len(message) > MAX_PROGRESS_MESSAGE:
        raise MlopsInvalid("message", f"Text of at most {MAX_PROGRESS_MESSAGE} characters.")
    now = timezone.now()
    job.progress_percent = float(percent)
    job.progress_message = message
    job.progress_at = now
    job.tokens_expire_at = max(job.tokens_expire_at, now + timedelta(seconds=settings.MLOPS_EXTERNAL_TOKEN_TTL_SECONDS))
    job.logs += f"progress {percent:g}%" + (f": {message}" if message else "") + "\n"
    job.save(update_fields=["progress_percent", "progress_message", "progress_at", "tokens_expire_at", "logs"])
    return job


def training_jobs_expire(*, now=None) -> int:
    """The periodic sweep (Celery beat): a running job whose trainer stopped reporting becomes
    `expired` and will register nothing: an external job once its tokens expired (no completion
    and no progress within their lifetime), a built-in one once it ran past its timeout (its
    worker died: a live one checks the timeout itself, between stages). Returns how many."""
    now = now or timezone.now()
    running = TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING)
    candidates = list(
        running.filter(trainer=TrainingJob.Trainer.EXTERNAL, tokens_expire_at__lte=now).values_list("pk", flat=True)
    )
    for job in running.exclude(trainer=TrainingJob.Trainer.EXTERNAL).only("pk", "started_at", "timeout_seconds"):
        if job.started_at and job.started_at + timedelta(seconds=job.timeout_seconds + EXPIRY_GRACE_SECONDS) <= now:
            candidates.append(job.pk)
    expired = 0
    for pk in candidates:
        with transaction.atomic():
            job = TrainingJob.objects.select_for_update().get(pk=pk)
            if job.status != TrainingJob.Status.RUNNING:
                continue  # completed or cancelled meanwhile
            job.status = TrainingJob.Status.EXPIRED
            job.error = _expiry_reason(job)
            job.finished_at = now
            job.logs += f"expired: {job.error}\n"
            # The token hashes stay: a late trainer is told its token expired, not "unknown".
            job.save(update_fields=["status", "error", "finished_at", "logs"])
            expired += 1
    return expired


def _expiry_reason(job: TrainingJob) -> str:
    if job.trainer != TrainingJob.Trainer.EXTERNAL:
        return f"The worker stopped before the job finished (it ran past its timeout of {job.timeout_seconds} s)."
    heard = (
        f"last progress {job.progress_percent:g}% at {isoz(job.progress_at)}"
        if job.progress_at
        else "no progress was ever reported"
    )
    return f"The external trainer did not complete before its tokens expired at {isoz(job.tokens_expire_at)} ({heard})."

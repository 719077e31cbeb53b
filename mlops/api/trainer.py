"""The doors an external trainer uses, authenticated by its job's single-purpose tokens (sent as
`Authorization: Bearer <token>`), not by OAuth2: the trainer holds no credential of the
organization, only what the signed job spec gave it (mlops.training.external).

- GET  /api/ml/training-jobs/{id}/dataset   the job's dataset version (Parquet, streamed)
- POST /api/ml/training-jobs/{id}/progress  JSON {"percent": 0-100, "message": "…"} (completion
  token, not spent; renews the tokens' lifetime)
- POST /api/ml/training-jobs/{id}/complete  multipart: `model` (ONNX), `metrics` (JSON object),
  optional `features` (JSON list) and `threshold` (number)
"""

from __future__ import annotations

import json

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied, ValidationError
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from joulepoint.tenancy.viewsets import OrganizationViewSet
from mlops.api.serializers import TrainingJobSerializer
from mlops.api.views import ID_REGEX, refusal
from mlops.artifacts import artifact_open
from mlops.errors import MlopsInvalid
from mlops.models import TrainingJob
from mlops.training.external import (
    ModelTooLarge,
    TokenRefused,
    external_dataset_artifact,
    external_job_complete,
    external_job_progress,
    external_token_check,
)


class TrainerTokenAuthentication(BaseAuthentication):
    """Reads the Bearer token; the service decides whether it is this job's (a 401 otherwise)."""

    def authenticate(self, request):
        return None  # nobody is logged in: the token is checked against the job by the service

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="training-job"'


def bearer(request) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


def _refused(exc: TokenRefused):
    return AuthenticationFailed(exc.message) if exc.status == 401 else PermissionDenied(exc.message)


class TrainerViewSet(OrganizationViewSet):
    """External trainer doors (job tokens, not OAuth2)."""

    queryset = TrainingJob.objects.all()
    serializer_class = TrainingJobSerializer
    authentication_classes = [TrainerTokenAuthentication]
    lookup_value_regex = ID_REGEX
    model = TrainingJob

    def dangerously_get_authenticators(self):
        return [TrainerTokenAuthentication()]

    def dangerously_get_permissions(self):
        return [AllowAny()]  # the job token is checked, in a transaction, by the service

    @extend_schema(
        responses={(200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY, 401: None, 403: None},
        summary="An external trainer downloads its job's dataset (download token)",
    )
    @action(detail=True, methods=["get"])
    def dataset(self, request, pk=None):
        try:
            job, path = external_dataset_artifact(job_id=int(pk), token=bearer(request))
        except TokenRefused as exc:
            raise _refused(exc) from None
        return FileResponse(
            artifact_open(path), as_attachment=True, filename=f"job-{job.pk}.parquet",
            content_type="application/vnd.apache.parquet",
        )  # fmt: skip

    @extend_schema(
        request=inline_serializer(
            "TrainingJobProgress",
            {
                "percent": serializers.FloatField(min_value=0, max_value=100),
                "message": serializers.CharField(required=False, allow_blank=True, max_length=500),
            },
        ),
        responses={
            200: TrainingJobSerializer,
            400: OpenApiResponse(description="percent not in 0-100, or message too long; nothing changed"),
            401: OpenApiResponse(description="Not this job's completion token"),
            403: OpenApiResponse(description="Token expired or used, or the job is not waiting"),
        },
        summary="An external trainer reports progress (completion token, not spent)",
    )
    @action(detail=True, methods=["post"], parser_classes=[JSONParser])
    def progress(self, request, pk=None):
        token = bearer(request)
        try:
            external_token_check(job_id=int(pk), token=token)  # before the body is parsed: 401 first
            body = request.data if isinstance(request.data, dict) else {}
            job = external_job_progress(
                job_id=int(pk), token=token, percent=body.get("percent"), message=body.get("message", "")
            )
        except TokenRefused as exc:
            raise _refused(exc) from None
        except MlopsInvalid as exc:
            raise refusal(exc) from None
        return Response(TrainingJobSerializer(job).data)

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "TrainingJobCompletion",
                {
                    "model": serializers.FileField(help_text="The model as ONNX"),
                    "metrics": serializers.CharField(help_text="A JSON object"),
                    "features": serializers.CharField(required=False, help_text="A JSON list of input names"),
                    "threshold": serializers.FloatField(required=False),
                },
            )
        },
        responses={
            200: TrainingJobSerializer,
            400: OpenApiResponse(description="Not ONNX, or bad metrics; nothing changed"),
            401: OpenApiResponse(description="Not this job's completion token"),
            403: OpenApiResponse(description="Token expired or used, or the job is not waiting"),
            413: OpenApiResponse(description="The model is over MLOPS_MAX_MODEL_BYTES"),
        },
        summary="An external trainer completes its job with an ONNX model (single-use token)",
    )
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser])
    def complete(self, request, pk=None):
        token = bearer(request)
        try:
            external_token_check(job_id=int(pk), token=token)
            fields = _completion_fields(request)
            job = external_job_complete(job_id=int(pk), token=token, **fields)
        except TokenRefused as exc:
            raise _refused(exc) from None
        except ModelTooLarge as exc:
            return Response({"detail": str(exc), "field": "model"}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        except MlopsInvalid as exc:
            raise refusal(exc) from None
        return Response(TrainingJobSerializer(job).data)


def _completion_fields(request) -> dict:
    model_file = request.FILES.get("model")
    if model_file is None:
        raise MlopsInvalid("model", "Upload the model as a file named `model`.")
    try:
        metrics = json.loads(request.data.get("metrics") or "{}")
        features = json.loads(request.data.get("features") or "[]")
        threshold = request.data.get("threshold")
        threshold = float(threshold) if threshold not in (None, "") else None
    except (ValueError, TypeError):
        raise ValidationError({"metrics": ["metrics and features are JSON; threshold a number."]}) from None
    if not isinstance(metrics, dict):
        raise MlopsInvalid("metrics", "A JSON object.")
    if not isinstance(features, list) or not all(isinstance(name, str) for name in features):
        raise MlopsInvalid("features", "A JSON list of strings.")
    return {"model_file": model_file, "metrics": metrics, "features": features, "threshold": threshold}

"""MLOps API doors (seed: POST /api/ml/datasets then /{id}/build, POST /api/ml/training-jobs then
/{id}/run, POST /api/ml/assignments and /promotions): thin views over mlops' services.
Scopes: ml:read for reads, ml:write for writes. Refusals: 400 naming the field (nothing
written), 404 for another organization's rows, 409 for a row in the wrong state.
"""

from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.response import Response

from joulepoint.tenancy.viewsets import OrganizationViewSet
from mlops.api import filters
from mlops.api import serializers as s
from mlops.artifacts import artifact_open
from mlops.datasets.services import dataset_build_request, dataset_create, dataset_delete
from mlops.errors import MlopsConflict, MlopsInvalid
from mlops.models import Assignment, Dataset, DatasetVersion, Promotion, RegisteredModel, TrainingJob
from mlops.registry.services import assignment_create, assignment_delete, model_create, promotion_create
from mlops.training.services import training_job_cancel, training_job_create, training_job_run

ID_REGEX = "[0-9]{1,18}"
ERRORS = {
    400: OpenApiResponse(description="Invalid body: a JSON object naming each bad field; nothing was written"),
    401: OpenApiResponse(description="Missing or invalid credentials"),
    403: OpenApiResponse(description="Token lacks the scope"),
}
CONFLICT = {409: OpenApiResponse(description="The row is not in a state that allows this")}


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def refusal(exc: MlopsInvalid) -> APIException:
    if isinstance(exc, MlopsConflict):
        error = Conflict(exc.message)
        error.extra = {"field": exc.field}
        return error
    return ValidationError({exc.field: [exc.message]})


def actor_of(request) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.get_username()}"
    application = getattr(request.auth, "application", None)
    return f"client:{application.name}" if application is not None else ""


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, OrganizationViewSet):
    """Datasets: what to learn from; each build makes a new downloadable version."""

    queryset = Dataset.objects.prefetch_related("meters")
    serializer_class = s.DatasetSerializer
    scope_domain = "ml"
    filterset_class = filters.DatasetFilter
    ordering_fields = ["created_at", "name", "id"]
    ordering = ["-created_at", "-id"]
    lookup_value_regex = ID_REGEX

    @extend_schema(responses={201: s.DatasetSerializer, **ERRORS}, summary="Define a dataset")
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            dataset = dataset_create(organization=self.organization, created_by=actor_of(request), **data)
        except MlopsInvalid as exc:
            raise refusal(exc) from None
        return Response(s.DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None, 404: None, **CONFLICT}, summary="Delete a dataset no job trained on")
    def destroy(self, request, *args, **kwargs):
        try:
            dataset_delete(dataset=self.get_object())
        except MlopsInvalid as exc:
            raise refusal(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: s.DatasetVersionSerializer, 404: None}, summary="Build a new version")
    @action(detail=True, methods=["post"])
    def build(self, request, pk=None):
        version = dataset_build_request(dataset=self.get_object())
        version.refresh_from_db()
        return Response(s.DatasetVersionSerializer(version).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: s.DatasetVersionSerializer(many=True), 404: None}, summary="The built versions")
    @action(detail=True, methods=["get"])
    def versions(self, request, pk=None):
        versions = DatasetVersion.objects.for_org(self.organization).filter(dataset=self.get_object())
        return Response(s.DatasetVersionSerializer(versions.order_by("-number"), many=True).data)

    @extend_schema(
        responses={(200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY, 404: None, **CONFLICT},
        summary="Download a ready version's Parquet (streamed)",
    )
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<number>[0-9]{1,9})/download")
    def download(self, request, pk=None, number=None):
        dataset = self.get_object()
        version = DatasetVersion.objects.for_org(self.organization).filter(dataset=dataset, number=number).first()
        if version is None:
            raise NotFound("No such version of this dataset.")
        if version.status != DatasetVersion.Status.READY:
            raise Conflict(f"The version is {version.status}; only ready versions have an artifact.")
        return FileResponse(
            artifact_open(version.artifact),
            as_attachment=True,
            filename=f"dataset-{dataset.pk}-v{version.number}.parquet",
            content_type="application/vnd.apache.parquet",
        )


class TrainingJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Training jobs: a trainer on a dataset version; run queues it on the `ml` queue."""

    queryset = TrainingJob.objects.select_related("model", "dataset_version")
    serializer_class = s.TrainingJobSerializer
    scope_domain = "ml"
    filterset_class = filters.TrainingJobFilter
    ordering_fields = ["created_at", "id"]
    ordering = ["-created_at", "-id"]
    lookup_value_regex = ID_REGEX

    @extend_schema(responses={201: s.TrainingJobSerializer, **ERRORS}, summary="Create a training job")
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            job = training_job_create(
                organization=self.organization, created_by=actor_of(request), **serializer.validated_data
            )
        except MlopsInvalid as exc:
            raise refusal(exc) from None
        return Response(s.TrainingJobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={202: s.TrainingJobSerializer, 404: None, **CONFLICT}, summary="Queue it")
    @action(detail=True, methods=["post"])
    def run(self, request, pk=None):
        try:
            job = training_job_run(job=self.get_object())
        except MlopsInvalid as exc:
            raise refusal(exc) from None
        job.refresh_from_db()
        return Response(s.TrainingJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: s.TrainingJobSerializer, 404: None, **CONFLICT}, summary="Cancel it")
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        try:
            job = training_job_cancel(job=self.get_object())
        except MlopsInvalid as exc:
            raise refusal(exc) from None
        return Response(s.TrainingJobSerializer(job).data)


class RegisteredModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """The model registry: named models and their ONNX versions."""

    queryset = RegisteredModel.objects.all()
    serializer_class = s.RegisteredModelSerializer
    scope_domain = "ml"
    filterset_class = filters.RegisteredModelFilter
    ordering_fields = ["name", "created_at", "id"]
    ordering = ["name", "id"]
    lookup_value_regex = ID_REGEX

    @extend_schema(responses={201: s.RegisteredModelSerializer, **ERRORS}, summary="Register a model name")
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            model = model_create(organization=self.organization, **serializer.validated_data)
        except MlopsInvalid as exc:
            raise refusal(exc) from None
        return Response(s.RegisteredModelSerializer(model).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: s.ModelVersionSerializer(many=True), 404: None}, summary="The model's versions")
    @action(detail=True, methods=["get"])
    def versions(self, request, pk=None):
        model = self.get_object()
        return Response(s.ModelVersionSerializer(model.versions.order_by("-number"), many=True).data)


class AssignmentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, OrganizationViewSet
):
    """Assignments: a model serves a meter, a group or a site for a purpose."""

    queryset = Assignment.objects.select_related("model").prefetch_related("aliases")
    serializer_class = s.AssignmentSerializer
    scope_domain = "ml"
    filterset_class = filters.AssignmentFilter
    ordering_fields = ["created_at", "id"]
    ordering = ["-created_at", "-id"]
    lookup_value_regex = ID_REGEX

    @extend_schema(responses={201: s.AssignmentSerializer, **ERRORS}, summary="Assign a model")
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            assignment = assignment_create(organization=self.organization, **serializer.validated_data)
        except MlopsInvalid as exc:
            raise refusal(exc) from None
        return Response(s.AssignmentSerializer(assignment).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None, 404: None}, summary="Remove an assignment (its aliases stop serving)")
    def destroy(self, request, *args, **kwargs):
        assignment_delete(assignment=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class PromotionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Promotions: move an alias of an assignment to a version; the list is the history."""

    queryset = Promotion.objects.all()
    serializer_class = s.PromotionSerializer
    scope_domain = "ml"
    filterset_class = filters.PromotionFilter
    ordering_fields = ["created_at", "id"]
    ordering = ["-created_at", "-id"]
    lookup_value_regex = ID_REGEX

    @extend_schema(responses={201: s.PromotionSerializer, **ERRORS}, summary="Promote a version (or roll back)")
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            promotion = promotion_create(
                organization=self.organization, actor=actor_of(request), **serializer.validated_data
            )
        except MlopsInvalid as exc:
            raise refusal(exc) from None
        return Response(s.PromotionSerializer(promotion).data, status=status.HTTP_201_CREATED)

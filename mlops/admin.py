"""Admin for MLOps: read-mostly pages over datasets, jobs, the registry, assignments and
promotions, with the actions a facility manager needs (build, run, promote to production).
Every action goes through the same services as the API."""

from __future__ import annotations

from django.contrib import admin, messages

from joulepoint.tenancy.admin import ReadOnlyScopedAdmin
from mlops.datasets.services import dataset_build_request
from mlops.errors import MlopsInvalid
from mlops.models import (
    Assignment,
    Dataset,
    DatasetVersion,
    InferenceRun,
    ModelAlias,
    ModelVersion,
    Promotion,
    RegisteredModel,
    TrainingJob,
)
from mlops.registry.services import promotion_create
from mlops.training.services import training_job_run


def _actor(request) -> str:
    return f"user:{request.user.get_username()}"


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyScopedAdmin):
    list_display = ["name", "organization", "interval", "start", "end", "created_at"]
    list_filter = ["interval"]
    search_fields = ["name"]
    actions = ["build"]

    @admin.action(description="Build a new version of the selected datasets")
    def build(self, request, queryset):
        for dataset in queryset:
            dataset_build_request(dataset=dataset)
        self.message_user(request, f"{queryset.count()} builds queued.")


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ReadOnlyScopedAdmin):
    list_display = ["dataset", "number", "status", "row_count", "size_bytes", "finished_at"]
    list_filter = ["status"]


@admin.register(TrainingJob)
class TrainingJobAdmin(ReadOnlyScopedAdmin):
    list_display = ["id", "model", "trainer", "dataset_version", "status", "progress", "created_at", "finished_at"]
    list_filter = ["status", "trainer"]
    actions = ["run"]

    @admin.action(description="Run the selected jobs")
    def run(self, request, queryset):
        for job in queryset:
            try:
                training_job_run(job=job)
            except MlopsInvalid as exc:
                self.message_user(request, f"Job {job.pk}: {exc.message}", level=messages.WARNING)

    @admin.display(description="progress")
    def progress(self, job: TrainingJob) -> str:
        """What an external trainer last reported (empty for built-in trainers)."""
        if job.progress_percent is None:
            return ""
        return f"{job.progress_percent:g}%" + (f" · {job.progress_message}" if job.progress_message else "")


@admin.register(RegisteredModel)
class RegisteredModelAdmin(ReadOnlyScopedAdmin):
    list_display = ["name", "purpose", "organization", "created_at"]
    list_filter = ["purpose"]


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyScopedAdmin):
    list_display = ["model", "number", "status", "trainer", "threshold", "created_at"]
    list_filter = ["status", "trainer"]
    actions = ["promote_production"]

    @admin.action(description="Promote to production on every assignment of its model")
    def promote_production(self, request, queryset):
        for version in queryset.select_related("model"):
            assignments = Assignment.objects.for_org(version.organization_id).filter(model=version.model)
            for assignment in assignments:
                try:
                    promotion_create(
                        organization=version.organization,
                        assignment=assignment,
                        alias="production",
                        version=version,
                        reason="promoted in the admin",
                        actor=_actor(request),
                    )
                except MlopsInvalid as exc:
                    self.message_user(request, f"{version}: {exc.message}", level=messages.WARNING)


class ModelAliasInline(admin.TabularInline):
    model = ModelAlias
    fields = ["alias", "version", "updated_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        return True


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyScopedAdmin):
    list_display = ["model", "purpose", "meter", "group", "site", "created_at"]
    list_filter = ["purpose"]
    inlines = [ModelAliasInline]


@admin.register(Promotion)
class PromotionAdmin(ReadOnlyScopedAdmin):
    list_display = ["assignment", "alias", "version", "previous_version", "actor", "created_at"]
    list_filter = ["alias"]


@admin.register(InferenceRun)
class InferenceRunAdmin(ReadOnlyScopedAdmin):
    list_display = ["version", "alias", "scored", "anomalies", "max_score", "published", "created_at"]
    list_filter = ["alias", "published"]

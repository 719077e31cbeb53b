"""MLOps rows: datasets and their built versions, training jobs, the model registry, assignments,
promotions (aliases and their history) and inference runs.

Every row carries its organization directly (`TenantModel`), so `for_org` needs no join and a row
cannot reach another tenant's rows through a foreign key: services check each reference against
the organization before writing. Artifacts (Parquet datasets, ONNX models) live in Django's
storage under `mlops/<organization>/…`; rows keep the path, size and SHA-256.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from energy.models import Meter, MeterGroup, Site
from joulepoint.tenancy.models import Organization, TenantModel


class Purpose(models.TextChoices):
    ANOMALY = "anomaly", "Anomaly detection"
    DEMAND_FORECAST = "demand_forecast", "Demand forecast"
    PV_FORECAST = "pv_forecast", "PV generation forecast"


class Dataset(TenantModel):
    """What to learn from: the readings of some meters (explicit, a group's or a site's), which
    fields, over which range, at which interval, with which derived features. Building it makes a
    new DatasetVersion each time; the definition itself is not versioned (edit = a new dataset).
    Tenant scope: the organization; its meters, group and site belong to it (checked on create)."""

    class Interval(models.TextChoices):
        MIN15 = "15min", "15 minutes"
        HOUR = "1h", "1 hour"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    meters = models.ManyToManyField(Meter, blank=True, related_name="+")
    group = models.ForeignKey(MeterGroup, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    fields = models.JSONField(default=list, help_text="Reading fields, e.g. ['total_power']")
    features = models.JSONField(default=list, help_text="Derived features (see docs/mlops.md)")
    start = models.DateTimeField()
    end = models.DateTimeField()
    interval = models.CharField(max_length=8, choices=Interval.choices, default=Interval.MIN15)
    holiday_country = models.CharField(max_length=8, blank=True, default="", help_text="ISO 3166 code for `holiday`")
    labels = models.JSONField(
        default=list, blank=True, help_text="Label columns from events: pq_events, protection_events, annotations"
    )
    created_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class DatasetVersion(TenantModel):
    """One build of a dataset: queued → building → ready (artifact written) or failed (error).
    Numbers count from 1 per dataset and are never reused; old versions stay downloadable."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        BUILDING = "building"
        READY = "ready"
        FAILED = "failed"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True, default="")
    row_count = models.PositiveIntegerField(null=True, blank=True)
    schema = models.JSONField(default=list, help_text="[{name, type}] of the Parquet columns")
    checksum = models.CharField(max_length=64, blank=True, default="", help_text="SHA-256 of the artifact")
    artifact = models.CharField(max_length=500, blank=True, default="", help_text="Path in Django's storage")
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["dataset_id", "-number"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="uniq_mlops_dataset_version")]

    def __str__(self) -> str:
        return f"{self.dataset} v{self.number}"


class RegisteredModel(TenantModel):
    """A named model in the registry (`/api/ml/models/`); its versions are what serve."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_mlops_model_name")]

    def __str__(self) -> str:
        return self.name


class TrainingJob(TenantModel):
    """Training a model on a ready dataset version: created → queued → running → succeeded /
    failed / cancelled. A success registers a ModelVersion of `model`."""

    class Status(models.TextChoices):
        CREATED = "created"
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        EXPIRED = "expired"  # an external trainer never completed before its tokens expired

    class Trainer(models.TextChoices):
        ANOMALY = "anomaly_isolation_forest", "Anomaly: IsolationForest + robust z-score baseline"
        DEMAND = "demand_forecaster", "Demand forecaster: gradient boosting on calendar and lag features"
        PV = "pv_forecaster", "PV forecaster: pvlib clear-sky irradiance scaled to the meter's history"
        EXTERNAL = "external", "External trainer (signed job spec; completes by uploading ONNX)"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="jobs")
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="jobs")
    trainer = models.CharField(max_length=64, choices=Trainer.choices)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATED)
    logs = models.TextField(blank=True, default="")
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    timeout_seconds = models.PositiveIntegerField(default=600)
    created_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # External trainers: SHA-256 of the single-purpose tokens (never the tokens), and their expiry.
    download_token_hash = models.CharField(max_length=64, blank=True, default="")
    completion_token_hash = models.CharField(max_length=64, blank=True, default="")
    tokens_expire_at = models.DateTimeField(null=True, blank=True)
    # External trainers' progress reports (POST …/progress with the completion token).
    progress_percent = models.FloatField(null=True, blank=True, help_text="0-100, as the trainer last reported")
    progress_message = models.CharField(max_length=500, blank=True, default="")
    progress_at = models.DateTimeField(null=True, blank=True, help_text="When the trainer last reported")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.trainer} job {self.pk}"


class ModelVersion(TenantModel):
    """One trained model: an ONNX artifact with what made it (job, dataset version, trainer,
    parameters), its metrics, input features and (anomaly) threshold. Immutable once written."""

    class Status(models.TextChoices):
        READY = "ready"
        FAILED = "failed"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    job = models.ForeignKey(TrainingJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="versions")
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    trainer = models.CharField(max_length=64)
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    features = models.JSONField(default=list, help_text="Input columns of the ONNX model, in order")
    threshold = models.FloatField(null=True, blank=True, help_text="Anomaly score above which a reading is anomalous")
    artifact = models.CharField(max_length=500)
    checksum = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField(default=0)
    created_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_id", "-number"]
        constraints = [models.UniqueConstraint(fields=["model", "number"], name="uniq_mlops_model_version")]

    def __str__(self) -> str:
        return f"{self.model} v{self.number}"


class Assignment(TenantModel):
    """A model serves exactly one of a meter, a group or a site for a purpose. Which version
    serves is decided by its aliases (ModelAlias), moved by promotions."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="assignments")
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    meter = models.ForeignKey(Meter, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    group = models.ForeignKey(MeterGroup, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(meter__isnull=False, group__isnull=True, site__isnull=True)
                    | Q(meter__isnull=True, group__isnull=False, site__isnull=True)
                    | Q(meter__isnull=True, group__isnull=True, site__isnull=False)
                ),
                name="mlops_assignment_one_target",
            )
        ]

    @property
    def target(self) -> tuple[str, int]:
        for kind in ("meter", "group", "site"):
            pk = getattr(self, f"{kind}_id")
            if pk is not None:
                return kind, pk
        raise ValueError("assignment without a target")

    def __str__(self) -> str:
        kind, pk = self.target
        return f"{self.model} → {kind} {pk} ({self.purpose})"


class ModelAlias(TenantModel):
    """Where an alias of an assignment points now: exactly one version per (assignment, alias)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="aliases")
    alias = models.CharField(max_length=64)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["assignment_id", "alias"]
        constraints = [models.UniqueConstraint(fields=["assignment", "alias"], name="uniq_mlops_alias")]

    def __str__(self) -> str:
        return f"{self.alias} → {self.version}"


class Promotion(TenantModel):
    """The history of an assignment's aliases: who moved which alias to which version, from
    which, when and why. Append-only; a rollback is a promotion of an earlier version."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="promotions")
    alias = models.CharField(max_length=64)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="promotions")
    previous_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.alias} → {self.version} ({self.created_at:%Y-%m-%d %H:%M})"


class InferenceRun(TenantModel):
    """What one model version made of one ingested batch: counts and the worst score. Production
    runs also published events; staging (shadow) runs are only recorded here, for comparison."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="inference_runs")
    alias = models.CharField(max_length=64)
    event_id = models.CharField(max_length=64, help_text="The data.ingested event scored")
    scored = models.PositiveIntegerField(default=0)
    anomalies = models.PositiveIntegerField(default=0)
    max_score = models.FloatField(null=True, blank=True)
    published = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "created_at"], name="mlops_inference_org_idx")]

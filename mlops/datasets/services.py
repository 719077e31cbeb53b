"""Datasets: define one, queue a build, build it (in an `ml` worker) into a versioned Parquet.

Tenant scope: every function acts for the dataset's organization; the meters, group and site a
dataset names are checked to belong to it.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from energy.analytics.selectors import rollups_15m_frame
from energy.analytics.subjects import TimeRange
from energy.models import Meter, MeterGroup, Site
from energy.models.readings import READING_FIELDS
from joulepoint.platform.enqueue import enqueue_on_commit
from mlops import artifacts, taskqueue
from mlops.datasets.labels import LABELS, label_columns, labels_read
from mlops.errors import MlopsConflict, MlopsInvalid
from mlops.features import FEATURES, STEP_SECONDS, feature_frame, holiday_countries
from mlops.models import Dataset, DatasetVersion, TrainingJob

logger = logging.getLogger(__name__)
MAX_RANGE_DAYS = 3 * 366


@transaction.atomic
def dataset_create(
    *,
    organization,
    name: str,
    fields: list[str],
    start: datetime,
    end: datetime,
    meters: list[Meter] | None = None,
    group: MeterGroup | None = None,
    site: Site | None = None,
    features: list[str] | None = None,
    labels: list[str] | None = None,
    interval: str = Dataset.Interval.MIN15,
    holiday_country: str = "",
    created_by: str = "",
) -> Dataset:
    """A dataset of exactly one source (meters, a group or a site) of `organization`."""
    meters = list(meters or [])
    features = list(features or [])
    labels = list(labels or [])
    sources = [name for name, value in (("meters", meters), ("group", group), ("site", site)) if value]
    if len(sources) != 1:
        raise MlopsInvalid("meters", "Name exactly one source: meters, group or site.")
    for field, rows in (("meters", meters), ("group", [group] if group else []), ("site", [site] if site else [])):
        if any(row.organization_id != organization.pk for row in rows):
            raise MlopsInvalid(field, "Unknown or foreign: it must belong to your organization.")
    if not fields:
        raise MlopsInvalid("fields", "Name at least one reading field.")
    unknown = sorted(set(fields) - set(READING_FIELDS))
    if unknown:
        raise MlopsInvalid("fields", f"Unknown reading fields: {', '.join(unknown)}.")
    unknown = sorted(set(features) - set(FEATURES))
    if unknown:
        raise MlopsInvalid("features", f"Unknown features: {', '.join(unknown)}; known: {', '.join(FEATURES)}.")
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise MlopsInvalid("labels", f"Unknown labels: {', '.join(unknown)}; known: {', '.join(LABELS)}.")
    if end <= start:
        raise MlopsInvalid("end", "Must be after start.")
    if (end - start).days > MAX_RANGE_DAYS:
        raise MlopsInvalid("end", f"The range may span at most {MAX_RANGE_DAYS} days.")
    if interval not in Dataset.Interval.values:
        raise MlopsInvalid("interval", f"One of {', '.join(Dataset.Interval.values)}.")
    if holiday_country and holiday_country not in holiday_countries():
        raise MlopsInvalid("holiday_country", "Not a supported ISO 3166 country code.")
    dataset = Dataset.objects.create(
        organization=organization,
        name=name,
        group=group,
        site=site,
        fields=list(dict.fromkeys(fields)),
        features=list(dict.fromkeys(features)),
        labels=list(dict.fromkeys(labels)),
        start=start,
        end=end,
        interval=interval,
        holiday_country=holiday_country,
        created_by=created_by,
    )
    if meters:
        dataset.meters.set(meters)
    return dataset


@transaction.atomic
def dataset_delete(*, dataset: Dataset) -> None:
    """Delete a dataset and its versions' rows, unless a training job used one (409: the
    registry must keep what each model version was trained on). Artifacts stay in storage."""
    if TrainingJob.objects.filter(dataset_version__dataset=dataset).exists():
        raise MlopsConflict("dataset", "Training jobs used a version of this dataset; it is kept.")
    dataset.delete()


def dataset_meters(*, dataset: Dataset) -> list[Meter]:
    """The meters a dataset reads, resolved now (a group's members may have changed)."""
    if dataset.group_id:
        queryset = dataset.group.meters.all()
    elif dataset.site_id:
        queryset = Meter.objects.filter(site_id=dataset.site_id)
    else:
        queryset = dataset.meters.all()
    return list(queryset.filter(organization_id=dataset.organization_id).select_related("site").order_by("pk"))


@transaction.atomic
def dataset_build_request(*, dataset: Dataset) -> DatasetVersion:
    """A new queued version (the next number; numbers are never reused) and its build task on
    the `ml` queue, sent when this transaction commits."""
    Dataset.objects.select_for_update().filter(pk=dataset.pk).first()  # serializes version numbers
    last = DatasetVersion.objects.filter(dataset=dataset).aggregate(n=Max("number"))["n"] or 0
    version = DatasetVersion.objects.create(organization_id=dataset.organization_id, dataset=dataset, number=last + 1)
    enqueue_on_commit(taskqueue.DATASET_VERSION_BUILD, version.pk)
    return version


def dataset_version_build(*, version_id: int) -> DatasetVersion | None:
    """Build a queued version: read the rollups through energy's selector, derive the features,
    write Parquet through the storage API, record rows, schema, checksum and times. Safe to run
    twice (a version no longer queued is left alone). No rows in range → failed, saying so."""
    with transaction.atomic():
        version = DatasetVersion.objects.select_for_update().select_related("dataset").filter(pk=version_id).first()
        if version is None or version.status != DatasetVersion.Status.QUEUED:
            return version
        version.status = DatasetVersion.Status.BUILDING
        version.started_at = timezone.now()
        version.save(update_fields=["status", "started_at"])
    try:
        data, frame = _build_bytes(version.dataset)
    except MlopsInvalid as exc:
        return _finish(version, error=exc.message)
    except Exception as exc:  # a worker must record why, not leave the version "building"
        logger.exception("dataset version %s failed", version_id)
        return _finish(version, error=f"Build failed: {type(exc).__name__}: {exc}")
    stored = artifacts.artifact_write(
        organization_id=version.organization_id,
        kind="datasets",
        name=f"{version.dataset_id}/v{version.number}.parquet",
        data=data,
    )
    version.row_count = len(frame)
    version.schema = [{"name": str(name), "type": str(dtype)} for name, dtype in frame.dtypes.items()]
    version.checksum = stored.checksum
    version.artifact = stored.path
    version.size_bytes = stored.size_bytes
    return _finish(version, error="")


def _finish(version: DatasetVersion, *, error: str) -> DatasetVersion:
    version.status = DatasetVersion.Status.FAILED if error else DatasetVersion.Status.READY
    version.error = error
    version.finished_at = timezone.now()
    version.save()
    return version


def _build_bytes(dataset: Dataset):
    meters = dataset_meters(dataset=dataset)
    if not meters:
        raise MlopsInvalid("meters", "The dataset's source has no meters.")
    raw = rollups_15m_frame(
        meter_ids=[meter.pk for meter in meters],
        time_range=TimeRange(dataset.start, dataset.end),
        fields=dataset.fields,
    )
    raw = raw.dropna(how="all", subset=dataset.fields)
    if raw.empty:
        raise MlopsInvalid(
            "start",
            f"No readings of {', '.join(dataset.fields)} for these meters between "
            f"{dataset.start.isoformat()} and {dataset.end.isoformat()}: nothing to build.",
        )
    frame = feature_frame(
        raw,
        fields=dataset.fields,
        features=dataset.features,
        interval=dataset.interval,
        zones={meter.pk: meter.site.timezone for meter in meters},
        holiday_country=dataset.holiday_country,
    )
    if dataset.labels:
        found = labels_read(
            organization_id=dataset.organization_id,
            labels=dataset.labels,
            meter_ids=[meter.pk for meter in meters],
            start=dataset.start,
            end=dataset.end,
            step_seconds=STEP_SECONDS[dataset.interval],
        )
        frame = label_columns(frame, found)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue(), frame

"""The model registry: models, their versions (ONNX artifacts), assignments and promotions.

Tenant scope: every function acts for one organization; a reference to another organization's
row is refused as unknown. Promotions serialize on the assignment row, so two concurrent
promotions of one alias both land in the history, in order, and the alias ends on the later.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from joulepoint.events.listeners import listeners_changed
from mlops import artifacts
from mlops.errors import MlopsInvalid
from mlops.inference.sessions import serving_changed
from mlops.models import Assignment, ModelAlias, ModelVersion, Promotion, Purpose, RegisteredModel

ALIASES = ("production", "staging")
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"


@transaction.atomic
def model_create(*, organization, name: str, purpose: str, description: str = "") -> RegisteredModel:
    if purpose not in Purpose.values:
        raise MlopsInvalid("purpose", f"One of {', '.join(Purpose.values)}.")
    if RegisteredModel.objects.filter(organization=organization, name=name).exists():
        raise MlopsInvalid("name", "A model of this name exists already.")
    return RegisteredModel.objects.create(
        organization=organization, name=name, purpose=purpose, description=description
    )


@transaction.atomic
def model_version_register(
    *,
    model: RegisteredModel,
    onnx: bytes,
    trainer: str,
    params: dict,
    metrics: dict,
    features: list[str],
    threshold: float | None,
    job=None,
    dataset_version=None,
    created_by: str = "",
) -> ModelVersion:
    """Store the ONNX bytes and record the next version of `model` (numbers never reused)."""
    RegisteredModel.objects.select_for_update().filter(pk=model.pk).first()
    last = ModelVersion.objects.filter(model=model).aggregate(n=Max("number"))["n"] or 0
    stored = artifacts.artifact_write(
        organization_id=model.organization_id, kind="models", name=f"{model.pk}/v{last + 1}.onnx", data=onnx
    )
    return ModelVersion.objects.create(
        organization_id=model.organization_id,
        model=model,
        number=last + 1,
        job=job,
        dataset_version=dataset_version,
        trainer=trainer,
        params=params,
        metrics=metrics,
        features=features,
        threshold=threshold,
        artifact=stored.path,
        checksum=stored.checksum,
        size_bytes=stored.size_bytes,
        created_by=created_by,
    )


@transaction.atomic
def assignment_create(*, organization, model: RegisteredModel, purpose: str, meter=None, group=None, site=None):
    """`model` serves exactly one of a meter, a group or a site of `organization` for `purpose`."""
    if model.organization_id != organization.pk:
        raise MlopsInvalid("model", "Unknown model.")
    if purpose not in Purpose.values:
        raise MlopsInvalid("purpose", f"One of {', '.join(Purpose.values)}.")
    if purpose != model.purpose:
        raise MlopsInvalid("purpose", f"The model is for {model.purpose}, not {purpose}.")
    targets = [(name, row) for name, row in (("meter", meter), ("group", group), ("site", site)) if row is not None]
    if len(targets) != 1:
        raise MlopsInvalid("meter", "Name exactly one of meter, group or site.")
    name, row = targets[0]
    if row.organization_id != organization.pk:
        raise MlopsInvalid(name, "Unknown or foreign: it must belong to your organization.")
    return Assignment.objects.create(
        organization=organization, model=model, purpose=purpose, meter=meter, group=group, site=site
    )


@transaction.atomic
def assignment_delete(*, assignment: Assignment) -> None:
    """Remove an assignment with its aliases and history; serving processes forget it."""
    assignment.delete()
    transaction.on_commit(serving_changed)
    transaction.on_commit(listeners_changed)


@transaction.atomic
def promotion_create(
    *, organization, assignment: Assignment, alias: str, version: ModelVersion, reason: str = "", actor: str = ""
) -> Promotion:
    """Point `alias` of `assignment` at `version` and append the promotion to the history.

    Refused: a version of another organization or of another model than the assignment's
    (unknown), a version that is not ready (failed). A rollback is this with an earlier version.
    Serving processes drop their cached sessions once this commits (the serving epoch)."""
    if assignment.organization_id != organization.pk:
        raise MlopsInvalid("assignment", "Unknown assignment.")
    if version.organization_id != organization.pk or version.model_id != assignment.model_id:
        raise MlopsInvalid("version", "Unknown version of the assigned model.")
    if version.status != ModelVersion.Status.READY or (version.job_id and version.job.status != "succeeded"):
        raise MlopsInvalid("version", "Only a ready version of a succeeded job can be promoted.")
    # One promotion of an assignment at a time: the loser of a race waits here, then reads the
    # winner's alias as its previous version, so the history stays a consistent chain.
    Assignment.objects.select_for_update().filter(pk=assignment.pk).first()
    current = ModelAlias.objects.filter(assignment=assignment, alias=alias).first()
    previous = current.version if current else None
    if current is None:
        ModelAlias.objects.create(organization=organization, assignment=assignment, alias=alias, version=version)
    else:
        current.version = version
        current.save(update_fields=["version", "updated_at"])
    promotion = Promotion.objects.create(
        organization=organization,
        assignment=assignment,
        alias=alias,
        version=version,
        previous_version=previous,
        reason=reason,
        actor=actor,
    )
    transaction.on_commit(serving_changed)
    transaction.on_commit(listeners_changed)
    return promotion

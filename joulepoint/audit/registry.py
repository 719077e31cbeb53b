"""Which rows are audited, and the organization of an audited row.

Each app registers its own models in its AppConfig.ready() with `audit_register` (the kernel
knows no domain app). Audited: configuration and decisions (sites, devices and their keys,
credentials, rules, tariffs, wallets and their ledger, models and promotions, relay commands).
Not audited: telemetry and other high-volume rows a machine writes (readings, rollups, PQ and
protection events, alerts, deliveries, breakers, outbox, inference runs): they are the data,
not changes to it, and ingest speed matters. The list and the reasons: docs/audit.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from copy import copy

from auditlog import get_logentry_model
from auditlog.context import auditlog_disabled
from auditlog.diff import model_instance_diff
from auditlog.registry import auditlog
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Model, QuerySet


def audit_register(
    model: type[Model],
    *,
    secret_fields: Sequence[str] = (),
    exclude_fields: Sequence[str] = (),
    m2m_fields: Sequence[str] = (),
) -> None:
    """Audit every create, update and delete of `model`. `secret_fields` are recorded as changed,
    never with their values (joulepoint.audit.masking); `exclude_fields` are not recorded at all
    (counters and timestamps a machine moves)."""
    auditlog.register(
        model,
        mask_fields=list(secret_fields),
        exclude_fields=list(exclude_fields),
        m2m_fields=set(m2m_fields),
    )


def audit_updates_record(rows: Iterable[Model], **values) -> None:
    """An update entry for each row of a `QuerySet.update()`, which auditlog's signals never see.

    For the writes where a conditional UPDATE is the point (a status moved only if still
    pending, many expired at once): `rows` as they were read before it, `values` what it set.
    The diff, masks and exclusions are auditlog's, as for a save()."""
    if auditlog_disabled.get():
        return
    entries = get_logentry_model().objects
    for old in rows:
        new = copy(old)
        for field, value in values.items():
            setattr(new, field, value)
        changes = model_instance_diff(old, new, use_json_for_changes=settings.AUDITLOG_STORE_JSON_CHANGES)
        if changes:
            entries.log_create(new, action=entries.model.Action.UPDATE, changes=changes)


def audit_creates_record(rows: Iterable[Model]) -> None:
    """A create entry for each row inserted by SQL of our own (auditlog sees only save())."""
    if auditlog_disabled.get():
        return
    entries = get_logentry_model().objects
    for row in rows:
        changes = model_instance_diff(None, row, use_json_for_changes=settings.AUDITLOG_STORE_JSON_CHANGES)
        entries.log_create(row, action=entries.model.Action.CREATE, changes=changes)


def audited_update(queryset: QuerySet, **values) -> int:
    """`queryset.update(**values)` (its filter still the guard: a row that no longer matches is
    left alone) with an update entry for each row it moved; returns how many it moved.

    One read before the UPDATE, and one more only when a row changed in between. For rows of
    audited models written by few, rare statements (status changes, expiries), not for
    anything written at ingest rate."""
    rows = {row.pk: row for row in queryset}
    if not rows:
        return 0
    moved = queryset.filter(pk__in=rows).update(**values)
    if moved and moved < len(rows):  # someone else changed some rows since they were read
        now_matching = set(queryset.model._base_manager.filter(pk__in=rows, **values).values_list("pk", flat=True))
        rows = {pk: row for pk, row in rows.items() if pk in now_matching}
    if moved:
        audit_updates_record(rows.values(), **values)
    return moved


def organization_id_of(instance: Model) -> int | None:
    """The organization of a tenant row, by its model's `tenant_path`, read from the instance so
    that a deleted row still names it. None for rows of no tenant (users)."""
    path = getattr(type(instance), "tenant_path", None)
    if path is None:
        return None
    if path == "pk":
        return instance.pk
    *hops, last = path.split("__")
    target = instance
    try:
        for hop in hops:
            target = getattr(target, hop)
    except ObjectDoesNotExist:
        return None  # a cascade already removed the parent
    return getattr(target, f"{last}_id", None) if target is not None else None

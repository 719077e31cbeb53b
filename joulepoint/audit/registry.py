"""Which rows are audited, and the organization of an audited row.

Each app registers its own models in its AppConfig.ready() with `audit_register` (the kernel
knows no domain app). Audited: configuration and decisions (sites, devices and their keys,
credentials, rules, tariffs, wallets and their ledger, models and promotions, relay commands).
Not audited: telemetry and other high-volume rows a machine writes (readings, rollups, PQ and
protection events, alerts, deliveries, breakers, outbox, inference runs): they are the data,
not changes to it, and ingest speed matters. The list and the reasons: docs/audit.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from auditlog.registry import auditlog
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Model


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

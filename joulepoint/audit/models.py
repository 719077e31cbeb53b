"""The audit trail: one row per write of a configuration or decision row (django-auditlog's
LogEntry, swapped in through AUDITLOG_LOGENTRY_MODEL), with who did it and for which tenant.

Who: `actor` (a user: the admin's session, or the user an OAuth2 token acts for), `application`
(the OAuth2 credential of the request's token) or `device` ("meter:12", a device key's request);
`source` says through which door (api, admin, web, command:<name>, system for Celery tasks and
anything else without a request). `organization` is resolved from the audited row when the entry
is written (joulepoint.audit.registry), so `for_org` filters on an indexed column.
"""

from __future__ import annotations

import sys
from pathlib import Path

from auditlog.models import AbstractLogEntry, LogEntryManager
from django.conf import settings
from django.db import models

from joulepoint.tenancy.models import Organization, TenantModel, TenantQuerySet


class AuditEntryManager(LogEntryManager.from_queryset(TenantQuerySet)):
    """auditlog's manager, with the organization of the audited row on every entry it writes."""

    def log_create(self, instance, force_log: bool = False, **kwargs):
        from joulepoint.audit.registry import organization_id_of

        kwargs.setdefault("organization_id", organization_id_of(instance))
        return super().log_create(instance, force_log=force_log, **kwargs)

    def log_m2m_changes(self, changed_queryset, instance, operation, field_name, **kwargs):
        from joulepoint.audit.registry import organization_id_of

        kwargs.setdefault("organization_id", organization_id_of(instance))
        return super().log_m2m_changes(changed_queryset, instance, operation, field_name, **kwargs)


def process_source() -> str:
    """The door of a write made outside any request: a management command names itself."""
    argv = sys.argv
    if len(argv) > 1 and Path(argv[0]).name == "manage.py":
        return f"command:{argv[1]}"[:60]
    return "system"


class AuditEntry(AbstractLogEntry, TenantModel):
    """An audited write. Append-only: nothing in the platform updates or deletes entries (the
    API and the admin only read them). Tenant scope: `organization` (null for users and for rows
    whose organization could not be resolved)."""

    # No database constraint on these two: the entry of a deletion is written while the deletion
    # runs (deleting an organization logs the delete of each credential, site, … with that
    # organization, and a credential deleting rows names itself), and the trail outlives what
    # it names. A gone row reads as null (select_related joins LEFT OUTER).
    organization = models.ForeignKey(
        Organization, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="+"
    )
    application = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    device = models.CharField(max_length=40, blank=True, default="", help_text='"meter:<id>" or "gateway:<id>"')
    source = models.CharField(max_length=60, blank=True, default="")

    objects = AuditEntryManager()

    class Meta(AbstractLogEntry.Meta):
        verbose_name = "audit entry"
        verbose_name_plural = "audit trail"
        indexes = [
            models.Index(fields=["organization", "-timestamp"], name="audit_org_time"),
            models.Index(fields=["organization", "content_type", "object_id"], name="audit_org_object"),
        ]

    def save(self, *args, **kwargs) -> None:
        if not self.source:
            self.source = process_source()
        super().save(*args, **kwargs)

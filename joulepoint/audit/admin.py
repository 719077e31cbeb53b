"""The audit trail in the admin: read-only, each facility manager sees their organizations' entries.

auditlog registers its own LogEntry admin for our model, unscoped; this one replaces it.
"""

from __future__ import annotations

from auditlog.mixins import LogEntryAdminMixin
from django.contrib import admin

from joulepoint.audit.models import AuditEntry
from joulepoint.tenancy.admin import OrganizationScopedAdmin

if admin.site.is_registered(AuditEntry):
    admin.site.unregister(AuditEntry)


@admin.register(AuditEntry)
class AuditEntryAdmin(OrganizationScopedAdmin, LogEntryAdminMixin):
    date_hierarchy = "timestamp"
    list_select_related = ["content_type", "actor", "application"]
    list_display = ["created", "resource_url", "action", "msg_short", "who", "source", "remote_addr"]
    list_filter = ["action", "content_type", "source", "organization"]
    search_fields = ["object_repr", "object_pk", "device", "actor__username", "application__client_id"]
    readonly_fields = [
        "created",
        "resource_url",
        "action",
        "who",
        "source",
        "remote_addr",
        "cid",
        "organization",
        "msg",
    ]
    fields = readonly_fields

    @admin.display(description="Who")
    def who(self, entry: AuditEntry) -> str:
        parts = [entry.actor.get_username()] if entry.actor else []
        if entry.application:
            parts.append(f"credential {entry.application.name}")
        if entry.device:
            parts.append(entry.device)
        return ", ".join(parts) or "—"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser or bool(self._org_ids(request))

    def has_module_permission(self, request) -> bool:
        return self.has_view_permission(request)

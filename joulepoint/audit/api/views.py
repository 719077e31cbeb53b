"""GET /api/audit/: the organization's audit trail (read-only; scope audit:read)."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import mixins

from joulepoint.audit.api.filters import AuditEntryFilter
from joulepoint.audit.api.serializers import AuditEntrySerializer
from joulepoint.audit.models import AuditEntry
from joulepoint.tenancy.viewsets import OrganizationViewSet


class AuditEntryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Who changed what in this organization: every write of its configuration through the API,
    the admin, management commands and background tasks, newest first."""

    queryset = AuditEntry.objects.all()
    serializer_class = AuditEntrySerializer
    scope_domain = "audit"
    filterset_class = AuditEntryFilter
    ordering_fields = ["timestamp", "id"]
    ordering = ["-timestamp", "-id"]
    lookup_value_regex = r"[0-9]{1,18}"

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("content_type", "actor", "application")

from __future__ import annotations

from django.contrib import admin

from joulepoint.events.models import OutboxEvent
from joulepoint.tenancy.admin import ReadOnlyScopedAdmin


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyScopedAdmin):
    list_display = ["key", "organization", "status", "attempts", "occurred_at", "dispatched_at"]
    list_filter = ["key", "status"]
    date_hierarchy = "occurred_at"

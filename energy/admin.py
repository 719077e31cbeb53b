from __future__ import annotations

from django.contrib import admin

from energy.models import Gateway, Meter, MeterGroup, Reading, Site
from joulepoint.tenancy.admin import OrganizationScopedAdmin, ReadOnlyScopedAdmin


@admin.register(Site)
class SiteAdmin(OrganizationScopedAdmin):
    list_display = ["name", "organization", "timezone", "created_at"]
    list_filter = ["organization"]
    search_fields = ["name", "address"]


@admin.register(Meter)
class MeterAdmin(OrganizationScopedAdmin):
    list_display = ["name", "serial", "kind", "site", "organization", "is_active", "require_signature"]
    list_filter = ["kind", "is_active", "site"]
    search_fields = ["name", "serial"]
    readonly_fields = ["device_key", "key_rotated_at"]
    exclude = ["organization"]

    def save_model(self, request, obj, form, change):
        obj.organization_id = obj.site.organization_id
        super().save_model(request, obj, form, change)


@admin.register(Gateway)
class GatewayAdmin(OrganizationScopedAdmin):
    list_display = ["name", "site", "organization", "is_active"]
    list_filter = ["is_active", "site"]
    readonly_fields = ["device_key", "key_rotated_at"]
    exclude = ["organization"]

    def save_model(self, request, obj, form, change):
        obj.organization_id = obj.site.organization_id
        super().save_model(request, obj, form, change)


@admin.register(MeterGroup)
class MeterGroupAdmin(OrganizationScopedAdmin):
    list_display = ["name", "organization"]
    filter_horizontal = ["meters"]
    search_fields = ["name"]


@admin.register(Reading)
class ReadingAdmin(ReadOnlyScopedAdmin):
    list_display = ["meter", "ts", "total_power", "total_energy", "voltage_a", "received_at"]
    list_filter = ["meter__site"]
    list_select_related = ["meter"]
    date_hierarchy = "ts"
    show_full_result_count = False

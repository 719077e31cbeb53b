"""Admin door of load management's limits: site constraints, schedules, demand response events
(with a cancel action) and the allocations with their setpoints (read-only). Forms check the same
rules as the API (energy.load.constraints / demand_response) and take the organization from the
site."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from energy.load import constraints, demand_response
from energy.load.models import Allocation, DemandResponseEvent, LoadSchedule, Setpoint, SiteConstraint
from joulepoint.tenancy.admin import MemberInlinePermissions, OrganizationScopedAdmin, ReadOnlyScopedAdmin


class _SiteRowForm(forms.ModelForm):
    """Runs the service's rules on the values as the form would save them."""

    check = None

    def clean(self):
        cleaned = super().clean()
        site = cleaned.get("site") or getattr(self.instance, "site", None)
        if not self.errors and site is not None:
            values = {name: cleaned.get(name) for name in self._meta.fields if name != "site"}
            try:
                type(self).check(site=site, values=values)
            except constraints.LoadInvalid as exc:
                for field, message in exc.errors.items():
                    self.add_error(field if field in self.fields else None, message)
        return cleaned


class SiteConstraintForm(_SiteRowForm):
    check = staticmethod(constraints.constraint_check)

    class Meta:
        model = SiteConstraint
        fields = [
            "site", "max_import_kw", "max_export_kw", "phase_current_limit_a", "safety_margin_kw", "grid_meter",
            "grid_stale_after_seconds", "fallback_limit_kw", "peak_threshold_kw",
        ]  # fmt: skip


class LoadScheduleForm(_SiteRowForm):
    check = staticmethod(constraints.schedule_check)

    class Meta:
        model = LoadSchedule
        fields = [
            "site", "name", "days_of_week", "start_time", "end_time", "valid_from", "valid_to", "max_import_kw",
            "max_export_kw", "is_active",
        ]  # fmt: skip


class DemandResponseForm(forms.ModelForm):
    class Meta:
        model = DemandResponseEvent
        fields = ["site", "starts_at", "ends_at", "limit_kw", "reduction_percent", "program", "external_id"]

    def clean(self):
        cleaned = super().clean()
        if not self.errors:
            try:
                demand_response.demand_response_check(values=cleaned)
            except constraints.LoadInvalid as exc:
                for field, message in exc.errors.items():
                    self.add_error(field if field in self.fields else None, message)
        return cleaned


class _SiteOwnedAdmin(OrganizationScopedAdmin):
    exclude = ["organization"]

    def save_model(self, request, obj, form, change):
        obj.organization_id = obj.site.organization_id
        super().save_model(request, obj, form, change)


@admin.register(SiteConstraint)
class SiteConstraintAdmin(_SiteOwnedAdmin):
    form = SiteConstraintForm
    list_display = ["site", "max_import_kw", "safety_margin_kw", "grid_meter", "peak_threshold_kw", "peak_active"]
    list_select_related = ["site", "grid_meter"]
    readonly_fields = ["peak_active", "peak_changed_at"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        for warning in constraints.limit_warnings(site=obj.site, limit_kw=obj.max_import_kw, what="max_import_kw"):
            messages.warning(request, warning)


@admin.register(LoadSchedule)
class LoadScheduleAdmin(_SiteOwnedAdmin):
    form = LoadScheduleForm
    list_display = ["name", "site", "days_of_week", "start_time", "end_time", "max_import_kw", "source", "is_active"]
    list_filter = ["is_active", "source", "site"]
    list_select_related = ["site"]


@admin.register(DemandResponseEvent)
class DemandResponseEventAdmin(_SiteOwnedAdmin):
    form = DemandResponseForm
    list_display = ["site", "starts_at", "ends_at", "limit_kw", "reduction_percent", "program", "status"]
    list_filter = ["status", "site"]
    list_select_related = ["site"]
    readonly_fields = ["status", "started_published_at", "ended_published_at"]
    actions = ["cancel_events"]

    @admin.action(description="Cancel the selected events")
    def cancel_events(self, request, queryset):
        now = timezone.now()
        for event in queryset:
            demand_response.demand_response_cancel(event=event, now=now)
        messages.success(request, f"{queryset.count()} event(s) cancelled.")


class SetpointInline(MemberInlinePermissions, admin.TabularInline):
    model = Setpoint
    extra = 0
    fields = ["session", "charger", "current_a", "power_w", "paused", "command"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Allocation)
class AllocationAdmin(ReadOnlyScopedAdmin):
    list_display = [
        "site",
        "computed_at",
        "effective_limit_w",
        "limit_source",
        "grid_power_w",
        "available_w",
        "allocated_w",
    ]
    list_filter = ["limit_source", "site"]
    list_select_related = ["site"]
    inlines = [SetpointInline]

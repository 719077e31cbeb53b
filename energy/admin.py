"""The energy admin for facility managers: sites, meters, groups, readings and events, with every
time shown in its site's zone, and the per-site status on the admin's landing page."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.contrib import admin, messages

from energy.analytics.models import AnalyticsSettings
from energy.live.selectors import site_statuses
from energy.load.admin import charging as charging_admin  # noqa: F401  (registers chargers, ID tokens, charging sessions)
from energy.load.admin import limits as limits_admin  # noqa: F401  (constraints, schedules, demand response, allocations)
from energy.models import Gateway, Meter, MeterGroup, Reading, Site
from energy.power_quality.config import CONFIG_DEFAULTS, CONFIG_FIELDS, pq_config_validate
from energy.power_quality.models import MeterPQState, PQConfig, PQEvent, ProtectionEvent
from energy.topology import admin as topology_admin  # noqa: F401  (registers the site topology pages)
from joulepoint.tenancy.admin import MemberInlinePermissions, OrganizationScopedAdmin, ReadOnlyScopedAdmin
from joulepoint.tenancy.models import Organization
from joulepoint.tenancy.selectors import user_organization_ids


def in_site_zone(value: datetime | None, site: Site) -> str:
    """A timestamp as the site's people read it: local time with the zone's abbreviation."""
    if value is None:
        return "-"
    try:
        zone = ZoneInfo(site.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def admin_index_status(request) -> dict:
    """Template context processor: the per-site status table on the admin's landing page (only
    there, and only the user's organizations' sites; a superuser sees every organization's)."""
    match = getattr(request, "resolver_match", None)
    user = getattr(request, "user", None)
    if match is None or match.view_name != "admin:index" or user is None or not user.is_staff:
        return {}
    if user.is_superuser:
        org_ids = list(Organization.objects.values_list("pk", flat=True))
    else:
        org_ids = user_organization_ids(user=user)
    rows = site_statuses(organization_ids=org_ids)
    for row in rows:
        row["last_reading_local"] = in_site_zone(row["last_reading"], row["site"])
    return {"site_statuses": rows}


class PQConfigForm(forms.ModelForm):
    """The same physical-range rules as the API (energy.pq_services.pq_config_validate)."""

    class Meta:
        model = PQConfig
        fields = list(CONFIG_FIELDS)

    def clean(self):
        cleaned = super().clean()
        values = {name: cleaned.get(name, CONFIG_DEFAULTS[name]) for name in CONFIG_FIELDS}
        if all(isinstance(v, (int, float)) for v in values.values()):
            for field, message in pq_config_validate({k: float(v) for k, v in values.items()}).items():
                self.add_error(field, message)
        return cleaned


class PQConfigInline(MemberInlinePermissions, admin.StackedInline):
    """A meter's PQ thresholds on its page; without a row the defaults apply."""

    model = PQConfig
    form = PQConfigForm
    extra = 0
    max_num = 1
    can_delete = True
    verbose_name = "PQ configuration (defaults apply when none is set)"


class MeterPQStateInline(MemberInlinePermissions, admin.StackedInline):
    model = MeterPQState
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name = "Protection state"

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # written by detection only

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    fields = ["breaker_state", "breaker_state_at", "breaker_state_origin", "open_event_count"]
    readonly_fields = fields


@admin.register(Site)
class SiteAdmin(OrganizationScopedAdmin):
    list_display = ["name", "organization", "timezone", "created_at"]
    list_filter = ["organization"]
    search_fields = ["name", "address"]


class MeterForm(forms.ModelForm):
    """The organization comes from the site, so the form checks the per-organization serial
    itself (Django skips constraints on fields the form leaves out, and the insert would fail)."""

    class Meta:
        model = Meter
        fields = ["site", "name", "serial", "kind", "nominal_voltage", "phases", "require_signature", "is_active"]

    def clean(self):
        cleaned_data = super().clean()
        site, serial = cleaned_data.get("site"), cleaned_data.get("serial")
        if site is not None and serial:
            clash = Meter.objects.filter(organization_id=site.organization_id, serial=serial)
            if self.instance.pk:
                clash = clash.exclude(pk=self.instance.pk)
            if clash.exists():
                self.add_error("serial", "A meter with this serial already exists in this organization.")
        return cleaned_data


class DeviceCredentialAdmin(OrganizationScopedAdmin):
    """Meters and gateways take their organization from their site; the device secret is shown
    once, when the device is created (the API's rotate_key issues a new one)."""

    readonly_fields = ["device_key", "mqtt_login", "key_rotated_at"]
    exclude = ["organization"]

    @admin.display(description="MQTT login")
    def mqtt_login(self, obj) -> str:
        # The username this device logs in to the broker with; its password is the device key.
        return obj.mqtt_username if obj.pk else "(after saving)"

    def save_model(self, request, obj, form, change):
        obj.organization_id = obj.site.organization_id
        super().save_model(request, obj, form, change)
        if not change:
            messages.warning(
                request,
                f"Device key {obj.device_key} — device secret (shown once, copy it now): {obj.device_secret}",
            )


@admin.register(Meter)
class MeterAdmin(DeviceCredentialAdmin):
    form = MeterForm
    list_display = ["name", "serial", "kind", "site", "organization", "is_active", "require_signature"]
    list_filter = ["kind", "is_active", "site"]
    search_fields = ["name", "serial"]
    inlines = [PQConfigInline, MeterPQStateInline]

    def get_inlines(self, request, obj):
        # On the change page only: a new meter starts with the defaults, and the add form
        # stays the plain form that scripts and tests post.
        return self.inlines if obj is not None else []

    def save_formset(self, request, form, formset, change):
        # Inline rows (PQ configuration) belong to the meter's organization.
        for inline_form in formset.forms:
            if hasattr(inline_form.instance, "organization_id") and inline_form.has_changed():
                inline_form.instance.organization_id = form.instance.organization_id
        super().save_formset(request, form, formset, change)


@admin.register(Gateway)
class GatewayAdmin(DeviceCredentialAdmin):
    list_display = ["name", "site", "organization", "is_active"]
    list_filter = ["is_active", "site"]


@admin.register(MeterGroup)
class MeterGroupAdmin(OrganizationScopedAdmin):
    list_display = ["name", "organization"]
    filter_horizontal = ["meters"]
    search_fields = ["name"]


@admin.register(Reading)
class ReadingAdmin(ReadOnlyScopedAdmin):
    """Newest first, filtered by site and meter; times in the site's zone."""

    # Five columns: with the navigation sidebar open the list fits a 1,366 px laptop.
    list_display = ["meter", "local_time", "power_w", "total_energy", "voltage_a"]
    list_filter = ["meter__site", "meter"]
    list_select_related = ["meter__site"]
    ordering = ["-ts"]
    date_hierarchy = "ts"
    show_full_result_count = False

    @admin.display(description="Time (site's zone)", ordering="ts")
    def local_time(self, obj: Reading) -> str:
        return in_site_zone(obj.ts, obj.meter.site)

    @admin.display(description="Power (W)", ordering="total_power")
    def power_w(self, obj: Reading) -> float | None:
        return obj.total_power


@admin.register(PQEvent)
class PQEventAdmin(ReadOnlyScopedAdmin):
    list_display = ["kind", "meter", "local_start", "duration_s", "ieee_category", "worst_value", "unit", "phases"]
    list_filter = ["kind", "duration_class", ("end", admin.EmptyFieldListFilter), "meter__site"]
    list_select_related = ["meter__site"]
    ordering = ["-start"]

    @admin.display(description="Start (site's zone)", ordering="start")
    def local_start(self, obj: PQEvent) -> str:
        return in_site_zone(obj.start, obj.meter.site)

    date_hierarchy = "start"
    search_fields = ["meter__name", "meter__serial"]


@admin.register(ProtectionEvent)
class ProtectionEventAdmin(ReadOnlyScopedAdmin):
    list_display = ["kind", "meter", "local_time", "earth_leakage_ma", "origin"]
    list_filter = ["kind", "origin", "meter__site"]
    list_select_related = ["meter__site"]
    ordering = ["-occurred_at"]

    @admin.display(description="Time (site's zone)", ordering="occurred_at")
    def local_time(self, obj: ProtectionEvent) -> str:
        return in_site_zone(obj.occurred_at, obj.meter.site)

    date_hierarchy = "occurred_at"
    search_fields = ["meter__name", "meter__serial"]


@admin.register(AnalyticsSettings)
class AnalyticsSettingsAdmin(OrganizationScopedAdmin):
    """Retention (raw and rollup days) and the expected reporting interval of an organization."""

    list_display = ["organization", "raw_retention_days", "rollup_retention_days", "expected_interval_seconds"]

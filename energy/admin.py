from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from energy.models import Gateway, Meter, MeterGroup, Reading, Site
from joulepoint.tenancy.admin import OrganizationScopedAdmin, ReadOnlyScopedAdmin


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

    readonly_fields = ["device_key", "key_rotated_at"]
    exclude = ["organization"]

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
    list_display = ["meter", "ts", "total_power", "total_energy", "voltage_a", "received_at"]
    list_filter = ["meter__site"]
    list_select_related = ["meter"]
    date_hierarchy = "ts"
    show_full_result_count = False

"""Admin door of the topology: one page per site (Energy → Site topologies) with its settings,
nodes and edges as inline editors. Forms check the same rules as the API (energy.topology.
services.node_check / edge_check) and rows are written through the services."""

from __future__ import annotations

import copy

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.forms.models import construct_instance

from energy.models import Meter
from energy.topology import services
from energy.topology.models import Edge, Node, SiteTopology, TopologySettings
from joulepoint.tenancy.admin import MemberInlinePermissions, OrganizationScopedAdmin


def _as_form_errors(form: forms.ModelForm, exc: services.TopologyInvalid) -> None:
    for field, message in exc.errors.items():
        name = field if field in form.fields else None
        suffix = f" (nodes {', '.join(map(str, exc.nodes))})" if exc.nodes else ""
        form.add_error(name, message + suffix)


class NodeForm(forms.ModelForm):
    class Meta:
        model = Node
        fields = ["name", "kind", "meter", "sign_convention", "x", "y", "z"]

    def clean(self):
        cleaned = super().clean()
        if not self.errors:
            try:
                services.node_check(construct_instance(self, copy.copy(self.instance)))
            except services.TopologyInvalid as exc:
                _as_form_errors(self, exc)
        return cleaned


class EdgeForm(forms.ModelForm):
    class Meta:
        model = Edge
        fields = ["parent", "child", "cable_length_m", "resistance_ohm_per_phase", "loss_factor"]

    def clean(self):
        cleaned = super().clean()
        if not self.errors and cleaned.get("parent") and cleaned.get("child"):
            try:
                services.edge_check(construct_instance(self, copy.copy(self.instance)))
            except services.TopologyInvalid as exc:
                _as_form_errors(self, exc)
        return cleaned


class TopologySettingsForm(forms.ModelForm):
    class Meta:
        model = TopologySettings
        fields = ["allow_multiple_parents", "stale_after_seconds"]

    def clean(self):
        cleaned = super().clean()
        if not self.errors and self.instance.site_id is not None:
            try:
                services.topology_settings_check(construct_instance(self, copy.copy(self.instance)))
            except services.TopologyInvalid as exc:
                _as_form_errors(self, exc)
        return cleaned


class _SiteRowsInline(MemberInlinePermissions, admin.TabularInline):
    extra = 0

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        site = obj

        class SiteFormSet(formset):
            def _construct_form(self, i, **form_kwargs):
                form = super()._construct_form(i, **form_kwargs)
                # Rows are checked as the services will write them: of this site and organization.
                if site is not None:
                    form.instance.site_id = site.pk
                    form.instance.organization_id = site.organization_id
                for name, field in form.fields.items():
                    if name in ("parent", "child"):
                        field.queryset = Node.objects.filter(site=site) if site else Node.objects.none()
                    elif name == "meter":
                        field.queryset = Meter.objects.filter(site=site) if site else Meter.objects.none()
                return form

        return SiteFormSet


class NodeInline(_SiteRowsInline):
    model = Node
    form = NodeForm
    verbose_name = "node"


class EdgeInline(_SiteRowsInline):
    model = Edge
    form = EdgeForm
    fk_name = "site"
    verbose_name = "edge (parent → child; nodes added above appear here once saved)"


class TopologySettingsInline(MemberInlinePermissions, admin.StackedInline):
    model = TopologySettings
    form = TopologySettingsForm
    fields = ["allow_multiple_parents", "stale_after_seconds"]
    extra = 0
    max_num = 1
    verbose_name = "settings (defaults apply when none are set)"


@admin.register(SiteTopology)
class SiteTopologyAdmin(OrganizationScopedAdmin):
    """A site's energy graph; sites themselves are created under Sites."""

    list_display = ["name", "organization", "node_count"]
    fields = ["name", "organization"]
    readonly_fields = ["name", "organization"]
    inlines = [TopologySettingsInline, NodeInline, EdgeInline]

    @admin.display(description="nodes")
    def node_count(self, obj) -> int:
        return obj.topology_nodes.count()

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_formset(self, request, form, formset, change):
        """Each row through its service (which locks the site and re-checks the whole graph:
        rows valid one by one may still clash together, e.g. two new edges closing a cycle)."""
        site = form.instance
        try:
            self._save_rows(site, formset)
        except services.TopologyInvalid as exc:
            transaction.set_rollback(True)
            messages.error(request, f"Nothing was saved: {exc} (nodes {exc.nodes})")

    def _save_rows(self, site, formset) -> None:
        instances = formset.save(commit=False)
        for obj in formset.deleted_objects:
            if isinstance(obj, Node):
                services.node_delete(node=obj)
            elif isinstance(obj, Edge):
                services.edge_delete(edge=obj)
            else:
                obj.delete()
        for obj in instances:
            obj.organization_id = site.organization_id
            if isinstance(obj, Node):
                values = {name: getattr(obj, name) for name in services.NODE_FIELDS}
                if obj.pk:
                    services.node_update(node=obj, values=values)
                else:
                    services.node_create(site=site, values=values)
            elif isinstance(obj, Edge):
                values = {name: getattr(obj, name) for name in services.EDGE_FIELDS}
                if obj.pk:
                    services.edge_update(edge=obj, values=values)
                else:
                    ends = {"parent": values.pop("parent"), "child": values.pop("child")}
                    services.edge_create(**ends, values=values)
            elif isinstance(obj, TopologySettings):
                values = {name: getattr(obj, name) for name in services.SETTINGS_FIELDS}
                services.topology_settings_set(site=site, values=values)

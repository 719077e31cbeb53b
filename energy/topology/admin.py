"""Admin door of the topology: one page per site (Energy → Site topologies) with its settings,
nodes and edges as inline editors. Forms check the same rules as the API (energy.topology.
services.node_check / edge_check) and rows are written through the services."""

from __future__ import annotations

import copy

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import transaction
from django.forms.models import BaseInlineFormSet, construct_instance

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


class _DryRun(Exception):
    """Ends the page's trial save, rolling its savepoint back."""


def _rows_save(site, formset) -> None:
    """Write one inline's rows through the services (which lock the site and re-check the whole
    graph); raises TopologyInvalid."""
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


def _page_trial_save(site, formsets: list) -> None:
    """Save every inline of the page in a savepoint rolled back afterwards; raises TopologyInvalid.

    Rows valid one by one may still clash together (two new edges closing a cycle, one meter on
    two new nodes), which only the services' whole-graph checks see. Refused at save time, the
    refusal would come after Django's admin has committed to its redirect, inside its atomic
    block: a 500. Tried here, from the last formset's clean, it is a form error instead. The site
    stays locked (outside the savepoint) until the page's transaction ends, so the real save
    meets the graph the trial did."""
    services.site_lock(site.pk)
    deleted_pks: list[tuple[object, object]] = []
    try:
        with transaction.atomic():
            for formset in formsets:
                _rows_save(site, formset)
                deleted_pks += [(obj, obj.pk) for obj in formset.deleted_objects]
            raise _DryRun
    except _DryRun:
        pass
    finally:
        # Deleting sets an instance's pk to None; the real save deletes the same instances.
        for obj, pk in deleted_pks:
            obj.pk = pk


class PageCheckedFormSet(BaseInlineFormSet):
    """An inline formset of a site's topology page; the last of the page tries the whole save in
    its clean (`page_formsets` is set by SiteTopologyAdmin)."""

    page_formsets: list | None = None

    def clean(self) -> None:
        super().clean()
        page = self.page_formsets
        if not page or self is not page[-1] or any(self.errors) or self.non_form_errors():
            return
        if not all(formset.is_valid() for formset in page[:-1]):
            return
        try:
            _page_trial_save(self.instance, page)
        except services.TopologyInvalid as exc:
            suffix = f" (nodes {', '.join(map(str, exc.nodes))})" if exc.nodes else ""
            raise ValidationError(
                [f"Nothing was saved: {field}: {message}{suffix}" for field, message in exc.errors.items()]
            ) from None


class _SiteRowsInline(MemberInlinePermissions, admin.TabularInline):
    formset = PageCheckedFormSet
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
    formset = PageCheckedFormSet
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

    def _create_formsets(self, request, obj, change):
        # Django's one place where the page's formsets exist together, before they are validated.
        formsets, inline_instances = super()._create_formsets(request, obj, change)
        for formset in formsets:
            formset.page_formsets = formsets
        return formsets, inline_instances

    def save_formset(self, request, form, formset, change):
        """Each row through its service; the page's trial save (PageCheckedFormSet) has already
        met every refusal as a form error, with the site locked since."""
        _rows_save(form.instance, formset)

"""Admin for facility managers: each sees and edits only the rows of their own organizations.

`OrganizationScopedAdmin` is the base class for every tenant model's admin; it scopes the
change list, the foreign-key choices and the organization of new rows through `for_orgs`.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Model, QuerySet
from django.forms.models import BaseInlineFormSet

from joulepoint.tenancy.models import Membership, Organization
from joulepoint.tenancy.selectors import user_organization_ids

OTHER_ORGANIZATION = "Belongs to another organization than this row."


def other_organization_fields(organization_id: int | None, cleaned_data: dict) -> list[str]:
    """The form fields whose chosen rows (one, or many for a many-to-many) belong to another
    organization than `organization_id`. Choices are scoped to the user's organizations, so
    this only matters for a member of several: it keeps their organizations apart."""
    if organization_id is None:
        return []
    fields = []
    for name, value in cleaned_data.items():
        if name == "organization":
            continue
        chosen = value if isinstance(value, list | tuple | QuerySet) else [value]
        if any(
            isinstance(item, Model) and getattr(item, "organization_id", organization_id) != organization_id
            for item in chosen
        ):
            fields.append(name)
    return fields


def _organization_id_of(cleaned_data: dict, instance: Model) -> int | None:
    organization = cleaned_data.get("organization")
    return organization.pk if organization is not None else getattr(instance, "organization_id", None)


class SameOrganizationInlineFormSet(BaseInlineFormSet):
    """Inline rows may only point at rows of the parent's organization."""

    def clean(self) -> None:
        super().clean()
        organization_id = getattr(self.instance, "organization_id", None)
        for form in self.forms:
            for name in other_organization_fields(organization_id, getattr(form, "cleaned_data", {}) or {}):
                form.add_error(name, OTHER_ORGANIZATION)


class MemberInlinePermissions:
    """For inlines on an OrganizationScopedAdmin page. Inlines ask Django's model permissions by
    default, which facility managers (members, not superusers) lack; the parent admin has
    already scoped the parent row to their organizations, so membership with a write role is
    what decides here. Inline rows may only point at rows of the parent's organization."""

    formset = SameOrganizationInlineFormSet

    def _can_write(self, request, obj=None) -> bool:
        if request.user.is_superuser:
            return True
        org_ids = user_organization_ids(user=request.user, write=True)
        return bool(org_ids) and (obj is None or obj.organization_id in org_ids)

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser or bool(user_organization_ids(user=request.user))

    def has_add_permission(self, request, obj=None) -> bool:
        return self._can_write(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._can_write(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._can_write(request, obj)


class OrganizationScopedAdmin(admin.ModelAdmin):
    """Superusers see everything; staff members see their organizations' rows, and write them
    when their role is admin or operator."""

    def _org_ids(self, request, *, write: bool = False) -> list[int]:
        cache_attr = "_jp_write_org_ids" if write else "_jp_org_ids"
        if not hasattr(request, cache_attr):
            setattr(request, cache_attr, user_organization_ids(user=request.user, write=write))
        return getattr(request, cache_attr)

    def get_queryset(self, request) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.for_orgs(self._org_ids(request))

    def _scoped_choices(self, request, queryset: QuerySet) -> QuerySet:
        if request.user.is_superuser or not hasattr(queryset, "for_orgs"):
            return queryset
        return queryset.for_orgs(self._org_ids(request, write=True))

    def get_list_filter(self, request):
        """A plain related-field filter lists every row of the related model, other tenants'
        included; for members it lists only the values present in their scoped rows."""
        list_filter = super().get_list_filter(request)
        if request.user.is_superuser:
            return list_filter
        return [
            (item, admin.RelatedOnlyFieldListFilter) if isinstance(item, str) and self._is_relation(item) else item
            for item in list_filter
        ]

    def _is_relation(self, path: str) -> bool:
        try:
            return get_fields_from_path(self.model, path)[-1].is_relation
        except FieldDoesNotExist:
            return False

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change=change, **kwargs)

        class SameOrganizationForm(form_class):
            """A row may only point at rows of its own organization."""

            def clean(self):
                cleaned_data = super().clean()
                organization_id = _organization_id_of(cleaned_data, self.instance)
                for name in other_organization_fields(organization_id, cleaned_data):
                    self.add_error(name, OTHER_ORGANIZATION)
                return cleaned_data

        return SameOrganizationForm

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if formfield is not None and hasattr(formfield, "queryset"):
            formfield.queryset = self._scoped_choices(request, formfield.queryset)
            if db_field.name == "organization" and formfield.queryset.count() == 1:
                formfield.initial = formfield.queryset.first()
        return formfield

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        formfield = super().formfield_for_manytomany(db_field, request, **kwargs)
        if formfield is not None and hasattr(formfield, "queryset"):
            formfield.queryset = self._scoped_choices(request, formfield.queryset)
        return formfield

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and (request.user.is_superuser or bool(self._org_ids(request)))

    def has_view_permission(self, request, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser or bool(self._org_ids(request, write=True))

    def has_change_permission(self, request, obj=None) -> bool:
        if request.user.is_superuser:
            return True
        if not self._org_ids(request, write=True):
            return False
        return obj is None or type(obj).objects.for_orgs(self._org_ids(request, write=True)).filter(pk=obj.pk).exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return self.has_change_permission(request, obj)


class ReadOnlyScopedAdmin(OrganizationScopedAdmin):
    """For rows written by the platform (readings, events): browse, never edit."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(OrganizationScopedAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

"""Integrations → API access: scoped OAuth2 client credentials bound to an organization."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from oauth2_provider.admin import AccessTokenAdmin  # noqa: F401  (DOT registers its admins on import)
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import get_application_model

from joulepoint.integrations.models import ApiAccess
from joulepoint.tenancy.admin import OrganizationScopedAdmin
from joulepoint.tenancy.models import grant_type_enabled, scope_choices

# DOT registers its own admin for the swapped application model; API access replaces it.
if admin.site.is_registered(get_application_model()):
    admin.site.unregister(get_application_model())


class ApiAccessForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=scope_choices, widget=forms.CheckboxSelectMultiple, help_text="What tokens of this credential may do."
    )

    class Meta:
        model = ApiAccess
        fields = [
            "name",
            "organization",
            "client_type",
            "authorization_grant_type",
            "redirect_uris",
            "skip_authorization",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["scopes"].initial = self.instance.scope_list
        grants = self.fields.get("authorization_grant_type")  # absent where the user may only view
        if grants is not None:
            grants.choices = [(value, label) for value, label in grants.choices if grant_type_enabled(value)]

    def save(self, commit: bool = True):
        self.instance.allowed_scopes = " ".join(self.cleaned_data["scopes"])
        return super().save(commit=commit)


@admin.register(ApiAccess)
class ApiAccessAdmin(OrganizationScopedAdmin):
    form = ApiAccessForm
    # Narrow columns so the list fits a 1,366 px laptop: the 40-character client id shortened,
    # the scopes grouped by app ("energy: read, write"); both are whole on the change page.
    list_display = ["name", "organization", "client_id_short", "grant", "scopes_short", "created"]
    list_filter = ["organization", "authorization_grant_type"]
    readonly_fields = ["client_id"]
    search_fields = ["name", "client_id"]

    def get_list_display(self, request):
        # A member of one organization needs no organization column.
        if not request.user.is_superuser and len(self._org_ids(request)) == 1:
            return [name for name in self.list_display if name != "organization"]
        return self.list_display

    @admin.display(description="Grant", ordering="authorization_grant_type")
    def grant(self, obj) -> str:
        return obj.get_authorization_grant_type_display()

    @admin.display(description="Client ID", ordering="client_id")
    def client_id_short(self, obj) -> str:
        return obj.client_id[:10] + "…" if len(obj.client_id) > 11 else obj.client_id

    @admin.display(description="Scopes")
    def scopes_short(self, obj) -> str:
        grouped: dict[str, list[str]] = {}
        for scope in obj.scope_list:
            app, _, right = scope.partition(":")
            grouped.setdefault(app, []).append(right or app)
        return "; ".join(f"{app}: {', '.join(rights)}" for app, rights in grouped.items())

    @admin.display(description="Scopes")
    def scopes(self, obj) -> str:
        # Shown in place of the form field when the user may view but not change.
        return obj.allowed_scopes

    def get_changeform_initial_data(self, request):
        return {
            "client_type": ApiAccess.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": ApiAccess.GRANT_CLIENT_CREDENTIALS,
            **super().get_changeform_initial_data(request),
        }

    def save_model(self, request, obj, form, change):
        if not change:
            # DOT stores only a hash of the secret: this is the one moment it can be shown.
            secret = generate_client_secret()
            obj.client_secret = secret
            obj.user = request.user
            super().save_model(request, obj, form, change)
            messages.warning(request, f"Client ID {obj.client_id} — client secret (shown once, copy it now): {secret}")
            return
        super().save_model(request, obj, form, change)

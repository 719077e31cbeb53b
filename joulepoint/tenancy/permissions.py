"""API permission: an OAuth2 token of an organization's application, carrying the view's scope."""

from __future__ import annotations

from oauth2_provider.contrib.rest_framework import TokenHasScope
from rest_framework import exceptions, permissions

SAFE_METHODS = permissions.SAFE_METHODS


def token_organization(request):
    """The organization an OAuth2 access token acts for, or None for anything else."""
    application = getattr(getattr(request, "auth", None), "application", None)
    return getattr(application, "organization", None)


class OrganizationTokenHasScope(TokenHasScope):
    """Requires `<scope_domain>:read` for safe methods and `<scope_domain>:write` otherwise.

    A view may name other scopes for one action in `action_scopes` (e.g. `relay:approve`).
    A TokenHasScope, so the OpenAPI schema lists each operation's scopes.
    """

    def has_permission(self, request, view) -> bool:
        token = getattr(request, "auth", None)
        if token is None or not hasattr(token, "is_valid"):
            raise exceptions.NotAuthenticated("An OAuth2 bearer token is required.")
        if token_organization(request) is None:
            raise exceptions.PermissionDenied("This token's application belongs to no organization.")
        required = self.get_scopes(request, view)
        if not token.is_valid(required):
            raise exceptions.PermissionDenied(f"This token lacks the scope(s): {' '.join(required)}.")
        return True

    def get_scopes(self, request, view) -> list[str]:
        action = getattr(view, "action", None)
        action_scopes = getattr(view, "action_scopes", {})
        if action in action_scopes:
            return list(action_scopes[action])
        domain = view.scope_domain
        return [f"{domain}:read" if request.method in SAFE_METHODS else f"{domain}:write"]

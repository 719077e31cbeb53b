"""Tenancy reads every app shares: which organizations a user belongs to, which one a token acts
for, whether a user holds a role. Apps ask here rather than querying Membership or the OAuth2
tables themselves."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from oauth2_provider.models import AccessToken

from joulepoint.tenancy.models import Membership

WRITE_ROLES = frozenset({Membership.Role.ADMIN, Membership.Role.OPERATOR})


def user_organization_ids(*, user, write: bool = False) -> list[int]:
    """The organizations `user` is a member of (with a role that may write, when `write`)."""
    if user is None or not user.is_authenticated:
        return []
    memberships = Membership.objects.filter(user=user)
    if write:
        memberships = memberships.filter(role__in=WRITE_ROLES)
    return list(memberships.values_list("organization_id", flat=True))


def user_has_role(*, user, organization_id: int, roles: Iterable[str]) -> bool:
    """Whether `user` is a member of the organization with one of `roles`."""
    if user is None or not user.is_authenticated:
        return False
    return Membership.objects.filter(organization_id=organization_id, user=user, role__in=list(roles)).exists()


def organization_for_token(*, token: str, scopes: list[str]) -> tuple[int | None, str]:
    """(organization id, "") for a valid OAuth2 access token carrying `scopes`, else (None, why)
    with why one of `invalid_token`, `insufficient_scope` (the words of RFC 6750).

    For doors that get a raw token outside DRF (a WebSocket's query string or first message).
    Looked up by checksum, as django-oauth-toolkit's own validator does."""
    if not token or len(token) > 255:
        return None, "invalid_token"
    checksum = hashlib.sha256(token.encode("utf-8")).hexdigest()
    access = AccessToken.objects.select_related("application").filter(token_checksum=checksum).first()
    if access is None or access.is_expired():
        return None, "invalid_token"
    if not access.allow_scopes(scopes):
        return None, "insufficient_scope"
    organization_id = getattr(access.application, "organization_id", None)
    if organization_id is None:
        return None, "invalid_token"
    return organization_id, ""

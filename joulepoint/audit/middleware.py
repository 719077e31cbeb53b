"""auditlog's middleware, told who a request acts for once the view has authenticated it.

auditlog reads `request.user` when the request enters the middleware: right for the admin's
session, but an API request is authenticated later, by DRF (OAuth2 token or device key). The
values given here are callables, which auditlog calls when an entry is written, by then DRF has
set `request.user` and `request.auth` on the Django request.
"""

from __future__ import annotations

import ipaddress

from auditlog.middleware import AuditlogMiddleware
from django.http import HttpRequest

# The reverse proxy of docs/deploy.md runs on this machine and appends the client's address to
# X-Forwarded-For; from anyone else the header is whatever the client wrote.
TRUSTED_PROXIES = {"127.0.0.1", "::1"}


def _actor_id(request: HttpRequest) -> int | None:
    user = getattr(request, "user", None)
    return user.pk if user is not None and user.is_authenticated else None


def _application_id(request: HttpRequest) -> int | None:
    auth = getattr(request, "auth", None)
    return getattr(auth, "application_id", None) if hasattr(auth, "is_valid") else None


def _device(request: HttpRequest) -> str:
    auth = getattr(request, "auth", None)
    if auth is None or not hasattr(auth, "device_key"):
        return ""
    return f"{type(auth).__name__.lower()}:{auth.pk}"


def _source(request: HttpRequest) -> str:
    path = request.path_info
    if path.startswith("/admin/"):
        return "admin"
    if path.startswith(("/api/", "/o/")):
        return "api"
    return "web"


class AuditMiddleware(AuditlogMiddleware):
    @staticmethod
    def _get_remote_addr(request: HttpRequest) -> str | None:
        """The address our proxy saw (the last X-Forwarded-For hop, which it appended), not the
        first one as auditlog takes: that one is written by the client and proves nothing."""
        peer = request.META.get("REMOTE_ADDR")
        forwarded = request.headers.get("X-Forwarded-For")
        if not forwarded or peer not in TRUSTED_PROXIES:
            return peer
        hop = forwarded.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:
            return peer

    def get_extra_data(self, request: HttpRequest) -> dict:
        data = super().get_extra_data(request)
        data["actor"] = None  # set through actor_id below, after authentication
        data["actor_id"] = lambda: _actor_id(request)
        data["application_id"] = lambda: _application_id(request)
        data["device"] = lambda: _device(request)
        data["source"] = _source(request)
        return data

"""Who a request acts for, for the audit trail's entries written while it runs.

auditlog's own AuditlogMiddleware reads `request.user` when the request enters it (too early: an
API request is authenticated later, by DRF, with an OAuth2 token or a device key) and hooks a
signal receiver up and down on every request, which measured ~160 µs per request (bench/audit.py),
a real share of a single reading's cost. Here the middleware only keeps the request in a context
variable, and one pre_save receiver of the entry model (connected once, in AppConfig.ready())
reads user, credential and device from it when an entry is written, after authentication.
auditlog still does the rest: signals on audited models, diffs, masking, correlation ids.
"""

from __future__ import annotations

import ipaddress
from contextvars import ContextVar

from auditlog.cid import set_cid
from auditlog.middleware import AuditlogMiddleware
from django.http import HttpRequest

# The reverse proxy of docs/deploy.md runs on this machine and appends the client's address to
# X-Forwarded-For; from anyone else the header is whatever the client wrote.
TRUSTED_PROXIES = {"127.0.0.1", "::1"}

_current_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)


def remote_addr_of(request: HttpRequest) -> str | None:
    """The address our proxy saw (the last X-Forwarded-For hop, which it appended), not the first
    one as auditlog takes: that one is written by the client and proves nothing."""
    peer = request.META.get("REMOTE_ADDR")
    forwarded = request.headers.get("X-Forwarded-For")
    if not forwarded or peer not in TRUSTED_PROXIES:
        return peer
    hop = forwarded.split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return peer


def _device(auth) -> str:
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


def entry_from_request(sender, instance, **kwargs) -> None:
    """pre_save receiver of AuditEntry: the request's actor, credential, device, door, address."""
    request = _current_request.get()
    if request is None or instance.pk is not None:
        return
    user = getattr(request, "user", None)
    if instance.actor_id is None and user is not None and user.is_authenticated:
        instance.actor_id = user.pk
        instance.actor_email = getattr(user, "email", None) or None
    auth = getattr(request, "auth", None)  # set by DRF on the Django request once authenticated
    if hasattr(auth, "is_valid"):  # an OAuth2 access token
        instance.application_id = auth.application_id
    instance.device = _device(auth)
    instance.source = _source(request)
    instance.remote_addr = remote_addr_of(request)
    instance.remote_port = AuditlogMiddleware._get_remote_port(request)


class AuditMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        set_cid(request)  # auditlog's correlation id (X-Correlation-ID)
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)

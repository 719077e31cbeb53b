"""Who a request acts for, for the audit trail's entries written while it runs.

auditlog's own AuditlogMiddleware reads `request.user` when the request enters it (too early: an
API request is authenticated later, by DRF, with an OAuth2 token or a device key) and hooks a
signal receiver up and down on every request, which measured ~160 µs per request (bench/audit.py),
a real share of a single reading's cost. Here the middleware only keeps the request in a context
variable, and one pre_save receiver of the entry model (connected once, in AppConfig.ready())
reads user, credential and device from it when an entry is written, after authentication.
auditlog still does the rest: signals on audited models, diffs, masking, correlation ids.

Doors without an HTTP request (a device's WebSocket, the MQTT bridge) name themselves with
`audit_door()`, read by the same receiver: auditlog's own `set_actor` knows only users, and
connects a signal receiver per call, which per WebSocket frame would cost what the middleware saves.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from auditlog.cid import set_cid
from auditlog.middleware import AuditlogMiddleware
from django.http import HttpRequest

# The reverse proxy of docs/deploy.md runs on this machine and appends the client's address to
# X-Forwarded-For; from anyone else the header is whatever the client wrote.
TRUSTED_PROXIES = {"127.0.0.1", "::1"}

_current_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)


@dataclass(frozen=True)
class AuditDoor:
    source: str
    device: str = ""
    remote_addr: str | None = None


_current_door: ContextVar[AuditDoor | None] = ContextVar("audit_door", default=None)


@contextmanager
def audit_door(*, source: str, device=None, remote_addr: str | None = None) -> Iterator[None]:
    """Entries written inside are recorded as made through `source` (e.g. "ws", "mqtt") by
    `device` (a Meter or Gateway, or None when the door acts for no single device)."""
    token = _current_door.set(AuditDoor(source=source, device=_device(device), remote_addr=remote_addr))
    try:
        yield
    finally:
        _current_door.reset(token)


def remote_addr_of(request: HttpRequest) -> str | None:
    """The address our proxy saw (the last X-Forwarded-For hop, which it appended), not the first
    one as auditlog takes: that one is written by the client and proves nothing."""
    return _client_addr(request.META.get("REMOTE_ADDR"), request.headers.get("X-Forwarded-For"))


def remote_addr_of_scope(scope: dict) -> str | None:
    """The same for an ASGI connection (a device's WebSocket)."""
    client = scope.get("client") or (None,)
    forwarded = None
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            forwarded = value.decode("latin-1")
    return _client_addr(client[0], forwarded)


def _client_addr(peer: str | None, forwarded: str | None) -> str | None:
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
    """pre_save receiver of AuditEntry: the request's actor, credential, device, door, address;
    outside a request, those of the `audit_door()` around the write, if any."""
    if instance.pk is not None:
        return
    request = _current_request.get()
    if request is None:
        if door := _current_door.get():
            instance.device = door.device
            instance.source = door.source
            instance.remote_addr = door.remote_addr
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

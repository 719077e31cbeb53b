"""SSRF guard for webhook targets: refuse private, loopback, link-local and other non-global
addresses unless `AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE` is on (tests and the demo set it).

Checked twice: when the action is saved (literal addresses and `localhost`) and before every
attempt, on every address the host resolves to. The request then goes to the checked address
(Host header and TLS SNI keep the name), so a DNS answer that changes between check and connect
cannot redirect it inside the network.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class TargetRefused(ValueError):
    pass


def _allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if settings.AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE:
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def url_check_syntax(url: str) -> None:
    """Scheme http(s), a host, and no literal address or localhost that the guard refuses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("the URL must start with http:// or https://")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not allowed; use headers")
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise TargetRefused("the URL's port is not a number between 0 and 65535") from None
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        if not settings.AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE:
            raise TargetRefused("loopback targets are refused (AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE is off)")
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    if not _allowed(address):
        raise TargetRefused(f"{address} is a private, loopback or link-local address")


def url_resolve(url: str) -> tuple[str, int, str]:
    """(host, port, ip) the request should connect to, after checking every resolved address."""
    url_check_syntax(url)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetRefused(f"cannot resolve {parts.hostname}: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    for address in addresses:
        if not _allowed(address):
            raise TargetRefused(f"{parts.hostname} resolves to {address}, a non-public address")
    return parts.hostname, port, str(addresses[0])

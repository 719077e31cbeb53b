"""SSRF guard for webhook targets: refuse private, loopback, link-local and other non-global
addresses unless `AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE` is on (tests and the demo set it).

Checked twice: when the action is saved (literal addresses and `localhost`) and before every
attempt, on every address the host resolves to. An IPv6 address that carries an IPv4 address
(IPv4-mapped, -compatible and -translated, NAT64, 6to4, Teredo, ISATAP) is judged by the IPv4
address it carries as well: `ipaddress` calls `::127.0.0.1` or `64:ff9b::a9fe:a9fe` global, but a
translator or tunnel on the path delivers them to loopback or the metadata service. The
local-use NAT64 prefix (64:ff9b:1::/48, RFC 8215) is refused whole: its translator is local.
The request then goes to the checked address (Host header and TLS SNI keep the name), so a DNS
answer that changes between check and connect cannot redirect it inside the network.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class TargetRefused(ValueError):
    pass


NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291 (deprecated)
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 (SIIT)
ISATAP_INTERFACE_IDS = (0x00005EFE, 0x02005EFE)  # RFC 5214: interface id 0[02]00:5efe:a.b.c.d


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address carries by a standard translation or tunnel."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)  # (server, client); the client is un-obfuscated already
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in NAT64_WELL_KNOWN or address in IPV4_COMPATIBLE or address in IPV4_TRANSLATED:
        found.append(low32)
    if (int(address) >> 32) & 0xFFFFFFFF in ISATAP_INTERFACE_IDS:
        found.append(low32)
    return found


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_global and not address.is_multicast


def _allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if settings.AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        if address in NAT64_LOCAL_USE:
            return False
        if not all(_public(carried) for carried in embedded_ipv4(address)):
            return False
        if address.ipv4_mapped is not None:
            return True  # judged by the IPv4 address alone, as the socket will use it
    return _public(address)


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

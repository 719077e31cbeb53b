"""The SSRF guard: IPv6 forms that carry a non-public IPv4 address are refused, at save and at connect."""

from __future__ import annotations

import socket

import pytest

from automations import netguard

# IPv6 spellings of loopback, the metadata service and private networks (the conformance list).
REFUSED = [
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:0:7f00:1]/",  # IPv4-translated (SIIT)
    "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254 (cloud metadata)
    "http://[64:ff9b::a00:5]/",  # NAT64 of 10.0.0.5
    "http://[64:ff9b:1::808:808]/",  # local-use NAT64 prefix, refused whole
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://[2002:a9fe:a9fe::1]/",  # 6to4 of 169.254.169.254
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo, client 127.0.0.1
    "http://[2a00:1450::5efe:a9fe:a9fe]/",  # ISATAP interface id carrying 169.254.169.254
    "http://[2a00:1450::200:5efe:c0a8:1]/",  # ISATAP (universal bit) carrying 192.168.0.1
]
ALLOWED = [
    "http://[2a00:1450:4001:81b::200e]/",  # a plain global IPv6 address
    "http://[64:ff9b::808:808]/",  # NAT64 of 8.8.8.8
    "http://[::ffff:8.8.8.8]/",  # IPv4-mapped global
    "https://example.com/hook",
]


@pytest.fixture(autouse=True)
def guard_on(settings):
    settings.AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE = False


@pytest.mark.parametrize("url", REFUSED)
def test_ipv6_forms_carrying_a_private_ipv4_are_refused_at_save(url):
    with pytest.raises(netguard.TargetRefused):
        netguard.url_check_syntax(url)


@pytest.mark.parametrize("url", ALLOWED)
def test_public_targets_pass(url):
    netguard.url_check_syntax(url)


@pytest.mark.parametrize("url", REFUSED)
def test_a_name_resolving_to_such_an_address_is_refused_at_connect(url, monkeypatch):
    address = url.split("[", 1)[1].split("]", 1)[0]

    def resolve(host, port, **kwargs):
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))]

    monkeypatch.setattr(netguard.socket, "getaddrinfo", resolve)
    with pytest.raises(netguard.TargetRefused, match="non-public"):
        netguard.url_resolve("https://hooks.example.com/x")


def test_the_embedded_address_is_read_from_each_form():
    carried = netguard.embedded_ipv4
    ip = netguard.ipaddress.ip_address
    assert carried(ip("64:ff9b::a9fe:a9fe")) == [ip("169.254.169.254")]
    assert carried(ip("2002:7f00:1::")) == [ip("127.0.0.1")]
    assert ip("127.0.0.1") in carried(ip("2001:0:4136:e378:8000:63bf:80ff:fffe"))
    assert carried(ip("2a00:1450:4001:81b::200e")) == []

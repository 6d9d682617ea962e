"""Where outbound webhooks may go: in production, https to public addresses only.

A webhook URL is chosen by whoever holds the server key, but the request is made from inside the
deployment, so a URL pointing at loopback, a private network, a link-local address or a cloud metadata
service (169.254.169.254, fd00:ec2::254) would let a webhook reach what the internet cannot. The URL is
checked when the endpoint is created and again at every delivery, after resolving its host: a name
that resolved to a public address yesterday may resolve to 127.0.0.1 today (DNS rebinding). The
delivery then connects to the address that was checked, not to whatever a second lookup returns.

In development (and tests) plain http and loopback receivers are allowed, so a receiver on the
developer's machine works; private and metadata addresses stay refused everywhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from entitle.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedURL(InvalidRequest):
    """The URL's scheme or address is not one webhooks may be sent to."""

    default_code = "webhook_url_not_allowed"


@dataclass(frozen=True)
class Target:
    """A checked URL and the address to connect to."""

    url: str
    host: str
    address: IPAddress


# Transition ranges whose IPv6 addresses carry an IPv4 address in their last 32 bits; a packet to one
# may end up at that IPv4 address (a NAT64 gateway, a dual stack that maps them), so it is what is checked.
_LAST_32_BITS_EMBED_IPV4 = [
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated), e.g. ::7f00:1
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT), e.g. ::ffff:0:7f00:1
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64 well-known prefix
]
# Never public: local-use NAT64, where the IPv4 address sits depends on the operator's prefix length,
# and site-local (deprecated, still routed inside some networks).
_NEVER_PUBLIC = [ipaddress.IPv6Network("64:ff9b:1::/48"), ipaddress.IPv6Network("fec0::/10")]


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a packet to `address` may reach through a transition mechanism."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:  # 2002::/16
        return [address.sixtofour]
    if address.teredo is not None:  # 2001::/32: the relay and the client behind it
        return list(address.teredo)
    if any(address in network for network in _LAST_32_BITS_EMBED_IPV4):
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return []


def _is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in _NEVER_PUBLIC):
            return False
        embedded = _embedded_ipv4(address)
        if embedded and not all(_is_public(ipv4) for ipv4 in embedded):
            return False
        if address.ipv4_mapped is not None:
            return True  # a mapped address is its IPv4 address (is_global judges the IPv6 range)
    return address.is_global and not address.is_multicast


def address_problem(address: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why webhooks may not go to `address`, or None when they may."""
    if allow_loopback and address.is_loopback:
        return None
    if _is_public(address):
        return None
    return f"{address} is not a public address (loopback, private, link-local, metadata or reserved)"


def check_url(url: str, *, development: bool) -> tuple[str, int]:
    """(host, port) of an acceptable webhook URL; raises BlockedURL with the reason otherwise."""
    parts = urlsplit(url)
    allowed = ("https", "http") if development else ("https",)
    if parts.scheme not in allowed:
        raise BlockedURL(
            "Webhook endpoints must use https." if not development else "Webhook URLs must be http(s).",
            code="insecure_webhook_url",
        )
    host = parts.hostname
    if not host:
        raise BlockedURL("The webhook URL has no host.")
    if parts.username or parts.password:
        raise BlockedURL("The webhook URL may not carry a user name or password.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise BlockedURL("The webhook URL's port is not valid.") from exc
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        problem = address_problem(literal, allow_loopback=development)
        if problem:
            raise BlockedURL(f"Webhooks cannot be sent to {host}: {problem}.")
    elif host.rstrip(".").lower() == "metadata.google.internal":
        raise BlockedURL(f"Webhooks cannot be sent to {host}: it is a cloud metadata service.")
    return host, port


async def check_new_url(url: str, *, development: bool) -> None:
    """At creation: the URL's form, and its addresses when its host resolves already.

    A host that does not resolve yet is accepted (its DNS may come later); every delivery checks again.
    """
    try:
        await resolve_target(url, development=development)
    except BlockedURL as exc:
        if exc.code != "webhook_host_unresolved":
            raise


async def resolve_target(url: str, *, development: bool) -> Target:
    """Check the URL, resolve its host and check every address it resolves to; the first is used."""
    host, port = check_url(url, development=development)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise BlockedURL(
            f"The webhook host {host} does not resolve.", code="webhook_host_unresolved"
        ) from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise BlockedURL(f"The webhook host {host} does not resolve.", code="webhook_host_unresolved")
    for address in addresses:
        problem = address_problem(address, allow_loopback=development)
        if problem:
            raise BlockedURL(f"Webhooks cannot be sent to {host}: {problem}.")
    return Target(url=url, host=host, address=addresses[0])


def pinned_url(target: Target) -> str:
    """The target URL with its host replaced by the checked address (the Host header keeps the name)."""
    parts = urlsplit(target.url)
    address = f"[{target.address}]" if target.address.version == 6 else str(target.address)
    netloc = address if parts.port is None else f"{address}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()

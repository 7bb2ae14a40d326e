"""Who is calling: the client address we rate-limit and audit, and its user agent.

``X-Forwarded-For`` is believed only as far as it was written by proxies we trust: walking it
from the right (the hop nearest to us), every address that is a trusted proxy is skipped and
the first one that is not is the client. A client can prepend anything it likes to the header,
so reading it from the left (or at all when the peer is not a trusted proxy) would let an
attacker pick the address its failures are counted against.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_USER_AGENT = 256


@dataclass(frozen=True)
class Caller:
    ip: str | None
    user_agent: str | None


# Longer than any address with a port or a zone id: not one, and not worth parsing.
MAX_ADDRESS_TEXT = 64


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Checked before the cache, so the cache only ever holds short keys.
    if len(value) > MAX_ADDRESS_TEXT:
        return None
    return _parse_short(value)


@lru_cache(maxsize=1024)
def _parse_short(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Cached: every request parses its peer's address, and the same few peers come back.
    text = value.strip()
    # Some proxies write a port: "1.2.3.4:5678" or "[2001:db8::1]:5678".
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        # A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; compare them as IPv4.
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        # A scope id ("%eth0") names an interface of the sender, not the client; dropping it
        # also keeps the address short.
        if address.scope_id is not None:
            return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Sequence[Network]
) -> bool:
    return any(address in network for network in networks)


def in_networks(ip: str | None, networks: Sequence[Network]) -> bool:
    address = _parse(ip) if ip else None
    return address is not None and _trusted(address, networks)


def client_address(
    peer: str | None, forwarded_for: list[str], trusted: Sequence[Network]
) -> str | None:
    peer_address = _parse(peer) if peer else None
    if peer_address is None:
        return peer
    if not _trusted(peer_address, trusted):
        return str(peer_address)
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            # A malformed hop: nothing to its left can be trusted; stop at the last good one.
            break
        if not _trusted(address, trusted):
            return str(address)
        peer = str(address)
    return peer


def caller_of(connection: HTTPConnection, trusted: Sequence[Network]) -> Caller:
    peer = connection.client.host if connection.client else None
    user_agent = connection.headers.get("user-agent")
    return Caller(
        ip=client_address(peer, connection.headers.getlist("x-forwarded-for"), trusted),
        user_agent=user_agent[:MAX_USER_AGENT] if user_agent else None,
    )

"""Who is calling: ``client_address`` believes X-Forwarded-For only as far as trusted proxies
wrote it, ``caller_of`` reads it from a request, and ``trusted_proxies`` must parse."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest
from starlette.requests import Request

from authsvc.config import SettingsError, load_settings
from authsvc.security.network import MAX_USER_AGENT, Network, caller_of, client_address

TEN = ipaddress.ip_network("10.0.0.0/8")
PROXY_V6 = ipaddress.ip_network("2001:db8:ffff::/48")
LOOPBACK = ipaddress.ip_network("127.0.0.1/32")


def networks(*specs: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(spec, strict=False) for spec in specs)


# --- client_address --------------------------------------------------------------------------

CASES = [
    # (peer, X-Forwarded-For headers, trusted networks, expected client address)
    pytest.param("203.0.113.7", ["1.2.3.4"], (TEN,), "203.0.113.7", id="untrusted-peer-xff"),
    pytest.param("203.0.113.7", ["1.2.3.4"], (), "203.0.113.7", id="nothing-trusted"),
    pytest.param("203.0.113.7", [], (TEN,), "203.0.113.7", id="untrusted-peer-no-xff"),
    pytest.param("10.0.0.1", [], (TEN,), "10.0.0.1", id="trusted-peer-no-xff"),
    pytest.param("10.0.0.1", ["1.2.3.4"], (TEN,), "1.2.3.4", id="trusted-peer-one-hop"),
    pytest.param(
        "10.0.0.1", ["spoof, 1.2.3.4, 10.0.0.2"], (TEN,), "1.2.3.4", id="chain-skips-trusted"
    ),
    pytest.param(
        "10.0.0.1", ["9.9.9.9, 1.2.3.4, 10.0.0.2"], (TEN,), "1.2.3.4", id="left-spoof-ignored"
    ),
    pytest.param(
        "10.0.0.1", ["10.1.1.1, 10.0.0.3, 10.0.0.2"], (TEN,), "10.1.1.1", id="all-trusted-leftmost"
    ),
    pytest.param("10.0.0.1", ["garbage, 1.2.3.4"], (TEN,), "1.2.3.4", id="malformed-left-hop"),
    pytest.param("10.0.0.1", ["1.2.3.4, garbage"], (TEN,), "10.0.0.1", id="malformed-rightmost"),
    pytest.param(
        "10.0.0.1",
        ["1.2.3.4, garbage, 10.0.0.2"],
        (TEN,),
        "10.0.0.2",
        id="malformed-stops-at-last-good",
    ),
    pytest.param("10.0.0.1", ["1.2.3.4:5678"], (TEN,), "1.2.3.4", id="hop-with-port"),
    pytest.param(
        "10.0.0.1", ["[2001:db8::7]:443"], (TEN,), "2001:db8::7", id="bracketed-v6-with-port"
    ),
    pytest.param("10.0.0.1", ["unknown"], (TEN,), "10.0.0.1", id="obfuscated-hop-malformed"),
    pytest.param("10.0.0.1", [""], (TEN,), "10.0.0.1", id="empty-header"),
    pytest.param("10.0.0.1", ["  1.2.3.4  "], (TEN,), "1.2.3.4", id="spaces-around"),
    pytest.param("10.0.0.1", ["1.2.3.4 ,10.0.0.2 "], (TEN,), "1.2.3.4", id="spaces-in-list"),
    pytest.param(
        "10.0.0.1", ["5.5.5.5", "1.2.3.4, 10.0.0.2"], (TEN,), "1.2.3.4", id="several-headers"
    ),
    pytest.param(
        "10.0.0.1", ["1.2.3.4, 10.0.0.2", "10.0.0.3"], (TEN,), "1.2.3.4", id="headers-in-order"
    ),
    pytest.param("10.0.0.1", ["1.2.3.4", "5.5.5.5"], (TEN,), "5.5.5.5", id="last-header-nearest"),
    pytest.param("127.0.0.1", ["1.2.3.4"], (LOOPBACK,), "1.2.3.4", id="single-address"),
    pytest.param("127.0.0.2", ["1.2.3.4"], (LOOPBACK,), "127.0.0.2", id="outside-single-address"),
    # IPv6 peers and networks.
    pytest.param(
        "2001:db8:ffff::1", ["2001:db8::7"], (PROXY_V6,), "2001:db8::7", id="v6-proxy-v6-client"
    ),
    pytest.param("2001:db8:ffff::1", ["1.2.3.4"], (PROXY_V6,), "1.2.3.4", id="v6-proxy-v4-client"),
    pytest.param("10.0.0.1", ["2001:DB8:0:0::7"], (TEN,), "2001:db8::7", id="v6-client-normalized"),
    pytest.param(
        "2001:db8:ffff::1",
        ["2001:db8::7, 2001:db8:ffff::2"],
        (PROXY_V6, TEN),
        "2001:db8::7",
        id="v6-chain",
    ),
    pytest.param("2001:db8::1", ["1.2.3.4"], (PROXY_V6,), "2001:db8::1", id="v6-untrusted-peer"),
    pytest.param("::1", ["1.2.3.4"], networks("::1"), "1.2.3.4", id="v6-loopback-trusted"),
    pytest.param("::1", ["1.2.3.4"], (LOOPBACK,), "::1", id="v4-net-does-not-trust-v6-peer"),
    pytest.param("10.0.0.1", ["[2001:db8::7]"], (TEN,), "2001:db8::7", id="bracketed-v6"),
    # Peers that are not IP addresses (Starlette's TestClient, Unix sockets) are used as given.
    pytest.param("testclient", ["1.2.3.4"], (TEN,), "testclient", id="non-ip-peer"),
    pytest.param(None, ["1.2.3.4"], (TEN,), None, id="no-peer"),
    pytest.param("", ["1.2.3.4"], (TEN,), "", id="empty-peer"),
]


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), CASES)
def test_client_address(
    peer: str | None, forwarded: list[str], trusted: Sequence[Network], expected: str | None
) -> None:
    assert client_address(peer, forwarded, trusted) == expected


def test_an_attacker_cannot_choose_its_address_by_prepending_hops() -> None:
    """Whatever a client writes into X-Forwarded-For, the proxy appends the real address, and
    that is the one counted."""
    trusted = (TEN,)
    seen = {
        client_address("10.0.0.1", [f"{spoof}, 198.51.100.9"], trusted)
        for spoof in ("1.1.1.1", "2.2.2.2", "10.0.0.5", "garbage", "::1")
    }
    assert seen == {"198.51.100.9"}


def test_untrusted_peer_is_returned_in_canonical_form() -> None:
    # One spelling per address, so one counter per address.
    assert client_address("2001:DB8::1", ["1.2.3.4"], (TEN,)) == "2001:db8::1"
    assert client_address("::ffff:203.0.113.9", [], (TEN,)) == "203.0.113.9"


def test_ipv4_mapped_peer_is_matched_against_ipv4_networks() -> None:
    assert client_address("::ffff:10.0.0.1", ["1.2.3.4"], (TEN,)) == "1.2.3.4"


# --- caller_of -------------------------------------------------------------------------------


def request_from(
    peer: tuple[str, int] | None, headers: list[tuple[str, str]] | None = None
) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/oauth2/token",
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers or []
        ],
        "client": peer,
    }
    return Request(scope)


def test_caller_of_reads_peer_forwarded_for_and_user_agent() -> None:
    request = request_from(
        ("10.0.0.1", 50000),
        [
            ("X-Forwarded-For", "9.9.9.9, 1.2.3.4"),
            ("X-Forwarded-For", "10.0.0.2"),
            ("User-Agent", "curl/8.0"),
        ],
    )

    caller = caller_of(request, (TEN,))

    assert caller.ip == "1.2.3.4"
    assert caller.user_agent == "curl/8.0"


def test_caller_of_ignores_forwarded_for_from_untrusted_peer() -> None:
    request = request_from(("203.0.113.7", 1), [("X-Forwarded-For", "1.2.3.4")])

    assert caller_of(request, (TEN,)).ip == "203.0.113.7"


def test_caller_of_truncates_user_agent() -> None:
    request = request_from(("203.0.113.7", 1), [("User-Agent", "x" * 1000)])

    user_agent = caller_of(request, ()).user_agent

    assert MAX_USER_AGENT == 256
    assert user_agent == "x" * 256


def test_caller_of_keeps_user_agent_at_the_limit() -> None:
    request = request_from(("203.0.113.7", 1), [("User-Agent", "y" * 256)])

    assert caller_of(request, ()).user_agent == "y" * 256


def test_caller_of_without_client_or_user_agent() -> None:
    caller = caller_of(request_from(None, [("X-Forwarded-For", "1.2.3.4")]), (TEN,))

    assert caller.ip is None
    assert caller.user_agent is None


def test_caller_of_empty_user_agent_is_none() -> None:
    assert caller_of(request_from(("1.2.3.4", 1), [("User-Agent", "")]), ()).user_agent is None


# --- the trusted_proxies setting -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("", (), id="empty"),
        pytest.param(" , ", (), id="only-separators"),
        pytest.param("10.0.0.1", networks("10.0.0.1/32"), id="address"),
        pytest.param(
            "10.0.0.0/8, 192.168.1.7 ,2001:db8::/32",
            networks("10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32"),
            id="list",
        ),
        pytest.param("10.1.2.3/8", networks("10.0.0.0/8"), id="host-bits-allowed"),
    ],
)
def test_trusted_proxies_setting_parses(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: tuple[Network, ...]
) -> None:
    monkeypatch.setenv("AUTHSVC_TRUSTED_PROXIES", value)

    assert load_settings().trusted_networks == expected


@pytest.mark.parametrize(
    ("value", "bad_item"),
    [
        pytest.param("proxy.internal", "proxy.internal", id="hostname"),
        pytest.param("10.0.0.0/8, 10.0.0.300", "10.0.0.300", id="bad-second-item"),
        pytest.param("10.0.0.0/33", "10.0.0.0/33", id="bad-prefix"),
        pytest.param("*", "*", id="wildcard"),
    ],
)
def test_invalid_trusted_proxies_is_a_settings_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str, bad_item: str
) -> None:
    monkeypatch.setenv("AUTHSVC_TRUSTED_PROXIES", value)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert str(raised.value) == (
        f"invalid setting AUTHSVC_TRUSTED_PROXIES: not an address or network: {bad_item!r}"
    )

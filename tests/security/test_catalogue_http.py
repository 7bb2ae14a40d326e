"""Security catalogue, HTTP edges: H03 (CORS allowlist) and H04 (body size cap).

H01 and H02 (no token, token in the query) are in ``test_catalogue_accounts.py``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from authsvc.app import create_app
from authsvc.config import Settings
from tests.helpers import TOKEN_URL, USER_PASSWORD, assert_oauth_error, bearer, password_login
from tests.live_server import free_port, serve_in_thread

ALLOWED = "https://app.example"
EVIL = "https://evil.example"
MIB = 1024 * 1024


def _preflight(client: TestClient, origin: str, path: str = TOKEN_URL) -> Any:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def _cors_headers(response: Any) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


@pytest.fixture
def cors_client(make_settings: Callable[..., Settings], migrated: None) -> Iterator[TestClient]:
    with TestClient(
        create_app(make_settings(cors_origins=f"{ALLOWED}, http://localhost:3000"))
    ) as c:
        yield c


# --- H03: CORS ---------------------------------------------------------------------------------


def test_h03_preflight_without_an_allowlist_grants_no_origin(client: TestClient) -> None:
    """H03: the default (empty AUTHSVC_CORS_ORIGINS) answers no preflight with CORS headers."""
    response = _preflight(client, EVIL)

    assert response.status_code == 405
    assert _cors_headers(response) == {}


def test_h03_preflight_from_an_origin_not_allowed_is_refused_without_echo(
    cors_client: TestClient,
) -> None:
    """H03: an origin off the allowlist is neither echoed nor answered with ``*``."""
    response = _preflight(cors_client, EVIL)

    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers
    assert EVIL not in response.text


def test_h03_preflight_from_an_allowed_origin_names_it_and_never_credentials(
    cors_client: TestClient,
) -> None:
    response = _preflight(cors_client, ALLOWED)

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["vary"].startswith("Origin")
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers
    assert "content-type" in allowed_headers


def test_h03_actual_request_from_an_origin_not_allowed_gets_no_cors_headers(
    cors_client: TestClient, user: dict[str, Any]
) -> None:
    token = password_login(cors_client, "alice", USER_PASSWORD)["access_token"]

    response = cors_client.get("/users/me", headers={**bearer(token), "Origin": EVIL})

    assert response.status_code == 200
    # Without Access-Control-Allow-Origin the browser keeps the answer from the script.
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["vary"] == "Origin"


def test_h03_actual_request_from_an_allowed_origin_exposes_the_challenge(
    cors_client: TestClient,
) -> None:
    response = cors_client.get("/users/me", headers={"Origin": ALLOWED})

    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "access-control-allow-credentials" not in response.headers
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"www-authenticate", "retry-after", "x-request-id"} <= exposed


def test_h03_allowlisted_origin_with_its_default_port_matches_what_browsers_send(
    make_settings: Callable[..., Settings], migrated: None
) -> None:
    settings = make_settings(cors_origins="HTTPS://App.Example:443")
    with TestClient(create_app(settings)) as client:
        response = _preflight(client, ALLOWED)

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED


@pytest.mark.parametrize(
    "value",
    ["*", "https://app.example/", "https://app.example/path", "app.example", "null"],
    ids=["wildcard", "trailing-slash", "path", "no-scheme", "null"],
)
def test_h03_cors_origins_setting_accepts_only_serialized_origins(value: str) -> None:
    with pytest.raises(ValidationError, match="cors_origins"):
        Settings(_env_file=None, cors_origins=value)  # type: ignore[call-arg]


# --- H04: body size cap ---------------------------------------------------------------------


def _assert_too_large(response: Any, limit: int) -> None:
    assert_oauth_error(
        response, 413, "invalid_request", f"The request body is larger than {limit} bytes"
    )
    assert response.headers["connection"] == "close"
    assert "www-authenticate" not in response.headers


def test_h04_twenty_mib_form_to_the_token_endpoint_is_413(
    client: TestClient, settings: Settings
) -> None:
    body = b"grant_type=password&username=alice&password=" + b"x" * (20 * MIB)

    response = client.post(
        TOKEN_URL, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )

    _assert_too_large(response, settings.max_body_bytes)


def test_h04_thirty_mib_json_to_an_admin_route_is_413_and_creates_nothing(
    client: TestClient, admin_headers: dict[str, str], settings: Settings
) -> None:
    before = client.get("/admin/users", headers=admin_headers).json()
    body = json.dumps({"username": "bob", "password": "p" * (30 * MIB)}).encode()

    response = client.post(
        "/admin/users",
        content=body,
        headers={**admin_headers, "Content-Type": "application/json"},
    )

    _assert_too_large(response, settings.max_body_bytes)
    assert client.get("/admin/users", headers=admin_headers).json() == before


def test_h04_body_at_the_cap_reaches_the_route(
    client: TestClient, admin_headers: dict[str, str], settings: Settings
) -> None:
    padding = " " * (settings.max_body_bytes - len(b'{"username": "bob"}'))
    body = ('{"username": "bob"}' + padding).encode()
    assert len(body) == settings.max_body_bytes

    response = client.post(
        "/admin/users",
        content=body,
        headers={**admin_headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 422  # the route validated it: no password given


# Over a real socket, to show the 413 comes back before the body is sent, let alone read.


@pytest.fixture
def live_port(make_settings: Callable[..., Settings], migrated: None) -> Iterator[int]:
    port = free_port()
    running = serve_in_thread(create_app(make_settings(max_body_bytes=64 * 1024)), port)
    yield port
    running.stop()


def _response_head(sock: socket.socket) -> bytes:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def test_h04_declared_length_over_the_cap_is_answered_before_the_body_is_sent(
    live_port: int,
) -> None:
    with socket.create_connection(("127.0.0.1", live_port), timeout=5) as sock:
        sock.sendall(
            b"POST /oauth2/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {20 * MIB}\r\n\r\n".encode()
            + b"grant_type=password"
        )
        head = _response_head(sock)

    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"\r\nconnection: close\r\n" in head.lower()


def test_h04_chunked_body_is_cut_off_once_it_passes_the_cap(live_port: int) -> None:
    chunk = b"x" * 16 * 1024
    with socket.create_connection(("127.0.0.1", live_port), timeout=5) as sock:
        sock.sendall(
            b"POST /admin/users HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        # 80 KiB of a 64 KiB cap, and never the terminating zero-length chunk.
        for _ in range(5):
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        head = _response_head(sock)

    assert head.startswith(b"HTTP/1.1 413 ")

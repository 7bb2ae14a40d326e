"""A real nginx (Debian's nginx-light) runs ``deploy/nginx.conf`` in front of static files and
an upstream service, asking a real ``authsvc serve`` through ``auth_request``.

Only the addresses in the shipped file are changed, so the file users copy is the one tested.
Without nginx the tests skip, unless ``AUTHSVC_REQUIRE_NGINX=1`` (set by ``.ci/run``), which
turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import (
    BOOTSTRAP_ADMIN,
    E2E_PASSWORD,
    SERVER_DATABASES,
    Seeded,
    Server,
    database_environment,
    free_port,
    seed_reports_users,
    server_factory,
)

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
# Read at import: the conftest's autouse fixture removes AUTHSVC_* variables during tests.
REQUIRE_NGINX = os.environ.get("AUTHSVC_REQUIRE_NGINX") == "1"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def _nginx_or_skip() -> str:
    if NGINX is None:
        if REQUIRE_NGINX:
            pytest.fail("AUTHSVC_REQUIRE_NGINX=1 but nginx is not installed")
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    return NGINX


@dataclass
class Upstream:
    """The protected service: answers every GET with the headers it received, as JSON."""

    port: int
    seen: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Upstream(server.server_address[1])

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {name.lower(): value for name, value in self.headers.items()}
            state.seen.append(headers)
            body = json.dumps({"path": self.path, "headers": headers}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Echo
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def render_config(gateway_port: int, upstream_port: int, listen_port: int, www: Path) -> str:
    """The shipped file with only its addresses changed (each must appear exactly once)."""
    text = NGINX_CONF.read_text()
    for old, new in (
        ("server authsvc:8000;", f"server 127.0.0.1:{gateway_port};"),
        ("server app:8080;", f"server 127.0.0.1:{upstream_port};"),
        ("listen 8080;", f"listen 127.0.0.1:{listen_port};"),
    ):
        assert text.count(old) == 1, f"deploy/nginx.conf no longer has exactly one {old!r}"
        text = text.replace(old, new)
    assert "root /srv/www;" in text
    return text.replace("root /srv/www;", f"root {www};")


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"nginx exited with {proc.returncode}:\n{log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"nginx did not listen on {port}:\n{log.read_text()}")


@dataclass
class Edge:
    url: str
    gateway: Server
    seeded: Seeded

    def token(self, username: str) -> str:
        # The token endpoint is reached through nginx too: the proxy passes it unprotected.
        response = httpx.post(
            f"{self.url}/oauth2/token",
            data={"grant_type": "password", "username": username, "password": E2E_PASSWORD},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def get(self, path: str, token: str | None = None, **headers: str) -> httpx.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=10)


@pytest.fixture(scope="module", params=SERVER_DATABASES)
def edge(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: Upstream,
) -> Iterator[Edge]:
    nginx = _nginx_or_skip()
    base = tmp_path_factory.mktemp("nginx")
    www = base / "www"
    (www / "static").mkdir(parents=True)
    (www / "static" / "index.html").write_text("<h1>static for any user</h1>\n")
    (www / "reports").mkdir()
    (www / "reports" / "q3.txt").write_text("reports need reports:read\n")
    with (
        database_environment(request.param, "nginx_") as database_env,
        server_factory(base / "gateway", database_env) as factory,
    ):
        gateway = factory.start(**BOOTSTRAP_ADMIN)
        seeded = seed_reports_users(gateway)
        listen = free_port()
        gateway_port = gateway.port
        conf = base / "nginx.conf"
        conf.write_text(render_config(gateway_port, upstream.port, listen, www))
        log = base / "error.log"
        proc = subprocess.Popen(
            [
                nginx,
                "-p",
                str(base),
                "-c",
                str(conf),
                "-g",
                # Started as root, nginx workers would drop to www-data, which cannot enter
                # pytest's private temporary directories; keep them as the test's own user.
                f"daemon off; pid {base}/nginx.pid; error_log {log} warn;"
                + (" user root;" if os.geteuid() == 0 else ""),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for_port(listen, proc, log)
            yield Edge(f"http://127.0.0.1:{listen}", gateway, seeded)
        finally:
            proc.terminate()
            proc.wait(10)


def test_static_location_serves_a_valid_token_and_returns_the_subject(edge: Edge) -> None:
    response = edge.get("/static/index.html", edge.token("bob"))
    assert response.status_code == 200
    assert response.text == "<h1>static for any user</h1>\n"
    assert response.headers["x-auth-subject"] == edge.seeded.users["bob"]


def test_static_location_without_token_is_401_with_bare_bearer_challenge(edge: Edge) -> None:
    response = edge.get("/static/index.html")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "static for any user" not in response.text


def test_static_location_with_garbage_token_is_401_invalid_token(edge: Edge) -> None:
    response = edge.get("/static/index.html", "not.a.token")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="The access token is invalid"'
    )


def test_scoped_location_refuses_a_token_without_the_scope_with_403(edge: Edge) -> None:
    response = edge.get("/reports/q3.txt", edge.token("bob"))
    assert response.status_code == 403
    assert "reports need" not in response.text


def test_scoped_location_serves_a_token_with_the_scope(edge: Edge) -> None:
    response = edge.get("/reports/q3.txt", edge.token("alice"))
    assert response.status_code == 200
    assert response.text == "reports need reports:read\n"


def test_upstream_receives_identity_headers_and_not_the_token(
    edge: Edge, upstream: Upstream
) -> None:
    response = edge.get("/api/whoami", edge.token("alice"))
    assert response.status_code == 200, response.text
    seen = response.json()["headers"]
    assert seen["x-auth-subject"] == edge.seeded.users["alice"]
    assert seen["x-auth-username"] == "alice"
    assert seen["x-auth-scopes"] == "reports:read"
    assert seen["x-auth-client-id"] == "public"
    assert "authorization" not in seen


def test_client_sent_identity_headers_are_overwritten(edge: Edge) -> None:
    response = edge.get(
        "/api/whoami",
        edge.token("bob"),
        **{"X-Auth-Subject": "someone-else", "X-Auth-Scopes": "admin"},
    )
    assert response.status_code == 200, response.text
    seen = response.json()["headers"]
    assert seen["x-auth-subject"] == edge.seeded.users["bob"]
    assert seen.get("x-auth-scopes", "") == ""


def test_upstream_is_never_reached_without_a_valid_token(edge: Edge, upstream: Upstream) -> None:
    before = len(upstream.seen)
    response = edge.get("/api/whoami", None, **{"X-Auth-Subject": "forged"})
    assert response.status_code == 401
    assert len(upstream.seen) == before


def test_revoked_user_is_refused_at_the_edge_at_once(edge: Edge) -> None:
    token = edge.token("alice")
    assert edge.get("/static/index.html", token).status_code == 200
    user_id = edge.seeded.users["alice"]
    edge.seeded.admin_call(
        edge.gateway, "PATCH", f"/admin/users/{user_id}", json={"is_active": False}
    )
    try:
        response = edge.get("/static/index.html", token)
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    finally:
        edge.seeded.admin_call(
            edge.gateway, "PATCH", f"/admin/users/{user_id}", json={"is_active": True}
        )

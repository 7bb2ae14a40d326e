"""The gateway and ``examples/downstream_service.py`` as two real processes on loopback ports.

A token issued by ``authsvc serve`` is accepted by the separate service through
``authsvc.guard`` (JWKS fetched over HTTP), scope checks hold, WebSockets authenticate, the
introspection route sees a revocation, and a key rotated at the gateway is picked up by the
running service without a restart.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.helpers import INSUFFICIENT_SCOPE, authsvc_command
from tests.live_server import (
    BOOTSTRAP_ADMIN,
    E2E_PASSWORD,
    SERVER_DATABASES,
    Seeded,
    Server,
    ServerFactory,
    database_environment,
    free_port,
    seed_reports_users,
    server_factory,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# The gateway's default audience, which the example service expects by default too.
AUDIENCE = "authsvc"


@contextmanager
def downstream_service(issuer: str, logs: Path, **env: str) -> Iterator[tuple[str, int]]:
    """Run the example service under uvicorn; yields its URL and process id."""
    port = free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "DOWNSTREAM_"))},
        "DOWNSTREAM_ISSUER": issuer,
        **env,
    }
    with logs.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--no-access-log",
                "--factory",
                "--app-dir",
                str(EXAMPLES),
                "downstream_service:from_environment",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"downstream service exited:\n{logs.read_text()}")
            try:
                if httpx.get(f"{url}/hello", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"downstream service did not start:\n{logs.read_text()}")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def login(server: Server, username: str) -> str:
    return str(server.login(username, E2E_PASSWORD)["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


@dataclass
class Stack:
    gateway: Server
    seeded: Seeded
    service: str


@pytest.fixture(scope="module", params=SERVER_DATABASES)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("downstream")
    with (
        database_environment(request.param, "downstream_") as database_env,
        server_factory(base / "gateway", database_env) as factory,
    ):
        gateway = factory.start(**BOOTSTRAP_ADMIN)
        seeded = seed_reports_users(gateway)
        registered = seeded.admin_call(
            gateway,
            "POST",
            "/admin/clients",
            json={"name": "downstream", "grant_types": ["client_credentials"]},
        )
        with downstream_service(
            gateway.base_url,
            base / "service.log",
            DOWNSTREAM_CLIENT_ID=registered["client_id"],
            DOWNSTREAM_CLIENT_SECRET=registered["client_secret"],
        ) as (service, _pid):
            yield Stack(gateway, seeded, service)


def test_gateway_token_is_accepted_by_the_downstream_service(stack: Stack) -> None:
    response = httpx.get(f"{stack.service}/me", headers=bearer(login(stack.gateway, "alice")))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "sub": stack.seeded.users["alice"],
        "username": "alice",
        "scopes": ["reports:read"],
        "client_id": "public",
    }


def test_downstream_without_token_answers_the_bare_bearer_challenge(stack: Stack) -> None:
    response = httpx.get(f"{stack.service}/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "Not authenticated"}


def test_downstream_scope_check_admits_a_holder(stack: Stack) -> None:
    response = httpx.get(f"{stack.service}/reports", headers=bearer(login(stack.gateway, "alice")))
    assert response.status_code == 200, response.text
    assert response.json() == {"reports": [], "for": stack.seeded.users["alice"]}


def test_downstream_scope_check_refuses_others_with_403_insufficient_scope(stack: Stack) -> None:
    response = httpx.get(f"{stack.service}/reports", headers=bearer(login(stack.gateway, "bob")))
    assert response.status_code == 403
    assert response.json() == {
        "error": "insufficient_scope",
        "error_description": INSUFFICIENT_SCOPE,
        "scope": "reports:read",
    }
    assert response.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", error_description="{INSUFFICIENT_SCOPE}", '
        'scope="reports:read"'
    )


def test_websocket_with_token_in_header_connects(stack: Stack) -> None:
    ws_url = stack.service.replace("http://", "ws://") + "/ws"
    with connect(ws_url, additional_headers=bearer(login(stack.gateway, "alice"))) as ws:
        assert json.loads(ws.recv(timeout=5)) == {"hello": "alice"}
        ws.send("ping")
        assert json.loads(ws.recv(timeout=5)) == {
            "from": stack.seeded.users["alice"],
            "echo": "ping",
        }


def test_websocket_with_token_in_query_connects(stack: Stack) -> None:
    token = login(stack.gateway, "bob")
    ws_url = stack.service.replace("http://", "ws://") + f"/ws?access_token={token}"
    with connect(ws_url) as ws:
        assert json.loads(ws.recv(timeout=5)) == {"hello": "bob"}


@pytest.mark.parametrize(
    ("query", "reason"),
    [("", "not_authenticated"), ("?access_token=not-a-token", "invalid_token")],
    ids=["no-token", "bad-token"],
)
def test_websocket_without_a_good_token_is_closed_with_1008(
    stack: Stack, query: str, reason: str
) -> None:
    ws_url = stack.service.replace("http://", "ws://") + "/ws" + query
    with connect(ws_url) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == reason


def test_introspection_route_sees_a_revocation_that_the_jwt_route_cannot(stack: Stack) -> None:
    token = login(stack.gateway, "alice")
    assert httpx.get(f"{stack.service}/live/me", headers=bearer(token)).status_code == 200
    revoked = httpx.post(
        f"{stack.gateway.base_url}/oauth2/revoke",
        data={"token": token, "token_type_hint": "access_token", "client_id": "public"},
        timeout=10,
    )
    assert revoked.status_code == 200, revoked.text
    # The example's introspection cache holds answers for 5 s: the bound on staleness.
    deadline = time.monotonic() + 8
    while True:
        live = httpx.get(f"{stack.service}/live/me", headers=bearer(token))
        if live.status_code != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert live.status_code == 401
    assert live.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="The access token is invalid"'
    )
    # Local JWT validation cannot know: the token stays good there until it expires.
    assert httpx.get(f"{stack.service}/me", headers=bearer(token)).status_code == 200


def _restart_with_rotated_key(factory: ServerFactory, gateway: Server) -> Server:
    rotated = subprocess.run(
        [*authsvc_command(), "keys", "rotate"],
        cwd=factory.workdir,
        env=factory.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert rotated.returncode == 0, rotated.stderr
    factory.stop(factory.started[0])
    port = gateway.port
    return factory.start(port, **BOOTSTRAP_ADMIN)


def test_key_rotation_at_the_gateway_reaches_a_running_service(tmp_path: Path) -> None:
    with server_factory(tmp_path / "gateway", {}) as factory:
        gateway = factory.start(**BOOTSTRAP_ADMIN)
        seed_reports_users(gateway)
        with downstream_service(
            gateway.base_url, tmp_path / "service.log", DOWNSTREAM_JWKS_REFRESH_INTERVAL="1"
        ) as (service, pid):
            before = login(gateway, "alice")
            assert httpx.get(f"{service}/me", headers=bearer(before)).status_code == 200

            gateway = _restart_with_rotated_key(factory, gateway)
            after = login(gateway, "alice")
            assert kid_of(after) != kid_of(before)
            time.sleep(1.1)  # the service refetches on an unknown kid at most once a second

            response = httpx.get(f"{service}/me", headers=bearer(after))
            assert response.status_code == 200, response.text
            # Tokens signed before the rotation stay good: the old key is still published.
            assert httpx.get(f"{service}/me", headers=bearer(before)).status_code == 200
            assert os.path.exists(f"/proc/{pid}")

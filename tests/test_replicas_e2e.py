"""Two ``authsvc serve`` replicas on one PostgreSQL schema and one keys directory, with and
without Redis: what one replica does, the other sees within the documented bound (1 s; each
keeps token checks for ``AUTHSVC_AUTH_CACHE_TTL``, 0.5 s).

PostgreSQL only (SQLite is a single-host embedded default). The Redis variant needs the Redis
on 127.0.0.1:6379; it is skipped where none answers, unless ``AUTHSVC_REQUIRE_REDIS=1``.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import authsvc_command, eventually, within_one_window
from tests.live_server import (
    BOOTSTRAP_ADMIN,
    E2E_PASSWORD,
    REQUIRE_REDIS,
    TEST_DATABASE_URL,
    Seeded,
    Server,
    ServerFactory,
    database_environment,
    redis_answers,
    seed_reports_users,
    server_factory,
)

ISSUER = "http://authsvc.replicas.test"
WRONG_PASSWORD = "not-the-password-1"
RATE_LIMIT_WINDOW = 60

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="replicas share a PostgreSQL database (AUTHSVC_TEST_DATABASE_URL)"
)


@dataclass
class Pair:
    a: Server
    b: Server
    seeded: Seeded
    factory: ServerFactory
    env: dict[str, str]

    def token(self, server: Server, username: str = "alice", **headers: str) -> dict[str, Any]:
        response = httpx.post(
            f"{server.base_url}/oauth2/token",
            data={"grant_type": "password", "username": username, "password": E2E_PASSWORD},
            headers=headers,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module", params=["postgresql", "postgresql+redis"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    env = {
        "AUTHSVC_ISSUER": ISSUER,
        # The tests name their client address in X-Forwarded-For, so each test's failures are
        # counted apart from the others'.
        "AUTHSVC_TRUSTED_PROXIES": "127.0.0.1",
        "AUTHSVC_RATE_LIMIT_FAILURES": "6",
        "AUTHSVC_RATE_LIMIT_WINDOW": str(RATE_LIMIT_WINDOW),
        **BOOTSTRAP_ADMIN,
    }
    if request.param.endswith("redis"):
        if not redis_answers():
            if REQUIRE_REDIS:
                pytest.fail("AUTHSVC_REQUIRE_REDIS=1 but no Redis answers on 127.0.0.1:6379")
            pytest.skip("no Redis on 127.0.0.1:6379")
        env["AUTHSVC_REDIS_URL"] = f"redis://127.0.0.1:6379/{random.randint(1, 15)}"
    base = tmp_path_factory.mktemp("replicas")
    with (
        database_environment("postgresql", "replicas_") as database_env,
        server_factory(base / "shared", database_env) as factory,
    ):
        a = factory.start(**env)
        b = factory.start(**env)
        yield Pair(a, b, seed_reports_users(a), factory, env)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


_ADDRESSES = itertools.count(1)


def client_address() -> str:
    """A client address in a /64 no other request of this run used (the limit counts IPv6
    clients by /64; 2001:db8::/32 is for documentation)."""
    return f"2001:db8:{os.getpid() % 0xFFFF:x}:{next(_ADDRESSES):x}::1"


def test_token_issued_by_one_replica_is_accepted_by_the_other(pair: Pair) -> None:
    token = pair.token(pair.a)["access_token"]
    response = pair.b.get("/users/me", token)
    assert response.status_code == 200, response.text
    assert response.json()["username"] == "alice"


def test_revocation_on_one_replica_is_refused_by_the_other_within_a_second(pair: Pair) -> None:
    token = pair.token(pair.a)["access_token"]
    assert pair.b.get("/users/me", token).status_code == 200
    revoked = httpx.post(
        f"{pair.a.base_url}/oauth2/revoke",
        data={"token": token, "client_id": "public"},
        timeout=10,
    )
    assert revoked.status_code == 200
    assert eventually(lambda: pair.b.get("/users/me", token).status_code == 401)


def test_disabling_a_user_on_one_replica_is_refused_by_the_other_within_a_second(
    pair: Pair,
) -> None:
    token = pair.token(pair.a, "bob")["access_token"]
    assert pair.b.get("/users/me", token).status_code == 200
    bob = pair.seeded.users["bob"]
    pair.seeded.admin_call(pair.a, "PATCH", f"/admin/users/{bob}", json={"is_active": False})
    try:
        assert eventually(lambda: pair.b.get("/users/me", token).status_code == 401)
    finally:
        pair.seeded.admin_call(pair.a, "PATCH", f"/admin/users/{bob}", json={"is_active": True})


def test_concurrent_refreshes_across_replicas_have_exactly_one_winner(pair: Pair) -> None:
    refresh_token = pair.token(pair.a)["refresh_token"]

    def refresh(index: int) -> int:
        server = pair.a if index % 2 else pair.b
        return httpx.post(
            f"{server.base_url}/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            timeout=20,
        ).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(refresh, range(20)))
    assert sorted(statuses) == [200] + [400] * 19


def test_failed_logins_on_both_replicas_add_up_to_a_lockout(pair: Pair) -> None:
    username = f"locky{random.randint(0, 10**9)}"
    pair.seeded.admin_call(
        pair.a, "POST", "/admin/users", json={"username": username, "password": E2E_PASSWORD}
    )

    def attempt(server: Server, password: str) -> httpx.Response:
        return httpx.post(
            f"{server.base_url}/oauth2/token",
            data={"grant_type": "password", "username": username, "password": password},
            headers={"X-Forwarded-For": client_address()},
            timeout=10,
        )

    wrong = [attempt(server, WRONG_PASSWORD) for server in (pair.a, pair.b, pair.a, pair.b)]
    assert [response.status_code for response in wrong] == [400] * 4
    assert attempt(pair.b, E2E_PASSWORD).status_code == 200  # 4 failures, then a success
    for server in (pair.a, pair.b, pair.a, pair.b, pair.a):
        assert attempt(server, WRONG_PASSWORD).status_code == 400
    locked = attempt(pair.b, E2E_PASSWORD)
    assert locked.status_code == 400
    assert locked.content == wrong[0].content


def test_address_limit_counts_failures_made_on_both_replicas(pair: Pair) -> None:
    address = {"X-Forwarded-For": client_address()}
    within_one_window(RATE_LIMIT_WINDOW, needed=20)
    for index in range(6):
        server = pair.a if index % 2 else pair.b
        response = httpx.post(
            f"{server.base_url}/oauth2/token",
            data={"grant_type": "password", "username": f"nobody{index}", "password": "x" * 9},
            headers=address,
            timeout=10,
        )
        assert response.status_code == 400
    for server in (pair.a, pair.b):
        limited = httpx.post(
            f"{server.base_url}/oauth2/token",
            data={"grant_type": "password", "username": "alice", "password": E2E_PASSWORD},
            headers=address,
            timeout=10,
        )
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= RATE_LIMIT_WINDOW
    # Another address is not affected.
    assert pair.token(pair.a, **{"X-Forwarded-For": client_address()})["access_token"]


def test_audit_events_from_both_replicas_are_listed_by_either(pair: Pair) -> None:
    pair.token(pair.a, "bob")
    pair.token(pair.b, "bob")
    bob = pair.seeded.users["bob"]

    def listed() -> int:
        page = pair.seeded.admin_call(
            pair.b, "GET", f"/admin/audit?type=login.succeeded&user={bob}&limit=500"
        )
        return len(page["items"])

    # The writers flush every 0.2 s.
    assert eventually(lambda: listed() >= 2, within=3.0)


def test_key_rotated_on_one_replica_verifies_on_the_other_without_restart(pair: Pair) -> None:
    rotated = subprocess.run(
        [*authsvc_command(), "keys", "rotate"],
        cwd=pair.factory.workdir,
        env={**pair.factory.env, **pair.env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert rotated.returncode == 0, rotated.stderr
    # Restart A only: it signs with the new key; B keeps running.
    pair.factory.stop(pair.factory.started[0])
    pair.a = pair.factory.start(pair.a.port, **pair.env)
    token = pair.token(pair.a)["access_token"]
    response = pair.b.get("/users/me", token)
    assert response.status_code == 200, response.text
    published = httpx.get(f"{pair.b.base_url}/.well-known/jwks.json", timeout=10).json()
    header_kid = httpx.get(f"{pair.a.base_url}/.well-known/jwks.json", timeout=10).json()
    assert {key["kid"] for key in published["keys"]} == {key["kid"] for key in header_kid["keys"]}
    assert len(published["keys"]) == 2
    assert Path(pair.factory.workdir / "keys").is_dir()

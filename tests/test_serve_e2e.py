"""``authsvc serve`` end to end: a real process, real HTTP, the default on-disk layout.

Every server starts in an empty directory with an environment stripped of the developer's
``AUTHSVC_*`` variables. SQLite always; PostgreSQL too when ``AUTHSVC_TEST_DATABASE_URL`` is
set, each test in a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from tests.helpers import pem_files
from tests.live_server import (
    SERVER_DATABASES,
    Server,
    ServerFactory,
    database_environment,
    generated_admin_password,
    server_factory,
)

# Read at import: the conftest's autouse fixture removes AUTHSVC_* variables during tests.
TEST_DATABASE_URL = os.environ.get("AUTHSVC_TEST_DATABASE_URL")
BOOTSTRAP_PASSWORD = "bootstrap-password-1"


DATABASES = SERVER_DATABASES


@pytest.fixture(params=DATABASES)
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerFactory]:
    """A fresh directory and database in which a test starts (and restarts) servers itself."""
    with (
        database_environment(request.param, "e2e_") as database_env,
        server_factory(tmp_path / "srv", database_env) as factory,
    ):
        yield factory


@dataclass(frozen=True)
class FirstStart:
    server: Server
    workdir: Path
    database: str


@pytest.fixture(scope="module", params=DATABASES)
def first_start(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FirstStart]:
    """One server started in an empty directory, shared by the tests that only observe it.

    Those tests must not change what they observe: no new users, no new keys.
    """
    with (
        database_environment(request.param, "e2e_") as database_env,
        server_factory(tmp_path_factory.mktemp("first") / "srv", database_env) as factory,
    ):
        yield FirstStart(factory.start(), factory.workdir, request.param)


def test_first_start_prints_an_admin_password_that_logs_in(first_start: FirstStart) -> None:
    server = first_start.server

    body = server.login("admin", generated_admin_password(server))

    assert body["token_type"] == "Bearer"
    assert body["scope"] == "admin"


def test_first_start_prints_the_admin_password_once(first_start: FirstStart) -> None:
    server = first_start.server
    password = generated_admin_password(server)

    assert server.stdout.count(password) == 1
    assert password not in server.stderr


def test_generated_admin_can_list_users(first_start: FirstStart) -> None:
    server = first_start.server
    token = server.login("admin", generated_admin_password(server))["access_token"]

    response = server.get("/admin/users", token)

    assert response.status_code == 200
    assert response.json()["total"] == 1
    assert [user["username"] for user in response.json()["items"]] == ["admin"]


def test_generated_admin_can_read_itself(first_start: FirstStart) -> None:
    server = first_start.server
    token = server.login("admin", generated_admin_password(server))["access_token"]

    response = server.get("/users/me", token)

    assert response.status_code == 200
    assert response.json()["username"] == "admin"
    assert response.json()["scopes"] == ["admin"]


def test_request_without_token_is_unauthorized(first_start: FirstStart) -> None:
    response = httpx.get(f"{first_start.server.base_url}/users/me", timeout=10)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_first_start_generates_one_private_key_with_mode_0600(first_start: FirstStart) -> None:
    [key_file] = pem_files(first_start.workdir / "keys")

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    kid = key_file.stem.split("-", 1)[1]
    assert f"Signing with RS256 key {kid}" in first_start.server.stdout


def test_token_kid_is_published_in_jwks(first_start: FirstStart) -> None:
    server = first_start.server
    token = server.login("admin", generated_admin_password(server))["access_token"]

    jwks = httpx.get(f"{server.base_url}/.well-known/jwks.json", timeout=10).json()

    assert [key["kid"] for key in jwks["keys"]] == [jwt.get_unverified_header(token)["kid"]]
    assert {"d", "p", "q", "dp", "dq", "qi"}.isdisjoint(jwks["keys"][0])


def test_first_start_creates_authsvc_db_file_only_for_default_sqlite(
    first_start: FirstStart,
) -> None:
    expected = first_start.database == "sqlite"

    assert (first_start.workdir / "authsvc.db").is_file() is expected


def test_second_start_creates_no_second_admin_or_key(servers: ServerFactory) -> None:
    first = servers.start()
    password = generated_admin_password(first)
    servers.stop_all()
    keys_before = pem_files(servers.workdir / "keys")

    second = servers.start()

    assert "Created admin user" not in second.stdout
    assert pem_files(servers.workdir / "keys") == keys_before
    token = second.login("admin", password)["access_token"]
    assert second.get("/admin/users", token).json()["total"] == 1


def test_token_from_first_start_verifies_after_restart(servers: ServerFactory) -> None:
    first = servers.start()
    token = first.login("admin", generated_admin_password(first))["access_token"]
    servers.stop_all()

    # Same port, so the same issuer: the token's iss still names this server.
    second = servers.start(first.port)

    assert second.get("/users/me", token).status_code == 200


def test_bootstrap_admin_settings_create_that_admin(servers: ServerFactory) -> None:
    server = servers.start(
        AUTHSVC_BOOTSTRAP_ADMIN_USERNAME="root",
        AUTHSVC_BOOTSTRAP_ADMIN_PASSWORD=BOOTSTRAP_PASSWORD,
    )

    assert "Created admin user 'root' from the bootstrap settings." in server.stdout
    assert BOOTSTRAP_PASSWORD not in server.stdout + server.stderr
    token = server.login("root", BOOTSTRAP_PASSWORD)["access_token"]
    users = server.get("/admin/users", token)
    assert users.status_code == 200
    assert [user["username"] for user in users.json()["items"]] == ["root"]


def test_bootstrap_admin_settings_are_ignored_once_users_exist(servers: ServerFactory) -> None:
    first = servers.start()
    password = generated_admin_password(first)
    servers.stop_all()

    second = servers.start(
        AUTHSVC_BOOTSTRAP_ADMIN_USERNAME="root",
        AUTHSVC_BOOTSTRAP_ADMIN_PASSWORD=BOOTSTRAP_PASSWORD,
    )

    assert "Created admin user" not in second.stdout
    token = second.login("admin", password)["access_token"]
    assert [user["username"] for user in second.get("/admin/users", token).json()["items"]] == [
        "admin"
    ]

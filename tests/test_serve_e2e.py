"""``authsvc serve`` end to end: a real process, real HTTP, the default on-disk layout.

Every server starts in an empty directory with an environment stripped of the developer's
``AUTHSVC_*`` variables. SQLite always; PostgreSQL too when ``AUTHSVC_TEST_DATABASE_URL`` is
set, each test in a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import create_engine, make_url, text

# Read at import: the conftest's autouse fixture removes AUTHSVC_* variables during tests.
TEST_DATABASE_URL = os.environ.get("AUTHSVC_TEST_DATABASE_URL")
READY_TIMEOUT = 20.0
GENERATED_ADMIN = re.compile(r"^Created admin user 'admin' with password: (\S+)$", re.MULTILINE)
BOOTSTRAP_PASSWORD = "bootstrap-password-1"


def authsvc_command() -> list[str]:
    """The installed console script beside this interpreter, else on PATH, else the module."""
    sibling = Path(sys.executable).parent / "authsvc"
    if sibling.exists():
        return [str(sibling)]
    found = shutil.which("authsvc")
    if found:
        return [found]
    return [sys.executable, "-c", "from authsvc.cli import main; main()"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


DATABASES = [
    pytest.param("sqlite"),
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not TEST_DATABASE_URL, reason="AUTHSVC_TEST_DATABASE_URL is not set"
        ),
    ),
]


@contextmanager
def database_environment(kind: str) -> Iterator[dict[str, str]]:
    """Extra environment for the server: nothing for SQLite, a private schema for PostgreSQL."""
    if kind == "sqlite":
        yield {}
        return
    assert TEST_DATABASE_URL is not None
    schema = f"e2e_{uuid.uuid4().hex}"
    admin_engine = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(TEST_DATABASE_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield {"AUTHSVC_DATABASE_URL": url.render_as_string(hide_password=False)}
    finally:
        with admin_engine.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin_engine.dispose()


@dataclass
class Server:
    base_url: str
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")

    def login(self, username: str, password: str) -> dict[str, Any]:
        response = httpx.post(
            f"{self.base_url}/oauth2/token",
            data={"grant_type": "password", "username": username, "password": password},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def get(self, path: str, token: str) -> httpx.Response:
        return httpx.get(
            f"{self.base_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )


@dataclass
class ServerFactory:
    workdir: Path
    env: dict[str, str]
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, **extra_env: str) -> Server:
        """Start ``authsvc serve`` and return once GET /readyz answers 200."""
        index = len(self.started)
        port = free_port()
        stdout_path = self.workdir.parent / f"serve-{index}.out"
        stderr_path = self.workdir.parent / f"serve-{index}.err"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            # Files, not pipes: nothing can fill up and block the server, nothing to close.
            proc = subprocess.Popen(
                [*authsvc_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=self.workdir,
                env={**self.env, **extra_env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        self.started.append(proc)
        server = Server(f"http://127.0.0.1:{port}", stdout_path, stderr_path)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"authsvc serve exited with {proc.returncode}\n"
                    f"stdout:\n{server.stdout}\nstderr:\n{server.stderr}"
                )
            try:
                if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"authsvc serve not ready after {READY_TIMEOUT} s\n"
                    f"stdout:\n{server.stdout}\nstderr:\n{server.stderr}"
                )
            time.sleep(0.1)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.started:
            self.stop(proc)


@contextmanager
def server_factory(workdir: Path, database_env: dict[str, str]) -> Iterator[ServerFactory]:
    workdir.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSVC_")}
    env.update({"AUTHSVC_BCRYPT_ROUNDS": "4", **database_env})
    factory = ServerFactory(workdir, env)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(params=DATABASES)
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerFactory]:
    """A fresh directory and database in which a test starts (and restarts) servers itself."""
    with (
        database_environment(request.param) as database_env,
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
        database_environment(request.param) as database_env,
        server_factory(tmp_path_factory.mktemp("first") / "srv", database_env) as factory,
    ):
        yield FirstStart(factory.start(), factory.workdir, request.param)


def generated_admin_password(server: Server) -> str:
    match = GENERATED_ADMIN.search(server.stdout)
    assert match is not None, server.stdout
    return match.group(1)


def pem_files(keys_dir: Path) -> list[Path]:
    return sorted(keys_dir.glob("*.pem"))


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

    second = servers.start()

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

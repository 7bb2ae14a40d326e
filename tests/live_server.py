"""Run ``authsvc serve`` as a real process on a free local port, for end-to-end tests.

A :class:`ServerFactory` (made with :func:`server_factory`) starts servers in one working
directory with an environment stripped of the developer's ``AUTHSVC_*`` variables, waits for
``GET /readyz``, captures each server's output in files beside that directory, and terminates
every server it started when the ``with`` block ends.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.helpers import authsvc_command, private_schema

READY_TIMEOUT = 20.0
# Read at import: the conftest's autouse fixture removes AUTHSVC_* variables during tests.
TEST_DATABASE_URL = os.environ.get("AUTHSVC_TEST_DATABASE_URL")

# Live-server tests run on SQLite always, and on PostgreSQL when a test database is named.
SERVER_DATABASES = [
    pytest.param("sqlite"),
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not TEST_DATABASE_URL, reason="AUTHSVC_TEST_DATABASE_URL is not set"
        ),
    ),
]


@contextmanager
def database_environment(kind: str, schema_prefix: str) -> Iterator[dict[str, str]]:
    """Extra environment for a server: nothing for SQLite, a private schema for PostgreSQL."""
    if kind == "sqlite":
        yield {}
        return
    assert TEST_DATABASE_URL is not None
    with private_schema(TEST_DATABASE_URL, schema_prefix) as url:
        yield {"AUTHSVC_DATABASE_URL": url}


# The Redis our machines run; tests that need it skip without it unless CI requires it.
REQUIRE_REDIS = os.environ.get("AUTHSVC_REQUIRE_REDIS") == "1"


def redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


GENERATED_ADMIN = re.compile(r"^Created admin user 'admin' with password: (\S+)$", re.MULTILINE)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A started server: its URL and the files its stdout and stderr go to."""

    base_url: str
    stdout_path: Path
    stderr_path: Path

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

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


def generated_admin_password(server: Server) -> str:
    """The password ``authsvc serve`` printed for the admin it created on first start."""
    match = GENERATED_ADMIN.search(server.stdout)
    assert match is not None, f"no generated admin password in stdout:\n{server.stdout}"
    return match.group(1)


@dataclass
class ServerFactory:
    """Starts servers in ``workdir`` with ``env``; ``stop_all`` terminates them all."""

    workdir: Path
    env: dict[str, str]
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self, port: int | None = None, args: tuple[str, ...] = (), **extra_env: str
    ) -> Server:
        """Start ``authsvc serve`` and return once GET /readyz answers 200.

        The issuer is the server's own URL unless ``AUTHSVC_ISSUER`` is given, so discovery
        (RFC 8414) works against it; ``port`` lets a restarted server keep its address;
        ``args`` go after ``serve`` (``("--workers", "2")``).
        """
        index = len(self.started)
        port = free_port() if port is None else port
        extra_env.setdefault("AUTHSVC_ISSUER", f"http://127.0.0.1:{port}")
        stdout_path = self.workdir.parent / f"serve-{index}.out"
        stderr_path = self.workdir.parent / f"serve-{index}.err"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            # Files, not pipes: nothing can fill up and block the server, nothing to close.
            proc = subprocess.Popen(
                [*authsvc_command(), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
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
    """Create ``workdir`` and yield a factory whose servers are all stopped on exit.

    The environment is this process's without any ``AUTHSVC_*`` variable, plus fast bcrypt
    and ``database_env`` (empty means the default SQLite file in ``workdir``).
    """
    workdir.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSVC_")}
    env.update({"AUTHSVC_BCRYPT_ROUNDS": "4", **database_env})
    factory = ServerFactory(workdir, env)
    try:
        yield factory
    finally:
        factory.stop_all()


BOOTSTRAP_ADMIN = {
    "AUTHSVC_BOOTSTRAP_ADMIN_USERNAME": "e2e-admin",
    "AUTHSVC_BOOTSTRAP_ADMIN_PASSWORD": "e2e-admin-password-1",
}
E2E_PASSWORD = "e2e-user-password-1"


@dataclass
class Seeded:
    """Accounts on a live gateway: ``alice`` holds ``reports:read``, ``bob`` holds nothing."""

    admin_token: str
    users: dict[str, str]  # username -> user id

    def admin_call(self, server: Server, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method,
            f"{server.base_url}{path}",
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10,
            **kwargs,
        )
        assert response.status_code in (200, 201, 204), response.text
        return response.json() if response.content else None


def seed_reports_users(server: Server) -> Seeded:
    """Create scope ``reports:read`` and users ``alice`` (with it) and ``bob`` (without) on a
    server started with :data:`BOOTSTRAP_ADMIN`."""
    admin = server.login(
        BOOTSTRAP_ADMIN["AUTHSVC_BOOTSTRAP_ADMIN_USERNAME"],
        BOOTSTRAP_ADMIN["AUTHSVC_BOOTSTRAP_ADMIN_PASSWORD"],
    )
    seeded = Seeded(admin["access_token"], {})
    seeded.admin_call(server, "POST", "/admin/scopes", json={"name": "reports:read"})
    for username, scopes in (("alice", ["reports:read"]), ("bob", [])):
        created = seeded.admin_call(
            server,
            "POST",
            "/admin/users",
            json={"username": username, "password": E2E_PASSWORD, "scopes": scopes},
        )
        seeded.users[username] = created["id"]
    return seeded


@dataclass
class ThreadedServer:
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve_in_thread(app: Any, port: int) -> ThreadedServer:
    """Run ``app`` under uvicorn on 127.0.0.1:``port`` until ``stop()``."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return ThreadedServer(server, thread)

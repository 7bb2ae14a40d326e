"""Faults a real deployment meets, against a real ``authsvc serve``.

* PostgreSQL cut off mid-run (the server reaches it through a TCP proxy the test controls):
  every endpoint that needs the database answers 503 ``temporarily_unavailable`` with
  ``Retry-After``, quickly, never a 500 and never a 200 that should have been a denial; when
  the database is back the same process serves again.
* SIGTERM while a request is running: readiness turns 503 at once, the request completes, and
  the process exits 0.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.live_server import (
    BOOTSTRAP_ADMIN,
    E2E_PASSWORD,
    SERVER_DATABASES,
    TEST_DATABASE_URL,
    Seeded,
    Server,
    database_environment,
    free_port,
    seed_reports_users,
    server_factory,
)

REQUEST_BUDGET = 8.0  # seconds a request may take while the database is gone


@dataclass
class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``cut()`` drops every connection and stops
    listening, ``restore()`` listens again on the same port."""

    target: tuple[str, int]
    port: int = field(default_factory=free_port)
    _listener: socket.socket | None = None
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    # Accepted just before a cut: the cut must leave no connection alive.
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets.clear()

    def restore(self) -> None:
        self.start()


def through(url: str, port: int) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{port}"))


@dataclass
class CutOff:
    server: Server
    seeded: Seeded
    proxy: TcpProxy
    client_id: str
    client_secret: str


@pytest.fixture
def cut_off(tmp_path: Path) -> Iterator[CutOff]:
    if not TEST_DATABASE_URL:
        pytest.skip("the database cut needs PostgreSQL (AUTHSVC_TEST_DATABASE_URL)")
    with database_environment("postgresql", "faults_") as database_env:
        target = urlsplit(database_env["AUTHSVC_DATABASE_URL"])
        proxy = TcpProxy((target.hostname or "127.0.0.1", target.port or 5432))
        proxy.start()
        env = {"AUTHSVC_DATABASE_URL": through(database_env["AUTHSVC_DATABASE_URL"], proxy.port)}
        try:
            with server_factory(tmp_path / "srv", env) as factory:
                server = factory.start(
                    AUTHSVC_DB_CONNECT_TIMEOUT="2", AUTHSVC_DB_POOL_TIMEOUT="2", **BOOTSTRAP_ADMIN
                )
                seeded = seed_reports_users(server)
                registered = seeded.admin_call(
                    server,
                    "POST",
                    "/admin/clients",
                    json={"name": "rs", "grant_types": ["client_credentials"]},
                )
                yield CutOff(
                    server, seeded, proxy, registered["client_id"], registered["client_secret"]
                )
        finally:
            proxy.cut()


def _requests(fault: CutOff, token: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    basic = (fault.client_id, fault.client_secret)
    return {
        "readyz": ("GET", "/readyz", {}),
        "password grant": (
            "POST",
            "/oauth2/token",
            {"data": {"grant_type": "password", "username": "alice", "password": E2E_PASSWORD}},
        ),
        "client_credentials grant": (
            "POST",
            "/oauth2/token",
            {"data": {"grant_type": "client_credentials"}, "auth": basic},
        ),
        "introspection": ("POST", "/oauth2/introspect", {"data": {"token": token}, "auth": basic}),
        "revocation": (
            "POST",
            "/oauth2/revoke",
            {"data": {"token": token, "client_id": "public"}},
        ),
        "forward-auth": (
            "GET",
            "/auth/verify",
            {"headers": {"Authorization": f"Bearer {token}"}},
        ),
        "users/me": ("GET", "/users/me", {"headers": {"Authorization": f"Bearer {token}"}}),
        "admin": (
            "GET",
            "/admin/users",
            {"headers": {"Authorization": f"Bearer {fault.seeded.admin_token}"}},
        ),
    }


def test_database_cut_gives_503_everywhere_and_recovery_needs_no_restart(
    cut_off: CutOff,
) -> None:
    token = cut_off.server.login("alice", E2E_PASSWORD)["access_token"]
    requests = _requests(cut_off, token)
    base = cut_off.server.base_url

    cut_off.proxy.cut()
    for name, (method, path, options) in requests.items():
        started = time.monotonic()
        response = httpx.request(method, base + path, timeout=30, **options)
        elapsed = time.monotonic() - started
        assert response.status_code == 503, (name, response.status_code, response.text)
        assert elapsed < REQUEST_BUDGET, (name, elapsed)
        if name != "readyz":
            assert response.json()["error"] == "temporarily_unavailable", name
            assert response.headers["retry-after"] == "5", name
            assert response.headers["cache-control"] == "no-store", name
        assert "Traceback" not in response.text and "psycopg" not in response.text, name

    cut_off.proxy.restore()
    deadline = time.monotonic() + 15
    while httpx.get(base + "/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "not ready again after the database came back"
        time.sleep(0.2)
    for name, (method, path, options) in requests.items():
        if name == "revocation":
            continue  # would revoke the token the later requests use; it is checked last
        response = httpx.request(method, base + path, timeout=30, **options)
        assert response.status_code == 200, (name, response.status_code, response.text)
    method, path, options = requests["revocation"]
    assert httpx.request(method, base + path, timeout=30, **options).status_code == 200
    assert cut_off.server.get("/users/me", token).status_code == 401


@pytest.mark.parametrize("database", SERVER_DATABASES)
def test_sigterm_lets_the_running_request_finish_and_exits_zero(
    database: str, tmp_path: Path
) -> None:
    with (
        database_environment(database, "sigterm_") as database_env,
        server_factory(tmp_path / "srv", database_env) as factory,
    ):
        # A slow request: one bcrypt verify at cost 14 takes about a second here.
        server = factory.start(
            AUTHSVC_SHUTDOWN_DELAY="1", AUTHSVC_BCRYPT_ROUNDS="14", **BOOTSTRAP_ADMIN
        )
        process = factory.started[-1]
        answers: dict[str, httpx.Response] = {}

        def slow_login() -> None:
            answers["login"] = httpx.post(
                f"{server.base_url}/oauth2/token",
                data={
                    "grant_type": "password",
                    "username": BOOTSTRAP_ADMIN["AUTHSVC_BOOTSTRAP_ADMIN_USERNAME"],
                    "password": BOOTSTRAP_ADMIN["AUTHSVC_BOOTSTRAP_ADMIN_PASSWORD"],
                },
                timeout=60,
            )

        login = threading.Thread(target=slow_login)
        login.start()
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        ready = httpx.get(f"{server.base_url}/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["checks"]["process"] == "shutting_down"
        login.join(60)
        assert answers["login"].status_code == 200, answers["login"].text
        assert process.wait(30) == 0

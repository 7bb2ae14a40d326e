"""The servers a benchmark run needs, each a real process on a loopback port.

Servers are pinned to core 0 and wrk to core 1 (where ``taskset`` exists), so the load
generator does not steal the server's CPU: on a 2-core machine that is the whole point.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE = 0
ADMIN = ("bench-admin", "bench-admin-password-1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(command: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(SERVER_CORE), *command]
    return command


def bench_env() -> dict[str, str]:
    """Our environment without anything that configures the servers we start."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUTHSVC_", "DOWNSTREAM_", "PEER_"))
    }


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    startup_seconds: float

    def cpu_seconds(self) -> float:
        """CPU time the serving process has used so far (every thread)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """Resident memory of the serving process (one worker: the process itself)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 60:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"server not ready:\n{log.read_text()}")


@contextmanager
def process(
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    ready_path: str,
    port: int,
    *,
    pin: bool = True,
) -> Iterator[Server]:
    log = cwd / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            pinned(command) if pin else command,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        startup = _wait_ready(url + ready_path, proc, log)
        yield Server(url, proc, startup)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_until_idle(server: Server, *, timeout: float = 30.0) -> None:
    """Until the server uses under 5% of a core: work queued by a finished load (logins
    still hashing after their clients left) would otherwise run into the next measurement."""
    deadline = time.monotonic() + timeout
    interval = 0.25
    while time.monotonic() < deadline:
        before = server.cpu_seconds()
        time.sleep(interval)
        if server.cpu_seconds() - before < 0.05 * interval:
            return
    raise RuntimeError(f"{server.url} still busy after {timeout:g} s: nothing to measure against")


def gateway_env(workdir: Path, port: int, **extra: str) -> dict[str, str]:
    env = bench_env()
    env.update(
        {
            "AUTHSVC_ISSUER": f"http://127.0.0.1:{port}",
            "AUTHSVC_DATABASE_URL": f"sqlite:///{workdir}/authsvc.db",
            "AUTHSVC_KEYS_DIR": str(workdir / "keys"),
            "AUTHSVC_BOOTSTRAP_ADMIN_USERNAME": ADMIN[0],
            "AUTHSVC_BOOTSTRAP_ADMIN_PASSWORD": ADMIN[1],
            **extra,
        }
    )
    return env


@contextmanager
def gateway(
    workdir: Path,
    name: str = "gateway",
    *,
    pin: bool = True,
    settings: dict[str, str] | None = None,
) -> Iterator[Server]:
    """``authsvc serve``: one worker, uvicorn's defaults (uvloop and httptools when present).

    ``settings`` are ``AUTHSVC_*`` variables. Its database and keys live in ``workdir/name``, so
    a second start under the same name is a restart.
    """
    port = free_port()
    home = workdir / name
    home.mkdir(exist_ok=True)
    authsvc = Path(sys.executable).parent / "authsvc"
    command = [str(authsvc), "serve", "--host", "127.0.0.1", "--port", str(port)]
    env = gateway_env(home, port, **(settings or {}))
    with process(command, env, home, "/readyz", port, pin=pin) as server:
        yield server


def _uvicorn(app_dir: Path, target: str, port: int, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        *options,
        "--app-dir",
        str(app_dir),
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


@contextmanager
def peer(workdir: Path, module: str) -> Iterator[Server]:
    """A peer app from ``bench/peers``, served with uvicorn's defaults (its access log on):
    each app as it runs out of the box, as ``authsvc serve`` runs us (our own request log on,
    uvicorn's off)."""
    port = free_port()
    env = bench_env()
    env["PEER_DATABASE_URL"] = f"sqlite+aiosqlite:///{workdir}/{module}-{port}.db"
    command = _uvicorn(ROOT / "bench" / "peers", f"{module}:app", port)
    with process(command, env, workdir, "/hello", port) as server:
        yield server


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str | None]:
    """A fresh database on the PostgreSQL server at ``admin_url``, dropped afterwards.

    None when no server answers (the PostgreSQL rows are then left out, and say so).
    """
    import psycopg

    name = f"authsvc_bench_{os.getpid()}"
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(plain, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        yield None
        return
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(plain, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def downstream(workdir: Path, issuer: str) -> Iterator[Server]:
    """The example service protected by ``authsvc.guard``."""
    port = free_port()
    env = bench_env()
    env["DOWNSTREAM_ISSUER"] = issuer
    command = _uvicorn(
        ROOT / "examples",
        "downstream_service:from_environment",
        port,
        "--no-access-log",
        "--factory",
    )
    with process(command, env, workdir, "/hello", port) as server:
        yield server

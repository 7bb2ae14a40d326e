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


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    startup_seconds: float

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
    command: list[str], env: dict[str, str], cwd: Path, ready_path: str, port: int
) -> Iterator[Server]:
    log = cwd / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            pinned(command), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
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


def gateway_env(workdir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
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
def gateway(workdir: Path, **extra: str) -> Iterator[Server]:
    """``authsvc serve``: one worker, uvicorn's defaults (uvloop and httptools when present)."""
    port = free_port()
    authsvc = Path(sys.executable).parent / "authsvc"
    command = [str(authsvc), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with process(command, gateway_env(workdir, port, **extra), workdir, "/readyz", port) as srv:
        yield srv


@contextmanager
def downstream(workdir: Path, issuer: str) -> Iterator[Server]:
    """The example service protected by ``authsvc.guard``."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOWNSTREAM_")}
    env["DOWNSTREAM_ISSUER"] = issuer
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--no-access-log",
        "--factory",
        "--app-dir",
        str(ROOT / "examples"),
        "downstream_service:from_environment",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with process(command, env, workdir, "/hello", port) as server:
        yield server

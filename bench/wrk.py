"""Drive a URL with wrk (Debian package ``wrk``) pinned to its own core; parse what it prints."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_P99 = re.compile(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Load:
    """What one wrk run sends: method, headers and body (a Lua script carries them)."""

    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None

    def script(self) -> str:
        lines = [f'wrk.method = "{self.method}"']
        for name, value in self.headers:
            lines.append(f'wrk.headers["{name}"] = "{value}"')
        if self.body is not None:
            lines.append(f'wrk.body = "{self.body}"')
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Result:
    rate: float  # requests per second
    p99_ms: float
    errors: int  # non-2xx answers: a benchmark of refusals would measure the wrong thing


def require_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    return found


def run(url: str, load: Load, *, seconds: float, connections: int, core: int | None) -> Result:
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "load.lua"
        script.write_text(load.script())
        command = [
            require_wrk(),
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        if core is not None and shutil.which("taskset"):
            command = ["taskset", "-c", str(core), *command]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = _RATE.search(output)
    p99 = _P99.search(output)
    errors = _NON_2XX.search(output)
    if rate is None or p99 is None:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    return Result(
        rate=float(rate.group(1)),
        p99_ms=float(p99.group(1)) * _UNITS[p99.group(2)],
        errors=int(errors.group(1)) if errors else 0,
    )

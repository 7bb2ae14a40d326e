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
    """What one wrk run sends: method, headers and body (a Lua script carries them).

    ``lua`` is appended to the script: wrk's ``request``/``response``/``delay`` hooks, for
    loads that change per request (a refresh token chain) or pace themselves (a probe).
    """

    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    lua: str = ""

    def script(self) -> str:
        lines = [f'wrk.method = "{self.method}"']
        for name, value in self.headers:
            lines.append(f'wrk.headers["{name}"] = "{value}"')
        if self.body is not None:
            lines.append(f'wrk.body = "{self.body}"')
        return "\n".join(lines) + "\n" + self.lua


def paced(milliseconds: int) -> str:
    """Each connection waits this long between requests: a probe, not a flood."""
    return f"delay = function() return {milliseconds} end\n"


def refresh_chain(refresh_tokens: list[str]) -> str:
    """Every request spends a refresh token; every answer puts its successor back.

    Refresh tokens are single-use (rotation), so the load needs one per connection to start
    with, and one more: wrk calls ``request`` once before the run to check the script, and
    never sends what it got. A refused refresh leaves the pool short and shows up as a
    non-2xx answer.
    """
    seeded = ", ".join(f'"{token}"' for token in refresh_tokens)
    return f"""
local pool = {{{seeded}}}
request = function()
  local token = table.remove(pool) or "exhausted"
  return wrk.format(nil, nil, nil, "grant_type=refresh_token&refresh_token=" .. token)
end
response = function(status, headers, body)
  local token = string.match(body, '"refresh_token"%s*:%s*"([^"]+)"')
  if token then table.insert(pool, token) end
end
"""


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


@dataclass
class Running:
    """A wrk run in progress; ``result`` waits for it and reads what it printed."""

    process: subprocess.Popen[str]
    scratch: tempfile.TemporaryDirectory[str]

    def result(self) -> Result:
        output, _ = self.process.communicate()
        self.scratch.cleanup()
        if self.process.returncode != 0:
            raise RuntimeError(f"wrk failed:\n{output}")
        return parse(output)


def start(url: str, load: Load, *, seconds: float, connections: int, core: int | None) -> Running:
    scratch = tempfile.TemporaryDirectory()
    script = Path(scratch.name) / "load.lua"
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
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return Running(process, scratch)


def run(url: str, load: Load, *, seconds: float, connections: int, core: int | None) -> Result:
    return start(url, load, seconds=seconds, connections=connections, core=core).result()


def parse(output: str) -> Result:
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

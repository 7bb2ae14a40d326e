"""``python -m bench``: start the servers, drive them with wrk, print one table.

Every figure is measured beside its baseline in the same run, in alternating rounds (A B B A,
repeated), and reported as the median rate and as a ratio to the baseline: this machine is
shared and noisy, so only ratios measured side by side mean anything.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import servers, wrk

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    name: str
    baseline: str
    rate: float
    baseline_rate: float
    p99_ms: float
    target: str = ""
    rounds: list[dict[str, float]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.rate / self.baseline_rate if self.baseline_rate else float("nan")


@dataclass
class Options:
    seconds: float
    rounds: int
    connections: int


def measure(
    options: Options,
    name: str,
    target: tuple[str, wrk.Load],
    baseline_name: str,
    baseline: tuple[str, wrk.Load],
    goal: str = "",
) -> Row:
    """A B B A, ``rounds`` times; medians of each side."""
    sides: dict[str, list[wrk.Result]] = {"a": [], "b": []}
    for _ in range(options.rounds):
        for side in ("a", "b", "b", "a"):
            url, load = baseline if side == "a" else target
            result = wrk.run(
                url, load, seconds=options.seconds, connections=options.connections, core=1
            )
            if result.errors:
                raise RuntimeError(f"{name}: {result.errors} non-2xx answers from {url}")
            sides[side].append(result)
    return Row(
        name=name,
        baseline=baseline_name,
        rate=statistics.median(r.rate for r in sides["b"]),
        baseline_rate=statistics.median(r.rate for r in sides["a"]),
        p99_ms=statistics.median(r.p99_ms for r in sides["b"]),
        target=goal,
        rounds=[
            {"baseline": a.rate, "target": b.rate}
            for a, b in zip(sides["a"], sides["b"], strict=True)
        ],
    )


def _token(url: str, **form: str) -> dict[str, Any]:
    response = httpx.post(f"{url}/oauth2/token", data=form, timeout=30)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def run(options: Options, workdir: Path) -> dict[str, Any]:
    rows: list[Row] = []
    facts: dict[str, Any] = {}
    with servers.gateway(workdir) as gateway:
        facts["gateway_first_start_seconds"] = round(gateway.startup_seconds, 3)
    with servers.gateway(workdir) as gateway:
        facts["gateway_ready_seconds"] = round(gateway.startup_seconds, 3)
        admin = _token(
            gateway.url, grant_type="password", username=servers.ADMIN[0], password=servers.ADMIN[1]
        )
        bearer = ("Authorization", f"Bearer {admin['access_token']}")
        registered = httpx.post(
            f"{gateway.url}/admin/clients",
            headers={"Authorization": bearer[1]},
            json={"name": "bench", "grant_types": ["client_credentials"]},
            timeout=30,
        ).json()
        basic = ("Authorization", _basic(registered["client_id"], registered["client_secret"]))
        form = ("Content-Type", "application/x-www-form-urlencoded")
        bare = (f"{gateway.url}/healthz", wrk.Load())

        rows.append(
            measure(
                options,
                "gateway /users/me (full chain)",
                (f"{gateway.url}/users/me", wrk.Load(headers=(bearer,))),
                "gateway /healthz",
                bare,
                ">= 0.60",
            )
        )
        rows.append(
            measure(
                options,
                "forward-auth /auth/verify",
                (f"{gateway.url}/auth/verify", wrk.Load(headers=(bearer,))),
                "gateway /healthz",
                bare,
                ">= 0.55",
            )
        )
        introspect = wrk.Load("POST", (basic, form), "token=" + admin["access_token"])
        rows.append(
            measure(
                options,
                "introspection",
                (f"{gateway.url}/oauth2/introspect", introspect),
                "gateway /healthz",
                bare,
                ">= 5000/s",
            )
        )
        grant = wrk.Load("POST", (basic, form), "grant_type=client_credentials")
        rows.append(
            measure(
                options,
                "client_credentials grant",
                (f"{gateway.url}/oauth2/token", grant),
                "gateway /healthz",
                bare,
                ">= 2000/s",
            )
        )
        with servers.downstream(workdir, gateway.url) as service:
            rows.append(
                measure(
                    options,
                    "downstream guard /me (JWKS cached)",
                    (f"{service.url}/me", wrk.Load(headers=(bearer,))),
                    "downstream /hello",
                    (f"{service.url}/hello", wrk.Load()),
                    ">= 0.65",
                )
            )
            facts["downstream_rss_mb"] = round(service.rss_mb(), 1)
        facts["gateway_rss_mb"] = round(gateway.rss_mb(), 1)
    return {"rows": rows, "facts": facts}


def markdown(rows: list[Row], facts: dict[str, Any], options: Options) -> str:
    lines = [
        f"{options.rounds} x (A B B A) rounds of {options.seconds:g} s, "
        f"{options.connections} connections; server on core 0, wrk on core 1",
        "",
        "| measurement | req/s (median) | baseline (same run) | baseline req/s | ratio "
        "| p99 ms | goal |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.rate:,.0f} | {row.baseline} | {row.baseline_rate:,.0f} "
            f"| {row.ratio:.2f} | {row.p99_ms:.1f} | {row.target} |"
        )
    lines.append("")
    for name, value in facts.items():
        lines.append(f"- {name}: {value}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="A B B A repetitions")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    options = Options(args.seconds, args.rounds, args.connections)
    wrk.require_wrk()
    with tempfile.TemporaryDirectory(prefix="authsvc-bench-") as scratch:
        outcome = run(options, Path(scratch))
    table = markdown(outcome["rows"], outcome["facts"], options)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text(table)
    (RESULTS / "latest.json").write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                },
                "options": asdict(options),
                "rows": [asdict(row) | {"ratio": row.ratio} for row in outcome["rows"]],
                "facts": outcome["facts"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

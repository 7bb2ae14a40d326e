"""``python -m bench``: start the servers, drive them with wrk, print one table.

Every figure is measured beside its baseline in the same run, in alternating rounds (A B B A,
repeated), and reported as the median rate and as a ratio to the baseline: this machine is
shared and noisy, so only ratios measured side by side mean anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import scenarios, wrk
from bench.measure import Options, Row

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("gateway", "es256", "refresh", "logins", "timing", "peers")


def run(options: Options, parts: list[str], cost: int, tries: int, workdir: Path) -> dict[str, Any]:
    rows: list[Row] = []
    facts: dict[str, Any] = {}
    steps: dict[str, Callable[[], list[Row]]] = {
        "gateway": lambda: scenarios.gateway_routes(options, workdir, facts),
        "es256": lambda: scenarios.es256_grants(options, workdir),
        "refresh": lambda: scenarios.refreshes(options, workdir, facts),
        "logins": lambda: scenarios.logins(options, workdir, facts, cost),
        "timing": lambda: scenarios.login_timing(workdir, facts, cost, tries),
        "peers": lambda: scenarios.peers(options, workdir),
    }
    for part in parts:
        rows.extend(steps[part]())
    return {"rows": rows, "facts": facts}


def _number(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "-"
    # Logins run at a few per second: whole numbers would hide what the ratio is made of.
    return f"{value:,.{max(digits, 2 if value < 100 else 0)}f}"


def markdown(rows: list[Row], facts: dict[str, Any], options: Options) -> str:
    lines = [
        f"{options.rounds} x (A B B A) rounds of {options.seconds:g} s, "
        f"{options.connections} connections; server on core 0, wrk on core 1 "
        "(the login storm: server on both cores)",
        "",
        "| measurement | req/s (median) | baseline (same run) | baseline req/s | ratio "
        "| p99 ms | baseline p99 ms | goal |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {_number(row.rate)} | {row.baseline} "
            f"| {_number(row.baseline_rate)} | {row.ratio:.2f} | {_number(row.p99_ms, 1)} "
            f"| {_number(row.baseline_p99_ms, 1)} | {row.goal} |"
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
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, of: {', '.join(PARTS)}",
    )
    parser.add_argument(
        "--bcrypt-cost", type=int, default=12, help="bcrypt cost for the login storm"
    )
    parser.add_argument(
        "--timing-tries",
        type=int,
        default=200,
        help="logins each for an unknown user and a wrong password (the timing part)",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="where latest.json and latest.md go"
    )
    args = parser.parse_args()
    parts = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts: {', '.join(unknown)}")
    options = Options(args.seconds, args.rounds, args.connections)
    wrk.require_wrk()
    with tempfile.TemporaryDirectory(prefix="authsvc-bench-") as scratch:
        outcome = run(options, parts, args.bcrypt_cost, args.timing_tries, Path(scratch))
    table = markdown(outcome["rows"], outcome["facts"], options)
    print(table)
    results: Path = args.results
    results.mkdir(parents=True, exist_ok=True)
    (results / "latest.md").write_text(table)
    (results / "latest.json").write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "options": asdict(options),
                "parts": parts,
                "rows": [asdict(row) | {"ratio": row.ratio} for row in outcome["rows"]],
                "facts": outcome["facts"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

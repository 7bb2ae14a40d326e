"""The benchmark harness keeps working: tiny runs of its gateway, refresh and timing parts.

Timings never go into the suite; this only proves ``python -m bench`` starts its servers,
drives them with wrk and writes its table. Without wrk (Debian package ``wrk``) it skips,
unless ``AUTHSVC_REQUIRE_WRK=1`` (set by ``.ci/run``).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_WRK = os.environ.get("AUTHSVC_REQUIRE_WRK") == "1"


@pytest.fixture
def wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        if REQUIRE_WRK:
            pytest.fail("AUTHSVC_REQUIRE_WRK=1 but wrk is not installed")
        pytest.skip("wrk is not installed (Debian: apt-get install wrk)")
    return found


def run_bench(results: Path, *options: str) -> tuple[str, Any]:
    """``python -m bench`` with these options; it must succeed. Its table and latest.json."""
    command = [sys.executable, "-m", "bench", *options, "--results", str(results)]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, json.loads((results / "latest.json").read_text())


def test_bench_gateway_and_refresh_parts_run_and_write_the_table(wrk: str, tmp_path: Path) -> None:
    printed, outcome = run_bench(
        tmp_path, *"--seconds 1 --rounds 1 --connections 2 --only gateway,refresh".split()
    )

    names = [row["name"] for row in outcome["rows"]]
    assert names[:6] == [
        "gateway /users/me (full chain)",
        "forward-auth /auth/verify",
        "introspection",
        "client_credentials grant (RS256)",
        "downstream guard /me (JWKS cached)",
        "refresh_token grant (SQLite)",
    ]
    assert all(row["rate"] > 0 and row["baseline_rate"] > 0 for row in outcome["rows"])
    assert {"gateway_ready_seconds", "gateway_rss_mb"} <= set(outcome["facts"])
    table = (tmp_path / "latest.md").read_text()
    assert "| gateway /users/me (full chain) |" in table
    assert table == printed.rstrip("\n") + "\n"


def test_bench_timing_part_reports_both_medians_against_one_verify(
    wrk: str, tmp_path: Path
) -> None:
    _, outcome = run_bench(tmp_path, *"--only timing --bcrypt-cost 4 --timing-tries 4".split())

    assert [row["name"] for row in outcome["rows"]] == ["one login at a time, unknown user"]
    facts = outcome["facts"]
    assert facts["login_timing_tries_each"] == 4
    assert facts["login_timing_unknown_user_median_ms"] > 0
    assert facts["login_timing_wrong_password_median_ms"] > 0
    assert facts["login_timing_difference_of_one_verify"] >= 0


def test_bench_logins_part_times_the_bound_before_every_storm(wrk: str, tmp_path: Path) -> None:
    _, outcome = run_bench(
        tmp_path, *"--only logins --bcrypt-cost 4 --seconds 1 --rounds 1".split()
    )

    rows = {row["name"]: row for row in outcome["rows"]}
    assert list(rows) == [
        "password logins, bcrypt cost 4 (storm alone)",
        "password logins, bcrypt cost 4 (during the probe)",
        "/healthz probe during a login storm",
    ]
    # One round (A B B A): two storms beside the probe, then one alone; each with its bound.
    assert len(outcome["facts"]["bcrypt_verify_ms_each_storm"]) == 3
    assert len(rows["password logins, bcrypt cost 4 (during the probe)"]["rounds"]) == 2
    assert len(rows["password logins, bcrypt cost 4 (storm alone)"]["rounds"]) == 1
    assert all(row["rate"] > 0 and row["baseline_rate"] > 0 for row in rows.values())
    # Each storm against its own bound: the ratio is the median of the storms' ratios.
    during = rows["password logins, bcrypt cost 4 (during the probe)"]
    assert during["ratio"] == statistics.median(
        r["target"] / r["baseline"] for r in during["rounds"]
    )

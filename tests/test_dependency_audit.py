"""pip-audit of the environment the tests run in: a known vulnerability that has a fixed
release fails the suite (upgrade, or raise the floor in pyproject.toml). One without a fix yet
is printed, not failed: there is nothing to upgrade to.

It asks PyPI's vulnerability data, so it needs the network: without it the test skips, unless
``AUTHSVC_REQUIRE_AUDIT=1`` (CI sets it) makes that a failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import pytest

REQUIRE_AUDIT = os.environ.get("AUTHSVC_REQUIRE_AUDIT") == "1"


def fixable(report: dict[str, Any]) -> list[str]:
    """``name version: id (fixed in ...)`` for each vulnerability with a fixed release."""
    return [
        f"{dependency['name']} {dependency['version']}: {vuln['id']} "
        f"(fixed in {', '.join(vuln['fix_versions'])})"
        for dependency in report["dependencies"]
        for vuln in dependency.get("vulns", [])
        if vuln["fix_versions"]
    ]


def _pypi_answers() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


def test_fixable_lists_only_vulnerabilities_with_a_fixed_release() -> None:
    report = {
        "dependencies": [
            {"name": "safe", "version": "1.0", "vulns": []},
            {"name": "authsvc", "skip_reason": "editable"},
            {
                "name": "leaky",
                "version": "2.0",
                "vulns": [
                    {"id": "GHSA-fix", "fix_versions": ["2.1", "3.0"]},
                    {"id": "GHSA-nofix", "fix_versions": []},
                ],
            },
        ]
    }

    assert fixable(report) == ["leaky 2.0: GHSA-fix (fixed in 2.1, 3.0)"]


def test_installed_packages_have_no_vulnerability_with_a_fix() -> None:
    if not _pypi_answers():
        if REQUIRE_AUDIT:
            pytest.fail("pypi.org is unreachable and AUTHSVC_REQUIRE_AUDIT=1")
        pytest.skip("pypi.org is unreachable (set AUTHSVC_REQUIRE_AUDIT=1 to fail instead)")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip_audit",
            "--format",
            "json",
            "--progress-spinner",
            "off",
            "--skip-editable",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Exit status 1 means "vulnerabilities found"; the report says which, and whether fixed.
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    unfixed = [
        f"{dependency['name']} {dependency['version']}: {vuln['id']}"
        for dependency in report["dependencies"]
        for vuln in dependency.get("vulns", [])
        if not vuln["fix_versions"]
    ]
    if unfixed:
        print("known vulnerabilities without a fixed release:", *unfixed, sep="\n  ")

    assert fixable(report) == []

"""Liveness (/healthz) and readiness (/readyz) probes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.security.keys import KeySet


def test_healthz_reports_ok(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_with_database_and_key(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "keys": "ok"},
    }


def test_readyz_is_not_cacheable(client: TestClient) -> None:
    assert client.get("/readyz").headers["cache-control"] == "no-store"


def test_app_starts_with_database_unreachable(unreachable_settings: Settings) -> None:
    with TestClient(create_app(unreachable_settings)) as client:
        assert client.get("/healthz").status_code == 200


def test_healthz_is_ok_with_database_unreachable(unreachable_settings: Settings) -> None:
    with TestClient(create_app(unreachable_settings)) as client:
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_503_with_database_unreachable(unreachable_settings: Settings) -> None:
    with TestClient(create_app(unreachable_settings), raise_server_exceptions=False) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "keys": "ok"},
    }


def test_readyz_does_not_leak_database_details(unreachable_settings: Settings) -> None:
    with TestClient(create_app(unreachable_settings), raise_server_exceptions=False) as client:
        text = client.get("/readyz").text

    assert "127.0.0.1" not in text
    assert "nobody" not in text
    assert "no-such-dir" not in text


def test_readyz_is_503_without_signing_key(client: TestClient) -> None:
    client.app.state.ctx.keys.key_set = KeySet(algorithm="RS256", keys=())  # type: ignore[attr-defined]

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "keys": "missing"},
    }


def test_readyz_recovers_when_database_comes_back(
    make_settings: Callable[..., Settings], tmp_path: Path, settings: Settings, migrated: None
) -> None:
    if not settings.is_sqlite:
        pytest.skip("recovery is simulated by creating the missing SQLite directory")
    missing_dir = tmp_path / "later"
    with TestClient(
        create_app(make_settings(database_url=f"sqlite:///{missing_dir}/a.db"))
    ) as client:
        assert client.get("/readyz").status_code == 503
        missing_dir.mkdir()
        assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_need_no_authentication(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert "www-authenticate" not in response.headers

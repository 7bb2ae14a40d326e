"""Headers every answer carries unless its route set its own (``api.security_headers``)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from authsvc.api.security_headers import API_CSP
from tests.helpers import access_token_for, bearer


def assert_hardened(response: Any) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/healthz", "/users/me", "/no/such/path", "/openapi.json"])
def test_api_answers_carry_nosniff_no_referrer_no_store_and_a_strict_csp(
    client: TestClient, path: str
) -> None:
    response = client.get(path)
    assert_hardened(response)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"] == API_CSP


def test_user_data_is_never_stored_by_caches(client: TestClient, user: dict[str, Any]) -> None:
    response = client.get("/users/me", headers=bearer(access_token_for(client, user)))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert_hardened(response)


def test_a_token_response_keeps_its_own_no_store_and_pragma_once(
    client: TestClient, user: dict[str, Any]
) -> None:
    response = client.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": user["username"], "password": "x" * 9},
    )
    assert response.headers.get_list("cache-control") == ["no-store"]
    assert response.headers["pragma"] == "no-cache"
    assert_hardened(response)


def test_the_jwks_keeps_its_own_cache_policy(client: TestClient) -> None:
    response = client.get("/.well-known/jwks.json")
    assert "max-age" in response.headers["cache-control"]
    assert response.headers.get_list("cache-control") == [response.headers["cache-control"]]
    assert response.headers["content-security-policy"] == API_CSP


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/static/swagger-ui.css"])
def test_the_interactive_docs_keep_the_browsers_defaults(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert "content-security-policy" not in response.headers
    assert response.headers.get("cache-control") != "no-store"
    assert_hardened(response)


def test_a_server_error_carries_the_headers_too(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(app, raise_server_exceptions=False) as client:

        async def broken(*args: Any) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(app.state.ctx.introspection_endpoint, "handle", broken)
        response = client.post("/oauth2/introspect", data={"token": "x"})
    assert response.status_code == 500
    assert_hardened(response)
    assert response.headers["content-security-policy"] == API_CSP

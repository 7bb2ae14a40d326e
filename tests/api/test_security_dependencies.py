"""The security dependencies compose: router scopes and route scopes both apply.

The app under test is authsvc's own (``create_app``, so the real lifespan builds the database,
keys and verifier) with an extra ``/reports`` router guarded by ``require_scopes("reports")``,
a write route that adds ``Security(get_current_user, scopes=["reports:write"])``, and a
``/claims`` route that uses ``TokenClaims`` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, FastAPI, Security
from fastapi.testclient import TestClient
from sqlalchemy import event

from authsvc.api.deps import CurrentUser, TokenClaims, get_current_user, require_scopes
from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.db.models import User
from tests.helpers import (
    UNKNOWN_USER,
    USER_PASSWORD,
    assert_insufficient_scope,
    assert_invalid_token,
    assert_not_authenticated,
    bearer,
    password_login,
)

WriteUser = Annotated[User, Security(get_current_user, scopes=["reports:write"])]


@pytest.fixture
def app(settings: Settings, migrated: None) -> FastAPI:
    """Overrides the conftest ``app``, so ``client`` and the login fixtures use this one."""
    application = create_app(settings)
    router = APIRouter(prefix="/reports", dependencies=[require_scopes("reports")])

    @router.get("")
    def read_reports(user: CurrentUser) -> dict[str, str]:
        return {"reader": user.username}

    @router.post("")
    def write_report(user: WriteUser) -> dict[str, str]:
        return {"writer": user.username}

    application.include_router(router)

    @application.get("/claims")
    def read_claims(claims: TokenClaims) -> dict[str, Any]:
        return {"sub": claims.sub, "scopes": sorted(claims.scopes), "username": claims.username}

    return application


def _grant(
    client: TestClient, admin_headers: dict[str, str], user_id: str, scopes: list[str]
) -> None:
    response = client.patch(
        f"/admin/users/{user_id}", headers=admin_headers, json={"scopes": scopes}
    )
    assert response.status_code == 200, response.text
    assert response.json()["scopes"] == sorted(scopes)


@pytest.fixture
def reports_scopes(client: TestClient, admin_headers: dict[str, str]) -> None:
    for name in ("reports", "reports:write"):
        response = client.post(
            "/admin/scopes", headers=admin_headers, json={"name": name, "description": name}
        )
        assert response.status_code == 201, response.text


@pytest.fixture
def granted_user(
    client: TestClient,
    admin_headers: dict[str, str],
    user: dict[str, Any],
    reports_scopes: None,
) -> dict[str, Any]:
    """Alice, holding both ``reports`` and ``reports:write``."""
    _grant(client, admin_headers, user["id"], ["reports", "reports:write"])
    return user


def _headers(client: TestClient, scope: str) -> dict[str, str]:
    token = password_login(client, "alice", USER_PASSWORD, scope=scope)
    assert token["scope"] == scope
    return bearer(token["access_token"])


def _challenge_scopes(header: str) -> list[str]:
    assert header.startswith('Bearer error="insufficient_scope"'), header
    _, _, rest = header.partition(' scope="')
    return rest.rstrip('"').split(" ")


# --- router scope plus route scope ----------------------------------------------------------


def test_token_with_reports_scope_can_use_the_router_level_route(
    client: TestClient, granted_user: dict[str, Any]
) -> None:
    response = client.get("/reports", headers=_headers(client, "reports"))

    assert response.status_code == 200
    assert response.json() == {"reader": "alice"}


def test_token_with_only_reports_scope_is_403_on_the_write_route(
    client: TestClient, granted_user: dict[str, Any]
) -> None:
    response = client.post("/reports", headers=_headers(client, "reports"))

    assert_insufficient_scope(response, "reports:write")


def test_write_route_challenge_names_the_reports_write_scope(
    client: TestClient, granted_user: dict[str, Any]
) -> None:
    response = client.post("/reports", headers=_headers(client, "reports"))

    assert "reports:write" in _challenge_scopes(response.headers["www-authenticate"])
    assert "reports:write" in response.json()["scope"].split(" ")


def test_token_with_both_scopes_can_use_the_write_route(
    client: TestClient, granted_user: dict[str, Any]
) -> None:
    response = client.post("/reports", headers=_headers(client, "reports reports:write"))

    assert response.status_code == 200
    assert response.json() == {"writer": "alice"}


def test_token_with_only_reports_write_scope_is_403_naming_the_router_scope(
    client: TestClient, granted_user: dict[str, Any]
) -> None:
    response = client.post("/reports", headers=_headers(client, "reports:write"))

    assert_insufficient_scope(response, "reports")


def test_token_without_reports_scopes_is_403_on_the_router_level_route(
    client: TestClient, user_headers: dict[str, str], reports_scopes: None
) -> None:
    response = client.get("/reports", headers=user_headers)

    assert_insufficient_scope(response, "reports")


def test_reports_routes_without_token_are_401_with_bare_bearer_challenge(
    client: TestClient,
) -> None:
    for method in ("GET", "POST"):
        assert_not_authenticated(client.request(method, "/reports"))


def test_user_scopes_are_checked_against_current_grants_on_the_write_route(
    client: TestClient, admin_headers: dict[str, str], granted_user: dict[str, Any]
) -> None:
    headers = _headers(client, "reports reports:write")
    assert client.post("/reports", headers=headers).status_code == 200

    _grant(client, admin_headers, granted_user["id"], ["reports"])

    response = client.post("/reports", headers=headers)
    assert response.status_code == 403
    assert "reports:write" in _challenge_scopes(response.headers["www-authenticate"])


def test_revoking_the_write_scope_leaves_the_router_level_route_usable(
    client: TestClient, admin_headers: dict[str, str], granted_user: dict[str, Any]
) -> None:
    headers = _headers(client, "reports reports:write")

    _grant(client, admin_headers, granted_user["id"], ["reports"])

    assert client.get("/reports", headers=headers).status_code == 200


def test_revoking_the_router_scope_makes_the_read_route_403_at_once(
    client: TestClient, admin_headers: dict[str, str], granted_user: dict[str, Any]
) -> None:
    headers = _headers(client, "reports")

    _grant(client, admin_headers, granted_user["id"], ["reports:write"])

    response = client.get("/reports", headers=headers)
    assert_insufficient_scope(response, "reports")


def test_write_route_refuses_a_disabled_user_with_invalid_token(
    client: TestClient, admin_headers: dict[str, str], granted_user: dict[str, Any]
) -> None:
    headers = _headers(client, "reports reports:write")

    client.patch(
        f"/admin/users/{granted_user['id']}", headers=admin_headers, json={"is_active": False}
    )

    assert_invalid_token(client.post("/reports", headers=headers), UNKNOWN_USER)


def test_openapi_lists_both_scopes_for_the_write_route(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/reports"]["post"]

    scopes = {
        scope for requirement in operation["security"] for s in requirement.values() for scope in s
    }
    assert {"reports", "reports:write"} <= scopes


# --- TokenClaims alone ----------------------------------------------------------------------


def test_token_claims_route_returns_the_verified_claims(
    client: TestClient, granted_user: dict[str, Any]
) -> None:
    response = client.get("/claims", headers=_headers(client, "reports"))

    assert response.status_code == 200
    assert response.json() == {
        "sub": granted_user["id"],
        "scopes": ["reports"],
        "username": "alice",
    }


@pytest.fixture
def statements(app: FastAPI, client: TestClient) -> Iterator[list[str]]:
    """SQL statements the app's own engine runs for requests while the test body executes."""
    seen: list[str] = []
    engine = app.state.ctx.engine

    def record(*args: Any) -> None:
        # The audit writer thread flushes earlier requests' events whenever it likes.
        if "audit_events" not in args[2]:
            seen.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_token_claims_route_runs_no_database_query(
    client: TestClient, user_headers: dict[str, str], statements: list[str]
) -> None:
    response = client.get("/claims", headers=user_headers)

    assert response.status_code == 200
    assert statements == []


def test_current_user_route_does_query_the_database(
    client: TestClient, granted_user: dict[str, Any], statements: list[str]
) -> None:
    headers = _headers(client, "reports")
    statements.clear()

    response = client.get("/reports", headers=headers)

    assert response.status_code == 200
    assert statements != []


def test_token_claims_route_still_accepts_the_token_of_a_deleted_user(
    client: TestClient,
    user: dict[str, Any],
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    assert client.delete(f"/admin/users/{user['id']}", headers=admin_headers).status_code == 204

    assert client.get("/claims", headers=user_headers).status_code == 200
    assert client.get("/users/me", headers=user_headers).status_code == 401


def test_token_claims_route_without_token_is_401(client: TestClient) -> None:
    assert_not_authenticated(client.get("/claims"))


def test_token_claims_route_with_a_tampered_token_is_401_invalid_token(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    token = user_headers["Authorization"].removeprefix("Bearer ")
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"

    assert_invalid_token(client.get("/claims", headers=bearer(tampered)))


# --- the rest of authsvc still works in the composed app ------------------------------------


def test_composed_app_keeps_the_authsvc_routes(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    assert client.get("/users/me", headers=user_headers).json()["username"] == "alice"

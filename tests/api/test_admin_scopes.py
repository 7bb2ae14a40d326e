"""``/admin/scopes``: listing and creating the scopes users can be granted."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.helpers import (
    USER_PASSWORD,
    assert_insufficient_scope,
    assert_no_secrets,
    assert_not_authenticated,
    assert_oauth_error,
    password_login,
    token_request,
)

ADMIN_SCOPE = {"name": "admin", "description": "Manage users, scopes and clients"}


def _create(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> httpx2.Response:
    return client.post("/admin/scopes", headers=headers, json=body)


def _scopes(client: TestClient, headers: dict[str, str]) -> list[dict[str, str]]:
    response = client.get("/admin/scopes", headers=headers)
    assert response.status_code == 200
    scopes: list[dict[str, str]] = response.json()
    return scopes


# --- GET /admin/scopes ----------------------------------------------------------------------


def test_list_scopes_includes_the_admin_scope_seeded_by_migration(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert _scopes(client, admin_headers) == [ADMIN_SCOPE]


def test_list_scopes_items_have_only_name_and_description(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    _create(client, admin_headers, {"name": "reports"})

    assert all(set(scope) == {"name", "description"} for scope in _scopes(client, admin_headers))


def test_list_scopes_is_sorted_by_name(client: TestClient, admin_headers: dict[str, str]) -> None:
    for name in ("zeta", "beta", "reports:write"):
        _create(client, admin_headers, {"name": name})

    names = [scope["name"] for scope in _scopes(client, admin_headers)]

    assert names == sorted(names)
    assert set(names) == {"admin", "beta", "reports:write", "zeta"}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_admin_scopes_without_token_is_401_with_bare_bearer_challenge(
    client: TestClient, method: str
) -> None:
    assert_not_authenticated(client.request(method, "/admin/scopes", json={"name": "reports"}))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_admin_scopes_without_admin_scope_is_403_and_creates_nothing(
    client: TestClient, user_headers: dict[str, str], admin_headers: dict[str, str], method: str
) -> None:
    response = client.request(
        method, "/admin/scopes", headers=user_headers, json={"name": "reports"}
    )

    assert_insufficient_scope(response)
    assert _scopes(client, admin_headers) == [ADMIN_SCOPE]


# --- POST /admin/scopes ---------------------------------------------------------------------


def test_create_scope_returns_201_with_name_and_description(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = _create(client, admin_headers, {"name": "reports", "description": "Read reports"})

    assert response.status_code == 201
    assert response.json() == {"name": "reports", "description": "Read reports"}


def test_created_scope_appears_in_the_list(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    _create(client, admin_headers, {"name": "reports", "description": "R"})

    assert {"name": "reports", "description": "R"} in _scopes(client, admin_headers)


def test_create_scope_description_defaults_to_empty(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = _create(client, admin_headers, {"name": "reports"})

    assert response.status_code == 201
    assert response.json() == {"name": "reports", "description": ""}


def test_create_scope_with_existing_name_is_409_and_keeps_the_original(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    _create(client, admin_headers, {"name": "reports", "description": "one"})

    response = _create(client, admin_headers, {"name": "reports", "description": "two"})

    assert response.status_code == 409
    assert [s for s in _scopes(client, admin_headers) if s["name"] == "reports"] == [
        {"name": "reports", "description": "one"}
    ]


def test_create_scope_named_admin_is_409(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = _create(client, admin_headers, {"name": "admin", "description": "x"})

    assert response.status_code == 409
    assert _scopes(client, admin_headers) == [ADMIN_SCOPE]


def test_scope_names_are_case_sensitive(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = _create(client, admin_headers, {"name": "Admin"})

    assert response.status_code == 201
    assert [scope["name"] for scope in _scopes(client, admin_headers)] == ["Admin", "admin"]


@pytest.mark.parametrize(
    "name",
    [
        "has space",
        'quo"te',
        "back\\slash",
        "",
        " ",
        "tab\there",
        "newline-at-end\n",
        "new\nline",
        "caf\u00e9",
        "x" * 65,
    ],
    ids=[
        "space",
        "quote",
        "backslash",
        "empty",
        "only-space",
        "tab",
        "trailing-newline",
        "newline",
        "non-ascii",
        "65",
    ],
)
def test_create_scope_with_malformed_name_is_422_and_creates_nothing(
    client: TestClient, admin_headers: dict[str, str], name: str
) -> None:
    response = _create(client, admin_headers, {"name": name})

    assert response.status_code == 422
    assert _scopes(client, admin_headers) == [ADMIN_SCOPE]


@pytest.mark.parametrize(
    "name", ["reports:write", "a", "x" * 64, "https://api.example/read", "!#[]~"]
)
def test_create_scope_accepts_any_rfc6749_scope_token(
    client: TestClient, admin_headers: dict[str, str], name: str
) -> None:
    response = _create(client, admin_headers, {"name": name})

    assert response.status_code == 201
    assert response.json()["name"] == name


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"description": "no name"},
        {"name": "reports", "description": "x" * 256},
        {"name": "reports", "extra": True},
        {"name": 42},
    ],
    ids=["empty", "missing-name", "long-description", "unknown-field", "non-string-name"],
)
def test_create_scope_with_invalid_body_is_422(
    client: TestClient, admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    response = _create(client, admin_headers, body)

    assert response.status_code == 422
    assert _scopes(client, admin_headers) == [ADMIN_SCOPE]


# --- created scopes in use ------------------------------------------------------------------


def test_created_scope_can_be_granted_and_requested_at_login(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    _create(client, admin_headers, {"name": "reports"})
    grant = client.patch(
        f"/admin/users/{user['id']}", headers=admin_headers, json={"scopes": ["reports"]}
    )
    assert grant.status_code == 200

    token = password_login(client, "alice", USER_PASSWORD, scope="reports")

    assert token["scope"] == "reports"


def test_scope_not_granted_to_the_user_is_refused_at_login(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    _create(client, admin_headers, {"name": "reports"})

    response = token_request(client, "alice", USER_PASSWORD, scope="reports")

    assert_oauth_error(response, 400, "invalid_scope", "Scope not allowed: reports")


def test_scope_responses_never_contain_password_material(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    responses = [
        _create(client, admin_headers, {"name": "reports"}),
        client.get("/admin/scopes", headers=admin_headers),
    ]

    for response in responses:
        assert_no_secrets(response)

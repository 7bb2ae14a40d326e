"""``/admin/scopes``: listing and creating the scopes users can be granted."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import USER_PASSWORD, password_login

ADMIN_SCOPE = {"name": "admin", "description": "Manage users, scopes and clients"}
INSUFFICIENT_SCOPE_CHALLENGE = (
    'Bearer error="insufficient_scope", '
    'error_description="The access token does not grant the required scope", '
    'scope="admin"'
)


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
    client.post("/admin/scopes", headers=admin_headers, json={"name": "reports"})

    assert all(set(scope) == {"name", "description"} for scope in _scopes(client, admin_headers))


def test_list_scopes_is_sorted_by_name(client: TestClient, admin_headers: dict[str, str]) -> None:
    for name in ("zeta", "beta", "reports:write"):
        client.post("/admin/scopes", headers=admin_headers, json={"name": name})

    names = [scope["name"] for scope in _scopes(client, admin_headers)]

    assert names == sorted(names)
    assert set(names) == {"admin", "beta", "reports:write", "zeta"}


def test_list_scopes_without_token_is_401(client: TestClient) -> None:
    response = client.get("/admin/scopes")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_list_scopes_without_admin_scope_is_403(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    response = client.get("/admin/scopes", headers=user_headers)

    assert response.status_code == 403
    assert response.headers["www-authenticate"] == INSUFFICIENT_SCOPE_CHALLENGE


# --- POST /admin/scopes ---------------------------------------------------------------------


def test_create_scope_returns_201_with_name_and_description(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        "/admin/scopes",
        headers=admin_headers,
        json={"name": "reports", "description": "Read reports"},
    )

    assert response.status_code == 201
    assert response.json() == {"name": "reports", "description": "Read reports"}


def test_created_scope_appears_in_the_list(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    client.post(
        "/admin/scopes", headers=admin_headers, json={"name": "reports", "description": "R"}
    )

    assert {"name": "reports", "description": "R"} in _scopes(client, admin_headers)


def test_create_scope_description_defaults_to_empty(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post("/admin/scopes", headers=admin_headers, json={"name": "reports"})

    assert response.status_code == 201
    assert response.json() == {"name": "reports", "description": ""}


def test_create_scope_with_existing_name_is_409_and_keeps_the_original(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    client.post(
        "/admin/scopes", headers=admin_headers, json={"name": "reports", "description": "one"}
    )

    response = client.post(
        "/admin/scopes", headers=admin_headers, json={"name": "reports", "description": "two"}
    )

    assert response.status_code == 409
    assert [s for s in _scopes(client, admin_headers) if s["name"] == "reports"] == [
        {"name": "reports", "description": "one"}
    ]


def test_create_scope_named_admin_is_409(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = client.post(
        "/admin/scopes", headers=admin_headers, json={"name": "admin", "description": "x"}
    )

    assert response.status_code == 409
    assert _scopes(client, admin_headers) == [ADMIN_SCOPE]


def test_scope_names_are_case_sensitive(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = client.post("/admin/scopes", headers=admin_headers, json={"name": "Admin"})

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
        "new\nline",
        "caf\u00e9",
        "x" * 65,
    ],
    ids=["space", "quote", "backslash", "empty", "only-space", "tab", "newline", "non-ascii", "65"],
)
def test_create_scope_with_malformed_name_is_422_and_creates_nothing(
    client: TestClient, admin_headers: dict[str, str], name: str
) -> None:
    response = client.post("/admin/scopes", headers=admin_headers, json={"name": name})

    assert response.status_code == 422
    assert _scopes(client, admin_headers) == [ADMIN_SCOPE]


@pytest.mark.parametrize(
    "name", ["reports:write", "a", "x" * 64, "https://api.example/read", "!#[]~"]
)
def test_create_scope_accepts_any_rfc6749_scope_token(
    client: TestClient, admin_headers: dict[str, str], name: str
) -> None:
    response = client.post("/admin/scopes", headers=admin_headers, json={"name": name})

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
    response = client.post("/admin/scopes", headers=admin_headers, json=body)

    assert response.status_code == 422
    assert _scopes(client, admin_headers) == [ADMIN_SCOPE]


def test_create_scope_without_token_is_401(client: TestClient) -> None:
    response = client.post("/admin/scopes", json={"name": "reports"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_create_scope_without_admin_scope_is_403_and_creates_nothing(
    client: TestClient, user_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    response = client.post("/admin/scopes", headers=user_headers, json={"name": "reports"})

    assert response.status_code == 403
    assert response.headers["www-authenticate"] == INSUFFICIENT_SCOPE_CHALLENGE
    assert _scopes(client, admin_headers) == [ADMIN_SCOPE]


# --- created scopes in use ------------------------------------------------------------------


def test_created_scope_can_be_granted_and_requested_at_login(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    client.post("/admin/scopes", headers=admin_headers, json={"name": "reports"})
    grant = client.patch(
        f"/admin/users/{user['id']}", headers=admin_headers, json={"scopes": ["reports"]}
    )
    assert grant.status_code == 200

    token = password_login(client, "alice", USER_PASSWORD, scope="reports")

    assert token["scope"] == "reports"


def test_scope_not_granted_to_the_user_is_refused_at_login(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    client.post("/admin/scopes", headers=admin_headers, json={"name": "reports"})

    response = client.post(
        "/oauth2/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": USER_PASSWORD,
            "scope": "reports",
        },
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_scope_responses_never_contain_password_material(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    responses = [
        client.post("/admin/scopes", headers=admin_headers, json={"name": "reports"}),
        client.get("/admin/scopes", headers=admin_headers),
    ]

    for response in responses:
        assert "password_hash" not in response.text
        assert "$bcrypt" not in response.text

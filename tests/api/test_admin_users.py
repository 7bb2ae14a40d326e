"""``/admin/users``: listing, creating, reading, changing and deleting users as an admin."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import USER_PASSWORD, password_login

USER_FIELDS = {
    "id",
    "username",
    "email",
    "full_name",
    "is_active",
    "scopes",
    "created_at",
    "updated_at",
}
INSUFFICIENT_SCOPE_CHALLENGE = (
    'Bearer error="insufficient_scope", '
    'error_description="The access token does not grant the required scope", '
    'scope="admin"'
)
NEW_PASSWORD = "fresh-password-3"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def _bearer(client: TestClient, username: str, password: str) -> dict[str, str]:
    token = password_login(client, username, password)["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _login(client: TestClient, username: str, password: str) -> httpx.Response:
    return client.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": username, "password": password},
    )


def _assert_no_secrets(response: httpx.Response) -> None:
    assert "password_hash" not in response.text
    assert "$bcrypt" not in response.text


def _total(client: TestClient, headers: dict[str, str]) -> int:
    response = client.get("/admin/users", headers=headers)
    assert response.status_code == 200
    total: int = response.json()["total"]
    return total


def _create(client: TestClient, headers: dict[str, str], **fields: Any) -> httpx.Response:
    body = {"username": "bob", "password": USER_PASSWORD, **fields}
    return client.post("/admin/users", headers=headers, json=body)


def _create_scope(client: TestClient, headers: dict[str, str], name: str) -> None:
    response = client.post("/admin/scopes", headers=headers, json={"name": name})
    assert response.status_code == 201, response.text


# --- access control -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/users"),
        ("POST", "/admin/users"),
        ("GET", f"/admin/users/{UNKNOWN_ID}"),
        ("PATCH", f"/admin/users/{UNKNOWN_ID}"),
        ("DELETE", f"/admin/users/{UNKNOWN_ID}"),
    ],
)
def test_admin_users_endpoints_without_token_are_401_with_bare_bearer_challenge(
    client: TestClient, method: str, path: str
) -> None:
    response = client.request(method, path, json={})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/users"),
        ("POST", "/admin/users"),
        ("GET", f"/admin/users/{UNKNOWN_ID}"),
        ("PATCH", f"/admin/users/{UNKNOWN_ID}"),
        ("DELETE", f"/admin/users/{UNKNOWN_ID}"),
    ],
)
def test_admin_users_endpoints_with_non_admin_token_are_403_insufficient_scope(
    client: TestClient, user_headers: dict[str, str], method: str, path: str
) -> None:
    response = client.request(method, path, headers=user_headers, json={})

    assert response.status_code == 403
    assert response.headers["www-authenticate"] == INSUFFICIENT_SCOPE_CHALLENGE
    assert response.json()["error"] == "insufficient_scope"
    assert response.json()["scope"] == "admin"


def test_non_admin_cannot_create_a_user(
    client: TestClient, user_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    _create(client, user_headers, username="mallory", scopes=["admin"])

    assert _total(client, admin_headers) == 2


def test_admin_token_issued_without_admin_scope_is_403(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    _create_scope(client, admin_headers, "profile")
    grant = client.patch(
        f"/admin/users/{admin['id']}",
        headers=admin_headers,
        json={"scopes": ["admin", "profile"]},
    )
    assert grant.status_code == 200
    token = password_login(client, admin["username"], admin["password"], scope="profile")

    response = client.get(
        "/admin/users", headers={"Authorization": f"Bearer {token['access_token']}"}
    )

    assert response.status_code == 403
    assert response.headers["www-authenticate"] == INSUFFICIENT_SCOPE_CHALLENGE


# --- GET /admin/users -----------------------------------------------------------------------


def test_list_users_returns_items_and_total(
    client: TestClient,
    admin: dict[str, Any],
    user: dict[str, Any],
    admin_headers: dict[str, str],
) -> None:
    response = client.get("/admin/users", headers=admin_headers)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "total"}
    assert body["total"] == 2
    assert {item["id"] for item in body["items"]} == {admin["id"], user["id"]}
    assert all(set(item) == USER_FIELDS for item in body["items"])
    _assert_no_secrets(response)


def test_list_users_pages_cover_every_user_exactly_once(
    client: TestClient,
    make_user: Callable[..., dict[str, Any]],
    admin: dict[str, Any],
    admin_headers: dict[str, str],
) -> None:
    created = {make_user(f"user{i}")["id"] for i in range(6)} | {admin["id"]}

    seen: list[str] = []
    for offset in range(0, 7, 3):
        page = client.get(
            "/admin/users", headers=admin_headers, params={"offset": offset, "limit": 3}
        ).json()
        assert page["total"] == 7
        assert len(page["items"]) == min(3, 7 - offset)
        seen.extend(item["id"] for item in page["items"])

    assert len(seen) == 7
    assert set(seen) == created


def test_list_users_offset_past_the_end_returns_no_items_and_the_total(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.get("/admin/users", headers=admin_headers, params={"offset": 100})

    assert response.status_code == 200
    assert response.json() == {"items": [], "total": 1}


@pytest.mark.parametrize("limit", [1, 500])
def test_list_users_accepts_limit_at_its_bounds(
    client: TestClient, admin_headers: dict[str, str], limit: int
) -> None:
    response = client.get("/admin/users", headers=admin_headers, params={"limit": limit})

    assert response.status_code == 200
    assert len(response.json()["items"]) == 1


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": -1},
        {"offset": -1},
        {"offset": "x"},
        {"limit": "many"},
    ],
    ids=lambda params: "-".join(f"{k}={v}" for k, v in params.items()),
)
def test_list_users_rejects_out_of_range_paging(
    client: TestClient, admin_headers: dict[str, str], params: dict[str, Any]
) -> None:
    response = client.get("/admin/users", headers=admin_headers, params=params)

    assert response.status_code == 422


# --- POST /admin/users ----------------------------------------------------------------------


def test_create_user_returns_201_with_the_new_user(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = _create(
        client,
        admin_headers,
        email="bob@example.com",
        full_name="Bob Builder",
        scopes=["admin"],
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["username"] == "bob"
    assert body["email"] == "bob@example.com"
    assert body["full_name"] == "Bob Builder"
    assert body["scopes"] == ["admin"]
    assert body["is_active"] is True
    uuid.UUID(body["id"])
    _assert_no_secrets(response)


def test_create_user_defaults_to_active_without_scopes(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    body = _create(client, admin_headers).json()

    assert body["is_active"] is True
    assert body["scopes"] == []
    assert body["email"] is None
    assert body["full_name"] is None


def test_created_user_can_log_in_with_the_given_password(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _create(client, admin_headers).json()

    headers = _bearer(client, "bob", USER_PASSWORD)

    assert client.get("/users/me", headers=headers).json()["id"] == created["id"]


def test_created_user_is_readable_by_id(client: TestClient, admin_headers: dict[str, str]) -> None:
    created = _create(client, admin_headers, email="bob@example.com").json()

    response = client.get(f"/admin/users/{created['id']}", headers=admin_headers)

    assert response.status_code == 200
    assert response.json() == created


def test_create_inactive_user_cannot_log_in(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert _create(client, admin_headers, is_active=False).status_code == 201

    response = _login(client, "bob", USER_PASSWORD)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_create_user_keeps_the_spelling_of_the_username(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = _create(client, admin_headers, username="Bob.Smith")

    assert response.status_code == 201
    assert response.json()["username"] == "Bob.Smith"


def test_create_user_with_an_existing_username_is_409(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    response = _create(client, admin_headers, username="alice")

    assert response.status_code == 409
    assert _total(client, admin_headers) == 2


@pytest.mark.parametrize(
    ("first", "second"), [("Bob", "bob"), ("bob", "BOB"), ("straße", "STRASSE")]
)
def test_create_user_duplicate_check_ignores_case(
    client: TestClient, admin_headers: dict[str, str], first: str, second: str
) -> None:
    assert _create(client, admin_headers, username=first).status_code == 201

    response = _create(client, admin_headers, username=second)

    assert response.status_code == 409
    assert _total(client, admin_headers) == 2


def test_create_user_with_unknown_scope_is_422_and_creates_nothing(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = _create(client, admin_headers, scopes=["admin", "no-such-scope"])

    assert response.status_code == 422
    assert "no-such-scope" in response.json()["detail"]
    assert _total(client, admin_headers) == 1


def test_create_user_after_unknown_scope_failure_can_reuse_the_username(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    _create(client, admin_headers, scopes=["no-such-scope"])

    response = _create(client, admin_headers, scopes=["admin"])

    assert response.status_code == 201
    assert response.json()["scopes"] == ["admin"]


@pytest.mark.parametrize("email", ["not-an-email", "bob@", "@example.com", ""])
def test_create_user_with_invalid_email_is_422(
    client: TestClient, admin_headers: dict[str, str], email: str
) -> None:
    response = _create(client, admin_headers, email=email)

    assert response.status_code == 422
    assert _total(client, admin_headers) == 1


@pytest.mark.parametrize("length", [0, 7, 129])
def test_create_user_with_password_outside_policy_is_422(
    client: TestClient, admin_headers: dict[str, str], length: int
) -> None:
    response = _create(client, admin_headers, password="p" * length)

    assert response.status_code == 422
    assert _total(client, admin_headers) == 1


@pytest.mark.parametrize("username", ["", "has space", "semi;colon", "x" * 151, "quote'd"])
def test_create_user_with_invalid_username_is_422(
    client: TestClient, admin_headers: dict[str, str], username: str
) -> None:
    response = _create(client, admin_headers, username=username)

    assert response.status_code == 422
    assert _total(client, admin_headers) == 1


@pytest.mark.parametrize("scope", ["has space", 'quo"te', "back\\slash", ""])
def test_create_user_with_malformed_scope_name_is_422(
    client: TestClient, admin_headers: dict[str, str], scope: str
) -> None:
    response = _create(client, admin_headers, scopes=[scope])

    assert response.status_code == 422
    assert _total(client, admin_headers) == 1


@pytest.mark.parametrize(
    "extra",
    [{"is_admin": True}, {"password_hash": "$2b$04$x"}, {"id": UNKNOWN_ID}],
    ids=lambda extra: next(iter(extra)),
)
def test_create_user_with_unknown_field_is_422(
    client: TestClient, admin_headers: dict[str, str], extra: dict[str, Any]
) -> None:
    response = _create(client, admin_headers, **extra)

    assert response.status_code == 422
    assert _total(client, admin_headers) == 1


@pytest.mark.parametrize("missing", ["username", "password"])
def test_create_user_without_a_required_field_is_422(
    client: TestClient, admin_headers: dict[str, str], missing: str
) -> None:
    body = {"username": "bob", "password": USER_PASSWORD}
    del body[missing]

    response = client.post("/admin/users", headers=admin_headers, json=body)

    assert response.status_code == 422


# --- GET/PATCH/DELETE /admin/users/{id}: unknown and malformed ids ---------------------------


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_unknown_user_id_is_404(
    client: TestClient, admin_headers: dict[str, str], method: str
) -> None:
    response = client.request(method, f"/admin/users/{UNKNOWN_ID}", headers=admin_headers, json={})

    assert response.status_code == 404


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("user_id", ["abc", "123", "00000000-0000-0000-0000"])
def test_malformed_user_id_is_422(
    client: TestClient, admin_headers: dict[str, str], method: str, user_id: str
) -> None:
    response = client.request(method, f"/admin/users/{user_id}", headers=admin_headers, json={})

    assert response.status_code == 422
    assert _total(client, admin_headers) == 1


def test_read_user_returns_the_public_fields(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    response = client.get(f"/admin/users/{user['id']}", headers=admin_headers)

    assert response.status_code == 200
    assert set(response.json()) == USER_FIELDS
    assert response.json()["username"] == "alice"
    _assert_no_secrets(response)


# --- PATCH /admin/users/{id} ----------------------------------------------------------------


def test_patch_user_changes_email_and_full_name(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    response = client.patch(
        f"/admin/users/{user['id']}",
        headers=admin_headers,
        json={"email": "alice@example.com", "full_name": "Alice L."},
    )

    assert response.status_code == 200
    _assert_no_secrets(response)
    again = client.get(f"/admin/users/{user['id']}", headers=admin_headers).json()
    assert again["email"] == "alice@example.com"
    assert again["full_name"] == "Alice L."


def test_patch_user_with_empty_body_changes_nothing(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    before = client.get(f"/admin/users/{user['id']}", headers=admin_headers).json()

    response = client.patch(f"/admin/users/{user['id']}", headers=admin_headers, json={})

    assert response.status_code == 200
    assert response.json()["is_active"] is True
    after = client.get(f"/admin/users/{user['id']}", headers=admin_headers).json()
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }


def test_patch_user_scopes_replaces_the_list(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    for name in ("read", "write", "delete"):
        _create_scope(client, admin_headers, name)
    created = _create(client, admin_headers, scopes=["read", "write"]).json()

    response = client.patch(
        f"/admin/users/{created['id']}", headers=admin_headers, json={"scopes": ["delete"]}
    )

    assert response.status_code == 200
    assert response.json()["scopes"] == ["delete"]
    again = client.get(f"/admin/users/{created['id']}", headers=admin_headers).json()
    assert again["scopes"] == ["delete"]


def test_patch_user_with_empty_scopes_removes_all_grants(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _create(client, admin_headers, scopes=["admin"]).json()

    response = client.patch(
        f"/admin/users/{created['id']}", headers=admin_headers, json={"scopes": []}
    )

    assert response.status_code == 200
    assert client.get(f"/admin/users/{created['id']}", headers=admin_headers).json()["scopes"] == []


def test_patch_user_with_unknown_scope_is_422_and_changes_nothing(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    before = client.get(f"/admin/users/{user['id']}", headers=admin_headers).json()

    response = client.patch(
        f"/admin/users/{user['id']}",
        headers=admin_headers,
        json={"email": "alice@example.com", "scopes": ["admin", "no-such-scope"]},
    )

    assert response.status_code == 422
    assert client.get(f"/admin/users/{user['id']}", headers=admin_headers).json() == before


@pytest.mark.parametrize(
    "body",
    [
        {"username": "mallory"},
        {"password_hash": "$2b$04$x"},
        {"id": UNKNOWN_ID},
        {"email": "not-an-email"},
        {"password": "short"},
        {"password": "p" * 129},
        {"is_active": None},
        {"scopes": None},
        {"scopes": ["bad scope"]},
    ],
    ids=lambda body: "-".join(f"{k}={str(v)[:12]}" for k, v in body.items()),
)
def test_patch_user_rejects_an_invalid_body_and_changes_nothing(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    before = client.get(f"/admin/users/{user['id']}", headers=admin_headers).json()

    response = client.patch(f"/admin/users/{user['id']}", headers=admin_headers, json=body)

    assert response.status_code == 422
    assert client.get(f"/admin/users/{user['id']}", headers=admin_headers).json() == before
    assert _login(client, "alice", USER_PASSWORD).status_code == 200


def test_patch_user_password_replaces_the_login_password(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    response = client.patch(
        f"/admin/users/{user['id']}", headers=admin_headers, json={"password": NEW_PASSWORD}
    )

    assert response.status_code == 200
    _assert_no_secrets(response)
    old = _login(client, "alice", USER_PASSWORD)
    assert old.status_code == 400
    assert old.json()["error"] == "invalid_grant"
    assert _login(client, "alice", NEW_PASSWORD).status_code == 200


def test_disabled_user_cannot_log_in(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    response = client.patch(
        f"/admin/users/{user['id']}", headers=admin_headers, json={"is_active": False}
    )
    assert response.status_code == 200
    assert response.json()["is_active"] is False

    login = _login(client, "alice", USER_PASSWORD)

    assert login.status_code == 400
    assert login.json()["error"] == "invalid_grant"


def test_disabled_user_existing_token_is_refused_with_invalid_token(
    client: TestClient,
    user: dict[str, Any],
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    assert client.get("/users/me", headers=user_headers).status_code == 200
    client.patch(f"/admin/users/{user['id']}", headers=admin_headers, json={"is_active": False})

    response = client.get("/users/me", headers=user_headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["error"] == "invalid_token"


def test_re_enabled_user_can_log_in_again(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    client.patch(f"/admin/users/{user['id']}", headers=admin_headers, json={"is_active": False})

    client.patch(f"/admin/users/{user['id']}", headers=admin_headers, json={"is_active": True})

    assert _login(client, "alice", USER_PASSWORD).status_code == 200


def test_removing_admin_scope_makes_the_existing_token_403_at_once(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    other = _create(client, admin_headers, username="second-admin", scopes=["admin"]).json()
    other_headers = _bearer(client, "second-admin", USER_PASSWORD)
    assert client.get("/admin/users", headers=other_headers).status_code == 200

    client.patch(f"/admin/users/{other['id']}", headers=admin_headers, json={"scopes": []})

    response = client.get("/admin/users", headers=other_headers)
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == INSUFFICIENT_SCOPE_CHALLENGE


def test_granting_admin_scope_does_not_upgrade_an_existing_token(
    client: TestClient,
    user: dict[str, Any],
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    client.patch(f"/admin/users/{user['id']}", headers=admin_headers, json={"scopes": ["admin"]})

    assert client.get("/admin/users", headers=user_headers).status_code == 403
    assert (
        client.get("/admin/users", headers=_bearer(client, "alice", USER_PASSWORD)).status_code
        == 200
    )


# --- self-protection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [{"is_active": False}, {"scopes": []}, {"email": "root@example.com", "is_active": False}],
    ids=["disable", "demote", "email+disable"],
)
def test_admin_cannot_disable_or_demote_themselves(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    before = client.get(f"/admin/users/{admin['id']}", headers=admin_headers).json()

    response = client.patch(f"/admin/users/{admin['id']}", headers=admin_headers, json=body)

    assert response.status_code == 409
    assert client.get(f"/admin/users/{admin['id']}", headers=admin_headers).json() == before


def test_admin_cannot_demote_themselves_by_replacing_scopes_without_admin(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    _create_scope(client, admin_headers, "reports")

    response = client.patch(
        f"/admin/users/{admin['id']}", headers=admin_headers, json={"scopes": ["reports"]}
    )

    assert response.status_code == 409
    assert client.get("/users/me", headers=admin_headers).json()["scopes"] == ["admin"]


def test_admin_can_add_scopes_to_themselves_while_keeping_admin(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    _create_scope(client, admin_headers, "reports")

    response = client.patch(
        f"/admin/users/{admin['id']}",
        headers=admin_headers,
        json={"scopes": ["admin", "reports"], "is_active": True},
    )

    assert response.status_code == 200
    assert response.json()["scopes"] == ["admin", "reports"]


def test_admin_can_change_their_own_contact_details(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    response = client.patch(
        f"/admin/users/{admin['id']}",
        headers=admin_headers,
        json={"email": "root@example.com"},
    )

    assert response.status_code == 200
    assert response.json()["email"] == "root@example.com"


def test_admin_cannot_delete_themselves(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    response = client.delete(f"/admin/users/{admin['id']}", headers=admin_headers)

    assert response.status_code == 409
    assert client.get(f"/admin/users/{admin['id']}", headers=admin_headers).status_code == 200


def test_another_admin_can_disable_an_admin(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    _create(client, admin_headers, username="second-admin", scopes=["admin"])
    other_headers = _bearer(client, "second-admin", USER_PASSWORD)

    response = client.patch(
        f"/admin/users/{admin['id']}", headers=other_headers, json={"is_active": False}
    )

    assert response.status_code == 200
    assert client.get("/admin/users", headers=admin_headers).status_code == 401


# --- DELETE /admin/users/{id} ---------------------------------------------------------------


def test_delete_user_returns_204_and_removes_the_user(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    response = client.delete(f"/admin/users/{user['id']}", headers=admin_headers)

    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/admin/users/{user['id']}", headers=admin_headers).status_code == 404
    assert _total(client, admin_headers) == 1


def test_deleted_user_cannot_log_in(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    client.delete(f"/admin/users/{user['id']}", headers=admin_headers)

    response = _login(client, "alice", USER_PASSWORD)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_deleted_user_existing_token_is_refused_with_invalid_token(
    client: TestClient,
    user: dict[str, Any],
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    client.delete(f"/admin/users/{user['id']}", headers=admin_headers)

    response = client.get("/users/me", headers=user_headers)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_deleting_a_user_with_scopes_frees_the_username(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _create(client, admin_headers, scopes=["admin"]).json()
    assert client.delete(f"/admin/users/{created['id']}", headers=admin_headers).status_code == 204

    response = _create(client, admin_headers, username="BOB")

    assert response.status_code == 201
    assert response.json()["scopes"] == []


def test_deleting_twice_is_404_the_second_time(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    client.delete(f"/admin/users/{user['id']}", headers=admin_headers)

    response = client.delete(f"/admin/users/{user['id']}", headers=admin_headers)

    assert response.status_code == 404

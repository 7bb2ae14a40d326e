"""``/admin/users``: listing, creating, reading, changing and deleting users as an admin."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.helpers import (
    UNKNOWN_USER,
    USER_FIELDS,
    USER_PASSWORD,
    assert_insufficient_scope,
    assert_invalid_token,
    assert_no_secrets,
    assert_not_authenticated,
    assert_oauth_error,
    bearer,
    login_headers,
    password_login,
    token_request,
)

NEW_PASSWORD = "fresh-password-3"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
EVERY_ENDPOINT = [
    ("GET", "/admin/users"),
    ("POST", "/admin/users"),
    ("GET", f"/admin/users/{UNKNOWN_ID}"),
    ("PATCH", f"/admin/users/{UNKNOWN_ID}"),
    ("DELETE", f"/admin/users/{UNKNOWN_ID}"),
]


def _total(client: TestClient, headers: dict[str, str]) -> int:
    response = client.get("/admin/users", headers=headers)
    assert response.status_code == 200
    total: int = response.json()["total"]
    return total


def _create(client: TestClient, headers: dict[str, str], **fields: Any) -> httpx2.Response:
    body = {"username": "bob", "password": USER_PASSWORD, **fields}
    return client.post("/admin/users", headers=headers, json=body)


def _read(client: TestClient, headers: dict[str, str], user_id: str) -> dict[str, Any]:
    response = client.get(f"/admin/users/{user_id}", headers=headers)
    assert response.status_code == 200, response.text
    user: dict[str, Any] = response.json()
    return user


def _patch(
    client: TestClient, headers: dict[str, str], user_id: str, body: dict[str, Any]
) -> httpx2.Response:
    return client.patch(f"/admin/users/{user_id}", headers=headers, json=body)


def _assert_patch_changes_nothing(
    client: TestClient, headers: dict[str, str], user_id: str, body: dict[str, Any], status: int
) -> None:
    before = _read(client, headers, user_id)
    response = _patch(client, headers, user_id, body)
    assert response.status_code == status, response.text
    assert _read(client, headers, user_id) == before


def _create_scope(client: TestClient, headers: dict[str, str], name: str) -> None:
    response = client.post("/admin/scopes", headers=headers, json={"name": name})
    assert response.status_code == 201, response.text


def _assert_login_refused(client: TestClient, username: str, password: str) -> None:
    assert_oauth_error(token_request(client, username, password), 400, "invalid_grant")


# --- access control -------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), EVERY_ENDPOINT)
def test_admin_users_endpoints_without_token_are_401_with_bare_bearer_challenge(
    client: TestClient, method: str, path: str
) -> None:
    assert_not_authenticated(client.request(method, path, json={}))


@pytest.mark.parametrize(("method", "path"), EVERY_ENDPOINT)
def test_admin_users_endpoints_with_non_admin_token_are_403_insufficient_scope(
    client: TestClient, user_headers: dict[str, str], method: str, path: str
) -> None:
    assert_insufficient_scope(client.request(method, path, headers=user_headers, json={}))


def test_non_admin_cannot_create_a_user(
    client: TestClient, user_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    _create(client, user_headers, username="mallory", scopes=["admin"])

    assert _total(client, admin_headers) == 2


def test_admin_token_issued_without_admin_scope_is_403(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    _create_scope(client, admin_headers, "profile")
    grant = _patch(client, admin_headers, admin["id"], {"scopes": ["admin", "profile"]})
    assert grant.status_code == 200
    token = password_login(client, admin["username"], admin["password"], scope="profile")

    response = client.get("/admin/users", headers=bearer(token["access_token"]))

    assert_insufficient_scope(response)


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
    assert_no_secrets(response)


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


def _usernames(response: httpx2.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [user["username"] for user in response.json()["items"]]


@pytest.fixture
def searchable(client: TestClient, admin_headers: dict[str, str]) -> None:
    for username, email in [
        ("Carol.Smith", "carol@example.com"),
        ("carlos", "c.diaz@example.org"),
        ("dave_100", "DAVE@Example.com"),
        ("erin", None),
    ]:
        assert _create(client, admin_headers, username=username, email=email).status_code == 201


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("car", ["Carol.Smith", "carlos"]),
        ("CAROL", ["Carol.Smith"]),  # case-insensitive, as logins are
        ("\uff43\uff41\uff52", ["Carol.Smith", "carlos"]),  # full-width folds like a login
        ("example.org", ["carlos"]),  # the e-mail
        ("dave@example", ["dave_100"]),  # e-mail case-insensitive
        ("_1", ["dave_100"]),
        ("l_s", []),  # "_" is literal, not LIKE's any-character ("carlos" would match)
        ("%", []),  # and "%" is no wildcard either (no name holds one)
        ("nobody", []),
        ("   ", ["Carol.Smith", "carlos", "dave_100", "erin", "root-admin"]),  # no filter
    ],
)
def test_list_users_q_keeps_those_whose_username_or_email_contains_it(
    client: TestClient, admin_headers: dict[str, str], searchable: None, q: str, expected: list[str]
) -> None:
    response = client.get("/admin/users", headers=admin_headers, params={"q": q})

    assert sorted(_usernames(response)) == sorted(expected)
    assert response.json()["total"] == len(expected)


def test_list_users_q_pages_and_counts_the_matches_only(
    client: TestClient, admin_headers: dict[str, str], searchable: None
) -> None:
    first = client.get("/admin/users", headers=admin_headers, params={"q": "car", "limit": 1})
    second = client.get(
        "/admin/users", headers=admin_headers, params={"q": "car", "limit": 1, "offset": 1}
    )

    assert first.json()["total"] == second.json()["total"] == 2
    assert _usernames(first) + _usernames(second) == ["Carol.Smith", "carlos"]


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
    assert_no_secrets(response)


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

    headers = login_headers(client, "bob", USER_PASSWORD)

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

    _assert_login_refused(client, "bob", USER_PASSWORD)


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
    assert response.json()["detail"] == [
        {"type": "value_error", "loc": ["body", "scopes"], "msg": "Unknown scope: no-such-scope"}
    ]
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
    assert_no_secrets(response)


# --- PATCH /admin/users/{id} ----------------------------------------------------------------


def test_patch_user_changes_email_and_full_name(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    response = _patch(
        client, admin_headers, user["id"], {"email": "alice@example.com", "full_name": "Alice L."}
    )

    assert response.status_code == 200
    assert_no_secrets(response)
    again = _read(client, admin_headers, user["id"])
    assert again["email"] == "alice@example.com"
    assert again["full_name"] == "Alice L."


def test_patch_user_with_empty_body_changes_nothing(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    before = _read(client, admin_headers, user["id"])

    response = _patch(client, admin_headers, user["id"], {})

    assert response.status_code == 200
    assert response.json()["is_active"] is True
    after = _read(client, admin_headers, user["id"])
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }


def test_patch_user_scopes_replaces_the_list(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    for name in ("read", "write", "delete"):
        _create_scope(client, admin_headers, name)
    created = _create(client, admin_headers, scopes=["read", "write"]).json()

    response = _patch(client, admin_headers, created["id"], {"scopes": ["delete"]})

    assert response.status_code == 200
    assert response.json()["scopes"] == ["delete"]
    again = _read(client, admin_headers, created["id"])
    assert again["scopes"] == ["delete"]


def test_patch_user_with_empty_scopes_removes_all_grants(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _create(client, admin_headers, scopes=["admin"]).json()

    response = _patch(client, admin_headers, created["id"], {"scopes": []})

    assert response.status_code == 200
    assert _read(client, admin_headers, created["id"])["scopes"] == []


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
        {"email": "alice@example.com", "scopes": ["admin", "no-such-scope"]},
    ],
    ids=lambda body: "-".join(f"{k}={str(v)[:12]}" for k, v in body.items()),
)
def test_patch_user_rejects_an_invalid_body_and_changes_nothing(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    _assert_patch_changes_nothing(client, admin_headers, user["id"], body, 422)
    password_login(client, "alice", USER_PASSWORD)


def test_patch_user_password_replaces_the_login_password(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    response = _patch(client, admin_headers, user["id"], {"password": NEW_PASSWORD})

    assert response.status_code == 200
    assert_no_secrets(response)
    _assert_login_refused(client, "alice", USER_PASSWORD)
    password_login(client, "alice", NEW_PASSWORD)


def test_disabled_user_cannot_log_in(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    response = _patch(client, admin_headers, user["id"], {"is_active": False})
    assert response.status_code == 200
    assert response.json()["is_active"] is False

    _assert_login_refused(client, "alice", USER_PASSWORD)


def test_re_enabled_user_can_log_in_again(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    _patch(client, admin_headers, user["id"], {"is_active": False})

    _patch(client, admin_headers, user["id"], {"is_active": True})

    password_login(client, "alice", USER_PASSWORD)


def test_removing_admin_scope_makes_the_existing_token_403_at_once(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    other = _create(client, admin_headers, username="second-admin", scopes=["admin"]).json()
    other_headers = login_headers(client, "second-admin", USER_PASSWORD)
    assert client.get("/admin/users", headers=other_headers).status_code == 200

    _patch(client, admin_headers, other["id"], {"scopes": []})

    assert_insufficient_scope(client.get("/admin/users", headers=other_headers))


def test_granting_admin_scope_does_not_upgrade_an_existing_token(
    client: TestClient,
    user: dict[str, Any],
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    _patch(client, admin_headers, user["id"], {"scopes": ["admin"]})

    assert_insufficient_scope(client.get("/admin/users", headers=user_headers))
    fresh_headers = login_headers(client, "alice", USER_PASSWORD)
    assert client.get("/admin/users", headers=fresh_headers).status_code == 200


# --- self-protection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [{"is_active": False}, {"scopes": []}, {"email": "root@example.com", "is_active": False}],
    ids=["disable", "demote", "email+disable"],
)
def test_admin_cannot_disable_or_demote_themselves(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    _assert_patch_changes_nothing(client, admin_headers, admin["id"], body, 409)


def test_admin_cannot_demote_themselves_by_replacing_scopes_without_admin(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    _create_scope(client, admin_headers, "reports")

    response = _patch(client, admin_headers, admin["id"], {"scopes": ["reports"]})

    assert response.status_code == 409
    assert client.get("/users/me", headers=admin_headers).json()["scopes"] == ["admin"]


def test_admin_can_add_scopes_to_themselves_while_keeping_admin(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    _create_scope(client, admin_headers, "reports")

    response = _patch(
        client, admin_headers, admin["id"], {"scopes": ["admin", "reports"], "is_active": True}
    )

    assert response.status_code == 200
    assert response.json()["scopes"] == ["admin", "reports"]


def test_admin_can_change_their_own_contact_details(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    response = _patch(client, admin_headers, admin["id"], {"email": "root@example.com"})

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
    other_headers = login_headers(client, "second-admin", USER_PASSWORD)

    response = _patch(client, other_headers, admin["id"], {"is_active": False})

    assert response.status_code == 200
    assert_invalid_token(client.get("/admin/users", headers=admin_headers), UNKNOWN_USER)


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

    _assert_login_refused(client, "alice", USER_PASSWORD)


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

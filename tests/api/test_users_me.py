"""``/users/me``: reading and changing one's own profile and password."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.helpers import (
    USER_FIELDS,
    USER_PASSWORD,
    assert_insufficient_scope,
    assert_invalid_token,
    assert_no_secrets,
    assert_not_authenticated,
    assert_oauth_error,
    login_headers,
    token_request,
)

NEW_PASSWORD = "brand-new-password-2"


def _change_password(
    client: TestClient,
    headers: dict[str, str],
    new_password: str = NEW_PASSWORD,
    current_password: str = USER_PASSWORD,
) -> httpx2.Response:
    return client.post(
        "/users/me/password",
        headers=headers,
        json={"current_password": current_password, "new_password": new_password},
    )


def _me(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get("/users/me", headers=headers)
    assert response.status_code == 200, response.text
    me: dict[str, Any] = response.json()
    return me


def _patch_me(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> httpx2.Response:
    return client.patch("/users/me", headers=headers, json=body)


def _login_status(client: TestClient, username: str, password: str) -> int:
    return token_request(client, username, password).status_code


# --- GET /users/me --------------------------------------------------------------------------


def test_get_me_returns_exactly_the_public_profile_fields(
    client: TestClient, user: dict[str, Any], user_headers: dict[str, str]
) -> None:
    response = client.get("/users/me", headers=user_headers)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["id"] == user["id"]
    assert body["username"] == "alice"
    assert body["email"] is None
    assert body["full_name"] is None
    assert body["is_active"] is True
    assert body["scopes"] == []


def test_get_me_never_exposes_the_password_hash(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    response = client.get("/users/me", headers=user_headers)

    assert response.status_code == 200
    assert_no_secrets(response)


def test_get_me_timestamps_are_timezone_aware(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    body = _me(client, user_headers)

    created = datetime.fromisoformat(body["created_at"])
    updated = datetime.fromisoformat(body["updated_at"])
    assert created.utcoffset() is not None
    assert updated.utcoffset() is not None


def test_get_me_lists_the_scopes_granted_to_the_user(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    response = client.get("/users/me", headers=admin_headers)

    assert response.status_code == 200
    assert response.json()["scopes"] == ["admin"]
    assert response.json()["id"] == admin["id"]


def test_get_me_with_garbage_token_is_401_invalid_token(client: TestClient) -> None:
    assert_invalid_token(client.get("/users/me", headers={"Authorization": "Bearer not-a-jwt"}))


# --- PATCH /users/me ------------------------------------------------------------------------


def test_patch_me_updates_email_and_full_name(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    response = _patch_me(
        client, user_headers, {"email": "alice@example.com", "full_name": "Alice Liddell"}
    )

    assert response.status_code == 200
    assert response.json()["email"] == "alice@example.com"
    assert response.json()["full_name"] == "Alice Liddell"
    assert_no_secrets(response)
    again = _me(client, user_headers)
    assert again["email"] == "alice@example.com"
    assert again["full_name"] == "Alice Liddell"


def test_patch_me_leaves_fields_absent_from_the_body_unchanged(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    _patch_me(client, user_headers, {"email": "alice@example.com"})

    response = _patch_me(client, user_headers, {"full_name": "Alice"})

    assert response.status_code == 200
    assert response.json()["email"] == "alice@example.com"
    assert response.json()["full_name"] == "Alice"


def test_patch_me_with_null_email_clears_it(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    _patch_me(client, user_headers, {"email": "alice@example.com"})

    response = _patch_me(client, user_headers, {"email": None})

    assert response.status_code == 200
    assert _me(client, user_headers)["email"] is None


def test_patch_me_strips_whitespace_around_full_name(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    response = _patch_me(client, user_headers, {"full_name": "  Alice  "})

    assert response.status_code == 200
    assert response.json()["full_name"] == "Alice"


def test_patch_me_advances_updated_at_but_not_created_at(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    before = _me(client, user_headers)

    after = _patch_me(client, user_headers, {"full_name": "Alice"}).json()

    assert after["created_at"] == before["created_at"]
    assert datetime.fromisoformat(after["updated_at"]) > datetime.fromisoformat(
        before["updated_at"]
    )


@pytest.mark.parametrize(
    "body",
    [
        {"is_active": False},
        {"scopes": ["admin"]},
        {"username": "mallory"},
        {"password": NEW_PASSWORD},
        {"password_hash": "$2b$04$abcdefghijklmnopqrstuv"},
        {"id": "00000000-0000-0000-0000-000000000000"},
        {"created_at": "2000-01-01T00:00:00Z"},
        {"full_name": "Alice", "scopes": ["admin"]},
    ],
    ids=lambda body: "+".join(body),
)
def test_patch_me_rejects_fields_outside_email_and_full_name_and_changes_nothing(
    client: TestClient, user_headers: dict[str, str], body: dict[str, Any]
) -> None:
    before = _me(client, user_headers)

    response = _patch_me(client, user_headers, body)

    assert response.status_code == 422
    assert _me(client, user_headers) == before


def test_patch_me_cannot_grant_oneself_the_admin_scope(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    _patch_me(client, user_headers, {"scopes": ["admin"]})

    assert_insufficient_scope(client.get("/admin/users", headers=user_headers))


def test_patch_me_rejecting_password_field_keeps_the_old_password(
    client: TestClient, user: dict[str, Any], user_headers: dict[str, str]
) -> None:
    _patch_me(client, user_headers, {"password": NEW_PASSWORD})

    assert _login_status(client, "alice", NEW_PASSWORD) == 400
    assert _login_status(client, "alice", USER_PASSWORD) == 200


@pytest.mark.parametrize("email", ["not-an-email", "alice@", "@example.com", "a b@example.com"])
def test_patch_me_rejects_an_invalid_email(
    client: TestClient, user_headers: dict[str, str], email: str
) -> None:
    response = _patch_me(client, user_headers, {"email": email})

    assert response.status_code == 422
    assert _me(client, user_headers)["email"] is None


def test_patch_me_rejects_a_full_name_longer_than_255_characters(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    response = _patch_me(client, user_headers, {"full_name": "x" * 256})

    assert response.status_code == 422


def test_patch_me_without_token_is_401(client: TestClient, user: dict[str, Any]) -> None:
    assert_not_authenticated(client.patch("/users/me", json={"full_name": "Mallory"}))


# --- POST /users/me/password ----------------------------------------------------------------


def test_change_password_returns_204_with_empty_body(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    response = _change_password(client, user_headers)

    assert response.status_code == 204
    assert response.content == b""


def test_change_password_makes_old_password_fail_with_invalid_grant(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    _change_password(client, user_headers)

    response = token_request(client, "alice", USER_PASSWORD)

    assert_oauth_error(response, 400, "invalid_grant")


def test_change_password_lets_the_new_password_log_in(
    client: TestClient, user: dict[str, Any], user_headers: dict[str, str]
) -> None:
    _change_password(client, user_headers)

    headers = login_headers(client, "alice", NEW_PASSWORD)

    assert client.get("/users/me", headers=headers).json()["id"] == user["id"]


def test_change_password_with_wrong_current_password_is_400_and_changes_nothing(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    response = _change_password(client, user_headers, current_password="wrong-password-9")

    assert response.status_code == 400
    assert _login_status(client, "alice", USER_PASSWORD) == 200
    assert _login_status(client, "alice", NEW_PASSWORD) == 400


@pytest.mark.parametrize("length", [0, 7, 129, 1000])
def test_change_password_rejects_new_password_outside_8_to_128_characters(
    client: TestClient, user_headers: dict[str, str], length: int
) -> None:
    response = _change_password(client, user_headers, "p" * length)

    assert response.status_code == 422
    assert _login_status(client, "alice", USER_PASSWORD) == 200


@pytest.mark.parametrize("length", [8, 128])
def test_change_password_accepts_new_password_at_the_length_limits(
    client: TestClient, user_headers: dict[str, str], length: int
) -> None:
    new_password = "p" * length

    response = _change_password(client, user_headers, new_password)

    assert response.status_code == 204
    assert _login_status(client, "alice", new_password) == 200


@pytest.mark.parametrize(
    "body",
    [
        {"current_password": USER_PASSWORD},
        {"new_password": NEW_PASSWORD},
        {"current_password": USER_PASSWORD, "new_password": NEW_PASSWORD, "username": "bob"},
    ],
    ids=["missing-new", "missing-current", "extra-field"],
)
def test_change_password_rejects_a_malformed_body(
    client: TestClient, user_headers: dict[str, str], body: dict[str, str]
) -> None:
    response = client.post("/users/me/password", headers=user_headers, json=body)

    assert response.status_code == 422
    assert _login_status(client, "alice", USER_PASSWORD) == 200


def test_change_password_without_token_is_401(client: TestClient, user: dict[str, Any]) -> None:
    response = _change_password(client, {})

    assert_not_authenticated(response)
    assert _login_status(client, "alice", USER_PASSWORD) == 200


def test_change_password_only_affects_the_caller(
    client: TestClient,
    make_user: Callable[..., dict[str, Any]],
    user_headers: dict[str, str],
) -> None:
    make_user("bob", "bob-password-1")

    _change_password(client, user_headers)

    assert _login_status(client, "bob", "bob-password-1") == 200

"""Regressions for defects a review found: each test names the input that once misbehaved."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.db.models import User
from authsvc.services.sessions import RefreshTokenError, SessionService
from authsvc.services.users import UserService
from tests.helpers import (
    TOKEN_URL,
    USER_PASSWORD,
    assert_oauth_error,
    login_headers,
    password_login,
)


def test_password_over_4096_characters_is_invalid_grant_not_500(
    client: TestClient, user: dict[str, Any]
) -> None:
    response = client.post(
        TOKEN_URL,
        data={"grant_type": "password", "username": user["username"], "password": "x" * 5000},
    )

    assert_oauth_error(response, 400, "invalid_grant", "Invalid username or password")


def test_non_ascii_basic_credentials_are_invalid_client_not_500(client: TestClient) -> None:
    response = client.post(
        TOKEN_URL,
        content=b"grant_type=client_credentials",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "Basic \u00e9\u00e9\u00e9\u00e9".encode(),
        },
    )

    assert_oauth_error(response, 401, "invalid_client", "Malformed Basic credentials")
    assert response.headers["www-authenticate"] == 'Basic realm="authsvc"'


def test_huge_paging_offset_is_422_not_500(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    for path in ("/admin/users", "/admin/clients"):
        response = client.get(path, params={"offset": 10**20}, headers=admin_headers)
        assert response.status_code == 422, path


def test_username_whose_casefold_outgrows_the_limit_is_422(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        "/admin/users",
        json={"username": "\u00df" * 100, "password": "long-enough-1"},
        headers=admin_headers,
    )

    assert response.status_code == 422
    assert client.get("/admin/users", headers=admin_headers).json()["total"] == 1


def test_two_authorization_headers_are_400_with_bearer_invalid_request(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    response = client.get(
        "/users/me",
        headers=[("Authorization", user_headers["Authorization"])] * 2,
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_request", error_description="More than one Authorization header"'
    )


def test_introspection_does_not_vouch_for_a_scope_the_user_lost(
    client: TestClient, admin_headers: dict[str, str], make_user: Any
) -> None:
    client.post("/admin/scopes", json={"name": "reports"}, headers=admin_headers)
    bob = make_user("bob", USER_PASSWORD, scopes=("reports",))
    tokens = password_login(client, "bob", USER_PASSWORD)
    created = client.post(
        "/admin/clients",
        json={"name": "rs", "grant_types": ["client_credentials"]},
        headers=admin_headers,
    ).json()
    auth = (created["client_id"], created["client_secret"])
    client.patch(f"/admin/users/{bob['id']}", json={"scopes": []}, headers=admin_headers)

    for token in (tokens["access_token"], tokens["refresh_token"]):
        answer = client.post("/oauth2/introspect", data={"token": token}, auth=auth).json()
        assert answer["active"] is True
        assert answer["scope"] == ""


def test_public_client_named_like_the_user_does_not_make_a_client_token(
    client: TestClient, user: dict[str, Any]
) -> None:
    headers = login_headers(client, user["username"], USER_PASSWORD, client_id=user["id"])

    assert client.get("/users/me", headers=headers).status_code == 200


def test_rehash_does_not_overwrite_a_password_changed_meanwhile(
    settings: Settings, user: dict[str, Any]
) -> None:
    engine = build_engine(settings)
    try:
        with build_sessionmaker(engine)() as session:
            stored = UserService(session).set_password_hash(
                uuid.UUID(user["id"]), "new-hash", expected="not-the-current-hash"
            )
            assert stored is False
            current = session.get(User, uuid.UUID(user["id"]))
            assert current is not None and current.password_hash != "new-hash"
    finally:
        engine.dispose()


def test_session_is_not_started_for_a_login_whose_password_was_reset_meanwhile(
    settings: Settings, user: dict[str, Any]
) -> None:
    engine = build_engine(settings)
    try:
        with build_sessionmaker(engine)() as session:
            service = SessionService(session, settings.refresh_token_ttl)
            try:
                service.start(uuid.UUID(user["id"]), "public", [], password_hash="stale")
            except RefreshTokenError:
                pass
            else:
                raise AssertionError("a session was started for a stale password")
            assert service.list_for_user(uuid.UUID(user["id"])) == []
    finally:
        engine.dispose()

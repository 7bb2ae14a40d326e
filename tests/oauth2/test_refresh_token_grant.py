"""POST /oauth2/token with grant_type=refresh_token: rotation, reuse detection (RFC 9700 §4.14),
scope narrowing (RFC 6749 §6), binding to the client and to a live user, and how the tokens
are stored."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from jose import jwt
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.db.models import RefreshFamily, RefreshToken, User, utcnow
from authsvc.services.users import ScopeService
from tests.helpers import (
    ADMIN_PASSWORD,
    TOKEN_URL,
    USER_PASSWORD,
    assert_invalid_token,
    assert_no_store,
    assert_oauth_error,
    bearer,
    password_login,
)

CLIENT_ID = "mobile-app"
INVALID_REFRESH_TOKEN = "Invalid refresh token"
NEW_PASSWORD = "brand-new-password-1"
TOKEN_RESPONSE_FIELDS = {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
URLSAFE_43 = re.compile(r"[A-Za-z0-9_-]{43}")


# --- helpers and fixtures ----------------------------------------------------------------------


def refresh(
    client: TestClient,
    refresh_token: str,
    client_id: str | None = CLIENT_ID,
    **extra: str,
) -> httpx2.Response:
    """POST a refresh_token grant and return the response, whatever it is."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    if client_id is not None:
        data["client_id"] = client_id
    return client.post(TOKEN_URL, data=data)


def refreshed(
    client: TestClient, refresh_token: str, client_id: str | None = CLIENT_ID, **extra: str
) -> dict[str, Any]:
    """A refresh that must succeed; returns the token response body."""
    response = refresh(client, refresh_token, client_id, **extra)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def login(client: TestClient, user: dict[str, Any], **extra: str) -> dict[str, Any]:
    """A password grant for ``user`` as the public client ``CLIENT_ID``."""
    params = {"client_id": CLIENT_ID, **extra}
    return password_login(client, user["username"], user["password"], **params)


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.get_unverified_claims(token)
    return claims


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@pytest.fixture
def engine(settings: Settings, migrated: None) -> Iterator[Engine]:
    engine = build_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return build_sessionmaker(engine)


@pytest.fixture
def reader(
    make_user: Callable[..., dict[str, Any]], sessions: sessionmaker[Session]
) -> dict[str, Any]:
    """A user holding the scopes ``read`` and ``write``."""
    with sessions() as session:
        for name in ("read", "write"):
            ScopeService(session).create(name)
    return make_user("reader", "reader-password-1", scopes=("read", "write"))


def family_of(sessions: sessionmaker[Session], refresh_token: str) -> RefreshFamily:
    with sessions() as session:
        family = session.scalars(
            select(RefreshFamily)
            .join(RefreshToken, RefreshToken.family_id == RefreshFamily.id)
            .where(RefreshToken.token_hash == sha256_hex(refresh_token))
        ).one()
        return family


def create_confidential_client(
    client: TestClient, admin_headers: dict[str, str]
) -> tuple[str, str]:
    response = client.post(
        "/admin/clients",
        json={"name": "Backend", "grant_types": ["password", "refresh_token"]},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return body["client_id"], body["client_secret"]


# --- a successful refresh ----------------------------------------------------------------------


def test_password_grant_returns_a_refresh_token_to_the_public_client(
    client: TestClient, user: dict[str, Any]
) -> None:
    body = login(client, user)

    assert set(body) == TOKEN_RESPONSE_FIELDS
    assert isinstance(body["refresh_token"], str)


def test_refresh_returns_a_bearer_token_response_with_a_new_refresh_token(
    client: TestClient, user: dict[str, Any], settings: Settings
) -> None:
    first = login(client, user)

    response = refresh(client, first["refresh_token"])

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert_no_store(response)
    body = response.json()
    assert set(body) == TOKEN_RESPONSE_FIELDS
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.access_token_ttl
    assert body["scope"] == ""
    assert body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]


def test_refreshed_access_token_names_the_user_and_the_client(
    client: TestClient, user: dict[str, Any]
) -> None:
    body = refreshed(client, login(client, user)["refresh_token"])

    claims = claims_of(body["access_token"])
    assert claims["sub"] == user["id"]
    assert claims["client_id"] == CLIENT_ID
    assert claims["preferred_username"] == "alice"


def test_refreshed_access_token_authenticates_the_user(
    client: TestClient, user: dict[str, Any]
) -> None:
    body = refreshed(client, login(client, user)["refresh_token"])

    response = client.get("/users/me", headers=bearer(body["access_token"]))

    assert response.status_code == 200
    assert response.json()["username"] == "alice"


def test_successor_refresh_token_refreshes_again(client: TestClient, user: dict[str, Any]) -> None:
    second = refreshed(client, login(client, user)["refresh_token"])

    third = refreshed(client, second["refresh_token"])

    assert third["refresh_token"] != second["refresh_token"]


def test_refresh_without_client_id_uses_the_default_public_client(
    client: TestClient, user: dict[str, Any]
) -> None:
    first = password_login(client, user["username"], user["password"])

    body = refreshed(client, first["refresh_token"], client_id=None)

    assert claims_of(body["access_token"])["client_id"] == "public"


def test_rotation_keeps_one_session(
    client: TestClient, user: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    first = login(client, user)

    second = refreshed(client, first["refresh_token"])

    assert family_of(sessions, second["refresh_token"]).id == (
        family_of(sessions, first["refresh_token"]).id
    )
    listed = client.get("/users/me/sessions", headers=bearer(second["access_token"]))
    assert listed.status_code == 200
    assert len(listed.json()) == 1


# --- rotation and reuse detection --------------------------------------------------------------


def test_consumed_refresh_token_is_refused(client: TestClient, user: dict[str, Any]) -> None:
    token = login(client, user)["refresh_token"]
    refreshed(client, token)

    response = refresh(client, token)

    assert_oauth_error(response, 400, "invalid_grant", INVALID_REFRESH_TOKEN)


def test_reusing_a_consumed_refresh_token_revokes_its_successor(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = login(client, user)["refresh_token"]
    successor = refreshed(client, token)["refresh_token"]
    assert_oauth_error(refresh(client, token), 400, "invalid_grant", INVALID_REFRESH_TOKEN)

    response = refresh(client, successor)

    assert_oauth_error(response, 400, "invalid_grant", INVALID_REFRESH_TOKEN)


def test_reusing_a_consumed_refresh_token_revokes_the_whole_family(
    client: TestClient, user: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    token = login(client, user)["refresh_token"]
    second = refreshed(client, token)["refresh_token"]
    third = refreshed(client, second)["refresh_token"]
    assert family_of(sessions, token).revoked_at is None

    assert_oauth_error(refresh(client, token), 400, "invalid_grant", INVALID_REFRESH_TOKEN)

    assert family_of(sessions, third).revoked_at is not None
    for held in (second, third):
        assert_oauth_error(refresh(client, held), 400, "invalid_grant", INVALID_REFRESH_TOKEN)


def test_reuse_in_one_family_leaves_other_sessions_of_the_user_alone(
    client: TestClient, user: dict[str, Any]
) -> None:
    stolen = login(client, user)["refresh_token"]
    other = login(client, user)["refresh_token"]
    refreshed(client, stolen)
    assert_oauth_error(refresh(client, stolen), 400, "invalid_grant", INVALID_REFRESH_TOKEN)

    response = refresh(client, other)

    assert response.status_code == 200, response.text


def test_unknown_refresh_token_is_refused(client: TestClient, user: dict[str, Any]) -> None:
    login(client, user)

    response = refresh(client, base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode())

    assert_oauth_error(response, 400, "invalid_grant", INVALID_REFRESH_TOKEN)


def test_over_long_refresh_token_is_refused(client: TestClient, user: dict[str, Any]) -> None:
    response = refresh(client, "a" * 513)

    assert_oauth_error(response, 400, "invalid_grant", INVALID_REFRESH_TOKEN)


def test_missing_refresh_token_parameter_is_invalid_request(client: TestClient) -> None:
    response = client.post(TOKEN_URL, data={"grant_type": "refresh_token", "client_id": CLIENT_ID})

    assert_oauth_error(response, 400, "invalid_request", "Missing parameter: refresh_token")


def test_empty_refresh_token_parameter_is_invalid_request(client: TestClient) -> None:
    response = refresh(client, "")

    assert_oauth_error(response, 400, "invalid_request", "Missing parameter: refresh_token")


# --- token confusion ---------------------------------------------------------------------------


def test_access_token_is_refused_as_a_refresh_token(
    client: TestClient, user: dict[str, Any]
) -> None:
    access_token = login(client, user)["access_token"]

    response = refresh(client, access_token)

    assert_oauth_error(response, 400, "invalid_grant", INVALID_REFRESH_TOKEN)


def test_refresh_token_is_refused_as_a_bearer_token(
    client: TestClient, user: dict[str, Any]
) -> None:
    refresh_token = login(client, user)["refresh_token"]

    response = client.get("/users/me", headers=bearer(refresh_token))

    assert_invalid_token(response)


def test_refresh_token_used_as_a_bearer_token_stays_usable(
    client: TestClient, user: dict[str, Any]
) -> None:
    refresh_token = login(client, user)["refresh_token"]
    assert_invalid_token(client.get("/users/me", headers=bearer(refresh_token)))

    response = refresh(client, refresh_token)

    assert response.status_code == 200, response.text


# --- scope -------------------------------------------------------------------------------------


def test_refresh_without_scope_keeps_the_granted_scope(
    client: TestClient, reader: dict[str, Any]
) -> None:
    first = login(client, reader)
    assert first["scope"] == "read write"

    body = refreshed(client, first["refresh_token"])

    assert body["scope"] == "read write"
    assert claims_of(body["access_token"])["scope"] == "read write"


def test_refresh_may_narrow_the_scope(client: TestClient, reader: dict[str, Any]) -> None:
    first = login(client, reader)

    body = refreshed(client, first["refresh_token"], scope="read")

    assert body["scope"] == "read"
    assert claims_of(body["access_token"])["scope"] == "read"


def test_refresh_after_narrowing_restores_the_original_scope(
    client: TestClient, reader: dict[str, Any]
) -> None:
    narrowed = refreshed(client, login(client, reader)["refresh_token"], scope="read")

    body = refreshed(client, narrowed["refresh_token"])

    assert body["scope"] == "read write"
    assert claims_of(body["access_token"])["scope"] == "read write"


def test_refresh_may_not_widen_the_scope(client: TestClient, reader: dict[str, Any]) -> None:
    first = login(client, reader, scope="read")
    assert first["scope"] == "read"

    response = refresh(client, first["refresh_token"], scope="read write")

    assert_oauth_error(response, 400, "invalid_scope", "Scope not allowed: write")


def test_refresh_refused_for_a_wider_scope_is_not_consumed_and_adds_no_token(
    client: TestClient, reader: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    first = login(client, reader, scope="read")
    with sessions() as session:
        tokens_before = session.scalar(select(func.count()).select_from(RefreshToken))

    refused = refresh(client, first["refresh_token"], scope="read write")

    assert_oauth_error(refused, 400, "invalid_scope", "Scope not allowed: write")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RefreshToken)) == tokens_before
    assert refresh(client, first["refresh_token"]).status_code == 200


def test_refresh_without_scope_does_not_widen_a_narrow_grant(
    client: TestClient, reader: dict[str, Any]
) -> None:
    first = login(client, reader, scope="read")

    body = refreshed(client, first["refresh_token"])

    assert body["scope"] == "read"


def test_refused_widening_does_not_consume_the_refresh_token(
    client: TestClient, reader: dict[str, Any]
) -> None:
    token = login(client, reader, scope="read")["refresh_token"]
    assert_oauth_error(refresh(client, token, scope="write"), 400, "invalid_scope")

    response = refresh(client, token, scope="read")

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "read"


def test_malformed_scope_on_refresh_is_invalid_scope(
    client: TestClient, reader: dict[str, Any]
) -> None:
    token = login(client, reader)["refresh_token"]

    response = refresh(client, token, scope='read "write"')

    assert_oauth_error(response, 400, "invalid_scope", "The scope parameter is malformed")


def test_refresh_drops_a_scope_the_user_no_longer_holds(
    client: TestClient, reader: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    token = login(client, reader)["refresh_token"]
    demoted = client.patch(
        f"/admin/users/{reader['id']}", json={"scopes": ["read"]}, headers=admin_headers
    )
    assert demoted.status_code == 200, demoted.text

    body = refreshed(client, token)

    assert body["scope"] == "read"
    assert claims_of(body["access_token"])["scope"] == "read"


def test_refresh_may_not_request_a_scope_the_user_no_longer_holds(
    client: TestClient, reader: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    token = login(client, reader)["refresh_token"]
    demoted = client.patch(
        f"/admin/users/{reader['id']}", json={"scopes": ["read"]}, headers=admin_headers
    )
    assert demoted.status_code == 200, demoted.text

    response = refresh(client, token, scope="write")

    assert_oauth_error(response, 400, "invalid_scope", "Scope not allowed: write")


# --- binding to the client ---------------------------------------------------------------------


def test_refresh_token_presented_by_another_client_is_refused(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = login(client, user)["refresh_token"]

    response = refresh(client, token, client_id="other-app")

    assert_oauth_error(response, 400, "invalid_grant", INVALID_REFRESH_TOKEN)


def test_refresh_token_of_a_named_client_is_refused_to_the_default_client(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = login(client, user)["refresh_token"]

    response = refresh(client, token, client_id=None)

    assert_oauth_error(response, 400, "invalid_grant", INVALID_REFRESH_TOKEN)


def test_refresh_token_presented_by_another_client_still_works_for_its_own(
    client: TestClient, user: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    token = login(client, user)["refresh_token"]
    assert_oauth_error(refresh(client, token, client_id="other-app"), 400, "invalid_grant")

    response = refresh(client, token)

    assert response.status_code == 200, response.text
    assert family_of(sessions, token).revoked_at is None


def test_consumed_refresh_token_presented_by_another_client_does_not_revoke_the_family(
    client: TestClient, user: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    token = login(client, user)["refresh_token"]
    successor = refreshed(client, token)["refresh_token"]

    assert_oauth_error(refresh(client, token, client_id="other-app"), 400, "invalid_grant")

    assert family_of(sessions, token).revoked_at is None
    assert refresh(client, successor).status_code == 200


def test_confidential_client_refreshes_with_basic_authentication(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    client_id, secret = create_confidential_client(client, admin_headers)
    first = password_login(
        client, "alice", USER_PASSWORD, client_id=client_id, client_secret=secret
    )

    response = client.post(
        TOKEN_URL,
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=(client_id, secret),
    )

    assert response.status_code == 200, response.text
    assert claims_of(response.json()["access_token"])["client_id"] == client_id


def test_confidential_client_refresh_without_its_secret_is_invalid_client(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    client_id, secret = create_confidential_client(client, admin_headers)
    first = password_login(
        client, "alice", USER_PASSWORD, client_id=client_id, client_secret=secret
    )

    response = refresh(client, first["refresh_token"], client_id=client_id)

    assert_oauth_error(response, 401, "invalid_client")


def test_confidential_client_refresh_token_is_refused_to_a_public_client(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    client_id, secret = create_confidential_client(client, admin_headers)
    first = password_login(
        client, "alice", USER_PASSWORD, client_id=client_id, client_secret=secret
    )

    response = refresh(client, first["refresh_token"], client_id=CLIENT_ID)

    assert_oauth_error(response, 400, "invalid_grant", INVALID_REFRESH_TOKEN)


# --- binding to a live user --------------------------------------------------------------------


def test_refresh_for_a_user_disabled_in_the_database_is_refused(
    client: TestClient, user: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    token = login(client, user)["refresh_token"]
    with sessions() as session:
        session.execute(
            update(User).where(User.id == uuid.UUID(user["id"])).values(is_active=False)
        )
        session.commit()

    response = refresh(client, token)

    assert_oauth_error(response, 400, "invalid_grant", INVALID_REFRESH_TOKEN)


def test_refresh_refused_for_a_disabled_user_is_not_consumed(
    client: TestClient, user: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    token = login(client, user)["refresh_token"]
    with sessions() as session:
        user_id = uuid.UUID(user["id"])
        session.execute(update(User).where(User.id == user_id).values(is_active=False))
        session.commit()
    assert_oauth_error(refresh(client, token), 400, "invalid_grant")
    with sessions() as session:
        session.execute(update(User).where(User.id == user_id).values(is_active=True))
        session.commit()

    response = refresh(client, token)

    assert response.status_code == 200, response.text


def test_disabling_the_user_revokes_their_refresh_tokens(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    tokens = [login(client, user)["refresh_token"] for _ in range(2)]
    disabled = client.patch(
        f"/admin/users/{user['id']}", json={"is_active": False}, headers=admin_headers
    )
    assert disabled.status_code == 200, disabled.text
    enabled = client.patch(
        f"/admin/users/{user['id']}", json={"is_active": True}, headers=admin_headers
    )
    assert enabled.status_code == 200, enabled.text

    for token in tokens:
        assert_oauth_error(refresh(client, token), 400, "invalid_grant", INVALID_REFRESH_TOKEN)


def test_changing_ones_password_revokes_every_refresh_token(
    client: TestClient, user: dict[str, Any]
) -> None:
    first = login(client, user)
    second = login(client, user)
    changed = client.post(
        "/users/me/password",
        json={"current_password": USER_PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(first["access_token"]),
    )
    assert changed.status_code == 204, changed.text

    for token in (first["refresh_token"], second["refresh_token"]):
        assert_oauth_error(refresh(client, token), 400, "invalid_grant", INVALID_REFRESH_TOKEN)


def test_admin_password_reset_revokes_every_refresh_token(
    client: TestClient, user: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    tokens = [login(client, user)["refresh_token"] for _ in range(2)]

    reset = client.patch(
        f"/admin/users/{user['id']}", json={"password": NEW_PASSWORD}, headers=admin_headers
    )

    assert reset.status_code == 200, reset.text
    for token in tokens:
        assert_oauth_error(refresh(client, token), 400, "invalid_grant", INVALID_REFRESH_TOKEN)


def test_password_change_of_one_user_leaves_another_users_refresh_token_alone(
    client: TestClient,
    user: dict[str, Any],
    admin: dict[str, Any],
    admin_headers: dict[str, str],
) -> None:
    admins_token = password_login(client, admin["username"], ADMIN_PASSWORD)["refresh_token"]
    reset = client.patch(
        f"/admin/users/{user['id']}", json={"password": NEW_PASSWORD}, headers=admin_headers
    )
    assert reset.status_code == 200, reset.text

    response = refresh(client, admins_token, client_id=None)

    assert response.status_code == 200, response.text


def test_refresh_token_issued_after_a_password_change_works(
    client: TestClient, user: dict[str, Any]
) -> None:
    first = login(client, user)
    changed = client.post(
        "/users/me/password",
        json={"current_password": USER_PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(first["access_token"]),
    )
    assert changed.status_code == 204, changed.text
    token = login(client, {**user, "password": NEW_PASSWORD})["refresh_token"]

    response = refresh(client, token)

    assert response.status_code == 200, response.text


# --- expiry ------------------------------------------------------------------------------------


def test_expired_refresh_token_is_refused(
    client: TestClient, user: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    token = login(client, user)["refresh_token"]
    with sessions() as session:
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == sha256_hex(token))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()

    response = refresh(client, token)

    assert_oauth_error(response, 400, "invalid_grant", INVALID_REFRESH_TOKEN)


def test_refresh_token_expires_after_the_configured_ttl(
    client: TestClient, user: dict[str, Any], settings: Settings, sessions: sessionmaker[Session]
) -> None:
    before = utcnow()
    token = login(client, user)["refresh_token"]
    after = utcnow()

    with sessions() as session:
        expires_at = session.scalars(
            select(RefreshToken.expires_at).where(RefreshToken.token_hash == sha256_hex(token))
        ).one()

    ttl = timedelta(seconds=settings.refresh_token_ttl)
    assert before + ttl <= expires_at <= after + ttl


# --- what is stored, and what the client holds -------------------------------------------------


def test_refresh_token_is_43_url_safe_characters(client: TestClient, user: dict[str, Any]) -> None:
    token = login(client, user)["refresh_token"]

    assert URLSAFE_43.fullmatch(token)


def test_refresh_token_carries_256_random_bits(client: TestClient, user: dict[str, Any]) -> None:
    token = login(client, user)["refresh_token"]

    assert len(base64.urlsafe_b64decode(token + "=")) == 32


def test_refresh_tokens_are_all_different(client: TestClient, user: dict[str, Any]) -> None:
    first = login(client, user)["refresh_token"]
    tokens = [first, *(login(client, user)["refresh_token"] for _ in range(4))]
    tokens.append(refreshed(client, first)["refresh_token"])

    assert len(set(tokens)) == len(tokens)
    assert all(URLSAFE_43.fullmatch(token) for token in tokens)


def test_stored_refresh_token_is_not_the_token_the_client_holds(
    client: TestClient, user: dict[str, Any], engine: Engine
) -> None:
    first = login(client, user)["refresh_token"]
    second = refreshed(client, first)["refresh_token"]

    with engine.connect() as connection:
        rows = [
            *connection.execute(select(RefreshToken.__table__)).mappings(),
            *connection.execute(select(RefreshFamily.__table__)).mappings(),
        ]

    stored = [str(value) for row in rows for value in row.values()]
    assert len(rows) == 3
    for token in (first, second):
        assert not any(token in value for value in stored)


def test_stored_token_hash_is_the_sha256_hex_of_the_token(
    client: TestClient, user: dict[str, Any], engine: Engine
) -> None:
    first = login(client, user)["refresh_token"]
    second = refreshed(client, first)["refresh_token"]

    with engine.connect() as connection:
        hashes = set(connection.scalars(select(RefreshToken.token_hash)))

    assert hashes == {sha256_hex(first), sha256_hex(second)}
    assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in hashes)


def test_presented_refresh_token_is_marked_consumed_and_its_successor_is_not(
    client: TestClient, user: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    first = login(client, user)["refresh_token"]
    second = refreshed(client, first)["refresh_token"]

    with sessions() as session:
        query = select(RefreshToken.token_hash, RefreshToken.consumed_at)
        consumed = {row.token_hash: row.consumed_at for row in session.execute(query)}

    assert consumed[sha256_hex(first)] is not None
    assert consumed[sha256_hex(second)] is None

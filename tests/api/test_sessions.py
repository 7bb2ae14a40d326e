"""Sessions (refresh token families): listing and ending one's own, the admin's session routes,
revoke-all with its access-token cutoff, and the purge of expired rows."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.db.models import RefreshFamily, RefreshToken, RevokedAccessToken, User
from authsvc.oauth2.token_checks import REVOKED
from authsvc.services.sessions import SessionService, cutoff_timestamp, hash_refresh_token
from tests.helpers import (
    TOKEN_URL,
    Forger,
    alice_tokens,
    assert_insufficient_scope,
    assert_invalid_token,
    assert_not_authenticated,
    assert_oauth_error,
    bearer,
    password_login,
    refresh_grant,
)

SESSION_FIELDS = {"id", "client_id", "created_at", "last_used_at", "expires_at"}
BOB_PASSWORD = "bob-password-1"
INVALID_REFRESH_TOKEN = "Invalid refresh token"
SESSION_NOT_FOUND = {"detail": "Session not found"}
USER_NOT_FOUND = {"detail": "User not found"}
PURGE_DEADLINE = 15.0


def current_hash(session: Session, user_id: uuid.UUID) -> str:
    """The user's stored hash: SessionService.start re-checks it to catch a racing reset."""
    user = session.get(User, user_id)
    assert user is not None
    return user.password_hash


def my_sessions(client: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get("/users/me/sessions", headers=headers)
    assert response.status_code == 200, response.text
    sessions: list[dict[str, Any]] = response.json()
    return sessions


def session_ids(client: TestClient, headers: dict[str, str]) -> list[str]:
    return [entry["id"] for entry in my_sessions(client, headers)]


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, value
    return parsed


def assert_invalid_refresh(response: httpx2.Response) -> None:
    assert_oauth_error(response, 400, "invalid_grant", INVALID_REFRESH_TOKEN)


@pytest.fixture
def sessions(settings: Settings, migrated: None) -> Iterator[sessionmaker[Session]]:
    engine = build_engine(settings)
    yield build_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def bob(make_user: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return make_user("bob", BOB_PASSWORD)


def family_id_of(sessions: sessionmaker[Session], refresh_token: str) -> uuid.UUID:
    with sessions() as session:
        family_id = session.scalar(
            select(RefreshToken.family_id).where(
                RefreshToken.token_hash == hash_refresh_token(refresh_token)
            )
        )
    assert family_id is not None
    return family_id


# --- GET /users/me/sessions ------------------------------------------------------------------


def test_list_my_sessions_returns_exactly_the_session_fields(
    client: TestClient, user: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    tokens = alice_tokens(client)

    [entry] = my_sessions(client, bearer(tokens["access_token"]))

    assert set(entry) == SESSION_FIELDS
    assert uuid.UUID(entry["id"]) == family_id_of(sessions, tokens["refresh_token"])
    assert entry["client_id"] == "public"


def test_new_session_was_last_used_when_created_and_expires_after_the_refresh_ttl(
    client: TestClient, user: dict[str, Any], settings: Settings
) -> None:
    before = datetime.now(UTC)
    tokens = alice_tokens(client)
    after = datetime.now(UTC)

    [entry] = my_sessions(client, bearer(tokens["access_token"]))

    created_at = parse_time(entry["created_at"])
    assert before <= created_at <= after
    assert parse_time(entry["last_used_at"]) == created_at
    assert parse_time(entry["expires_at"]) - created_at == timedelta(
        seconds=settings.refresh_token_ttl
    )


def test_each_password_login_starts_a_session_listed_newest_first(
    client: TestClient, user: dict[str, Any]
) -> None:
    alice_tokens(client, client_id="mobile-app")
    headers = bearer(alice_tokens(client, client_id="web-app")["access_token"])

    entries = my_sessions(client, headers)

    assert [entry["client_id"] for entry in entries] == ["web-app", "mobile-app"]


def test_list_my_sessions_excludes_other_users_sessions(
    client: TestClient, user: dict[str, Any], bob: dict[str, Any]
) -> None:
    password_login(client, "bob", BOB_PASSWORD)
    tokens = alice_tokens(client)

    entries = my_sessions(client, bearer(tokens["access_token"]))

    assert len(entries) == 1


def test_list_my_sessions_excludes_expired_sessions(
    client: TestClient, user: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    expired = alice_tokens(client)["refresh_token"]
    headers = bearer(alice_tokens(client)["access_token"])
    expired_id = family_id_of(sessions, expired)
    with sessions() as session:
        session.execute(
            update(RefreshFamily)
            .where(RefreshFamily.id == expired_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        session.commit()

    ids = session_ids(client, headers)

    assert len(ids) == 1
    assert str(expired_id) not in ids


def test_refresh_keeps_the_session_and_moves_its_last_use_and_expiry(
    client: TestClient, user: dict[str, Any]
) -> None:
    tokens = alice_tokens(client)
    headers = bearer(tokens["access_token"])
    [before] = my_sessions(client, headers)

    assert refresh_grant(client, tokens["refresh_token"]).status_code == 200

    [after] = my_sessions(client, headers)
    assert after["id"] == before["id"]
    assert after["created_at"] == before["created_at"]
    assert parse_time(after["last_used_at"]) > parse_time(before["last_used_at"])
    assert parse_time(after["expires_at"]) > parse_time(before["expires_at"])


def test_list_my_sessions_without_token_is_401(client: TestClient) -> None:
    assert_not_authenticated(client.get("/users/me/sessions"))


def test_list_my_sessions_with_a_client_credentials_token_is_401_invalid_token(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = client.post(
        "/admin/clients",
        headers=admin_headers,
        json={"name": "svc", "grant_types": ["client_credentials"]},
    ).json()
    token = client.post(
        TOKEN_URL,
        data={
            "grant_type": "client_credentials",
            "client_id": created["client_id"],
            "client_secret": created["client_secret"],
        },
    ).json()["access_token"]

    assert_invalid_token(client.get("/users/me/sessions", headers=bearer(token)))


# --- DELETE /users/me/sessions/{id} ----------------------------------------------------------


def test_delete_my_session_is_204_with_an_empty_body(
    client: TestClient, user: dict[str, Any]
) -> None:
    headers = bearer(alice_tokens(client)["access_token"])
    [session_id] = session_ids(client, headers)

    response = client.delete(f"/users/me/sessions/{session_id}", headers=headers)

    assert response.status_code == 204
    assert response.content == b""


def test_deleted_session_refresh_token_is_refused(client: TestClient, user: dict[str, Any]) -> None:
    tokens = alice_tokens(client)
    headers = bearer(tokens["access_token"])
    [session_id] = session_ids(client, headers)

    assert client.delete(f"/users/me/sessions/{session_id}", headers=headers).status_code == 204

    assert_invalid_refresh(refresh_grant(client, tokens["refresh_token"]))


def test_deleted_session_leaves_the_list_and_other_sessions_stay(
    client: TestClient, user: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    kept = alice_tokens(client)
    ended = alice_tokens(client)
    headers = bearer(ended["access_token"])
    ended_id = family_id_of(sessions, ended["refresh_token"])

    assert client.delete(f"/users/me/sessions/{ended_id}", headers=headers).status_code == 204

    assert session_ids(client, headers) == [str(family_id_of(sessions, kept["refresh_token"]))]
    assert refresh_grant(client, kept["refresh_token"]).status_code == 200


def test_deleting_a_session_leaves_its_access_token_working_until_it_expires(
    client: TestClient, user: dict[str, Any]
) -> None:
    headers = bearer(alice_tokens(client)["access_token"])
    [session_id] = session_ids(client, headers)

    assert client.delete(f"/users/me/sessions/{session_id}", headers=headers).status_code == 204

    assert client.get("/users/me", headers=headers).status_code == 200


def test_delete_unknown_session_is_404(client: TestClient, user: dict[str, Any]) -> None:
    headers = bearer(alice_tokens(client)["access_token"])

    response = client.delete(f"/users/me/sessions/{uuid.uuid4()}", headers=headers)

    assert response.status_code == 404
    assert response.json() == SESSION_NOT_FOUND


def test_delete_another_users_session_is_404_and_leaves_it_working(
    client: TestClient, user: dict[str, Any], bob: dict[str, Any]
) -> None:
    bobs = password_login(client, "bob", BOB_PASSWORD)
    [bobs_session] = session_ids(client, bearer(bobs["access_token"]))
    headers = bearer(alice_tokens(client)["access_token"])

    response = client.delete(f"/users/me/sessions/{bobs_session}", headers=headers)

    assert response.status_code == 404
    assert response.json() == SESSION_NOT_FOUND
    assert session_ids(client, bearer(bobs["access_token"])) == [bobs_session]
    assert refresh_grant(client, bobs["refresh_token"]).status_code == 200


def test_delete_an_already_ended_session_is_404(client: TestClient, user: dict[str, Any]) -> None:
    headers = bearer(alice_tokens(client)["access_token"])
    [session_id] = session_ids(client, headers)
    assert client.delete(f"/users/me/sessions/{session_id}", headers=headers).status_code == 204

    response = client.delete(f"/users/me/sessions/{session_id}", headers=headers)

    assert response.status_code == 404
    assert response.json() == SESSION_NOT_FOUND


def test_delete_session_with_a_malformed_id_is_422(
    client: TestClient, user: dict[str, Any]
) -> None:
    headers = bearer(alice_tokens(client)["access_token"])

    assert client.delete("/users/me/sessions/not-a-uuid", headers=headers).status_code == 422


def test_delete_my_session_without_token_is_401(client: TestClient) -> None:
    assert_not_authenticated(client.delete(f"/users/me/sessions/{uuid.uuid4()}"))


# --- admin: one user's sessions --------------------------------------------------------------


def admin_session_routes(user_id: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/admin/users/{user_id}/sessions"),
        ("DELETE", f"/admin/users/{user_id}/sessions/{uuid.uuid4()}"),
        ("POST", f"/admin/users/{user_id}/revoke-sessions"),
    ]


def test_admin_session_routes_without_token_are_401(
    client: TestClient, user: dict[str, Any]
) -> None:
    for method, url in admin_session_routes(user["id"]):
        assert_not_authenticated(client.request(method, url))


def test_admin_session_routes_with_a_non_admin_token_are_403_insufficient_scope(
    client: TestClient, user: dict[str, Any]
) -> None:
    headers = bearer(alice_tokens(client)["access_token"])

    for method, url in admin_session_routes(user["id"]):
        assert_insufficient_scope(client.request(method, url, headers=headers))


def test_non_admin_cannot_end_their_own_session_through_the_admin_route(
    client: TestClient, user: dict[str, Any]
) -> None:
    tokens = alice_tokens(client)
    headers = bearer(tokens["access_token"])
    [session_id] = session_ids(client, headers)

    response = client.delete(f"/admin/users/{user['id']}/sessions/{session_id}", headers=headers)

    assert_insufficient_scope(response)
    assert session_ids(client, headers) == [session_id]


def test_admin_lists_a_users_sessions(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any]
) -> None:
    tokens = alice_tokens(client, client_id="mobile-app")

    response = client.get(f"/admin/users/{user['id']}/sessions", headers=admin_headers)

    assert response.status_code == 200
    assert response.json() == my_sessions(client, bearer(tokens["access_token"]))
    [entry] = response.json()
    assert set(entry) == SESSION_FIELDS
    assert entry["client_id"] == "mobile-app"


def test_admin_lists_no_sessions_for_a_user_who_never_logged_in(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any]
) -> None:
    response = client.get(f"/admin/users/{user['id']}/sessions", headers=admin_headers)

    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", "sessions"), ("DELETE", f"sessions/{uuid.uuid4()}"), ("POST", "revoke-sessions")],
    ids=["list", "delete-one", "revoke-all"],
)
def test_admin_session_routes_for_an_unknown_user_are_404(
    client: TestClient, admin_headers: dict[str, str], method: str, suffix: str
) -> None:
    response = client.request(
        method, f"/admin/users/{uuid.uuid4()}/{suffix}", headers=admin_headers
    )

    assert response.status_code == 404
    assert response.json() == USER_NOT_FOUND


def test_admin_ends_one_session_of_a_user(
    client: TestClient,
    admin_headers: dict[str, str],
    user: dict[str, Any],
    sessions: sessionmaker[Session],
) -> None:
    ended = alice_tokens(client)
    kept = alice_tokens(client)
    ended_id = family_id_of(sessions, ended["refresh_token"])

    response = client.delete(
        f"/admin/users/{user['id']}/sessions/{ended_id}", headers=admin_headers
    )

    assert response.status_code == 204
    assert response.content == b""
    assert_invalid_refresh(refresh_grant(client, ended["refresh_token"]))
    assert refresh_grant(client, kept["refresh_token"]).status_code == 200


def test_admin_ending_a_session_under_the_wrong_user_is_404_and_leaves_it_working(
    client: TestClient,
    admin_headers: dict[str, str],
    user: dict[str, Any],
    bob: dict[str, Any],
    sessions: sessionmaker[Session],
) -> None:
    bobs = password_login(client, "bob", BOB_PASSWORD)
    bobs_session = family_id_of(sessions, bobs["refresh_token"])

    response = client.delete(
        f"/admin/users/{user['id']}/sessions/{bobs_session}", headers=admin_headers
    )

    assert response.status_code == 404
    assert response.json() == SESSION_NOT_FOUND
    assert refresh_grant(client, bobs["refresh_token"]).status_code == 200


def test_admin_ending_an_unknown_session_is_404(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any]
) -> None:
    response = client.delete(
        f"/admin/users/{user['id']}/sessions/{uuid.uuid4()}", headers=admin_headers
    )

    assert response.status_code == 404
    assert response.json() == SESSION_NOT_FOUND


# --- admin: revoke every session of a user ---------------------------------------------------


def revoke_all(client: TestClient, admin_headers: dict[str, str], user_id: str) -> None:
    response = client.post(f"/admin/users/{user_id}/revoke-sessions", headers=admin_headers)
    assert response.status_code == 204, response.text
    assert response.content == b""


def wait_for_next_second() -> None:
    """Sleep until the wall clock reaches the next whole second (at most 1 s).

    A cutoff taken before now is at most ``ceil(now)``; a token issued from then on has
    ``iat >= ceil(cutoff)`` and passes, however the cutoff is rounded.
    """
    target = math.ceil(time.time())
    while time.time() < target:
        time.sleep(max(target - time.time(), 0.01))


def test_revoke_sessions_ends_every_session_of_the_user(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any]
) -> None:
    first = alice_tokens(client, client_id="mobile-app")
    second = alice_tokens(client, client_id="web-app")

    revoke_all(client, admin_headers, user["id"])

    response = client.get(f"/admin/users/{user['id']}/sessions", headers=admin_headers)
    assert response.json() == []
    assert_invalid_refresh(refresh_grant(client, first["refresh_token"], client_id="mobile-app"))
    assert_invalid_refresh(refresh_grant(client, second["refresh_token"], client_id="web-app"))


def test_revoke_sessions_refuses_the_users_existing_access_tokens(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any]
) -> None:
    tokens = [alice_tokens(client)["access_token"] for _ in range(2)]

    revoke_all(client, admin_headers, user["id"])

    for token in tokens:
        assert_invalid_token(client.get("/users/me", headers=bearer(token)), REVOKED)


def test_revoke_sessions_leaves_other_users_alone(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any], bob: dict[str, Any]
) -> None:
    bobs = password_login(client, "bob", BOB_PASSWORD)

    revoke_all(client, admin_headers, user["id"])

    assert client.get("/users/me", headers=bearer(bobs["access_token"])).status_code == 200
    assert client.get("/admin/users", headers=admin_headers).status_code == 200
    assert refresh_grant(client, bobs["refresh_token"]).status_code == 200


def test_revoke_sessions_of_a_user_without_sessions_is_204(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any]
) -> None:
    revoke_all(client, admin_headers, user["id"])


def test_login_after_revoke_sessions_works_once_the_cutoff_second_has_passed(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any]
) -> None:
    alice_tokens(client)
    revoke_all(client, admin_headers, user["id"])
    wait_for_next_second()

    tokens = alice_tokens(client)

    headers = bearer(tokens["access_token"])
    assert client.get("/users/me", headers=headers).status_code == 200
    assert len(my_sessions(client, headers)) == 1
    assert refresh_grant(client, tokens["refresh_token"]).status_code == 200


def set_cutoff(sessions: sessionmaker[Session], user_id: str, cutoff: datetime) -> None:
    with sessions() as session:
        session.execute(
            update(User).where(User.id == uuid.UUID(user_id)).values(tokens_valid_after=cutoff)
        )
        session.commit()


def test_access_token_issued_in_the_cutoffs_second_is_refused(
    client: TestClient, user: dict[str, Any], forger: Forger, sessions: sessionmaker[Session]
) -> None:
    # iat has whole seconds: a token from the same second may predate the cutoff, so it goes.
    whole = int(time.time()) - 60
    set_cutoff(sessions, user["id"], datetime.fromtimestamp(whole + 0.5, UTC))
    token = forger.token(payload=forger.claims(iat=whole, nbf=whole))

    assert_invalid_token(client.get("/users/me", headers=bearer(token)), REVOKED)


def test_access_token_issued_in_the_second_after_the_cutoff_is_accepted(
    client: TestClient, user: dict[str, Any], forger: Forger, sessions: sessionmaker[Session]
) -> None:
    whole = int(time.time()) - 60
    set_cutoff(sessions, user["id"], datetime.fromtimestamp(whole + 0.5, UTC))
    token = forger.token(payload=forger.claims(iat=whole + 1, nbf=whole + 1))

    assert client.get("/users/me", headers=bearer(token)).status_code == 200


def test_access_token_issued_exactly_at_a_whole_second_cutoff_is_accepted(
    client: TestClient, user: dict[str, Any], forger: Forger, sessions: sessionmaker[Session]
) -> None:
    whole = int(time.time()) - 60
    set_cutoff(sessions, user["id"], datetime.fromtimestamp(whole, UTC))
    token = forger.token(payload=forger.claims(iat=whole, nbf=whole))

    assert client.get("/users/me", headers=bearer(token)).status_code == 200


def test_cutoff_timestamp_rounds_up_to_the_next_whole_second() -> None:
    assert cutoff_timestamp(None) is None
    assert cutoff_timestamp(datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)) == 1767225600
    assert cutoff_timestamp(datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)) == 1767225601


# --- purging expired rows --------------------------------------------------------------------


def past(seconds: int = 60) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def future(seconds: int = 3600) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def seed_purge_rows(
    sessions: sessionmaker[Session], user_id: str, settings: Settings
) -> dict[str, Any]:
    """One expired session (and its token), one live session with one expired old token and one
    live token, and an expired and a live denylist entry. Returns what should survive."""
    owner = uuid.UUID(user_id)
    with sessions() as session:
        service = SessionService(session, settings.refresh_token_ttl)
        password_hash = current_hash(session, owner)
        expired_family = family_of(
            session, service.start(owner, "public", [], password_hash=password_hash)
        )
        live_token = service.start(owner, "public", [], password_hash=password_hash)
        live_family = family_of(session, live_token)
        session.execute(
            update(RefreshFamily)
            .where(RefreshFamily.id == expired_family)
            .values(expires_at=past())
        )
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == expired_family)
            .values(expires_at=past())
        )
        session.add(
            RefreshToken(
                token_hash=hash_refresh_token("old-consumed-token"),
                family_id=live_family,
                scope="",
                created_at=past(7200),
                expires_at=past(),
                consumed_at=past(3600),
            )
        )
        session.add(RevokedAccessToken(jti="expired-jti", expires_at=past()))
        session.add(RevokedAccessToken(jti="live-jti", expires_at=future()))
        session.commit()
    return {
        "family": live_family,
        "token_hash": hash_refresh_token(live_token),
        "jti": "live-jti",
    }


def family_of(session: Session, refresh_token: str) -> uuid.UUID:
    family_id = session.scalar(
        select(RefreshToken.family_id).where(
            RefreshToken.token_hash == hash_refresh_token(refresh_token)
        )
    )
    assert family_id is not None
    return family_id


def remaining(sessions: sessionmaker[Session]) -> dict[str, list[Any]]:
    with sessions() as session:
        return {
            "families": list(session.scalars(select(RefreshFamily.id))),
            "tokens": list(session.scalars(select(RefreshToken.token_hash))),
            "denylist": list(session.scalars(select(RevokedAccessToken.jti))),
        }


def test_purge_expired_deletes_expired_tokens_sessions_and_denylist_entries(
    user: dict[str, Any], sessions: sessionmaker[Session], settings: Settings
) -> None:
    live = seed_purge_rows(sessions, user["id"], settings)

    with sessions() as session:
        counts = SessionService(session, settings.refresh_token_ttl).purge_expired()

    assert counts == {"refresh_tokens": 2, "sessions": 1, "denylist": 1}
    assert remaining(sessions) == {
        "families": [live["family"]],
        "tokens": [live["token_hash"]],
        "denylist": [live["jti"]],
    }


def test_purge_expired_deletes_the_tokens_of_an_expired_session_with_it(
    user: dict[str, Any], sessions: sessionmaker[Session], settings: Settings
) -> None:
    # Only the family is expired here; its token's own expires_at is still ahead, and the token
    # must go with the family (ON DELETE CASCADE) rather than outlive it.
    with sessions() as session:
        service = SessionService(session, settings.refresh_token_ttl)
        owner = uuid.UUID(user["id"])
        family_id = family_of(
            session,
            service.start(owner, "public", [], password_hash=current_hash(session, owner)),
        )
        session.execute(
            update(RefreshFamily).where(RefreshFamily.id == family_id).values(expires_at=past())
        )
        session.commit()

    with sessions() as session:
        SessionService(session, settings.refresh_token_ttl).purge_expired()

    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RefreshToken)) == 0
        assert session.scalar(select(func.count()).select_from(RefreshFamily)) == 0


def test_purge_expired_with_nothing_expired_deletes_nothing(
    client: TestClient, user: dict[str, Any], sessions: sessionmaker[Session], settings: Settings
) -> None:
    tokens = alice_tokens(client)
    assert client.post("/oauth2/revoke", data={"token": tokens["access_token"]}).status_code == 200
    before = remaining(sessions)

    with sessions() as session:
        counts = SessionService(session, settings.refresh_token_ttl).purge_expired()

    assert counts == {"refresh_tokens": 0, "sessions": 0, "denylist": 0}
    assert remaining(sessions) == before


def test_purge_keeps_a_revoked_token_refused_while_the_verifier_still_accepts_it(
    client: TestClient,
    user: dict[str, Any],
    forger: Forger,
    sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    # The verifier honours exp with settings.jwt_leeway (30 s): a token 5 s past exp still works.
    now = int(time.time())
    token = forger.token(payload=forger.claims(iat=now - 600, nbf=now - 600, exp=now - 5))
    assert client.get("/users/me", headers=bearer(token)).status_code == 200
    assert client.post("/oauth2/revoke", data={"token": token}).status_code == 200
    assert_invalid_token(client.get("/users/me", headers=bearer(token)), REVOKED)

    with sessions() as session:
        SessionService(session, settings.refresh_token_ttl).purge_expired()

    assert_invalid_token(client.get("/users/me", headers=bearer(token)), REVOKED)


def test_app_purges_expired_rows_every_purge_interval(
    make_settings: Callable[..., Settings],
    migrated: None,
    user: dict[str, Any],
    sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    live = seed_purge_rows(sessions, user["id"], settings)
    expected = {
        "families": [live["family"]],
        "tokens": [live["token_hash"]],
        "denylist": [live["jti"]],
    }
    assert remaining(sessions) != expected
    app = create_app(make_settings(purge_interval=1))

    with TestClient(app):
        deadline = time.monotonic() + PURGE_DEADLINE
        while remaining(sessions) != expected and time.monotonic() < deadline:
            time.sleep(0.2)

    assert remaining(sessions) == expected

"""The audit trail through HTTP: which action records which event (and never a secret), the paged
``GET /admin/audit`` and the ``/admin/audit/stream`` WebSocket.

The app's writer thread runs during every test. ``AuditLog.flush()`` also waits for a batch
the writer has in progress, so "flush, then read" sees every event recorded before it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from authsvc.api.routes import admin_audit
from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.db.models import AuditEvent
from authsvc.security.keys import SigningKey
from authsvc.services.audit import AuditLog
from authsvc.services.clients import hash_secret
from authsvc.services.sessions import hash_refresh_token
from tests.helpers import (
    ADMIN_PASSWORD,
    TOKEN_URL,
    UNREACHABLE_POSTGRES,
    USER_PASSWORD,
    Forger,
    alice_tokens,
    assert_insufficient_scope,
    assert_not_authenticated,
    assert_oauth_error,
    authsvc_command,
    b64url_decode,
    basic,
    bearer,
    client_credentials_token,
    create_client,
    password_login,
    refresh_grant,
    token_request,
    user_claims,
)

AUDIT_URL = "/admin/audit"
STREAM_URL = "/admin/audit/stream"
INTROSPECT_URL = "/oauth2/introspect"
REVOKE_URL = "/oauth2/revoke"
TESTCLIENT = "testclient"
# What the stream and GET /admin/audit show of an event.
EVENT_FIELDS = {
    "id",
    "occurred_at",
    "type",
    "outcome",
    "actor_id",
    "subject_id",
    "username",
    "client_id",
    "ip",
    "user_agent",
    "details",
}
# A stream message is expected within this long: writer (0.2 s) + poll (0.5 s) + slack.
STREAM_DEADLINE = 5.0
WS_POLICY_VIOLATION = 1008

MakeUser = Callable[..., dict[str, Any]]


# --- reading the trail ------------------------------------------------------------------------


def app_audit(app: FastAPI) -> AuditLog:
    log: AuditLog = app.state.ctx.audit
    return log


@pytest.fixture
def audit(client: TestClient) -> AuditLog:
    return app_audit(client.app)  # type: ignore[arg-type]


def fetch(
    client: TestClient, headers: dict[str, str], *params: tuple[str, str | int]
) -> dict[str, Any]:
    """GET /admin/audit after writing everything queued; the whole response body."""
    client.app.state.ctx.audit.flush()  # type: ignore[attr-defined]
    response = client.get(AUDIT_URL, headers=headers, params=list(params))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"items", "next_before"}
    for item in body["items"]:
        assert set(item) == EVENT_FIELDS
    return body


def all_events(
    client: TestClient, headers: dict[str, str], *params: tuple[str, str | int]
) -> list[dict[str, Any]]:
    """Every stored event matching ``params``, newest first."""
    body = fetch(client, headers, ("limit", 500), *params)
    assert body["next_before"] is None, "more than 500 events: the test made too many"
    items: list[dict[str, Any]] = body["items"]
    return items


def last_id(client: TestClient, headers: dict[str, str]) -> int:
    items = fetch(client, headers, ("limit", 1))["items"]
    return int(items[0]["id"]) if items else 0


def events_after(client: TestClient, headers: dict[str, str], mark: int) -> list[dict[str, Any]]:
    """The events stored after ``mark`` (an id from ``last_id``), oldest first."""
    return [event for event in reversed(all_events(client, headers)) if event["id"] > mark]


def only(events: list[dict[str, Any]], type_: str) -> dict[str, Any]:
    found = [event for event in events if event["type"] == type_]
    assert len(found) == 1, events
    return found[0]


def assert_event(event: dict[str, Any], **expected: Any) -> None:
    """Every field of ``event`` but id and occurred_at, with the caller the TestClient's."""
    expected.setdefault("outcome", "success")
    expected.setdefault("ip", TESTCLIENT)
    expected.setdefault("user_agent", TESTCLIENT)
    for name in ("actor_id", "subject_id", "username", "client_id", "details"):
        expected.setdefault(name, None)
    assert {name: event[name] for name in expected} == expected
    assert set(event) == EVENT_FIELDS
    assert isinstance(event["id"], int)
    occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    assert occurred.tzinfo is not None
    assert abs(datetime.now(UTC) - occurred) < timedelta(minutes=1)


def jti_of(access_token: str) -> str:
    claims = json.loads(b64url_decode(access_token.split(".")[1]))
    jti: str = claims["jti"]
    return jti


@pytest.fixture
def mark(audit: AuditLog, client: TestClient, admin_headers: dict[str, str]) -> int:
    """The id of the newest event once the admin has logged in (their own events come first)."""
    return last_id(client, admin_headers)


@pytest.fixture
def admin_forger(signing_key: SigningKey, admin: dict[str, Any]) -> Forger:
    """Signs tokens for the admin with the app's own key."""
    return Forger(signing_key, lambda: {**user_claims(admin), "scope": "admin"})


# --- logins -------------------------------------------------------------------------------------


def test_login_records_login_succeeded_then_token_issued(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any], mark: int
) -> None:
    tokens = password_login(client, "alice", USER_PASSWORD)

    events = events_after(client, admin_headers, mark)

    assert [event["type"] for event in events] == ["login.succeeded", "token.issued"]
    assert_event(
        events[0],
        type="login.succeeded",
        subject_id=user["id"],
        username="alice",
        client_id="public",
    )
    assert_event(
        events[1],
        type="token.issued",
        subject_id=user["id"],
        username="alice",
        client_id="public",
        details={
            "grant_type": "password",
            "scope": "",
            "jti": jti_of(tokens["access_token"]),
        },
    )


@pytest.mark.parametrize("reason", ["unknown_user", "wrong_password", "disabled"])
def test_failed_login_records_login_failed_with_its_reason(
    client: TestClient,
    admin_headers: dict[str, str],
    make_user: MakeUser,
    mark: int,
    reason: str,
) -> None:
    alice = make_user("alice", USER_PASSWORD, is_active=reason != "disabled")
    username = {"unknown_user": "nobody-here"}.get(reason, "alice")
    password = USER_PASSWORD if reason == "disabled" else "not-the-password"

    response = token_request(client, username, password)

    assert_oauth_error(response, 400, "invalid_grant")
    [event] = events_after(client, admin_headers, mark)
    known = reason != "unknown_user"
    assert_event(
        event,
        type="login.failed",
        outcome="failure",
        subject_id=alice["id"] if known else None,
        username="alice" if known else None,
        client_id="public",
        details={"reason": reason},
    )


def test_login_failed_for_unknown_user_does_not_store_the_attempted_name(
    client: TestClient, admin_headers: dict[str, str], mark: int
) -> None:
    """A name that matches no account is often a password typed into the wrong field."""
    typed = "Tr0ub4dor&3-typed-in-the-wrong-field"

    assert_oauth_error(token_request(client, typed, "whatever-1"), 400, "invalid_grant")

    events = events_after(client, admin_headers, mark)
    assert [event["type"] for event in events] == ["login.failed"]
    assert typed not in json.dumps(events)


def test_lockout_records_account_locked_and_then_login_failed_locked(
    make_settings: Callable[..., Settings],
    migrated: None,
    make_user: MakeUser,
    admin: dict[str, Any],
) -> None:
    alice = make_user("alice", USER_PASSWORD)
    app = create_app(make_settings(lockout_threshold=2))
    with TestClient(app) as client:
        headers = bearer(password_login(client, admin["username"], ADMIN_PASSWORD)["access_token"])
        mark = last_id(client, headers)

        for _ in range(2):
            assert_oauth_error(
                token_request(client, "alice", "wrong-password"), 400, "invalid_grant"
            )
        # The right password now: the account is locked, and the answer is the same.
        assert_oauth_error(token_request(client, "alice", USER_PASSWORD), 400, "invalid_grant")

        events = events_after(client, headers, mark)

    assert [(event["type"], (event["details"] or {}).get("reason")) for event in events] == [
        ("login.failed", "wrong_password"),
        ("account.locked", None),
        ("login.failed", "wrong_password"),
        ("login.failed", "locked"),
    ]
    alice_fields = {"subject_id": alice["id"], "username": "alice", "client_id": "public"}
    assert_event(events[1], type="account.locked", details={"duration": 900}, **alice_fields)
    assert_event(
        events[3],
        type="login.failed",
        outcome="failure",
        details={"reason": "locked"},
        **alice_fields,
    )


# --- tokens -------------------------------------------------------------------------------------


def test_client_credentials_token_records_token_issued_with_the_client_as_subject(
    client: TestClient, admin_headers: dict[str, str], audit: AuditLog
) -> None:
    rs = create_client(client, admin_headers)
    mark = last_id(client, admin_headers)

    token = client_credentials_token(client, rs)

    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event,
        type="token.issued",
        subject_id=rs["client_id"],
        client_id=rs["client_id"],
        details={"grant_type": "client_credentials", "scope": "", "jti": jti_of(token)},
    )


def test_password_grant_with_a_scope_records_the_granted_scope(
    client: TestClient, admin: dict[str, Any], audit: AuditLog
) -> None:
    tokens = password_login(client, admin["username"], ADMIN_PASSWORD, scope="admin")
    headers = bearer(tokens["access_token"])

    event = only(all_events(client, headers, ("type", "token.issued")), "token.issued")

    assert event["details"] == {
        "grant_type": "password",
        "scope": "admin",
        "jti": jti_of(tokens["access_token"]),
    }


def test_refresh_records_token_refreshed(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any], audit: AuditLog
) -> None:
    tokens = alice_tokens(client)
    mark = last_id(client, admin_headers)

    response = refresh_grant(client, tokens["refresh_token"])

    assert response.status_code == 200, response.text
    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event,
        type="token.refreshed",
        subject_id=user["id"],
        username="alice",
        client_id="public",
        details={
            "grant_type": "refresh_token",
            "scope": "",
            "jti": jti_of(response.json()["access_token"]),
        },
    )


def test_reused_refresh_token_records_refresh_reuse_detected(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any], audit: AuditLog
) -> None:
    old = alice_tokens(client)["refresh_token"]
    assert refresh_grant(client, old).status_code == 200
    mark = last_id(client, admin_headers)

    response = refresh_grant(client, old)

    assert_oauth_error(response, 400, "invalid_grant")
    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event,
        type="refresh.reuse_detected",
        outcome="failure",
        subject_id=user["id"],
        client_id="public",
    )


def _token_request(client: TestClient, headers: dict[str, str]) -> int:
    return client.post(
        TOKEN_URL, data={"grant_type": "client_credentials"}, headers=headers
    ).status_code


def _introspect(client: TestClient, headers: dict[str, str]) -> int:
    return client.post(INTROSPECT_URL, data={"token": "x.y.z"}, headers=headers).status_code


def _revoke(client: TestClient, headers: dict[str, str]) -> int:
    return client.post(REVOKE_URL, data={"token": "x.y.z"}, headers=headers).status_code


@pytest.mark.parametrize(
    "call", [_token_request, _introspect, _revoke], ids=["token", "introspect", "revoke"]
)
def test_wrong_client_secret_records_client_auth_failed_naming_only_registered_ids(
    client: TestClient,
    admin_headers: dict[str, str],
    audit: AuditLog,
    call: Callable[[TestClient, dict[str, str]], int],
) -> None:
    registered = create_client(client, admin_headers)["client_id"]
    # An unregistered id is the caller's text (possibly a secret typed in the wrong field).
    for client_id, recorded in ((registered, registered), ("no-such-client", None)):
        mark = last_id(client, admin_headers)

        assert call(client, basic(client_id, "not-the-secret")) == 401

        [event] = events_after(client, admin_headers, mark)
        assert_event(event, type="client.auth_failed", outcome="failure", client_id=recorded)
        assert "not-the-secret" not in json.dumps(event)
        assert "no-such-client" not in json.dumps(event)


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
def test_revocation_records_token_revoked_with_the_token_type(
    client: TestClient,
    admin_headers: dict[str, str],
    user: dict[str, Any],
    audit: AuditLog,
    kind: str,
) -> None:
    token = alice_tokens(client)[kind]
    mark = last_id(client, admin_headers)

    response = client.post(REVOKE_URL, data={"token": token})

    assert response.status_code == 200, response.text
    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event,
        type="token.revoked",
        actor_id="public",
        subject_id=user["id"],
        client_id="public",
        details={"token_type": kind},
    )


def test_revoking_an_unknown_token_records_nothing(
    client: TestClient, admin_headers: dict[str, str], admin_forger: Forger, mark: int
) -> None:
    now = int(time.time())
    expired = admin_forger.claims(client_id="public", exp=now - 3600, iat=now - 7200)
    for token in ("not-a-token", "x.y.z", "a" * 43, admin_forger.token(payload=expired)):
        assert client.post(REVOKE_URL, data={"token": token}).status_code == 200

    assert events_after(client, admin_headers, mark) == []


def test_revoking_another_clients_token_records_nothing(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any], audit: AuditLog
) -> None:
    tokens = alice_tokens(client)
    mark = last_id(client, admin_headers)

    for kind in ("access_token", "refresh_token"):
        response = client.post(REVOKE_URL, data={"token": tokens[kind], "client_id": "other"})
        assert response.status_code == 200, response.text

    assert events_after(client, admin_headers, mark) == []


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
def test_revoking_an_already_revoked_token_records_no_second_event(
    client: TestClient,
    admin_headers: dict[str, str],
    user: dict[str, Any],
    audit: AuditLog,
    kind: str,
) -> None:
    token = alice_tokens(client)[kind]
    mark = last_id(client, admin_headers)

    for _ in range(2):
        assert client.post(REVOKE_URL, data={"token": token}).status_code == 200

    events = events_after(client, admin_headers, mark)
    assert [event["type"] for event in events] == ["token.revoked"]


# --- admin: users, sessions, scopes ----------------------------------------------------------


def test_admin_creating_a_user_records_user_created(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str], mark: int
) -> None:
    response = client.post(
        "/admin/users",
        headers=admin_headers,
        json={
            "username": "dave",
            "password": "dave-password-1",
            "email": "dave@example.com",
            "scopes": ["admin"],
            "is_active": False,
        },
    )

    assert response.status_code == 201, response.text
    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event,
        type="user.created",
        actor_id=admin["id"],
        subject_id=response.json()["id"],
        username="dave",
        details={"scopes": ["admin"], "is_active": False},
    )
    assert "dave-password-1" not in json.dumps(event)


@pytest.mark.parametrize(
    ("body", "details"),
    [
        pytest.param(
            {"full_name": "Alice A.", "email": "alice@example.com"},
            {"fields": ["email", "full_name"]},
            id="contact",
        ),
        pytest.param(
            {"is_active": False, "scopes": ["admin"]},
            {"fields": ["is_active", "scopes"], "is_active": False, "scopes": ["admin"]},
            id="access",
        ),
        pytest.param(
            {"password": "reset-by-admin-1"}, {"fields": ["password"]}, id="password-reset"
        ),
    ],
)
def test_admin_updating_a_user_records_user_updated_with_the_field_names(
    client: TestClient,
    admin: dict[str, Any],
    admin_headers: dict[str, str],
    user: dict[str, Any],
    mark: int,
    body: dict[str, Any],
    details: dict[str, Any],
) -> None:
    response = client.patch(f"/admin/users/{user['id']}", headers=admin_headers, json=body)

    assert response.status_code == 200, response.text
    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event,
        type="user.updated",
        actor_id=admin["id"],
        subject_id=user["id"],
        username="alice",
        details=details,
    )
    assert "reset-by-admin-1" not in json.dumps(event)


def test_admin_deleting_a_user_records_user_deleted(
    client: TestClient,
    admin: dict[str, Any],
    admin_headers: dict[str, str],
    user: dict[str, Any],
    mark: int,
) -> None:
    response = client.delete(f"/admin/users/{user['id']}", headers=admin_headers)

    assert response.status_code == 204, response.text
    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event, type="user.deleted", actor_id=admin["id"], subject_id=user["id"], username="alice"
    )


def test_refused_admin_requests_record_nothing(
    client: TestClient,
    admin: dict[str, Any],
    admin_headers: dict[str, str],
    user_headers: dict[str, str],
    mark: int,
) -> None:
    missing = uuid.uuid4()
    assert client.delete(f"/admin/users/{missing}", headers=admin_headers).status_code == 404
    assert client.delete(f"/admin/users/{admin['id']}", headers=admin_headers).status_code == 409
    assert client.post("/admin/scopes", headers=user_headers, json={"name": "x"}).status_code == 403
    revoke_all = client.post(f"/admin/users/{missing}/revoke-sessions", headers=admin_headers)
    assert revoke_all.status_code == 404
    assert client.delete(f"/users/me/sessions/{missing}", headers=user_headers).status_code == 404

    assert events_after(client, admin_headers, mark) == []


def _session_id(client: TestClient, url: str, headers: dict[str, str]) -> str:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    [entry] = response.json()
    session_id: str = entry["id"]
    return session_id


def test_admin_revoking_a_session_records_session_revoked(
    client: TestClient,
    admin: dict[str, Any],
    admin_headers: dict[str, str],
    user: dict[str, Any],
    audit: AuditLog,
) -> None:
    alice_tokens(client)
    sessions_url = f"/admin/users/{user['id']}/sessions"
    session_id = _session_id(client, sessions_url, admin_headers)
    mark = last_id(client, admin_headers)

    response = client.delete(f"{sessions_url}/{session_id}", headers=admin_headers)

    assert response.status_code == 204, response.text
    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event,
        type="session.revoked",
        actor_id=admin["id"],
        subject_id=user["id"],
        username="alice",
        details={"session_id": session_id},
    )


def test_user_revoking_their_own_session_records_session_revoked_by_them(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any], audit: AuditLog
) -> None:
    headers = bearer(alice_tokens(client)["access_token"])
    session_id = _session_id(client, "/users/me/sessions", headers)
    mark = last_id(client, admin_headers)

    response = client.delete(f"/users/me/sessions/{session_id}", headers=headers)

    assert response.status_code == 204, response.text
    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event,
        type="session.revoked",
        actor_id=user["id"],
        subject_id=user["id"],
        username="alice",
        details={"session_id": session_id},
    )


def test_admin_revoking_all_sessions_records_user_sessions_revoked(
    client: TestClient,
    admin: dict[str, Any],
    admin_headers: dict[str, str],
    user: dict[str, Any],
    mark: int,
) -> None:
    response = client.post(f"/admin/users/{user['id']}/revoke-sessions", headers=admin_headers)

    assert response.status_code == 204, response.text
    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event,
        type="user.sessions_revoked",
        actor_id=admin["id"],
        subject_id=user["id"],
        username="alice",
    )


def test_admin_creating_a_scope_records_scope_created(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str], mark: int
) -> None:
    response = client.post(
        "/admin/scopes", headers=admin_headers, json={"name": "reports:read", "description": "R"}
    )

    assert response.status_code == 201, response.text
    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event, type="scope.created", actor_id=admin["id"], details={"scope": "reports:read"}
    )


# --- admin: clients -----------------------------------------------------------------------------


def test_admin_creating_a_client_records_client_created_without_its_secret(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str], mark: int
) -> None:
    created = create_client(
        client, admin_headers, grant_types=["password", "refresh_token"], scopes=["admin"]
    )

    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event,
        type="client.created",
        actor_id=admin["id"],
        subject_id=created["client_id"],
        client_id=created["client_id"],
        details={
            "grant_types": ["password", "refresh_token"],
            "scopes": ["admin"],
            "confidential": True,
        },
    )
    assert created["client_secret"] not in json.dumps(event)


def test_admin_updating_a_client_records_client_updated_with_the_changes(
    client: TestClient, admin: dict[str, Any], admin_headers: dict[str, str], audit: AuditLog
) -> None:
    client_id = create_client(client, admin_headers)["client_id"]
    mark = last_id(client, admin_headers)

    response = client.patch(
        f"/admin/clients/{client_id}",
        headers=admin_headers,
        json={"name": "renamed", "scopes": ["admin"]},
    )

    assert response.status_code == 200, response.text
    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event,
        type="client.updated",
        actor_id=admin["id"],
        subject_id=client_id,
        client_id=client_id,
        details={"name": "renamed", "scopes": ["admin"]},
    )


@pytest.mark.parametrize(
    ("method", "suffix", "status", "type_"),
    [
        ("DELETE", "", 204, "client.deleted"),
        ("POST", "/secret", 200, "client.secret_rotated"),
    ],
    ids=["delete", "rotate-secret"],
)
def test_admin_client_actions_record_their_event(
    client: TestClient,
    admin: dict[str, Any],
    admin_headers: dict[str, str],
    audit: AuditLog,
    method: str,
    suffix: str,
    status: int,
    type_: str,
) -> None:
    created = create_client(client, admin_headers)
    client_id = created["client_id"]
    mark = last_id(client, admin_headers)

    response = client.request(method, f"/admin/clients/{client_id}{suffix}", headers=admin_headers)

    assert response.status_code == status, response.text
    [event] = events_after(client, admin_headers, mark)
    assert_event(event, type=type_, actor_id=admin["id"], subject_id=client_id, client_id=client_id)
    for secret in (created["client_secret"], response.content.decode()):
        assert not secret or secret not in json.dumps(event)


# --- users: password change -------------------------------------------------------------------


def test_changing_ones_password_records_user_password_changed(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any], audit: AuditLog
) -> None:
    headers = bearer(alice_tokens(client)["access_token"])
    mark = last_id(client, admin_headers)

    response = client.post(
        "/users/me/password",
        headers=headers,
        json={"current_password": USER_PASSWORD, "new_password": "brand-new-password-2"},
    )

    assert response.status_code == 204, response.text
    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event,
        type="user.password_changed",
        actor_id=user["id"],
        subject_id=user["id"],
        username="alice",
    )


def test_wrong_current_password_records_a_failed_user_password_changed(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any], audit: AuditLog
) -> None:
    headers = bearer(alice_tokens(client)["access_token"])
    mark = last_id(client, admin_headers)

    response = client.post(
        "/users/me/password",
        headers=headers,
        json={"current_password": "wrong-current-1", "new_password": "brand-new-password-2"},
    )

    assert response.status_code == 400, response.text
    [event] = events_after(client, admin_headers, mark)
    assert_event(
        event,
        type="user.password_changed",
        outcome="failure",
        actor_id=user["id"],
        subject_id=user["id"],
        username="alice",
        details={"reason": "wrong_current_password"},
    )
    dumped = json.dumps(event)
    assert "wrong-current-1" not in dumped
    assert "brand-new-password-2" not in dumped


# --- no secret anywhere -------------------------------------------------------------------------


def test_no_password_token_secret_or_hash_is_ever_stored(
    client: TestClient,
    admin: dict[str, Any],
    admin_headers: dict[str, str],
    user: dict[str, Any],
    audit: AuditLog,
) -> None:
    typed_name = "alice-secret-in-name-1"  # a password typed into the name field
    passwords = [ADMIN_PASSWORD, USER_PASSWORD, typed_name]
    access_tokens = [admin_headers["Authorization"].removeprefix("Bearer ")]
    refresh_tokens: list[str] = []
    client_secrets: list[str] = []

    def keep(body: dict[str, Any]) -> dict[str, Any]:
        access_tokens.append(body["access_token"])
        refresh_tokens.append(body["refresh_token"])
        return body

    # Logins (failed ones included), a refresh, and a reuse of the rotated refresh token.
    for username, password in [
        (typed_name, "wrong-pass-1"),
        ("alice", "wrong-pass-2"),
        ("root-admin", "wrong-pass-3"),
    ]:
        passwords.append(password)
        assert token_request(client, username, password).status_code == 400
    first = keep(alice_tokens(client))
    refreshed = refresh_grant(client, first["refresh_token"])
    assert refreshed.status_code == 200
    keep(refreshed.json())
    assert refresh_grant(client, first["refresh_token"]).status_code == 400
    alive = keep(alice_tokens(client))
    # A client: creation, a failed and a good authentication, introspection, secret rotation.
    rs = create_client(client, admin_headers)
    client_secrets += [rs["client_secret"], "wrong-client-secret-1"]
    assert _introspect(client, basic(rs["client_id"], "wrong-client-secret-1")) == 401
    introspected = client.post(
        INTROSPECT_URL,
        data={"token": alive["access_token"]},
        headers=basic(rs["client_id"], rs["client_secret"]),
    )
    assert introspected.status_code == 200
    access_tokens.append(client_credentials_token(client, rs))
    rotated = client.post(f"/admin/clients/{rs['client_id']}/secret", headers=admin_headers)
    assert rotated.status_code == 200
    client_secrets.append(rotated.json()["client_secret"])
    # Revocation of both kinds; a reset by the admin; a change by the user, wrong then right.
    for kind in ("access_token", "refresh_token"):
        assert client.post(REVOKE_URL, data={"token": alive[kind]}).status_code == 200
    passwords += ["admin-reset-pw-1", "wrong-current-pw-1", "self-chosen-pw-1"]
    reset = client.patch(
        f"/admin/users/{user['id']}", headers=admin_headers, json={"password": "admin-reset-pw-1"}
    )
    assert reset.status_code == 200
    alice = bearer(keep(password_login(client, "alice", "admin-reset-pw-1"))["access_token"])
    for current, status in (("wrong-current-pw-1", 400), ("admin-reset-pw-1", 204)):
        changed = client.post(
            "/users/me/password",
            headers=alice,
            json={"current_password": current, "new_password": "self-chosen-pw-1"},
        )
        assert changed.status_code == status, changed.text
    signatures = [token.rsplit(".", 1)[1] for token in access_tokens]
    secrets = [*passwords, *access_tokens, *signatures, *refresh_tokens, *client_secrets]
    # sha256 hex is how client secrets and refresh tokens are stored.
    hashes = [hash_secret(secret) for secret in secrets]
    assert {hash_refresh_token(token) for token in refresh_tokens} <= set(hashes)

    via_api = json.dumps(all_events(client, admin_headers))
    with client.app.state.ctx.sessionmaker() as session:  # type: ignore[attr-defined]
        rows = session.execute(select(AuditEvent.__table__)).all()
    via_table = "\n".join(repr(tuple(row)) for row in rows)

    assert len(rows) > 20
    assert len(json.loads(via_api)) == len(rows)
    for dumped in (via_api, via_table):
        for needle in [*secrets, *hashes, "$2b$", "$bcrypt"]:
            assert needle not in dumped, needle
    assert {"login.failed", "refresh.reuse_detected", "client.auth_failed"} <= {
        row.type for row in rows
    }


# --- GET /admin/audit ---------------------------------------------------------------------------


def test_audit_without_a_token_is_401_with_a_bare_challenge(client: TestClient) -> None:
    assert_not_authenticated(client.get(AUDIT_URL))


def test_audit_with_a_user_token_is_403_insufficient_scope(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    assert_insufficient_scope(client.get(AUDIT_URL, headers=user_headers))


def test_audit_with_an_out_of_range_parameter_is_422(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    cases: list[dict[str, str | int]] = [
        {"limit": 0},
        {"limit": 501},
        {"limit": "x"},
        {"before": 0},
        {"before": -1},
        {"since": "yesterday"},
        {"user": "u" * 151},
    ]
    for params in cases:
        response = client.get(AUDIT_URL, headers=admin_headers, params=params)
        assert response.status_code == 422, params


def test_audit_limit_500_is_accepted(
    client: TestClient, admin_headers: dict[str, str], audit: AuditLog
) -> None:
    body = fetch(client, admin_headers, ("limit", 500))
    assert [event["type"] for event in body["items"]] == ["token.issued", "login.succeeded"]
    assert body["next_before"] is None


@pytest.fixture
def mixed_trail(
    client: TestClient,
    admin: dict[str, Any],
    admin_headers: dict[str, str],
    user: dict[str, Any],
    make_user: MakeUser,
    audit: AuditLog,
) -> dict[str, Any]:
    """Events with alice as subject, as actor, by name only, and another admin as actor."""
    ops = make_user("ops", "ops-password-1", scopes=("admin",))
    ops_headers = bearer(password_login(client, "ops", "ops-password-1")["access_token"])
    alice = bearer(alice_tokens(client)["access_token"])  # alice: subject, by name
    assert token_request(client, "alice", "wrong-password").status_code == 400
    assert token_request(client, "nobody", "wrong-password").status_code == 400
    assert (
        client.post(
            "/users/me/password",
            headers=alice,
            json={"current_password": "bad-current-1", "new_password": "whatever-new-1"},
        ).status_code
        == 400
    )
    revoked = client.post(f"/admin/users/{user['id']}/revoke-sessions", headers=ops_headers)
    assert revoked.status_code == 204
    response = client.post("/admin/scopes", headers=ops_headers, json={"name": "reports"})
    assert response.status_code == 201
    return {"alice": user, "ops": ops, "admin": admin}


def test_audit_type_filter_returns_only_that_type(
    client: TestClient, admin_headers: dict[str, str], mixed_trail: dict[str, Any]
) -> None:
    everything = all_events(client, admin_headers)

    failed = all_events(client, admin_headers, ("type", "login.failed"))

    assert [event["id"] for event in failed] == [
        event["id"] for event in everything if event["type"] == "login.failed"
    ]
    assert [event["details"]["reason"] for event in failed] == ["unknown_user", "wrong_password"]


def test_audit_type_filter_repeated_returns_each_type(
    client: TestClient, admin_headers: dict[str, str], mixed_trail: dict[str, Any]
) -> None:
    everything = all_events(client, admin_headers)
    wanted = {"login.succeeded", "scope.created", "user.sessions_revoked"}

    found = all_events(client, admin_headers, *[("type", name) for name in sorted(wanted)])

    assert found == [event for event in everything if event["type"] in wanted]
    assert {event["type"] for event in found} == wanted
    assert all_events(client, admin_headers, ("type", "no.such.type")) == []


def test_audit_user_filter_by_id_matches_subject_or_actor(
    client: TestClient, admin_headers: dict[str, str], mixed_trail: dict[str, Any]
) -> None:
    everything = all_events(client, admin_headers)
    for who in ("alice", "ops", "admin"):
        user_id = mixed_trail[who]["id"]
        expected = [
            event for event in everything if user_id in (event["subject_id"], event["actor_id"])
        ]
        assert expected

        assert all_events(client, admin_headers, ("user", user_id)) == expected
        # Any spelling of the UUID is the same user.
        for spelling in (user_id.upper(), uuid.UUID(user_id).hex, f"{{{user_id}}}"):
            assert all_events(client, admin_headers, ("user", spelling)) == expected

    ops_id = mixed_trail["ops"]["id"]
    ops_types = {e["type"] for e in all_events(client, admin_headers, ("user", ops_id))}
    # As actor only (scope, revoke-sessions) and as subject (its login).
    assert {"scope.created", "user.sessions_revoked", "login.succeeded"} <= ops_types
    alice_id = mixed_trail["alice"]["id"]
    alice_types = {e["type"] for e in all_events(client, admin_headers, ("user", alice_id))}
    assert {"user.sessions_revoked", "user.password_changed", "login.failed"} <= alice_types


def test_audit_user_filter_by_name_matches_the_username(
    client: TestClient, admin_headers: dict[str, str], mixed_trail: dict[str, Any]
) -> None:
    everything = all_events(client, admin_headers)

    found = all_events(client, admin_headers, ("user", "alice"))

    assert found == [event for event in everything if event["username"] == "alice"]
    assert {event["type"] for event in found} == {
        "login.succeeded",
        "token.issued",
        "login.failed",
        "user.sessions_revoked",
        "user.password_changed",
    }
    assert all_events(client, admin_headers, ("user", "nobody")) == []


def test_audit_since_returns_events_at_or_after_the_time(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any], audit: AuditLog
) -> None:
    alice_tokens(client)
    before = all_events(client, admin_headers)
    time.sleep(0.01)
    since = datetime.now(UTC)
    time.sleep(0.01)
    assert token_request(client, "alice", "wrong-password").status_code == 400
    assert token_request(client, "nobody", "wrong-password").status_code == 400

    for spelling in (since.isoformat(), since.isoformat().replace("+00:00", "Z")):
        found = all_events(client, admin_headers, ("since", spelling))
        assert [event["type"] for event in found] == ["login.failed", "login.failed"]
    other_zone = since.astimezone(datetime.now().astimezone().tzinfo).isoformat()
    assert len(all_events(client, admin_headers, ("since", other_zone))) == 2
    early = (since - timedelta(hours=1)).isoformat()
    assert len(all_events(client, admin_headers, ("since", early))) == len(before) + 2
    late = (since + timedelta(hours=1)).isoformat()
    assert all_events(client, admin_headers, ("since", late)) == []


def test_audit_since_without_an_offset_is_not_a_server_error(
    client: TestClient, admin_headers: dict[str, str], audit: AuditLog
) -> None:
    naive = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    audit.flush()

    answering = TestClient(client.app, raise_server_exceptions=False)
    response = answering.get(AUDIT_URL, headers=admin_headers, params={"since": naive})

    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:  # read as UTC: the admin's login is in the hour
        assert len(response.json()["items"]) == 2


def walk_pages(client: TestClient, headers: dict[str, str], limit: int) -> list[dict[str, Any]]:
    """Every event, page by page with ``before=next_before`` until it is null."""
    seen: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        params: list[tuple[str, str | int]] = [("limit", limit)]
        if before is not None:
            params.append(("before", before))
        body = fetch(client, headers, *params)
        seen += body["items"]
        if body["next_before"] is None:
            assert len(body["items"]) < limit
            return seen
        assert len(body["items"]) == limit
        assert body["next_before"] == body["items"][-1]["id"]
        before = body["next_before"]


def test_audit_pages_of_two_walk_every_event_newest_first_once(
    client: TestClient, admin_headers: dict[str, str], audit: AuditLog
) -> None:
    # 2 events of the admin's login, then 5 failures: 7 (a last page of one), then 8 (an
    # empty last page after a full one).
    for number in range(6):
        assert token_request(client, f"nobody-{number}", "wrong-password").status_code == 400
        if number < 4:
            continue
        everything = all_events(client, admin_headers)
        assert len(everything) == number + 3

        seen = walk_pages(client, admin_headers, 2)

        assert seen == everything
        ids = [event["id"] for event in seen]
        assert ids == sorted(set(ids), reverse=True)


def test_audit_before_combines_with_the_other_filters(
    client: TestClient, admin_headers: dict[str, str], mixed_trail: dict[str, Any]
) -> None:
    failed = all_events(client, admin_headers, ("type", "login.failed"))
    first = fetch(client, admin_headers, ("type", "login.failed"), ("limit", 1))
    assert first["items"] == failed[:1]
    assert first["next_before"] == failed[0]["id"]

    rest = fetch(
        client,
        admin_headers,
        ("type", "login.failed"),
        ("limit", 1),
        ("before", first["next_before"]),
    )

    assert rest["items"] == failed[1:2]


# --- the WebSocket stream -------------------------------------------------------------------


def receive_within(ws: WebSocketTestSession, seconds: float = STREAM_DEADLINE) -> dict[str, Any]:
    """``receive_json`` with a deadline (TestClient's own blocks forever): TimeoutError if
    nothing comes, WebSocketDisconnect when the server closes."""

    async def receive() -> Any:
        with anyio.fail_after(seconds):
            return await ws._send_rx.receive()

    message = ws.portal.call(receive)
    if message["type"] == "websocket.close":
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason", ""))
    event: dict[str, Any] = json.loads(message["text"])
    return event


def refusal(
    client: TestClient, url: str = STREAM_URL, headers: dict[str, str] | None = None
) -> WebSocketDisconnect:
    """How the stream refuses: a close, right at the handshake or as the first message."""
    with pytest.raises(WebSocketDisconnect) as caught:
        with client.websocket_connect(url, headers=headers or {}) as ws:
            receive_within(ws, 2.0)
    return caught.value


def test_stream_pushes_a_login_made_after_connecting(
    client: TestClient,
    admin_headers: dict[str, str],
    user: dict[str, Any],
    audit: AuditLog,
) -> None:
    audit.flush()  # the admin's own login is stored before the stream starts

    with client.websocket_connect(STREAM_URL, headers=admin_headers) as ws:
        tokens = alice_tokens(client)
        received = [receive_within(ws), receive_within(ws)]

    assert [event["type"] for event in received] == ["login.succeeded", "token.issued"]
    assert all(event["subject_id"] == user["id"] for event in received)
    assert received[1]["details"]["jti"] == jti_of(tokens["access_token"])
    stored = all_events(client, admin_headers, ("user", "alice"))
    assert received == stored[::-1]


def test_stream_accepts_the_token_in_the_query_string(
    client: TestClient, admin_headers: dict[str, str], audit: AuditLog
) -> None:
    audit.flush()
    token = admin_headers["Authorization"].removeprefix("Bearer ")

    with client.websocket_connect(f"{STREAM_URL}?access_token={token}") as ws:
        assert token_request(client, "nobody", "wrong-password").status_code == 400
        event = receive_within(ws)

    assert event["type"] == "login.failed"
    assert event["details"] == {"reason": "unknown_user"}


def test_stream_does_not_replay_earlier_events_and_keeps_their_order(
    client: TestClient, admin_headers: dict[str, str], audit: AuditLog
) -> None:
    for number in range(3):
        assert token_request(client, f"early-{number}", "wrong-password").status_code == 400
    audit.flush()

    with client.websocket_connect(STREAM_URL, headers=admin_headers) as ws:
        response = client.post("/admin/scopes", headers=admin_headers, json={"name": "first"})
        assert response.status_code == 201
        response = client.post("/admin/scopes", headers=admin_headers, json={"name": "second"})
        assert response.status_code == 201
        received = [receive_within(ws), receive_within(ws)]
        with pytest.raises(TimeoutError):
            receive_within(ws, 0.8)  # another poll: nothing else comes

    assert [event["details"] for event in received] == [{"scope": "first"}, {"scope": "second"}]
    assert received[0]["id"] < received[1]["id"]


def test_stream_without_a_token_is_closed_1008_not_authenticated(client: TestClient) -> None:
    refused = refusal(client)

    assert refused.code == WS_POLICY_VIOLATION
    assert refused.reason == "not_authenticated"


def test_stream_with_a_user_token_is_closed_1008_insufficient_scope(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    refused = refusal(client, headers=user_headers)

    assert refused.code == WS_POLICY_VIOLATION
    assert refused.reason == "insufficient_scope"


def test_stream_with_an_unusable_token_is_closed_1008(
    client: TestClient, admin_headers: dict[str, str], admin_forger: Forger
) -> None:
    token = admin_headers["Authorization"].removeprefix("Bearer ")
    past = int(time.time()) - 3600
    expired = admin_forger.token(payload=admin_forger.claims(exp=past, iat=past - 60))
    for url, headers, reason in [
        (STREAM_URL, bearer("not-a-jwt"), "invalid_token"),
        (STREAM_URL, bearer(expired), "invalid_token"),
        (f"{STREAM_URL}?access_token=not-a-jwt", None, "invalid_token"),
        (f"{STREAM_URL}?access_token={token}", admin_headers, "invalid_request"),
        (f"{STREAM_URL}?access_token={token}&access_token={token}", None, "invalid_request"),
    ]:
        refused = refusal(client, url, headers)

        assert (refused.code, refused.reason) == (WS_POLICY_VIOLATION, reason), url

    # A revoked token is refused too, though it verifies.
    assert client.post(REVOKE_URL, data={"token": token}).status_code == 200
    refused = refusal(client, headers=admin_headers)
    assert (refused.code, refused.reason) == (WS_POLICY_VIOLATION, "invalid_token")


def test_stream_is_closed_1008_when_the_token_expires(
    make_settings: Callable[..., Settings],
    migrated: None,
    admin: dict[str, Any],
    admin_forger: Forger,
) -> None:
    with TestClient(create_app(make_settings(jwt_leeway=0))) as client:
        now = int(time.time())
        expires = math.ceil(time.time() + 0.7)  # 0.7 to 1.7 s from now
        token = admin_forger.token(payload=admin_forger.claims(exp=expires, iat=now, nbf=now))
        with (
            client.websocket_connect(STREAM_URL, headers=bearer(token)) as ws,
            pytest.raises(WebSocketDisconnect) as caught,
        ):
            while True:  # events may come first; the close must come within the deadline
                receive_within(ws, 5.0)

    assert caught.value.code == WS_POLICY_VIOLATION
    assert caught.value.reason == "invalid_token"
    assert time.time() >= expires


def test_stream_is_closed_1008_when_the_admin_loses_the_admin_scope(
    client: TestClient,
    admin: dict[str, Any],
    admin_headers: dict[str, str],
    make_user: MakeUser,
    audit: AuditLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admin_audit, "RECHECK_INTERVAL", 0.3)
    make_user("second-admin", "second-password-1", scopes=("admin",))
    other = bearer(password_login(client, "second-admin", "second-password-1")["access_token"])
    audit.flush()

    with client.websocket_connect(STREAM_URL, headers=admin_headers) as ws:
        demoted = client.patch(f"/admin/users/{admin['id']}", headers=other, json={"scopes": []})
        assert demoted.status_code == 200, demoted.text
        received: list[dict[str, Any]] = []
        with pytest.raises(WebSocketDisconnect) as caught:
            while True:
                received.append(receive_within(ws, 5.0))

    assert caught.value.code == WS_POLICY_VIOLATION
    assert caught.value.reason == "insufficient_scope"
    assert [event["type"] for event in received] in ([], ["user.updated"])


# --- a client address that does not fit -----------------------------------------------------


def test_a_long_forwarded_address_does_not_stop_the_audit_trail(
    make_settings: Callable[..., Settings],
    migrated: None,
    admin: dict[str, Any],
) -> None:
    forwarded = "fe80::1%" + "z" * 100
    app = create_app(make_settings(trusted_proxies="127.0.0.1"))
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        log = app_audit(app)
        headers = bearer(password_login(client, admin["username"], ADMIN_PASSWORD)["access_token"])
        refused = client.post(
            TOKEN_URL,
            data={"grant_type": "password", "username": "alice", "password": "x"},
            headers={"X-Forwarded-For": forwarded},
        )
        assert refused.status_code == 400
        later = client.post(
            "/admin/scopes", headers=headers, json={"name": "written-after-the-long-address"}
        )
        assert later.status_code == 201

        log.flush()
        events = all_events(client, headers)

    assert "scope.created" in {event["type"] for event in events}
    assert all(len(event["ip"] or "") <= 64 for event in events)


# --- the command line -------------------------------------------------------------------------


def run_cli(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSVC_")}
    env.update({f"AUTHSVC_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run(
        [*authsvc_command(), *args],
        cwd=tmp_path,
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_key_rotation_records_key_rotated(
    client: TestClient,
    admin_headers: dict[str, str],
    audit: AuditLog,
    database_url: str,
    keys_dir: Path,
    tmp_path: Path,
) -> None:
    result = run_cli(tmp_path, "keys", "rotate", database_url=database_url, keys_dir=str(keys_dir))

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    kid = result.stdout.split()[4]
    [event] = all_events(client, admin_headers, ("type", "key.rotated"))
    assert_event(
        event,
        type="key.rotated",
        actor_id="cli",
        ip=None,
        user_agent=None,
        details={"kid": kid, "algorithm": "RS256"},
    )


def test_cli_key_rotation_without_a_database_notes_it_and_succeeds(
    tmp_path: Path, keys_dir: Path
) -> None:
    before = set(keys_dir.glob("*.pem"))

    result = run_cli(
        tmp_path,
        "keys",
        "rotate",
        database_url=UNREACHABLE_POSTGRES,
        keys_dir=str(keys_dir),
        db_connect_timeout="1",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Rotated: new RS256 key ")
    assert result.stderr == "note: the rotation is not in the audit trail (OperationalError)\n"
    assert len(set(keys_dir.glob("*.pem")) - before) == 1


@pytest.mark.parametrize(
    "params",
    [
        {"before": str(2**63)},
        {"user": "ali\x00ce"},
        {"type": "login.\x00succeeded"},
        {"type": "LOGIN SUCCEEDED"},
    ],
    ids=["before-beyond-bigint", "nul-in-user", "nul-in-type", "not-an-event-type"],
)
def test_audit_query_values_the_database_cannot_hold_are_422(
    client: TestClient, admin_headers: dict[str, str], params: dict[str, str]
) -> None:
    answering = TestClient(client.app, raise_server_exceptions=False)
    response = answering.get(AUDIT_URL, headers=admin_headers, params=params)
    assert response.status_code == 422, response.text


def test_websocket_handshake_log_lines_do_not_carry_the_token(client: TestClient) -> None:
    # uvicorn logs WebSocket handshakes on uvicorn.error, HTTP requests on uvicorn.access.
    for name in ("uvicorn.access", "uvicorn.error"):
        record = logging.LogRecord(
            name,
            logging.INFO,
            __file__,
            0,
            '%s - "WebSocket %s" %s',
            ("127.0.0.1:5000", "/admin/audit/stream?access_token=eyJ.secret.sig", "[accepted]"),
            None,
        )
        assert all(log_filter.filter(record) for log_filter in logging.getLogger(name).filters)
        assert "eyJ.secret.sig" not in record.getMessage()
        assert "access_token=[redacted]" in record.getMessage()

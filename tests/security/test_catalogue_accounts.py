"""Security catalogue, password, account and HTTP rows (P01-P04, P07, A01-A03, H01-H02).

Each test is one catalogue row (or part of one): the attack or bad input, and the exact answer
the service must give. Passwords beyond bcrypt's 72-byte limit, Unicode spellings of
passwords and usernames, user enumeration through the token endpoint, injection text in
usernames, mass assignment, reaching another user's resources or the admin API, and where a
bearer token may (not) come from.
"""

from __future__ import annotations

import contextlib
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from authsvc.app import create_app
from authsvc.config import Settings
from tests.helpers import (
    USER_PASSWORD,
    assert_insufficient_scope,
    assert_not_authenticated,
    assert_oauth_error,
    bearer,
    password_login,
    refresh_grant,
    stable_headers,
    token_request,
)

INVALID_CREDENTIALS = "Invalid username or password"
WRONG_PASSWORD = "wrong-password-1"
BOB_PASSWORD = "bob-password-1"
TARGET_PASSWORD = "target-admin-pw-1"
ATTACKER_PASSWORD = "attacker-pw-1"
# What a database or framework error would leak into a response body (compared lower-case).
LEAK_MARKERS = ("sqlite", "psycopg", "sqlalchemy", "select", "syntax", "traceback")
SQL_USERNAMES = ["' OR '1'='1", "admin'--", '"; DROP TABLE users; --']
NUL_USERNAMES = ["ali\x00ce", "\x00"]


# --- helpers -------------------------------------------------------------------------------------


def _sub(token_body: dict[str, Any]) -> str:
    """The ``sub`` of an access token from a token response (the signature is checked elsewhere;
    here only whose account the token names matters)."""
    claims = jwt.decode(token_body["access_token"], options={"verify_signature": False})
    sub: str = claims["sub"]
    return sub


def _assert_invalid_credentials(response: httpx2.Response) -> None:
    """The one answer of the password grant to any bad credentials: no challenge header."""
    assert_oauth_error(response, 400, "invalid_grant", INVALID_CREDENTIALS)
    assert "www-authenticate" not in response.headers


def _create_user(
    client: TestClient, headers: dict[str, str], username: str, password: str
) -> httpx2.Response:
    return client.post(
        "/admin/users", headers=headers, json={"username": username, "password": password}
    )


def _created_id(response: httpx2.Response) -> str:
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


def _user_count(client: TestClient, admin_headers: dict[str, str]) -> int:
    response = client.get("/admin/users", headers=admin_headers)
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


def _stored_profile(
    client: TestClient, admin_headers: dict[str, str], user_id: str
) -> dict[str, Any]:
    """A user's profile read through the admin API, which reads the row itself (``/users/me``
    may answer from the per-process cache for up to ``auth_cache_ttl``)."""
    response = client.get(f"/admin/users/{user_id}", headers=admin_headers)
    assert response.status_code == 200, response.text
    profile: dict[str, Any] = response.json()
    return profile


def _assert_no_leak(response: httpx2.Response) -> None:
    body = response.text.lower()
    for marker in LEAK_MARKERS:
        assert marker not in body, (marker, response.text)


def _assert_extra_forbidden(response: httpx2.Response, fields: set[str]) -> None:
    """422 naming exactly the fields the input model does not have."""
    assert response.status_code == 422, response.text
    assert "www-authenticate" not in response.headers
    errors = response.json()["detail"]
    assert {(error["type"], tuple(error["loc"])) for error in errors} == {
        ("extra_forbidden", ("body", field)) for field in fields
    }


def _release(app: FastAPI) -> None:
    """Stop the audit writer and close the pool of an app this module built itself, whether or
    not the lifespan's shutdown did (PostgreSQL would otherwise run out of connections)."""
    ctx = app.state.ctx
    audit = getattr(ctx, "audit", None)
    if audit is not None:
        audit.close()
    ctx.engine.dispose()


@pytest.fixture
def lockout_client(make_settings: Callable[..., Settings], migrated: None) -> Iterator[TestClient]:
    """An app that locks an account after 3 consecutive failures, with no per-address limit
    (a 429 would hide what the account's state looks like)."""
    app = create_app(make_settings(lockout_threshold=3, rate_limit_failures=0))
    with contextlib.ExitStack() as stack:
        stack.callback(_release, app)
        yield stack.enter_context(TestClient(app))


# --- P01, P02: bcrypt's 72-byte limit ----------------------------------------------------------

ASCII_73 = ("Tr0ub4dor&3-" * 7)[:73]
EURO_25 = "\u20ac" * 25


@pytest.mark.parametrize(
    ("password", "near_misses"),
    [
        pytest.param(
            ASCII_73,
            [ASCII_73[:72], ASCII_73[:72] + "#", ASCII_73 + "x"],
            id="73-ascii-bytes",
        ),
        pytest.param(
            EURO_25,
            ["\u20ac" * 24, "\u20ac" * 24 + "x", "\u20ac" * 24 + "\u20ad", EURO_25 + "\u20ac"],
            id="25-euro-signs-75-bytes",
        ),
    ],
)
def test_p01_passwords_beyond_72_bytes_verify_exactly(
    client: TestClient, admin_headers: dict[str, str], password: str, near_misses: list[str]
) -> None:
    """P01: passwords of 73 ASCII bytes and 25 euro signs verify exactly; what agrees with them
    on the first 72 bytes is invalid_grant."""
    assert len(password.encode("utf-8")) > 72
    user_id = _created_id(_create_user(client, admin_headers, "longpass", password))

    for near_miss in near_misses:
        assert near_miss.encode("utf-8")[:72] == password.encode("utf-8")[:72]
        _assert_invalid_credentials(token_request(client, "longpass", near_miss))

    assert _sub(password_login(client, "longpass", password)) == user_id


def test_p02_seventy_two_bytes_stored_refuses_an_extra_73rd_byte(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    """P02: 72 x "a" stored; 72 x "a" + "X" is invalid_grant, 72 x "a" itself logs in."""
    user_id = _created_id(_create_user(client, admin_headers, "seventytwo", "a" * 72))

    _assert_invalid_credentials(token_request(client, "seventytwo", "a" * 72 + "X"))

    assert _sub(password_login(client, "seventytwo", "a" * 72)) == user_id


# --- P03: Unicode spellings of passwords and usernames -----------------------------------------

PASSWORD_NFC = unicodedata.normalize("NFC", "caf\u00e9-cr\u00e8me-1")
PASSWORD_NFD = unicodedata.normalize("NFD", PASSWORD_NFC)


@pytest.mark.parametrize(
    ("stored", "typed"),
    [(PASSWORD_NFC, PASSWORD_NFD), (PASSWORD_NFD, PASSWORD_NFC)],
    ids=["stored-nfc-typed-nfd", "stored-nfd-typed-nfc"],
)
def test_p03_nfc_and_nfd_spellings_of_a_password_open_the_same_account(
    client: TestClient, admin_headers: dict[str, str], stored: str, typed: str
) -> None:
    """P03: README documents NFC-normalized passwords, so the NFD spelling of the password
    logs in to the same account as the NFC one (and the other way round)."""
    assert stored != typed
    user_id = _created_id(_create_user(client, admin_headers, "cafe", stored))

    assert _sub(password_login(client, "cafe", typed)) == user_id
    _assert_invalid_credentials(token_request(client, "cafe", "cafe-creme-1"))


# Usernames are case-insensitive and NFKC-normalized (README, services/users.py): "Admin" and
# the full-width spelling name the existing account. The Cyrillic look-alike (U+0430) is a
# different string under both rules, yet reads as "admin": names may not mix alphabets.
LOOKALIKES = [
    pytest.param("Admin", True, id="upper-case"),
    pytest.param("\uff41\uff44\uff4d\uff49\uff4e", True, id="full-width"),
    pytest.param("\u0430dmin", False, id="cyrillic-a"),
]


@pytest.fixture
def target(make_user: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The existing account the look-alikes imitate."""
    return make_user("admin", TARGET_PASSWORD)


@pytest.mark.parametrize(("name", "same_account"), LOOKALIKES)
def test_p03_lookalike_usernames_create_no_duplicate_account(
    client: TestClient,
    admin_headers: dict[str, str],
    target: dict[str, Any],
    name: str,
    same_account: bool,
) -> None:
    """P03: with "admin" existing, creating "Admin", full-width or Cyrillic-a "admin" is
    refused (409 taken, or 422 for mixing alphabets) and no second account appears."""
    before = _user_count(client, admin_headers)

    response = _create_user(client, admin_headers, name, ATTACKER_PASSWORD)

    if same_account:
        assert response.status_code == 409, response.text
        assert response.json() == {"detail": "Username already taken"}
    else:
        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert error["loc"] == ["body", "username"]
        assert error["msg"] == (
            "Value error, username must not mix alphabets, such as Latin and Cyrillic letters"
        )
    assert _user_count(client, admin_headers) == before
    _assert_invalid_credentials(token_request(client, "admin", ATTACKER_PASSWORD))
    assert _sub(password_login(client, "admin", TARGET_PASSWORD)) == target["id"]


@pytest.mark.parametrize(("name", "same_account"), LOOKALIKES)
def test_p03_lookalike_usernames_never_log_in_to_another_account(
    client: TestClient,
    make_user: Callable[..., dict[str, Any]],
    target: dict[str, Any],
    name: str,
    same_account: bool,
) -> None:
    """P03: a look-alike name with the target's password yields a token only where the name is
    the target's own (case, width) and then one for the target; never a token for an account
    other than the one named."""
    make_user("bob", BOB_PASSWORD)

    response = token_request(client, name, TARGET_PASSWORD)

    if same_account:
        assert response.status_code == 200, response.text
        assert _sub(response.json()) == target["id"]
    else:
        _assert_invalid_credentials(response)
    _assert_invalid_credentials(token_request(client, name, BOB_PASSWORD))


# --- P04: no user enumeration ------------------------------------------------------------------


def test_p04_unknown_wrong_disabled_and_locked_answer_byte_identically(
    lockout_client: TestClient, make_user: Callable[..., dict[str, Any]]
) -> None:
    """P04: unknown user, wrong password, disabled and locked accounts get the same status,
    body bytes and headers (but the per-request ones): 400 invalid_grant."""
    make_user("alice", USER_PASSWORD)
    make_user("bob", BOB_PASSWORD)
    make_user("carol", "carol-password-1", is_active=False)
    for _ in range(3):  # the threshold: alice is locked after this
        _assert_invalid_credentials(token_request(lockout_client, "alice", WRONG_PASSWORD))

    responses = {
        "unknown user": token_request(lockout_client, "nobody", WRONG_PASSWORD),
        "wrong password": token_request(lockout_client, "bob", WRONG_PASSWORD),
        "disabled, right password": token_request(lockout_client, "carol", "carol-password-1"),
        "disabled, wrong password": token_request(lockout_client, "carol", WRONG_PASSWORD),
        "locked, right password": token_request(lockout_client, "alice", USER_PASSWORD),
        "locked, wrong password": token_request(lockout_client, "alice", WRONG_PASSWORD),
    }

    for response in responses.values():
        _assert_invalid_credentials(response)
    reference = responses["unknown user"]
    for name, response in responses.items():
        assert response.content == reference.content, name
        assert stable_headers(response) == stable_headers(reference), name
    # The refusals were per account, not a blanket one: bob, never locked, still logs in.
    password_login(lockout_client, "bob", BOB_PASSWORD)


# --- P07: injection text and NUL bytes in usernames --------------------------------------------


@pytest.mark.parametrize("username", SQL_USERNAMES + NUL_USERNAMES)
def test_p07_injection_and_nul_usernames_at_the_token_endpoint_are_invalid_grant(
    client: TestClient, user: dict[str, Any], username: str
) -> None:
    """P07: SQL text and NUL bytes as the username: 400 invalid_grant, no database error text,
    and the users table is intact."""
    response = token_request(client, username, USER_PASSWORD)

    _assert_invalid_credentials(response)
    _assert_no_leak(response)
    assert _sub(password_login(client, "alice", USER_PASSWORD)) == user["id"]


@pytest.mark.parametrize("username", SQL_USERNAMES + NUL_USERNAMES)
def test_p07_injection_and_nul_usernames_at_user_creation_are_422(
    client: TestClient, admin_headers: dict[str, str], username: str
) -> None:
    """P07: the same usernames through POST /admin/users: 422 naming the username, not 500,
    and nothing is created."""
    before = _user_count(client, admin_headers)

    response = _create_user(client, admin_headers, username, "long-enough-1")

    assert response.status_code == 422, response.text
    assert [tuple(error["loc"]) for error in response.json()["detail"]] == [("body", "username")]
    _assert_no_leak(response)
    assert _user_count(client, admin_headers) == before


# --- A01: mass assignment ------------------------------------------------------------------------

SELF_FORBIDDEN = [
    {"scopes": ["admin"]},
    {"is_active": False},
    {"id": "00000000-0000-0000-0000-000000000000"},
    {"username": "mallory"},
    {"password_hash": "$2b$04$abcdefghijklmnopqrstuuAbCdEfGhIjKlMnOpQrStUvWxYz01234"},
    {"password": "mallory-password-1"},
    {"created_at": "2000-01-01T00:00:00Z"},
    {"updated_at": "2000-01-01T00:00:00Z"},
    {"failed_logins": 0, "locked_until": None},
    {"full_name": "Mallory", "scopes": ["admin"]},
]


@pytest.mark.parametrize("body", SELF_FORBIDDEN, ids=lambda body: "+".join(body))
def test_a01_mass_assignment_on_patch_users_me_is_422_and_changes_nothing(
    client: TestClient,
    user: dict[str, Any],
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
    body: dict[str, Any],
) -> None:
    """A01: PATCH /users/me may set only email and full_name; any other field is 422 and
    nothing (not even the allowed field beside it) changes."""
    before = _stored_profile(client, admin_headers, user["id"])

    response = client.patch("/users/me", headers=user_headers, json=body)

    _assert_extra_forbidden(response, set(body) - {"full_name", "email"})
    assert _stored_profile(client, admin_headers, user["id"]) == before
    assert _sub(password_login(client, "alice", USER_PASSWORD)) == user["id"]
    assert_insufficient_scope(client.get("/admin/users", headers=user_headers), "admin")


ADMIN_FORBIDDEN = [
    {"password_hash": "$2b$04$abcdefghijklmnopqrstuuAbCdEfGhIjKlMnOpQrStUvWxYz01234"},
    {"id": "00000000-0000-0000-0000-000000000000"},
    {"username": "mallory"},
    {"created_at": "2000-01-01T00:00:00Z"},
    {"updated_at": "2000-01-01T00:00:00Z"},
    {"failed_logins": 0, "locked_until": None},
    {"full_name": "Mallory", "is_active": False, "password_hash": "x"},
]


@pytest.mark.parametrize("body", ADMIN_FORBIDDEN, ids=lambda body: "+".join(body))
def test_a01_unknown_fields_on_admin_user_update_are_422_and_change_nothing(
    client: TestClient,
    user: dict[str, Any],
    admin_headers: dict[str, str],
    body: dict[str, Any],
) -> None:
    """A01: PATCH /admin/users/{id} takes email, full_name, is_active, scopes and password;
    any other field is 422 and nothing changes."""
    before = _stored_profile(client, admin_headers, user["id"])

    response = client.patch(f"/admin/users/{user['id']}", headers=admin_headers, json=body)

    _assert_extra_forbidden(response, set(body) - {"full_name", "is_active"})
    assert _stored_profile(client, admin_headers, user["id"]) == before
    assert _sub(password_login(client, "alice", USER_PASSWORD)) == user["id"]


# --- A02: reaching another user's resources ----------------------------------------------------


def test_a02_a_user_cannot_end_another_users_session(
    client: TestClient, user: dict[str, Any], make_user: Callable[..., dict[str, Any]]
) -> None:
    """A02: bob's token against DELETE /users/me/sessions/{alice's session}: 404 Session not
    found, as for a session that does not exist; the admin route for it is 403
    insufficient_scope; alice's session still works."""
    make_user("bob", BOB_PASSWORD)
    alice = password_login(client, "alice", USER_PASSWORD)
    bob_headers = bearer(password_login(client, "bob", BOB_PASSWORD)["access_token"])
    alice_sessions = client.get("/users/me/sessions", headers=bearer(alice["access_token"]))
    [alice_session] = alice_sessions.json()

    response = client.delete(f"/users/me/sessions/{alice_session['id']}", headers=bob_headers)
    unknown = client.delete(f"/users/me/sessions/{uuid.uuid4()}", headers=bob_headers)

    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "Session not found"}
    assert "www-authenticate" not in response.headers
    assert response.content == unknown.content
    assert unknown.status_code == 404
    assert_insufficient_scope(
        client.delete(
            f"/admin/users/{user['id']}/sessions/{alice_session['id']}", headers=bob_headers
        ),
        "admin",
    )
    still = client.get("/users/me/sessions", headers=bearer(alice["access_token"]))
    assert [entry["id"] for entry in still.json()] == [alice_session["id"]]
    refreshed = refresh_grant(client, alice["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert _sub(refreshed.json()) == user["id"]


# --- A03: the admin API with a user token ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/admin/users", None),
        ("POST", "/admin/users", {"username": "mallory", "password": "mallory-password-1"}),
        ("GET", "/admin/users/{id}", None),
        ("PATCH", "/admin/users/{id}", {"scopes": ["admin"]}),
        ("DELETE", "/admin/users/{id}", None),
        ("POST", "/admin/users/{id}/revoke-sessions", None),
        ("GET", "/admin/scopes", None),
        ("POST", "/admin/scopes", {"name": "mallory"}),
        ("GET", "/admin/clients", None),
        ("POST", "/admin/clients", {"name": "evil", "grant_types": ["client_credentials"]}),
        ("GET", "/admin/audit", None),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a03_admin_api_with_a_user_token_is_403_insufficient_scope(
    client: TestClient,
    user: dict[str, Any],
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    """A03: every admin route answers a token without the admin scope 403 insufficient_scope
    naming "admin", and does nothing."""
    before = _stored_profile(client, admin_headers, user["id"])
    users_before = _user_count(client, admin_headers)

    response = client.request(method, path.format(id=user["id"]), headers=user_headers, json=body)

    assert_insufficient_scope(response, "admin")
    assert _stored_profile(client, admin_headers, user["id"]) == before
    assert _user_count(client, admin_headers) == users_before


# --- H01, H02: where a bearer token may come from ----------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/users/me"),
        ("PATCH", "/users/me"),
        ("GET", "/users/me/sessions"),
        ("GET", "/admin/users"),
    ],
    ids=lambda value: value,
)
def test_h01_no_token_is_401_with_a_plain_challenge(
    client: TestClient, user: dict[str, Any], method: str, path: str
) -> None:
    """H01: a protected route without a token: 401 and a bare ``Bearer`` challenge."""
    assert_not_authenticated(client.request(method, path))


def test_h02_token_in_the_url_query_is_ignored(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    """H02: ``?access_token=`` is not a way to send a token over HTTP (RFC 6750 §2.3 is for
    WebSockets here): 401 with the plain challenge, as if there were no token."""
    token = user_headers["Authorization"].removeprefix("Bearer ")

    response = client.get("/users/me", params={"access_token": token})

    assert_not_authenticated(response)


def test_h02_token_in_a_form_body_of_a_get_is_ignored(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    """H02: ``access_token=`` in a form-encoded GET body is not a token either: 401 plain."""
    token = user_headers["Authorization"].removeprefix("Bearer ")

    response = client.request(
        "GET",
        "/users/me",
        content=f"access_token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert_not_authenticated(response)

"""Brute-force defences of the token and introspection endpoints, through HTTP.

Account lockout (RFC 6749 §4.3.2, ASVS V6.3.1): consecutive wrong passwords lock an account,
and a locked account answers exactly like a wrong password. The per-address failure limit:
too many failed guesses from one client address answer 429 until the window ends, with the
address taken from X-Forwarded-For only through trusted proxies.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.db.models import AuditEvent, RefreshFamily, User
from authsvc.oauth2.grants import password as password_grant
from authsvc.oauth2.grants.password import PasswordGrant
from authsvc.services.lockout import AccountLockout
from tests.helpers import (
    TOKEN_URL,
    USER_PASSWORD,
    access_token_for,
    assert_oauth_error,
    basic,
    bearer,
    create_client,
    password_login,
    refresh_grant,
    stable_headers,
    within_one_window,
)

INTROSPECT_URL = "/oauth2/introspect"
REVOKE_URL = "/oauth2/revoke"
INVALID_CREDENTIALS = "Invalid username or password"
WRONG = "wrong-password-1"
BOB_PASSWORD = "bob-password-1"
RATE_LIMITED_BODY = (
    b'{"error":"invalid_request",'
    b'"error_description":"Too many failed attempts from this address; retry later"}'
)
TESTCLIENT_PEER = ("testclient", 50000)
PROXY_PEER = ("10.0.0.1", 50000)

Shape = tuple[int, bytes, tuple[tuple[str, str], ...]]
OpenClient = Callable[..., TestClient]


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def open_client(make_settings: Callable[..., Settings], migrated: None) -> Iterator[OpenClient]:
    """Start an app with settings overrides, connected from ``peer``; each call is a replica of
    its own on the same database, so two calls share the counters and the user rows."""
    with contextlib.ExitStack() as stack:

        def factory(peer: tuple[str, int] = TESTCLIENT_PEER, **overrides: Any) -> TestClient:
            settings = make_settings(**overrides)
            if settings.rate_limit_failures:
                within_one_window(settings.rate_limit_window, needed=3)
            app = create_app(settings)
            # Runs after the client's shutdown (last in, first out).
            stack.callback(release, app)
            return stack.enter_context(TestClient(app, client=peer))

        yield factory


def release(app: FastAPI) -> None:
    """Stop the audit writer and close the app's pool, whether or not the lifespan's shutdown
    did (an await after cancelling its own task group can skip both); otherwise every test
    leaves connections open and PostgreSQL runs out of them."""
    ctx = app.state.ctx
    audit = getattr(ctx, "audit", None)
    if audit is not None:
        audit.close()
    ctx.engine.dispose()


@pytest.fixture
def bob(make_user: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return make_user("bob", BOB_PASSWORD)


def shape(response: httpx2.Response) -> Shape:
    """Everything a caller can observe of a response, except the clock and the request id."""
    return response.status_code, response.content, tuple(stable_headers(response))


def login(
    client: TestClient, username: str, password: str, headers: dict[str, str] | None = None
) -> httpx2.Response:
    return client.post(
        TOKEN_URL,
        data={"grant_type": "password", "username": username, "password": password},
        headers=headers,
    )


def password_login_via(client: TestClient, headers: dict[str, str]) -> None:
    """Alice logs in with the right password, with these headers; it must succeed."""
    response = login(client, "alice", USER_PASSWORD, headers)
    assert response.status_code == 200, response.text


def fail_logins(client: TestClient, username: str, times: int) -> None:
    for _ in range(times):
        assert_oauth_error(
            login(client, username, WRONG), 400, "invalid_grant", INVALID_CREDENTIALS
        )


def lockout_row(client: TestClient, username: str) -> tuple[int, datetime | None]:
    """The user's (failed_logins, locked_until), read through the app's own sessions."""
    with client.app.state.ctx.sessionmaker() as session:  # type: ignore[attr-defined]
        row = session.execute(
            select(User.failed_logins, User.locked_until).where(User.username == username)
        ).one()
        return row.failed_logins, row.locked_until


def set_locked_until(client: TestClient, username: str, value: datetime | None) -> None:
    with client.app.state.ctx.sessionmaker() as session:  # type: ignore[attr-defined]
        session.execute(update(User).where(User.username == username).values(locked_until=value))
        session.commit()


def assert_rate_limited(response: httpx2.Response, window: int) -> int:
    """The exact 429 of the per-address limit; returns its Retry-After."""
    assert response.status_code == 429, response.text
    assert response.content == RATE_LIMITED_BODY
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert "www-authenticate" not in response.headers
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= window
    return int(retry_after)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def count_verifications(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Record the stored hash each password verification of the app is made against.

    Spies on ``_verify``, the bcrypt work itself, which every public verify runs in the pool.
    """
    hasher = client.app.state.ctx.hasher  # type: ignore[attr-defined]
    seen: list[str | None] = []
    original = hasher._verify

    def verify(password: str, password_hash: str | None) -> tuple[bool, str | None]:
        seen.append(password_hash)
        result: tuple[bool, str | None] = original(password, password_hash)
        return result

    monkeypatch.setattr(hasher, "_verify", verify)
    return seen


# --- account lockout ---------------------------------------------------------------------------


def test_five_wrong_passwords_lock_and_the_right_one_then_looks_wrong(
    open_client: OpenClient, user: dict[str, Any]
) -> None:
    client = open_client(rate_limit_failures=0)
    wrong = shape(login(client, "alice", WRONG))
    fail_logins(client, "alice", 4)

    locked = login(client, "alice", USER_PASSWORD)

    assert_oauth_error(locked, 400, "invalid_grant", INVALID_CREDENTIALS)
    assert shape(locked) == wrong
    assert shape(locked) == shape(login(client, "nobody", WRONG))


def test_four_wrong_passwords_do_not_lock(open_client: OpenClient, user: dict[str, Any]) -> None:
    client = open_client(rate_limit_failures=0)
    fail_logins(client, "alice", 4)

    assert lockout_row(client, "alice") == (4, None)
    password_login(client, "alice", USER_PASSWORD)
    assert lockout_row(client, "alice") == (0, None)


def test_lock_sets_locked_until_for_the_duration_and_restarts_the_count(
    open_client: OpenClient, user: dict[str, Any]
) -> None:
    client = open_client(rate_limit_failures=0, lockout_duration=900)
    before = datetime.now(UTC)
    fail_logins(client, "alice", 5)
    after = datetime.now(UTC)

    failed, locked_until = lockout_row(client, "alice")

    assert failed == 0
    assert locked_until is not None
    assert before + timedelta(seconds=899) <= locked_until <= after + timedelta(seconds=901)


def test_unknown_wrong_disabled_and_locked_answer_byte_identically(
    open_client: OpenClient, make_user: Callable[..., dict[str, Any]], user: dict[str, Any]
) -> None:
    client = open_client(rate_limit_failures=0)
    make_user("bob", BOB_PASSWORD)
    make_user("carol", "carol-password-1", is_active=False)
    fail_logins(client, "alice", 5)

    responses = {
        "unknown user": login(client, "nobody", WRONG),
        "wrong password": login(client, "bob", WRONG),
        "disabled, right password": login(client, "carol", "carol-password-1"),
        "disabled, wrong password": login(client, "carol", WRONG),
        "locked, right password": login(client, "alice", USER_PASSWORD),
        "locked, wrong password": login(client, "alice", WRONG),
    }

    shapes = {name: shape(response) for name, response in responses.items()}
    assert len(set(shapes.values())) == 1, shapes
    assert_oauth_error(responses["locked, right password"], 400, "invalid_grant")
    assert responses["unknown user"].json() == {
        "error": "invalid_grant",
        "error_description": INVALID_CREDENTIALS,
    }


def test_a_locked_account_still_verifies_the_password(
    open_client: OpenClient, user: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same bcrypt work as an unlocked account: a lock is not observable by timing."""
    client = open_client(rate_limit_failures=0)
    fail_logins(client, "alice", 5)
    verified = count_verifications(client, monkeypatch)

    login(client, "alice", USER_PASSWORD)
    login(client, "alice", WRONG)

    assert len(verified) == 2
    assert all(stored is not None and stored.startswith("$") for stored in verified)


def test_the_right_password_while_locked_does_not_unlock_and_wrong_ones_do_not_count(
    open_client: OpenClient, user: dict[str, Any]
) -> None:
    client = open_client(rate_limit_failures=0)
    fail_logins(client, "alice", 5)
    locked = lockout_row(client, "alice")

    login(client, "alice", USER_PASSWORD)
    fail_logins(client, "alice", 7)

    assert lockout_row(client, "alice") == locked
    assert_oauth_error(login(client, "alice", USER_PASSWORD), 400, "invalid_grant")


def test_failures_must_be_consecutive(open_client: OpenClient, user: dict[str, Any]) -> None:
    client = open_client(rate_limit_failures=0)
    fail_logins(client, "alice", 4)
    password_login(client, "alice", USER_PASSWORD)
    fail_logins(client, "alice", 4)

    assert lockout_row(client, "alice") == (4, None)
    password_login(client, "alice", USER_PASSWORD)


@pytest.mark.parametrize("threshold", [1, 3])
def test_threshold_is_configurable(
    open_client: OpenClient, user: dict[str, Any], threshold: int
) -> None:
    client = open_client(rate_limit_failures=0, lockout_threshold=threshold)
    fail_logins(client, "alice", threshold - 1)
    password_login(client, "alice", USER_PASSWORD)

    fail_logins(client, "alice", threshold)

    assert_oauth_error(login(client, "alice", USER_PASSWORD), 400, "invalid_grant")
    assert lockout_row(client, "alice")[1] is not None


def test_threshold_zero_never_locks(open_client: OpenClient, user: dict[str, Any]) -> None:
    client = open_client(rate_limit_failures=0, lockout_threshold=0)
    fail_logins(client, "alice", 12)

    assert lockout_row(client, "alice") == (0, None)
    password_login(client, "alice", USER_PASSWORD)


def test_lock_ends_when_locked_until_passes(open_client: OpenClient, user: dict[str, Any]) -> None:
    client = open_client(rate_limit_failures=0)
    fail_logins(client, "alice", 5)
    assert_oauth_error(login(client, "alice", USER_PASSWORD), 400, "invalid_grant")

    set_locked_until(client, "alice", datetime.now(UTC) - timedelta(seconds=1))

    password_login(client, "alice", USER_PASSWORD)
    assert lockout_row(client, "alice") == (0, None)


def test_lock_ends_after_lockout_duration(open_client: OpenClient, user: dict[str, Any]) -> None:
    client = open_client(rate_limit_failures=0, lockout_duration=1)
    fail_logins(client, "alice", 5)
    _, locked_until = lockout_row(client, "alice")
    assert locked_until is not None

    # Wind the lock back by the duration rather than sleeping it out.
    set_locked_until(client, "alice", locked_until - timedelta(seconds=1))

    password_login(client, "alice", USER_PASSWORD)
    assert lockout_row(client, "alice") == (0, None)


def test_after_the_lock_ends_failures_count_from_zero(
    open_client: OpenClient, user: dict[str, Any]
) -> None:
    client = open_client(rate_limit_failures=0)
    fail_logins(client, "alice", 5)
    set_locked_until(client, "alice", datetime.now(UTC) - timedelta(seconds=1))

    fail_logins(client, "alice", 4)
    assert lockout_row(client, "alice")[0] == 4
    fail_logins(client, "alice", 1)

    failed, locked_until = lockout_row(client, "alice")
    assert failed == 0
    assert locked_until is not None
    assert locked_until > datetime.now(UTC)
    assert_oauth_error(login(client, "alice", USER_PASSWORD), 400, "invalid_grant")


def test_lockout_is_per_account(
    open_client: OpenClient, user: dict[str, Any], bob: dict[str, Any]
) -> None:
    client = open_client(rate_limit_failures=0)
    fail_logins(client, "alice", 5)

    password_login(client, "bob", BOB_PASSWORD)
    assert lockout_row(client, "bob") == (0, None)
    assert_oauth_error(login(client, "alice", USER_PASSWORD), 400, "invalid_grant")


def test_failures_for_unknown_users_touch_no_account(
    open_client: OpenClient, user: dict[str, Any]
) -> None:
    client = open_client(rate_limit_failures=0)
    fail_logins(client, "nobody", 6)
    fail_logins(client, "alicia", 6)

    assert lockout_row(client, "alice") == (0, None)
    password_login(client, "alice", USER_PASSWORD)


def test_failures_under_another_spelling_of_the_name_count_for_the_account(
    open_client: OpenClient, user: dict[str, Any]
) -> None:
    """Usernames match case-insensitively, so "ALICE" and "alice" are one account to lock."""
    client = open_client(rate_limit_failures=0)
    fail_logins(client, "ALICE", 2)
    fail_logins(client, " Alice ", 2)
    assert lockout_row(client, "alice") == (4, None)
    fail_logins(client, "alice", 1)

    assert_oauth_error(login(client, "alice", USER_PASSWORD), 400, "invalid_grant")


def test_lock_is_shared_by_replicas(open_client: OpenClient, user: dict[str, Any]) -> None:
    first = open_client(rate_limit_failures=0)
    second = open_client(rate_limit_failures=0)
    fail_logins(first, "alice", 3)
    fail_logins(second, "alice", 2)

    assert_oauth_error(login(first, "alice", USER_PASSWORD), 400, "invalid_grant")
    assert_oauth_error(login(second, "alice", USER_PASSWORD), 400, "invalid_grant")


@pytest.fixture
def lock_events(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What every AccountLockout.record_failure returned (True: that failure locked)."""
    results: list[bool] = []
    original = AccountLockout.record_failure

    def record_failure(self: AccountLockout, user_id: Any) -> bool:
        locked = original(self, user_id)
        results.append(locked)
        return locked

    monkeypatch.setattr(AccountLockout, "record_failure", record_failure)
    return results


def concurrent_logins(client: TestClient, username: str, password: str, n: int) -> list[int]:
    barrier = threading.Barrier(n)

    def attempt(_: int) -> int:
        barrier.wait(timeout=10)
        return login(client, username, password).status_code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(attempt, range(n)))


def test_concurrent_failures_lock_and_keep_the_counter_in_range(
    open_client: OpenClient, user: dict[str, Any], lock_events: list[bool]
) -> None:
    client = open_client(rate_limit_failures=0)

    statuses = concurrent_logins(client, "alice", WRONG, 10)

    assert statuses == [400] * 10
    failed, locked_until = lockout_row(client, "alice")
    assert locked_until is not None
    assert locked_until > datetime.now(UTC)
    # Five counted failures lock once; those still in flight meet the lock and count nothing.
    assert sum(lock_events) == 1
    assert failed == 0
    assert_oauth_error(login(client, "alice", USER_PASSWORD), 400, "invalid_grant")


@pytest.fixture
def loads_in_lockstep(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Make the next ``n`` password grants all read the user row before any of them goes on."""

    def arm(n: int) -> None:
        barrier = threading.Barrier(n)
        original = PasswordGrant._load

        def load(self: PasswordGrant, username: str) -> Any:
            candidate = original(self, username)
            # Fewer than n may get this far (a fixed limiter refuses some first): go on then.
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=3)
            return candidate

        monkeypatch.setattr(PasswordGrant, "_load", load)

    return arm


def test_concurrent_failures_lock_exactly_once(
    open_client: OpenClient,
    user: dict[str, Any],
    lock_events: list[bool],
    loads_in_lockstep: Callable[[int], None],
) -> None:
    client = open_client(rate_limit_failures=0)
    loads_in_lockstep(10)

    statuses = concurrent_logins(client, "alice", WRONG, 10)

    assert statuses == [400] * 10
    assert sum(lock_events) == 1
    assert lockout_row(client, "alice")[0] == 0


# --- the per-address failure limit -------------------------------------------------------------


def test_failures_from_one_address_answer_429_even_to_good_credentials(
    open_client: OpenClient, user: dict[str, Any], bob: dict[str, Any]
) -> None:
    client = open_client(rate_limit_failures=3, rate_limit_window=60)
    for username in ("alice", "bob", "nobody"):
        assert_oauth_error(login(client, username, WRONG), 400, "invalid_grant")

    response = login(client, "alice", USER_PASSWORD)

    assert_rate_limited(response, 60)
    assert sorted(name for name, _ in stable_headers(response)) == [
        "cache-control",
        "content-length",
        "content-security-policy",
        "content-type",
        "pragma",
        "referrer-policy",
        "retry-after",
        "x-content-type-options",
    ]
    # Neither account got near its lockout threshold.
    assert lockout_row(client, "alice") == (1, None)
    assert lockout_row(client, "bob") == (1, None)


def test_under_the_limit_good_credentials_still_work(
    open_client: OpenClient, user: dict[str, Any]
) -> None:
    client = open_client(rate_limit_failures=3)
    fail_logins(client, "nobody", 2)

    password_login(client, "alice", USER_PASSWORD)


def test_a_limited_address_gets_no_password_check(
    open_client: OpenClient, user: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = open_client(rate_limit_failures=3)
    fail_logins(client, "nobody", 3)
    verified = count_verifications(client, monkeypatch)

    assert_rate_limited(login(client, "alice", USER_PASSWORD), 60)
    assert_rate_limited(login(client, "alice", WRONG), 60)

    assert verified == []
    assert lockout_row(client, "alice") == (0, None)


def test_limited_requests_do_not_extend_the_limit(
    open_client: OpenClient, user: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = open_client(rate_limit_failures=3, rate_limit_window=60)
    limiter = client.app.state.ctx.failure_limiter  # type: ignore[attr-defined]
    clock = FakeClock(1000.0)  # the window is [960, 1020)
    monkeypatch.setattr(limiter, "_clock", clock)
    fail_logins(client, "nobody", 3)
    for _ in range(10):
        login(client, "nobody", WRONG)

    clock.now = 1020.0
    fail_logins(client, "nobody", 2)
    password_login(client, "alice", USER_PASSWORD)


def test_concurrent_failures_from_one_address_stay_within_the_limit(
    open_client: OpenClient, user: dict[str, Any], loads_in_lockstep: Callable[[int], None]
) -> None:
    client = open_client(rate_limit_failures=3, lockout_threshold=0)
    loads_in_lockstep(10)

    statuses = concurrent_logins(client, "alice", WRONG, 10)

    assert statuses.count(400) <= 3, statuses
    assert statuses.count(429) >= 7, statuses


def test_wrong_client_secrets_at_revocation_count_and_are_limited(
    open_client: OpenClient, admin: dict[str, Any], user: dict[str, Any]
) -> None:
    client = open_client(rate_limit_failures=3)
    rs = create_client(client, {"Authorization": f"Bearer {access_token_for(client, admin)}"})
    fail_logins(client, "nobody", 2)
    response = client.post(REVOKE_URL, data={"token": "x"}, headers=basic(rs["client_id"], "wrong"))
    assert_oauth_error(response, 401, "invalid_client")

    limited = client.post(REVOKE_URL, data={"token": "x"}, headers=basic(rs["client_id"], "wrong"))

    assert_rate_limited(limited, 60)
    assert_rate_limited(login(client, "alice", USER_PASSWORD), 60)


def test_limit_covers_introspection_and_revocation(
    open_client: OpenClient, admin: dict[str, Any], user: dict[str, Any]
) -> None:
    client = open_client(rate_limit_failures=3)
    rs = create_client(client, {"Authorization": f"Bearer {access_token_for(client, admin)}"})
    tokens = password_login(client, "alice", USER_PASSWORD)
    fail_logins(client, "nobody", 3)

    introspected = client.post(
        INTROSPECT_URL,
        data={"token": tokens["access_token"]},
        headers=basic(rs["client_id"], rs["client_secret"]),
    )
    revoked = client.post(REVOKE_URL, data={"token": tokens["refresh_token"]})

    assert_rate_limited(introspected, 60)
    assert introspected.content == RATE_LIMITED_BODY
    assert_rate_limited(revoked, 60)


def test_another_address_is_not_limited(
    open_client: OpenClient, user: dict[str, Any], bob: dict[str, Any]
) -> None:
    attacker = open_client(peer=("203.0.113.7", 40000), rate_limit_failures=3)
    neighbour = open_client(peer=("203.0.113.8", 40000), rate_limit_failures=3)
    fail_logins(attacker, "nobody", 3)
    assert_rate_limited(login(attacker, "alice", USER_PASSWORD), 60)

    password_login(neighbour, "alice", USER_PASSWORD)
    fail_logins(neighbour, "nobody", 2)
    password_login(neighbour, "bob", BOB_PASSWORD)


def test_the_limit_is_shared_by_replicas(open_client: OpenClient, user: dict[str, Any]) -> None:
    first = open_client(peer=("203.0.113.7", 40000), rate_limit_failures=3)
    second = open_client(peer=("203.0.113.7", 40001), rate_limit_failures=3)
    fail_logins(first, "nobody", 2)
    fail_logins(second, "nobody", 1)

    assert_rate_limited(login(first, "alice", USER_PASSWORD), 60)
    assert_rate_limited(login(second, "alice", USER_PASSWORD), 60)


def test_bad_refresh_tokens_do_not_count(open_client: OpenClient, user: dict[str, Any]) -> None:
    client = open_client(rate_limit_failures=3)
    for _ in range(5):
        response = refresh_grant(client, "not-a-refresh-token")
        assert_oauth_error(response, 400, "invalid_grant")

    password_login(client, "alice", USER_PASSWORD)


def test_spent_refresh_tokens_do_not_count(open_client: OpenClient, user: dict[str, Any]) -> None:
    client = open_client(rate_limit_failures=3)
    spent = password_login(client, "alice", USER_PASSWORD)["refresh_token"]
    assert refresh_grant(client, spent).status_code == 200
    for _ in range(4):
        assert_oauth_error(refresh_grant(client, spent), 400, "invalid_grant")

    password_login(client, "alice", USER_PASSWORD)


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({"grant_type": "authorization_code"}, id="unsupported-grant-type"),
        pytest.param({"grant_type": "password", "username": "alice"}, id="missing-password"),
        pytest.param({}, id="missing-grant-type"),
    ],
)
def test_malformed_requests_do_not_count(
    open_client: OpenClient, user: dict[str, Any], form: dict[str, str]
) -> None:
    client = open_client(rate_limit_failures=3)
    for _ in range(5):
        assert client.post(TOKEN_URL, data=form).status_code == 400

    password_login(client, "alice", USER_PASSWORD)


@pytest.fixture
def confidential(
    open_client: OpenClient, admin: dict[str, Any]
) -> tuple[TestClient, dict[str, Any]]:
    """An app limited to 3 failures per address, and a confidential client registered on it."""
    client = open_client(rate_limit_failures=3)
    admin_headers = {"Authorization": f"Bearer {access_token_for(client, admin)}"}
    return client, create_client(client, admin_headers)


def test_wrong_client_secret_at_the_token_endpoint_counts(
    confidential: tuple[TestClient, dict[str, Any]],
) -> None:
    client, rs = confidential
    form = {"grant_type": "client_credentials"}
    for _ in range(3):
        response = client.post(TOKEN_URL, data=form, headers=basic(rs["client_id"], "wrong"))
        assert_oauth_error(response, 401, "invalid_client")

    response = client.post(
        TOKEN_URL, data=form, headers=basic(rs["client_id"], rs["client_secret"])
    )

    assert_rate_limited(response, 60)


def test_wrong_client_secret_at_introspection_counts(
    confidential: tuple[TestClient, dict[str, Any]],
) -> None:
    client, rs = confidential
    for _ in range(3):
        response = client.post(
            INTROSPECT_URL, data={"token": "x"}, headers=basic(rs["client_id"], "wrong")
        )
        assert_oauth_error(response, 401, "invalid_client")

    response = client.post(
        INTROSPECT_URL, data={"token": "x"}, headers=basic(rs["client_id"], rs["client_secret"])
    )

    assert_rate_limited(response, 60)


def test_failures_at_token_and_introspection_add_up(
    confidential: tuple[TestClient, dict[str, Any]],
) -> None:
    client, rs = confidential
    fail_logins(client, "nobody", 2)
    response = client.post(
        INTROSPECT_URL, data={"token": "x"}, headers=basic(rs["client_id"], "wrong")
    )
    assert_oauth_error(response, 401, "invalid_client")

    response = client.post(
        INTROSPECT_URL, data={"token": "x"}, headers=basic(rs["client_id"], rs["client_secret"])
    )

    assert_rate_limited(response, 60)
    assert_rate_limited(login(client, "nobody", WRONG), 60)


def test_successful_introspections_never_count(
    confidential: tuple[TestClient, dict[str, Any]],
) -> None:
    client, rs = confidential
    for _ in range(10):
        response = client.post(
            INTROSPECT_URL,
            data={"token": "not-a-token"},
            headers=basic(rs["client_id"], rs["client_secret"]),
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"active": False}

    fail_logins(client, "nobody", 2)
    assert client.post(
        INTROSPECT_URL, data={"token": "x"}, headers=basic(rs["client_id"], rs["client_secret"])
    ).json() == {"active": False}


def test_limit_zero_never_answers_429(open_client: OpenClient, user: dict[str, Any]) -> None:
    client = open_client(rate_limit_failures=0)
    for number in range(25):
        assert_oauth_error(login(client, f"nobody-{number}", WRONG), 400, "invalid_grant")

    password_login(client, "alice", USER_PASSWORD)


def test_the_default_limit_is_twenty(open_client: OpenClient, user: dict[str, Any]) -> None:
    client = open_client()
    for number in range(20):
        assert_oauth_error(login(client, f"nobody-{number}", WRONG), 400, "invalid_grant")

    assert_rate_limited(login(client, "alice", USER_PASSWORD), 60)


def test_the_limit_ends_with_the_window(
    open_client: OpenClient, user: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = open_client(rate_limit_failures=3, rate_limit_window=60)
    limiter = client.app.state.ctx.failure_limiter  # type: ignore[attr-defined]
    clock = FakeClock(1000.0)  # the window is [960, 1020)
    monkeypatch.setattr(limiter, "_clock", clock)
    fail_logins(client, "nobody", 3)

    assert assert_rate_limited(login(client, "alice", USER_PASSWORD), 60) == 20
    clock.now = 1019.5
    assert assert_rate_limited(login(client, "alice", USER_PASSWORD), 60) == 1

    clock.now = 1020.0
    password_login(client, "alice", USER_PASSWORD)
    fail_logins(client, "nobody", 2)
    password_login(client, "alice", USER_PASSWORD)
    fail_logins(client, "nobody", 1)
    assert assert_rate_limited(login(client, "alice", USER_PASSWORD), 60) == 60


# --- X-Forwarded-For ---------------------------------------------------------------------------


@pytest.mark.parametrize("peer", [TESTCLIENT_PEER, ("203.0.113.7", 40000)])
def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    open_client: OpenClient, user: dict[str, Any], peer: tuple[str, int]
) -> None:
    client = open_client(peer=peer, rate_limit_failures=3, trusted_proxies="10.0.0.0/8")
    for number in range(3):
        xff = {"X-Forwarded-For": f"198.51.100.{number}"}
        assert_oauth_error(login(client, "nobody", WRONG, xff), 400, "invalid_grant")

    rotated = login(client, "alice", USER_PASSWORD, {"X-Forwarded-For": "198.51.100.99"})

    assert_rate_limited(rotated, 60)


def test_forwarded_for_is_ignored_when_no_proxy_is_trusted(
    open_client: OpenClient, user: dict[str, Any]
) -> None:
    client = open_client(peer=PROXY_PEER, rate_limit_failures=3)
    for number in range(3):
        xff = {"X-Forwarded-For": f"198.51.100.{number}"}
        assert_oauth_error(login(client, "nobody", WRONG, xff), 400, "invalid_grant")

    assert_rate_limited(login(client, "alice", USER_PASSWORD, {"X-Forwarded-For": "1.2.3.4"}), 60)


def test_through_a_trusted_proxy_clients_are_limited_separately(
    open_client: OpenClient, user: dict[str, Any]
) -> None:
    client = open_client(peer=PROXY_PEER, rate_limit_failures=3, trusted_proxies="10.0.0.0/8")
    attacker = {"X-Forwarded-For": "198.51.100.7"}
    for _ in range(3):
        assert_oauth_error(login(client, "nobody", WRONG, attacker), 400, "invalid_grant")

    assert_rate_limited(login(client, "alice", USER_PASSWORD, attacker), 60)
    password_login_via(client, {"X-Forwarded-For": "198.51.100.8"})
    # The proxy's own requests (no header) are a client of their own.
    password_login_via(client, {})


def test_through_a_trusted_proxy_spoofed_hops_do_not_escape_the_limit(
    open_client: OpenClient, user: dict[str, Any]
) -> None:
    """A client may prepend anything; the proxies append the address they saw, and only that is
    believed."""
    client = open_client(peer=PROXY_PEER, rate_limit_failures=3, trusted_proxies="10.0.0.0/8")
    for number in range(3):
        xff = {"X-Forwarded-For": f"192.0.2.{number}, 198.51.100.7, 10.0.0.2"}
        assert_oauth_error(login(client, "nobody", WRONG, xff), 400, "invalid_grant")

    spoofed = {"X-Forwarded-For": "192.0.2.200, 10.9.9.9, 198.51.100.7, 10.0.0.2"}
    assert_rate_limited(login(client, "alice", USER_PASSWORD, spoofed), 60)
    password_login_via(client, {"X-Forwarded-For": "198.51.100.7, 198.51.100.8, 10.0.0.2"})


def test_through_a_trusted_proxy_introspection_is_limited_per_client(
    open_client: OpenClient, admin: dict[str, Any]
) -> None:
    client = open_client(peer=PROXY_PEER, rate_limit_failures=3, trusted_proxies="10.0.0.0/8")
    rs = create_client(client, {"Authorization": f"Bearer {access_token_for(client, admin)}"})
    attacker = {"X-Forwarded-For": "198.51.100.7", **basic(rs["client_id"], "wrong")}
    for _ in range(3):
        response = client.post(INTROSPECT_URL, data={"token": "x"}, headers=attacker)
        assert_oauth_error(response, 401, "invalid_client")

    good = basic(rs["client_id"], rs["client_secret"])
    limited = client.post(
        INTROSPECT_URL, data={"token": "x"}, headers={"X-Forwarded-For": "198.51.100.7", **good}
    )
    other = client.post(
        INTROSPECT_URL, data={"token": "x"}, headers={"X-Forwarded-For": "198.51.100.8", **good}
    )

    assert_rate_limited(limited, 60)
    assert other.status_code == 200, other.text


# --- OpenAPI -----------------------------------------------------------------------------------


def test_openapi_documents_429_where_the_limit_applies(open_client: OpenClient) -> None:
    paths = open_client().get("/openapi.json").json()["paths"]

    assert "429" in paths["/oauth2/token"]["post"]["responses"]
    assert "429" in paths["/oauth2/introspect"]["post"]["responses"]
    assert "429" in paths["/oauth2/revoke"]["post"]["responses"]


# --- regressions from the production review -----------------------------------------------------


# With an unknown scope too: invalid_scope would tell the caller the password was right, so
# the lock is checked before the scopes.
@pytest.mark.parametrize("scope", [None, "no-such-scope"])
def test_right_password_checked_while_a_burst_locked_the_account_is_refused(
    open_client: OpenClient,
    user: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    scope: str | None,
) -> None:
    client = open_client(rate_limit_failures=0)
    wrong = login(client, "alice", WRONG)
    # The lock lands after this login read the row (the row it read said "not locked").
    set_locked_until(client, "alice", datetime.now(UTC) + timedelta(minutes=5))
    monkeypatch.setattr(password_grant, "is_locked", lambda locked_until: False)
    form = {"grant_type": "password", "username": "alice", "password": USER_PASSWORD}

    response = client.post(TOKEN_URL, data=form | ({"scope": scope} if scope else {}))

    assert shape(response) == shape(wrong)
    assert lockout_row(client, "alice")[1] is not None


def test_a_database_error_loading_the_user_gives_the_address_its_count_back(
    open_client: OpenClient, user: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = open_client(rate_limit_failures=1, rate_limit_window=60)
    original = PasswordGrant._load

    def unavailable(self: PasswordGrant, username: str) -> Any:
        raise OperationalError("SELECT", {}, Exception("the database went away"))

    monkeypatch.setattr(PasswordGrant, "_load", unavailable)
    assert_oauth_error(login(client, "alice", USER_PASSWORD), 503, "temporarily_unavailable")
    monkeypatch.setattr(PasswordGrant, "_load", original)

    # With a limit of one failure, a count kept from the 503 would make this a 429.
    assert login(client, "alice", USER_PASSWORD).status_code == 200


def test_a_password_changed_during_the_check_refuses_the_login_without_counting_it(
    open_client: OpenClient, user: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = open_client(rate_limit_failures=1, rate_limit_window=60)
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    new_password = "changed-meanwhile-1"
    new_hash = ctx.hasher.hash(new_password)
    verify = ctx.hasher.verify_async

    async def reset_while_checking(password: str, password_hash: str | None) -> Any:
        result = await verify(password, password_hash)
        with ctx.sessionmaker() as session:
            session.execute(
                update(User).where(User.username == "alice").values(password_hash=new_hash)
            )
            session.commit()
        return result

    monkeypatch.setattr(ctx.hasher, "verify_async", reset_while_checking)
    assert_oauth_error(
        login(client, "alice", USER_PASSWORD), 400, "invalid_grant", INVALID_CREDENTIALS
    )
    monkeypatch.setattr(ctx.hasher, "verify_async", verify)

    ctx.audit.flush()
    with ctx.sessionmaker() as session:
        reasons = [
            (event.details or {}).get("reason")
            for event in session.scalars(
                select(AuditEvent).where(AuditEvent.type == "login.failed")
            )
        ]
        sessions = session.scalars(select(RefreshFamily)).all()
    assert reasons == ["password_changed"]
    assert sessions == []
    # Not a guess: with a limit of one failure, a counted refusal would make this a 429.
    assert login(client, "alice", new_password).status_code == 200


def test_addresses_of_one_ipv6_64_share_a_counter(
    open_client: OpenClient, user: dict[str, Any]
) -> None:
    first = open_client(peer=("2001:db8:1:3::1", 40000), rate_limit_failures=3)
    fail_logins(first, "nobody", 3)
    neighbour = open_client(peer=("2001:db8:1:3:ffff::9", 40000), rate_limit_failures=3)
    elsewhere = open_client(peer=("2001:db8:1:4::1", 40000), rate_limit_failures=3)

    assert_rate_limited(login(neighbour, "alice", USER_PASSWORD), 60)
    password_login(elsewhere, "alice", USER_PASSWORD)


def test_wrong_current_passwords_lock_the_account(
    open_client: OpenClient, user: dict[str, Any]
) -> None:
    client = open_client(lockout_threshold=3, rate_limit_failures=0)
    headers = bearer(password_login(client, "alice", USER_PASSWORD)["access_token"])
    for _ in range(3):
        response = client.post(
            "/users/me/password",
            headers=headers,
            json={"current_password": WRONG, "new_password": "a-new-password-1"},
        )
        assert response.status_code == 400
    refused = client.post(
        "/users/me/password",
        headers=headers,
        json={"current_password": USER_PASSWORD, "new_password": "a-new-password-1"},
    )
    assert refused.status_code == 400
    assert lockout_row(client, "alice")[1] is not None
    assert_oauth_error(login(client, "alice", USER_PASSWORD), 400, "invalid_grant")

"""A crash part-way through a write leaves nothing half done: each write is one transaction.

The crash is simulated inside the transaction, after its first statements ran: an exception
where the successor refresh token is added, or a failed COMMIT (the database going away at
the last moment). The database is then read afresh. And a password reset racing a login never
leaves the login's session alive (the last section).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.db.models import RefreshFamily, RefreshToken, User, user_scopes
from authsvc.security.passwords import PasswordHasher
from authsvc.services import sessions as sessions_module
from authsvc.services.lockout import AccountLockout
from authsvc.services.sessions import RefreshTokenError, SessionService
from authsvc.services.users import NewUser, ScopeService, UserService
from tests.conftest import TEST_DATABASE_URL
from tests.helpers import TEST_BCRYPT_ROUNDS

Sessions = sessionmaker[Session]
TTL = 3600


class Crash(Exception):
    """The process dying at this point."""


@pytest.fixture
def sessions(settings: Settings, migrated: None) -> Iterator[Sessions]:
    engine = build_engine(settings)
    yield build_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def alice(sessions: Sessions) -> tuple[uuid.UUID, str]:
    password_hash = PasswordHasher(TEST_BCRYPT_ROUNDS).hash("user-password-1")
    with sessions() as session:
        user = UserService(session).create(NewUser(username="alice", password_hash=password_hash))
        return user.id, password_hash


@pytest.fixture
def refresh_token(sessions: Sessions, alice: tuple[uuid.UUID, str]) -> str:
    user_id, password_hash = alice
    with sessions() as session:
        return SessionService(session, TTL).start(user_id, "web", [], password_hash=password_hash)


def failing_commit(session: Session) -> None:
    raise OperationalError("COMMIT", {}, Exception("server closed the connection"))


def token_rows(sessions: Sessions) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(RefreshToken)) or 0)


def test_crash_after_the_consuming_update_leaves_the_old_token_usable(
    sessions: Sessions, refresh_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object, **kwargs: object) -> str:
        raise Crash

    # The scope check runs after the token was consumed (and, on PostgreSQL, after the
    # successor was inserted by the same statement), before the commit.
    with monkeypatch.context() as patch, sessions() as session:
        patch.setattr(sessions_module, "grant_scopes", crash)
        with pytest.raises(Crash):
            SessionService(session, TTL).rotate(refresh_token, "web", None)
        session.rollback()  # what closing a crashed session amounts to

    assert token_rows(sessions) == 1
    with sessions() as session:
        rotation = SessionService(session, TTL).rotate(refresh_token, "web", None)
    assert rotation.refresh_token != refresh_token


def test_failed_commit_of_a_rotation_leaves_exactly_the_old_token_usable(
    sessions: Sessions, refresh_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch, sessions() as session:
        patch.setattr(Session, "commit", failing_commit)
        with pytest.raises(OperationalError):
            SessionService(session, TTL).rotate(refresh_token, "web", None)
        session.rollback()

    assert token_rows(sessions) == 1
    with sessions() as session:
        successor = SessionService(session, TTL).rotate(refresh_token, "web", None).refresh_token
    with sessions() as session, pytest.raises(RefreshTokenError):
        # Now the old one is spent (and its reuse revokes the family): exactly one was live.
        SessionService(session, TTL).rotate(refresh_token, "web", None)
    assert successor != refresh_token


def test_failed_commit_of_a_new_user_leaves_no_user_and_no_grants(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sessions() as session:
        ScopeService(session).create("reports")
    with monkeypatch.context() as patch, sessions() as session:
        patch.setattr(Session, "commit", failing_commit)
        with pytest.raises(OperationalError):
            UserService(session).create(
                NewUser(username="bob", password_hash="x", scopes=("reports",))
            )
        session.rollback()

    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0
        assert session.scalar(select(func.count()).select_from(user_scopes)) == 0
    with sessions() as session:
        created = UserService(session).create(
            NewUser(username="bob", password_hash="x", scopes=("reports",))
        )
        assert created.scope_names == ["reports"]


# --- a password reset racing a login -------------------------------------------------------------
# The login checks the user's password hash and inserts its refresh-token family in one
# transaction; the reset writes the user's row and revokes the user's families in another.
# Row locks order the two on PostgreSQL: the reset writes the row first, and the login reads it
# FOR SHARE (or has written it, clearing its failure count), so the reset either waits for the
# login's family and revokes it, or the login waits and sees the new password. SQLite admits
# one writer at a time, so these interleavings cannot happen there.

postgres_only = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="row-lock interleavings need PostgreSQL"
)
# Long enough that a reset not waiting for the login's lock is done by then.
BLOCKED = 0.5


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def run() -> None:
        work()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def reset_password(sessions: Sessions, user_id: uuid.UUID) -> None:
    with sessions() as session:
        user = session.get(User, user_id)
        assert user is not None
        UserService(session).update(user, {"password_hash": "a-new-hash"})


def live_families(sessions: Sessions, user_id: uuid.UUID) -> list[RefreshFamily]:
    with sessions() as session:
        return list(
            session.scalars(
                select(RefreshFamily).where(
                    RefreshFamily.user_id == user_id, RefreshFamily.revoked_at.is_(None)
                )
            )
        )


@postgres_only
def test_a_reset_waits_for_a_login_that_cleared_its_failures_and_revokes_its_session(
    sessions: Sessions, alice: tuple[uuid.UUID, str]
) -> None:
    user_id, password_hash = alice
    with sessions() as login:
        # The login's transaction, as the password grant runs it: the failure count cleared
        # (the user's row written, so locked), then the session started.
        assert AccountLockout(login, threshold=5, duration=60).record_success(user_id)
        reset, done = in_thread(lambda: reset_password(sessions, user_id))
        assert not done.wait(BLOCKED), "the reset did not wait for the login"
        SessionService(login, TTL).start(user_id, "web", [], password_hash=password_hash)
    reset.join(10)

    assert done.is_set()
    assert live_families(sessions, user_id) == []


@postgres_only
def test_a_reset_waits_for_a_login_without_lockout_that_checked_the_user(
    sessions: Sessions, alice: tuple[uuid.UUID, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id, password_hash = alice
    checked, go_on = threading.Event(), threading.Event()
    add_token = SessionService._add_token

    def add_token_after_a_pause(self: SessionService, *args: Any) -> str:
        # The user was checked and the family inserted; the transaction is still open.
        checked.set()
        assert go_on.wait(10)
        return add_token(self, *args)

    monkeypatch.setattr(SessionService, "_add_token", add_token_after_a_pause)

    def start() -> None:
        with sessions() as login:
            SessionService(login, TTL).start(user_id, "web", [], password_hash=password_hash)

    login, _ = in_thread(start)
    assert checked.wait(10)
    reset, done = in_thread(lambda: reset_password(sessions, user_id))
    assert not done.wait(BLOCKED), "the reset did not wait for the login"
    go_on.set()
    login.join(10)
    reset.join(10)

    assert done.is_set()
    assert live_families(sessions, user_id) == []

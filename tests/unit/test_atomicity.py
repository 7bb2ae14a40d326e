"""A crash part-way through a write leaves nothing half done: each write is one transaction.

The crash is simulated inside the transaction, after its first statements ran: an exception
where the successor refresh token is added, or a failed COMMIT (the database going away at
the last moment). The database is then read afresh.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.db.models import RefreshToken, User, user_scopes
from authsvc.security.passwords import PasswordHasher
from authsvc.services import sessions as sessions_module
from authsvc.services.sessions import RefreshTokenError, SessionService
from authsvc.services.users import NewUser, ScopeService, UserService
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

"""``watch_writes`` (which commits empty the token-state cache) and ``LiveState`` (denylist and
user/client reads through that cache), on the test suite's database.

The cache runs on a fake clock, so "within ttl" and "after ttl" never depend on how fast the
test runs. A second sessionmaker on the same engine, not watched, stands for another replica.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import anyio
import pytest
from sqlalchemy import Engine, event, update
from sqlalchemy.orm import Session, sessionmaker

from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.db.models import RefreshFamily, RevokedAccessToken, User
from authsvc.services.audit import AuditLog, AuditType
from authsvc.services.cache import TtlCache
from authsvc.services.clients import ClientService, NewClient
from authsvc.services.counters import SqlCounterStore
from authsvc.services.denylist import SqlDenylist
from authsvc.services.live_state import (
    UNRELATED,
    ClientState,
    LiveState,
    UserState,
    watch_writes,
)
from authsvc.services.sessions import SessionService
from authsvc.services.users import NewUser, UserService
from tests.helpers import FakeClock

Sessions = sessionmaker[Session]
TTL = 0.5
PASSWORD_HASH = "not-a-real-hash"


@pytest.fixture
def engine(settings: Settings, migrated: None) -> Iterator[Engine]:
    engine = build_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> TtlCache[Any]:
    return TtlCache(TTL, clock=clock)


@pytest.fixture
def sessions(engine: Engine, cache: TtlCache[Any]) -> Sessions:
    """This process's sessions: their commits empty ``cache``."""
    watched = build_sessionmaker(engine)
    watch_writes(watched, cache)
    return watched


@pytest.fixture
def elsewhere(engine: Engine) -> Sessions:
    """Sessions of another replica on the same database: this process hears nothing of them."""
    return build_sessionmaker(engine)


@pytest.fixture
def live(sessions: Sessions, cache: TtlCache[Any]) -> LiveState:
    return LiveState(sessions, SqlDenylist(), cache)


@pytest.fixture
def alice(elsewhere: Sessions) -> uuid.UUID:
    with elsewhere() as session:
        user = UserService(session).create(NewUser(username="alice", password_hash=PASSWORD_HASH))
        return user.id


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement sent on ``engine`` from now on."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


def user_state(live: LiveState, jti: str, user_id: uuid.UUID, *, fresh: bool = False) -> UserState:
    return anyio.run(partial(live.user, jti, user_id, fresh=fresh))


def client_state(live: LiveState, jti: str, client_id: str) -> ClientState:
    return anyio.run(live.client, jti, client_id)


def an_hour_from_now() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


def disable(session: Session, user_id: uuid.UUID) -> None:
    session.execute(update(User).where(User.id == user_id).values(is_active=False))
    session.commit()


# --- watch_writes: what empties the cache --------------------------------------------------


def test_an_added_user_invalidates_on_commit(sessions: Sessions, cache: TtlCache[Any]) -> None:
    before = cache.generation
    with sessions() as session:
        session.add(User(username="bob", username_key="bob", password_hash=PASSWORD_HASH))
        session.commit()

    assert cache.generation == before + 1


def test_a_flushed_write_does_not_invalidate_before_the_commit(
    sessions: Sessions, cache: TtlCache[Any]
) -> None:
    before = cache.generation
    with sessions() as session:
        session.add(User(username="bob", username_key="bob", password_hash=PASSWORD_HASH))
        session.flush()
        assert cache.generation == before
        session.commit()

    assert cache.generation == before + 1


def test_an_added_revoked_access_token_invalidates_on_commit(
    sessions: Sessions, cache: TtlCache[Any]
) -> None:
    before = cache.generation
    with sessions() as session:
        session.add(RevokedAccessToken(jti=uuid.uuid4().hex, expires_at=an_hour_from_now()))
        session.commit()

    assert cache.generation == before + 1


def test_a_changed_loaded_user_invalidates_on_commit(
    sessions: Sessions, cache: TtlCache[Any], alice: uuid.UUID
) -> None:
    before = cache.generation
    with sessions() as session:
        user = session.get(User, alice)
        assert user is not None
        user.is_active = False
        session.commit()

    assert cache.generation == before + 1


def test_a_change_to_the_scope_grants_alone_invalidates_on_commit(
    sessions: Sessions, elsewhere: Sessions, cache: TtlCache[Any]
) -> None:
    with elsewhere() as session:
        UserService(session).create(
            NewUser(username="carol", password_hash=PASSWORD_HASH, scopes=("admin",))
        )
    before = cache.generation
    with sessions() as session:
        carol = UserService(session).get_by_username("carol")
        assert carol is not None
        carol.scopes = []  # no column of the users row changes
        session.commit()

    assert cache.generation == before + 1


def test_a_deleted_user_invalidates_on_commit(
    sessions: Sessions, cache: TtlCache[Any], alice: uuid.UUID
) -> None:
    before = cache.generation
    with sessions() as session:
        user = session.get(User, alice)
        assert user is not None
        session.delete(user)
        session.commit()

    assert cache.generation == before + 1


def test_a_core_update_of_users_invalidates_on_commit(
    sessions: Sessions, cache: TtlCache[Any], alice: uuid.UUID
) -> None:
    before = cache.generation
    with sessions() as session:
        disable(session, alice)

    assert cache.generation == before + 1


def test_a_core_update_marked_unrelated_does_not_invalidate(
    sessions: Sessions, cache: TtlCache[Any], alice: uuid.UUID
) -> None:
    before = cache.generation
    with sessions() as session:
        session.execute(
            update(User)
            .execution_options(**UNRELATED)
            .where(User.id == alice)
            .values(failed_logins=User.failed_logins + 1)
        )
        session.commit()

    assert cache.generation == before


def test_audit_events_written_in_bulk_do_not_invalidate(
    sessions: Sessions, cache: TtlCache[Any]
) -> None:
    audit = AuditLog(sessions)
    audit.record(AuditType.USER_CREATED, username="bob")
    audit.record(AuditType.USER_DELETED, username="bob")
    before = cache.generation

    assert audit.flush() == 2
    assert cache.generation == before


def test_a_new_refresh_family_and_token_do_not_invalidate(
    sessions: Sessions, cache: TtlCache[Any], alice: uuid.UUID
) -> None:
    before = cache.generation
    with sessions() as session:
        SessionService(session, 3600).start(alice, "web", [], password_hash=PASSWORD_HASH)

    assert cache.generation == before


def test_a_core_update_of_refresh_families_does_not_invalidate(
    sessions: Sessions, cache: TtlCache[Any], alice: uuid.UUID
) -> None:
    with sessions() as session:
        SessionService(session, 3600).start(alice, "web", [], password_hash=PASSWORD_HASH)
    before = cache.generation
    with sessions() as session:
        session.execute(
            update(RefreshFamily)
            .where(RefreshFamily.user_id == alice)
            .values(revoked_at=datetime.now(UTC))
        )
        session.commit()

    assert cache.generation == before


def test_rate_limit_counter_upserts_do_not_invalidate(
    sessions: Sessions, cache: TtlCache[Any]
) -> None:
    store = SqlCounterStore(sessions)
    before = cache.generation

    assert [store.increment("fail:203.0.113.7", 600, 60) for _ in range(2)] == [1, 2]
    assert cache.generation == before


def test_a_commit_that_only_read_does_not_invalidate(
    sessions: Sessions, cache: TtlCache[Any], alice: uuid.UUID
) -> None:
    before = cache.generation
    with sessions() as session:
        assert session.get(User, alice) is not None
        session.commit()

    assert cache.generation == before


def test_a_rolled_back_write_does_not_invalidate(
    sessions: Sessions, cache: TtlCache[Any], alice: uuid.UUID
) -> None:
    before = cache.generation
    with sessions() as session:
        session.execute(update(User).where(User.id == alice).values(is_active=False))
        session.rollback()

    assert cache.generation == before


def test_a_commit_after_a_rolled_back_write_in_the_same_session_does_not_invalidate(
    sessions: Sessions, cache: TtlCache[Any], alice: uuid.UUID
) -> None:
    before = cache.generation
    with sessions() as session:
        session.execute(update(User).where(User.id == alice).values(is_active=False))
        session.rollback()
        assert session.get(User, alice) is not None
        session.commit()

    assert cache.generation == before


def test_a_commit_after_a_committed_write_in_the_same_session_does_not_invalidate_again(
    sessions: Sessions, cache: TtlCache[Any], alice: uuid.UUID
) -> None:
    before = cache.generation
    with sessions() as session:
        disable(session, alice)
        assert session.get(User, alice) is not None
        session.commit()

    assert cache.generation == before + 1


def test_a_rolled_back_savepoint_does_not_forget_the_outer_write(
    sessions: Sessions, cache: TtlCache[Any], alice: uuid.UUID
) -> None:
    before = cache.generation
    with sessions() as session:
        session.execute(update(User).where(User.id == alice).values(is_active=False))
        savepoint = session.begin_nested()
        savepoint.rollback()
        session.commit()

    assert cache.generation == before + 1


def test_a_write_released_from_a_savepoint_is_seen_after_the_outer_commit(
    sessions: Sessions, live: LiveState, alice: uuid.UUID
) -> None:
    jti = uuid.uuid4().hex
    with sessions() as writer:
        # A first write opens the outer transaction for real (pysqlite sends no BEGIN before
        # a SAVEPOINT, and releasing it would then commit); this one changes nothing watched.
        writer.execute(
            update(User)
            .execution_options(**UNRELATED)
            .where(User.id == alice)
            .values(failed_logins=User.failed_logins + 1)
        )
        with writer.begin_nested():
            writer.execute(update(User).where(User.id == alice).values(is_active=False))
        # Another request reads while the outer transaction is still open: the old row.
        account = user_state(live, jti, alice).account
        assert account is not None and account.is_active
        writer.commit()

    account = user_state(live, jti, alice).account
    assert account is not None
    assert account.is_active is False


# --- LiveState: reads through the cache ----------------------------------------------------


def test_the_first_user_read_asks_the_database(
    live: LiveState, alice: uuid.UUID, statements: list[str]
) -> None:
    state = user_state(live, uuid.uuid4().hex, alice)

    assert state.revoked is False
    assert state.account is not None
    assert state.account.id == alice
    assert state.account.username == "alice"
    assert state.account.is_active is True
    assert statements


def test_a_second_user_read_within_ttl_asks_the_database_nothing(
    live: LiveState, alice: uuid.UUID, statements: list[str], clock: FakeClock
) -> None:
    jti = uuid.uuid4().hex
    first = user_state(live, jti, alice)
    statements.clear()
    clock.now += TTL - 0.01

    assert user_state(live, jti, alice) == first
    assert statements == []


def test_a_user_read_after_ttl_asks_the_database_again(
    live: LiveState, alice: uuid.UUID, statements: list[str], clock: FakeClock
) -> None:
    jti = uuid.uuid4().hex
    user_state(live, jti, alice)
    statements.clear()
    clock.now += TTL

    user_state(live, jti, alice)

    assert statements


def test_a_fresh_user_read_asks_the_database_within_ttl(
    live: LiveState, alice: uuid.UUID, statements: list[str]
) -> None:
    jti = uuid.uuid4().hex
    user_state(live, jti, alice)
    statements.clear()

    user_state(live, jti, alice, fresh=True)

    assert statements


def test_a_read_of_another_jti_of_the_same_user_asks_the_database(
    live: LiveState, alice: uuid.UUID, statements: list[str]
) -> None:
    user_state(live, uuid.uuid4().hex, alice)
    statements.clear()

    user_state(live, uuid.uuid4().hex, alice)

    assert statements


def test_an_unknown_user_is_kept_as_none(live: LiveState, statements: list[str]) -> None:
    jti, nobody = uuid.uuid4().hex, uuid.uuid4()
    assert user_state(live, jti, nobody).account is None
    statements.clear()

    assert user_state(live, jti, nobody) == UserState(revoked=False, account=None)
    assert statements == []


def test_a_revocation_committed_here_is_seen_by_the_next_read(
    live: LiveState, sessions: Sessions, alice: uuid.UUID
) -> None:
    jti = uuid.uuid4().hex
    assert user_state(live, jti, alice).revoked is False
    with sessions() as session:
        assert SqlDenylist().add(session, jti, an_hour_from_now())

    assert user_state(live, jti, alice).revoked is True


def test_a_user_disabled_here_is_seen_by_the_next_read(
    live: LiveState, sessions: Sessions, alice: uuid.UUID
) -> None:
    jti = uuid.uuid4().hex
    user_state(live, jti, alice)
    with sessions() as session:
        disable(session, alice)

    account = user_state(live, jti, alice).account
    assert account is not None
    assert account.is_active is False


def test_a_revocation_elsewhere_is_seen_once_ttl_passes(
    live: LiveState, elsewhere: Sessions, alice: uuid.UUID, clock: FakeClock
) -> None:
    jti = uuid.uuid4().hex
    user_state(live, jti, alice)
    with elsewhere() as session:
        SqlDenylist().add(session, jti, an_hour_from_now())

    assert user_state(live, jti, alice).revoked is False  # kept: this process heard nothing
    clock.now += TTL
    assert user_state(live, jti, alice).revoked is True


def test_a_fresh_read_sees_a_revocation_elsewhere_at_once(
    live: LiveState, elsewhere: Sessions, alice: uuid.UUID
) -> None:
    jti = uuid.uuid4().hex
    user_state(live, jti, alice)
    with elsewhere() as session:
        SqlDenylist().add(session, jti, an_hour_from_now())

    assert user_state(live, jti, alice, fresh=True).revoked is True


def test_a_fresh_read_refreshes_what_later_reads_are_given(
    live: LiveState, elsewhere: Sessions, alice: uuid.UUID
) -> None:
    jti = uuid.uuid4().hex
    user_state(live, jti, alice)
    with elsewhere() as session:
        disable(session, alice)
    user_state(live, jti, alice, fresh=True)

    account = user_state(live, jti, alice).account
    assert account is not None
    assert account.is_active is False


def test_a_second_client_read_within_ttl_asks_the_database_nothing(
    live: LiveState, elsewhere: Sessions, statements: list[str]
) -> None:
    with elsewhere() as session:
        client, _ = ClientService(session).create(
            NewClient(name="rs", grant_types=("client_credentials",))
        )
    jti = uuid.uuid4().hex
    first = client_state(live, jti, client.client_id)
    statements.clear()

    assert client_state(live, jti, client.client_id) == first
    assert first == ClientState(revoked=False, scopes=frozenset())
    assert statements == []


def test_a_client_deleted_here_is_seen_by_the_next_read(
    live: LiveState, sessions: Sessions
) -> None:
    with sessions() as session:
        client, _ = ClientService(session).create(
            NewClient(name="rs", grant_types=("client_credentials",))
        )
        client_id = client.client_id
    jti = uuid.uuid4().hex
    assert client_state(live, jti, client_id).scopes == frozenset()
    with sessions() as session:
        gone = ClientService(session).get(client_id)
        assert gone is not None
        ClientService(session).delete(gone)

    assert client_state(live, jti, client_id).scopes is None

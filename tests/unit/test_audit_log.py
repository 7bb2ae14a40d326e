"""``authsvc.services.audit`` on the test database: the queue and its writer thread (nothing on
the caller's path touches the database, nothing queued is lost at shutdown, a database outage
delays events but neither loses nor duplicates them) and the ``AuditQuery`` reads."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, SQLAlchemyError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.db.models import AuditEvent
from authsvc.security.network import Caller
from authsvc.services.audit import FAILURE, AuditLog, AuditQuery, AuditRecord, AuditType

Sessions = sessionmaker[Session]
DEADLINE = 5.0
ALICE_ID = "5f0c6a4e-63a4-4c1b-9f7e-0c2d5d3b9a11"
BOB_ID = "0b7e2c1d-8f44-4e0a-a3c5-7d6e5f4a3b22"


@pytest.fixture
def sessions(settings: Settings, migrated: None) -> Iterator[Sessions]:
    engine = build_engine(settings)
    yield build_sessionmaker(engine)
    engine.dispose()


def stored(sessions: Sessions) -> list[AuditEvent]:
    with sessions() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def numbers(sessions: Sessions) -> list[int]:
    """The ``n`` detail of every stored event, in id order."""
    return [int((event.details or {})["n"]) for event in stored(sessions)]


def record_numbered(log: AuditLog, numbers: range) -> None:
    for number in numbers:
        log.record(AuditType.LOGIN_FAILED, outcome=FAILURE, n=number)


def wait_for(condition: Callable[[], bool], deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


def as_sessionmaker(factory: Callable[[], Session]) -> Sessions:
    """AuditLog only ever calls its sessionmaker; a plain factory stands in for one."""
    return cast(Sessions, factory)


def refused_connection() -> OperationalError:
    return OperationalError("INSERT INTO audit_events", None, ConnectionRefusedError("down"))


# --- producing ----------------------------------------------------------------------------------


def test_record_never_touches_the_database(unreachable_settings: Settings) -> None:
    engine = build_engine(unreachable_settings)
    real = build_sessionmaker(engine)
    opened: list[Session] = []

    def counting() -> Session:
        session = real()
        opened.append(session)
        return session

    log = AuditLog(as_sessionmaker(counting))
    try:
        started = time.monotonic()
        for number in range(100):
            log.record(
                AuditType.LOGIN_FAILED,
                outcome=FAILURE,
                caller=Caller("192.0.2.1", "agent"),
                subject_id=uuid.uuid4(),
                n=number,
            )
        elapsed = time.monotonic() - started

        assert opened == []
        assert len(log) == 100
        assert elapsed < 1.0
        # Writing now fails; the events stay queued, in order.
        with pytest.raises(SQLAlchemyError):
            log.flush()
        assert len(log) == 100
        assert [event.details for event in log._queue] == [{"n": n} for n in range(100)]
    finally:
        engine.dispose()


def test_record_fills_every_field_and_keeps_ids_as_text(sessions: Sessions) -> None:
    log = AuditLog(sessions)
    subject = uuid.UUID(ALICE_ID)
    before = datetime.now(UTC)

    log.record(
        AuditType.USER_UPDATED,
        caller=Caller("2001:db8::1", "curl/8"),
        actor_id=uuid.UUID(BOB_ID),
        subject_id=subject,
        username="alice",
        client_id="cli-app",
        fields=["email"],
        is_active=False,
    )
    log.record(AuditType.CLIENT_AUTH_FAILED, outcome=FAILURE, client_id="x")
    assert log.flush() == 2

    first, second = stored(sessions)
    assert (first.type, first.outcome) == ("user.updated", "success")
    assert (first.actor_id, first.subject_id) == (BOB_ID, ALICE_ID)
    assert (first.username, first.client_id) == ("alice", "cli-app")
    assert (first.ip, first.user_agent) == ("2001:db8::1", "curl/8")
    assert first.details == {"fields": ["email"], "is_active": False}
    assert before <= first.occurred_at <= datetime.now(UTC)
    assert first.occurred_at.tzinfo is not None
    assert (second.type, second.outcome, second.client_id) == ("client.auth_failed", "failure", "x")
    assert (second.ip, second.user_agent, second.actor_id, second.details) == (
        None,
        None,
        None,
        None,
    )
    assert second.id > first.id


def test_an_observer_that_raises_does_not_stop_the_event(sessions: Sessions) -> None:
    def broken(record: AuditRecord) -> None:
        raise OSError("no space left on device")

    log = AuditLog(sessions, on_record=broken)
    log.record(AuditType.LOGIN_SUCCEEDED, username="alice")

    assert log.flush() == 1
    assert [event.username for event in stored(sessions)] == ["alice"]


def test_max_queue_drops_the_oldest_and_counts_them(sessions: Sessions) -> None:
    log = AuditLog(sessions, max_queue=10)

    record_numbered(log, range(15))

    assert len(log) == 10
    assert log.dropped == 5
    assert log.flush() == 10
    assert numbers(sessions) == list(range(5, 15))
    assert log.dropped == 5


# --- writing ------------------------------------------------------------------------------------


def test_flush_writes_in_batches_in_order_and_returns_the_count(sessions: Sessions) -> None:
    log = AuditLog(sessions, max_batch=7)
    record_numbered(log, range(20))

    assert log.flush() == 20
    assert log.flush() == 0

    assert numbers(sessions) == list(range(20))
    assert len(log) == 0


def test_writer_thread_writes_within_the_flush_interval(sessions: Sessions) -> None:
    log = AuditLog(sessions, flush_interval=0.05)
    log.start()
    try:
        record_numbered(log, range(10))

        wait_for(lambda: len(stored(sessions)) == 10, 2.0)

        record_numbered(log, range(10, 15))
    finally:
        log.close()

    assert numbers(sessions) == list(range(15))


def test_a_full_batch_wakes_the_writer_before_the_interval(sessions: Sessions) -> None:
    log = AuditLog(sessions, flush_interval=60, max_batch=5)
    log.start()
    try:
        time.sleep(0.05)  # the writer is waiting for its 60 s interval
        record_numbered(log, range(5))

        wait_for(lambda: len(stored(sessions)) == 5, 2.0)
    finally:
        log.close()
    assert numbers(sessions) == list(range(5))


def test_close_right_after_recording_1000_events_writes_all_of_them(sessions: Sessions) -> None:
    log = AuditLog(sessions)
    log.start()
    record_numbered(log, range(1000))

    log.close()

    assert numbers(sessions) == list(range(1000))
    assert len(log) == 0
    assert log._thread is None


def test_close_without_a_writer_thread_writes_the_queue(sessions: Sessions) -> None:
    log = AuditLog(sessions)
    record_numbered(log, range(3))

    log.close()
    log.close()  # a second close has nothing left to do

    assert numbers(sessions) == [0, 1, 2]


def test_close_when_the_database_stays_down_logs_what_is_lost(
    unreachable_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    engine = build_engine(unreachable_settings)
    log = AuditLog(build_sessionmaker(engine), flush_interval=0.05)
    log.start()
    try:
        record_numbered(log, range(7))
        time.sleep(0.2)  # the writer has failed at least once and is backing off
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="authsvc.audit"):
            log.close()
        assert time.monotonic() - started < 3.0
    finally:
        engine.dispose()

    lost = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(lost) == 1
    assert lost[0].getMessage().startswith("7 audit events lost at shutdown: ")
    assert len(log) == 7


def test_events_recorded_while_the_database_is_down_are_written_once_it_is_back(
    sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    down = threading.Event()
    down.set()
    attempts: list[float] = []

    def flaky() -> Session:
        attempts.append(time.monotonic())
        if down.is_set():
            raise refused_connection()
        return sessions()

    log = AuditLog(sessions, flush_interval=0.05)
    log._sessions = as_sessionmaker(flaky)
    with caplog.at_level(logging.WARNING, logger="authsvc.audit"):
        log.start()
        try:
            record_numbered(log, range(5))
            wait_for(lambda: len(attempts) >= 2)
            record_numbered(log, range(5, 10))
            assert stored(sessions) == []

            down.clear()  # the database is back

            wait_for(lambda: len(stored(sessions)) >= 10)
            record_numbered(log, range(10, 12))
        finally:
            log.close()

    assert numbers(sessions) == list(range(12))
    assert any("audit events not written yet" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_commit_that_fails_is_rolled_back_and_retried_without_duplicates(
    sessions: Sessions,
) -> None:
    failures = [1]

    def failing_commit_once() -> Session:
        session = sessions()
        if failures:
            failures.pop()

            def commit() -> None:
                raise refused_connection()

            session.commit = commit  # type: ignore[method-assign]
        return session

    log = AuditLog(as_sessionmaker(failing_commit_once))
    record_numbered(log, range(4))

    with pytest.raises(OperationalError):
        log.flush()
    assert stored(sessions) == []
    assert len(log) == 4
    assert log.flush() == 4

    assert numbers(sessions) == [0, 1, 2, 3]


def test_a_failure_after_some_batches_keeps_the_rest_queued_in_order(sessions: Sessions) -> None:
    calls: list[int] = []

    def second_call_fails() -> Session:
        calls.append(1)
        if len(calls) == 2:
            raise refused_connection()
        return sessions()

    log = AuditLog(as_sessionmaker(second_call_fails), max_batch=3)
    record_numbered(log, range(8))

    with pytest.raises(OperationalError):
        log.flush()
    assert numbers(sessions) == [0, 1, 2]
    assert [event.details for event in log._queue] == [{"n": n} for n in range(3, 8)]
    record_numbered(log, range(8, 9))
    assert log.flush() == 6

    assert numbers(sessions) == list(range(9))


def test_a_detail_that_is_not_json_is_stored_as_text(sessions: Sessions) -> None:
    log = AuditLog(sessions)
    log.record(AuditType.SCOPE_CREATED, scope="before")
    log.record(AuditType.SCOPE_CREATED, scope=3.5j)
    log.record(AuditType.SCOPE_CREATED, scope="after")

    log.close()

    assert [event.details for event in stored(sessions)] == [
        {"scope": "before"},
        {"scope": "3.5j"},
        {"scope": "after"},
    ]


def test_an_event_the_database_refuses_does_not_block_the_others(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(sessions)
    log.record(AuditType.SCOPE_CREATED, scope="before")
    log.record(AuditType.SCOPE_CREATED, scope="refused")
    log.record(AuditType.SCOPE_CREATED, scope="after")
    insert = log._insert

    def refusing(batch: list[AuditRecord]) -> int:
        # What a data error looks like to the writer (a value the database rejects).
        if any(event.details == {"scope": "refused"} for event in batch):
            raise StatementError("refused", "INSERT", {}, ValueError("bad value"))
        return insert(batch)

    monkeypatch.setattr(log, "_insert", refusing)
    log.close()

    assert [event.details for event in stored(sessions)] == [
        {"scope": "before"},
        {"scope": "after"},
    ]


# --- reading ------------------------------------------------------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def add_events(sessions: Sessions, *rows: dict[str, Any]) -> list[int]:
    """Insert events as given (occurred_at T0 + n minutes unless set); their ids in order."""
    with sessions() as session:
        events = [
            AuditEvent(
                occurred_at=row.pop("occurred_at", T0 + timedelta(minutes=number)),
                outcome=row.pop("outcome", "success"),
                **row,
            )
            for number, row in enumerate(rows)
        ]
        session.add_all(events)
        session.commit()
        return [event.id for event in events]


@pytest.fixture
def trail(sessions: Sessions) -> list[int]:
    return add_events(
        sessions,
        {"type": "login.succeeded", "subject_id": ALICE_ID, "username": "alice"},
        {"type": "token.issued", "subject_id": ALICE_ID, "username": "alice"},
        {"type": "user.updated", "actor_id": BOB_ID, "subject_id": ALICE_ID, "username": "alice"},
        {"type": "scope.created", "actor_id": ALICE_ID, "details": {"scope": "x"}},
        {"type": "login.failed", "subject_id": BOB_ID, "username": "bob", "outcome": "failure"},
        {"type": "client.auth_failed", "client_id": ALICE_ID, "outcome": "failure"},
        {"type": "login.failed", "username": None, "outcome": "failure"},
    )


def page_ids(sessions: Sessions, **filters: Any) -> list[int]:
    with sessions() as session:
        return [event.id for event in AuditQuery(session).page(**filters)]


def test_page_is_newest_first_and_limited(sessions: Sessions, trail: list[int]) -> None:
    assert page_ids(sessions) == trail[::-1]
    assert page_ids(sessions, limit=3) == trail[::-1][:3]


def test_page_filters_by_types(sessions: Sessions, trail: list[int]) -> None:
    assert page_ids(sessions, types=["login.failed"]) == [trail[6], trail[4]]
    assert page_ids(sessions, types=["login.failed", "scope.created"]) == [
        trail[6],
        trail[4],
        trail[3],
    ]
    assert page_ids(sessions, types=["nothing"]) == []


def test_page_user_uuid_matches_subject_or_actor_never_client_or_name(
    sessions: Sessions, trail: list[int]
) -> None:
    alice = [trail[3], trail[2], trail[1], trail[0]]
    for spelling in (ALICE_ID, ALICE_ID.upper(), uuid.UUID(ALICE_ID).hex, f"urn:uuid:{ALICE_ID}"):
        assert page_ids(sessions, user=spelling) == alice, spelling
    assert page_ids(sessions, user=BOB_ID) == [trail[4], trail[2]]
    assert page_ids(sessions, user=str(uuid.uuid4())) == []


def test_page_user_name_matches_the_username(sessions: Sessions, trail: list[int]) -> None:
    assert page_ids(sessions, user="alice") == [trail[2], trail[1], trail[0]]
    assert page_ids(sessions, user="bob") == [trail[4]]
    assert page_ids(sessions, user="carol") == []
    assert page_ids(sessions, user="") == trail[::-1]  # empty: no filter


def test_page_since_is_inclusive(sessions: Sessions, trail: list[int]) -> None:
    assert page_ids(sessions, since=T0 + timedelta(minutes=4)) == [trail[6], trail[5], trail[4]]
    assert page_ids(sessions, since=T0 + timedelta(minutes=4, microseconds=1)) == [
        trail[6],
        trail[5],
    ]
    # The same instant in another zone.
    elsewhere = T0.astimezone(timezone(timedelta(hours=-5)))
    assert page_ids(sessions, since=elsewhere) == trail[::-1]
    assert page_ids(sessions, since=T0 + timedelta(days=1)) == []


def test_page_before_walks_the_pages(sessions: Sessions, trail: list[int]) -> None:
    seen: list[int] = []
    before: int | None = None
    while page := page_ids(sessions, before=before, limit=2):
        seen += page
        before = page[-1]
    assert seen == trail[::-1]
    assert page_ids(sessions, before=trail[0]) == []
    assert page_ids(sessions, types=["login.failed"], before=trail[6]) == [trail[4]]


def test_last_id_is_0_on_an_empty_table_and_then_the_highest_id(sessions: Sessions) -> None:
    with sessions() as session:
        assert AuditQuery(session).last_id() == 0
    ids = add_events(sessions, {"type": "a"}, {"type": "b"})
    with sessions() as session:
        assert AuditQuery(session).last_id() == ids[-1] == max(ids)


def test_after_is_oldest_first_above_the_id_and_limited(
    sessions: Sessions, trail: list[int]
) -> None:
    with sessions() as session:
        query = AuditQuery(session)
        assert [event.id for event in query.after(0)] == trail
        assert [event.id for event in query.after(trail[2])] == trail[3:]
        assert [event.id for event in query.after(trail[2], limit=2)] == trail[3:5]
        assert query.after(trail[-1]) == []


def test_by_ids_returns_those_that_exist_in_id_order(sessions: Sessions, trail: list[int]) -> None:
    with sessions() as session:
        query = AuditQuery(session)
        found = query.by_ids([trail[5], trail[1], 10**9, trail[3]])
        assert [event.id for event in found] == [trail[1], trail[3], trail[5]]
        assert query.by_ids([]) == []
        assert query.by_ids(set()) == []


# --- the app's lifespan -------------------------------------------------------------------------


def test_leaving_the_app_writes_what_was_still_queued(
    settings: Settings, migrated: None, sessions: Sessions
) -> None:
    app = create_app(settings)
    with TestClient(app) as client:
        audit: AuditLog = app.state.ctx.audit
        # Held back: the writer would otherwise take these before the shutdown does.
        audit._flush_interval = 60
        time.sleep(0.3)  # the writer's next wait is the long one
        response = client.post(
            "/oauth2/token",
            data={"grant_type": "password", "username": "nobody", "password": "x-1"},
        )
        assert response.status_code == 400
        record_numbered(audit, range(300))

    events = stored(sessions)
    assert len(events) == 301
    assert (events[0].type, events[0].details) == ("login.failed", {"reason": "unknown_user"})
    assert [event.details for event in events[1:]] == [{"n": n} for n in range(300)]
    assert audit._thread is None

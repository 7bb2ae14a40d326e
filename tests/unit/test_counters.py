"""Fixed-window counters in the database (``SqlCounterStore``) and the per-address failure limit
built on them (``FailureLimiter``), driven by a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.db.models import RateLimitCounter
from authsvc.services.counters import FailureLimiter, SqlCounterStore

WINDOW = 60


@pytest.fixture
def sessions(settings: Settings, migrated: None) -> Iterator[sessionmaker[Session]]:
    engine = build_engine(settings)
    yield build_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def store(sessions: sessionmaker[Session]) -> SqlCounterStore:
    return SqlCounterStore(sessions)


def rows(sessions: sessionmaker[Session]) -> dict[str, tuple[int, int]]:
    with sessions() as session:
        return {
            row.key: (row.window_start, row.count)
            for row in session.scalars(select(RateLimitCounter))
        }


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingStore:
    """An in-memory CounterStore that remembers every call."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}
        self.calls: list[tuple[str, str, int]] = []

    def increment(self, key: str, window_start: int, window: int) -> int:
        self.calls.append(("increment", key, window_start))
        self.counts[key, window_start] = self.counts.get((key, window_start), 0) + 1
        return self.counts[key, window_start]

    def read(self, key: str, window_start: int) -> int:
        self.calls.append(("read", key, window_start))
        return self.counts.get((key, window_start), 0)


# --- SqlCounterStore -------------------------------------------------------------------------


def test_increment_counts_within_a_window(store: SqlCounterStore) -> None:
    assert [store.increment("k", 600, WINDOW) for _ in range(3)] == [1, 2, 3]
    assert store.read("k", 600) == 3


def test_read_of_an_unknown_key_or_another_window_is_zero(store: SqlCounterStore) -> None:
    store.increment("k", 600, WINDOW)

    assert store.read("other", 600) == 0
    assert store.read("k", 540) == 0
    assert store.read("k", 660) == 0


def test_keys_count_separately(store: SqlCounterStore) -> None:
    store.increment("a", 600, WINDOW)
    store.increment("a", 600, WINDOW)
    store.increment("b", 600, WINDOW)

    assert (store.read("a", 600), store.read("b", 600)) == (2, 1)


def test_a_new_window_starts_again_at_one(
    store: SqlCounterStore, sessions: sessionmaker[Session]
) -> None:
    for _ in range(5):
        store.increment("k", 600, WINDOW)

    assert store.increment("k", 660, WINDOW) == 1
    assert store.read("k", 660) == 1
    assert store.read("k", 600) == 0
    assert rows(sessions) == {"k": (660, 1)}


def test_concurrent_increments_all_count(store: SqlCounterStore) -> None:
    threads = 20
    barrier = threading.Barrier(threads)

    def hit(_: int) -> int:
        barrier.wait(timeout=10)
        return store.increment("fail:203.0.113.7", 600, WINDOW)

    with ThreadPoolExecutor(threads) as pool:
        results = sorted(pool.map(hit, range(threads)))

    # Every increment saw a distinct count: none was lost, none counted twice.
    assert results == list(range(1, threads + 1))
    assert store.read("fail:203.0.113.7", 600) == threads


def test_purge_removes_only_windows_before_the_cutoff(
    store: SqlCounterStore, sessions: sessionmaker[Session]
) -> None:
    store.increment("old", 480, WINDOW)
    store.increment("older", 420, WINDOW)
    store.increment("current", 540, WINDOW)
    store.increment("current", 540, WINDOW)
    store.increment("newer", 600, WINDOW)

    assert store.purge(540) == 2

    assert rows(sessions) == {"current": (540, 2), "newer": (600, 1)}
    assert store.read("current", 540) == 2
    assert store.purge(540) == 0


# --- FailureLimiter ----------------------------------------------------------------------------


def limiter_for(
    store: SqlCounterStore | RecordingStore, clock: FakeClock, limit: int = 3
) -> FailureLimiter:
    return FailureLimiter(store, limit=limit, window=WINDOW, clock=clock)


def test_below_the_limit_there_is_no_wait(store: SqlCounterStore) -> None:
    limiter = limiter_for(store, FakeClock(1000.0))

    for _ in range(2):
        assert limiter.retry_after("203.0.113.7") == 0
        limiter.record_failure("203.0.113.7")

    assert limiter.retry_after("203.0.113.7") == 0


def test_at_the_limit_wait_until_the_window_ends(store: SqlCounterStore) -> None:
    clock = FakeClock(1000.0)  # the window is [960, 1020)
    limiter = limiter_for(store, clock)
    for _ in range(3):
        limiter.record_failure("203.0.113.7")

    assert limiter.retry_after("203.0.113.7") == 20
    clock.now = 1000.2
    assert limiter.retry_after("203.0.113.7") == 20  # rounded up, never early
    clock.now = 1019.5
    assert limiter.retry_after("203.0.113.7") == 1
    clock.now = 1019.999999
    assert limiter.retry_after("203.0.113.7") == 1  # at least one second
    clock.now = 1020.0
    assert limiter.retry_after("203.0.113.7") == 0


def test_failure_at_the_window_start_waits_the_whole_window(store: SqlCounterStore) -> None:
    limiter = limiter_for(store, FakeClock(960.0))
    for _ in range(3):
        limiter.record_failure("203.0.113.7")

    assert limiter.retry_after("203.0.113.7") == WINDOW


def test_counts_reset_in_the_next_window(store: SqlCounterStore) -> None:
    clock = FakeClock(1000.0)
    limiter = limiter_for(store, clock)
    for _ in range(5):
        limiter.record_failure("203.0.113.7")

    clock.now = 1020.0
    assert limiter.retry_after("203.0.113.7") == 0
    limiter.record_failure("203.0.113.7")
    limiter.record_failure("203.0.113.7")
    assert limiter.retry_after("203.0.113.7") == 0
    limiter.record_failure("203.0.113.7")
    assert limiter.retry_after("203.0.113.7") == WINDOW


def test_addresses_are_limited_separately(store: SqlCounterStore) -> None:
    limiter = limiter_for(store, FakeClock(1000.0))
    for _ in range(3):
        limiter.record_failure("203.0.113.7")

    assert limiter.retry_after("203.0.113.7") > 0
    assert limiter.retry_after("203.0.113.8") == 0
    assert limiter.retry_after("2001:db8::7") == 0


def test_failures_are_stored_per_address_and_window(
    store: SqlCounterStore, sessions: sessionmaker[Session]
) -> None:
    limiter = limiter_for(store, FakeClock(1000.0))
    limiter.record_failure("203.0.113.7")
    limiter.record_failure("203.0.113.7")

    assert rows(sessions) == {"fail:203.0.113.7": (960, 2)}


def test_no_address_is_never_limited_and_never_stored() -> None:
    store = RecordingStore()
    limiter = limiter_for(store, FakeClock(1000.0), limit=1)

    for _ in range(5):
        limiter.record_failure(None)

    assert limiter.retry_after(None) == 0
    assert store.calls == []


def test_limit_zero_is_never_limited_and_never_stored() -> None:
    store = RecordingStore()
    limiter = limiter_for(store, FakeClock(1000.0), limit=0)

    for _ in range(50):
        limiter.record_failure("203.0.113.7")

    assert limiter.retry_after("203.0.113.7") == 0
    assert store.calls == []


def test_limit_of_one_refuses_after_the_first_failure() -> None:
    store = RecordingStore()
    limiter = limiter_for(store, FakeClock(1000.0), limit=1)

    assert limiter.retry_after("203.0.113.7") == 0
    limiter.record_failure("203.0.113.7")

    assert limiter.retry_after("203.0.113.7") == 20
    assert store.calls[-2:] == [
        ("increment", "fail:203.0.113.7", 960),
        ("read", "fail:203.0.113.7", 960),
    ]


# --- kept counts (cache_ttl) -----------------------------------------------------------------


class LaggingStore(RecordingStore):
    """Reads answer what the store held before the last increment: a read that raced one."""

    def read(self, key: str, window_start: int) -> int:
        return max(0, super().read(key, window_start) - 1)


def test_kept_counts_answer_the_check_without_a_store_read() -> None:
    store = RecordingStore()
    limiter = FailureLimiter(store, limit=2, window=WINDOW, clock=FakeClock(1000.0), cache_ttl=60)
    limiter.record_failure("203.0.113.7")
    limiter.record_failure("203.0.113.7")

    assert limiter.known_retry_after("203.0.113.7") == 20
    assert [call[0] for call in store.calls] == ["increment", "increment"]


def test_a_read_that_raced_an_increment_does_not_lower_the_kept_count() -> None:
    store = LaggingStore()
    limiter = FailureLimiter(store, limit=2, window=WINDOW, clock=FakeClock(1000.0), cache_ttl=60)
    limiter.record_failure("203.0.113.7")
    limiter.record_failure("203.0.113.7")

    limiter.retry_after("203.0.113.7")  # reads 1, behind the store's 2

    assert limiter.known_retry_after("203.0.113.7") == 20

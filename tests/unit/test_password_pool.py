"""PasswordHasher's own bcrypt pool: one thread per CPU, each at the lowest priority (nice 19),
fed from threads and from the event loop alike. Linux only: a thread's niceness is read with
``os.getpriority(PRIO_PROCESS, native thread id)``."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest

from authsvc.security.passwords import PasswordHasher
from tests.helpers import TEST_BCRYPT_ROUNDS, eventually

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread niceness is Linux behaviour"
)

PASSWORD = "correct horse battery staple"
POOL_PREFIX = "authsvc-bcrypt"
LOWEST_PRIORITY = 19


def niceness(thread_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread_id)


class Pool:
    """The bcrypt threads one hasher started: those not running before it was made."""

    def __init__(self) -> None:
        self._before = set(self._all())

    @staticmethod
    def _all() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith(POOL_PREFIX)]

    def threads(self) -> list[threading.Thread]:
        return [t for t in self._all() if t not in self._before]


@pytest.fixture
def pool() -> Pool:
    return Pool()


@pytest.fixture
def hasher(pool: Pool) -> Iterator[PasswordHasher]:
    hasher = PasswordHasher(TEST_BCRYPT_ROUNDS)
    yield hasher
    hasher.close()


def test_hashing_threads_run_at_niceness_19(hasher: PasswordHasher, pool: Pool) -> None:
    hasher.hash(PASSWORD)

    assert pool.threads()
    # A thread's initializer runs before its first task; the one that made the dummy hash
    # may still be in it when hash() returns.
    assert eventually(
        lambda: all(
            thread.native_id is not None and niceness(thread.native_id) == LOWEST_PRIORITY
            for thread in pool.threads()
        )
    ), {thread.name: niceness(thread.native_id or 0) for thread in pool.threads()}


def test_the_calling_thread_keeps_its_niceness(hasher: PasswordHasher) -> None:
    caller = threading.get_native_id()
    before = niceness(caller)

    hasher.hash(PASSWORD)
    hasher.verify(PASSWORD, None)

    assert niceness(caller) == before


def test_the_process_keeps_its_niceness(hasher: PasswordHasher) -> None:
    before = os.getpriority(os.PRIO_PROCESS, os.getpid())

    hasher.hash(PASSWORD)

    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == before


def test_verify_async_works_from_an_event_loop(hasher: PasswordHasher) -> None:
    async def login() -> tuple[tuple[bool, str | None], tuple[bool, str | None]]:
        password_hash = await hasher.hash_async(PASSWORD)
        right = await hasher.verify_async(PASSWORD, password_hash)
        wrong = await hasher.verify_async("wrong password", password_hash)
        return right, wrong

    assert anyio.run(login) == ((True, None), (False, None))


def test_verify_async_of_an_unknown_user_fails_from_an_event_loop(
    hasher: PasswordHasher,
) -> None:
    assert anyio.run(hasher.verify_async, PASSWORD, None) == (False, None)


def test_at_most_one_thread_per_cpu_after_many_concurrent_verifies(
    hasher: PasswordHasher, pool: Pool
) -> None:
    cpus = os.cpu_count() or 1
    password_hash = hasher.hash(PASSWORD)
    results: list[tuple[bool, str | None]] = []

    async def verify_one() -> None:
        results.append(await hasher.verify_async(PASSWORD, password_hash))

    async def storm() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(3 * cpus):
                group.start_soon(verify_one)

    anyio.run(storm)

    assert results == [(True, None)] * (3 * cpus)
    assert 1 <= len(pool.threads()) <= cpus


def test_max_concurrency_bounds_the_threads(pool: Pool) -> None:
    hasher = PasswordHasher(TEST_BCRYPT_ROUNDS, max_concurrency=1)
    try:
        password_hash = hasher.hash(PASSWORD)
        barrier = threading.Barrier(4)

        def verify(_: int) -> tuple[bool, str | None]:
            barrier.wait(timeout=10)
            return hasher.verify(PASSWORD, password_hash)

        with ThreadPoolExecutor(4) as callers:
            results = list(callers.map(verify, range(4)))

        assert results == [(True, None)] * 4
        assert len(pool.threads()) == 1
    finally:
        hasher.close()


def test_close_ends_the_pool_threads(pool: Pool) -> None:
    hasher = PasswordHasher(TEST_BCRYPT_ROUNDS)
    hasher.hash(PASSWORD)
    assert pool.threads()

    hasher.close()

    assert eventually(lambda: not pool.threads())

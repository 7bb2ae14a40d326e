"""TtlCache: entries that live ``ttl`` seconds, fills that lose to invalidations, and a bound on
the entry count, driven by a fake clock; SingleFlight: one call per key at a time."""

from __future__ import annotations

import asyncio

import pytest

from authsvc.services.cache import MISSING, SingleFlight, TtlCache
from tests.helpers import FakeClock

TTL = 0.5


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> TtlCache[str | None]:
    return TtlCache(TTL, clock=clock)


def test_an_unknown_key_is_missing(cache: TtlCache[str | None]) -> None:
    assert cache.get("absent") is MISSING


def test_a_stored_value_is_returned_until_just_before_ttl(
    cache: TtlCache[str | None], clock: FakeClock
) -> None:
    cache.put("k", "v", cache.generation)
    clock.now += TTL - 0.001

    assert cache.get("k") == "v"


def test_a_stored_value_expires_at_ttl(cache: TtlCache[str | None], clock: FakeClock) -> None:
    cache.put("k", "v", cache.generation)
    clock.now += TTL

    assert cache.get("k") is MISSING


def test_a_put_again_restarts_the_ttl(cache: TtlCache[str | None], clock: FakeClock) -> None:
    cache.put("k", "old", cache.generation)
    clock.now += TTL - 0.1
    cache.put("k", "new", cache.generation)
    clock.now += TTL - 0.1

    assert cache.get("k") == "new"


def test_a_cached_none_is_returned_not_missing(cache: TtlCache[str | None]) -> None:
    cache.put("k", None, cache.generation)

    assert cache.get("k") is None


def test_a_put_with_a_stale_generation_stores_nothing(cache: TtlCache[str | None]) -> None:
    generation = cache.generation  # taken before a read of the database...
    cache.invalidate()  # ...which a committed write then invalidated

    cache.put("k", "read before the write", generation)

    assert cache.get("k") is MISSING
    assert len(cache) == 0


def test_invalidate_drops_every_entry(cache: TtlCache[str | None]) -> None:
    for key in ("a", "b", "c"):
        cache.put(key, key, cache.generation)

    cache.invalidate()

    assert [cache.get(key) for key in ("a", "b", "c")] == [MISSING, MISSING, MISSING]
    assert len(cache) == 0


def test_invalidate_bumps_the_generation(cache: TtlCache[str | None]) -> None:
    before = cache.generation

    cache.invalidate()

    assert cache.generation == before + 1


def test_a_put_with_the_new_generation_after_invalidate_is_stored(
    cache: TtlCache[str | None],
) -> None:
    cache.invalidate()

    cache.put("k", "v", cache.generation)

    assert cache.get("k") == "v"


def test_ttl_zero_stores_nothing(clock: FakeClock) -> None:
    cache: TtlCache[str] = TtlCache(0, clock=clock)

    cache.put("k", "v", cache.generation)

    assert cache.get("k") is MISSING
    assert len(cache) == 0


def test_a_full_cache_evicts_expired_entries_before_live_ones(clock: FakeClock) -> None:
    cache: TtlCache[str] = TtlCache(TTL, max_entries=3, clock=clock)
    cache.put("expired-1", "x", cache.generation)
    cache.put("expired-2", "x", cache.generation)
    clock.now += TTL
    cache.put("live", "v", cache.generation)

    cache.put("new", "v", cache.generation)

    # Both expired entries went; the live one, older than "new", stayed.
    assert len(cache) == 2
    assert cache.get("live") == "v"
    assert cache.get("new") == "v"


def test_a_full_cache_without_expired_entries_evicts_the_oldest(clock: FakeClock) -> None:
    cache: TtlCache[str] = TtlCache(TTL, max_entries=3, clock=clock)
    for key in ("first", "second", "third"):
        cache.put(key, key, cache.generation)
        clock.now += 0.01

    cache.put("fourth", "fourth", cache.generation)

    assert len(cache) == 3
    assert cache.get("first") is MISSING
    assert [cache.get(key) for key in ("second", "third", "fourth")] == [
        "second",
        "third",
        "fourth",
    ]


def test_replacing_a_key_in_a_full_cache_evicts_nothing(clock: FakeClock) -> None:
    cache: TtlCache[str] = TtlCache(TTL, max_entries=2, clock=clock)
    cache.put("a", "a", cache.generation)
    cache.put("b", "b", cache.generation)

    cache.put("b", "b2", cache.generation)

    assert len(cache) == 2
    assert (cache.get("a"), cache.get("b")) == ("a", "b2")


# --- SingleFlight ------------------------------------------------------------------------------


class CountedCall:
    """A call that waits for ``release`` and counts how often it ran."""

    def __init__(self, outcome: str | Exception = "answer") -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.outcome = outcome

    async def __call__(self) -> str:
        self.calls += 1
        await self.release.wait()
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def test_concurrent_callers_of_one_key_share_one_call() -> None:
    async def scenario() -> tuple[list[str], int]:
        flight: SingleFlight[str] = SingleFlight()
        call = CountedCall()
        waiting = [asyncio.ensure_future(flight.run("key", call)) for _ in range(20)]
        await asyncio.sleep(0)
        call.release.set()
        return list(await asyncio.gather(*waiting)), call.calls

    answers, calls = asyncio.run(scenario())

    assert answers == ["answer"] * 20
    assert calls == 1


def test_different_keys_do_not_share_a_call() -> None:
    async def scenario() -> int:
        flight: SingleFlight[str] = SingleFlight()
        call = CountedCall()
        waiting = [asyncio.ensure_future(flight.run(key, call)) for key in ("a", "b")]
        await asyncio.sleep(0)
        call.release.set()
        await asyncio.gather(*waiting)
        return call.calls

    assert asyncio.run(scenario()) == 2


def test_a_caller_that_goes_away_does_not_cancel_the_call_for_the_others() -> None:
    async def scenario() -> str:
        flight: SingleFlight[str] = SingleFlight()
        call = CountedCall()
        leaving = asyncio.ensure_future(flight.run("key", call))
        staying = asyncio.ensure_future(flight.run("key", call))
        await asyncio.sleep(0)
        leaving.cancel()
        call.release.set()
        return await staying

    assert asyncio.run(scenario()) == "answer"


def test_every_caller_gets_the_calls_exception() -> None:
    async def scenario() -> list[BaseException | str]:
        flight: SingleFlight[str] = SingleFlight()
        call = CountedCall(ConnectionError("database down"))
        waiting = [asyncio.ensure_future(flight.run("key", call)) for _ in range(3)]
        await asyncio.sleep(0)
        call.release.set()
        return list(await asyncio.gather(*waiting, return_exceptions=True))

    outcomes = asyncio.run(scenario())

    assert [type(outcome) for outcome in outcomes] == [ConnectionError] * 3


def test_a_call_after_the_last_one_finished_runs_again() -> None:
    async def scenario() -> int:
        flight: SingleFlight[str] = SingleFlight()
        call = CountedCall()
        call.release.set()
        await flight.run("key", call)
        await asyncio.sleep(0)  # the finished call leaves the table
        await flight.run("key", call)
        return call.calls

    assert asyncio.run(scenario()) == 2

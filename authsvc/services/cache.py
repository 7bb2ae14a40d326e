"""A small per-process cache whose entries live for a fraction of a second.

Short-lived on purpose: what it holds (is this user active, is this jti revoked, how many
failures has this address made) can change on another replica, and the answer must follow
within the bound we promise (1 s). ``invalidate`` drops everything at once, for writes made
through this process, so here a change is seen by the very next request.

Fills race with invalidations: a value read from the database before a write committed must
not be stored after that write invalidated the cache. Callers therefore take ``generation``
before they read and pass it to ``put``, which stores nothing if an invalidation came between.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class Missing:
    """The type of ``MISSING``: tells a cached None apart from no entry."""


MISSING = Missing()


class TtlCache(Generic[V]):
    def __init__(
        self,
        ttl: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, key: Hashable) -> V | Missing:
        entry = self._entries.get(key)
        if entry is None:
            return MISSING
        expires, value = entry
        if self._clock() >= expires:
            return MISSING
        return value

    def put(self, key: Hashable, value: V, generation: int) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if generation != self.generation:
                return
            entries = self._entries
            if len(entries) >= self.max_entries and key not in entries:
                self._evict(entries)
            # Re-inserted at the end: eviction goes by when an entry was last stored.
            entries.pop(key, None)
            entries[key] = (self._clock() + self.ttl, value)

    def _evict(self, entries: dict[Hashable, tuple[float, V]]) -> None:
        # Expired entries first; if none, the oldest (dicts keep insertion order). Entries
        # live under a second, so a full cache is mostly expired ones.
        now = self._clock()
        expired = [key for key, (expires, _) in entries.items() if expires <= now]
        for key in expired:
            del entries[key]
        if len(entries) >= self.max_entries:
            del entries[next(iter(entries))]

    def invalidate(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries = {}

    def __len__(self) -> int:
        return len(self._entries)


class SingleFlight(Generic[V]):
    """One call per key at a time: callers that arrive while it runs share its outcome.

    When a kept answer expires under load, every request in flight misses at once; without
    this each would read the database on a thread of its own. The call runs as a task of its
    own, so a caller that goes away (a client disconnect) does not cancel it for the others.
    """

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[V]] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[V]]) -> V:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self._running[key] = task
            task.add_done_callback(lambda _: self._running.pop(key, None))
        return await asyncio.shield(task)

"""Fixed-window counters every replica shares, and the per-address failure limit built on them.

The database holds the counters unless Redis is configured (``authsvc.services.redis_store``).
A window is identified by its start (``now // window * window``), so replicas agree on it
without talking to each other.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol, cast

from sqlalchemy import BigInteger, String, Table, bindparam, delete, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from authsvc.db.engine import affected_rows
from authsvc.db.models import RateLimitCounter
from authsvc.services.cache import Missing, TtlCache


class CounterStore(Protocol):
    def increment(self, key: str, window_start: int, window: int) -> int: ...

    def decrement(self, key: str, window_start: int) -> None: ...

    def read(self, key: str, window_start: int) -> int: ...


_COUNTERS = cast(Table, RateLimitCounter.__table__)
# Built once: these run on every password attempt. The upsert is text because SQLAlchemy
# cannot cache a compiled ON CONFLICT statement (it would compile it on every call), and
# this SQL is the same on SQLite and PostgreSQL. One atomic statement: concurrent
# increments on several replicas all count.
_INCREMENT = text(
    "INSERT INTO rate_limit_counters (key, window_start, count) VALUES (:key, :window_start, 1) "
    "ON CONFLICT (key) DO UPDATE SET "
    "count = CASE WHEN rate_limit_counters.window_start = excluded.window_start "
    "THEN rate_limit_counters.count + 1 ELSE 1 END, "
    "window_start = excluded.window_start "
    "RETURNING count"
).bindparams(bindparam("key", type_=String()), bindparam("window_start", type_=BigInteger()))
_DECREMENT = (
    update(_COUNTERS)
    .where(
        _COUNTERS.c.key == bindparam("p_key"),
        _COUNTERS.c.window_start == bindparam("p_window_start"),
        _COUNTERS.c.count > 0,
    )
    .values(count=_COUNTERS.c.count - 1)
)
_READ = select(_COUNTERS.c.count).where(
    _COUNTERS.c.key == bindparam("p_key"), _COUNTERS.c.window_start == bindparam("p_window_start")
)


class SqlCounterStore:
    """Counters as rows, one per key (the window start rides along and resets the count)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def increment(self, key: str, window_start: int, window: int) -> int:
        with self._sessions() as session:
            count = session.execute(
                _INCREMENT, {"key": key, "window_start": window_start}
            ).scalar_one()
            session.commit()
            return int(count)

    def decrement(self, key: str, window_start: int) -> None:
        with self._sessions() as session:
            session.execute(_DECREMENT, {"p_key": key, "p_window_start": window_start})
            session.commit()

    def read(self, key: str, window_start: int) -> int:
        with self._sessions() as session:
            count = session.execute(
                _READ, {"p_key": key, "p_window_start": window_start}
            ).scalar_one_or_none()
            return int(count or 0)

    def purge(self, before: int) -> int:
        with self._sessions() as session:
            result = session.execute(
                delete(RateLimitCounter).where(RateLimitCounter.window_start < before)
            )
            session.commit()
            return affected_rows(result)


def address_key(address: str) -> str:
    """What the limit counts by: the address, or for IPv6 its /64.

    One IPv6 subscriber usually holds a whole /64 (2^64 addresses); counting single addresses
    would let one attacker rotate through them and never reach the limit.
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{parsed}/64", strict=False))
    return str(parsed)


class FailureLimiter:
    """At most ``limit`` failures per address per window; beyond that, wait for the next one.

    The check before a request (``retry_after``) reads counts kept for ``cache_ttl``: every
    request to the token endpoint makes it, and the counts change only on failures. Failures
    counted here update the kept count at once, so only other replicas' failures arrive late
    (within ``cache_ttl``). Password attempts are gated by ``reserve``, which always counts in
    the store itself.
    """

    def __init__(
        self,
        store: CounterStore,
        *,
        limit: int,
        window: int,
        clock: Callable[[], float] = time.time,
        cache_ttl: float = 0.0,
    ) -> None:
        self.store = store
        self.limit = limit
        self.window = window
        self._clock = clock
        self._counts: TtlCache[int] = TtlCache(cache_ttl)
        self._keeping = threading.Lock()

    def _window(self) -> tuple[int, float]:
        now = self._clock()
        return int(now // self.window * self.window), now

    def _wait(self, count: int, start: int, now: float) -> int:
        return 0 if count < self.limit else max(1, math.ceil(start + self.window - now))

    def known_retry_after(self, address: str | None) -> int | None:
        """``retry_after`` from the kept counts alone; None when a store read is needed."""
        if self.limit == 0 or address is None:
            return 0
        start, now = self._window()
        count = self._counts.get((address_key(address), start))
        return None if isinstance(count, Missing) else self._wait(count, start, now)

    def retry_after(self, address: str | None) -> int:
        """Seconds until ``address`` may try again; 0 when it may now."""
        if self.limit == 0 or address is None:
            return 0
        start, now = self._window()
        key = address_key(address)
        generation = self._counts.generation
        count = self._keep(key, start, self.store.read(f"fail:{key}", start), generation)
        return self._wait(count, start, now)

    def _increment(self, address: str, start: int) -> int:
        key = address_key(address)
        generation = self._counts.generation
        count = self.store.increment(f"fail:{key}", start, self.window)
        self._keep(key, start, count, generation)
        return count

    def _keep(self, key: str, start: int, count: int, generation: int) -> int:
        """Keep ``count`` unless a higher one is kept already; return what is kept.

        Counts only grow within a window (a refund empties the cache instead), so a read
        that finished after a concurrent increment must not put the lower count back.
        """
        with self._keeping:
            kept = self._counts.get((key, start))
            if not isinstance(kept, Missing) and kept > count:
                return kept
            self._counts.put((key, start), count, generation)
            return count

    def record_failure(self, address: str | None) -> None:
        if self.limit == 0 or address is None:
            return
        start, _ = self._window()
        self._increment(address, start)

    def reserve(self, address: str | None) -> int:
        """Count an attempt as a failure before doing the work; 0, or seconds to wait.

        For expensive guesses (a password check): counting first means requests sent at the
        same moment cannot all pass a check that none of them has counted yet. ``refund``
        takes the count back when the attempt succeeds.
        """
        if self.limit == 0 or address is None:
            return 0
        start, now = self._window()
        if self._increment(address, start) <= self.limit:
            return 0
        return max(1, math.ceil(start + self.window - now))

    def refund(self, address: str | None) -> None:
        if self.limit == 0 or address is None:
            return
        start, _ = self._window()
        key = address_key(address)
        self.store.decrement(f"fail:{key}", start)
        # The count is one lower now; read it afresh next time rather than guess.
        self._counts.invalidate()

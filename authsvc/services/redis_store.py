"""Redis for what replicas share and read on hot paths: the denylist and rate-limit counters.

Timeouts are short, and every Redis error propagates: the app answers 503
``temporarily_unavailable``. A revocation check that cannot be made must refuse, not pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime

import redis
from sqlalchemy.orm import Session

PREFIX = "authsvc:"
TIMEOUT = 1.0


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        health_check_interval=30,
    )


class RedisDenylist:
    def __init__(self, client: redis.Redis, on_add: Callable[[], None] = lambda: None) -> None:
        self.client = client
        # Told of every entry: this process's cached token checks must see it at once.
        self._on_add = on_add

    def add(self, session: Session, jti: str, until: datetime) -> bool:
        ttl = max(1, math.ceil(until.timestamp() - time.time()))
        added = bool(self.client.set(f"{PREFIX}deny:{jti}", b"1", ex=ttl, nx=True))
        self._on_add()
        return added

    def contains(self, session: Session, jti: str) -> bool:
        return bool(self.client.exists(f"{PREFIX}deny:{jti}"))


class RedisCounterStore:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def increment(self, key: str, window_start: int, window: int) -> int:
        name = f"{PREFIX}count:{key}:{window_start}"
        pipe = self.client.pipeline()
        pipe.incr(name)
        pipe.expire(name, window * 2)
        count, _ = pipe.execute()
        return int(count)

    def decrement(self, key: str, window_start: int) -> None:
        name = f"{PREFIX}count:{key}:{window_start}"
        # Only where the counter exists: a DECR on a missing key would create it at -1.
        self.client.eval(
            "if redis.call('GET', KEYS[1]) then return redis.call('DECR', KEYS[1]) end return 0",
            1,
            name,
        )

    def read(self, key: str, window_start: int) -> int:
        value = self.client.get(f"{PREFIX}count:{key}:{window_start}")
        return int(value) if value is not None else 0

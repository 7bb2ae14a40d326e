"""The per-address failure limit around the token, introspection and revocation endpoints.

Checked before any work is done for the request (no bcrypt, no client lookup), counted after
a failure that guessing produces: a wrong username or password (``invalid_grant``; the
password grant counts it itself, before the check, see ``FailureLimiter.reserve``) and a
wrong client secret (``invalid_client``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from authsvc.oauth2.errors import InvalidClientError, InvalidCredentialsError, RateLimitedError
from authsvc.security.network import Caller
from authsvc.services.cache import SingleFlight
from authsvc.services.counters import FailureLimiter

T = TypeVar("T")


class Throttle:
    def __init__(self, limiter: FailureLimiter) -> None:
        self.limiter = limiter
        self._reads: SingleFlight[int] = SingleFlight()

    async def guard(self, caller: Caller, call: Callable[[], Awaitable[T]]) -> T:
        if self.limiter.limit == 0:
            return await call()
        retry_after = self.limiter.known_retry_after(caller.ip)
        if retry_after is None:
            retry_after = await self._reads.run(
                caller.ip, lambda: run_in_threadpool(self.limiter.retry_after, caller.ip)
            )
        if retry_after:
            raise RateLimitedError(retry_after)
        try:
            return await call()
        except (InvalidCredentialsError, InvalidClientError) as exc:
            if not getattr(exc, "counted", False):
                await run_in_threadpool(self.limiter.record_failure, caller.ip)
            raise

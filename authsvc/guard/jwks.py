"""The issuer's published keys, fetched over HTTP and cached (RFC 7517 §5, RFC 8414 §3).

Three rules keep a downstream service both current and cheap for the issuer:

* the JWKS is cached for what its ``Cache-Control: max-age`` says, clamped between a floor
  and a ceiling (a missing header means ``default_ttl``), so a key the issuer withdraws stops
  verifying within ``max_ttl`` even if the issuer asked for longer;
* a token naming a ``kid`` we do not hold triggers a refetch (the issuer may have rotated),
  but at most one fetch starts per ``refresh_interval``, so a flood of made-up kids costs the
  issuer one request per interval, not one per token;
* one fetch is in flight at a time: concurrent callers wait for it and share its result.

Only the issuer's own documents are ever fetched. Nothing a token carries (``jku``, ``x5u``,
``jwk``, ``x5c``) names a key source: the verifier refuses such headers before we get here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Collection, Mapping
from enum import Enum
from typing import Any

import httpx

from authsvc.guard.http import IssuerUnavailableError, discover, fetch_json
from authsvc.security.tokens import VerificationKey, verification_key_from_jwk

logger = logging.getLogger("authsvc.guard")

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$)", re.IGNORECASE)
# RFC 7518 §3.1: the algorithm a key of this type is used with, when the JWK omits "alg".
_DEFAULT_ALGORITHM = {("RSA", None): "RS256", ("EC", "P-256"): "ES256"}


def cache_ttl(cache_control: str | None, *, default: float, floor: float, ceiling: float) -> float:
    """Seconds to keep a document the issuer sent with this ``Cache-Control``."""
    ttl = default
    if cache_control:
        if _NO_CACHE.search(cache_control):
            ttl = floor
        elif match := _MAX_AGE.search(cache_control):
            ttl = float(match.group(1))
    return min(max(ttl, floor), ceiling)


def parse_jwks(
    document: Mapping[str, Any], algorithms: Collection[str]
) -> dict[str, VerificationKey]:
    """Usable signing keys by kid; a key we cannot use is skipped, not fatal to the others."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise IssuerUnavailableError("the JWKS has no keys array")
    keys: dict[str, VerificationKey] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid, kty = entry.get("kid"), entry.get("kty")
        if not isinstance(kid, str) or not kid or kid in keys:
            continue
        # A symmetric key in a public document would let anyone sign: never use one.
        if kty not in ("RSA", "EC"):
            continue
        crv = entry.get("crv")
        algorithm = entry.get("alg") or _DEFAULT_ALGORITHM.get(
            (kty, crv if isinstance(crv, str) else None)
        )
        if not isinstance(algorithm, str) or algorithm not in algorithms:
            continue
        try:
            keys[kid] = verification_key_from_jwk(entry, str(algorithm))
        except ValueError as exc:
            logger.warning("skipping JWK %s: %s", kid, exc)
    return keys


class Refresh(Enum):
    FETCHED = "fetched"
    SKIPPED = "skipped"  # the interval since the last attempt has not passed
    FAILED = "failed"


class JwksCache:
    """The issuer's keys by kid, refreshed by the rules in this module's docstring."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        issuer: str,
        jwks_url: str | None,
        algorithms: Collection[str],
        refresh_interval: float,
        default_ttl: float,
        min_ttl: float,
        max_ttl: float,
        on_update: Callable[[Mapping[str, VerificationKey]], None],
        deadline: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._issuer = issuer
        self.jwks_url = jwks_url
        self._algorithms = frozenset(algorithms)
        self._refresh_interval = refresh_interval
        self._ttl = {"default": default_ttl, "floor": min_ttl, "ceiling": max_ttl}
        self._on_update = on_update
        self._clock = clock
        self._loaded = False
        self._expires_at = 0.0
        self._last_attempt: float | None = None
        # Every finished attempt bumps this; a caller that waited through one takes its
        # outcome instead of starting another (no queue of serial retries behind an outage).
        self._attempts = 0
        self._last_outcome = Refresh.SKIPPED
        self._max_ttl = max_ttl
        self._deadline = deadline
        self._background: asyncio.Task[Refresh] | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self.fetches = 0

    def _get_lock(self) -> asyncio.Lock:
        # An asyncio.Lock belongs to the loop that first waits on it; tests and some servers
        # run the same validator under several loops, each of which gets its own lock.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def ensure_fresh(self) -> None:
        """Keys to verify with, refreshed by the rules above; raise only when there are none.

        An expired cache is refreshed in the background: requests keep using the keys they
        have instead of queueing behind a slow issuer. Only a cold cache, or keys stale past
        ``max_ttl`` (a key the issuer withdrew must not live on through an outage), make the
        caller wait.
        """
        now = self._clock()
        if self._loaded and now >= self._expires_at + self._max_ttl:
            logger.warning("the issuer's keys are too stale to use; dropping them")
            self._loaded = False
            self._on_update({})
        if not self._loaded:
            await self._refresh(self._attempts)
            if not self._loaded:
                raise IssuerUnavailableError("the issuer's keys could not be fetched")
        elif now >= self._expires_at and (self._background is None or self._background.done()):
            self._background = asyncio.create_task(self._refresh(self._attempts))

    async def refresh_for_unknown_kid(self) -> Refresh:
        """Refetch after an unknown kid, unless the interval forbids it.

        SKIPPED right after a failed attempt reads as FAILED: the issuer could not be asked,
        so the token may be good (503, not 401).
        """
        outcome = await self._refresh(self._attempts)
        if outcome is Refresh.SKIPPED and self._last_outcome is Refresh.FAILED:
            return Refresh.FAILED
        return outcome

    async def _refresh(self, seen_attempts: int) -> Refresh:
        async with self._get_lock():
            if self._attempts != seen_attempts:
                return self._last_outcome  # an attempt finished while we waited: share it
            if (
                self._last_attempt is not None
                and self._clock() - self._last_attempt < self._refresh_interval
            ):
                return Refresh.SKIPPED
            try:
                async with asyncio.timeout(self._deadline):
                    await self._fetch()
                outcome = Refresh.FETCHED
            except (IssuerUnavailableError, TimeoutError) as exc:
                # Keep serving the keys we have; the interval paces the retries.
                logger.warning("could not refresh the issuer's keys: %s", str(exc) or "timed out")
                outcome = Refresh.FAILED
            except Exception:
                # The background refresh has nobody to raise to; never lose it silently.
                logger.exception("refreshing the issuer's keys failed")
                outcome = Refresh.FAILED
            # The interval counts from the end of an attempt, so a slow failure is not
            # followed at once by another.
            self._last_attempt = self._clock()
            self._attempts += 1
            self._last_outcome = outcome
            return outcome

    async def aclose(self) -> None:
        """Stop a background refresh still running (before its HTTP client is closed)."""
        task, self._background = self._background, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _fetch(self) -> None:
        self.fetches += 1
        if self.jwks_url is None:
            jwks_uri = (await discover(self._http, self._issuer)).get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri:
                raise IssuerUnavailableError("the issuer's metadata has no jwks_uri")
            self.jwks_url = jwks_uri
        document, headers = await fetch_json(self._http, self.jwks_url)
        keys = parse_jwks(document, self._algorithms)
        ttl = cache_ttl(headers.get("cache-control"), **self._ttl)
        self._on_update(keys)
        self._loaded = True
        self._expires_at = self._clock() + ttl

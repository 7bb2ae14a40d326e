"""Introspection mode (RFC 7662): ask the gateway about each token, for routes that must see
a revocation, a disabled user or a removed scope at once rather than when the token expires.

Answers are cached for ``cache_ttl`` seconds (default 5), keyed by a hash of the token, so the
staleness bound is that TTL and a busy route costs the gateway one call per token per TTL.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import httpx

from authsvc.guard.http import (
    AsyncCloseable,
    IssuerUnavailableError,
    OwnedClient,
    discover,
    request_json,
)
from authsvc.oauth2.errors import InvalidTokenError, TemporarilyUnavailableError
from authsvc.security.principal import Principal
from authsvc.security.tokens import AccessTokenVerifier, TokenValidationError

logger = logging.getLogger("authsvc.guard")


def basic_credentials(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: both parts are form-urlencoded before they are joined and encoded."""
    joined = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(joined.encode("utf-8")).decode("ascii")


class IntrospectionValidator(AsyncCloseable):
    """Validates tokens by calling the issuer's introspection endpoint with client credentials.

    The client must be a confidential client registered at the gateway. An answer is only
    trusted if it is active, is about an access token, and names our issuer and audience.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        client_id: str,
        client_secret: str,
        *,
        introspection_url: str | None = None,
        cache_ttl: float = 5.0,
        max_entries: int = 10_000,
        timeout: float = 5.0,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_ttl < 0 or max_entries < 1:
            raise ValueError("need cache_ttl >= 0 and max_entries >= 1")
        if issuer.endswith("/"):
            # The gateway strips it from AUTHSVC_ISSUER, so "iss" never ends with one.
            raise ValueError("issuer must not end with '/'")
        self.issuer = issuer
        self.audience = audience
        self.introspection_url = introspection_url
        self._authorization = basic_credentials(client_id, client_secret)
        self._cache_ttl = cache_ttl
        self._max_entries = max_entries
        self._clock = clock
        self._client = OwnedClient(http_client, timeout)
        # httpx's timeout bounds each read; this bounds the whole call.
        self._deadline = 2 * timeout
        self._cache: OrderedDict[bytes, tuple[float, Principal | None]] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[Principal | None]] = {}
        # Only its signature-free shape checks are used: the issuer signs, we ask the issuer.
        self._shape = AccessTokenVerifier(
            {}, algorithms=("RS256", "ES256", "HS256"), issuer=issuer, audience=audience
        )
        self.calls = 0

    async def validate(self, token: str) -> Principal:
        if not self._plausible(token):
            # Not one of the issuer's access tokens even before any signature: no call, and
            # no cache entry that random strings could flush good answers out with.
            raise InvalidTokenError()
        key = hashlib.sha256(token.encode("utf-8")).digest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key)
            principal = cached[1]
        else:
            # One call per token however many requests carry it at once.
            task = self._inflight.get(key)
            if task is None:
                task = asyncio.ensure_future(self._ask(token))
                self._inflight[key] = task
                task.add_done_callback(lambda _: self._inflight.pop(key, None))
            principal = await asyncio.shield(task)
            self._remember(key, principal, now)
        if principal is None:
            raise InvalidTokenError()
        return principal

    def _plausible(self, token: str) -> bool:
        try:
            _, claims = self._shape.parse_unverified(token)
        except TokenValidationError:
            return False
        audience = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        return (
            claims["iss"] == self.issuer
            and self.audience in audience
            and claims["exp"] > time.time() - self._shape.leeway
        )

    def _remember(self, key: bytes, principal: Principal | None, now: float) -> None:
        if self._cache_ttl == 0:
            return
        expires = now + self._cache_ttl
        if principal is not None:
            # Never vouch for a token past its own expiry, however long the TTL.
            remaining = float(principal.claims.get("exp", 0)) - time.time()
            expires = min(expires, now + remaining)
        self._cache[key] = (expires, principal)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)

    async def _endpoint(self) -> str:
        if self.introspection_url is None:
            metadata = await discover(self._client.http, self.issuer)
            url = metadata.get("introspection_endpoint")
            if not isinstance(url, str) or not url:
                raise IssuerUnavailableError("the issuer's metadata has no introspection_endpoint")
            self.introspection_url = url
        return self.introspection_url

    async def _ask(self, token: str) -> Principal | None:
        self.calls += 1
        try:
            async with asyncio.timeout(self._deadline):
                url = await self._endpoint()
                status, answer, _ = await request_json(
                    self._client.http,
                    "POST",
                    url,
                    data={"token": token, "token_type_hint": "access_token"},
                    headers={"Authorization": self._authorization},
                )
        except (IssuerUnavailableError, TimeoutError) as exc:
            logger.warning("introspection failed: %s", str(exc) or "timed out")
            raise TemporarilyUnavailableError("The token issuer is unavailable") from None
        if status != 200:
            # 401 means our client credentials are wrong: an operator's problem, not the
            # caller's, so the caller gets a retryable 503 and the log says why.
            logger.error("introspection answered %s", status)
            raise TemporarilyUnavailableError("The token issuer is unavailable")
        if not isinstance(answer, dict):
            logger.error("introspection answered something that is not a JSON object")
            raise TemporarilyUnavailableError("The token issuer is unavailable")
        return self._principal(answer)

    def _principal(self, answer: dict[str, Any]) -> Principal | None:
        if answer.get("active") is not True:
            return None
        # A refresh token is active too, but it is not a bearer credential for resources.
        if str(answer.get("token_type", "")).lower() != "bearer":
            return None
        audience = answer.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if answer.get("iss") != self.issuer or self.audience not in audiences:
            return None
        if not isinstance(answer.get("sub"), str) or not isinstance(answer.get("exp"), int):
            return None
        return Principal.from_claims(answer)

    async def aclose(self) -> None:
        await self._client.aclose()

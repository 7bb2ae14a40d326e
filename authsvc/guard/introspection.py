"""Introspection mode (RFC 7662): ask the gateway about each token, for routes that must see
a revocation, a disabled user or a removed scope at once rather than when the token expires.

Answers are cached for ``cache_ttl`` seconds (default 5), keyed by a hash of the token, so the
staleness bound is that TTL and a busy route costs the gateway one call per token per TTL.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import quote_plus

import httpx

from authsvc.guard.http import IssuerUnavailableError, OwnedClient, discover, request_json
from authsvc.oauth2.errors import InvalidTokenError, TemporarilyUnavailableError
from authsvc.security.principal import Principal

logger = logging.getLogger("authsvc.guard")


def basic_credentials(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: both parts are form-urlencoded before they are joined and encoded."""
    joined = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(joined.encode("utf-8")).decode("ascii")


class IntrospectionValidator:
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
        self.issuer = issuer
        self.audience = audience
        self.introspection_url = introspection_url
        self._authorization = basic_credentials(client_id, client_secret)
        self._cache_ttl = cache_ttl
        self._max_entries = max_entries
        self._clock = clock
        self._client = OwnedClient(http_client, timeout)
        self._cache: OrderedDict[bytes, tuple[float, Principal | None]] = OrderedDict()
        self.calls = 0

    async def validate(self, token: str) -> Principal:
        key = hashlib.sha256(token.encode("utf-8")).digest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key)
            principal = cached[1]
        else:
            principal = await self._ask(token)
            self._remember(key, principal, now)
        if principal is None:
            raise InvalidTokenError()
        return principal

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
            url = await self._endpoint()
            status, answer, _ = await request_json(
                self._client.http,
                "POST",
                url,
                data={"token": token, "token_type_hint": "access_token"},
                headers={"Authorization": self._authorization},
            )
        except IssuerUnavailableError as exc:
            logger.warning("introspection failed: %s", exc)
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

    async def __aenter__(self) -> IntrospectionValidator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

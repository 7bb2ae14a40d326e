"""Local validation of the gateway's access tokens in a downstream service.

The signature and claim checks are the gateway's own :class:`AccessTokenVerifier`; this module
only feeds it the issuer's published keys. So a token the gateway would refuse is refused here
for the same reason, and a fix to the verifier protects both.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Protocol

import httpx

from authsvc.guard.http import AsyncCloseable, IssuerUnavailableError, OwnedClient
from authsvc.guard.jwks import JwksCache, Refresh
from authsvc.oauth2.bearer import refused
from authsvc.oauth2.errors import TemporarilyUnavailableError
from authsvc.security.keys import ASYMMETRIC_ALGORITHMS
from authsvc.security.principal import Principal
from authsvc.security.tokens import AccessTokenVerifier, TokenValidationError, VerificationKey

logger = logging.getLogger("authsvc.guard")


class Validator(Protocol):
    """What the guard's dependencies need: a token in, a principal out (or an OAuth2Error)."""

    async def validate(self, token: str) -> Principal: ...

    async def aclose(self) -> None: ...


class TokenValidator(AsyncCloseable):
    """Verifies access tokens against the issuer's JWKS, fetched and cached over HTTP.

    ``issuer`` is the gateway's ``AUTHSVC_ISSUER`` (the ``iss`` of its tokens); ``audience``
    is the ``aud`` the tokens must carry. ``jwks_url`` defaults to the ``jwks_uri`` in the
    issuer's RFC 8414 metadata. HS256 tokens cannot be checked this way (their key is not
    published); use :class:`authsvc.guard.IntrospectionValidator` for those.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks_url: str | None = None,
        algorithms: Collection[str] = ASYMMETRIC_ALGORITHMS,
        leeway: int = 30,
        refresh_interval: float = 10.0,
        default_ttl: float = 300.0,
        min_ttl: float = 30.0,
        max_ttl: float = 3600.0,
        timeout: float = 5.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        unsupported = set(algorithms) - set(ASYMMETRIC_ALGORITHMS)
        if unsupported or not algorithms:
            raise ValueError(f"algorithms must be among {ASYMMETRIC_ALGORITHMS}")
        if not 0 < min_ttl <= max_ttl:
            raise ValueError("need 0 < min_ttl <= max_ttl")
        if issuer.endswith("/"):
            # The gateway strips it from AUTHSVC_ISSUER, so "iss" never ends with one.
            raise ValueError("issuer must not end with '/'")
        self.issuer = issuer
        self._client = OwnedClient(http_client, timeout)
        self.verifier = AccessTokenVerifier(
            {}, algorithms=algorithms, issuer=issuer, audience=audience, leeway=leeway
        )
        self.jwks = JwksCache(
            self._client.http,
            issuer=issuer,
            jwks_url=jwks_url,
            algorithms=algorithms,
            refresh_interval=refresh_interval,
            default_ttl=default_ttl,
            min_ttl=min_ttl,
            max_ttl=max_ttl,
            on_update=self._install_keys,
            deadline=2 * timeout,
        )

    def _install_keys(self, keys: Mapping[str, VerificationKey]) -> None:
        self.verifier.keys = dict(keys)

    async def validate(self, token: str) -> Principal:
        """The principal, or ``InvalidTokenError`` / ``TemporarilyUnavailableError``."""
        try:
            await self.jwks.ensure_fresh()
        except IssuerUnavailableError as exc:
            logger.warning("cannot validate tokens: %s", exc)
            raise TemporarilyUnavailableError("The token issuer's keys are unavailable") from None
        try:
            return Principal.from_claims(self.verifier.verify(token))
        except TokenValidationError as exc:
            if exc.unknown_kid is None:
                raise refused(exc) from None
        # A kid we do not know: the issuer may have rotated since our last fetch.
        outcome = await self.jwks.refresh_for_unknown_kid()
        if outcome is Refresh.FAILED:
            # We could not ask; the token may well be good. Let the client retry.
            raise TemporarilyUnavailableError("The token issuer's keys are unavailable")
        try:
            return Principal.from_claims(self.verifier.verify(token))
        except TokenValidationError as exc:
            raise refused(exc) from None

    async def aclose(self) -> None:
        await self.jwks.aclose()
        await self._client.aclose()

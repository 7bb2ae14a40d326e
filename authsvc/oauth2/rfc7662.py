"""Token introspection (RFC 7662): is this token active, and what does it stand for?

Only authenticated confidential clients may ask (§2.1: the endpoint MUST be protected). The
answer for anything unusable is exactly ``{"active": false}`` (§2.2): expired, revoked,
malformed, of a disabled or deleted user, or never issued; we never say which.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from authsvc.oauth2.throttle import Throttle
from authsvc.oauth2.token_checks import TokenRevokedError, is_client_token, verify_live
from authsvc.oauth2.token_endpoint import read_token_request
from authsvc.security.network import Caller
from authsvc.security.tokens import MAX_TOKEN_BYTES, TokenValidationError
from authsvc.services.sessions import SessionService

if TYPE_CHECKING:
    from authsvc.context import AppContext

INACTIVE: dict[str, Any] = {"active": False}
_ACCESS_CLAIMS = ("scope", "client_id", "exp", "iat", "nbf", "sub", "aud", "iss", "jti")


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


class IntrospectionEndpoint:
    def __init__(self, ctx: AppContext, throttle: Throttle) -> None:
        self.ctx = ctx
        self.throttle = throttle

    async def handle(self, request: Request, caller: Caller) -> dict[str, Any]:
        # Introspection answers "is this token good?": a guessing oracle without the limit.
        return await self.throttle.guard(caller, lambda: self._handle(request, caller))

    async def _handle(self, request: Request, caller: Caller) -> dict[str, Any]:
        token_request = await read_token_request(request, caller)
        await self.ctx.client_authenticator.authenticate_request(
            token_request, require_confidential=True
        )
        token = token_request.require("token")
        # §2.1: token_type_hint is only a hint; an unknown one is ignored, not an error.
        return await self.introspect(token)

    async def introspect(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_BYTES:
            return dict(INACTIVE)
        if looks_like_jwt(token):
            return await self._access_token(token)
        return await run_in_threadpool(self._refresh_token, token)

    async def _access_token(self, token: str) -> dict[str, Any]:
        try:
            claims, scope = await verify_live(self.ctx, token)
        except (TokenValidationError, TokenRevokedError):
            return dict(INACTIVE)
        answer: dict[str, Any] = {"active": True, "token_type": "Bearer"}
        answer.update({name: claims[name] for name in _ACCESS_CLAIMS if name in claims})
        answer["scope"] = scope
        if not is_client_token(claims) and "preferred_username" in claims:
            answer["username"] = claims["preferred_username"]
        return answer

    def _refresh_token(self, token: str) -> dict[str, Any]:
        with self.ctx.sessionmaker() as session:
            info = SessionService(session, self.ctx.settings.refresh_token_ttl).describe(token)
        if info is None or not info.active:
            return dict(INACTIVE)
        return {
            "active": True,
            "token_type": "refresh_token",
            "scope": info.scope,
            "client_id": info.client_id,
            "username": info.username,
            "sub": str(info.user_id),
            "iss": self.ctx.settings.issuer,
            "exp": int(info.expires_at.timestamp()),
            "iat": int(info.issued_at.timestamp()),
        }

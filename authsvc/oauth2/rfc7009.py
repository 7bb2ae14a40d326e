"""Token revocation (RFC 7009).

Confidential clients authenticate; public ones identify themselves with ``client_id`` (§2.1).
A refresh token revokes its whole family; an access token's ``jti`` goes on the denylist until
the token would have expired. A client can only revoke its own tokens, and every outcome but a
bad request is 200 (§2.2): the answer never tells whether a token existed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from authsvc.oauth2.client_auth import OAuthClient
from authsvc.oauth2.errors import UnsupportedTokenTypeError
from authsvc.oauth2.rfc7662 import looks_like_jwt
from authsvc.oauth2.throttle import Throttle
from authsvc.oauth2.token_endpoint import read_token_request
from authsvc.security.network import Caller
from authsvc.security.tokens import MAX_TOKEN_BYTES, TokenValidationError
from authsvc.services.audit import AuditType
from authsvc.services.sessions import SessionService

if TYPE_CHECKING:
    from authsvc.context import AppContext

TOKEN_TYPE_HINTS = ("access_token", "refresh_token")


class RevocationEndpoint:
    def __init__(self, ctx: AppContext, throttle: Throttle) -> None:
        self.ctx = ctx
        self.throttle = throttle

    async def handle(self, request: Request, caller: Caller) -> None:
        # Client authentication here could otherwise be used to guess client secrets.
        await self.throttle.guard(caller, lambda: self._handle(request, caller))

    async def _handle(self, request: Request, caller: Caller) -> None:
        token_request = await read_token_request(request, caller)
        client = await self.ctx.client_authenticator.authenticate_request(token_request)
        token = token_request.require("token")
        hint = token_request.get("token_type_hint")
        if hint is not None and hint not in TOKEN_TYPE_HINTS:
            raise UnsupportedTokenTypeError(f"Unknown token_type_hint: {hint[:64]}")
        if len(token) <= MAX_TOKEN_BYTES:
            revoked = await run_in_threadpool(self.revoke, token, client)
            if revoked is not None:
                kind, subject = revoked
                self.ctx.audit.record(
                    AuditType.TOKEN_REVOKED,
                    caller=token_request.caller,
                    actor_id=client.audit_id,
                    subject_id=subject,
                    client_id=client.audit_id,
                    token_type=kind,
                )

    def revoke(self, token: str, client: OAuthClient) -> tuple[str, str] | None:
        """Revoke what the token stands for; returns its kind and subject, or None."""
        with self.ctx.sessionmaker() as session:
            service = SessionService(session, self.ctx.settings.refresh_token_ttl)
            if looks_like_jwt(token):
                try:
                    claims = self.ctx.keys.verify(token)
                except TokenValidationError:
                    # Forged, malformed or already expired: nothing that works to revoke.
                    return None
                if claims.get("client_id") != client.client_id:
                    return None
                # Kept until the verifier would refuse the token anyway: exp plus leeway.
                until = claims["exp"] + self.ctx.settings.jwt_leeway
                if not self.ctx.denylist.add(
                    session, str(claims["jti"]), datetime.fromtimestamp(until, UTC)
                ):
                    return None  # revoked before: nothing new to record
                return "access_token", str(claims["sub"])
            info = service.describe(token)
            if info is None or info.client_id != client.client_id:
                return None
            if not service.revoke_family(info.family_id):
                return None
            return "refresh_token", str(info.user_id)

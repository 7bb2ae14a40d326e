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

from authsvc.oauth2.client_auth import OAuthClient, extract_credentials
from authsvc.oauth2.errors import UnsupportedTokenTypeError
from authsvc.oauth2.rfc7662 import looks_like_jwt
from authsvc.oauth2.token_endpoint import read_token_request
from authsvc.security.tokens import MAX_TOKEN_BYTES, TokenValidationError
from authsvc.services.sessions import SessionService

if TYPE_CHECKING:
    from authsvc.context import AppContext

TOKEN_TYPE_HINTS = ("access_token", "refresh_token")


class RevocationEndpoint:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def handle(self, request: Request) -> None:
        token_request = await read_token_request(request)
        credentials = extract_credentials(token_request.authorization, token_request.params)
        client = await run_in_threadpool(self.ctx.client_authenticator.authenticate, credentials)
        token = token_request.require("token")
        hint = token_request.get("token_type_hint")
        if hint is not None and hint not in TOKEN_TYPE_HINTS:
            raise UnsupportedTokenTypeError(f"Unknown token_type_hint: {hint[:64]}")
        if len(token) <= MAX_TOKEN_BYTES:
            await run_in_threadpool(self.revoke, token, client)

    def revoke(self, token: str, client: OAuthClient) -> None:
        with self.ctx.sessionmaker() as session:
            service = SessionService(session, self.ctx.settings.refresh_token_ttl)
            if looks_like_jwt(token):
                try:
                    claims = self.ctx.keys.verify(token)
                except TokenValidationError:
                    # Forged, malformed or already expired: nothing that works to revoke.
                    return
                if claims.get("client_id") == client.client_id:
                    # Kept until the verifier would refuse the token anyway: exp plus leeway.
                    until = claims["exp"] + self.ctx.settings.jwt_leeway
                    service.deny_access_token(
                        str(claims["jti"]), datetime.fromtimestamp(until, UTC)
                    )
                return
            info = service.describe(token)
            if info is not None and info.client_id == client.client_id:
                service.revoke_family(info.family_id)

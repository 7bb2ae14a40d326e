"""Refreshing an access token (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from authsvc.oauth2.client_auth import OAuthClient
from authsvc.oauth2.errors import InvalidGrantError
from authsvc.oauth2.grants.base import BaseGrant
from authsvc.oauth2.scope import parse_scope
from authsvc.oauth2.token_endpoint import TokenRequest
from authsvc.services.audit import FAILURE, AuditType
from authsvc.services.sessions import RefreshTokenError, Rotation, SessionService

MAX_REFRESH_TOKEN_LENGTH = 512


class RefreshTokenGrant(BaseGrant):
    GRANT_TYPE = "refresh_token"

    def _rotate(self, token: str, client: OAuthClient, requested: list[str] | None) -> Rotation:
        with self.ctx.sessionmaker() as session:
            service = SessionService(session, self.ctx.settings.refresh_token_ttl)
            return service.rotate(token, client.client_id, requested, client.scopes)

    async def issue(self, request: TokenRequest) -> dict[str, Any]:
        token = request.require("refresh_token")
        requested = parse_scope(request.get("scope"))
        client = await self.client(request)
        if len(token) > MAX_REFRESH_TOKEN_LENGTH:
            raise InvalidGrantError("Invalid refresh token")
        try:
            rotation = await run_in_threadpool(self._rotate, token, client, requested)
        except RefreshTokenError as exc:
            if exc.reuse:
                self.ctx.audit.record(
                    AuditType.REFRESH_REUSE_DETECTED,
                    outcome=FAILURE,
                    caller=request.caller,
                    subject_id=exc.user_id,
                    client_id=client.audit_id,
                )
            # One answer whatever the reason: the client learns nothing it could use.
            raise InvalidGrantError("Invalid refresh token") from None
        return self.access_token_response(
            request,
            client,
            subject=str(rotation.user_id),
            scopes=rotation.scopes,
            username=rotation.username,
            refresh_token=rotation.refresh_token,
        )

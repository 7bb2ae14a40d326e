"""What every grant shares: identifying the client, and minting the access token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authsvc.oauth2.client_auth import OAuthClient
from authsvc.oauth2.token_endpoint import TokenRequest
from authsvc.observability.request_context import note_principal
from authsvc.security.tokens import build_access_token_claims
from authsvc.services.audit import AuditType

if TYPE_CHECKING:
    from authsvc.context import AppContext


class BaseGrant:
    GRANT_TYPE = ""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def client(
        self, request: TokenRequest, *, require_confidential: bool = False
    ) -> OAuthClient:
        client = await self.ctx.client_authenticator.authenticate_request(
            request, require_confidential=require_confidential
        )
        client.require_grant(self.GRANT_TYPE)
        return client

    def access_token_response(
        self,
        request: TokenRequest,
        client: OAuthClient,
        *,
        subject: str,
        scopes: list[str],
        username: str | None = None,
        refresh_token: str | None = None,
    ) -> dict[str, Any]:
        """RFC 6749 §5.1 successful response around an RFC 9068 access token."""
        settings = self.ctx.settings
        claims = build_access_token_claims(
            issuer=settings.issuer,
            audience=settings.audience,
            subject=subject,
            client_id=client.client_id,
            scopes=scopes,
            ttl=settings.access_token_ttl,
            extra={"preferred_username": username} if username is not None else None,
        )
        body: dict[str, Any] = {
            "access_token": self.ctx.signer.sign(claims),
            "token_type": "Bearer",
            "expires_in": settings.access_token_ttl,
            "scope": " ".join(scopes),
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        note_principal(client_id=client.audit_id, subject=subject)
        refreshed = self.GRANT_TYPE == "refresh_token"
        self.ctx.audit.record(
            AuditType.TOKEN_REFRESHED if refreshed else AuditType.TOKEN_ISSUED,
            caller=request.caller,
            subject_id=subject,
            username=username,
            client_id=client.audit_id,
            grant_type=self.GRANT_TYPE,
            scope=body["scope"],
            jti=claims["jti"],
        )
        return body

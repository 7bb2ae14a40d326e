"""Client Credentials grant (RFC 6749 §4.4): a service acting on its own behalf."""

from __future__ import annotations

from typing import Any

from authsvc.oauth2.grants.base import BaseGrant
from authsvc.oauth2.scope import grant_scopes, parse_scope
from authsvc.oauth2.token_endpoint import TokenRequest


class ClientCredentialsGrant(BaseGrant):
    GRANT_TYPE = "client_credentials"

    async def issue(self, request: TokenRequest) -> dict[str, Any]:
        requested = parse_scope(request.get("scope"))
        # §4.4: confidential clients only; §4.4.3: no refresh token.
        client = await self.client(request, require_confidential=True)
        scopes = grant_scopes(requested, client.restrict(client.scopes or ()))
        return self.access_token_response(request, client, subject=client.client_id, scopes=scopes)

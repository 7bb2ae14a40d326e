"""Discovery: the JWKS (RFC 7517 §5) and authorization server metadata (RFC 8414 §3)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from authsvc.api.deps import ContextDep, SessionDep
from authsvc.oauth2.client_auth import SUPPORTED_AUTH_METHODS
from authsvc.oauth2.rfc8414 import authorization_server_metadata
from authsvc.services.users import ScopeService

router = APIRouter(prefix="/.well-known", tags=["discovery"])

# Downstream guards honour this; on an unknown kid they refetch regardless, so a rotation is
# picked up at once while steady-state validators rarely call us.
JWKS_CACHE_CONTROL = "public, max-age=300"


@router.get("/jwks.json")
async def get_jwks(ctx: ContextDep, response: Response) -> dict[str, Any]:
    response.headers["Cache-Control"] = JWKS_CACHE_CONTROL
    return await run_in_threadpool(ctx.keys.jwks)


@router.get("/oauth-authorization-server")
def get_metadata(ctx: ContextDep, session: SessionDep, response: Response) -> dict[str, Any]:
    response.headers["Cache-Control"] = "public, max-age=60"
    return authorization_server_metadata(
        issuer=ctx.settings.issuer,
        grant_types=ctx.token_endpoint.grant_types,
        scopes=ScopeService(session).names(),
        auth_methods=SUPPORTED_AUTH_METHODS,
        extra=ctx.metadata_extra,
    )

"""The OAuth2 endpoints: token, introspection, revocation.

Each is a function of the request alone (the body is parsed strictly in ``oauth2``, not by
FastAPI), so the app serves them through ``api.shortcuts`` past FastAPI's per-request work;
``SHORTCUTS`` lists them. The router still declares them, for OpenAPI.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from authsvc.api.deps import context_of
from authsvc.api.shortcuts import Endpoint
from authsvc.oauth2.errors import NO_STORE_HEADERS
from authsvc.schemas import TokenResponse
from authsvc.security.network import caller_of

router = APIRouter(tags=["oauth2"])

_FORM_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {
                            "type": "string",
                            "enum": ["password", "refresh_token", "client_credentials"],
                        },
                        "username": {"type": "string"},
                        "password": {"type": "string", "format": "password"},
                        "refresh_token": {"type": "string"},
                        "scope": {"type": "string", "description": "space-separated scopes"},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string", "format": "password"},
                    },
                }
            }
        },
    },
    "responses": {
        "400": {"description": "RFC 6749 §5.2 error"},
        "401": {"description": "invalid_client"},
        "429": {"description": "Too many failures from this address; see Retry-After"},
        "503": {"description": "temporarily_unavailable"},
    },
}


@router.post(
    "/oauth2/token",
    response_model=TokenResponse,
    openapi_extra=_FORM_SCHEMA,
    summary="Issue an access token (RFC 6749 §3.2)",
)
async def issue_token(request: Request) -> Response:
    ctx = context_of(request)
    body = await ctx.token_endpoint.handle(request, caller_of(request, ctx.trusted_proxies))
    return JSONResponse(body, headers=NO_STORE_HEADERS)


@router.post(
    "/oauth2/introspect",
    summary="Introspect a token (RFC 7662)",
    responses={
        401: {"description": "invalid_client"},
        429: {"description": "Too many failures from this address; see Retry-After"},
    },
)
async def introspect_token(request: Request) -> Response:
    ctx = context_of(request)
    caller = caller_of(request, ctx.trusted_proxies)
    body = await ctx.introspection_endpoint.handle(request, caller)
    return JSONResponse(body, headers=NO_STORE_HEADERS)


@router.post(
    "/oauth2/revoke",
    summary="Revoke a token (RFC 7009)",
    responses={
        401: {"description": "invalid_client"},
        429: {"description": "Too many failures from this address; see Retry-After"},
    },
)
async def revoke_token(request: Request) -> Response:
    ctx = context_of(request)
    await ctx.revocation_endpoint.handle(request, caller_of(request, ctx.trusted_proxies))
    return Response(status_code=200, headers=NO_STORE_HEADERS)


SHORTCUTS: dict[tuple[str, str], Endpoint] = {
    ("POST", "/oauth2/token"): issue_token,
    ("POST", "/oauth2/introspect"): introspect_token,
    ("POST", "/oauth2/revoke"): revoke_token,
}

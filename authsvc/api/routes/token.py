"""The OAuth2 endpoints: token, introspection, revocation.

Each is a function of the request alone (the body is parsed strictly in ``oauth2``, not by
FastAPI), so the app serves them through ``api.shortcuts`` past FastAPI's per-request work;
``SHORTCUTS`` lists them. The router still declares them, for OpenAPI.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from authsvc.api.deps import context_of
from authsvc.api.responses import OAUTH2_ENDPOINT
from authsvc.api.shortcuts import Endpoint
from authsvc.oauth2.errors import NO_STORE_HEADERS
from authsvc.oauth2.rfc7009 import TOKEN_TYPE_HINTS
from authsvc.schemas import IntrospectionResponse, TokenResponse
from authsvc.security.network import caller_of

router = APIRouter(tags=["oauth2"], responses=OAUTH2_ENDPOINT)

_CLIENT_FIELDS: dict[str, Any] = {
    "client_id": {"type": "string"},
    "client_secret": {"type": "string", "format": "password"},
}


def _form(required: str, **properties: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI form body: the endpoints read theirs by hand, so FastAPI cannot infer it."""
    schema = {
        "type": "object",
        "required": [required],
        "properties": {**properties, **_CLIENT_FIELDS},
    }
    content = {"application/x-www-form-urlencoded": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


_TOKEN_TYPE_HINT = {"type": "string", "enum": list(TOKEN_TYPE_HINTS)}


@router.post(
    "/oauth2/token",
    response_model=TokenResponse,
    openapi_extra=_form(
        "grant_type",
        grant_type={"type": "string", "enum": ["password", "refresh_token", "client_credentials"]},
        username={"type": "string"},
        password={"type": "string", "format": "password"},
        refresh_token={"type": "string"},
        scope={"type": "string", "description": "space-separated scopes"},
    ),
    summary="Issue an access token (RFC 6749 §3.2)",
)
async def issue_token(request: Request) -> Response:
    ctx = context_of(request)
    body = await ctx.token_endpoint.handle(request, caller_of(request, ctx.trusted_proxies))
    return JSONResponse(body, headers=NO_STORE_HEADERS)


@router.post(
    "/oauth2/introspect",
    summary="Introspect a token (RFC 7662)",
    response_model=IntrospectionResponse,
    openapi_extra=_form("token", token={"type": "string"}, token_type_hint=_TOKEN_TYPE_HINT),
)
async def introspect_token(request: Request) -> Response:
    ctx = context_of(request)
    caller = caller_of(request, ctx.trusted_proxies)
    body = await ctx.introspection_endpoint.handle(request, caller)
    return JSONResponse(body, headers=NO_STORE_HEADERS)


@router.post(
    "/oauth2/revoke",
    summary="Revoke a token (RFC 7009)",
    openapi_extra=_form("token", token={"type": "string"}, token_type_hint=_TOKEN_TYPE_HINT),
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

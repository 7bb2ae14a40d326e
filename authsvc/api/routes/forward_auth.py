"""Forward-auth: one endpoint that nginx ``auth_request``, Traefik ForwardAuth and Envoy's HTTP
``ext_authz`` ask before they let a request through to a service that is not ours.

The proxy treats any status but 200, 401 and 403 as its own failure (nginx answers 500), so
this endpoint answers only 200, 401, 403 or 503: a malformed request is a 401 here, not a 400,
and an unexpected error is a 503. On 200 the identity travels in ``X-Auth-*`` headers, always
all four (empty when unknown), so a proxy that copies them overwrites anything a client sent
under the same names.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from authsvc.api.deps import SAFE_METHODS, ContextDep, authorize_token
from authsvc.api.request_log import ROUTE_TEMPLATE_KEY
from authsvc.api.responses import SCOPED
from authsvc.context import AppContext
from authsvc.oauth2.bearer import (
    checked_token,
    require_token,
    token_from_authorization,
)
from authsvc.oauth2.errors import (
    NO_STORE_HEADERS,
    InsufficientScopeError,
    InvalidTokenError,
    OAuth2Error,
    TemporarilyUnavailableError,
)
from authsvc.oauth2.scope import is_scope_token

logger = logging.getLogger("authsvc")

router = APIRouter(tags=["forward-auth"])

# Envoy's ext_authz repeats the original method (any method, WebDAV's included) and appends
# the original path; OpenAPI shows GET only.
_ANSWERS = (200, 401, 403, 503)
# Header values are Latin-1 text without control characters or surrounding spaces; a username
# may hold any letter and a client_id spaces. Anything beyond printable ASCII, and space, '%',
# '"' and '\\', travels percent-encoded (UTF-8), so ordinary names pass unchanged.
_HEADER_SAFE = "!#$&'()*+,-./:;<=>?@[]^_`{|}~"


def _header_value(value: str | None) -> str:
    return quote(value, safe=_HEADER_SAFE) if value else ""


def _token(headers: Headers, cookie: str | None, cookies: dict[str, str]) -> str:
    authorization = headers.getlist("authorization")
    token = token_from_authorization(authorization)
    # The cookie stands in only for a missing header: a request that sent any Authorization
    # (even another scheme) is judged by it alone.
    if not authorization and cookie is not None and cookie in cookies:
        token = checked_token(cookies[cookie])
    return require_token(token)


def _required_scopes(values: list[str]) -> list[str]:
    required = [scope for value in values for scope in value.split(" ") if scope]
    malformed = [scope for scope in required if not is_scope_token(scope)]
    if malformed:
        # The proxy's configuration is wrong; no token can hold such a scope.
        logger.warning("forward-auth asked for malformed scopes: %r", malformed)
        raise InsufficientScopeError([s for s in required if is_scope_token(s)])
    return required


def _original_method(request: Request) -> str:
    """The method of the request the proxy asks about: Traefik sends X-Forwarded-Method, our
    nginx config X-Original-Method, and Envoy repeats the method itself."""
    headers = request.headers
    return (
        headers.get("x-forwarded-method") or headers.get("x-original-method") or request.method
    ).upper()


async def _authorize(
    ctx: AppContext, token: str, scope_params: list[str], *, fresh: bool
) -> dict[str, str]:
    claims, scope = await authorize_token(ctx, token, _required_scopes(scope_params), fresh=fresh)
    return {
        "X-Auth-Subject": _header_value(str(claims["sub"])),
        "X-Auth-Username": _header_value(claims.get("preferred_username")),
        "X-Auth-Scopes": scope,
        "X-Auth-Client-Id": _header_value(claims.get("client_id")),
    }


_SCOPE_PARAMETER = {
    "name": "scope",
    "in": "query",
    "required": False,
    "description": "Space-separated scopes the token must hold (may repeat)",
    "schema": {"type": "string"},
}


@router.get(
    "/auth/verify",
    status_code=200,
    response_class=Response,
    openapi_extra={"parameters": [_SCOPE_PARAMETER]},
    responses={
        200: {"description": "Allowed; identity in X-Auth-Subject, -Username, -Scopes, -Client-Id"},
        # A malformed request is a 401 here, not a 400: a proxy passes on only these.
        **{status: SCOPED[status] for status in _ANSWERS if status != 200},
    },
)
async def verify(request: Request, ctx: ContextDep) -> Response:
    """Is the request's bearer token (or cookie) good, and does it hold ``scope``?"""
    try:
        token = _token(request.headers, ctx.settings.forward_auth_cookie, request.cookies)
        scopes = request.query_params.getlist("scope")
        # A request that changes something behind the proxy is checked against the database,
        # like one to the gateway itself; a read may use answers kept for auth_cache_ttl.
        fresh = _original_method(request) not in SAFE_METHODS
        identity = await _authorize(ctx, token, scopes, fresh=fresh)
    except OAuth2Error as exc:
        if exc.status_code in _ANSWERS:
            raise
        # Two Authorization headers and the like: a 400 elsewhere, a 401 to a proxy.
        raise InvalidTokenError(exc.description or None) from None
    except Exception as exc:
        if isinstance(exc, ctx.unavailable_errors):
            raise  # the app's handler answers 503 temporarily_unavailable
        logger.exception("forward-auth failed")
        raise TemporarilyUnavailableError() from None
    return Response(status_code=200, headers={**NO_STORE_HEADERS, **identity})


class _AnyMethod:
    """The same endpoint for every other method. An ASGI class, because Starlette limits a
    plain function endpoint with no methods listed to GET."""

    def __init__(self, template: str) -> None:
        self.template = template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[ROUTE_TEMPLATE_KEY] = self.template  # for the request log
        request = Request(scope, receive)
        response = await verify(request, request.app.state.ctx)
        await response(scope, receive, send)


for _template in ("/auth/verify", "/auth/verify/{path:path}"):
    router.routes.append(Route(_template, _AnyMethod(_template), include_in_schema=False))

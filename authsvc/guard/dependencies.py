"""FastAPI dependencies for a service that trusts the gateway's tokens.

``install_guard(app, validator)`` puts the validator on ``app.state`` and registers the
gateway's OAuth2 error handler, so routes anywhere (including ``APIRouter`` modules that never
see the validator) protect themselves with the same ``Security`` chains as the gateway's, and
refusals carry the same RFC 6750 status, body and ``WWW-Authenticate`` challenge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, Request, Security, WebSocket
from fastapi.security import SecurityScopes
from starlette.requests import HTTPConnection

from authsvc.guard.validator import Validator
from authsvc.oauth2.bearer import (
    check_scopes,
    refuse_websocket,
    require_token,
    token_from_authorization,
    token_from_websocket,
)
from authsvc.oauth2.errors import (
    OAuth2Error,
    oauth2_error_handler,
)
from authsvc.security.principal import Principal

STATE_ATTRIBUTE = "authsvc_guard"


@dataclass(frozen=True)
class Guard:
    validator: Validator
    live: Validator | None = None


def install_guard(app: FastAPI, validator: Validator, *, live: Validator | None = None) -> None:
    """Protect ``app`` with ``validator``; ``live`` (an IntrospectionValidator) backs
    ``require_scopes(..., live=True)`` and ``LivePrincipal`` for routes that must see
    revocation at once. The validators are closed when the app shuts down."""
    app.state.authsvc_guard = Guard(validator, live)
    app.add_exception_handler(OAuth2Error, oauth2_error_handler)
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        try:
            async with inner(application) as state:
                yield state
        finally:
            await validator.aclose()
            if live is not None:
                await live.aclose()

    app.router.lifespan_context = lifespan


def _guard(connection: HTTPConnection) -> Guard:
    guard = getattr(connection.app.state, STATE_ATTRIBUTE, None)
    if not isinstance(guard, Guard):
        raise RuntimeError("call authsvc.guard.install_guard(app, validator) first")
    return guard


async def bearer_token(request: Request) -> str:
    _guard(request)  # a missing install_guard must fail loudly, token or not
    return require_token(token_from_authorization(request.headers.getlist("authorization")))


async def _principal(security_scopes: SecurityScopes, request: Request, *, live: bool) -> Principal:
    # Several Security(...) layers on one route ask again with other scopes; validate once.
    # The token is read here, not by a dependency of its own: each dependency FastAPI solves
    # costs every protected request.
    attribute = "authsvc_live_principal" if live else "authsvc_principal"
    principal: Principal | None = getattr(request.state, attribute, None)
    if principal is None:
        token = await bearer_token(request)
        guard = _guard(request)
        validator = guard.live if live else guard.validator
        if validator is None:
            raise RuntimeError("live=True needs install_guard(app, validator, live=...)")
        principal = await validator.validate(token)
        setattr(request.state, attribute, principal)
    check_scopes(security_scopes.scopes, principal.scopes)
    return principal


async def get_principal(security_scopes: SecurityScopes, request: Request) -> Principal:
    """The token's principal, verified locally against the issuer's cached keys."""
    return await _principal(security_scopes, request, live=False)


async def get_live_principal(security_scopes: SecurityScopes, request: Request) -> Principal:
    """The token's principal as the gateway sees it now (introspection, briefly cached)."""
    return await _principal(security_scopes, request, live=True)


CurrentPrincipal = Annotated[Principal, Security(get_principal)]
LivePrincipal = Annotated[Principal, Security(get_live_principal)]


def require_scopes(*scopes: str, live: bool = False) -> Any:
    """``dependencies=[require_scopes("orders:write")]`` on a route or router; layers add up."""
    return Security(get_live_principal if live else get_principal, scopes=list(scopes))


async def websocket_principal(security_scopes: SecurityScopes, websocket: WebSocket) -> Principal:
    """The principal of a WebSocket, from ``Authorization`` or ``?access_token=``.

    A refused connection is closed with 1008, or 1013 when the issuer is unreachable.
    """
    try:
        token = token_from_websocket(websocket)
        principal = await _guard(websocket).validator.validate(token)
        check_scopes(security_scopes.scopes, principal.scopes)
    except OAuth2Error as exc:
        raise await refuse_websocket(websocket, exc) from None
    return principal

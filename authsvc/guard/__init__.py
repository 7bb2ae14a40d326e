"""Protect another FastAPI service with the gateway's tokens: one import, no database.

::

    from authsvc.guard import CurrentPrincipal, TokenValidator, install_guard, require_scopes

    app = FastAPI()
    install_guard(app, TokenValidator(issuer="https://auth.example.com", audience="authsvc"))

    @app.get("/orders", dependencies=[require_scopes("orders:read")])
    async def orders(principal: CurrentPrincipal) -> list[Order]: ...

Tokens are verified locally by the gateway's own verifier against the issuer's published JWKS
(fetched once and cached); ``IntrospectionValidator`` asks the gateway instead, for routes that
must see a revocation at once. Only the issuer's URL is needed, never its database or keys.
"""

from authsvc.guard.dependencies import (
    CurrentPrincipal,
    LivePrincipal,
    bearer_token,
    get_live_principal,
    get_principal,
    install_guard,
    require_scopes,
    websocket_principal,
)
from authsvc.guard.http import IssuerUnavailableError
from authsvc.guard.introspection import IntrospectionValidator
from authsvc.guard.validator import TokenValidator, Validator
from authsvc.oauth2.errors import OAuth2Error
from authsvc.security.principal import Principal

__all__ = [
    "CurrentPrincipal",
    "IntrospectionValidator",
    "IssuerUnavailableError",
    "LivePrincipal",
    "OAuth2Error",
    "Principal",
    "TokenValidator",
    "Validator",
    "bearer_token",
    "get_live_principal",
    "get_principal",
    "install_guard",
    "require_scopes",
    "websocket_principal",
]

"""Every ``Depends`` chain, as ``Annotated`` aliases so routes never repeat ``Depends(...)``.

The chain is: context -> session; bearer token -> verified claims (scopes checked) -> active
user from the database (scopes checked again against the user's current grants). Scopes
declared with ``Security(..., scopes=[...])`` at the router and at the route accumulate through
``SecurityScopes``, so they layer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from sqlalchemy.orm import Session

from authsvc.context import AppContext
from authsvc.db.models import User
from authsvc.oauth2.errors import (
    InsufficientScopeError,
    InvalidBearerRequestError,
    InvalidTokenError,
    MissingTokenError,
)
from authsvc.oauth2.token_checks import TokenRevokedError, live_user
from authsvc.security.principal import AccessTokenClaims
from authsvc.security.tokens import TokenValidationError

# RFC 6750 §2.1 b64token.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

# Declares the OAuth2 password flow in OpenAPI so Swagger's Authorize button logs in through
# our token endpoint; it never raises, our own parsing below decides what a bad header means.
oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="oauth2/token",
    scopes={"admin": "Manage users, scopes and clients"},
    auto_error=False,
)


def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


def get_session(ctx: ContextDep) -> Iterator[Session]:
    with ctx.sessionmaker() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_bearer_token(
    request: Request, _declared: Annotated[str | None, Depends(oauth2_scheme)]
) -> str:
    headers = request.headers.getlist("authorization")
    if not headers:
        raise MissingTokenError()
    if len(headers) > 1:
        raise InvalidBearerRequestError("More than one Authorization header")
    scheme, _, token = headers[0].partition(" ")
    if scheme.lower() != "bearer":
        # RFC 6750 §3.1: another scheme means the client did not try Bearer; no error code.
        raise MissingTokenError()
    token = token.strip(" ")
    if not token or not _B64TOKEN.fullmatch(token):
        raise InvalidTokenError()
    return token


async def get_token_claims(
    security_scopes: SecurityScopes,
    request: Request,
    token: Annotated[str, Depends(get_bearer_token)],
    ctx: ContextDep,
) -> AccessTokenClaims:
    cached: AccessTokenClaims | None = getattr(request.state, "token_claims", None)
    if cached is None:
        try:
            raw = ctx.verifier.verify(token)
        except TokenValidationError as exc:
            raise InvalidTokenError("The access token expired" if exc.expired else None) from None
        cached = AccessTokenClaims.from_claims(raw)
        request.state.token_claims = cached
    _check_scopes(security_scopes, cached.scopes)
    return cached


def _check_scopes(security_scopes: SecurityScopes, held: frozenset[str] | set[str]) -> None:
    missing = [scope for scope in security_scopes.scopes if scope not in held]
    if missing:
        raise InsufficientScopeError(list(dict.fromkeys(security_scopes.scopes)))


TokenClaims = Annotated[AccessTokenClaims, Security(get_token_claims)]


def get_current_user(
    security_scopes: SecurityScopes,
    claims: Annotated[AccessTokenClaims, Security(get_token_claims)],
    session: SessionDep,
) -> User:
    """The token's active user; revoked tokens (denylist, revoke-all cutoff) are refused here."""
    try:
        user = live_user(session, claims.raw)
    except TokenRevokedError as exc:
        raise InvalidTokenError(str(exc)) from None
    # A scope removed from the user stops working at once, not when the token expires.
    _check_scopes(security_scopes, claims.scopes & set(user.scope_names))
    return user


CurrentUser = Annotated[User, Security(get_current_user)]
AdminUser = Annotated[User, Security(get_current_user, scopes=["admin"])]


def require_scopes(*scopes: str) -> Any:
    """A dependency for ``dependencies=[...]`` or ``Annotated`` that needs these scopes.

    ``APIRouter(dependencies=[require_scopes("admin")])`` guards a whole router; a route can add
    its own ``require_scopes(...)`` and both apply.
    """
    return Security(get_current_user, scopes=list(scopes))

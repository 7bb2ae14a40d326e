"""Every ``Depends`` chain, as ``Annotated`` aliases so routes never repeat ``Depends(...)``.

The chain is: context -> session; bearer token -> verified claims (scopes checked) -> active
user (scopes checked again against the user's current grants): ``CurrentAccount`` as kept for
at most ``auth_cache_ttl`` (one dependency that verifies the token itself), ``CurrentUser`` as
the row read in the request's session. Scopes declared with ``Security(..., scopes=[...])`` at
the router and at the route accumulate through ``SecurityScopes``, so they layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from sqlalchemy.orm import Session

from authsvc.context import AppContext
from authsvc.db.models import User
from authsvc.oauth2.bearer import check_scopes, refused, require_token, token_from_authorization
from authsvc.oauth2.errors import InvalidTokenError
from authsvc.oauth2.token_checks import TokenRevokedError, live_account, live_user, verify_live
from authsvc.observability.request_context import note_principal
from authsvc.security.network import Caller, caller_of
from authsvc.security.principal import Principal
from authsvc.security.tokens import TokenValidationError
from authsvc.services.audit import AuditLog, AuditType
from authsvc.services.denylist import Denylist
from authsvc.services.live_state import Account

# Declares the OAuth2 password flow in OpenAPI so Swagger's Authorize button logs in through
# our token endpoint; it never raises, our own parsing below decides what a bad header means.
_PASSWORD_FLOW: dict[str, Any] = {
    "tokenUrl": "oauth2/token",
    "scopes": {"admin": "Manage users, scopes and clients"},
    "scheme_name": "OAuth2PasswordBearer",
    "auto_error": False,
}
oauth2_scheme = OAuth2PasswordBearer(**_PASSWORD_FLOW)


async def get_context(request: Request) -> AppContext:
    # async: FastAPI runs a plain ``def`` dependency in the threadpool, a thread hop per request.
    return context_of(request)


def context_of(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


def get_session(ctx: ContextDep) -> Iterator[Session]:
    with ctx.sessionmaker() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_caller(request: Request, ctx: ContextDep) -> Caller:
    return caller_of(request, ctx.trusted_proxies)


CallerDep = Annotated[Caller, Depends(get_caller)]


@dataclass(frozen=True)
class RequestAudit:
    """The audit log with this request's caller and acting principal filled in."""

    log: AuditLog
    caller: Caller
    actor_id: str | None

    def __call__(self, event: AuditType, **fields: Any) -> None:
        self.log.record(event, caller=self.caller, actor_id=self.actor_id, **fields)


async def get_audit(request: Request, ctx: ContextDep, caller: CallerDep) -> RequestAudit:
    # The route's security dependencies ran first and left the verified claims here.
    claims: Principal | None = getattr(request.state, "token_claims", None)
    return RequestAudit(ctx.audit, caller, claims.sub if claims else None)


AuditDep = Annotated[RequestAudit, Depends(get_audit)]


async def token_claims(request: Request, required: Sequence[str]) -> Principal:
    """The request's verified bearer token, once per request, with ``required`` checked."""
    cached: Principal | None = getattr(request.state, "token_claims", None)
    if cached is None:
        token = require_token(token_from_authorization(request.headers.getlist("authorization")))
        try:
            raw = await context_of(request).keys.verify_async(token)
        except TokenValidationError as exc:
            raise refused(exc) from None
        cached = Principal.from_claims(raw)
        request.state.token_claims = cached
    check_scopes(required, cached.scopes)
    return cached


# The hot path of every protected route: each dependency FastAPI solves costs every request,
# so the account check below calls ``token_claims`` itself instead of depending on this, and
# the context comes from the app directly. ``oauth2_scheme`` is a dependency only so OpenAPI
# declares the flow (with the scopes accumulated down to it).
async def get_token_claims(
    security_scopes: SecurityScopes,
    request: Request,
    _declared: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    return await token_claims(request, security_scopes.scopes)


TokenClaims = Annotated[Principal, Security(get_token_claims)]


# Requests that change nothing; everything else is authorized against the database itself.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _AccountCheck(OAuth2PasswordBearer):
    """``get_current_account``: the token's active user as of at most ``auth_cache_ttl`` ago
    (now, for a write).

    Revoked tokens (denylist, revoke-all cutoff) and disabled or deleted users are refused
    here. Async, and without a session: a request whose answer is kept touches no thread and
    no connection.

    It is a security scheme itself (it declares the same OAuth2 flow in OpenAPI as
    ``oauth2_scheme``) so the chain most routes use is one dependency, not three: FastAPI
    solves every level on every request, about 8 µs each, a tenth of a protected read.
    """

    async def __call__(  # type: ignore[override]
        self, request: Request, security_scopes: SecurityScopes
    ) -> Account:
        claims = await token_claims(request, security_scopes.scopes)
        try:
            account = await live_account(
                context_of(request), claims.claims, fresh=request.method not in SAFE_METHODS
            )
        except TokenRevokedError as exc:
            raise InvalidTokenError(str(exc)) from None
        note_principal(client_id=claims.client_id, subject=claims.sub)
        # A scope removed from the user stops working at once, not when the token expires.
        check_scopes(security_scopes.scopes, claims.scopes & set(account.scope_names))
        return account


get_current_account = _AccountCheck(**_PASSWORD_FLOW)
CurrentAccount = Annotated[Account, Security(get_current_account)]


def get_current_user(
    security_scopes: SecurityScopes,
    claims: Annotated[Principal, Security(get_token_claims)],
    session: SessionDep,
    ctx: ContextDep,
) -> User:
    """The token's active user row, read in the request's session, for routes that change it."""
    return authorize_user(session, claims, ctx.denylist, security_scopes.scopes)


def authorize_user(
    session: Session, principal: Principal, denylist: Denylist, required: Sequence[str]
) -> User:
    """The principal's active user if the token is still good and grants ``required``.

    Shared with the audit stream's WebSocket, which has no dependency chain to run.
    """
    try:
        user = live_user(session, principal.claims, denylist)
    except TokenRevokedError as exc:
        raise InvalidTokenError(str(exc)) from None
    note_principal(client_id=principal.client_id, subject=principal.sub)
    # A scope removed from the user stops working at once, not when the token expires.
    check_scopes(required, principal.scopes & set(user.scope_names))
    return user


CurrentUser = Annotated[User, Security(get_current_user)]
AdminUser = Annotated[User, Security(get_current_user, scopes=["admin"])]


async def authorize_token(
    ctx: AppContext, token: str, required: Sequence[str], *, fresh: bool = False
) -> tuple[dict[str, Any], str]:
    """A user's or a client's token, checked as a whole: signature, revocation, the holder
    still active, and ``required`` among the scopes it still holds. Returns its claims and
    that scope; raises the RFC 6750 errors. For routes that take client tokens too
    (forward-auth, /metrics); user routes use the dependencies above."""
    try:
        claims, scope = await verify_live(ctx, token, fresh=fresh)
    except TokenValidationError as exc:
        raise refused(exc) from None
    except TokenRevokedError as exc:
        raise InvalidTokenError(str(exc)) from None
    note_principal(client_id=claims.get("client_id"), subject=str(claims["sub"]))
    check_scopes(required, scope.split())
    return claims, scope


def require_scopes(*scopes: str) -> Any:
    """A dependency for ``dependencies=[...]`` or ``Annotated`` that needs these scopes.

    ``APIRouter(dependencies=[require_scopes("admin")])`` guards a whole router; a route can add
    its own ``require_scopes(...)`` and both apply.
    """
    return Security(get_current_account, scopes=list(scopes))

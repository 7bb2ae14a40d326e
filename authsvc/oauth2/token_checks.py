"""Is a verified access token still good? Shared by the bearer dependency and introspection.

A signature says who issued the token; these checks say whether it has since been taken back:
its jti on the denylist, its user disabled, deleted, or revoked-all after it was issued, or
(for client_credentials tokens) its client deleted.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from authsvc.db.models import User
from authsvc.services.clients import ClientService
from authsvc.services.denylist import Denylist
from authsvc.services.sessions import cutoff_timestamp

if TYPE_CHECKING:
    from authsvc.context import AppContext


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def is_client_token(claims: dict[str, Any]) -> bool:
    # client_credentials tokens carry the client as subject (RFC 9068 §2.2). User ids are
    # UUIDs and registered client ids never are; a public client calling itself by the user's
    # UUID must not turn a user token into a client token.
    sub = claims.get("sub")
    return sub == claims.get("client_id") and not _is_uuid(sub)


class TokenRevokedError(Exception):
    """The token verified but must no longer be honoured; the message says why."""


INVALID = "The access token is invalid"
USER_GONE = "The user is unknown or disabled"
REVOKED = "The access token was revoked"
CLIENT_GONE = "The client is unknown"


def live_user(session: Session, claims: dict[str, Any], denylist: Denylist) -> User:
    """The token's active user, or ``TokenRevokedError`` if the token was taken back."""
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError:
        # Not a user id: a client_credentials token, which has no user to act as.
        raise TokenRevokedError(INVALID) from None
    if denylist.contains(session, str(claims["jti"])):
        raise TokenRevokedError(REVOKED)
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise TokenRevokedError(USER_GONE)
    cutoff = cutoff_timestamp(user.tokens_valid_after)
    if cutoff is not None and claims["iat"] < cutoff:
        raise TokenRevokedError(REVOKED)
    return user


def live_scope(session: Session, claims: dict[str, Any], denylist: Denylist) -> str:
    """The scope the token still carries, or ``TokenRevokedError`` saying why it does not.

    The token's scope narrowed to what its user (or, for client tokens, its client) holds
    today, so neither introspection nor forward-auth vouches for a scope taken away.
    """
    granted = str(claims.get("scope") or "").split()
    if is_client_token(claims):
        if denylist.contains(session, str(claims["jti"])):
            raise TokenRevokedError(REVOKED)
        client = ClientService(session).get(str(claims["client_id"]))
        if client is None:
            raise TokenRevokedError(CLIENT_GONE)
        held = set(client.scopes)
    else:
        held = set(live_user(session, claims, denylist).scope_names)
    return " ".join(scope for scope in granted if scope in held)


def verify_live(ctx: AppContext, token: str) -> tuple[dict[str, Any], str]:
    """A token's verified claims and the scope it still holds, for callers outside a request's
    own session (introspection, forward-auth).

    Raises ``TokenValidationError`` (never valid) or ``TokenRevokedError`` (taken back).
    """
    claims = ctx.keys.verify(token)
    with ctx.sessionmaker() as session:
        return claims, live_scope(session, claims, ctx.denylist)

"""Is a verified access token still good? Shared by the bearer dependency and introspection.

A signature says who issued the token; these checks say whether it has since been taken back:
its jti on the denylist, its user disabled, deleted, or revoked-all after it was issued, or
(for client_credentials tokens) its client deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy.orm import Session

from authsvc.db.models import User
from authsvc.services.denylist import Denylist
from authsvc.services.live_state import Account
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


class UserLike(Protocol):
    """What judging a user token reads: a ``User`` row or a cached ``Account``."""

    @property
    def is_active(self) -> bool: ...

    @property
    def tokens_valid_after(self) -> datetime | None: ...


U = TypeVar("U", bound=UserLike)


def user_id_of(claims: dict[str, Any]) -> uuid.UUID:
    try:
        return uuid.UUID(str(claims["sub"]))
    except ValueError:
        # Not a user id: a client_credentials token, which has no user to act as.
        raise TokenRevokedError(INVALID) from None


def judge_user(claims: dict[str, Any], revoked: bool, user: U | None) -> U:
    """The token's user if the token is still good, or ``TokenRevokedError`` saying why not."""
    if revoked:
        raise TokenRevokedError(REVOKED)
    if user is None or not user.is_active:
        raise TokenRevokedError(USER_GONE)
    cutoff = cutoff_timestamp(user.tokens_valid_after)
    if cutoff is not None and claims["iat"] < cutoff:
        raise TokenRevokedError(REVOKED)
    return user


def live_user(session: Session, claims: dict[str, Any], denylist: Denylist) -> User:
    """The token's active user read in ``session`` itself, for routes that change it."""
    user_id = user_id_of(claims)
    revoked = denylist.contains(session, str(claims["jti"]))
    return judge_user(claims, revoked, session.get(User, user_id))


async def live_account(ctx: AppContext, claims: dict[str, Any], *, fresh: bool = False) -> Account:
    """The token's active user as kept by ``ctx.live`` (at most ``auth_cache_ttl`` old)."""
    state = await ctx.live.user(str(claims["jti"]), user_id_of(claims), fresh=fresh)
    return judge_user(claims, state.revoked, state.account)


async def live_scope(ctx: AppContext, claims: dict[str, Any], *, fresh: bool = False) -> str:
    """The scope the token still carries, or ``TokenRevokedError`` saying why it does not.

    The token's scope narrowed to what its user (or, for client tokens, its client) holds
    today, so neither introspection nor forward-auth vouches for a scope taken away.
    """
    granted = str(claims.get("scope") or "").split()
    if is_client_token(claims):
        client = await ctx.live.client(str(claims["jti"]), str(claims["client_id"]), fresh=fresh)
        if client.revoked:
            raise TokenRevokedError(REVOKED)
        if client.scopes is None:
            raise TokenRevokedError(CLIENT_GONE)
        held: Collection[str] = client.scopes
    else:
        held = (await live_account(ctx, claims, fresh=fresh)).scope_names
    return " ".join(scope for scope in granted if scope in held)


async def verify_live(
    ctx: AppContext, token: str, *, fresh: bool = False
) -> tuple[dict[str, Any], str]:
    """A token's verified claims and the scope it still holds (introspection, forward-auth).

    ``fresh`` reads the database rather than what ``ctx.live`` keeps. Raises
    ``TokenValidationError`` (never valid) or ``TokenRevokedError`` (taken back).
    """
    claims = await ctx.keys.verify_async(token)
    return claims, await live_scope(ctx, claims, fresh=fresh)

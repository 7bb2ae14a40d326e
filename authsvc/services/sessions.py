"""Sessions: refresh token families, rotation with reuse detection, and access-token revocation.

A *family* is one sign-in: the password grant starts it, each refresh consumes the presented
token and adds its successor (RFC 9700 §4.14.2). Presenting a consumed token again means two
parties hold the chain, so the whole family is revoked. Refresh tokens are 256 random bits and
only their SHA-256 is stored: a database leak yields nothing a client could present.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn, cast

from sqlalchemy import Select, String, Table, Uuid, bindparam, delete, insert, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authsvc.db.engine import affected_rows
from authsvc.db.models import (
    RefreshFamily,
    RefreshToken,
    RevokedAccessToken,
    User,
    UTCDateTime,
    user_scopes,
    utcnow,
)
from authsvc.oauth2.errors import InvalidScopeError
from authsvc.oauth2.scope import grant_scopes


class RefreshTokenError(Exception):
    """The refresh token cannot be used; ``reuse`` tells that its family was just revoked."""

    def __init__(
        self, reason: str, *, reuse: bool = False, user_id: uuid.UUID | None = None
    ) -> None:
        super().__init__(reason)
        self.reuse = reuse
        self.user_id = user_id


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Rotation:
    refresh_token: str
    user_id: uuid.UUID
    username: str
    client_id: str
    scopes: list[str]
    family_id: uuid.UUID


@dataclass(frozen=True)
class RefreshTokenInfo:
    """What introspection may say about a refresh token (RFC 7662 §2.2)."""

    active: bool
    user_id: uuid.UUID
    username: str | None
    client_id: str
    scope: str
    issued_at: datetime
    expires_at: datetime
    family_id: uuid.UUID


def cutoff_timestamp(cutoff: datetime | None) -> int | None:
    """Tokens whose ``iat`` is below this are refused; rounded up so a token issued in the same
    second as the revocation is refused too (iat has whole-second precision)."""
    return None if cutoff is None else math.ceil(cutoff.timestamp())


def revoke_user_families(session: Session, user_id: uuid.UUID, now: datetime) -> int:
    """Revoke every live family of a user, inside the caller's transaction."""
    result = session.execute(
        update(RefreshFamily)
        .where(RefreshFamily.user_id == user_id, RefreshFamily.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return affected_rows(result)


# The refresh path's statements, built once with bound parameters: SQLAlchemy then reuses
# their cache keys and compiled forms, which otherwise cost more than the round trips on a
# refresh. Table-level (Core) statements: no ORM bookkeeping for rows nobody keeps.
_TOKENS = cast(Table, RefreshToken.__table__)
_FAMILIES = cast(Table, RefreshFamily.__table__)
_USERS = cast(Table, User.__table__)
_CONSUME = (
    update(_TOKENS)
    .where(
        _TOKENS.c.token_hash == bindparam("p_token_hash"),
        _TOKENS.c.consumed_at.is_(None),
        _TOKENS.c.expires_at > bindparam("p_now"),
        _TOKENS.c.family_id.in_(
            select(_FAMILIES.c.id).where(
                _FAMILIES.c.client_id == bindparam("p_client_id"), _FAMILIES.c.revoked_at.is_(None)
            )
        ),
    )
    .values(consumed_at=bindparam("p_now"))
    .returning(_TOKENS.c.family_id, _TOKENS.c.scope)
)
_EXTEND_FAMILY = (
    update(_FAMILIES)
    .where(_FAMILIES.c.id == bindparam("p_family_id"))
    .values(last_used_at=bindparam("p_now"), expires_at=bindparam("p_expires_at"))
    .returning(_FAMILIES.c.user_id)
)
# The user and every scope it holds, in one statement (one row per scope).
_USER_AND_SCOPES = (
    select(_USERS.c.username, _USERS.c.is_active, user_scopes.c.scope_name)
    .select_from(_USERS)
    .outerjoin(user_scopes, user_scopes.c.user_id == _USERS.c.id)
    .where(_USERS.c.id == bindparam("p_user_id"))
)


# PostgreSQL: the whole rotation in one statement (data-modifying CTEs), so a refresh is one
# round trip between BEGIN and COMMIT instead of four. Every part sees the same snapshot and
# runs to completion: the successor is inserted for exactly the row the first UPDATE
# consumed, and the answer carries the user and its scopes for the checks made in Python
# (which roll the whole transaction back when they refuse). SQLite has no data-modifying CTEs
# and keeps the four statements; both take the consuming row lock first.
def _rotate_in_one_statement() -> Select[Any]:
    now = bindparam("p_now", type_=UTCDateTime())
    expires_at = bindparam("p_expires_at", type_=UTCDateTime())
    consumed = _CONSUME.cte("consumed")
    extended = (
        update(_FAMILIES)
        .where(_FAMILIES.c.id == select(consumed.c.family_id).scalar_subquery())
        .values(last_used_at=now, expires_at=expires_at)
        .returning(_FAMILIES.c.id, _FAMILIES.c.user_id)
        .cte("extended")
    )
    added = (
        insert(_TOKENS)
        .from_select(
            ["id", "token_hash", "family_id", "scope", "created_at", "expires_at"],
            select(
                bindparam("p_id", type_=Uuid()),
                bindparam("p_successor_hash", type_=String()),
                consumed.c.family_id,
                consumed.c.scope,
                now,
                expires_at,
            ),
        )
        .returning(_TOKENS.c.id)
        .cte("added")
    )
    return (
        select(
            extended.c.id.label("family_id"),
            extended.c.user_id,
            consumed.c.scope.label("granted"),
            _USERS.c.username,
            _USERS.c.is_active,
            user_scopes.c.scope_name,
        )
        .select_from(extended)
        .join(consumed, true())
        .join(added, true())
        .join(_USERS, _USERS.c.id == extended.c.user_id)
        .outerjoin(user_scopes, user_scopes.c.user_id == _USERS.c.id)
    )


_ADD_TOKEN = insert(_TOKENS).values(
    id=bindparam("p_id"),
    token_hash=bindparam("p_token_hash"),
    family_id=bindparam("p_family_id"),
    scope=bindparam("p_scope"),
    created_at=bindparam("p_now"),
    expires_at=bindparam("p_expires_at"),
)


_ROTATE_IN_ONE_STATEMENT = _rotate_in_one_statement()

# The password grant's: is the user still as verified, and a new family for the sign-in.
# FOR SHARE (PostgreSQL; SQLite has one writer at a time anyway): a password reset, a
# disable or a revoke-all writes the user's row before revoking families, so it waits for
# this login to commit its family (and then revokes it), or this waits and reads its change.
_LOGIN_CHECK = (
    select(_USERS.c.is_active, _USERS.c.password_hash)
    .where(_USERS.c.id == bindparam("p_user_id"))
    .with_for_update(read=True)
)
_ADD_FAMILY = insert(_FAMILIES).values(
    id=bindparam("p_id"),
    user_id=bindparam("p_user_id"),
    client_id=bindparam("p_client_id"),
    created_at=bindparam("p_now"),
    last_used_at=bindparam("p_now"),
    expires_at=bindparam("p_expires_at"),
)


class SessionService:
    def __init__(self, session: Session, refresh_ttl: int) -> None:
        self.session = session
        self.refresh_ttl = timedelta(seconds=refresh_ttl)

    # --- refresh tokens ---------------------------------------------------------------------

    def start(
        self, user_id: uuid.UUID, client_id: str, scopes: list[str], *, password_hash: str
    ) -> str:
        """Start a family for a login that verified ``password_hash``.

        Re-checked here because bcrypt ran in between: if the password was reset or the user
        disabled meanwhile, that reset already revoked the user's families and this login must
        not open a new one.
        """
        now = utcnow()
        user = self.session.execute(_LOGIN_CHECK, {"p_user_id": user_id}).one_or_none()
        if user is None or not user.is_active or user.password_hash != password_hash:
            self.session.rollback()
            raise RefreshTokenError("the password changed during the login")
        family_id = uuid.uuid4()
        self.session.execute(
            _ADD_FAMILY,
            {
                "p_id": family_id,
                "p_user_id": user_id,
                "p_client_id": client_id,
                "p_now": now,
                "p_expires_at": now + self.refresh_ttl,
            },
        )
        token = self._add_token(family_id, " ".join(scopes), now)
        self.session.commit()
        return token

    def _add_token(self, family_id: uuid.UUID, scope: str, now: datetime) -> str:
        token = new_refresh_token()
        self.session.execute(
            _ADD_TOKEN,
            {
                "p_id": uuid.uuid4(),
                "p_token_hash": hash_refresh_token(token),
                "p_family_id": family_id,
                "p_scope": scope,
                "p_now": now,
                "p_expires_at": now + self.refresh_ttl,
            },
        )
        return token

    def rotate(
        self,
        token: str,
        client_id: str,
        requested: list[str] | None,
        client_scopes: frozenset[str] | None = None,
    ) -> Rotation:
        """Consume ``token`` and issue its successor in one transaction (RFC 6749 §6).

        The consuming UPDATE is conditional (not yet consumed, not expired, family live and
        owned by this client), so of concurrent refreshes exactly one changes a row; and it is
        the transaction's first statement, so SQLite takes its write lock before reading.
        Four statements with RETURNING and a commit: the token endpoint's busiest grant.
        """
        now = utcnow()
        token_hash = hash_refresh_token(token)
        successor: str | None = None
        if self.session.get_bind().dialect.name == "postgresql":
            successor = new_refresh_token()
            rows = self.session.execute(
                _ROTATE_IN_ONE_STATEMENT,
                {
                    "p_token_hash": token_hash,
                    "p_now": now,
                    "p_client_id": client_id,
                    "p_expires_at": now + self.refresh_ttl,
                    "p_id": uuid.uuid4(),
                    "p_successor_hash": hash_refresh_token(successor),
                },
            ).all()
            if not rows:
                self.session.rollback()
                self._explain_refusal(token_hash, client_id, now)
            family_id, user_id, granted = rows[0].family_id, rows[0].user_id, rows[0].granted
        else:
            consumed = self.session.execute(
                _CONSUME, {"p_token_hash": token_hash, "p_now": now, "p_client_id": client_id}
            ).one_or_none()
            if consumed is None:
                self.session.rollback()
                self._explain_refusal(token_hash, client_id, now)
            family_id, granted = consumed
            user_id = self.session.execute(
                _EXTEND_FAMILY,
                {"p_family_id": family_id, "p_now": now, "p_expires_at": now + self.refresh_ttl},
            ).scalar_one()
            rows = self.session.execute(_USER_AND_SCOPES, {"p_user_id": user_id}).all()
        if not rows or not rows[0].is_active:
            self.session.rollback()
            raise RefreshTokenError("the user is disabled")
        username = rows[0].username
        held = {row.scope_name for row in rows if row.scope_name is not None}
        # Never wider than the original grant, and never beyond what the user and the client
        # may hold today (RFC 6749 §6).
        allowed = set(granted.split()) & held
        if client_scopes is not None:
            allowed &= client_scopes
        try:
            scopes = grant_scopes(requested, allowed)
        except InvalidScopeError:
            self.session.rollback()
            raise
        if successor is None:
            successor = self._add_token(family_id, granted, now)
        self.session.commit()
        return Rotation(
            refresh_token=successor,
            user_id=user_id,
            username=username,
            client_id=client_id,
            scopes=scopes,
            family_id=family_id,
        )

    def _explain_refusal(self, token_hash: str, client_id: str, now: datetime) -> NoReturn:
        row = self.session.execute(
            select(RefreshToken, RefreshFamily)
            .join(RefreshFamily, RefreshToken.family_id == RefreshFamily.id)
            .where(RefreshToken.token_hash == token_hash)
        ).first()
        if row is None:
            raise RefreshTokenError("unknown refresh token")
        refresh, family = row
        if family.client_id != client_id:
            raise RefreshTokenError("the refresh token was issued to another client")
        if refresh.consumed_at is not None and family.revoked_at is None:
            # RFC 9700 §4.14.2: a consumed token presented again means it was stolen or
            # replayed; revoke the family so the newest token stops working too.
            family.revoked_at = now
            self.session.commit()
            raise RefreshTokenError(
                "refresh token reused; session revoked", reuse=True, user_id=family.user_id
            )
        raise RefreshTokenError("the refresh token is expired or revoked")

    def describe(self, token: str) -> RefreshTokenInfo | None:
        row = self.session.execute(
            select(RefreshToken, RefreshFamily, User)
            .join(RefreshFamily, RefreshToken.family_id == RefreshFamily.id)
            .join(User, RefreshFamily.user_id == User.id)
            .where(RefreshToken.token_hash == hash_refresh_token(token))
        ).first()
        if row is None:
            return None
        refresh, family, user = row
        active = (
            refresh.consumed_at is None
            and family.revoked_at is None
            and refresh.expires_at > utcnow()
            and user.is_active
        )
        held = set(user.scope_names)
        return RefreshTokenInfo(
            active=active,
            user_id=user.id,
            username=user.username,
            client_id=family.client_id,
            # What a refresh would grant today: never a scope the user has since lost.
            scope=" ".join(scope for scope in refresh.scope.split() if scope in held),
            issued_at=refresh.created_at,
            expires_at=refresh.expires_at,
            family_id=family.id,
        )

    # --- sessions ---------------------------------------------------------------------------

    def list_for_user(self, user_id: uuid.UUID) -> list[RefreshFamily]:
        return list(
            self.session.scalars(
                select(RefreshFamily)
                .where(
                    RefreshFamily.user_id == user_id,
                    RefreshFamily.revoked_at.is_(None),
                    RefreshFamily.expires_at > utcnow(),
                )
                .order_by(RefreshFamily.created_at.desc())
            ).all()
        )

    def revoke_family(self, family_id: uuid.UUID, *, user_id: uuid.UUID | None = None) -> bool:
        """Revoke one family (of ``user_id`` when given); False when there is no such session."""
        query = update(RefreshFamily).where(
            RefreshFamily.id == family_id, RefreshFamily.revoked_at.is_(None)
        )
        if user_id is not None:
            query = query.where(RefreshFamily.user_id == user_id)
        changed = affected_rows(self.session.execute(query.values(revoked_at=utcnow())))
        self.session.commit()
        return changed == 1

    def revoke_all_for_user(self, user_id: uuid.UUID) -> None:
        """Revoke every family and refuse every access token issued until now.

        The user's row first: its lock orders this against a login starting a session (see
        ``start``), so no family slips in between.
        """
        now = utcnow()
        self.session.execute(update(User).where(User.id == user_id).values(tokens_valid_after=now))
        revoke_user_families(self.session, user_id, now)
        self.session.commit()

    def revoke_for_client(self, client_id: str) -> None:
        self.session.execute(
            update(RefreshFamily)
            .where(RefreshFamily.client_id == client_id, RefreshFamily.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )

    # --- the access-token denylist ----------------------------------------------------------

    def deny_access_token(self, jti: str, expires_at: datetime) -> bool:
        """Put the jti on the denylist; False when it was there already."""
        if self.session.get(RevokedAccessToken, jti) is not None:
            return False
        self.session.add(RevokedAccessToken(jti=jti, expires_at=expires_at))
        try:
            self.session.commit()
        except IntegrityError:
            # A concurrent revocation of the same token got there first: same outcome.
            self.session.rollback()
            return False
        return True

    # --- housekeeping -----------------------------------------------------------------------

    def purge_expired(self, grace: timedelta = timedelta(0)) -> dict[str, int]:
        """Drop what can never be used again: expired tokens, sessions and denylist entries.

        ``grace`` (the verifier's leeway) keeps rows a little longer, so a denylisted token
        is never released while a clock-skew allowance could still accept it.
        """
        now = utcnow() - grace
        counts = {
            "refresh_tokens": affected_rows(
                self.session.execute(delete(RefreshToken).where(RefreshToken.expires_at <= now))
            ),
            "sessions": affected_rows(
                self.session.execute(delete(RefreshFamily).where(RefreshFamily.expires_at <= now))
            ),
            "denylist": affected_rows(
                self.session.execute(
                    delete(RevokedAccessToken).where(RevokedAccessToken.expires_at <= now)
                )
            ),
        }
        self.session.commit()
        return counts

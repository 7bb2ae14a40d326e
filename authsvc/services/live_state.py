"""What every authenticated request asks the database, kept for half a second.

A verified token is still good only if its jti is not on the denylist and its user is active
(or, for a client token, its client still exists). Asking the database costs a pool checkout
and a thread hop per request, which is most of what a protected request costs. So answers are
kept per process for ``ttl`` (0.5 s by default): another replica's revocation or disabling is
seen within that, inside the 1 s bound we promise.

In this process a change is seen at once: every commit through our sessions that wrote to a
table these answers come from drops them all (``watch_writes``), as does a Redis denylist
entry. Requests that change something (any method but GET, HEAD and OPTIONS) are checked
against the database itself, never against a kept answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import chain
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker
from starlette.concurrency import run_in_threadpool

from authsvc.db.models import User
from authsvc.services.cache import Missing, SingleFlight, TtlCache
from authsvc.services.clients import ClientService
from authsvc.services.denylist import Denylist

# Writes to these tables never change whether an access token is good: no token check reads
# the audit trail, the rate-limit counters or the refresh token tables.
_UNRELATED_TABLES = frozenset(
    {"audit_events", "rate_limit_counters", "refresh_tokens", "refresh_families"}
)
# For statements on a watched table that change nothing a token check reads (the lockout's
# failure counts): ``statement.execution_options(**UNRELATED)``.
UNRELATED = {"authsvc_unrelated_to_tokens": True}
_DIRTY = "authsvc_token_state_written"


@dataclass(frozen=True)
class Account:
    """A user as the token checks and ``/users/me`` see it: no hash, no lockout state."""

    id: uuid.UUID
    username: str
    email: str | None
    full_name: str | None
    is_active: bool
    scope_names: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    tokens_valid_after: datetime | None

    @classmethod
    def from_user(cls, user: User) -> Account:
        return cls(
            id=user.id,
            username=user.username,
            email=user.email,
            full_name=user.full_name,
            is_active=user.is_active,
            scope_names=tuple(user.scope_names),
            created_at=user.created_at,
            updated_at=user.updated_at,
            tokens_valid_after=user.tokens_valid_after,
        )


def _table_of(entity: object) -> str:
    table = getattr(type(entity), "__tablename__", None)
    return table if isinstance(table, str) else ""


def watch_writes(sessions: sessionmaker[Session], cache: TtlCache[Any]) -> None:
    """Invalidate ``cache`` after each commit of ``sessions`` that wrote a watched table."""

    def mark(session: Session) -> None:
        session.info[_DIRTY] = True

    @event.listens_for(sessions, "after_flush")
    def flushed(session: Session, _context: object) -> None:
        # Still the pre-flush lists here; a changed scope collection marks its user dirty.
        changed = chain(session.new, session.dirty, session.deleted)
        if any(_table_of(entity) not in _UNRELATED_TABLES for entity in changed):
            mark(session)

    @event.listens_for(sessions, "do_orm_execute")
    def executed(state: ORMExecuteState) -> None:
        if not (state.is_insert or state.is_update or state.is_delete):
            return
        if state.execution_options.get(next(iter(UNRELATED))):
            return
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", "") not in _UNRELATED_TABLES:
            mark(state.session)

    @event.listens_for(sessions, "after_commit")
    def committed(session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint released: nothing is visible to others before the real commit
        if session.info.pop(_DIRTY, False):
            cache.invalidate()

    @event.listens_for(sessions, "after_transaction_end")
    def ended(session: Session, transaction: SessionTransaction) -> None:
        # Only the outermost transaction's end settles the mark: a savepoint rolled back
        # leaves the writes around it in place.
        if transaction.parent is None:
            session.info.pop(_DIRTY, None)


@dataclass(frozen=True)
class UserState:
    revoked: bool
    account: Account | None


@dataclass(frozen=True)
class ClientState:
    revoked: bool
    # None when the client no longer exists.
    scopes: frozenset[str] | None


class LiveState:
    def __init__(
        self, sessions: sessionmaker[Session], denylist: Denylist, cache: TtlCache[Any]
    ) -> None:
        self._sessions = sessions
        self._denylist = denylist
        self.cache = cache
        self._reads: SingleFlight[Any] = SingleFlight()

    def _read_user(self, jti: str, user_id: uuid.UUID) -> tuple[bool, Account | None]:
        with self._sessions() as session:
            revoked = self._denylist.contains(session, jti)
            user = session.get(User, user_id)
            return revoked, Account.from_user(user) if user is not None else None

    def _read_client(self, jti: str, client_id: str) -> tuple[bool, frozenset[str] | None]:
        with self._sessions() as session:
            revoked = self._denylist.contains(session, jti)
            client = ClientService(session).get(client_id)
            return revoked, frozenset(client.scopes) if client is not None else None

    async def _answer(
        self,
        keys: tuple[Hashable, Hashable],
        read: Callable[[], tuple[Any, Any]],
        fresh: bool,
    ) -> tuple[Any, Any]:
        """The kept answers for both ``keys``, or ``read()`` (in a thread) when either is
        missing or ``fresh`` is asked for; what was read is kept."""
        generation = self.cache.generation
        first, second = self.cache.get(keys[0]), self.cache.get(keys[1])
        if not (fresh or isinstance(first, Missing) or isinstance(second, Missing)):
            return first, second
        if fresh:
            # Never shares a read that may have started before this request did.
            answer = await run_in_threadpool(read)
        else:
            answer = await self._reads.run((generation, *keys), lambda: run_in_threadpool(read))
        for key, value in zip(keys, answer, strict=True):
            self.cache.put(key, value, generation)
        return answer

    async def user(self, jti: str, user_id: uuid.UUID, *, fresh: bool = False) -> UserState:
        """Is ``jti`` revoked, and what is the user now; from the cache unless ``fresh``."""
        keys = (("jti", jti), ("user", user_id))
        return UserState(*await self._answer(keys, partial(self._read_user, jti, user_id), fresh))

    async def client(self, jti: str, client_id: str, *, fresh: bool = False) -> ClientState:
        """Is ``jti`` revoked, and what may the client hold now; from the cache unless
        ``fresh``."""
        keys = (("jti", jti), ("client", client_id))
        read = partial(self._read_client, jti, client_id)
        return ClientState(*await self._answer(keys, read, fresh))

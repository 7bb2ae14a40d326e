"""The audit trail: who did what, from where, and how it went; never a password, token or hash.

Requests only append to an in-memory queue (no database round trip on their path); one writer
thread per process inserts what accumulated in batches, every ``flush_interval`` seconds or as
soon as ``max_batch`` events wait. When the database is down the batch goes back to the front
of the queue and is retried; ``close()`` (called at shutdown, after the server has finished its
in-flight requests) writes everything still queued before the process exits.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, func, insert, or_, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from authsvc.db.models import AuditEvent, utcnow
from authsvc.security.network import Caller

logger = logging.getLogger("authsvc.audit")


class AuditType(StrEnum):
    # Event names, not secrets (ruff's S105 reads "token"/"password" in a name as one).
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    ACCOUNT_LOCKED = "account.locked"
    TOKEN_ISSUED = "token.issued"  # noqa: S105
    TOKEN_REFRESHED = "token.refreshed"  # noqa: S105
    TOKEN_REVOKED = "token.revoked"  # noqa: S105
    REFRESH_REUSE_DETECTED = "refresh.reuse_detected"
    CLIENT_AUTH_FAILED = "client.auth_failed"
    USER_CREATED = "user.created"
    USER_UPDATED = "user.updated"
    USER_DELETED = "user.deleted"
    USER_PASSWORD_CHANGED = "user.password_changed"  # noqa: S105
    SESSION_REVOKED = "session.revoked"
    USER_SESSIONS_REVOKED = "user.sessions_revoked"
    SCOPE_CREATED = "scope.created"
    CLIENT_CREATED = "client.created"
    CLIENT_UPDATED = "client.updated"
    CLIENT_DELETED = "client.deleted"
    CLIENT_SECRET_ROTATED = "client.secret_rotated"  # noqa: S105
    KEY_ROTATED = "key.rotated"


SUCCESS = "success"
FAILURE = "failure"


@dataclass(frozen=True)
class AuditRecord:
    type: str
    outcome: str
    occurred_at: datetime = field(default_factory=utcnow)
    actor_id: str | None = None
    subject_id: str | None = None
    username: str | None = None
    client_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    details: dict[str, Any] | None = None


# ``details`` is already a private JSON-safe copy (``_json_safe``), so rows can share it.
_COLUMNS = tuple(column.name for column in fields(AuditRecord))
_AUDIT_EVENTS = cast(Table, AuditEvent.__table__)


def _json_safe(details: dict[str, Any]) -> dict[str, Any]:
    """Details as plain JSON now, so an odd value cannot fail the insert later."""
    safe: dict[str, Any] = json.loads(json.dumps(details, default=str))
    return safe


def _text(value: object | None, limit: int) -> str | None:
    # Cut to the column's width: an over-long value must not make the insert fail.
    return None if value is None else str(value)[:limit]


class AuditLog:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        flush_interval: float = 0.2,
        max_batch: int = 500,
        max_queue: int = 100_000,
        on_record: Callable[[AuditRecord], None] | None = None,
    ) -> None:
        self._sessions = sessions
        # Sees every event as it is queued (the metrics count them); must not raise.
        self._on_record = on_record
        self._flush_interval = flush_interval
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._queue: deque[AuditRecord] = deque()
        self._wake = threading.Condition()
        self._flushing = threading.Lock()
        self._backing_off = False
        self._in_flight = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.dropped = 0

    # --- producing --------------------------------------------------------------------------

    def record(
        self,
        type: AuditType,
        *,
        outcome: str = SUCCESS,
        caller: Caller | None = None,
        actor_id: object | None = None,
        subject_id: object | None = None,
        username: str | None = None,
        client_id: str | None = None,
        **details: Any,
    ) -> None:
        """Queue one event; never blocks on the database and never raises."""
        event = AuditRecord(
            type=type.value,
            outcome=outcome,
            actor_id=_text(actor_id, 128),
            subject_id=_text(subject_id, 128),
            username=_text(username, 150),
            client_id=_text(client_id, 128),
            ip=_text(caller.ip, 64) if caller else None,
            user_agent=_text(caller.user_agent, 256) if caller else None,
            details=_json_safe(details) if details else None,
        )
        if self._on_record is not None:
            try:
                self._on_record(event)
            except Exception:  # the request's outcome must not depend on a counter
                logger.exception("audit observer failed on %s", event.type)
        with self._wake:
            if len(self._queue) >= self._max_queue:
                # The database has been down long enough to fill memory; keep the newest.
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(event)
            # A full batch wakes the writer early, unless it is backing off from a failure.
            if len(self._queue) >= self._max_batch and not self._backing_off:
                self._wake.notify()

    # --- writing ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    def _take(self) -> list[AuditRecord]:
        with self._wake:
            count = min(len(self._queue), self._max_batch)
            return [self._queue.popleft() for _ in range(count)]

    def _give_back(self, batch: list[AuditRecord]) -> None:
        with self._wake:
            self._queue.extendleft(reversed(batch))

    def flush(self) -> int:
        """Write everything queued now; returns how many were written.

        Raises when the database cannot be reached (the batch stays queued for a retry). An
        event the database refuses as data is logged and dropped, so one bad event never
        blocks the ones after it.
        """
        written = 0
        # One flush at a time, in order: a flush that returns has also seen the writer's
        # batch in progress stored (tests and close() rely on that).
        with self._flushing:
            while batch := self._take():
                written += self._flush_batch(batch)
        return written

    def _flush_batch(self, batch: list[AuditRecord]) -> int:
        self._in_flight = len(batch)
        try:
            return self._insert(batch)
        except (OperationalError, PoolTimeoutError):
            self._give_back(batch)
            raise
        except SQLAlchemyError:
            return self._insert_one_by_one(batch)
        finally:
            self._in_flight = 0

    def _insert(self, batch: list[AuditRecord]) -> int:
        with self._sessions() as session:
            # Core executemany of shallow rows: asdict's deep copies and the ORM's bulk path
            # were most of this thread's time, taken from the event loop under the GIL.
            rows = [{name: getattr(event, name) for name in _COLUMNS} for event in batch]
            session.execute(insert(_AUDIT_EVENTS), rows)
            session.commit()
        return len(batch)

    def _insert_one_by_one(self, batch: list[AuditRecord]) -> int:
        written = 0
        for index, event in enumerate(batch):
            try:
                written += self._insert([event])
            except (OperationalError, PoolTimeoutError):
                self._give_back(batch[index:])
                raise
            except SQLAlchemyError as exc:
                logger.error("audit event %s dropped, the database refused it: %s", event.type, exc)
        return written

    def _run(self) -> None:
        backoff = self._flush_interval
        while True:
            with self._wake:
                if not self._stopping:
                    self._wake.wait(timeout=backoff)
                stopping = self._stopping
            try:
                self.flush()
                backoff = self._flush_interval
                self._backing_off = False
            except SQLAlchemyError as exc:
                logger.warning("audit events not written yet (%d queued): %s", len(self), exc)
                backoff = min(max(backoff * 2, 0.5), 5.0)
                self._backing_off = True
            if stopping:
                return

    def close(self, timeout: float = 10.0) -> None:
        """Stop the writer after a last flush; events that still cannot be written are logged."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                # Still inside a write to a database that does not answer.
                lost = len(self) + self._in_flight
                logger.error("%d audit events may be lost at shutdown", lost)
                return
            self._thread = None
        if self._queue:
            try:
                self.flush()
            except SQLAlchemyError as exc:
                logger.error("%d audit events lost at shutdown: %s", len(self), exc)

    def __len__(self) -> int:
        return len(self._queue)


# --- reading ----------------------------------------------------------------------------------


def _user_filter(user: str) -> Any:
    try:
        user_id = str(uuid.UUID(user))
    except ValueError:
        # Usernames are case-insensitive at login; be so here too (for ASCII letters).
        return func.lower(AuditEvent.username) == user.lower()
    return or_(AuditEvent.subject_id == user_id, AuditEvent.actor_id == user_id)


class AuditQuery:
    def __init__(self, session: Session) -> None:
        self.session = session

    def page(
        self,
        *,
        types: Sequence[str] = (),
        user: str | None = None,
        since: datetime | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[AuditEvent]:
        """Newest first; ``before`` is the id of the last event of the previous page."""
        query = select(AuditEvent)
        if types:
            query = query.where(AuditEvent.type.in_(types))
        if user:
            query = query.where(_user_filter(user))
        if since is not None:
            query = query.where(AuditEvent.occurred_at >= since)
        if before is not None:
            query = query.where(AuditEvent.id < before)
        return list(self.session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))

    def last_id(self) -> int:
        return int(self.session.scalar(select(func.max(AuditEvent.id))) or 0)

    def after(self, last_id: int, limit: int = 500) -> list[AuditEvent]:
        """Events with ids above ``last_id``, oldest first."""
        query = select(AuditEvent).where(AuditEvent.id > last_id)
        return list(self.session.scalars(query.order_by(AuditEvent.id).limit(limit)))

    def by_ids(self, ids: Collection[int]) -> list[AuditEvent]:
        if not ids:
            return []
        query = select(AuditEvent).where(AuditEvent.id.in_(list(ids)))
        return list(self.session.scalars(query.order_by(AuditEvent.id)))

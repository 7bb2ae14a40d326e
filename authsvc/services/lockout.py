"""Account lockout after consecutive failed logins (RFC 6749 §4.3.2, OWASP ASVS V6.3.1).

Failures are counted in the user's row with atomic increments, so failures made against any
replica add up. Reaching the threshold sets ``locked_until`` and restarts the count; a
successful login (possible only when not locked) clears both.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, or_, update
from sqlalchemy.orm import Session

from authsvc.db.engine import affected_rows
from authsvc.db.models import User, utcnow
from authsvc.services.live_state import UNRELATED


def is_locked(locked_until: datetime | None, now: datetime | None = None) -> bool:
    return locked_until is not None and locked_until > (now or utcnow())


_USERS = cast(Table, User.__table__)
# Every successful login runs this: built once, and on the table (no ORM bookkeeping).
_CLEAR = (
    update(_USERS)
    .execution_options(**UNRELATED)
    .where(
        _USERS.c.id == bindparam("p_id"),
        or_(_USERS.c.locked_until.is_(None), _USERS.c.locked_until <= bindparam("p_now")),
    )
    .values(failed_logins=0, locked_until=None, updated_at=_USERS.c.updated_at)
    .returning(_USERS.c.id)
)


class AccountLockout:
    def __init__(self, session: Session, *, threshold: int, duration: int) -> None:
        self.session = session
        self.threshold = threshold
        self.duration = timedelta(seconds=duration)

    def record_failure(self, user_id: uuid.UUID) -> bool:
        """Count a failed login; True when this failure locked the account."""
        if self.threshold == 0:
            return False
        now = utcnow()
        # A wrong password that was already being checked when the account locked does not
        # count against the lock (nor lock it a second time).
        count = self.session.execute(
            update(User)
            .execution_options(**UNRELATED)
            .where(User.id == user_id, or_(User.locked_until.is_(None), User.locked_until <= now))
            .values(failed_logins=User.failed_logins + 1, updated_at=User.updated_at)
            .returning(User.failed_logins)
        ).scalar_one_or_none()
        locked = False
        if count is not None and count >= self.threshold:
            # Only the request whose increment reached the threshold locks (and audits it).
            result = self.session.execute(
                update(User)
                .execution_options(**UNRELATED)
                .where(User.id == user_id, User.failed_logins >= self.threshold)
                .values(
                    failed_logins=0,
                    locked_until=now + self.duration,
                    updated_at=User.updated_at,
                )
            )
            locked = affected_rows(result) == 1
        self.session.commit()
        return locked

    def record_success(self, user_id: uuid.UUID) -> bool:
        """Clear the failure count after a correct password, inside the caller's transaction
        (the login's session starts in the same one); False when the account is locked.

        Checked in the same statement that clears, not on the row read before bcrypt: a
        correct password that was being checked while a burst of wrong ones locked the
        account must be refused like them.
        """
        cleared = self.session.execute(_CLEAR, {"p_id": user_id, "p_now": utcnow()})
        return cleared.scalar_one_or_none() is not None

"""The access-token denylist: jtis of revoked tokens, kept until the token would expire anyway.

In the database by default; in Redis when ``AUTHSVC_REDIS_URL`` is set (the entry expires by
itself there). Either way every replica reads the same list. Token checks read it through
``services.live_state``, which keeps answers for ``auth_cache_ttl`` (0.5 s): the replica that
revoked sees it at once, the others within that.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from authsvc.db.models import RevokedAccessToken
from authsvc.services.sessions import SessionService


class Denylist(Protocol):
    def add(self, session: Session, jti: str, until: datetime) -> bool:
        """Deny the jti until then; False when it was denied already."""
        ...

    def contains(self, session: Session, jti: str) -> bool: ...


class SqlDenylist:
    """Uses the caller's session: the check shares the request's transaction and connection."""

    def add(self, session: Session, jti: str, until: datetime) -> bool:
        return SessionService(session, 0).deny_access_token(jti, until)

    def contains(self, session: Session, jti: str) -> bool:
        return session.get(RevokedAccessToken, jti) is not None

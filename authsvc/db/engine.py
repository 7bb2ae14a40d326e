"""Engine and session factory, built by ``create_app`` and the CLI, never at import time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from authsvc.config import Settings

# Connections per process. The app gives its threadpool as many threads: more could only
# wait for a connection, each holding memory while it waits.
POOL_SIZE = 20


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Foreign keys are off by default in SQLite; WAL lets readers run beside one writer, and
    # busy_timeout makes a second writer wait instead of failing at once.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def build_engine(settings: Settings) -> Engine:
    url = settings.database_url
    if settings.is_sqlite:
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False},
            pool_pre_ping=True,
            pool_size=POOL_SIZE,
            max_overflow=0,
            pool_timeout=settings.db_pool_timeout,
            hide_parameters=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        # pre_ping and short timeouts: a restarted database is picked up without a restart of
        # ours, and a dead one fails fast (a 503) instead of hanging requests.
        pool_pre_ping=True,
        pool_timeout=settings.db_pool_timeout,
        # Error messages are logged; their parameters would carry hashes and user data.
        hide_parameters=True,
        # A fixed pool: connections beyond it were opened and closed per request under load
        # (a PostgreSQL connection costs a backend process), so requests wait for a pooled one
        # instead, up to db_pool_timeout.
        pool_size=POOL_SIZE,
        max_overflow=0,
        connect_args={
            "connect_timeout": settings.db_connect_timeout,
            # A database that vanishes mid-query (a cut network, not a refusal) is noticed in
            # seconds through TCP keepalives and the user timeout, instead of hanging.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
            "tcp_user_timeout": settings.db_connect_timeout * 1000,
        },
    )


def build_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def affected_rows(result: object) -> int:
    """Rows an UPDATE or DELETE changed: how conditional writes learn whether they won."""
    return result.rowcount if isinstance(result, CursorResult) else 0

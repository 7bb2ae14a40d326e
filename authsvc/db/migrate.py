"""Run Alembic migrations from inside the package, without an alembic.ini on disk.

Alembic is imported only when there is something to do: a database already at ``HEAD``
(every start but the first after an upgrade) is recognised with one query, which keeps
Alembic's import and its reading of the migration scripts out of the time to ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import DatabaseError

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = "authsvc.db:migrations"
# The newest revision in migrations/versions; a test keeps the two in step.
HEAD = "0003"


def stored_revision(engine: Engine) -> str | None:
    """The revision the database says it is at, or None (no table yet, or not one row)."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except DatabaseError:
        return None  # no alembic_version table: a new database
    return str(rows[0][0]) if len(rows) == 1 else None


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["engine"] = engine
    return config


# Any constant: it names the lock that serializes migrations across replicas on PostgreSQL.
_MIGRATION_LOCK_ID = 72_635_421


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision``; on PostgreSQL several replicas starting at once take turns.

    SQLite needs no lock of ours: its own write lock serializes the DDL.
    """
    if revision == "head" and stored_revision(engine) == HEAD:
        return
    from alembic import command

    if engine.dialect.name != "postgresql":
        command.upgrade(alembic_config(engine), revision)
        return
    with engine.connect() as lock_connection:
        lock_connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        try:
            command.upgrade(alembic_config(engine), revision)
        finally:
            lock_connection.execute(
                text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID}
            )
            lock_connection.commit()


def head_revision() -> str | None:
    """The newest revision among the migration scripts (Alembic reads them all)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()

"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select

from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.db.migrate import HEAD, current_revision, head_revision, stored_revision, upgrade
from authsvc.db.models import Base, Scope


def test_migrated_schema_matches_the_models(settings: Settings, migrated: None) -> None:
    engine = build_engine(settings)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_reaches_head(settings: Settings, migrated: None) -> None:
    engine = build_engine(settings)
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision() == "0003"
        assert {"users", "scopes", "user_scopes"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migration_seeds_the_admin_scope(settings: Settings, migrated: None) -> None:
    engine = build_engine(settings)
    try:
        with build_sessionmaker(engine)() as session:
            assert session.scalars(select(Scope.name)).all() == ["admin"]
    finally:
        engine.dispose()


def test_head_constant_names_the_newest_migration_script() -> None:
    assert head_revision() == HEAD


def test_upgrade_of_a_database_at_head_leaves_alembic_alone(
    settings: Settings, migrated: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("alembic ran on a database already at head")

    monkeypatch.setattr(command, "upgrade", refuse)
    engine = build_engine(settings)
    try:
        upgrade(engine)
        assert stored_revision(engine) == HEAD
    finally:
        engine.dispose()


def test_stored_revision_of_a_new_database_is_none(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/empty.db")
    try:
        assert stored_revision(engine) is None
    finally:
        engine.dispose()

"""Users, scopes and user-scope grants; the built-in admin scope.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    scopes = op.create_table(
        "scopes",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_scopes"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("username_key", sa.String(150), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("full_name", sa.String(255), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username_key", name="uq_users_username_key"),
    )
    op.create_table(
        "user_scopes",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("scope_name", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_user_scopes_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["scope_name"],
            ["scopes.name"],
            name="fk_user_scopes_scope_name_scopes",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "scope_name", name="pk_user_scopes"),
    )
    op.bulk_insert(scopes, [{"name": "admin", "description": "Manage users, scopes and clients"}])


def downgrade() -> None:
    op.drop_table("user_scopes")
    op.drop_table("users")
    op.drop_table("scopes")

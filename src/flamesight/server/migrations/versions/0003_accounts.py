"""accounts: passwords, browser sessions, API tokens, share links

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = 32
HASH = 64


def owned_table(name: str, owner_column: str, *columns: sa.Column) -> None:
    """Create `name` with an id, an owner column referring to users, and a unique token hash."""
    op.create_table(
        name,
        sa.Column("id", sa.String(ID), nullable=False),
        sa.Column(owner_column, sa.String(ID), nullable=False),
        sa.Column("token_hash", sa.String(HASH), nullable=False),
        *columns,
        sa.ForeignKeyConstraint(
            [owner_column],
            ["users.id"],
            name=f"fk_{name}_{owner_column}_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
        sa.UniqueConstraint("token_hash", name=f"uq_{name}_token_hash"),
    )
    op.create_index(f"ix_{name}_{owner_column}", name, [owner_column])


def upgrade() -> None:
    """Add `users.password_hash`, `login_sessions`, `api_tokens` and `share_links`."""
    with op.batch_alter_table("users") as users:
        users.add_column(sa.Column("password_hash", sa.String(300), nullable=True))
    owned_table(
        "login_sessions",
        "user_id",
        sa.Column("csrf_hash", sa.String(HASH), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    owned_table(
        "api_tokens",
        "owner_id",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    )
    owned_table(
        "share_links",
        "owner_id",
        sa.Column("trace_id", sa.String(ID), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["trace_id"], ["traces.id"], name="fk_share_links_trace_id_traces", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_share_links_trace_id", "share_links", ["trace_id"])


def downgrade() -> None:
    """Drop the account tables and `users.password_hash`."""
    op.drop_index("ix_share_links_trace_id", table_name="share_links")
    for name, owner_column in [
        ("share_links", "owner_id"),
        ("api_tokens", "owner_id"),
        ("login_sessions", "user_id"),
    ]:
        op.drop_index(f"ix_{name}_{owner_column}", table_name=name)
        op.drop_table(name)
    with op.batch_alter_table("users") as users:
        users.drop_column("password_hash")

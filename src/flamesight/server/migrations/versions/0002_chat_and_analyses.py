"""chat sessions, messages, events, snapshots and analyses

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _owner(table: str) -> list[sa.SchemaItem]:
    return [
        sa.Column("owner_id", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=f"fk_{table}_owner_id_users", ondelete="CASCADE"
        ),
    ]


def _trace(table: str) -> list[sa.SchemaItem]:
    return [
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["trace_id"], ["traces.id"], name=f"fk_{table}_trace_id_traces", ondelete="CASCADE"
        ),
    ]


def upgrade() -> None:
    """Create `chat_sessions`, `chat_messages`, `chat_events`, `snapshots` and `analyses`."""
    op.create_table(
        "chat_sessions",
        sa.Column("id", sa.String(32), nullable=False),
        *_owner("chat_sessions"),
        *_trace("chat_sessions"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chat_sessions"),
    )
    op.create_index("ix_chat_sessions_owner_id", "chat_sessions", ["owner_id"])
    op.create_index(
        "ix_chat_sessions_trace_id_created_at", "chat_sessions", ["trace_id", "created_at"]
    )
    session_key = sa.ForeignKeyConstraint(
        ["session_id"],
        ["chat_sessions.id"],
        name="fk_chat_messages_session_id_chat_sessions",
        ondelete="CASCADE",
    )
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        session_key,
        sa.PrimaryKeyConstraint("id", name="pk_chat_messages"),
    )
    op.create_index("ix_chat_messages_session_id", "chat_messages", ["session_id"])
    op.create_table(
        "chat_events",
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["chat_sessions.id"],
            name="fk_chat_events_session_id_chat_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "seq", name="pk_chat_events"),
    )
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(32), nullable=False),
        *_owner("snapshots"),
        *_trace("snapshots"),
        sa.Column("session_id", sa.String(32), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("blob_key", sa.String(300), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["chat_sessions.id"],
            name="fk_snapshots_session_id_chat_sessions",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_snapshots"),
    )
    op.create_index("ix_snapshots_owner_id", "snapshots", ["owner_id"])
    op.create_table(
        "analyses",
        sa.Column("id", sa.String(32), nullable=False),
        *_owner("analyses"),
        *_trace("analyses"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_analyses"),
    )
    op.create_index("ix_analyses_owner_id", "analyses", ["owner_id"])
    op.create_index("ix_analyses_trace_id_created_at", "analyses", ["trace_id", "created_at"])


def downgrade() -> None:
    """Drop the tables of this revision."""
    op.drop_index("ix_analyses_trace_id_created_at", table_name="analyses")
    op.drop_index("ix_analyses_owner_id", table_name="analyses")
    op.drop_table("analyses")
    op.drop_index("ix_snapshots_owner_id", table_name="snapshots")
    op.drop_table("snapshots")
    op.drop_table("chat_events")
    op.drop_index("ix_chat_messages_session_id", table_name="chat_messages")
    op.drop_table("chat_messages")
    op.drop_index("ix_chat_sessions_trace_id_created_at", table_name="chat_sessions")
    op.drop_index("ix_chat_sessions_owner_id", table_name="chat_sessions")
    op.drop_table("chat_sessions")

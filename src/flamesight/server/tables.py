"""The database tables, as SQLAlchemy 2 declarative classes.

The schema itself is owned by the Alembic migrations in `migrations/versions`;
these classes must match them. A new table (chat sessions, messages,
snapshots, analyses, API tokens, share links) is a new class here and a new
migration there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

ID_LENGTH = 32
"""Room for the random URL-safe ids (`secrets.token_urlsafe`) used as keys."""

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store as UTC (naive on SQLite, where there is no time zone)."""
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Read back as an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """The declarative base of every flamesight table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """An account. In single-user (loopback) mode there is one: the implicit owner."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    password_hash: Mapped[str | None] = mapped_column(String(300), default=None)
    """An argon2 hash; None for the implicit owner, who cannot log in."""


class Trace(Base):
    """An uploaded profile file: its blob, its owner and what was read from it."""

    __tablename__ = "traces"
    __table_args__ = (Index("ix_traces_owner_id_created_at", "owner_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    owner_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(500))
    format: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    blob_key: Mapped[str] = mapped_column(String(300))
    active_profile: Mapped[int] = mapped_column(Integer)
    profiles: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """Per profile: index, name, unit, samples, frames, start, end, total weight."""


# --- accounts (revision 0003) --------------------------------------------------

TOKEN_HASH_LENGTH = 64
"""A SHA-256 hex digest: tokens are random, so they are stored only as their hash."""


class LoginSession(Base):
    """A browser session: the hashes of its cookie token and its CSRF token, until it expires."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LENGTH), unique=True)
    csrf_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ApiToken(Base):
    """A personal API token for scripts (`Authorization: Bearer`), stored as its hash."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    owner_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class ShareLink(Base):
    """Read-only access to one trace for whoever holds the link's token (stored as its hash)."""

    __tablename__ = "share_links"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    owner_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    trace_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("traces.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class OwnedTraceRow:
    """Columns of a row about a trace: its random id, its owner and its trace (both cascading)."""

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    owner_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    trace_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("traces.id", ondelete="CASCADE")
    )


class ChatSession(OwnedTraceRow, Base):
    """A chat about one trace: its messages and events belong to it."""

    __tablename__ = "chat_sessions"
    __table_args__ = (Index("ix_chat_sessions_trace_id_created_at", "trace_id", "created_at"),)

    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ChatMessage(Base):
    """One message of a chat's history (question, answer, tool calls, tool result), in order."""

    __tablename__ = "chat_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The message as `flamesight.agent.history_to_dicts` writes it (tool calls included)."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ChatEvent(Base):
    """An event a chat published, numbered per session, kept so clients can resume."""

    __tablename__ = "chat_events"

    session_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("chat_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Snapshot(OwnedTraceRow, Base):
    """A flame graph PNG a chat's render tool drew, kept in blob storage."""

    __tablename__ = "snapshots"

    session_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("chat_sessions.id", ondelete="SET NULL"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(200))
    blob_key: Mapped[str] = mapped_column(String(300))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Analysis(OwnedTraceRow, Base):
    """A one-shot "Send to LLM" answer about a trace's range. Never a credential."""

    __tablename__ = "analyses"
    __table_args__ = (Index("ix_analyses_trace_id_created_at", "trace_id", "created_at"),)

    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    """`flamesight.llm.AnalysisResult.to_dict()`: prompt, range, model, answer, duration, usage."""
    report: Mapped[str] = mapped_column(Text)
    """The Markdown report (`flamesight.llm.render_report`)."""

"""The database tables, as SQLAlchemy 2 declarative classes.

The schema itself is owned by the Alembic migrations in `migrations/versions`;
these classes must match them. A new table (chat sessions, messages,
snapshots, analyses, API tokens, share links) is a new class here and a new
migration there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, MetaData, String
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

"""The database engine: creating it, migrating it to the newest schema, opening sessions.

SQLite (through aiosqlite) and PostgreSQL (through asyncpg) are both driven
by SQLAlchemy 2's asyncio extension; `migrate` applies the Alembic revisions
in `migrations/versions` on the engine's own connection at server start.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

SQLITE_BUSY_TIMEOUT_MS = 30_000
PING_AFTER_IDLE_S = 1.0
"""A pooled PostgreSQL connection unused for this long is checked (a round trip or three)
before it is handed out, so that one left dead by a database restart is replaced, not
failed on. Busy connections are not checked: under load a check per checkout was a good
part of a chat turn's database time. The pool hands out the most recently used
connection first, so the rest go idle (and a restart while a connection is busy fails
the one request that finds it; SQLAlchemy then replaces every older connection)."""
IDLE_SINCE = "flamesight idle since"


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


JSON_COLUMNS = {"json_serializer": _json_text, "json_deserializer": orjson.loads}
"""JSON columns (chat events and messages, profile lists) are written and read with orjson:
a chat's events are stored a row each, and orjson encodes an event about ten times
faster than the standard library (which SQLAlchemy uses otherwise)."""


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url`; for SQLite, the file's folder is created and foreign keys on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **JSON_COLUMNS)
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    engine = create_async_engine(
        url, pool_size=20, max_overflow=10, pool_use_lifo=True, **JSON_COLUMNS
    )
    dialect = engine.sync_engine.dialect

    def note_checkin(_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[IDLE_SINCE] = time.monotonic()

    def ping_if_idle(connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get(IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(connection)
        except Exception as error:  # dead: the pool replaces it, and those older than it
            raise InvalidatePoolError(f"a pooled connection is dead: {error}") from error

    event.listen(engine.sync_engine.pool, "checkin", note_checkin)
    event.listen(engine.sync_engine.pool, "checkout", ping_if_idle)
    return engine


def _configure_sqlite(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def alembic_config(connection: Connection | None = None) -> Config:
    """The Alembic configuration of the packaged migrations, bound to `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database to `revision` (the newest by default); a no-op when it is there."""
    async with engine.begin() as connection:
        await connection.run_sync(
            lambda sync_connection: command.upgrade(alembic_config(sync_connection), revision)
        )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """A factory of sessions on `engine` whose objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)

"""The server's parts without HTTP: settings, blob storage, the profile cache, loopback checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from flamesight import examples
from flamesight.cli.serve_command import base_url, is_loopback
from flamesight.formats import load
from flamesight.model import ProfileGroup
from flamesight.server.cache import ProfileCache, group_nbytes
from flamesight.server.chat_store import ChatRepository, EventWriter
from flamesight.server.database import create_engine, migrate, session_factory
from flamesight.server.repository import (
    NotFound,
    Repository,
    TraceRecord,
    ensure_user,
    new_id,
)
from flamesight.server.settings import (
    DEFAULT_MAX_UPLOAD_BYTES,
    Settings,
    parse_size,
)
from flamesight.server.storage import BlobTooLarge, LocalDirectoryStorage, trace_blob_key
from tests.test_server_api import database_url  # noqa: F401 (a fixture: SQLite and PostgreSQL)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio."""
    return "asyncio"


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    """`data` in pieces, as a request body arrives."""
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


# --- settings ----------------------------------------------------------------


def test_sizes_read_with_units() -> None:
    assert parse_size("2GiB") == 2 * 1024**3
    assert parse_size("500MB") == 500_000_000
    assert parse_size("64k") == 64_000
    assert parse_size("1.5 MiB") == int(1.5 * 1024**2)
    assert parse_size("123") == 123
    with pytest.raises(ValueError, match="cannot read"):
        parse_size("lots")


def test_settings_defaults_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ["FLAMESIGHT_DATABASE_URL", "FLAMESIGHT_STORAGE_DIR", "FLAMESIGHT_MAX_UPLOAD"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLAMESIGHT_DATA_DIR", str(tmp_path / "env"))
    settings = Settings.from_environment()
    assert settings.data_dir == tmp_path / "env"
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.resolved_database_url.endswith(str(tmp_path / "env" / "flamesight.db"))
    assert settings.resolved_storage_dir == tmp_path / "env" / "blobs"
    assert settings.max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES == 2 * 1024**3
    monkeypatch.setenv("FLAMESIGHT_MAX_UPLOAD", "10MB")
    given = Settings.from_environment(data_dir=tmp_path / "flag", cache_size="1GiB")
    assert given.data_dir == tmp_path / "flag"
    assert given.max_upload_bytes == 10_000_000
    assert given.cache_bytes == 1024**3


# --- storage -----------------------------------------------------------------


async def test_storage_streams_and_replaces_atomically(tmp_path: Path) -> None:
    storage = LocalDirectoryStorage(tmp_path / "blobs")
    key = trace_blob_key("owner1", "trace1")
    data = bytes(range(256)) * 10_000
    assert await storage.write(key, chunks_of(data)) == len(data)
    assert await storage.exists(key)
    with storage.local_path(key) as path:
        assert path.read_bytes() == data
        assert path.relative_to(tmp_path / "blobs").parts[0] == "owner1"
    await storage.delete(key)
    await storage.delete(key)
    assert not await storage.exists(key)
    assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []


async def test_storage_leaves_nothing_when_a_write_fails(tmp_path: Path) -> None:
    storage = LocalDirectoryStorage(tmp_path / "blobs")
    key = trace_blob_key("owner1", "big")
    with pytest.raises(BlobTooLarge):
        await storage.write(key, chunks_of(b"x" * 5000), max_bytes=4999)

    async def broken() -> AsyncIterator[bytes]:
        yield b"some bytes"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await storage.write(key, broken())
    assert not await storage.exists(key)
    assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []


def test_storage_refuses_keys_that_leave_its_folder(tmp_path: Path) -> None:
    storage = LocalDirectoryStorage(tmp_path / "blobs")
    for key in ["../outside", "owner/../../x", "/abs", "a//b", ""]:
        with pytest.raises(ValueError, match="bad blob key"):
            storage.path_of(key)


# --- cache -------------------------------------------------------------------


async def test_cache_parses_once_even_for_concurrent_requests() -> None:
    cache = ProfileCache(max_bytes=1024**3)
    calls = 0

    def parse() -> ProfileGroup:
        nonlocal calls
        calls += 1
        return load(examples.path())

    groups = await asyncio.gather(*(cache.get("k", parse) for _ in range(5)))
    assert calls == 1 == cache.stats.parses
    assert all(group is groups[0] for group in groups)
    assert await cache.get("k", parse) is groups[0]
    assert calls == 1


async def test_cache_drops_least_recently_used_to_stay_in_budget() -> None:
    group = load(examples.path())
    size = group_nbytes(group)
    assert size > 0
    cache = ProfileCache(max_bytes=size * 2 + size // 2)
    for key in ["a", "b"]:
        cache.put(key, load(examples.path()))
    await cache.get("a", lambda: group)  # a is now the most recently used
    cache.put("c", load(examples.path()))
    assert "b" not in cache
    assert "a" in cache and "c" in cache
    assert cache.bytes_used <= cache.max_bytes
    assert cache.stats.evictions == 1
    cache.discard("a")
    assert cache.bytes_used == size


async def test_a_failed_parse_is_not_cached() -> None:
    cache = ProfileCache(max_bytes=1024**3)

    def fail() -> ProfileGroup:
        raise ValueError("broken")

    for _ in range(2):
        with pytest.raises(ValueError, match="broken"):
            await cache.get("k", fail)
    assert cache.stats.parses == 2
    assert "k" not in cache


# --- loopback ----------------------------------------------------------------


def test_loopback_hosts() -> None:
    for host in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"]:
        assert is_loopback(host), host
    for host in ["0.0.0.0", "::", "192.168.1.10", "example.com", "10.0.0.1"]:
        assert not is_loopback(host), host
    assert base_url("::1", 8000) == "http://[::1]:8000"
    assert base_url("127.0.0.1", 80) == "http://127.0.0.1:80"


# --- chat rows ------------------------------------------------------------------


@dataclass(frozen=True)
class StoredTrace:
    """A migrated database with one user's trace in it."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    owner: str
    trace: TraceRecord


@pytest.fixture
async def stored_trace(database_url: str) -> AsyncIterator[StoredTrace]:  # noqa: F811
    """A trace of user "ada" in a fresh database (SQLite or PostgreSQL)."""
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        owner = await ensure_user(sessions, "ada")
        trace = await Repository(sessions, owner).add_trace(
            trace_id=new_id(),
            name="slow.json",
            format="speedscope",
            size=10,
            blob_key=f"{owner}/slow.json",
            active_profile=0,
            profiles=[],
        )
        yield StoredTrace(engine, sessions, owner, trace)
    finally:
        await engine.dispose()


async def test_a_turns_inputs_come_in_one_read_and_only_for_their_owner(
    stored_trace: StoredTrace,
) -> None:
    sessions, trace = stored_trace.sessions, stored_trace.trace
    stranger = await ensure_user(sessions, "bob")
    mine = ChatRepository(sessions, stored_trace.owner)
    chat = await mine.create_session(trace.id)
    question = [{"type": "human", "data": {"content": "Why?"}}]
    assert await mine.add_question(chat.id, question) == trace
    await mine.add_messages(chat.id, [{"type": "ai", "data": {"content": "Parsing."}}])

    inputs = await mine.load_turn(chat.id)
    assert inputs.session == chat and inputs.trace == trace
    assert [m["type"] for m in inputs.messages] == ["human", "ai"]

    theirs = ChatRepository(sessions, stranger)
    for attempt in (
        theirs.load_turn(chat.id),
        theirs.add_question(chat.id, question),
        theirs.messages(chat.id),
        theirs.add_messages(chat.id, [{"type": "human", "data": {"content": "Mine?"}}]),
        theirs.last_seq(chat.id),
        mine.load_turn("no-such-session"),
    ):
        with pytest.raises(NotFound):
            await attempt
    assert len((await mine.load_turn(chat.id)).messages) == 2


async def test_the_event_writer_commits_without_waiting_for_the_disk_on_its_own_connection(
    stored_trace: StoredTrace,
) -> None:
    engine, trace = stored_trace.engine, stored_trace.trace
    store = ChatRepository(stored_trace.sessions, stored_trace.owner)
    chat = await store.create_session(trace.id)
    writer = EventWriter(engine)
    await writer.store([(chat.id, [{"type": "waiting_for_model", "seq": 1}])])
    await writer.store([(chat.id, [{"type": "model_response_end", "seq": 2}])])
    assert await store.last_seq(chat.id) == 2
    with pytest.raises(IntegrityError):  # seq 2 is taken: nothing of the batch is kept
        await writer.store([(chat.id, [{"type": "x", "seq": 3}, {"type": "y", "seq": 2}])])
    assert await store.last_seq(chat.id) == 2
    await writer.store([(chat.id, [{"type": "model_response_end", "seq": 3}])])
    assert await store.last_seq(chat.id) == 3
    if engine.dialect.name == "postgresql":
        assert writer._connection is not None
        show = "SHOW synchronous_commit"
        assert (await writer._connection.exec_driver_sql(show)).scalar() == "off"
        await writer._connection.rollback()
    await writer.close()
    if engine.dialect.name == "postgresql":
        async with engine.connect() as pooled:  # the pool never got the writer's connection
            assert (await pooled.exec_driver_sql(show)).scalar() == "on"

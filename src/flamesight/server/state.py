"""What a running server holds: settings, database, storage, cache and the local owner.

`start_server` builds it (creating folders, migrating the database, making
sure the implicit owner exists); `stop_server` releases it. The FastAPI app
keeps one as `app.state.flamesight`.
"""

from __future__ import annotations

import functools
import gc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from flamesight.llm.endpoint import warm_up
from flamesight.server.cache import ProfileCache
from flamesight.server.database import create_engine, migrate, session_factory
from flamesight.server.repository import Repository, ensure_user
from flamesight.server.settings import Settings
from flamesight.server.storage import BlobStorage, open_storage

if TYPE_CHECKING:
    from flamesight.server.chat import ChatService

LOCAL_OWNER_NAME = "local"
"""The implicit owner of everything in single-user (loopback) mode."""


@dataclass
class ServerState:
    """The long-lived parts of a running server."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: BlobStorage
    cache: ProfileCache
    local_owner_id: str
    chat: ChatService = field(init=False)
    """Chat turns (job queue), their events (bus) and the sessions' endpoints."""

    def __post_init__(self) -> None:
        from flamesight.server.chat import ChatService

        self.chat = ChatService(self)

    def repository(self, user_id: str) -> Repository:
        """The repository of `user_id`'s rows."""
        return Repository(self.sessions, user_id)


async def start_server(settings: Settings) -> ServerState:
    """Open the database (migrated to the newest schema), the blob folder and the cache."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.resolved_database_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        owner_id = await ensure_user(sessions, LOCAL_OWNER_NAME)
    except BaseException:
        await engine.dispose()
        raise
    await anyio.to_thread.run_sync(warm_up)
    state = ServerState(
        settings=settings,
        engine=engine,
        sessions=sessions,
        storage=open_storage(settings),
        cache=ProfileCache(settings.cache_bytes),
        local_owner_id=owner_id,
    )
    if settings.redis_url:
        from flamesight.server.fleet import join_fleet

        try:
            await join_fleet(state, settings.redis_url)
        except BaseException:
            await engine.dispose()
            raise
    _freeze_startup_objects()
    return state


@functools.cache
def _freeze_startup_objects() -> None:
    """Take what importing and starting made out of the garbage collector's full passes,
    once per process (at the end of the first `start_server`).

    The modules, classes and tables of the libraries (about 400,000 objects)
    live as long as the process, and a full pass over them took 176 ms,
    stopping every stream every few seconds under load.
    """
    gc.freeze()


async def stop_server(state: ServerState) -> None:
    """Stop the chat turns still running, then close the database connections."""
    try:
        await state.chat.close()
    finally:
        await state.engine.dispose()

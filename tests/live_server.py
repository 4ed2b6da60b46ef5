"""A real uvicorn serving the flamesight app on a free loopback port, in a thread of its own.

Used by the SSE and WebSocket tests: the app runs with its lifespan on its
own event loop, as `flamesight serve` runs it; `stop` shuts it down and a
new `LiveServer` on the same settings is a restarted server. `secrets_left`
looks through every table row and blob for strings that must not be there.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn
from sqlalchemy import select

from flamesight import examples
from flamesight.server import Settings, create_app
from flamesight.server.database import create_engine, session_factory
from flamesight.server.tables import Base

START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServer:
    """The app on uvicorn at http://127.0.0.1:PORT until `stop`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_config=None
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """ws://127.0.0.1:PORT/ws/chat"""
        return f"ws://127.0.0.1:{self.port}/ws/chat"

    def start(self) -> LiveServer:
        """Start serving; return once the server listens."""
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            assert self._thread.is_alive(), "the server stopped while starting"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut down (lifespan included) and wait for it."""
        self._server.should_exit = True
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the server did not stop"

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def example_bytes() -> tuple[str, bytes]:
    """The bundled example profile: its file name and bytes."""
    path: Path = examples.path()
    return path.name, path.read_bytes()


async def secrets_left(settings: Settings, secrets: list[str]) -> list[str]:
    """Where any of `secrets` appears: in a table row or a blob (empty when nowhere)."""
    found: list[str] = []
    engine = create_engine(settings.resolved_database_url)
    try:
        sessions = session_factory(engine)
        async with sessions() as session:
            for table in Base.metadata.sorted_tables:
                for row in (await session.execute(select(table))).all():
                    text = repr(tuple(row))
                    found += [f"{table.name}: {s!r}" for s in secrets if s in text]
    finally:
        await engine.dispose()
    for blob in settings.resolved_storage_dir.rglob("*"):
        if blob.is_file():
            data = blob.read_bytes()
            found += [f"blob {blob}: {s!r}" for s in secrets if s.encode() in data]
    return found

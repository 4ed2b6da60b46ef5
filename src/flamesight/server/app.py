"""The FastAPI application: routes, error shape, and the server's lifetime.

`create_app(settings)` returns an app whose lifespan opens the database
(migrating it), the blob folder and the profile cache, and closes them at
shutdown. `on_ready` runs once everything is open (`flamesight serve
--open` uploads its file there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from flamesight import __version__
from flamesight.server import (
    account_routes,
    analyze_routes,
    chat_routes,
    prompt_routes,
    render_routes,
    trace_routes,
)
from flamesight.server.errors import install_error_handlers
from flamesight.server.same_origin import SameOriginMiddleware
from flamesight.server.settings import Settings
from flamesight.server.state import ServerState, start_server, stop_server
from flamesight.server.viewer_routes import install_viewer

ReadyHook = Callable[[ServerState], Awaitable[None]]


def create_app(settings: Settings | None = None, on_ready: ReadyHook | None = None) -> FastAPI:
    """The flamesight web app for `settings` (from the environment when not given)."""
    chosen = settings or Settings.from_environment()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await start_server(chosen)
        app.state.flamesight = state
        try:
            if on_ready is not None:
                await on_ready(state)
            yield
        finally:
            await stop_server(state)

    app = FastAPI(
        title="flamesight",
        version=__version__,
        description="Load performance profiles of any format, analyse them, render flame graphs.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(SameOriginMiddleware)
    app.include_router(trace_routes.router)
    app.include_router(render_routes.router)
    app.include_router(analyze_routes.router)
    app.include_router(prompt_routes.router)
    app.include_router(chat_routes.router)
    app.include_router(account_routes.router)
    install_viewer(app)
    return app

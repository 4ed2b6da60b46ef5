"""FastAPI dependencies: the running server's state, the caller, the caller's repository.

`current_user_id` is the one place that decides who is asking: it asks
`accounts.authenticate` (an API token, a session cookie with its CSRF check,
or the implicit owner in single-user loopback mode), and every endpoint that
reaches data through `user_repository` is scoped to that user.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from flamesight.server.accounts import Caller, authenticate
from flamesight.server.repository import Repository
from flamesight.server.state import ServerState


def server_state(connection: HTTPConnection) -> ServerState:
    """The state of the server answering this request or WebSocket."""
    return connection.app.state.flamesight


State = Annotated[ServerState, Depends(server_state)]


async def current_caller(connection: HTTPConnection, state: State) -> Caller:
    """Who is making the request and how they proved it; 401/403 when nobody may."""
    return await authenticate(connection, state)


CurrentCaller = Annotated[Caller, Depends(current_caller)]


def current_user_id(caller: CurrentCaller) -> str:
    """The id of the user making the request (the implicit owner in single-user mode)."""
    return caller.user_id


UserId = Annotated[str, Depends(current_user_id)]


def user_repository(state: State, user_id: UserId) -> Repository:
    """The repository of the caller's rows."""
    return state.repository(user_id)


UserRepository = Annotated[Repository, Depends(user_repository)]

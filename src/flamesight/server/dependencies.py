"""FastAPI dependencies: the running server's state, the caller, the caller's repository.

`current_user_id` is the one place that decides who is asking. In
single-user (loopback) mode it is always the implicit owner; accounts will
resolve a session cookie or an API token here, and every endpoint that
reaches data through `user_repository` is scoped to that user.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from flamesight.server.repository import Repository
from flamesight.server.state import ServerState


def server_state(request: Request) -> ServerState:
    """The state of the server answering `request`."""
    return request.app.state.flamesight


State = Annotated[ServerState, Depends(server_state)]


def current_user_id(state: State) -> str:
    """The id of the user making the request (the implicit owner in single-user mode)."""
    return state.local_owner_id


UserId = Annotated[str, Depends(current_user_id)]


def user_repository(state: State, user_id: UserId) -> Repository:
    """The repository of the caller's rows."""
    return state.repository(user_id)


UserRepository = Annotated[Repository, Depends(user_repository)]

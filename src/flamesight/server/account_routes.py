"""Accounts over HTTP: log in and out, who am I, API tokens, share links and shared traces.

- `POST /api/login {name, password}` sets the session cookie (HttpOnly,
  SameSite=Lax, Secure over https) and the CSRF cookie, and answers the CSRF
  token too; `POST /api/logout` ends the session; `GET /api/me`.
- `/api/tokens`: create (the secret is in this one answer only), list,
  revoke.
- `/api/traces/{id}/share`: create a share link (its token shown once),
  list, revoke (`DELETE .../share/{share_id}`).
- `/api/shared/{token}` and its `/profiles`, `/top`, `/summary`, `/tree`,
  `/render`, and the viewer's `/viewer` and `/layout`: the trace endpoints
  themselves, handed a `SharedTrace` (one trace, read only) instead of the
  caller's repository; `/api/shared/{token}/snapshots/{id}`: the PNG of a
  snapshot the chat drew of that trace (of no other).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field, SecretStr

from flamesight.server import accounts, trace_routes, viewer_routes
from flamesight.server.accounts import SharedTrace
from flamesight.server.chat_routes import snapshot_response
from flamesight.server.dependencies import CurrentCaller, State, UserRepository
from flamesight.server.errors import ApiError
from flamesight.server.trace_routes import json_response, trace_document

router = APIRouter(tags=["accounts"])


class LoginBody(BaseModel):
    """A name and password to log in with."""

    name: str = Field(min_length=1, max_length=accounts.MAX_NAME_LENGTH)
    password: SecretStr


class TokenBody(BaseModel):
    """What to call a new API token (to recognise it in the list)."""

    name: str = Field(default="API token", min_length=1, max_length=200)


def timestamp(moment: datetime | None) -> str | None:
    """An ISO 8601 time, or None."""
    return moment.isoformat() if moment is not None else None


# --- sessions ----------------------------------------------------------------


@router.post("/api/login")
async def log_in(body: LoginBody, request: Request, state: State) -> Response:
    """Log in: sets the session and CSRF cookies; answers the user and the CSRF token.

    Send the CSRF token back as the `X-CSRF-Token` header on every request
    that changes something (POST, PUT, PATCH, DELETE).
    """
    opened = await accounts.log_in(state.sessions, body.name, body.password.get_secret_value())
    if opened is None:
        raise ApiError(401, "invalid_credentials", "wrong user name or password")
    response = json_response(
        {
            "user": {"id": opened.caller.user_id, "name": opened.caller.name},
            "csrf_token": opened.csrf_token,
        }
    )
    accounts.set_session_cookies(response, request, opened)
    return response


@router.post("/api/logout", status_code=204)
async def log_out(caller: CurrentCaller, state: State) -> Response:
    """End this browser session and clear its cookies."""
    if caller.session_id is not None:
        await accounts.log_out(state.sessions, caller.session_id)
    response = Response(status_code=204)
    accounts.clear_session_cookies(response)
    return response


@router.get("/api/me")
async def me(caller: CurrentCaller, state: State) -> Response:
    """The caller: id, name, how they were recognised, and whether the server is single-user."""
    return json_response(
        {
            "id": caller.user_id,
            "name": caller.name,
            "via": caller.via,
            "single_user": await accounts.is_single_user(state),
        }
    )


# --- API tokens --------------------------------------------------------------


@router.post("/api/tokens", status_code=201)
async def create_token(repository: UserRepository, body: TokenBody | None = None) -> Response:
    """A new personal API token: its secret is in this answer and nowhere else, ever."""
    secret = accounts.new_secret(accounts.API_TOKEN_PREFIX)
    record = await repository.add_api_token(
        (body or TokenBody()).name, accounts.token_digest(secret)
    )
    return json_response(
        {
            "id": record.id,
            "name": record.name,
            "token": secret,
            "created_at": timestamp(record.created_at),
        },
        status=201,
    )


@router.get("/api/tokens")
async def list_tokens(repository: UserRepository) -> Response:
    """The caller's API tokens (without their secrets)."""
    return json_response(
        {
            "tokens": [
                {
                    "id": token.id,
                    "name": token.name,
                    "created_at": timestamp(token.created_at),
                    "last_used_at": timestamp(token.last_used_at),
                }
                for token in await repository.list_api_tokens()
            ]
        }
    )


@router.delete("/api/tokens/{token_id}", status_code=204)
async def revoke_token(token_id: str, repository: UserRepository) -> Response:
    """Revoke one of the caller's API tokens: it stops working at once."""
    await repository.revoke_api_token(token_id)
    return Response(status_code=204)


# --- share links -------------------------------------------------------------


def shared_url(token: str) -> str:
    """Where a share link's holder reads the shared trace."""
    return f"/api/shared/{token}"


@router.post("/api/traces/{trace_id}/share", status_code=201)
async def share_trace(trace_id: str, repository: UserRepository) -> Response:
    """A new read-only share link to one of the caller's traces (its token shown only here)."""
    token = accounts.new_secret()
    record = await repository.add_share_link(trace_id, accounts.token_digest(token))
    return json_response(
        {
            "id": record.id,
            "trace": record.trace_id,
            "token": token,
            "url": shared_url(token),
            "created_at": timestamp(record.created_at),
        },
        status=201,
    )


@router.get("/api/traces/{trace_id}/share")
async def list_share_links(trace_id: str, repository: UserRepository) -> Response:
    """The share links of one of the caller's traces (without their tokens)."""
    return json_response(
        {
            "trace": trace_id,
            "links": [
                {"id": link.id, "created_at": timestamp(link.created_at)}
                for link in await repository.list_share_links(trace_id)
            ],
        }
    )


@router.delete("/api/traces/{trace_id}/share/{share_id}", status_code=204)
async def revoke_share_link(trace_id: str, share_id: str, repository: UserRepository) -> Response:
    """Revoke a share link: its token stops opening the trace at once."""
    await repository.revoke_share_link(trace_id, share_id)
    return Response(status_code=204)


# --- what a share link opens -------------------------------------------------


async def shared_trace(token: str, state: State) -> SharedTrace:
    """The one trace a share link's token opens (404 when unknown or revoked)."""
    return await accounts.shared_trace(state.sessions, token)


Shared = Annotated[SharedTrace, Depends(shared_trace)]


@router.get("/api/shared/{token}")
async def get_shared_trace(token: str, shared: Shared) -> Response:
    """The shared trace's metadata."""
    document = trace_document(await shared.get_trace(shared.trace_id))
    return json_response({**document, "url": shared_url(token)})


Endpoint = Callable[..., Awaitable[Response]]


def shared_endpoint(endpoint: Endpoint) -> Endpoint:
    """`endpoint` of `/api/traces/{trace_id}/...`, for `/api/shared/{token}/...`.

    The same parameters, except that the path names a share token instead
    of a trace id, and `repository` is the `SharedTrace` it opens.
    """
    signature = inspect.signature(endpoint, eval_str=True)
    parameters = [
        parameter.replace(annotation=Shared) if parameter.name == "repository" else parameter
        for parameter in signature.parameters.values()
        if parameter.name != "trace_id"
    ]
    token = inspect.Parameter("token", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)

    async def read_shared(token: str, repository: SharedTrace, **arguments: Any) -> Response:
        return await endpoint(trace_id=repository.trace_id, repository=repository, **arguments)

    read_shared.__signature__ = signature.replace(parameters=[token, *parameters])  # type: ignore[attr-defined]
    read_shared.__doc__ = f"{endpoint.__doc__}\n\nThrough a share link: read only, one trace."
    read_shared.__name__ = f"shared_{endpoint.__name__}"
    return read_shared


for suffix, endpoint in [
    ("profiles", trace_routes.trace_profiles),
    ("top", trace_routes.trace_top),
    ("summary", trace_routes.trace_summary),
    ("tree", trace_routes.trace_tree),
    ("render", trace_routes.trace_render),
    ("viewer", viewer_routes.trace_viewer),
    ("layout", viewer_routes.trace_layout),
]:
    router.add_api_route(
        f"/api/shared/{{token}}/{suffix}", shared_endpoint(endpoint), methods=["GET"]
    )


@router.get("/api/shared/{token}/snapshots/{snapshot_id}", response_class=Response)
async def get_shared_snapshot(snapshot_id: str, shared: Shared, state: State) -> Response:
    """A flame graph PNG the chat drew of the shared trace (404 for any other)."""
    return await snapshot_response(state, await shared.get_snapshot(snapshot_id))

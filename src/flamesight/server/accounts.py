"""Who is asking: accounts, browser sessions, API tokens and share links.

`authenticate` is what `dependencies.current_user_id` calls for every
request. In order:

1. `Authorization: Bearer <token>`: a personal API token (no CSRF check:
   a browser never adds that header by itself). A wrong or revoked token is
   401, whatever the mode.
2. The session cookie of a browser that logged in (`POST /api/login`). A
   state-changing request (anything but GET, HEAD, OPTIONS) must also send
   the `X-CSRF-Token` header equal to the readable CSRF cookie, whose hash
   is stored with the session (double submit, bound to the session).
   Otherwise 403. (Before any of this, `same_origin.SameOriginMiddleware`
   refuses state-changing requests and WebSocket handshakes from pages of
   other websites, whoever they claim to be.)
3. Nothing (or a stale cookie): the implicit "local" owner when the server
   is in single-user mode (bound to loopback and no account has a
   password), else 401.

Passwords are hashed with argon2 (argon2-cffi); tokens and share links are
256-bit random strings, stored only as their SHA-256 (they cannot be
guessed, so a fast hash is enough and lookups stay a single indexed query).
The queries here are not scoped to an owner because they decide who the
owner is; everything else goes through `repository.Repository`.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Response, WebSocketException, status
from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from flamesight.server.chat_store import ChatRepository, SnapshotRecord
from flamesight.server.errors import ApiError
from flamesight.server.repository import NotFound, Repository, TraceRecord, new_id
from flamesight.server.state import LOCAL_OWNER_NAME, ServerState
from flamesight.server.tables import ApiToken, LoginSession, ShareLink, Snapshot, Trace, User

Sessions = async_sessionmaker[AsyncSession]

SESSION_COOKIE = "flamesight_session"
CSRF_COOKIE = "flamesight_csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_LIFETIME = timedelta(days=14)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECRET_BYTES = 32
API_TOKEN_PREFIX = "fsk_"
"""API tokens start with this, so a leaked one is easy to recognise (and to scan for)."""
MIN_PASSWORD_LENGTH = 8
MAX_NAME_LENGTH = 200

password_hasher = PasswordHasher()


class AccountError(ValueError):
    """An account operation that cannot be done (a name taken, a password too short)."""


@dataclass(frozen=True)
class Caller:
    """Who made a request, and how they proved it."""

    user_id: str
    name: str
    via: Literal["local", "session", "token"]
    session_id: str | None = None


@dataclass(frozen=True)
class AccountRecord:
    """A user who can log in."""

    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class NewSession:
    """A browser session just opened: who, and the two secrets for its cookies."""

    caller: Caller
    session_token: str
    csrf_token: str


# --- secrets -----------------------------------------------------------------


def new_secret(prefix: str = "") -> str:
    """A fresh 256-bit random URL-safe token."""
    return prefix + secrets.token_urlsafe(SECRET_BYTES)


def token_digest(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (slow on purpose: call it off the event loop)."""
    return password_hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches the argon2 hash."""
    try:
        return password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def unknown_user_hash() -> str:
    """A hash checked when the name is unknown, so a wrong name costs as much as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def check_new_account(name: str, password: str) -> None:
    """Refuse an empty or over-long name and a short password (AccountError)."""
    if not name.strip() or len(name) > MAX_NAME_LENGTH or name != name.strip():
        raise AccountError(
            f"a user name has 1 to {MAX_NAME_LENGTH} characters, without spaces around it"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")


# --- accounts (the CLI's `flamesight users`) ---------------------------------


async def has_accounts(sessions: Sessions) -> bool:
    """Whether any user can log in (has a password): then the server is not single-user."""
    async with sessions() as session:
        return bool(await session.scalar(select(exists().where(User.password_hash.is_not(None)))))


async def add_account(sessions: Sessions, name: str, password: str) -> str:
    """Create user `name` with `password`; its id. AccountError when the name is taken.

    The implicit single-user owner ("local", no password) can be given a
    password this way, and keeps its traces.
    """
    check_new_account(name, password)
    password_hash = await anyio.to_thread.run_sync(hash_password, password)
    async with sessions() as session, session.begin():
        row = await session.scalar(select(User).where(User.name == name))
        if row is not None and row.password_hash is not None:
            raise AccountError(f"there is already a user called {name!r}")
        if row is None:
            row = User(id=new_id(), name=name, created_at=datetime.now(UTC))
            session.add(row)
        row.password_hash = password_hash
        return row.id


async def list_accounts(sessions: Sessions) -> list[AccountRecord]:
    """The users who can log in, by name."""
    async with sessions() as session:
        rows = await session.scalars(
            select(User).where(User.password_hash.is_not(None)).order_by(User.name)
        )
        return [AccountRecord(row.id, row.name, row.created_at) for row in rows]


async def remove_account(sessions: Sessions, name: str) -> list[str]:
    """Delete user `name` with every row they own; the keys of their blobs to delete."""
    async with sessions() as session, session.begin():
        user_id = await session.scalar(select(User.id).where(User.name == name))
        if user_id is None:
            raise AccountError(f"there is no user called {name!r}")
        keys = list(await session.scalars(select(Trace.blob_key).where(Trace.owner_id == user_id)))
        keys += await session.scalars(select(Snapshot.blob_key).where(Snapshot.owner_id == user_id))
        await session.execute(delete(User).where(User.id == user_id))
    return keys


# --- sessions and tokens -----------------------------------------------------


async def log_in(sessions: Sessions, name: str, password: str) -> NewSession | None:
    """Open a browser session for `name` when `password` is theirs; None otherwise."""
    async with sessions() as session:
        row = await session.scalar(
            select(User).where(User.name == name, User.password_hash.is_not(None))
        )
    stored = row.password_hash if row is not None and row.password_hash else unknown_user_hash()
    matches = await anyio.to_thread.run_sync(verify_password, stored, password)
    if row is None or not matches:
        return None
    if password_hasher.check_needs_rehash(stored):
        rehashed = await anyio.to_thread.run_sync(hash_password, password)
    else:
        rehashed = None
    session_token, csrf_token = new_secret(), new_secret()
    now = datetime.now(UTC)
    login = LoginSession(
        id=new_id(),
        user_id=row.id,
        token_hash=token_digest(session_token),
        csrf_hash=token_digest(csrf_token),
        created_at=now,
        expires_at=now + SESSION_LIFETIME,
    )
    async with sessions() as session, session.begin():
        await session.execute(delete(LoginSession).where(LoginSession.expires_at <= now))
        session.add(login)
        if rehashed is not None:
            await session.execute(
                update(User).where(User.id == row.id).values(password_hash=rehashed)
            )
    return NewSession(Caller(row.id, row.name, "session", login.id), session_token, csrf_token)


async def log_out(sessions: Sessions, session_id: str) -> None:
    """End a browser session."""
    async with sessions() as session, session.begin():
        await session.execute(delete(LoginSession).where(LoginSession.id == session_id))


async def session_caller(sessions: Sessions, token: str) -> tuple[Caller, str] | None:
    """The caller of an unexpired session cookie and the hash of its CSRF token; None if none."""
    async with sessions() as session:
        found = (
            await session.execute(
                select(LoginSession, User.name)
                .join(User, User.id == LoginSession.user_id)
                .where(
                    LoginSession.token_hash == token_digest(token),
                    LoginSession.expires_at > datetime.now(UTC),
                )
            )
        ).first()
    if found is None:
        return None
    login, name = found
    return Caller(login.user_id, name, "session", login.id), login.csrf_hash


async def token_caller(sessions: Sessions, token: str) -> Caller | None:
    """The owner of an API token (noting when it was used); None for an unknown one."""
    async with sessions() as session, session.begin():
        found = (
            await session.execute(
                select(ApiToken.id, User.id, User.name)
                .join(User, User.id == ApiToken.owner_id)
                .where(ApiToken.token_hash == token_digest(token))
            )
        ).first()
        if found is None:
            return None
        token_id, user_id, name = found
        await session.execute(
            update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=datetime.now(UTC))
        )
    return Caller(user_id, name, "token")


# --- share links ---------------------------------------------------------------


class SharedTrace:
    """What a share link opens: one trace and its snapshots, read only.

    It answers `get_trace` like a `Repository` for that trace alone, and
    `get_snapshot` for the snapshots drawn of it, and has no other method,
    so the trace endpoints it is handed to can read the shared trace and
    nothing else.
    """

    def __init__(self, sessions: Sessions, owner_id: str, trace_id: str) -> None:
        self._owner = Repository(sessions, owner_id)
        self._snapshots = ChatRepository(sessions, owner_id)
        self.trace_id = trace_id

    async def get_trace(self, trace_id: str) -> TraceRecord:
        """The shared trace when `trace_id` is it; NotFound for any other."""
        if trace_id != self.trace_id:
            raise NotFound(f"no trace {trace_id!r}")
        return await self._owner.get_trace(trace_id)

    async def get_snapshot(self, snapshot_id: str) -> SnapshotRecord:
        """A snapshot drawn of the shared trace; NotFound for any other."""
        snapshot = await self._snapshots.get_snapshot(snapshot_id)
        if snapshot.trace_id != self.trace_id:
            raise NotFound(f"no snapshot {snapshot_id!r}")
        return snapshot


async def shared_trace(sessions: Sessions, token: str) -> SharedTrace:
    """The trace a share link's token opens; NotFound when it is unknown or revoked."""
    async with sessions() as session:
        found = (
            await session.execute(
                select(ShareLink.owner_id, ShareLink.trace_id).where(
                    ShareLink.token_hash == token_digest(token)
                )
            )
        ).first()
    if found is None:
        raise NotFound("no such share link (it may have been revoked)")
    return SharedTrace(sessions, found.owner_id, found.trace_id)


# --- the decision ---------------------------------------------------------------


def refuse(connection: HTTPConnection, status_code: int, code: str, message: str) -> Exception:
    """The error refusing `connection`: an API error, or a WebSocket close (policy violation)."""
    if connection.scope["type"] == "websocket":
        return WebSocketException(status.WS_1008_POLICY_VIOLATION, message)
    return ApiError(status_code, code, message)


def check_csrf(connection: HTTPConnection, csrf_hash: str) -> None:
    """Refuse a state-changing request made with the session cookie but without its CSRF token."""
    if connection.scope["type"] == "websocket":
        return  # a handshake from another origin: refused by same_origin.SameOriginMiddleware
    if connection.scope.get("method", "GET") in SAFE_METHODS:
        return
    header = connection.headers.get(CSRF_HEADER, "")
    cookie = connection.cookies.get(CSRF_COOKIE, "")
    if not (
        header
        and secrets.compare_digest(header, cookie)
        and secrets.compare_digest(token_digest(header), csrf_hash)
    ):
        raise refuse(
            connection,
            403,
            "csrf_failed",
            f"send the {CSRF_HEADER} header with the value of the {CSRF_COOKIE} cookie",
        )


async def is_single_user(state: ServerState) -> bool:
    """Whether requests without credentials belong to the implicit owner (loopback, no accounts)."""
    return state.settings.bound_to_loopback and not await has_accounts(state.sessions)


async def authenticate(connection: HTTPConnection, state: ServerState) -> Caller:
    """Who is making this request (see the module docstring); 401 or 403 when nobody may."""
    authorization = connection.headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        caller = None
        if scheme.lower() == "bearer" and token.strip():
            caller = await token_caller(state.sessions, token.strip())
        if caller is None:
            raise refuse(connection, 401, "unauthenticated", "unknown or revoked API token")
        return caller
    cookie = connection.cookies.get(SESSION_COOKIE)
    if cookie:
        found = await session_caller(state.sessions, cookie)
        if found is not None:
            caller, csrf_hash = found
            check_csrf(connection, csrf_hash)
            return caller
    if await is_single_user(state):
        return Caller(state.local_owner_id, LOCAL_OWNER_NAME, "local")
    raise refuse(
        connection,
        401,
        "unauthenticated",
        "log in (POST /api/login) or send Authorization: Bearer <API token>",
    )


def set_session_cookies(response: Response, connection: HTTPConnection, opened: NewSession) -> None:
    """Give the browser its session cookie (HttpOnly) and its CSRF cookie (readable by scripts)."""
    secure = connection.url.scheme in ("https", "wss")
    for name, value, httponly in [
        (SESSION_COOKIE, opened.session_token, True),
        (CSRF_COOKIE, opened.csrf_token, False),
    ]:
        response.set_cookie(
            name,
            value,
            max_age=int(SESSION_LIFETIME.total_seconds()),
            path="/",
            httponly=httponly,
            samesite="lax",
            secure=secure,
        )


def clear_session_cookies(response: Response) -> None:
    """Tell the browser to forget both session cookies."""
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", samesite="lax")

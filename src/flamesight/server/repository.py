"""The one place that reads and writes rows, every query scoped to the caller.

A `Repository` is made for one user id and can only see that user's rows:
asking for another user's trace finds nothing (`NotFound`, answered 404,
never 403), so no endpoint can forget the check. The only queries that are
not scoped to an owner are the account functions at the bottom, which the
server calls to find or create users.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Delete, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flamesight.server.tables import ApiToken, ShareLink, Snapshot, Trace, User

ID_BYTES = 12
"""Random bytes in a new id: 16 URL-safe characters, 96 bits, not guessable."""


def new_id() -> str:
    """A fresh random URL-safe id for a row."""
    return secrets.token_urlsafe(ID_BYTES)


class NotFound(LookupError):
    """No such row for this caller: it does not exist or belongs to someone else."""


@dataclass(frozen=True)
class TraceRecord:
    """A stored trace as the rest of the server sees it (no database session attached)."""

    id: str
    owner_id: str
    name: str
    format: str
    size: int
    created_at: datetime
    blob_key: str
    active_profile: int
    profiles: list[dict[str, Any]]

    @classmethod
    def of(cls, row: Trace) -> TraceRecord:
        """The record of a `traces` row."""
        return cls(
            id=row.id,
            owner_id=row.owner_id,
            name=row.name,
            format=row.format,
            size=row.size,
            created_at=row.created_at,
            blob_key=row.blob_key,
            active_profile=row.active_profile,
            profiles=list(row.profiles),
        )


@dataclass(frozen=True)
class DeletedTrace:
    """A trace just deleted, and the keys of every blob that belonged to it."""

    trace: TraceRecord
    blob_keys: list[str]
    """The uploaded file's key and the keys of the snapshots drawn of the trace."""


@dataclass(frozen=True)
class TracePage:
    """One page of a user's traces, newest first, and how many there are in all."""

    traces: list[TraceRecord]
    total: int


@dataclass(frozen=True)
class ApiTokenRecord:
    """A personal API token as its owner sees it: never its secret, which is not stored."""

    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, row: ApiToken) -> ApiTokenRecord:
        """The record of an `api_tokens` row."""
        return cls(row.id, row.name, row.created_at, row.last_used_at)


@dataclass(frozen=True)
class ShareLinkRecord:
    """A share link of a trace as its owner sees it (its token is not stored)."""

    id: str
    trace_id: str
    created_at: datetime

    @classmethod
    def of(cls, row: ShareLink) -> ShareLinkRecord:
        """The record of a `share_links` row."""
        return cls(row.id, row.trace_id, row.created_at)


class Repository:
    """Rows of one user: every method is scoped to `user_id`."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], user_id: str) -> None:
        self.sessions = sessions
        self.user_id = user_id

    async def add_trace(
        self,
        *,
        trace_id: str,
        name: str,
        format: str,
        size: int,
        blob_key: str,
        active_profile: int,
        profiles: list[dict[str, Any]],
    ) -> TraceRecord:
        """Store a new trace owned by this user."""
        row = Trace(
            id=trace_id,
            owner_id=self.user_id,
            name=name,
            format=format,
            size=size,
            created_at=datetime.now(UTC),
            blob_key=blob_key,
            active_profile=active_profile,
            profiles=profiles,
        )
        async with self.sessions() as session, session.begin():
            session.add(row)
        return TraceRecord.of(row)

    async def get_trace(self, trace_id: str) -> TraceRecord:
        """This user's trace `trace_id`, or NotFound."""
        async with self.sessions() as session:
            row = await session.scalar(
                select(Trace).where(Trace.id == trace_id, Trace.owner_id == self.user_id)
            )
        if row is None:
            raise NotFound(f"no trace {trace_id!r}")
        return TraceRecord.of(row)

    async def list_traces(self, limit: int, offset: int = 0) -> TracePage:
        """A page of this user's traces, newest first."""
        async with self.sessions() as session:
            rows = await session.scalars(
                select(Trace)
                .where(Trace.owner_id == self.user_id)
                .order_by(Trace.created_at.desc(), Trace.id.desc())
                .limit(limit)
                .offset(offset)
            )
            records = [TraceRecord.of(row) for row in rows]
            total = await session.scalar(
                select(func.count()).select_from(Trace).where(Trace.owner_id == self.user_id)
            )
        return TracePage(records, int(total or 0))

    async def delete_trace(self, trace_id: str) -> DeletedTrace:
        """Remove this user's trace `trace_id` with every row about it, or NotFound.

        Its chat sessions, snapshots, analyses and share links go with it
        (cascading); the answer names the blobs to delete: the trace's file
        and its snapshots' PNGs.
        """
        async with self.sessions() as session, session.begin():
            row = await session.scalar(
                select(Trace).where(Trace.id == trace_id, Trace.owner_id == self.user_id)
            )
            if row is None:
                raise NotFound(f"no trace {trace_id!r}")
            record = TraceRecord.of(row)
            snapshots = await session.scalars(
                select(Snapshot.blob_key).where(
                    Snapshot.trace_id == trace_id, Snapshot.owner_id == self.user_id
                )
            )
            keys = [record.blob_key, *snapshots]
            await session.execute(
                delete(Trace).where(Trace.id == trace_id, Trace.owner_id == self.user_id)
            )
        return DeletedTrace(record, keys)

    # --- API tokens and share links (secrets arrive hashed) -----------------

    async def add_api_token(self, name: str, token_hash: str) -> ApiTokenRecord:
        """Store a new API token of this user, by the hash of its secret."""
        row = ApiToken(
            id=new_id(),
            owner_id=self.user_id,
            name=name,
            token_hash=token_hash,
            created_at=datetime.now(UTC),
        )
        await self._insert(row)
        return ApiTokenRecord.of(row)

    async def list_api_tokens(self) -> list[ApiTokenRecord]:
        """This user's API tokens, oldest first (their secrets are not stored)."""
        async with self.sessions() as session:
            rows = await session.scalars(
                select(ApiToken)
                .where(ApiToken.owner_id == self.user_id)
                .order_by(ApiToken.created_at, ApiToken.id)
            )
            return [ApiTokenRecord.of(row) for row in rows]

    async def revoke_api_token(self, token_id: str) -> None:
        """Delete this user's API token `token_id`, or NotFound."""
        await self._delete_owned(
            delete(ApiToken).where(ApiToken.id == token_id, ApiToken.owner_id == self.user_id),
            f"no API token {token_id!r}",
        )

    async def add_share_link(self, trace_id: str, token_hash: str) -> ShareLinkRecord:
        """Share this user's trace `trace_id` (NotFound otherwise) by the hash of a token."""
        await self.get_trace(trace_id)
        row = ShareLink(
            id=new_id(),
            owner_id=self.user_id,
            trace_id=trace_id,
            token_hash=token_hash,
            created_at=datetime.now(UTC),
        )
        await self._insert(row)
        return ShareLinkRecord.of(row)

    async def list_share_links(self, trace_id: str) -> list[ShareLinkRecord]:
        """The share links of this user's trace `trace_id`, oldest first, or NotFound."""
        await self.get_trace(trace_id)
        async with self.sessions() as session:
            rows = await session.scalars(
                select(ShareLink)
                .where(ShareLink.trace_id == trace_id, ShareLink.owner_id == self.user_id)
                .order_by(ShareLink.created_at, ShareLink.id)
            )
            return [ShareLinkRecord.of(row) for row in rows]

    async def revoke_share_link(self, trace_id: str, share_id: str) -> None:
        """Delete the share link `share_id` of this user's trace `trace_id`, or NotFound."""
        await self._delete_owned(
            delete(ShareLink).where(
                ShareLink.id == share_id,
                ShareLink.trace_id == trace_id,
                ShareLink.owner_id == self.user_id,
            ),
            f"no share link {share_id!r} of trace {trace_id!r}",
        )

    async def _insert(self, row: ApiToken | ShareLink) -> None:
        async with self.sessions() as session, session.begin():
            session.add(row)

    async def _delete_owned(self, statement: Delete, missing: str) -> None:
        async with self.sessions() as session, session.begin():
            result = await session.execute(statement)
        if not result.rowcount:  # type: ignore[attr-defined]
            raise NotFound(missing)


# --- accounts (not scoped: they decide who the caller is) --------------------


async def ensure_user(sessions: async_sessionmaker[AsyncSession], name: str) -> str:
    """The id of the user called `name`, created when there is none."""
    async with sessions() as session:
        found = await session.scalar(select(User.id).where(User.name == name))
        if found is not None:
            return found
    user_id = new_id()
    try:
        async with sessions() as session, session.begin():
            session.add(User(id=user_id, name=name, created_at=datetime.now(UTC)))
    except IntegrityError:
        # Another process created it at the same moment: use theirs.
        async with sessions() as session:
            found = await session.scalar(select(User.id).where(User.name == name))
        if found is None:
            raise
        return found
    return user_id

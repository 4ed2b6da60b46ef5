"""Rows of chats, snapshots and analyses, every query scoped to one owner.

`ChatRepository` is the chat-side sibling of `repository.Repository`: made
for one user id, it finds only that user's sessions, snapshots and
analyses (another user's id is `NotFound`, answered 404). Messages and
events are reached through a session this user owns.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from flamesight.server.repository import NotFound, TraceRecord, new_id
from flamesight.server.tables import (
    Analysis,
    ChatEvent,
    ChatMessage,
    ChatSession,
    OwnedTraceRow,
    Snapshot,
    Trace,
)

OwnedRow = TypeVar("OwnedRow", bound=OwnedTraceRow)


@dataclass(frozen=True)
class SessionRecord:
    """A chat session as the rest of the server sees it."""

    id: str
    owner_id: str
    trace_id: str
    created_at: datetime


@dataclass(frozen=True)
class TurnInputs:
    """What a chat turn starts from (`ChatRepository.load_turn`)."""

    session: SessionRecord
    trace: TraceRecord
    messages: list[dict[str, Any]]
    """The stored history, oldest first, as `history_to_dicts` wrote it."""


@dataclass(frozen=True)
class SnapshotRecord:
    """A stored snapshot: where its PNG is and what it belongs to."""

    id: str
    owner_id: str
    trace_id: str
    session_id: str | None
    name: str
    blob_key: str
    size: int
    created_at: datetime


@dataclass(frozen=True)
class AnalysisRecord:
    """A stored one-shot analysis: its data and its Markdown report."""

    id: str
    trace_id: str
    created_at: datetime
    data: dict[str, Any]
    report: str


def snapshot_blob_key(owner_id: str, snapshot_id: str) -> str:
    """The key of a snapshot PNG: under its owner's id."""
    return f"{owner_id}/snapshots/{snapshot_id}.png"


class ChatRepository:
    """Chats, snapshots and analyses of one user: every method is scoped to `user_id`."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], user_id: str) -> None:
        self.sessions = sessions
        self.user_id = user_id

    async def _owned(self, table: type[OwnedRow], row_id: str, what: str) -> OwnedRow:
        """This user's row `row_id` of `table`, or NotFound."""
        async with self.sessions() as session:
            return await self._owned_in(session, table, row_id, what)

    async def _owned_in(
        self, session: AsyncSession, table: type[OwnedRow], row_id: str, what: str
    ) -> OwnedRow:
        """`_owned` in an open database session (so a check and what it guards share one
        transaction, not a pool checkout each)."""
        row = await session.scalar(
            select(table).where(table.id == row_id, table.owner_id == self.user_id)
        )
        if row is None:
            raise NotFound(f"no {what} {row_id!r}")
        return row

    # sessions

    async def create_session(self, trace_id: str) -> SessionRecord:
        """A new chat session about `trace_id` (which the caller has checked is theirs)."""
        row = ChatSession(
            id=new_id(), owner_id=self.user_id, trace_id=trace_id, created_at=datetime.now(UTC)
        )
        async with self.sessions() as session, session.begin():
            session.add(row)
        return _session_record(row)

    async def latest_session(self, trace_id: str) -> SessionRecord | None:
        """This user's newest chat session about `trace_id`, if there is one."""
        async with self.sessions() as session:
            row = await session.scalar(
                select(ChatSession)
                .where(ChatSession.trace_id == trace_id, ChatSession.owner_id == self.user_id)
                .order_by(ChatSession.created_at.desc(), ChatSession.id.desc())
                .limit(1)
            )
        return None if row is None else _session_record(row)

    async def get_session(self, session_id: str) -> SessionRecord:
        """This user's chat session `session_id`, or NotFound."""
        return _session_record(await self._owned(ChatSession, session_id, "chat session"))

    # messages

    async def add_messages(self, session_id: str, messages: list[dict[str, Any]]) -> None:
        """Append messages (as `history_to_dicts` writes them) to an owned session's history."""
        if not messages:
            return
        async with self.sessions() as session, session.begin():
            await self._owned_in(session, ChatSession, session_id, "chat session")
            await _add_messages_in(session, session_id, messages)

    async def add_question(self, session_id: str, messages: list[dict[str, Any]]) -> TraceRecord:
        """`add_messages` for a turn's question; the session's trace (this user's too), read
        in the same transaction (queueing the turn needs it)."""
        async with self.sessions() as session, session.begin():
            _chat, trace = await self._session_and_trace_in(session, session_id)
            await _add_messages_in(session, session_id, messages)
        return trace

    async def messages(self, session_id: str) -> list[dict[str, Any]]:
        """The history of an owned session, oldest first."""
        async with self.sessions() as session:
            await self._owned_in(session, ChatSession, session_id, "chat session")
            return await _messages_in(session, session_id)

    async def load_turn(self, session_id: str) -> TurnInputs:
        """What a turn of an owned session starts from: the session, its trace and its
        history, read in one transaction."""
        async with self.sessions() as session:
            chat, trace = await self._session_and_trace_in(session, session_id)
            return TurnInputs(chat, trace, await _messages_in(session, chat.id))

    async def _session_and_trace_in(
        self, session: AsyncSession, session_id: str
    ) -> tuple[SessionRecord, TraceRecord]:
        found = (
            await session.execute(
                select(ChatSession, Trace)
                .join(Trace, Trace.id == ChatSession.trace_id)
                .where(
                    ChatSession.id == session_id,
                    ChatSession.owner_id == self.user_id,
                    Trace.owner_id == self.user_id,
                )
            )
        ).first()
        if found is None:
            raise NotFound(f"no chat session {session_id!r}")
        chat, trace = found
        return _session_record(chat), TraceRecord.of(trace)

    # events

    async def last_seq(self, session_id: str) -> int:
        """The seq of an owned session's newest event (0 when there is none)."""
        async with self.sessions() as session:
            await self._owned_in(session, ChatSession, session_id, "chat session")
            return await last_stored_seq(session, session_id)

    async def last_event(self, session_id: str) -> dict[str, Any] | None:
        """An owned session's newest stored event (None when there is none)."""
        async with self.sessions() as session:
            await self._owned_in(session, ChatSession, session_id, "chat session")
            return await session.scalar(
                select(ChatEvent.data)
                .where(ChatEvent.session_id == session_id)
                .order_by(ChatEvent.seq.desc())
                .limit(1)
            )

    async def add_event(self, session_id: str, seq: int, event: dict[str, Any]) -> None:
        """Keep event number `seq` of a session (whose ownership the caller checked)."""
        await self.add_events(session_id, [{**event, "seq": seq}])

    async def add_events(self, session_id: str, events: list[dict[str, Any]]) -> None:
        """Keep numbered events (each has its `seq`) of a session, in one transaction."""
        await store_events(self.sessions, [(session_id, events)])

    async def events_after(self, session_id: str, after_seq: int) -> list[dict[str, Any]]:
        """An owned session's events numbered above `after_seq`, in order."""
        async with self.sessions() as session:
            await self._owned_in(session, ChatSession, session_id, "chat session")
            return await stored_events_after(session, session_id, after_seq)

    # snapshots

    async def add_snapshot(
        self, snapshot_id: str, trace_id: str, session_id: str | None, name: str, size: int
    ) -> SnapshotRecord:
        """Record a snapshot whose PNG is stored at `snapshot_blob_key`."""
        row = Snapshot(
            id=snapshot_id,
            owner_id=self.user_id,
            trace_id=trace_id,
            session_id=session_id,
            name=name[:200],
            blob_key=snapshot_blob_key(self.user_id, snapshot_id),
            size=size,
            created_at=datetime.now(UTC),
        )
        async with self.sessions() as session, session.begin():
            session.add(row)
        return _snapshot_record(row)

    async def get_snapshot(self, snapshot_id: str) -> SnapshotRecord:
        """This user's snapshot `snapshot_id`, or NotFound."""
        return _snapshot_record(await self._owned(Snapshot, snapshot_id, "snapshot"))

    # analyses

    async def add_analysis(self, trace_id: str, data: dict[str, Any], report: str) -> str:
        """Keep a one-shot analysis of `trace_id`; its id."""
        analysis_id = new_id()
        async with self.sessions() as session, session.begin():
            session.add(
                Analysis(
                    id=analysis_id,
                    owner_id=self.user_id,
                    trace_id=trace_id,
                    created_at=datetime.now(UTC),
                    data=data,
                    report=report,
                )
            )
        return analysis_id

    async def analyses(self, trace_id: str) -> list[AnalysisRecord]:
        """This user's analyses of `trace_id`, newest first."""
        async with self.sessions() as session:
            rows = await session.scalars(
                select(Analysis)
                .where(Analysis.trace_id == trace_id, Analysis.owner_id == self.user_id)
                .order_by(Analysis.created_at.desc(), Analysis.id.desc())
            )
            return [_analysis_record(row) for row in rows]

    async def get_analysis(self, analysis_id: str) -> AnalysisRecord:
        """This user's analysis `analysis_id`, or NotFound."""
        return _analysis_record(await self._owned(Analysis, analysis_id, "analysis"))


async def last_stored_seq(session: AsyncSession, session_id: str) -> int:
    """The seq of a session's newest stored event, 0 when there is none (its owner the
    caller checked)."""
    found = await session.scalar(
        select(func.max(ChatEvent.seq)).where(ChatEvent.session_id == session_id)
    )
    return int(found or 0)


async def stored_events_after(
    session: AsyncSession, session_id: str, after_seq: int
) -> list[dict[str, Any]]:
    """A session's stored events numbered above `after_seq`, in order (its owner the caller
    checked)."""
    rows = await session.scalars(
        select(ChatEvent.data)
        .where(ChatEvent.session_id == session_id, ChatEvent.seq > after_seq)
        .order_by(ChatEvent.seq)
    )
    return list(rows)


async def store_events(
    sessions: async_sessionmaker[AsyncSession], events: list[tuple[str, list[dict[str, Any]]]]
) -> None:
    """Keep numbered events of several sessions (whose owners the callers checked), as
    (session id, events) pairs, in one transaction: one INSERT of plain rows."""
    if rows := _event_rows(events):
        async with sessions() as session, session.begin():
            # The table's plain INSERT (executemany), not the ORM's bulk insert, which
            # cost a worker about 90 µs more per event.
            await session.execute(insert(ChatEvent.__table__), rows)


class EventWriter:
    """`store_events` for a process that publishes a batch every few milliseconds (fleet
    mode), in the background: `store_later` queues a batch and returns at once.

    Its task writes what was queued meanwhile as one statement (under load,
    several batches at once) on a connection it keeps (nothing for a
    checkout). On PostgreSQL that is one round trip (the rows in one
    pipelined statement, an implicit transaction: all stored or none) that
    commits without waiting for the disk (``synchronous_commit`` off, for
    this connection only): waiting for each commit's flush stalled the
    writes with the disk (hundreds of milliseconds at times). What this
    risks is the last fraction of a second of events if PostgreSQL itself
    crashes; those events are in the Redis streams too, and the chat
    history (the messages a turn commits) is written with ordinary commits.
    The connection is never handed back to the pool. A connection found
    dead (the database restarted) is dropped and the rows written once more
    on a new one; any other failure is that of every batch in the write.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._connection: AsyncConnection | None = None
        self._queue: asyncio.Queue[tuple[list[dict[str, Any]], asyncio.Future[None]]]
        self._queue = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def store_later(self, events: list[tuple[str, list[dict[str, Any]]]]) -> asyncio.Future[None]:
        """Queue the events to be kept, as `store_events` does; done once they are (batches
        are stored in the order they were queued; with no events, once those before are)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        done = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((_event_rows(events), done))
        return done

    async def store(self, events: list[tuple[str, list[dict[str, Any]]]]) -> None:
        """Keep the events, as `store_events` does (`store_later`, waited for)."""
        await self.store_later(events)

    async def close(self) -> None:
        """Stop writing, give the connection back (at shutdown)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while not self._queue.empty():
            self._queue.get_nowait()[1].cancel()
        await self._drop()

    async def _run(self) -> None:
        while True:
            batches = [await self._queue.get()]
            while not self._queue.empty():
                batches.append(self._queue.get_nowait())
            rows = [row for batch_rows, _ in batches for row in batch_rows]
            try:
                if rows:
                    await self._write(rows)
            except Exception as error:  # every batch of the write failed with it
                for _, done in batches:
                    if not done.done():
                        done.set_exception(error)
            else:
                for _, done in batches:
                    if not done.done():
                        done.set_result(None)

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        for retry in (False, True):
            try:
                if self._connection is None:
                    self._connection = await self._connect()
                async with self._connection.begin():
                    await self._connection.execute(insert(ChatEvent.__table__), rows)
                return
            except DBAPIError as error:
                await self._drop()
                if retry or not error.connection_invalidated:
                    raise

    async def _connect(self) -> AsyncConnection:
        connection = await self.engine.connect()
        if connection.dialect.name == "postgresql":
            # No BEGIN and COMMIT round trips: asyncpg sends a batch's rows as one
            # pipelined statement, which PostgreSQL runs as one implicit transaction.
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.exec_driver_sql("SET synchronous_commit TO off")
            await connection.commit()
        return connection

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()  # closed, not pooled: its setting stays with it
                await connection.close()


def _event_rows(events: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {"session_id": session_id, "seq": event["seq"], "data": event, "created_at": now}
        for session_id, session_events in events
        for event in session_events
    ]


async def _add_messages_in(
    session: AsyncSession, session_id: str, messages: list[dict[str, Any]]
) -> None:
    # The table's plain INSERT, in order (ids ascending): the ORM's unit of work cost
    # more than the rest of the transaction.
    now = datetime.now(UTC)
    rows = [
        {
            "session_id": session_id,
            "role": str(message.get("type", "unknown"))[:20],
            "data": message,
            "created_at": now,
        }
        for message in messages
    ]
    await session.execute(insert(ChatMessage.__table__), rows)


async def _messages_in(session: AsyncSession, session_id: str) -> list[dict[str, Any]]:
    rows = await session.scalars(
        select(ChatMessage.data)
        .where(ChatMessage.session_id == session_id)
        .order_by(ChatMessage.id)
    )
    return list(rows)


def _session_record(row: ChatSession) -> SessionRecord:
    return SessionRecord(row.id, row.owner_id, row.trace_id, row.created_at)


def _snapshot_record(row: Snapshot) -> SnapshotRecord:
    return SnapshotRecord(
        row.id,
        row.owner_id,
        row.trace_id,
        row.session_id,
        row.name,
        row.blob_key,
        row.size,
        row.created_at,
    )


def _analysis_record(row: Analysis) -> AnalysisRecord:
    return AnalysisRecord(row.id, row.trace_id, row.created_at, dict(row.data), row.report)

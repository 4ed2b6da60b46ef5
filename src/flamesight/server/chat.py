"""Chat turns as jobs, their events on a bus: the embedded (one process) implementations.

The WebSocket handler never waits on a model. It stores the user's
message, enqueues a `ChatTurnJob` on the `JobQueue` and relays what the
`EventBus` carries for its session. Both are small interfaces so fleet mode
(arq workers, Redis Streams) can replace the embedded ones:

- `InProcessJobQueue` runs each job as an asyncio task. The turn runs on
  the event loop too (`async for` over the agent's events: the model's
  stream is read without a thread, tools run in worker threads), so a
  process runs as many turns at once as its queue gives it. Events queue
  without waiting for the store (`EventPublisher`, one per process): what
  all turns queued while the previous batch was being published is
  published as one batch (`EventBus.publish_batch`), each session's runs of
  text pieces in it joined into one ``model_chunk_append`` (the same text in
  fewer events: under load batches grow and the cost per event shrinks,
  without load nothing waits). A turn's last event goes out after the rest.
- `StoredEventBus` numbers each session's events (`seq` 1, 2, 3, ...),
  stores them in `chat_events` (a transaction per session's batch, so `resume`
  works after a restart too) and only then hands them to the session's
  subscribers in memory.

A turn loads the trace (from the profile cache; the agent's system message,
a budgeted summary of the profile, is built once and kept beside it in the
cache, `ProfileCache.derived`), the stored history and
the session's endpoint (credentials the client gave in `start_analysis`,
held in memory by `ChatService.endpoints` for that session only, or in
fleet mode sealed in Redis by an `EndpointVault` until the socket that gave
them closes; else the server's own settings), runs
`flamesight.agent.ChatAgent`, and stores the messages the turn committed (tool calls and results included) before its
last event (`model_response_end` or `error`) goes out, so the next prompt
always sees them. A failing model ends the turn with an `error` event; the
user's message, stored before the job started, stays.

A turn whose events stop without its last event (the process running it
stopped: a restart, or in fleet mode a worker and the web processes
watching it) would keep a client waiting, and the web app rebuilds a
conversation from its events. So when a socket binds to a session
(`ChatService.watch_turn`), a turn its events leave open that no process
runs (the turn gate is free) gets an `error` event (`TURN_CUT_OFF`), under
the gate, so that it is ended once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import httpx2
from langchain_core.messages import HumanMessage

from flamesight.agent import (
    ChatAgent,
    ChatTurn,
    LoadedProfiles,
    build_system_message,
    history_from_dicts,
    history_to_dicts,
)
from flamesight.agent.events import ErrorEvent, Event, ModelChunkAppend, ModelResponseEnd
from flamesight.llm import Failure, LLMError, scrub
from flamesight.llm.endpoint import turn_http_client
from flamesight.server.chat_store import ChatRepository, SessionRecord, snapshot_blob_key
from flamesight.server.model_endpoints import (
    UNSEALABLE,
    ClientEndpoint,
    ModelEndpoint,
    resolve_endpoint,
)
from flamesight.server.repository import TraceRecord, new_id
from flamesight.server.uploads import open_trace

if TYPE_CHECKING:
    from flamesight.model import ProfileGroup
    from flamesight.server.analyze_routes import AnalysisQueue
    from flamesight.server.state import ServerState

log = logging.getLogger(__name__)

EXPIRED_ENDPOINT = (
    "the model endpoint this chat named is no longer kept (it expires when unused for long, "
    "and when the socket that gave it closes); send start_analysis with it again"
)
TURN_CUT_OFF = (
    "the answer to this question was cut off: the process answering it stopped before it "
    "finished (a restart?); the question is kept, ask again"
)
TURN_ENDS = frozenset({ModelResponseEnd.type, ErrorEvent.type})
"""The event types that end a turn."""
SETTLE_S = 1.0
"""How long `ChatService.end_open_turn` holds the turn gate before it looks at a turn's last
event again: a turn frees the gate just before its last event goes out."""
TEXT = ModelChunkAppend.type
"""The event type of a piece of model text."""
BATCH_EVERY_S = 0.010
"""The shortest time from a batch of events of several sessions to the next batch: under
load, events wait up to this long to share a batch (in fleet mode one database
transaction and two Redis calls for all of them). After a batch of one session's events
nothing waits, so a single chat is not slowed down."""


@dataclass(frozen=True)
class ChatTurnJob:
    """One turn to run: whose session, which one. Plain data, so a queue can carry it."""

    owner_id: str
    session_id: str
    turn_id: str = ""
    """Which turn of the session (fleet mode checks a worker still owns it)."""
    sealed_endpoint: bool = False
    """The turn uses the endpoint the client gave, sealed in the `EndpointVault` (fleet mode)."""


class EndpointVault(Protocol):
    """Client-given chat endpoints sealed where workers can open them (fleet mode)."""

    async def seal(self, session_id: str, chosen: ClientEndpoint) -> bytes:
        """Keep the session's endpoint sealed (for a while); the sealed value."""
        ...

    async def refresh(self, session_id: str) -> bool:
        """Keep the session's sealed endpoint longer; False when it is gone."""
        ...

    async def forget(self, session_id: str, sealed: bytes) -> None:
        """Drop the session's sealed endpoint if it is still `sealed`."""
        ...

    async def open(self, session_id: str) -> ModelEndpoint:
        """The session's endpoint, opened and checked (`LLMError` when gone or unreadable)."""
        ...


class TurnGate(Protocol):
    """One turn per session at a time: claimed when a question comes, released when answered."""

    async def claim(self, job: ChatTurnJob) -> bool:
        """Take the session for `job`; False when a turn of the session is still running."""
        ...

    async def release(self, job: ChatTurnJob) -> None:
        """Let the session's next turn start (only if `job` still holds it)."""
        ...


class LocalTurnGate:
    """The sessions with a running turn, in this process's memory (embedded mode)."""

    def __init__(self) -> None:
        self.running: set[str] = set()

    async def claim(self, job: ChatTurnJob) -> bool:
        """Take the session unless it is running a turn."""
        if job.session_id in self.running:
            return False
        self.running.add(job.session_id)
        return True

    async def release(self, job: ChatTurnJob) -> None:
        """Free the session."""
        self.running.discard(job.session_id)


class JobQueue(Protocol):
    """Where chat turns wait to run."""

    async def enqueue(self, job: ChatTurnJob, session: SessionRecord, trace: TraceRecord) -> None:
        """Queue `job` (of `session`, about `trace`: the caller has read both) and return
        at once."""
        ...

    async def watch_turn(self, session: SessionRecord) -> None:
        """A socket was bound to `session` here: make sure that its running turn, if any,
        is watched, so that the socket hears of it if it is lost."""
        ...

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Hold a background task of this process until it finishes (cancelled at close)."""
        ...

    async def close(self) -> None:
        """Stop running jobs (at shutdown)."""
        ...


class EventBus(Protocol):
    """Numbered, kept events of chat sessions, and live delivery to subscribers."""

    async def publish(self, session: SessionRecord, event: dict[str, Any]) -> dict[str, Any]:
        """Give `event` the session's next `seq`, keep it, deliver it; the event with its seq."""
        ...

    async def publish_many(
        self, session: SessionRecord, events: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """`publish` for several events in order (kept before any is delivered)."""
        ...

    async def publish_batch(
        self, batch: list[tuple[SessionRecord, list[dict[str, Any]]]]
    ) -> Published:
        """Number and deliver the events of several sessions at once. Returns once they
        are delivered: each session's events with seqs, and a future done once they are
        kept too (at once where keeping them comes first)."""
        ...

    def subscribe(self, session_id: str) -> contextlib.AbstractAsyncContextManager[EventQueue]:
        """Receive the session's events published from now on, while the block runs."""
        ...

    async def replay(self, session: SessionRecord, after_seq: int) -> list[dict[str, Any]]:
        """The session's kept events numbered above `after_seq`, in order."""
        ...

    async def last_event(self, session: SessionRecord) -> dict[str, Any] | None:
        """The session's newest published event (None when it has none)."""
        ...

    async def close(self) -> None:
        """Let go of the connections the bus keeps (at shutdown, once nothing publishes)."""
        ...


EventQueue = asyncio.Queue[dict[str, Any]]
Published = tuple[list[list[dict[str, Any]]], asyncio.Future[None]]
"""What `EventBus.publish_batch` gives: the events with seqs, and when they are kept."""


class BackgroundTasks:
    """Tasks held until they finish (the event loop keeps only weak references), and
    cancelled together at close."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Hold a reference to `task` until it finishes (and cancel it at close)."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        """Cancel the tasks still running and wait for them."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class InProcessJobQueue(BackgroundTasks):
    """Runs each job at once as an asyncio task of this process (embedded mode)."""

    def __init__(self, run: Callable[[ChatTurnJob], Awaitable[None]]) -> None:
        super().__init__()
        self.run = run

    async def enqueue(self, job: ChatTurnJob, session: SessionRecord, trace: TraceRecord) -> None:
        """Start the job's task; return without waiting for it."""
        self.keep(asyncio.create_task(self.run(job)))

    async def watch_turn(self, session: SessionRecord) -> None:
        """Nothing to do: the session's turns run in this process, which ends each itself."""


class StoredEventBus:
    """Events kept in the database, delivered in memory (embedded mode)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._last_seq: dict[str, int] = {}
        self._subscribers: defaultdict[str, set[EventQueue]] = defaultdict(set)

    def _store(self, session: SessionRecord) -> ChatRepository:
        return ChatRepository(self.state.sessions, session.owner_id)

    async def publish(self, session: SessionRecord, event: dict[str, Any]) -> dict[str, Any]:
        """Number, store and deliver `event`, one at a time per session."""
        return (await self.publish_many(session, [event]))[0]

    async def publish_many(
        self, session: SessionRecord, events: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Number `events`, store them in one transaction, then deliver them."""
        async with self._locks[session.id]:
            store = self._store(session)
            last = self._last_seq.get(session.id)
            if last is None:
                last = await store.last_seq(session.id)
            numbered = [{**event, "seq": last + n} for n, event in enumerate(events, 1)]
            await store.add_events(session.id, numbered)
            self._last_seq[session.id] = last + len(numbered)
            for queue in self._subscribers.get(session.id, ()):
                for event in numbered:
                    queue.put_nowait(event)
        return numbered

    async def publish_batch(
        self, batch: list[tuple[SessionRecord, list[dict[str, Any]]]]
    ) -> Published:
        """`publish_many` for each session in turn (kept before they are delivered)."""
        numbered = [await self.publish_many(session, events) for session, events in batch]
        kept = asyncio.get_running_loop().create_future()
        kept.set_result(None)
        return numbered, kept

    @contextlib.asynccontextmanager
    async def subscribe(self, session_id: str) -> AsyncIterator[EventQueue]:
        """A queue receiving the session's events until the block ends."""
        queue: EventQueue = asyncio.Queue()
        self._subscribers[session_id].add(queue)
        try:
            yield queue
        finally:
            self._subscribers[session_id].discard(queue)
            if not self._subscribers[session_id]:
                del self._subscribers[session_id]

    async def replay(self, session: SessionRecord, after_seq: int) -> list[dict[str, Any]]:
        """The stored events after `after_seq` (waits for a publish in progress)."""
        async with self._locks[session.id]:
            return await self._store(session).events_after(session.id, after_seq)

    async def last_event(self, session: SessionRecord) -> dict[str, Any] | None:
        """The newest stored event (waits for a publish in progress)."""
        async with self._locks[session.id]:
            return await self._store(session).last_event(session.id)

    async def close(self) -> None:
        """Nothing to let go of: the database connections are the pool's."""


def event_document(event: Event) -> dict[str, Any]:
    """An agent event as the WebSocket carries it (`tool_end` names its image `imageUrl`)."""
    data = event.to_dict()
    if "image" in data:
        data["imageUrl"] = data.pop("image")
    return data


class StoredSnapshots:
    """The agent's snapshot sink: PNGs to blob storage and the `snapshots` table, per owner.

    `save` is called from the thread that runs the tool and waits for the event loop to store.
    """

    def __init__(self, state: ServerState, session: SessionRecord) -> None:
        self.state = state
        self.session = session
        self._loop = anyio.lowlevel.current_token()

    def save(self, png: bytes, name: str) -> str:
        """Store `png`; its URL (`/api/snapshots/{id}`)."""
        return anyio.from_thread.run(self.store, png, name, token=self._loop)

    async def store(self, png: bytes, name: str) -> str:
        """Write the blob, then its row; the snapshot's URL."""
        snapshot_id = new_id()
        owner = self.session.owner_id

        async def chunks() -> AsyncIterator[bytes]:
            yield png

        await self.state.storage.write(snapshot_blob_key(owner, snapshot_id), chunks())
        await ChatRepository(self.state.sessions, owner).add_snapshot(
            snapshot_id, self.session.trace_id, self.session.id, name, len(png)
        )
        return f"/api/snapshots/{snapshot_id}"


@dataclass(frozen=True)
class _Flush:
    """A turn waiting for its session's queued events to be published."""

    session_id: str
    done: asyncio.Future[None]


class EventPublisher:
    """Publishes the events of every turn this process runs, a batch at a time.

    Turns `put` their events without waiting. What all of them queued while
    the previous batch was being published (and, after a batch of several
    sessions' events, at least `BATCH_EVERY_S` after it started) goes out as
    the next batch
    (`EventBus.publish_batch`: in fleet mode one Redis script for all its
    sessions, stored in the database in the background), each session's runs
    of text pieces joined into one event (`coalesced`). Without load a batch
    is an event or two and nothing waits; under load batches grow and the
    cost per event shrinks. `flush` waits until the session's events are
    delivered and kept.
    """

    def __init__(self, bus: Callable[[], EventBus]) -> None:
        self.bus = bus
        self._queue: asyncio.Queue[tuple[SessionRecord, dict[str, Any]] | _Flush] = asyncio.Queue()
        self._failed: dict[str, Exception] = {}
        self._kept: asyncio.Future[None] | None = None
        """When the last published batch is kept."""
        self._task: asyncio.Task[None] | None = None

    def put(self, session: SessionRecord, event: dict[str, Any]) -> None:
        """Queue `event` of `session` for the next batch."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        self._queue.put_nowait((session, event))

    async def flush(self, session_id: str) -> None:
        """Wait until the session's queued events are published (raise why they could not be)."""
        if self._task is None:
            return
        done = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Flush(session_id, done))
        await done

    async def close(self) -> None:
        """Stop publishing (at shutdown, once no turn runs)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            started = loop.time()
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            batch: dict[str, tuple[SessionRecord, list[dict[str, Any]]]] = {}
            flushes: list[_Flush] = []
            for item in items:
                if isinstance(item, _Flush):
                    flushes.append(item)
                else:
                    session, event = item
                    batch.setdefault(session.id, (session, []))[1].append(event)
            if batch:
                try:
                    _numbered, kept = await self.bus().publish_batch(
                        [(session, coalesced(events)) for session, events in batch.values()]
                    )
                except Exception as error:  # the turns of these sessions fail with it
                    for session_id in batch:
                        self._failed[session_id] = error
                else:
                    kept.add_done_callback(functools.partial(self._kept_or_not, list(batch)))
                    self._kept = kept
            if flushes:
                # Batches are kept in order: once this one is, so are those before.
                if self._kept is None or self._kept.done():
                    self._answer(flushes)
                else:
                    self._kept.add_done_callback(lambda _kept, f=flushes: self._answer(f))
            if len(batch) > 1:  # turns of several sessions at once: let the next batch grow
                await asyncio.sleep(started + BATCH_EVERY_S - loop.time())

    def _kept_or_not(self, session_ids: list[str], kept: asyncio.Future[None]) -> None:
        error = None if kept.cancelled() else kept.exception()
        if error is not None:  # the turns of these sessions fail with it
            for session_id in session_ids:
                self._failed[session_id] = error

    def _answer(self, flushes: list[_Flush]) -> None:
        for flush in flushes:
            error = self._failed.pop(flush.session_id, None)
            if flush.done.done():
                continue
            if error is None:
                flush.done.set_result(None)
            else:
                flush.done.set_exception(error)


class ChatService:
    """The chat side of a running server: its job queue, its event bus, the sessions' endpoints."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.bus: EventBus = StoredEventBus(state)
        self.jobs: JobQueue = InProcessJobQueue(self.run_turn)
        self.publisher = EventPublisher(lambda: self.bus)
        self.endpoints: dict[str, ModelEndpoint] = {}
        """Endpoints clients gave for their sessions: memory only, gone at restart."""
        self.turns: TurnGate = LocalTurnGate()
        self.client_endpoints_refused: str | None = None
        """Why clients may not name their own endpoint (fleet mode), or None when they may."""
        self.vault: EndpointVault | None = None
        """Fleet mode: where client endpoints wait, sealed, for the workers."""
        self.sealed: dict[str, bytes] = {}
        """The sessions whose endpoint this process sealed for an open socket, and the value."""
        self.analyses: AnalysisQueue | None = None
        """Fleet mode: where "Send to LLM" analyses run (None: in this process)."""
        self._own_endpoint: ModelEndpoint | None = None
        """The server's own endpoint, resolved at the first turn that uses it (so an OAuth
        token it fetches serves the turns after it too, until it expires)."""
        self._model_http_client: httpx2.AsyncClient | None = None
        """The HTTP client of the turns on the server's own endpoint, kept across turns so
        that they reuse its connections (made on the event loop by the first of them)."""

    async def close(self) -> None:
        """Stop the turns still running and forget every credential."""
        await self.jobs.close()
        await self.publisher.close()
        await self.bus.close()
        if self._model_http_client is not None:
            await self._model_http_client.aclose()
        self.endpoints.clear()
        self.sealed.clear()
        self._own_endpoint = None

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Keep a background task of a request (an analysis) alive until it finishes."""
        self.jobs.keep(task)

    async def remember_endpoint(
        self, session_id: str, chosen: ClientEndpoint, endpoint: ModelEndpoint
    ) -> bytes | None:
        """Use the client's endpoint for the session's turns: in memory, or sealed for the
        workers (fleet mode: the sealed value, for `forget_endpoint`)."""
        if self.vault is None:
            self.endpoints[session_id] = endpoint
            return None
        sealed = await self.vault.seal(session_id, chosen)
        self.sealed[session_id] = sealed
        return sealed

    async def forget_endpoint(self, session_id: str, sealed: bytes) -> None:
        """The socket that sealed the session's endpoint closed: drop it, unless another
        socket has given one since (fleet mode; in one process an endpoint stays in memory
        for its session until restart)."""
        if self.vault is None or self.sealed.get(session_id) != sealed:
            return
        del self.sealed[session_id]
        await self.vault.forget(session_id, sealed)

    async def endpoint(self, session_id: str, sealed: bool = False) -> ModelEndpoint:
        """The session's endpoint: the client's (`sealed`: from the vault), else the server's."""
        if sealed:
            if self.vault is None:
                raise LLMError(Failure.CONFIG, UNSEALABLE)
            return await self.vault.open(session_id)
        given = self.endpoints.get(session_id)
        if given is not None:
            return given
        if self._own_endpoint is None:
            policy = self.state.settings.url_policy
            self._own_endpoint = await anyio.to_thread.run_sync(
                resolve_endpoint, policy, ClientEndpoint()
            )
        return self._own_endpoint

    def _shared_http_client(self, endpoint: ModelEndpoint) -> httpx2.AsyncClient | None:
        """The HTTP client kept for turns on the server's own endpoint; None for an endpoint
        a client gave (its turns check every request's URL, on a client of their own)."""
        if endpoint is not self._own_endpoint:
            return None
        if self._model_http_client is None:
            self._model_http_client = turn_http_client(endpoint.settings)
        return self._model_http_client

    async def watch_turn(self, session: SessionRecord) -> None:
        """A socket was bound to `session`: its running turn, if any, is watched from this
        process too (`JobQueue.watch_turn`), and a turn its events leave open that no
        process runs any more is ended (`end_open_turn`, `TURN_CUT_OFF`)."""
        await self.jobs.watch_turn(session)
        await self.end_open_turn(session, TURN_CUT_OFF)

    async def end_open_turn(self, session: SessionRecord, message: str) -> None:
        """End the session's last turn with an `error` event saying `message` when its events
        leave it open and no turn of the session holds the turn gate.

        The gate is held meanwhile (a prompt sent then is refused as if the turn still
        ran), for `SETTLE_S` before the last event is looked at again, so of the
        processes finding one turn open, one ends it, once, and a turn that just freed
        the gate has sent its own last event.
        """
        if not _left_open(await self.bus.last_event(session)):
            return
        job = ChatTurnJob(session.owner_id, session.id, new_id())
        if not await self.turns.claim(job):
            return
        try:
            await asyncio.sleep(SETTLE_S)
            if _left_open(await self.bus.last_event(session)):
                self.publisher.put(session, {"type": ErrorEvent.type, "message": message})
                await self.publisher.flush(session.id)
        finally:
            await self.turns.release(job)

    async def start_turn(self, session: SessionRecord, prompt: str) -> str | None:
        """Store the question, announce `waiting_for_model`, enqueue the turn.

        None when it started; a message saying why not when a turn of the
        session is still running (or the endpoint the client gave has expired).
        """
        sealed = session.id in self.sealed
        if sealed and self.vault is not None and not await self.vault.refresh(session.id):
            return EXPIRED_ENDPOINT
        job = ChatTurnJob(session.owner_id, session.id, new_id(), sealed)
        if not await self.turns.claim(job):
            return "the previous question is still being answered; wait for its answer"
        try:
            store = ChatRepository(self.state.sessions, session.owner_id)
            question = history_to_dicts([HumanMessage(prompt)])
            trace = await store.add_question(session.id, question)
            self.publisher.put(session, {"type": "waiting_for_model"})
            await self.publisher.flush(session.id)
            await self.jobs.enqueue(job, session, trace)
        except BaseException:
            await self.turns.release(job)
            raise
        return None

    async def run_turn(self, job: ChatTurnJob) -> None:
        """Run one turn of the agent and publish its events (the job)."""
        store = ChatRepository(self.state.sessions, job.owner_id)
        inputs = await store.load_turn(job.session_id)
        session, trace = inputs.session, inputs.trace
        new_messages: list[dict[str, Any]] = []
        last: dict[str, Any] = {"type": ModelResponseEnd.type}
        secrets: list[Any] = []
        try:
            group = await open_trace(self.state, trace)
            endpoint = await self.endpoint(session.id, job.sealed_endpoint)
            secrets = endpoint.auth.secrets()
            stored = history_from_dicts(inputs.messages)
            agent = ChatAgent(
                LoadedProfiles(group, name=trace.name),
                endpoint.settings,
                endpoint.auth,
                snapshots=StoredSnapshots(self.state, session),
                source=trace.name,
                system_message=await self._system_message(trace.blob_key, trace.name, group),
                http_client=self._shared_http_client(endpoint),
            )
            turn = agent.run(stored[:-1], str(stored[-1].content))
            try:
                last = await self._stream(session, turn)
            finally:
                new_messages = history_to_dicts(turn.history[len(stored) :])
        except Exception as error:
            if not isinstance(error, LLMError):
                log.exception("a chat turn failed")
            last = {"type": ErrorEvent.type, "message": _failure(error, secrets)}
        finally:
            try:
                await store.add_messages(session.id, new_messages)
            finally:
                await self.turns.release(job)
        # With the other turns' events (`publisher`): turns that end together, as those
        # started together do, then cost one batch, not a publish each.
        self.publisher.put(session, last)
        await self.publisher.flush(session.id)

    async def _system_message(self, blob_key: str, name: str, group: ProfileGroup) -> str:
        """The agent's system message for a trace, built once (in a worker thread) and kept
        with the parsed profile in the cache."""
        kept = self.state.cache.derived(blob_key)
        key = ("chat system message", name)
        if key not in kept:
            profiles = LoadedProfiles(group, name=name)
            kept[key] = await anyio.to_thread.run_sync(build_system_message, profiles, name)
        return kept[key]

    async def _stream(self, session: SessionRecord, turn: ChatTurn) -> dict[str, Any]:
        """Run the turn, publishing all but its last event (`publisher`); the last.

        The turn does not wait for its events to be published, only for the
        last of them at its end, so its last event always comes after them.
        """
        last: dict[str, Any] = {"type": ModelResponseEnd.type}

        def take(event: Event) -> None:
            nonlocal last
            if isinstance(event, ErrorEvent | ModelResponseEnd):
                last = event_document(event)
            else:
                self.publisher.put(session, event_document(event))

        try:
            await turn.deliver(take)
        except BaseException:
            # What the turn queued still goes out before the error that ends it.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.publisher.flush(session.id))
            raise
        await self.publisher.flush(session.id)
        return last


def _left_open(event: dict[str, Any] | None) -> bool:
    """Whether a session whose newest event is `event` has a turn that has not ended."""
    return event is not None and event["type"] not in TURN_ENDS


def coalesced(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`events` with each run of consecutive `model_chunk_append`s joined into one (same text)."""
    joined: list[dict[str, Any]] = []
    for is_text, run in itertools.groupby(events, lambda event: event["type"] == TEXT):
        if is_text:
            joined.append({"type": TEXT, "text": "".join(event["text"] for event in run)})
        else:
            joined.extend(run)
    return joined


def _failure(error: Exception, secrets: list[Any]) -> str:
    if isinstance(error, LLMError):
        return error.message
    return scrub(f"the chat turn failed: {type(error).__name__}: {error}", secrets)

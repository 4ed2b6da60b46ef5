"""Fleet mode: chat turns on arq workers, their events on Redis Streams.

`flamesight serve --redis-url URL` and `flamesight worker --redis-url URL`
(same database and blob storage) share one Redis. `join_fleet` replaces the
embedded parts of `ChatService`:

- `RedisEventBus`: one stream per chat session
  (``flamesight:chat:{session}:events``), trimmed by length (``MAXLEN ~``)
  and age (``MINID ~``). `seq` comes from a per-session counter in Redis
  (``INCRBY`` the size of a batch), seeded from the database when Redis has
  none (a new session, a restarted Redis), so it stays monotonic across
  processes. A batch of events (what all turns of a process produced while
  the previous batch was published, `chat.EventPublisher`) is numbered by one
  script call for all its sessions, stored in ``chat_events`` in one
  transaction, then added to the streams by one script call: the database
  is the record (history, `resume` past the stream's trimmed start or after
  Redis lost it), the stream is the live channel every web process reads.
  A subscriber follows the stream with ``XREAD BLOCK`` from the entry that
  was last when it subscribed; when Redis goes away it retries, and once
  back it first catches up from the database, so nothing written is lost.
- `ArqJobQueue`: the web process enqueues ``chat_turn`` jobs (arq,
  ``max_tries=1``: a turn is never run twice) and the worker runs them.
- `RedisTurnGate`: one turn per session across processes: a key
  ``flamesight:chat:{session}:turn`` holding the turn's id, set with ``NX``
  and a time to live. A worker taking the job checks the key still holds
  its turn id, and keeps it alive (heartbeat) while it runs. The web
  process that enqueued the turn watches the key: gone (or taken by
  another turn) without the turn marked done means the worker died or no
  worker took the job in time, and the client is sent an ``error`` event.
  The user's message was stored before the job was queued, so the next
  prompt works at once.
- Client-given model endpoints are refused: their credentials live in one
  process's memory (`flamesight.llm` secrets refuse to be pickled), and a
  worker cannot be handed them safely. Turns use the server's (and the
  workers') own settings, ``FLAMESIGHT_LLM_*``.

Redis connections retry (exponential backoff, about half a minute) on
connection errors, so a restarted Redis is picked up again by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from arq.connections import ArqRedis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import select

from flamesight.agent.events import ErrorEvent
from flamesight.server.chat import ChatTurnJob, EventQueue
from flamesight.server.chat_store import ChatRepository, SessionRecord, store_events
from flamesight.server.tables import ChatEvent

if TYPE_CHECKING:
    from flamesight.server.state import ServerState

log = logging.getLogger(__name__)

QUEUE_NAME = "flamesight:turns"
"""The arq queue of chat turns."""
CHAT_TURN = "chat_turn"
"""The name of the job function the workers run."""

STREAM_MAXLEN = 10_000
"""About how many events a session's stream keeps (``MAXLEN ~``)."""
STREAM_MAX_AGE_S = 24 * 3600
"""Events older than this are trimmed from the stream (``MINID ~``); the database keeps them."""
QUEUE_WAIT_S = 60.0
"""How long a queued turn may wait for a worker before the client is told it failed."""
HEARTBEAT_TTL_S = 6.0
"""A running turn whose worker stops refreshing its key for this long has failed."""
HEARTBEAT_EVERY_S = 1.5
WATCH_EVERY_S = 1.0
WATCH_GRACE_S = 4.0
"""How long a turn's key must stay missing before the turn counts as lost (a restarted
Redis loses the key; the worker's next heartbeat puts it back)."""
DONE_TTL_S = 600
TURN_TIMEOUT_S = 1800
"""arq's time limit of a turn (the model client's own timeouts end slow requests sooner)."""
BLOCK_MS = 5000
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
"""This process's name in the log line a worker writes when it starts a turn."""

CLIENT_ENDPOINTS_REFUSED = (
    "this server runs chat turns on worker processes, which use the server's own model "
    "endpoint settings; a chat cannot name its own model URL or credentials here "
    "(leave url, model, provider and auth out)"
)
WORKER_LOST = (
    "the worker running this question stopped before answering (it was killed or lost its "
    "connection); the question is kept, ask again"
)
WORKER_STOPPED = (
    "the worker stopped this question before it was answered (it was shut down, or the turn "
    "ran past its time limit); the question is kept, ask again"
)
NO_WORKER = (
    "no worker took this question in time (are `flamesight worker` processes running?); "
    "the question is kept, ask again"
)

_NEXT_SEQ = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[1] == '' then return false end
  redis.call('SET', KEYS[1], ARGV[1])
end
local seq = redis.call('INCRBY', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return seq
"""

_NEXT_SEQS = """
local last = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then
    last[i] = -1
  else
    last[i] = redis.call('INCRBY', key, ARGV[i + 1])
    redis.call('EXPIRE', key, ARGV[1])
  end
end
return last
"""

_APPEND = """
local at = 4
for _, key in ipairs(KEYS) do
  for _ = 1, tonumber(ARGV[at]) do
    redis.call('XADD', key, 'MAXLEN', '~', ARGV[1], '*', 'seq', ARGV[at + 1], 'event', ARGV[at + 2])
    at = at + 2
  end
  at = at + 1
  redis.call('XTRIM', key, 'MINID', '~', ARGV[2])
  redis.call('EXPIRE', key, ARGV[3])
end
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
return 1
"""

_TAKE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_REFRESH = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] or (not held and redis.call('EXISTS', KEYS[2]) == 0) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


def stream_key(session_id: str) -> str:
    """The Redis stream of a session's events."""
    return f"flamesight:chat:{session_id}:events"


def seq_key(session_id: str) -> str:
    """The counter of a session's last seq."""
    return f"flamesight:chat:{session_id}:seq"


def turn_key(session_id: str) -> str:
    """Which turn holds the session (its id), while one runs."""
    return f"flamesight:chat:{session_id}:turn"


def done_key(turn_id: str) -> str:
    """Set when a turn has finished (answered or failed), for a while."""
    return f"flamesight:turn:{turn_id}:done"


def connect_redis(url: str) -> ArqRedis:
    """A Redis client (arq's, so it enqueues too) that retries through a restart."""
    return ArqRedis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=40),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
        health_check_interval=10,
        socket_connect_timeout=5,
    )


class RedisEventBus:
    """Events numbered in Redis, stored in the database, delivered through a stream per session."""

    def __init__(self, state: ServerState, redis: ArqRedis) -> None:
        self.state = state
        self.redis = redis
        self._next_seq = redis.register_script(_NEXT_SEQ)
        self._next_seqs = redis.register_script(_NEXT_SEQS)
        self._append = redis.register_script(_APPEND)

    async def publish(self, session: SessionRecord, event: dict[str, Any]) -> dict[str, Any]:
        """Number `event`, store it, add it to the session's stream."""
        return (await self.publish_many(session, [event]))[0]

    async def publish_many(
        self, session: SessionRecord, events: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Number `events` (one range of seqs), store them, add them to the session's stream."""
        return (await self.publish_batch([(session, events)]))[0]

    async def publish_batch(
        self, batch: list[tuple[SessionRecord, list[dict[str, Any]]]]
    ) -> list[list[dict[str, Any]]]:
        """Events of several sessions: each session's numbered with one range of seqs (one
        script call for all), all stored in one transaction, then added to their streams
        in order (one script call)."""
        batch = [(session, events) for session, events in batch if events]
        if not batch:
            return []
        ttl = str(STREAM_MAX_AGE_S)
        keys = [seq_key(session.id) for session, _ in batch]
        lasts = await self._next_seqs(keys=keys, args=[ttl, *(len(e) for _, e in batch)])
        numbered: list[list[dict[str, Any]]] = []
        for (session, events), key, last in zip(batch, keys, lasts, strict=True):
            if last < 0:  # no counter in Redis: seed it from the database
                stored = await ChatRepository(self.state.sessions, session.owner_id).last_seq(
                    session.id
                )
                last = await self._next_seq(keys=[key], args=[str(stored), ttl, len(events)])
            first = int(last) - len(events) + 1
            numbered.append([{**event, "seq": first + n} for n, event in enumerate(events)])
        await store_events(
            self.state.sessions,
            [(session.id, events) for (session, _), events in zip(batch, numbered, strict=True)],
        )
        min_id = max(0, int(time.time() * 1000) - STREAM_MAX_AGE_S * 1000)
        entries: list[Any] = []
        for (_session, events), with_seqs in zip(batch, numbered, strict=True):
            entries.append(len(events))
            for event, with_seq in zip(events, with_seqs, strict=True):
                entries += [with_seq["seq"], orjson.dumps(event)]
        await self._append(
            keys=[stream_key(session.id) for session, _ in batch],
            args=[STREAM_MAXLEN, min_id, ttl, *entries],
        )
        return numbered

    @contextlib.asynccontextmanager
    async def subscribe(self, session_id: str) -> AsyncIterator[EventQueue]:
        """A queue of the session's events added to its stream from now on."""
        queue: EventQueue = asyncio.Queue()
        try:
            newest = await self.redis.xrevrange(stream_key(session_id), count=1)
            start = newest[0][0] if newest else "0-0"
        except RedisError:
            start = "0-0"
        follower = asyncio.create_task(self._follow(session_id, start, queue))
        try:
            yield queue
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def _follow(self, session_id: str, last_id: Any, queue: EventQueue) -> None:
        """Read the stream after `last_id` into `queue`, through Redis failures."""
        last_seq = 0
        broken = False
        key = stream_key(session_id)
        while True:
            try:
                if broken:
                    # Redis was away: what it lost is in the database.
                    for event in await self._stored_after(session_id, last_seq):
                        last_seq = max(last_seq, event["seq"])
                        queue.put_nowait(event)
                    broken = False
                reply = await self.redis.xread({key: last_id}, count=500, block=BLOCK_MS)
                for _stream, entries in reply or ():
                    for entry_id, fields in entries:
                        last_id = entry_id
                        event = _entry_event(fields)
                        last_seq = max(last_seq, event["seq"])
                        queue.put_nowait(event)
            except (RedisError, OSError) as error:
                if not broken:
                    log.warning("reading chat events from Redis failed, retrying: %s", error)
                broken = True
                await asyncio.sleep(0.5)

    async def _stored_after(self, session_id: str, after_seq: int) -> list[dict[str, Any]]:
        """A session's stored events after `after_seq` (its subscriber was checked to own it)."""
        async with self.state.sessions() as session:
            rows = await session.scalars(
                select(ChatEvent.data)
                .where(ChatEvent.session_id == session_id, ChatEvent.seq > after_seq)
                .order_by(ChatEvent.seq)
            )
            return list(rows)

    async def replay(self, session: SessionRecord, after_seq: int) -> list[dict[str, Any]]:
        """The events after `after_seq`: from the stream when it reaches back that far."""
        try:
            entries = await self.redis.xrange(stream_key(session.id))
        except RedisError:
            entries = []
        events = [_entry_event(fields) for _id, fields in entries]
        if events and events[0]["seq"] <= after_seq + 1:
            return [event for event in events if event["seq"] > after_seq]
        store = ChatRepository(self.state.sessions, session.owner_id)
        return await store.events_after(session.id, after_seq)


def _entry_event(fields: dict[Any, Any]) -> dict[str, Any]:
    def field(name: str) -> Any:
        return fields.get(name.encode(), fields.get(name))

    return {**orjson.loads(field("event")), "seq": int(field("seq"))}


class RedisTurnGate:
    """One turn per session across every process: a Redis key holding the turn's id."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis
        self._release = redis.register_script(_RELEASE)
        self._take = redis.register_script(_TAKE)
        self._refresh = redis.register_script(_REFRESH)

    async def claim(self, job: ChatTurnJob) -> bool:
        """Hold the session for `job` while it waits for a worker."""
        key = turn_key(job.session_id)
        return bool(await self.redis.set(key, job.turn_id, nx=True, px=int(QUEUE_WAIT_S * 1000)))

    async def release(self, job: ChatTurnJob) -> None:
        """Mark the turn done and free the session (if the turn still holds it)."""
        await self._release(
            keys=[turn_key(job.session_id), done_key(job.turn_id)], args=[job.turn_id, DONE_TTL_S]
        )

    async def take(self, job: ChatTurnJob) -> bool:
        """A worker starts the turn: True if it still holds its session (not given up)."""
        ttl = int(HEARTBEAT_TTL_S * 1000)
        return bool(await self._take(keys=[turn_key(job.session_id)], args=[job.turn_id, ttl]))

    async def refresh(self, job: ChatTurnJob) -> bool:
        """Keep holding the session for a running turn (again, after Redis lost the key)."""
        ttl = int(HEARTBEAT_TTL_S * 1000)
        keys = [turn_key(job.session_id), done_key(job.turn_id)]
        return bool(await self._refresh(keys=keys, args=[job.turn_id, ttl]))

    async def give_up(self, job: ChatTurnJob) -> None:
        """Mark a lost turn done, so its worker, if it comes back, cannot take the session."""
        await self.redis.set(done_key(job.turn_id), "lost", ex=DONE_TTL_S)

    async def heartbeat(self, job: ChatTurnJob) -> None:
        """Refresh the turn's key until cancelled (a worker runs this beside the turn)."""
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY_S)
            try:
                await self.refresh(job)
            except RedisError as error:
                log.warning("could not refresh a chat turn's heartbeat: %s", error)

    async def finished(self, job: ChatTurnJob) -> bool | None:
        """True when the turn is done, False when it failed silently, None while it runs."""
        if await self.redis.exists(done_key(job.turn_id)):
            return True
        if await self.redis.get(turn_key(job.session_id)) == job.turn_id.encode():
            return None
        return False


class ArqJobQueue:
    """Chat turns as arq jobs for `flamesight worker`s; this process watches their heartbeat."""

    def __init__(self, state: ServerState, redis: ArqRedis, gate: RedisTurnGate) -> None:
        self.state = state
        self.redis = redis
        self.gate = gate
        self.tasks: set[asyncio.Task[Any]] = set()

    async def enqueue(self, job: ChatTurnJob) -> None:
        """Queue the turn for a worker and watch it until it is done."""
        await self.redis.enqueue_job(
            CHAT_TURN,
            job.owner_id,
            job.session_id,
            job.turn_id,
            _job_id=f"flamesight:turn:{job.turn_id}",
            _queue_name=QUEUE_NAME,
        )
        self.keep(asyncio.create_task(self.watch(job)))

    async def watch(self, job: ChatTurnJob) -> None:
        """Send the client an `error` when the turn's key goes without the turn being done."""
        started = time.monotonic()
        missing_since: float | None = None
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            try:
                state = await self.gate.finished(job)
            except RedisError as error:
                log.warning("could not check a chat turn: %s", error)
                continue
            if state is True:
                return
            if state is None:
                missing_since = None
                continue
            now = time.monotonic()
            missing_since = missing_since or now
            if now - missing_since >= WATCH_GRACE_S:
                break
        await self.gate.give_up(job)
        store = ChatRepository(self.state.sessions, job.owner_id)
        session = await store.get_session(job.session_id)
        waited = time.monotonic() - started
        message = NO_WORKER if waited >= QUEUE_WAIT_S else WORKER_LOST
        await self.state.chat.bus.publish(session, {"type": ErrorEvent.type, "message": message})

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Hold `task` until it finishes (cancelled at close)."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        """Stop watching, close the Redis connections."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.redis.aclose()


async def join_fleet(state: ServerState, redis_url: str) -> None:
    """Put `state`'s chat on Redis: the arq queue, the streams, the turn keys."""
    redis = connect_redis(redis_url)
    try:
        await redis.ping()
    except BaseException:
        await redis.aclose()
        raise
    gate = RedisTurnGate(redis)
    chat = state.chat
    chat.bus = RedisEventBus(state, redis)
    chat.turns = gate
    chat.jobs = ArqJobQueue(state, redis, gate)
    chat.client_endpoints_refused = CLIENT_ENDPOINTS_REFUSED


async def run_chat_turn(ctx: dict[str, Any], owner_id: str, session_id: str, turn_id: str) -> None:
    """The worker's job: run the turn if it still holds its session, with a heartbeat."""
    state: ServerState = ctx["state"]
    gate = state.chat.turns
    assert isinstance(gate, RedisTurnGate)
    job = ChatTurnJob(owner_id, session_id, turn_id)
    if not await gate.take(job):
        log.warning("chat turn %s was given up before a worker took it", turn_id)
        return
    log.info("chat turn %s of session %s runs on worker %s", turn_id, session_id, WORKER_NAME)
    beat = asyncio.create_task(gate.heartbeat(job))
    try:
        await state.chat.run_turn(job)
    except asyncio.CancelledError:
        # A worker shutting down, or arq's time limit: the turn is marked done, say why.
        session = await ChatRepository(state.sessions, owner_id).get_session(session_id)
        await state.chat.bus.publish(session, {"type": ErrorEvent.type, "message": WORKER_STOPPED})
        raise
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat


async def run_worker(settings: Any, max_jobs: int = 10) -> None:
    """`flamesight worker`: run chat turns from the queue until SIGINT or SIGTERM."""
    from arq.worker import Worker, func

    from flamesight.server.state import start_server, stop_server

    state = await start_server(settings)
    try:
        queue = state.chat.jobs
        assert isinstance(queue, ArqJobQueue)
        worker = Worker(
            functions=[func(run_chat_turn, name=CHAT_TURN, max_tries=1, timeout=TURN_TIMEOUT_S)],
            queue_name=QUEUE_NAME,
            redis_pool=queue.redis,
            ctx={"state": state},
            max_jobs=max_jobs,
            poll_delay=0.1,
            keep_result=60,
            health_check_interval=30,
        )
        with contextlib.suppress(asyncio.CancelledError):
            await worker.async_run()
        await worker.close()
    finally:
        await stop_server(state)

"""Fleet mode: chat turns and analyses on arq workers, their events through Redis.

`flamesight serve --redis-url URL` and `flamesight worker --redis-url URL`
(same database and blob storage) share one Redis. `join_fleet` replaces the
embedded parts of `ChatService`:

- `RedisEventBus`: one stream per chat session
  (``flamesight:chat:{session}:events``), trimmed by length (``MAXLEN ~``)
  and age (``MINID ~``). `seq` comes from a per-session counter in Redis
  (``INCRBY`` the size of a batch), seeded from the database when Redis has
  none (a new session, a restarted Redis), so it stays monotonic across
  processes. A batch of events (what all turns of a process produced while
  the previous batch was published, `chat.EventPublisher`) is numbered and
  added to the streams by one script call for all its sessions; the same
  script adds the whole batch as one entry to the live stream
  (``flamesight:chat:live``), which each web process follows with one
  ``XREAD BLOCK`` of one key for all its subscribers (`LiveReader`): reading
  a stream per subscriber cost the web processes and Redis more than
  everything else they did with the events. The batch is then stored in
  ``chat_events`` in the background (`EventWriter`), off the events' way to
  the clients: on a loaded machine every round trip on that way (a process
  to wake) cost milliseconds, and numbering, storing, then appending took
  three. The database is the record (history, `resume` past the stream's
  trimmed start or after Redis lost it); a turn's end waits until its
  events are stored, and a failed store fails the turn. A subscriber starts
  after the newest stored event (what the socket's ``connection_ack``
  counts as seen) and hands on events in `seq` order; the ones missing
  before those that came (published but not yet stored when it subscribed,
  trimmed from the live stream, lost with Redis) it reads from the
  session's stream, or the database when the stream does not reach back.
- `ArqJobQueue`: the web process enqueues jobs (arq, ``max_tries=1``:
  ``chat_turn`` and ``analysis``) and watches them; `fleet_jobs` is the
  worker's side.
- `RedisLeases`: a job runs at most once and a lost one is noticed. A key
  holds the job's id while it waits (set with ``NX`` and a time to live);
  a worker taking the job turns it into ``"{id} running"`` in one script
  (only one taker can), and keeps it alive (heartbeat) while it runs. The
  web process that enqueued the job watches the key, and so does any web
  process a socket of the session binds to while a turn runs
  (`ArqJobQueue.watch_turn`: the one that queued it may be gone): gone (or
  taken by another job) without the job marked done means the worker died
  (it was seen running) or no worker took the job in time, and the client
  is told, by the first watcher to mark the job done (``SET NX``). For a
  chat turn the key is the session's (``flamesight:chat:{session}:turn``,
  `RedisTurnGate`: one turn per session across processes; the user's
  message was stored before the job was queued, so the next prompt works at
  once); for an analysis, its own (``flamesight:analysis:{id}:lease``).
- `RedisAnalyses`: "Send to LLM" in a fleet. The web process checks the
  trace and the endpoint, enqueues an ``analysis`` job and relays its
  pieces from a stream of its own (``flamesight:analysis:{id}:events``,
  kept 10 minutes) as server-sent events. The worker runs
  `analyze_routes.perform_analysis`, the function one process runs, so the
  stored analysis is the same; a client that goes away stops nothing.
- Worker affinity: each worker also consumes a queue of its own
  (``flamesight:worker:{name}:jobs``), says it is alive and how many more
  jobs that queue can start (``flamesight:worker:{name}:alive``, 10 s,
  refreshed every 3 s) and which
  traces its memory cache holds (a hash per trace blob,
  ``flamesight:cache:{blob}:workers``, kept 30 s, refreshed, the worker's
  field removed when the cache drops the trace). A job about a trace goes
  to the queue of a live worker holding it with room for it (one at random,
  weighted by that room, when several do), else to the shared queue; one
  not taken within 2 s is withdrawn from that queue (unless already
  started) and put on the shared one. The lease's atomic take makes sure
  it runs once whichever copy a worker picks.
- Client-given model endpoints (`RedisEndpointVault`): with a shared secret
  key (``FLAMESIGHT_SECRET_KEY`` or ``--secret-key-file``, the same for
  every web process and worker) the web process seals the endpoint (URL,
  model, provider, credentials, and the URL policy it passed) with Fernet
  under a key derived from the secret by HKDF-SHA256
  (`model_endpoints.EndpointSealer`) and keeps the ciphertext in Redis: a
  chat session's under ``flamesight:chat:{session}:endpoint`` for an hour,
  the time to live renewed by every prompt, deleted when the socket that
  gave it closes; an analysis's under ``flamesight:analysis:{id}:endpoint``
  for two minutes, read and deleted at once (``GETDEL``) by the worker
  that runs it. Jobs carry only a flag saying the endpoint is sealed; the
  worker opens it in memory and checks its URLs again. Plaintext reaches
  no Redis key, job argument, log or row. Without the key such endpoints
  are refused, with a message naming the setting.

Redis connections retry (exponential backoff, about half a minute) on
connection errors, so a restarted Redis is picked up again by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import anyio.to_thread
import orjson
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flamesight.llm import Failure, LLMError
from flamesight.server.analyze_routes import AnalyzeBody, Piece
from flamesight.server.chat import (
    EXPIRED_ENDPOINT,
    BackgroundTasks,
    ChatTurnJob,
    EventQueue,
    Published,
)
from flamesight.server.chat_store import (
    ChatRepository,
    EventWriter,
    SessionRecord,
    last_stored_seq,
    stored_events_after,
)
from flamesight.server.errors import ApiError
from flamesight.server.model_endpoints import (
    ENDPOINT_FIELDS,
    ClientEndpoint,
    EndpointSealer,
    ModelEndpoint,
    endpoint_given,
    resolve_endpoint,
)
from flamesight.server.repository import TraceRecord, new_id
from flamesight.server.url_policy import RefusedUrl, UrlPolicy

if TYPE_CHECKING:
    from flamesight.server.state import ServerState

log = logging.getLogger(__name__)

QUEUE_NAME = "flamesight:turns"
"""The shared arq queue of jobs (chat turns and analyses)."""
CHAT_TURN = "chat_turn"
"""The name of the job function that runs a chat turn."""
ANALYSIS = "analysis"
"""The name of the job function that runs a "Send to LLM" analysis."""

STREAM_MAXLEN = 10_000
"""About how many events a session's stream keeps (``MAXLEN ~``)."""
STREAM_MAX_AGE_S = 24 * 3600
"""Events older than this are trimmed from the stream (``MINID ~``); the database keeps them."""
LIVE_KEY = "flamesight:chat:live"
"""The stream of every published batch of events, whole, that web processes follow."""
LIVE_MAXLEN = 10_000
"""About how many batches the live stream keeps (a reader that fell further behind
catches up from the sessions' streams)."""
LIVE_SESSIONS_PER_ENTRY = 1000
"""The most sessions one live stream entry (one script call) carries."""
REPLAY_PAGE = 200
"""How many of a session's newest events a catch-up reads from its stream at first."""
ANALYSIS_STREAM_TTL_S = 600
"""How long an analysis's stream of pieces is kept after its last piece."""
QUEUE_WAIT_S = 60.0
"""How long a queued job may wait for a worker before the client is told it failed."""
HANDOVER_S = 2.0
"""How long a job waits on a worker's own queue before it goes to the shared queue."""
HEARTBEAT_TTL_S = 6.0
"""A running job whose worker stops refreshing its key for this long has failed."""
HEARTBEAT_EVERY_S = 1.5
WATCH_EVERY_S = 1.0
WATCH_GRACE_S = 4.0
"""How long a job's key must stay missing before the job counts as lost (a restarted
Redis loses the key; the worker's next heartbeat puts it back)."""
DONE_TTL_S = 600
TURN_TIMEOUT_S = 1800
"""arq's time limit of a job (the model client's own timeouts end slow requests sooner)."""
BLOCK_MS = 5000
READ_EVERY_S = 0.005
"""The shortest time from a read of the live stream that brought events of several
sessions to the next read: under load, batches wait up to this long to share a read
(each command costs a write and a wake-up of Redis). After a read of one session's
events the next follows at once."""
CHAT_ENDPOINT_TTL_S = 3600
"""How long a chat's sealed endpoint is kept without a prompt."""
ANALYSIS_ENDPOINT_TTL_S = int(QUEUE_WAIT_S) + 60
"""How long an analysis's sealed endpoint waits for its worker."""
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
"""This process's name: in the log line a worker writes when it starts a job, and its queue."""

CLIENT_ENDPOINTS_REFUSED = (
    "this server runs chat turns and analyses on worker processes, which use the server's own "
    "model endpoint settings; a chat or analysis cannot name its own model URL or credentials "
    "here (leave url, model, provider and auth out). To allow it, give every web process and "
    "worker the same secret key: FLAMESIGHT_SECRET_KEY (or --secret-key-file)"
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
ANALYSIS_WORKER_LOST = (
    "the worker running this analysis stopped before it finished (it was killed or lost its "
    "connection); ask again"
)
ANALYSIS_NO_WORKER = (
    "no worker took this analysis in time (are `flamesight worker` processes running?); ask again"
)
ANALYSIS_ENDPOINT_GONE = "the model endpoint of this analysis expired before a worker took it"

_PUBLISH = """
local at = 5
local missing = {0}
for i = 2, #KEYS, 2 do
  if ARGV[at + 1] == '' and redis.call('EXISTS', KEYS[i]) == 0 then
    missing[#missing + 1] = i / 2
  end
  at = at + 3 + tonumber(ARGV[at + 2])
end
if #missing > 1 then return missing end
local firsts, live = {1}, {}
at = 5
for i = 2, #KEYS, 2 do
  local n = tonumber(ARGV[at + 2])
  if redis.call('EXISTS', KEYS[i]) == 0 then redis.call('SET', KEYS[i], ARGV[at + 1]) end
  local first = redis.call('INCRBY', KEYS[i], n) - n + 1
  redis.call('EXPIRE', KEYS[i], ARGV[3])
  local events = {}
  for k = 1, n do
    events[k] = ARGV[at + 2 + k]
    redis.call('XADD', KEYS[i + 1], 'MAXLEN', '~', ARGV[1], '*', 'seq', first + k - 1, 'event', events[k])
  end
  redis.call('XTRIM', KEYS[i + 1], 'MINID', '~', ARGV[2])
  redis.call('EXPIRE', KEYS[i + 1], ARGV[3])
  live[#live + 1] = ARGV[at]
  live[#live + 1] = first .. ' [' .. table.concat(events, ',') .. ']'
  firsts[#firsts + 1] = first
  at = at + 3 + n
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', unpack(live))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return firsts
"""
"""Number a batch's events and add them to their sessions' streams and, whole, to the live
stream. KEYS: the live stream, then each session's counter and stream. ARGV: the streams'
length, oldest id and time to live, the live stream's length, then for each session its id,
the seq to count on from when its counter is gone ('' for none), how many events, the
events. Returns 1 and each session's first seq; or, when a counter is gone and no seq was
given for it, 0 and the sessions (numbered from 1) that need one, having done nothing."""

_RELEASE = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] or held == ARGV[1] .. ' running' then redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
return 1
"""

_TAKE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1] .. ' running', 'PX', ARGV[2])
  for i = 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[3]) end
  return 1
end
return 0
"""

_REFRESH = """
local held = redis.call('GET', KEYS[1])
local running = ARGV[1] .. ' running'
if held == running or (not held and redis.call('EXISTS', KEYS[2]) == 0) then
  redis.call('SET', KEYS[1], running, 'PX', ARGV[2])
  return 1
end
return 0
"""

_CHOOSE = """
local names, rooms, total = {}, {}, 0
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  local room = tonumber(redis.call('GET', ARGV[1] .. name .. ARGV[2])) or 0
  if room > 0 then
    names[#names + 1] = name
    rooms[#rooms + 1] = room
    total = total + room
  end
end
local pick = tonumber(ARGV[3]) * total
for i, name in ipairs(names) do
  pick = pick - rooms[i]
  if pick < 0 or i == #names then
    redis.call('DECR', ARGV[1] .. name .. ARGV[2])
    return name
  end
end
return false
"""

_WITHDRAW = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[3])
return 1
"""

_FORGET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
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
    """Events numbered in Redis, stored in the database, kept in a stream per session and
    delivered through the live stream."""

    def __init__(self, state: ServerState, redis: ArqRedis) -> None:
        self.state = state
        self.redis = redis
        self._publish = redis.register_script(_PUBLISH)
        self.reader = LiveReader(redis)
        self.writer = EventWriter(state.engine)

    async def publish(self, session: SessionRecord, event: dict[str, Any]) -> dict[str, Any]:
        """Number `event`, add it to the session's stream, store it."""
        return (await self.publish_many(session, [event]))[0]

    async def publish_many(
        self, session: SessionRecord, events: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Number `events` (one range of seqs), add them to the session's stream, store them
        (returns once they are stored)."""
        numbered, kept = await self.publish_batch([(session, events)])
        await kept
        return numbered[0] if numbered else []

    async def publish_batch(
        self, batch: list[tuple[SessionRecord, list[dict[str, Any]]]]
    ) -> Published:
        """Events of several sessions, by one script call: each session's numbered with
        one range of seqs and added to its stream, all of them as one entry to the live
        stream; kept in the database in the background (`EventWriter`, in order)."""
        batch = [(session, events) for session, events in batch if events]
        numbered: list[list[dict[str, Any]]] = []
        for at in range(0, len(batch), LIVE_SESSIONS_PER_ENTRY):
            numbered += await self._publish_part(batch[at : at + LIVE_SESSIONS_PER_ENTRY])
        kept = self.writer.store_later(
            [(session.id, events) for (session, _), events in zip(batch, numbered, strict=True)]
        )
        return numbered, kept

    async def _publish_part(
        self, batch: list[tuple[SessionRecord, list[dict[str, Any]]]]
    ) -> list[list[dict[str, Any]]]:
        if not batch:
            return []
        ttl = str(STREAM_MAX_AGE_S)
        min_id = max(0, int(time.time() * 1000) - STREAM_MAX_AGE_S * 1000)
        keys = [LIVE_KEY]
        for session, _ in batch:
            keys += [seq_key(session.id), stream_key(session.id)]
        seeds = [""] * len(batch)
        while True:
            args: list[Any] = [STREAM_MAXLEN, min_id, ttl, LIVE_MAXLEN]
            for (session, events), seed in zip(batch, seeds, strict=True):
                args += [session.id, seed, len(events), *(orjson.dumps(e) for e in events)]
            reply = await self._publish(keys=keys, args=args)
            if reply[0] == 1:
                break
            # No counter in Redis (a new session, a restarted Redis): count on from the
            # database, once what this process published is stored there.
            await self.writer.store_later([])
            for number in reply[1:]:
                session = batch[number - 1][0]
                store = ChatRepository(self.state.sessions, session.owner_id)
                seeds[number - 1] = str(await store.last_seq(session.id))
        return [
            [{**event, "seq": first + n} for n, event in enumerate(events)]
            for (_, events), first in zip(batch, reply[1:], strict=True)
        ]

    @contextlib.asynccontextmanager
    async def subscribe(self, session_id: str) -> AsyncIterator[EventQueue]:
        """A queue of the session's events after the newest stored, in `seq` order (those
        published but not yet stored are read from the session's stream first)."""
        queue: EventQueue = asyncio.Queue()
        follower = _Follower(session_id, queue, self._events_after)
        try:
            await self.reader.add(follower)
            async with self.state.sessions() as session:
                stored = await last_stored_seq(session, session_id)
            newest = await self._newest_in_stream(session_id)
            follower.start(stored, behind=newest is not None and newest["seq"] > stored)
            yield queue
        finally:
            self.reader.remove(follower)

    async def replay(self, session: SessionRecord, after_seq: int) -> list[dict[str, Any]]:
        """The events after `after_seq` (of a session the caller checked is the user's)."""
        return await self._events_after(session.id, after_seq)

    async def close(self) -> None:
        """Stop storing events, give back the writer's database connection (at shutdown)."""
        await self.writer.close()

    async def _events_after(self, session_id: str, after_seq: int) -> list[dict[str, Any]]:
        """A session's events after `after_seq`: from its stream when its newest entries
        reach back that far, else from the database and then the stream (its newest
        events may not be stored yet)."""
        try:
            entries = await self.redis.xrevrange(stream_key(session_id), count=REPLAY_PAGE)
        except RedisError:
            entries = []
        newest = [_entry_event(fields) for _id, fields in reversed(entries)]
        if newest and newest[0]["seq"] <= after_seq + 1:
            return [event for event in newest if event["seq"] > after_seq]
        async with self.state.sessions() as session:
            stored = await stored_events_after(session, session_id, after_seq)
        last = stored[-1]["seq"] if stored else after_seq
        return stored + [event for event in newest if event["seq"] > last]

    async def last_event(self, session: SessionRecord) -> dict[str, Any] | None:
        """The session's newest event: from its stream, else (the stream gone with Redis, or
        Redis away) the newest stored."""
        newest = await self._newest_in_stream(session.id)
        if newest is not None:
            return newest
        return await ChatRepository(self.state.sessions, session.owner_id).last_event(session.id)

    async def _newest_in_stream(self, session_id: str) -> dict[str, Any] | None:
        """The newest event in the session's stream (None when it has none, or Redis is
        away)."""
        try:
            newest = await self.redis.xrevrange(stream_key(session_id), count=1)
        except RedisError:
            return None
        return _entry_event(newest[0][1]) if newest else None


class _Follower:
    """A subscriber: its session, the last `seq` handed on, and where its events go.

    Events come a batch at a time (a session's part of a published batch:
    consecutive seqs) and are handed on in `seq` order, each once. Until
    `start` says where the subscriber begins, and while it catches up
    (`events_after`: a batch came with events before it missing), batches
    are held back and handed on afterwards.
    """

    def __init__(
        self,
        session_id: str,
        queue: EventQueue,
        events_after: Callable[[str, int], Awaitable[list[dict[str, Any]]]],
    ) -> None:
        self.session_id = session_id
        self.queue = queue
        self.events_after = events_after
        self.last_seq = 0
        self.held: list[dict[str, Any]] | None = []
        """The events held back (while starting or catching up); None when handing on."""
        self.started = False
        self.behind = False
        """Events may be missing: catch up (again)."""
        self.catching_up: asyncio.Task[None] | None = None

    def start(self, last_seq: int, behind: bool) -> None:
        """Hand on the events after `last_seq`, first those held back until now (when
        `behind`, first those published before but not yet stored)."""
        self.last_seq = last_seq
        self.started = True
        if self.behind or behind:
            self._catch_up()
            return
        held, self.held = self.held or [], None
        self.take(held)

    def take(self, events: list[dict[str, Any]]) -> None:
        """Hand on the events past the last one handed on; when some before them are
        missing, catch up first."""
        if self.held is not None:
            self.held.extend(events)
            return
        new = [event for event in events if event["seq"] > self.last_seq]
        if new and new[0]["seq"] > self.last_seq + 1:
            self.held = new
            self._catch_up()
            return
        self._put(new)

    def fall_behind(self) -> None:
        """Events may have been missed (Redis was away): catch up."""
        self.behind = True
        if self.held is None:
            self.held = []
            self._catch_up()

    def close(self) -> None:
        """Stop catching up (the subscriber is gone)."""
        if self.catching_up is not None:
            self.catching_up.cancel()

    def _catch_up(self) -> None:
        self.behind = True
        if self.started and (self.catching_up is None or self.catching_up.done()):
            self.catching_up = asyncio.create_task(self._read_missed())

    async def _read_missed(self) -> None:
        while self.behind:
            self.behind = False
            try:
                missed = await self.events_after(self.session_id, self.last_seq)
            except Exception as error:  # the database is away too: go on with what came
                log.warning("could not read the missed events of a chat session: %s", error)
                missed = []
            self._put(missed)
        held, self.held = self.held or [], None
        self._put(held)

    def _put(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            if event["seq"] > self.last_seq:
                self.last_seq = event["seq"]
                self.queue.put_nowait(event)


class LiveReader:
    """Follows the live stream for all of a process's subscribers with one ``XREAD BLOCK``.

    One command of one key brings every batch published since the last read.
    An entry has a field per session, ``{first seq} [{event}, ...]``; each
    session's events go to its subscribers (those of other sessions are not
    even parsed). When Redis goes away the read is retried from the same
    entry; once back, every subscriber catches up (what was published
    meanwhile may be gone with Redis). Nothing reads while no one subscribes.
    """

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis
        self.followers: dict[bytes, list[_Follower]] = {}
        """The followers of each session, by its id as the live stream's field names."""
        self._task: asyncio.Task[None] | None = None
        self._reading = asyncio.Event()

    async def add(self, follower: _Follower) -> None:
        """Start handing on to the follower: every batch added to the live stream after
        this returns reaches it."""
        self.followers.setdefault(follower.session_id.encode(), []).append(follower)
        if self._task is None:
            self._reading = asyncio.Event()
            self._task = asyncio.create_task(self._run(self._reading))
        await self._reading.wait()

    def remove(self, follower: _Follower) -> None:
        """Stop handing on to the follower."""
        follower.close()
        key = follower.session_id.encode()
        followers = self.followers.get(key, [])
        if follower in followers:
            followers.remove(follower)
        if not followers:
            self.followers.pop(key, None)
        if not self.followers and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self, reading: asyncio.Event) -> None:
        position: bytes | str | None = None  # the last entry read
        broken = False
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                if position is None:
                    newest = await self.redis.xrevrange(LIVE_KEY, count=1)
                    position = newest[0][0] if newest else "0-0"
                reading.set()
                reply = await self.redis.xread({LIVE_KEY: position}, count=100, block=BLOCK_MS)
                if broken:  # Redis is back: what it had of the gap may be lost
                    for followers in list(self.followers.values()):
                        for follower in followers:
                            follower.fall_behind()
                    broken = False
                sessions = 0
                for _key, entries in reply or []:
                    for entry_id, fields in entries:
                        position = entry_id
                        sessions += len(fields)
                        for session_key, value in fields.items():
                            if followers := self.followers.get(session_key):
                                try:
                                    events = _live_events(value)
                                except ValueError as error:  # orjson's errors are ValueErrors
                                    log.warning(
                                        "skipped an unreadable entry %s of the live stream: %s",
                                        entry_id,
                                        error,
                                    )
                                    continue
                                for follower in followers:
                                    follower.take(events)
                if sessions > 1:  # several sessions at once: let the next read gather more
                    await asyncio.sleep(started + READ_EVERY_S - loop.time())
            except (RedisError, OSError) as error:
                if not broken:
                    log.warning("reading chat events from Redis failed, retrying: %s", error)
                broken = True
                reading.set()  # subscribers start; they catch up once Redis is back
                await asyncio.sleep(0.5)


def _live_events(value: bytes) -> list[dict[str, Any]]:
    """A session's events in a live stream entry (``{first seq} [{event}, ...]``)."""
    first, _, body = value.partition(b" ")
    events: list[dict[str, Any]] = orjson.loads(body)
    for seq, event in enumerate(events, int(first)):
        event["seq"] = seq
    return events


def _entry_event(fields: dict[Any, Any]) -> dict[str, Any]:
    def field(name: str) -> Any:
        return fields.get(name.encode(), fields.get(name))

    return {**orjson.loads(field("event")), "seq": int(field("seq"))}


def endpoint_key(session_id: str) -> str:
    """A chat session's sealed client endpoint."""
    return f"flamesight:chat:{session_id}:endpoint"


def analysis_key(job_id: str, part: str) -> str:
    """A key of one analysis: its ``lease``, ``events`` or sealed ``endpoint``."""
    return f"flamesight:analysis:{job_id}:{part}"


def worker_key(name: str, part: str) -> str:
    """A key of the worker `name`: ``jobs``, its own arq queue (jobs about traces it holds),
    or ``alive``, present while it runs."""
    return f"flamesight:worker:{name}:{part}"


def holders_key(blob_key: str) -> str:
    """The workers whose memory cache holds the trace blob `blob_key` (a hash)."""
    return f"flamesight:cache:{blob_key}:workers"


JobState = Literal["waiting", "running", "done", "lost"]
"""Where a leased job is: waiting for a worker, running on one, done (answered, failed, or
given up), or lost (its lease gone without it being done: its worker died, or none took it)."""


@dataclass(frozen=True)
class Lease:
    """The Redis key that holds a job's id while it waits and runs."""

    key: str
    job_id: str

    @property
    def done_key(self) -> str:
        """Set when the job has finished (answered or failed), for a while."""
        return f"flamesight:job:{self.job_id}:done"


def turn_lease(job: ChatTurnJob) -> Lease:
    """A chat turn's lease: its session's turn key."""
    return Lease(turn_key(job.session_id), job.turn_id)


def analysis_lease(job_id: str) -> Lease:
    """An analysis's lease."""
    return Lease(analysis_key(job_id, "lease"), job_id)


class RedisLeases:
    """Jobs that run at most once, on a worker that keeps saying it is alive."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis
        self._release = redis.register_script(_RELEASE)
        self._take = redis.register_script(_TAKE)
        self._refresh = redis.register_script(_REFRESH)
        self._asks: list[tuple[str, Lease, asyncio.Future[bool | JobState]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def claim(self, lease: Lease) -> bool:
        """Hold the lease while the job waits for a worker; False when it is held."""
        wait = int(QUEUE_WAIT_S * 1000)
        return bool(await self.redis.set(lease.key, lease.job_id, nx=True, px=wait))

    async def release(self, lease: Lease) -> None:
        """Mark the job done and free the lease (if the job still holds it)."""
        await self._release(keys=[lease.key, lease.done_key], args=[lease.job_id, DONE_TTL_S])

    async def take(self, lease: Lease, arq_job_id: str) -> bool:
        """A worker starts the job: True for the one taker of a waiting job (not given up).

        The taker also takes the arq job out of the queues it could be waiting on (the
        shared one and this worker's): arq leaves a running job in its queue until it
        ends, and every poll of every worker looks at each such job again (three Redis
        calls each; with a hundred turns running, thousands of calls a second). The
        lease, not arq's queue, is what finds a job whose worker died.
        """
        ttl = int(HEARTBEAT_TTL_S * 1000)
        keys = [lease.key, QUEUE_NAME, worker_key(WORKER_NAME, "jobs")]
        return bool(await self._take(keys=keys, args=[lease.job_id, ttl, arq_job_id]))

    async def refresh(self, lease: Lease) -> bool:
        """Keep holding the lease of a running job (again, after Redis lost the key).

        Refreshes asked for in the same turn of the event loop share one round trip
        to Redis with each other and with `state` checks (heartbeats beat on the
        same ticks for every job of a process).
        """
        return bool(await self._ask("refresh", lease))

    async def give_up(self, lease: Lease) -> bool:
        """Mark a lost job done, so its worker, if it comes back, cannot take the lease.
        False when it was done already: it ended after all, or another process watching
        it gave it up first (and told the client)."""
        return bool(await self.redis.set(lease.done_key, "lost", ex=DONE_TTL_S, nx=True))

    async def state(self, lease: Lease) -> JobState:
        """Where the job is.

        The jobs a process watches are checked together: callers asking in the same
        turn of the event loop share one round trip to Redis (`watch` asks on the
        same ticks for every job).
        """
        return cast(JobState, await self._ask("state", lease))

    async def _ask(self, kind: str, lease: Lease) -> bool | JobState:
        """`state` or `refresh`, sent with the others asked in this turn of the loop."""
        answer = asyncio.get_running_loop().create_future()
        self._asks.append((kind, lease, answer))
        if len(self._asks) == 1:
            asyncio.get_running_loop().call_soon(self._send_asks)
        return await answer

    def _send_asks(self) -> None:
        asks, self._asks = self._asks, []
        self._keep(asyncio.create_task(self._answer(asks)))

    async def _answer(self, asks: list[tuple[str, Lease, asyncio.Future[bool | JobState]]]) -> None:
        ttl = int(HEARTBEAT_TTL_S * 1000)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for kind, lease, _answer in asks:
                    if kind == "refresh":
                        keys = [lease.key, lease.done_key]
                        await self._refresh(keys=keys, args=[lease.job_id, ttl], client=pipe)
                    else:
                        pipe.exists(lease.done_key)
                        pipe.get(lease.key)
                replies = iter(await pipe.execute())
        except Exception as error:  # each asker sees the failure
            for _kind, _lease, answer in asks:
                if not answer.done():
                    answer.set_exception(error)
            return
        for kind, lease, answer in asks:
            result: bool | JobState
            if kind == "refresh":
                result = bool(next(replies))
            else:
                done, held = next(replies), next(replies)
                if done:
                    result = "done"
                elif held == lease.job_id.encode():
                    result = "waiting"
                elif held == f"{lease.job_id} running".encode():
                    result = "running"
                else:
                    result = "lost"
            if not answer.done():
                answer.set_result(result)

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def holding(self, lease: Lease) -> AsyncIterator[None]:
        """Refresh the lease (heartbeat) while the block runs (a worker, around its job)."""
        beat = asyncio.create_task(self._heartbeat(lease))
        try:
            yield
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _heartbeat(self, lease: Lease) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # On the same ticks as every other heartbeat of this process: sent together.
            await asyncio.sleep(HEARTBEAT_EVERY_S - loop.time() % HEARTBEAT_EVERY_S)
            try:
                await self.refresh(lease)
            except RedisError as error:
                log.warning("could not refresh a job's heartbeat: %s", error)


class RedisTurnGate:
    """One turn per session across every process: the session's lease (its turn key)."""

    def __init__(self, leases: RedisLeases) -> None:
        self.leases = leases

    async def claim(self, job: ChatTurnJob) -> bool:
        """Hold the session for `job` while it waits for a worker."""
        return await self.leases.claim(turn_lease(job))

    async def release(self, job: ChatTurnJob) -> None:
        """Mark the turn done and free the session (if the turn still holds it)."""
        await self.leases.release(turn_lease(job))


class RedisEndpointVault:
    """Client endpoints sealed in Redis for the workers (the shared secret key's Fernet)."""

    def __init__(self, redis: ArqRedis, sealer: EndpointSealer, policy: UrlPolicy) -> None:
        self.redis = redis
        self.sealer = sealer
        self.policy = policy
        self._forget = redis.register_script(_FORGET)

    async def seal(self, session_id: str, chosen: ClientEndpoint) -> bytes:
        """Keep the chat session's endpoint sealed for an hour; the sealed value."""
        where = endpoint_key(session_id)
        sealed = self.sealer.seal(chosen, self.policy, where)
        await self.redis.set(where, sealed, ex=CHAT_ENDPOINT_TTL_S)
        return sealed

    async def refresh(self, session_id: str) -> bool:
        """Keep the session's sealed endpoint another hour; False when it is gone."""
        return bool(await self.redis.expire(endpoint_key(session_id), CHAT_ENDPOINT_TTL_S))

    async def forget(self, session_id: str, sealed: bytes) -> None:
        """Delete the session's sealed endpoint if it is still `sealed` (it expires anyway)."""
        try:
            await self._forget(keys=[endpoint_key(session_id)], args=[sealed])
        except RedisError as error:
            log.warning(
                "could not delete a chat's sealed endpoint (it expires by itself): %s", error
            )

    async def open(self, session_id: str) -> ModelEndpoint:
        """The chat session's endpoint, opened in memory and checked again."""
        where = endpoint_key(session_id)
        sealed = await self.redis.get(where)
        if sealed is None:
            raise LLMError(Failure.CONFIG, EXPIRED_ENDPOINT)
        chosen, policy = self.sealer.open(sealed, where)
        try:
            return await anyio.to_thread.run_sync(resolve_endpoint, policy, chosen)
        except RefusedUrl as error:
            raise LLMError(Failure.CONFIG, str(error)) from None

    async def seal_analysis(self, job_id: str, chosen: ClientEndpoint) -> None:
        """Keep an analysis's endpoint sealed until its worker takes it (two minutes)."""
        where = analysis_key(job_id, "endpoint")
        sealed = self.sealer.seal(chosen, self.policy, where)
        await self.redis.set(where, sealed, ex=ANALYSIS_ENDPOINT_TTL_S)

    async def take_analysis(self, job_id: str) -> tuple[ClientEndpoint, UrlPolicy]:
        """An analysis's endpoint and its policy, deleted from Redis as it is read."""
        where = analysis_key(job_id, "endpoint")
        sealed = await self.redis.getdel(where)
        if sealed is None:
            raise LLMError(Failure.CONFIG, ANALYSIS_ENDPOINT_GONE)
        return self.sealer.open(sealed, where)

    async def drop_analysis(self, job_id: str) -> None:
        """Delete an analysis's sealed endpoint (its job was lost before a worker took it)."""
        await self.redis.delete(analysis_key(job_id, "endpoint"))


@dataclass(frozen=True)
class FleetJob:
    """A job to enqueue: its function and arguments (no secret), lease and trace blob."""

    function: str
    args: tuple[Any, ...]
    lease: Lease
    blob_key: str
    arq_id: str


LostHandler = Callable[[bool], Awaitable[None]]
"""Tells the client a job was lost (True: no worker had taken it)."""


class ArqJobQueue(BackgroundTasks):
    """Jobs as arq jobs for `flamesight worker`s; this process watches their heartbeat."""

    def __init__(self, state: ServerState, redis: ArqRedis, leases: RedisLeases) -> None:
        super().__init__()
        self.state = state
        self.redis = redis
        self.leases = leases
        self._withdraw = redis.register_script(_WITHDRAW)
        self._choose = redis.register_script(_CHOOSE)
        self._watched: set[Lease] = set()

    async def enqueue(self, job: ChatTurnJob, session: SessionRecord, trace: TraceRecord) -> None:
        """Queue the chat turn for a worker (one holding its trace, if it can) and watch it
        until it is done."""
        args = (job.owner_id, job.session_id, job.turn_id, job.sealed_endpoint)
        arq_id = f"flamesight:turn:{job.turn_id}"
        queued = FleetJob(CHAT_TURN, args, turn_lease(job), trace.blob_key, arq_id)
        await self.dispatch(queued, self._tell_turn_lost(session))

    async def watch_turn(self, session: SessionRecord) -> None:
        """Watch the session's running turn too when another web process queued it (a
        socket bound here, perhaps because that process stopped): a worker dying mid-turn
        still reaches the client as an `error` event. Of the processes watching a job,
        the first to give it up tells the client."""
        try:
            held = await self.redis.get(turn_key(session.id))
        except RedisError as error:
            log.warning("could not look up a chat session's running turn: %s", error)
            return
        if held is None:
            return
        job_id, _, running = held.decode().partition(" ")
        lease = Lease(turn_key(session.id), job_id)
        if lease not in self._watched:
            lost = self._tell_turn_lost(session)
            self.keep(asyncio.create_task(self.watch(lease, lost, taken=bool(running))))

    def _tell_turn_lost(self, session: SessionRecord) -> LostHandler:
        async def lost(no_worker: bool) -> None:
            await self.state.chat.end_open_turn(session, NO_WORKER if no_worker else WORKER_LOST)

        return lost

    async def dispatch(self, job: FleetJob, lost: LostHandler) -> None:
        """Queue `job` (on the queue of a live worker holding its trace, if one does) and
        watch it until it is done."""
        queue = await self.choose_queue(job.blob_key)
        await self.redis.enqueue_job(job.function, *job.args, _job_id=job.arq_id, _queue_name=queue)
        hand_over = None if queue == QUEUE_NAME else functools.partial(self.hand_over, job, queue)
        self.keep(asyncio.create_task(self.watch(job.lease, lost, hand_over)))

    async def choose_queue(self, blob_key: str) -> str:
        """The queue of a live worker whose cache holds `blob_key` and that has room for
        more jobs, else the shared one. Among several, one at random, weighted by the
        room each last advertised (a burst of turns spreads over them instead of filling
        one and waiting for the hand-over). The choice takes one place of the chosen
        worker's advertised room, in the same script, so that the web processes of a
        fleet, choosing at once, do not all count the same room (the worker's next
        advert says again what it really has)."""
        prefix, suffix = worker_key("\0", "alive").split("\0")
        try:
            name = await self._choose(
                keys=[holders_key(blob_key)], args=[prefix, suffix, random.random()]
            )
        except RedisError as error:
            log.warning("could not look up which worker holds a trace: %s", error)
            return QUEUE_NAME
        return QUEUE_NAME if name is None else worker_key(name.decode(), "jobs")

    async def hand_over(self, job: FleetJob, queue: str) -> bool:
        """Move a job its worker has not started to the shared queue; False to try again."""
        if await self.leases.state(job.lease) != "waiting":
            return True
        keys = [queue, in_progress_key_prefix + job.arq_id, job_key_prefix + job.arq_id]
        if not await self._withdraw(keys=keys, args=[job.arq_id]):
            return False
        await self.redis.enqueue_job(
            job.function, *job.args, _job_id=f"{job.arq_id}:shared", _queue_name=QUEUE_NAME
        )
        log.info(
            "job %s was not taken from %s in time; handed to the shared queue", job.arq_id, queue
        )
        return True

    async def watch(
        self,
        lease: Lease,
        lost: LostHandler,
        hand_over: Callable[[], Awaitable[bool]] | None = None,
        taken: bool = False,
    ) -> None:
        """Call `hand_over` (until it returns True) when the job waits past `HANDOVER_S`;
        call `lost` when its lease goes without the job being done, saying whether any
        worker had taken it (`taken`: it was seen running before the watch began)."""
        started = time.monotonic()
        missing_since: float | None = None
        loop = asyncio.get_running_loop()
        self._watched.add(lease)
        try:
            while True:
                # On the same ticks as every other watch of this process: checked together.
                await asyncio.sleep(WATCH_EVERY_S - loop.time() % WATCH_EVERY_S)
                try:
                    if hand_over is not None and time.monotonic() - started >= HANDOVER_S:
                        hand_over = None if await hand_over() else hand_over
                    state = await self.leases.state(lease)
                except RedisError as error:
                    log.warning("could not check a job: %s", error)
                    continue
                if state == "done":
                    return
                if state != "lost":
                    taken = taken or state == "running"
                    missing_since = None
                    continue
                now = time.monotonic()
                missing_since = missing_since or now
                if now - missing_since >= WATCH_GRACE_S:
                    break
            if await self.leases.give_up(lease):
                await lost(not taken)
        finally:
            self._watched.discard(lease)

    async def close(self) -> None:
        """Stop watching, close the Redis connections."""
        await super().close()
        await self.redis.aclose()


def encode_piece(kind: str, item: Any) -> bytes:
    """A piece of an analysis as its stream entry holds it."""
    if kind == "error":
        item = [item.status, item.code, item.message]
    return orjson.dumps([kind, item])


def decode_piece(data: bytes) -> Piece:
    """A stream entry's piece of an analysis."""
    kind, item = orjson.loads(data)
    return (kind, ApiError(*item)) if kind == "error" else (kind, item)


async def send_pieces(redis: ArqRedis, job_id: str, pieces: asyncio.Queue[Piece]) -> None:
    """Add an analysis's pieces to its stream, a batch at a time, up to its last piece."""
    key = analysis_key(job_id, "events")
    while True:
        batch = [await pieces.get()]
        while not pieces.empty():
            batch.append(pieces.get_nowait())
        await add_pieces(redis, key, batch)
        if any(kind != "text" for kind, _ in batch):
            return


async def add_pieces(redis: ArqRedis, key: str, batch: list[Piece]) -> None:
    """Add pieces to an analysis's stream in one transaction, retrying through Redis failures."""
    while True:
        try:
            async with redis.pipeline(transaction=True) as pipe:
                for kind, item in batch:
                    pipe.xadd(key, {"piece": encode_piece(kind, item)})
                pipe.expire(key, ANALYSIS_STREAM_TTL_S)
                await pipe.execute()
            return
        except (RedisError, OSError) as error:
            log.warning("could not add an analysis's pieces to Redis, retrying: %s", error)
            await asyncio.sleep(0.5)


async def follow_pieces(redis: ArqRedis, job_id: str) -> AsyncGenerator[Piece, None]:
    """An analysis's pieces from its stream, from the first up to its last."""
    key = analysis_key(job_id, "events")
    last_id: Any = "0-0"
    while True:
        try:
            reply = await redis.xread({key: last_id}, count=500, block=BLOCK_MS)
        except (RedisError, OSError) as error:
            log.warning("reading an analysis from Redis failed, retrying: %s", error)
            await asyncio.sleep(0.5)
            continue
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                last_id = entry_id
                kind, item = decode_piece(fields.get(b"piece", fields.get("piece")))
                yield kind, item
                if kind != "text":
                    return


class RedisAnalyses:
    """Send to LLM on the workers: the web process queues an analysis and relays its pieces."""

    def __init__(self, state: ServerState, jobs: ArqJobQueue) -> None:
        self.state = state
        self.jobs = jobs
        self.redis = jobs.redis

    async def start(
        self, user_id: str, trace: TraceRecord, body: AnalyzeBody
    ) -> AsyncGenerator[Piece, None]:
        """Queue the analysis (its endpoint sealed, if it names one); its pieces as they come."""
        vault = self.state.chat.vault
        sealed = endpoint_given(body)
        if sealed and vault is None:
            raise ApiError(400, "bad_request", CLIENT_ENDPOINTS_REFUSED)
        job_id = new_id()
        lease = analysis_lease(job_id)
        if sealed and vault is not None:
            await vault.seal_analysis(job_id, body)
        await self.jobs.leases.claim(lease)
        request = body.model_dump(exclude=set(ENDPOINT_FIELDS))
        args = (user_id, job_id, trace.id, request, sealed)
        job = FleetJob(ANALYSIS, args, lease, trace.blob_key, f"flamesight:analysis:{job_id}")

        async def lost(no_worker: bool) -> None:
            if vault is not None:
                await vault.drop_analysis(job_id)
            error = ApiError(
                503, "worker_lost", ANALYSIS_NO_WORKER if no_worker else ANALYSIS_WORKER_LOST
            )
            await add_pieces(self.redis, analysis_key(job_id, "events"), [("error", error)])

        await self.jobs.dispatch(job, lost)
        return follow_pieces(self.redis, job_id)


async def join_fleet(state: ServerState, redis_url: str) -> None:
    """Put `state`'s chat and analyses on Redis: the arq queues, the streams, the leases,
    and (with a secret key) the sealed endpoints."""
    redis = connect_redis(redis_url)
    try:
        await redis.ping()
    except BaseException:
        await redis.aclose()
        raise
    leases = RedisLeases(redis)
    chat = state.chat
    chat.bus = RedisEventBus(state, redis)
    chat.turns = RedisTurnGate(leases)
    jobs = ArqJobQueue(state, redis, leases)
    chat.jobs = jobs
    chat.analyses = RedisAnalyses(state, jobs)
    key = state.settings.secret_key
    if key is None:
        chat.client_endpoints_refused = CLIENT_ENDPOINTS_REFUSED
    else:
        chat.vault = RedisEndpointVault(redis, EndpointSealer(key), state.settings.url_policy)

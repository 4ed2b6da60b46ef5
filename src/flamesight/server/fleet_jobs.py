"""The worker's side of fleet mode: `flamesight worker` and the jobs it runs.

A worker runs two arq workers in one process, sharing its Redis
connection, its memory cache and its `ServerState`: one on the shared
queue, one on a queue of its own (`fleet.worker_key`), where web
processes put jobs about traces this worker holds. `CacheAdvert` says in
Redis that the worker is alive, how many more jobs its own queue can start,
and which trace blobs its cache holds,
refreshed every few seconds and at once when the cache changes (a trace
parsed, one dropped). SIGINT or SIGTERM stops both; running jobs are
cancelled and their clients told.

Each job first takes its lease (`RedisLeases.take`: one taker, so a job
handed from a worker's queue to the shared one runs once), then runs with
a heartbeat: ``chat_turn`` is `ChatService.run_turn`; ``analysis`` is
`analyze_routes.perform_analysis`, its pieces added to the analysis's
stream. A client's sealed endpoint is opened in memory here, never written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from flamesight.agent.events import ErrorEvent
from flamesight.llm import LLMError
from flamesight.server.analyze_routes import (
    AnalyzeBody,
    Piece,
    model_error,
    open_endpoint,
    perform_analysis,
)
from flamesight.server.chat import ChatTurnJob
from flamesight.server.chat_store import ChatRepository
from flamesight.server.errors import ApiError
from flamesight.server.fleet import (
    ANALYSIS,
    CHAT_TURN,
    QUEUE_NAME,
    TURN_TIMEOUT_S,
    WORKER_NAME,
    WORKER_STOPPED,
    ArqJobQueue,
    RedisLeases,
    RedisTurnGate,
    analysis_lease,
    holders_key,
    send_pieces,
    turn_lease,
    worker_key,
)
from flamesight.server.model_endpoints import ClientEndpoint, ModelEndpoint

if TYPE_CHECKING:
    from flamesight.server.cache import ProfileCache
    from flamesight.server.state import ServerState

log = logging.getLogger(__name__)

ALIVE_TTL_S = 10
"""How long a worker counts as alive after it last said so."""
ADVERT_EVERY_S = 3.0
HOLDERS_TTL_S = 30
"""How long a trace's list of holders lives after a worker last refreshed it."""
ANALYSIS_STOPPED = (
    "the worker stopped this analysis before it finished (it was shut down); ask again"
)


def leases_of(state: ServerState) -> RedisLeases:
    """The leases of a worker's state (fleet mode)."""
    gate = state.chat.turns
    assert isinstance(gate, RedisTurnGate)
    return gate.leases


async def run_chat_turn(
    ctx: dict[str, Any], owner_id: str, session_id: str, turn_id: str, sealed: bool = False
) -> None:
    """The worker's job: run the turn if it is the one to take it, with a heartbeat."""
    state: ServerState = ctx["state"]
    job = ChatTurnJob(owner_id, session_id, turn_id, sealed)
    leases = leases_of(state)
    if not await leases.take(turn_lease(job), ctx["job_id"]):
        log.warning("chat turn %s was taken by another worker or given up", turn_id)
        return
    log.info("chat turn %s of session %s runs on worker %s", turn_id, session_id, WORKER_NAME)
    advert: CacheAdvert = ctx["advert"]
    advert.job_started()
    async with leases.holding(turn_lease(job)):
        try:
            await state.chat.run_turn(job)
        except asyncio.CancelledError:
            # A worker shutting down, or arq's time limit: the turn is marked done, say why.
            session = await ChatRepository(state.sessions, owner_id).get_session(session_id)
            stopped = {"type": ErrorEvent.type, "message": WORKER_STOPPED}
            await state.chat.bus.publish(session, stopped)
            raise
        finally:
            advert.job_ending()


async def run_analysis(
    ctx: dict[str, Any],
    owner_id: str,
    job_id: str,
    trace_id: str,
    request: dict[str, Any],
    sealed: bool,
) -> None:
    """The worker's job: run a "Send to LLM" analysis, its pieces to its stream."""
    state: ServerState = ctx["state"]
    leases = leases_of(state)
    lease = analysis_lease(job_id)
    if not await leases.take(lease, ctx["job_id"]):
        log.warning("analysis %s was taken by another worker or given up", job_id)
        return
    log.info("analysis %s of trace %s runs on worker %s", job_id, trace_id, WORKER_NAME)
    advert: CacheAdvert = ctx["advert"]
    advert.job_started()
    redis: ArqRedis = leases.redis

    async def endpoint_of() -> ModelEndpoint:
        vault = state.chat.vault
        if not sealed:
            return await open_endpoint(state, ClientEndpoint())
        if vault is None:
            raise ApiError(400, "bad_request", "this worker has no FLAMESIGHT_SECRET_KEY")
        try:
            chosen, policy = await vault.take_analysis(job_id)
        except LLMError as error:
            raise model_error(error) from None
        return await open_endpoint(state, chosen, policy)

    pieces: asyncio.Queue[Piece] = asyncio.Queue()
    sender = asyncio.create_task(send_pieces(redis, job_id, pieces))
    try:
        async with leases.holding(lease):
            body = AnalyzeBody.model_validate(request)
            try:
                await perform_analysis(state, owner_id, trace_id, body, endpoint_of, pieces)
            except asyncio.CancelledError:
                pieces.put_nowait(("error", ApiError(503, "worker_stopped", ANALYSIS_STOPPED)))
                raise
            finally:
                await sender
    finally:
        sender.cancel()
        await leases.release(lease)
        advert.job_ending()


class CacheAdvert:
    """Tells Redis this worker is alive, how many more jobs its own queue can start, and
    which trace blobs its memory cache holds."""

    def __init__(
        self,
        redis: ArqRedis,
        cache: ProfileCache,
        free_slots: Callable[[], int],
        name: str = WORKER_NAME,
    ) -> None:
        self.redis = redis
        self.cache = cache
        self.free_slots = free_slots
        self.name = name
        self.advertised: set[str] = set()

    async def run(self) -> None:
        """Advertise every few seconds, and at once when the cache changes, until cancelled."""
        while True:
            self.cache.changed.clear()
            try:
                await self.advertise()
            except RedisError as error:
                log.warning("could not tell Redis which traces this worker holds: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.cache.changed.wait(), ADVERT_EVERY_S)

    def job_started(self) -> None:
        """A job started: when it took the own queue's last free slot, advertise now, so
        that web processes send jobs to the shared queue instead of waiting to hand them
        over (the cache's change event is what wakes the advert)."""
        if self.free_slots() <= 0:
            self.cache.changed.set()

    def job_ending(self) -> None:
        """A job is ending: when the own queue was full, advertise again once arq has freed
        the job's slot (it does so right after the job function returns)."""
        if self.free_slots() <= 0:
            asyncio.get_running_loop().call_later(0.05, self.cache.changed.set)

    async def advertise(self) -> None:
        """Say the worker is alive, list it as a holder of its cached blobs, and of no other."""
        held = set(self.cache.keys())
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(worker_key(self.name, "alive"), str(self.free_slots()), ex=ALIVE_TTL_S)
            for blob_key in held:
                pipe.hset(holders_key(blob_key), self.name, "1")
                pipe.expire(holders_key(blob_key), HOLDERS_TTL_S)
            for blob_key in self.advertised - held:
                pipe.hdel(holders_key(blob_key), self.name)
            await pipe.execute()
        self.advertised = held

    async def withdraw(self) -> None:
        """Say the worker is gone (at shutdown)."""
        with contextlib.suppress(RedisError):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(worker_key(self.name, "alive"))
                for blob_key in self.advertised:
                    pipe.hdel(holders_key(blob_key), self.name)
                await pipe.execute()


async def run_worker(settings: Any, max_jobs: int = 10) -> None:
    """`flamesight worker`: run jobs from the shared queue and its own until SIGINT or SIGTERM."""
    from arq.worker import Worker, func

    from flamesight.server.state import start_server, stop_server

    state = await start_server(settings)
    try:
        queue = state.chat.jobs
        assert isinstance(queue, ArqJobQueue)
        functions = [
            func(run_chat_turn, name=CHAT_TURN, max_tries=1, timeout=TURN_TIMEOUT_S),
            func(run_analysis, name=ANALYSIS, max_tries=1, timeout=TURN_TIMEOUT_S),
        ]
        ctx: dict[str, Any] = {"state": state}
        workers = [
            Worker(
                functions=functions,
                queue_name=name,
                redis_pool=queue.redis,
                ctx=ctx,
                max_jobs=max_jobs,
                poll_delay=0.1,
                keep_result=60,
                health_check_interval=30,
                handle_signals=name == QUEUE_NAME,
            )
            for name in (QUEUE_NAME, worker_key(WORKER_NAME, "jobs"))
        ]
        shared, own = workers
        shared.on_stop = own.handle_sig
        advert = CacheAdvert(queue.redis, state.cache, lambda: own.max_jobs - own.job_counter)
        ctx["advert"] = advert
        advertising = asyncio.create_task(advert.run())
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*(worker.async_run() for worker in workers))
        finally:
            advertising.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await advertising
            await advert.withdraw()
        for worker in workers:
            await worker.close()
    finally:
        await stop_server(state)

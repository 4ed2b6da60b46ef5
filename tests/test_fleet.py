"""Fleet mode for real: `flamesight serve --redis-url` and `flamesight worker` subprocesses.

Real Redis (the machine's on 127.0.0.1:6379, an empty database number of
its own, flushed at the end; a private `redis-server` for the restart),
real PostgreSQL (a new database per test), and the scripted model endpoint
on loopback named by FLAMESIGHT_LLM_URL. A chat's turns and a trace's
analyses stay on the worker that parsed the trace (each worker logs the
jobs it starts and the traces it parses) and move to the other one when
that worker is killed; a session is resumed through the other web process;
a worker is killed in the middle of a turn and of an analysis; a client
leaves an analysis half-way; a client's own model endpoint and credentials
(API key, OAuth client credentials) reach the workers sealed, and every
Redis key and value, the database and the logs are searched for them;
Redis is restarted under a running turn, the machine's PostgreSQL cluster
is stopped and started for real (only as root with `pg_ctlcluster`), and
the database goes away behind a TCP proxy that the test cuts and restores
(a network cut rather than a shutdown, and runnable without root).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import anyio
import asyncpg
import httpx
import orjson
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from websockets.asyncio.client import ClientConnection, connect

from flamesight.llm import LLMError, Secret
from flamesight.server import Settings, database
from flamesight.server import fleet as fleet_module
from flamesight.server.chat import TURN_CUT_OFF
from flamesight.server.chat_store import ChatRepository
from flamesight.server.database import create_engine, session_factory
from flamesight.server.fleet import (
    HEARTBEAT_TTL_S,
    LIVE_KEY,
    QUEUE_NAME,
    WORKER_LOST,
    ArqJobQueue,
    Lease,
    LostHandler,
    RedisEventBus,
    RedisLeases,
    connect_redis,
    holders_key,
    turn_key,
    worker_key,
)
from flamesight.server.model_endpoints import UNSEALABLE, ClientEndpoint, EndpointSealer
from flamesight.server.url_policy import UrlPolicy
from tests.live_server import LiveServer, free_port, secrets_left
from tests.llm_servers import (
    LoopbackServer,
    TokenIssuer,
    openai_error,
    openai_stream,
    openai_stream_stalled,
    require,
    slow,
)
from tests.test_server_analyze import analyze, bearer_is, upload
from tests.test_server_api import (  # noqa: F401
    POSTGRES_ADMIN_DSN,
    anyio_backend,
    fresh_postgres_database,
)
from tests.test_server_chat import receive, send, until_turn_ends
from tests.test_server_parts import StoredTrace, stored_trace  # noqa: F401 (a fixture)

pytestmark = pytest.mark.anyio

SPREAD_TIMEOUT = 120
"""Seconds a chat may take until both workers have run one of its turns."""

SHARED_REDIS = os.environ.get("FLAMESIGHT_TEST_REDIS", "redis://127.0.0.1:6379")
API_KEY = "sk-fleet-test-key-5e0c"
START_TIMEOUT = 60.0
FLAMESIGHT = [str(Path(sys.executable).with_name("flamesight"))]


@pytest.fixture
def redis_url() -> Iterator[str]:
    """An empty database of the machine's Redis, flushed afterwards; a skip without Redis."""
    try:
        probe = redis.Redis.from_url(SHARED_REDIS, socket_connect_timeout=2)
        probe.ping()
    except redis.RedisError as error:
        pytest.skip(f"Redis is not reachable at {SHARED_REDIS}: {error}")
    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{SHARED_REDIS}/{number}")
        if client.dbsize() == 0 and client.set("flamesight:test:claim", "1", nx=True):
            break
    else:
        pytest.skip("no empty Redis database number to test in")
    try:
        yield f"{SHARED_REDIS}/{number}"
    finally:
        client.flushdb()


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    """A new PostgreSQL database (a skip without the server)."""
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def model() -> Iterator[LoopbackServer]:
    """The scripted model: a short streamed answer unless a test scripts another."""
    with LoopbackServer(openai_stream(["Fine ", "answer."])) as server:
        yield server


class Process:
    """A `flamesight` subprocess, its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                [*FLAMESIGHT, *args], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        """What the process printed so far."""
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def kill(self) -> None:
        """kill -9."""
        self.popen.kill()
        self.popen.wait(5)


class Fleet:
    """Web processes and workers on one Redis, one database, one data folder."""

    def __init__(self, tmp: Path, redis_url: str, database_url: str, model_url: str) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self.database_url = database_url
        self.processes: list[Process] = []
        self.env = {
            **os.environ,
            "FLAMESIGHT_LLM_URL": model_url + "/v1",
            "FLAMESIGHT_LLM_API_KEY": API_KEY,
            "XDG_CONFIG_HOME": str(tmp / "config"),
        }
        self.common = [
            "--data-dir",
            str(tmp / "data"),
            "--database-url",
            database_url,
            "--redis-url",
            redis_url,
        ]

    def web(self) -> str:
        """Start `flamesight serve` on a free port; its URL once it answers."""
        port = free_port()
        log = self.tmp / f"web-{port}.log"
        process = Process(["serve", "--port", str(port), *self.common], self.env, log)
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.popen.poll() is None, process.output()
            try:
                if httpx.get(url + "/api/traces", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, process.output()
            time.sleep(0.1)

    def worker(self) -> Process:
        """Start `flamesight worker`; it once it polls the queue."""
        log = self.tmp / f"worker-{len(self.processes)}.log"
        process = Process(["worker", *self.common], self.env, log)
        self.processes.append(process)
        deadline = time.monotonic() + START_TIMEOUT
        while "Starting worker" not in process.output() or not _health_checked(self.redis_url):
            assert process.popen.poll() is None, process.output()
            assert time.monotonic() < deadline, process.output()
            time.sleep(0.1)
        return process

    def stop(self) -> None:
        """Stop every process."""
        for process in self.processes:
            process.stop()


def _health_checked(redis_url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(redis_url).exists(f"{QUEUE_NAME}:health-check"))
    except redis.RedisError:
        return False


@pytest.fixture
def fleet(
    tmp_path: Path, redis_url: str, database_url: str, model: LoopbackServer
) -> Iterator[Fleet]:
    """A fleet on the machine's Redis and a new PostgreSQL database (processes started by tests)."""
    running = Fleet(tmp_path, redis_url, database_url, model.url)
    try:
        yield running
    finally:
        running.stop()


def ws_url(url: str) -> str:
    """The chat socket of a web process."""
    return url.replace("http://", "ws://") + "/ws/chat"


async def new_trace(url: str) -> str:
    """Upload the example profile through `url`; its trace id."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await upload(client)


async def one_of_each(fleet: Fleet) -> tuple[str, Process, str]:
    """A web process and a worker started; the web's URL, the worker, a new trace's id."""
    web = fleet.web()
    worker = fleet.worker()
    return web, worker, await new_trace(web)


async def test_turns_stay_on_the_worker_holding_the_trace_and_resume_elsewhere(
    fleet: Fleet, model: LoopbackServer
) -> None:
    first, second = fleet.web(), fleet.web()
    workers = [fleet.worker(), fleet.worker()]
    trace_id = await new_trace(first)
    async with httpx.AsyncClient(base_url=first, timeout=60) as client:
        body = {"preset": 1, "url": "http://127.0.0.1:1/v1", "auth": {"apiKey": "sk-x-1234"}}
        response, _ = await analyze(client, trace_id, body)
    assert response.status_code == 400 and "FLAMESIGHT_SECRET_KEY" in response.text
    async with connect(ws_url(first)) as socket_:
        await send(socket_, type="start_analysis", traceId=trace_id, url="http://127.0.0.1:1/v1")
        refused = await receive(socket_)
        assert refused["type"] == "error" and "worker" in refused["message"]
        assert "FLAMESIGHT_SECRET_KEY" in refused["message"]
        await send(socket_, type="start_analysis", traceId=trace_id)
        ack = await receive(socket_)
        assert ack["type"] == "connection_ack" and ack["seq"] == 0
        turns = []
        prompts = [f"Question {n}?" for n in range(1, 4)]
        for prompt in prompts:
            await send(socket_, type="user_prompt", prompt=prompt)
            turns += await until_turn_ends(socket_)
            assert turns[-1]["type"] == "model_response_end", turns[-1]
        # The first turn parsed the trace on one worker; the others went to that worker.
        ran = turns_by_worker(workers, ack["sessionId"])
        assert sorted(ran) == [0, len(prompts)], ran
        holder = workers[ran.index(len(prompts))]
        assert parses(holder) == 1
        # A slow answer: the socket goes away, the other web process resumes the session.
        model.script(slow(2, openai_stream([f"piece {n} " for n in range(20)])))
        await send(socket_, type="user_prompt", prompt="Slow one?")
        before = [await receive(socket_)]
    assert before[0]["type"] == "waiting_for_model"
    async with connect(ws_url(second)) as socket_:
        await send(socket_, type="resume", sessionId=ack["sessionId"], afterSeq=before[-1]["seq"])
        resumed = await receive(socket_)
        assert resumed["type"] == "connection_ack" and resumed["resumed"] is True
        after = await until_turn_ends(socket_)
    seen = turns + before + after
    assert [event["seq"] for event in seen] == list(range(1, len(seen) + 1))
    assert seen[-1]["type"] == "model_response_end"
    async with connect(ws_url(second)) as socket_:
        await send(socket_, type="resume", sessionId=ack["sessionId"], afterSeq=0)
        await receive(socket_)
        replayed = [await receive(socket_) for _ in seen]
        assert replayed == seen
        await send(socket_, type="start_analysis", traceId=trace_id)
        history = (await receive(socket_))["history"]
    assert [m["content"] for m in history if m["role"] == "user"] == [*prompts, "Slow one?"]
    assert len([m for m in history if m["role"] == "assistant"]) == len(prompts) + 1
    assert turns_by_worker([holder], ack["sessionId"]) == [len(prompts) + 1]
    assert parses(holder) == 1


def turns_by_worker(workers: list[Process], session_id: str) -> list[int]:
    """How many turns of the session each worker started (from its log lines)."""
    return [p.output().count(f"of session {session_id} runs on worker") for p in workers]


def analyses_by_worker(workers: list[Process], trace_id: str) -> list[int]:
    """How many analyses of the trace each worker started (from its log lines)."""
    return [p.output().count(f"of trace {trace_id} runs on worker") for p in workers]


def parses(worker: Process) -> int:
    """How many traces the worker has parsed (from its log lines)."""
    return worker.output().count("parsing a trace")


async def test_a_worker_killed_mid_turn_ends_the_turn_with_an_error(
    fleet: Fleet, model: LoopbackServer
) -> None:
    web, worker, trace_id = await one_of_each(fleet)
    model.script(slow(120, openai_stream(["never sent"])))
    async with connect(ws_url(web)) as socket_:
        await send(socket_, type="start_analysis", traceId=trace_id)
        await receive(socket_)
        await send(socket_, type="user_prompt", prompt="Will you answer?")
        assert (await receive(socket_))["type"] == "waiting_for_model"
        with anyio.fail_after(30):
            while not model.requests:
                await anyio.sleep(0.05)
        worker.kill()
        killed_at = time.monotonic()
        with anyio.fail_after(30):
            failed = await until_turn_ends(socket_)
        assert time.monotonic() - killed_at < 20
        assert failed[-1]["type"] == "error" and failed[-1]["message"] == WORKER_LOST
        await next_prompt_works_with_a_new_worker(fleet, socket_, trace_id)


async def next_prompt_works_with_a_new_worker(
    fleet: Fleet, socket_: ClientConnection, trace_id: str
) -> None:
    """After the turn asking "Will you answer?" was lost: a new worker answers the next
    prompt, and the history holds both questions and that answer."""
    fleet.worker()
    await send(socket_, type="user_prompt", prompt="Now?")
    with anyio.fail_after(60):
        worked = await until_turn_ends(socket_)
    assert worked[-1]["type"] == "model_response_end", worked
    await send(socket_, type="start_analysis", traceId=trace_id)
    history = (await receive(socket_))["history"]
    assert [(m["role"], m["content"]) for m in history] == [
        ("user", "Will you answer?"),
        ("user", "Now?"),
        ("assistant", "Fine answer."),
    ]


async def test_a_slow_model_times_out_without_holding_up_other_sessions(
    fleet: Fleet, model: LoopbackServer
) -> None:
    config = fleet.tmp / "config" / "flamesight" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[llm]\ntimeout = 4\nmax_retries = 0\n")
    web = fleet.web()
    fleet.worker()
    trace_id = await new_trace(web)
    model.script(slow(60, openai_stream(["too late"])))
    async with connect(ws_url(web)) as stuck, connect(ws_url(web)) as other:
        await send(stuck, type="start_analysis", traceId=trace_id, newSession=True)
        await receive(stuck)
        await send(other, type="start_analysis", traceId=trace_id, newSession=True)
        await receive(other)
        await send(stuck, type="user_prompt", prompt="Slow?")
        with anyio.fail_after(30):
            while not model.requests:
                await anyio.sleep(0.05)
        asked_at = time.monotonic()
        await send(other, type="user_prompt", prompt="Quick?")
        with anyio.fail_after(30):
            quick = await until_turn_ends(other)
        assert quick[-1]["type"] == "model_response_end", quick
        with anyio.fail_after(30):
            failed = await until_turn_ends(stuck)
        assert failed[-1]["type"] == "error", failed
        assert time.monotonic() - asked_at < 20
        await send(stuck, type="user_prompt", prompt="Again?")
        with anyio.fail_after(30):
            again = await until_turn_ends(stuck)
        assert again[-1]["type"] == "model_response_end", again


async def test_analyses_run_on_the_worker_holding_the_trace_and_on_another_when_it_dies(
    fleet: Fleet, model: LoopbackServer
) -> None:
    web = fleet.web()
    workers = [fleet.worker(), fleet.worker()]
    trace_id = await new_trace(web)
    async with httpx.AsyncClient(base_url=web, timeout=60) as client:
        done = []
        for preset in (1, 2):
            response, events = await analyze(client, trace_id, {"preset": preset})
            assert response.status_code == 200, response.text
            assert [data["text"] for name, data in events if name == "text"] == ["Fine ", "answer."]
            assert events[-1][0] == "done", events
            done.append(events[-1][1])
        ran = analyses_by_worker(workers, trace_id)
        assert sorted(ran) == [0, 2], ran
        holder, other = (workers[0], workers[1]) if ran[0] else (workers[1], workers[0])
        assert parses(holder) == 1
        assert done[1]["prompt"] == "Find the most time-consuming functions"
        assert done[1]["answer"] == "Fine answer." and done[1]["usage"]["total_tokens"] == 1248
        listing = (await client.get(f"/api/traces/{trace_id}/analyses")).json()["analyses"]
        assert [item["id"] for item in listing] == [done[1]["id"], done[0]["id"]]
        assert (await client.get(done[1]["url"])).json() == done[1]
        async with connect(ws_url(web)) as socket_:
            await send(socket_, type="start_analysis", traceId=trace_id)
            ack = await receive(socket_)
            await send(socket_, type="user_prompt", prompt="Which worker?")
            assert (await until_turn_ends(socket_))[-1]["type"] == "model_response_end"
            assert turns_by_worker([holder, other], ack["sessionId"]) == [1, 0]
            assert parses(holder) == 1
            # The holder dies: its queue is not read any more, the jobs go to the other.
            holder.kill()
            await send(socket_, type="user_prompt", prompt="And now?")
            with anyio.fail_after(30):
                turn = await until_turn_ends(socket_)
            assert turn[-1]["type"] == "model_response_end", turn
            assert turns_by_worker([holder, other], ack["sessionId"]) == [1, 1]
        with anyio.fail_after(30):
            response, events = await analyze(client, trace_id, {"preset": 3})
        assert events[-1][0] == "done", events
        assert analyses_by_worker([holder, other], trace_id) == [2, 1]
        assert parses(other) == 1


async def test_a_client_gone_mid_analysis_does_not_stop_it_being_stored(
    fleet: Fleet, model: LoopbackServer
) -> None:
    web, _, trace_id = await one_of_each(fleet)
    model.script(openai_stream_stalled(["First ", "words "], 3))
    async with httpx.AsyncClient(base_url=web, timeout=60) as client:
        url = f"/api/traces/{trace_id}/analyze"
        async with client.stream("POST", url, json={"prompt": "Gone?"}) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("event: text"):
                    break
        with anyio.fail_after(30):
            while True:
                listing = (await client.get(f"/api/traces/{trace_id}/analyses")).json()
                if listing["analyses"]:
                    break
                await anyio.sleep(0.2)
    assert listing["analyses"][0]["answer"] == "First words "
    assert listing["analyses"][0]["prompt"] == "Gone?"


async def test_a_worker_killed_mid_analysis_ends_it_with_an_error_event(
    fleet: Fleet, model: LoopbackServer
) -> None:
    web, worker, trace_id = await one_of_each(fleet)
    model.script(openai_stream_stalled(["Half "], 120))
    events: list[tuple[str, Any]] = []
    async with httpx.AsyncClient(base_url=web, timeout=60) as client:
        url = f"/api/traces/{trace_id}/analyze"
        async with client.stream("POST", url, json={"preset": 1}) as response:
            assert response.status_code == 200
            name = ""
            with anyio.fail_after(30):
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        events.append((name, orjson.loads(line[6:])))
                        if name == "text":
                            worker.kill()
                            killed_at = time.monotonic()
        assert time.monotonic() - killed_at < 20
        assert events[0] == ("text", {"text": "Half "})
        name, error = events[-1]
        assert name == "error" and "worker" in error["error"]["message"], events
        assert (await client.get(f"/api/traces/{trace_id}/analyses")).json()["analyses"] == []
        fleet.worker()
        response, after = await analyze(client, trace_id, {"preset": 1})
        assert after[-1][0] == "done", after


CLIENT_KEY = "sk-client-given-9f3a7c51d2"
CLIENT_SECRET = "oauth-client-given-secret-4b81e"
SECRET_KEY = "fleet-shared-secret-key-0123456789abcdef"


def redis_dump(redis_url: str) -> bytes:
    """Every key and value of the Redis database (strings, hashes, sets, lists, streams)."""
    client = redis.Redis.from_url(redis_url)
    parts: list[bytes] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key)
        if kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"hash":
            parts += [b"%s=%s" % item for item in client.hgetall(key).items()]
        elif kind == b"set":
            parts += list(client.smembers(key))
        elif kind == b"zset":
            parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"list":
            parts += client.lrange(key, 0, -1)
        elif kind == b"stream":
            for _id, fields in client.xrange(key):
                parts += [b"%s=%s" % item for item in fields.items()]
    return b"\n".join(parts)


async def test_client_endpoints_reach_workers_sealed_and_never_in_the_clear(
    fleet: Fleet, redis_url: str, database_url: str
) -> None:
    issuer = TokenIssuer("flamesight-client", CLIENT_SECRET)
    accepts = lambda request: bearer_is(CLIENT_KEY)(request) or issuer.bearer_is_valid(request)  # noqa: E731
    reply = require(accepts, openai_stream(["Client ", "model."]), openai_error(401, "bad key"))
    fleet.env["FLAMESIGHT_SECRET_KEY"] = SECRET_KEY
    dumps: list[bytes] = []
    with LoopbackServer(reply) as client_model, LoopbackServer(issuer) as tokens:
        web = fleet.web()
        worker = fleet.worker()
        trace_id = await new_trace(web)
        endpoint = {"url": client_model.url + "/v1", "auth": {"apiKey": CLIENT_KEY}}
        async with connect(ws_url(web)) as socket_:
            await send(socket_, type="start_analysis", traceId=trace_id, **endpoint)
            ack = await receive(socket_)
            assert ack["type"] == "connection_ack", ack
            await send(socket_, type="user_prompt", prompt="Whose model?")
            turn = await until_turn_ends(socket_)
            assert turn[-1]["type"] == "model_response_end", turn
            text = "".join(e["text"] for e in turn if e["type"] == "model_chunk_append")
            assert text == "Client model."
            sealed_key = f"flamesight:chat:{ack['sessionId']}:endpoint"
            assert redis.Redis.from_url(redis_url).exists(sealed_key)
            dumps.append(redis_dump(redis_url))
        with anyio.fail_after(10):
            while redis.Redis.from_url(redis_url).exists(sealed_key):
                await anyio.sleep(0.1)
        block = f"{tokens.url}/oauth2/token\nflamesight-client\n{CLIENT_SECRET}\n"
        async with httpx.AsyncClient(base_url=web, timeout=60) as client:
            for auth in ({"apiKey": CLIENT_KEY}, {"oauth": block}):
                body = {"preset": 1, "url": client_model.url + "/v1", "auth": auth}
                response, events = await analyze(client, trace_id, body)
                assert response.status_code == 200, response.text
                assert events[-1][0] == "done", events
                assert events[-1][1]["answer"] == "Client model."
                dumps.append(redis_dump(redis_url))
    assert analyses_by_worker([worker], trace_id) == [2]
    assert [r.headers.get("authorization") for r in client_model.requests[:2]] == [
        f"Bearer {CLIENT_KEY}"
    ] * 2
    assert issuer.issued and client_model.requests[-1].headers["authorization"] == (
        f"Bearer {issuer.issued[-1]}"
    )
    fleet.stop()
    dumps.append(redis_dump(redis_url))
    secrets = [CLIENT_KEY, CLIENT_SECRET, *issuer.issued]
    for dump in dumps:
        assert not [s for s in secrets if s.encode() in dump]
    settings = Settings(data_dir=fleet.tmp / "data", database_url=database_url)
    assert await secrets_left(settings, secrets) == []
    for process in fleet.processes:
        assert not [s for s in secrets if s in process.output()]


async def test_a_sealed_endpoint_opens_only_with_its_key_and_for_its_place() -> None:
    chosen = ClientEndpoint.model_validate(
        {"url": "http://127.0.0.1:9/v1", "model": "m", "auth": {"apiKey": CLIENT_KEY}}
    )
    sealer = EndpointSealer(Secret(SECRET_KEY))
    policy = UrlPolicy(allow_loopback=False, allow_private=True)
    sealed = sealer.seal(chosen, policy, "flamesight:chat:a:endpoint")
    assert CLIENT_KEY.encode() not in sealed and b"127.0.0.1" not in sealed
    assert sealer.open(sealed, "flamesight:chat:a:endpoint") == (chosen, policy)
    other = EndpointSealer(Secret(SECRET_KEY[::-1]))
    for opener, where in (
        (sealer, "flamesight:chat:b:endpoint"),
        (other, "flamesight:chat:a:endpoint"),
    ):
        with pytest.raises(LLMError) as failure:
            opener.open(sealed, where)
        assert failure.value.message == UNSEALABLE


class PrivateRedis:
    """A `redis-server` of this test's own on a free port, with no persistence."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis://127.0.0.1:PORT/0"""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers."""
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(self.tmp)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.RedisError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        """kill -9 (everything it held is gone: no persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private Redis (a skip when redis-server is not installed)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_a_restarted_redis_loses_no_event_of_a_running_turn(
    tmp_path: Path, private_redis: PrivateRedis, database_url: str, model: LoopbackServer
) -> None:
    fleet = Fleet(tmp_path, private_redis.url, database_url, model.url)
    try:
        web = fleet.web()
        fleet.worker()
        trace_id = await new_trace(web)
        model.script(slow(4, openai_stream([f"part {n} " for n in range(10)])))
        async with connect(ws_url(web)) as socket_:
            await send(socket_, type="start_analysis", traceId=trace_id)
            await receive(socket_)
            await send(socket_, type="user_prompt", prompt="Through a restart?")
            first = await receive(socket_)
            with anyio.fail_after(30):
                while not model.requests:
                    await anyio.sleep(0.05)
            private_redis.kill()
            await anyio.sleep(1)
            private_redis.start()
            with anyio.fail_after(60):
                rest = await until_turn_ends(socket_)
            seen = [first, *rest]
            assert [event["seq"] for event in seen] == list(range(1, len(seen) + 1)), seen
            assert seen[-1]["type"] == "model_response_end", seen
            text = "".join(e["text"] for e in seen if e["type"] == "model_chunk_append")
            assert text == "".join(f"part {n} " for n in range(10))
            await send(socket_, type="user_prompt", prompt="And after?")
            with anyio.fail_after(60):
                after = await until_turn_ends(socket_)
            assert after[-1]["type"] == "model_response_end", after
            assert after[0]["seq"] == seen[-1]["seq"] + 1
    finally:
        fleet.stop()


class CuttableProxy:
    """A TCP proxy on loopback to `target`; `cut` drops every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None

    def restore(self) -> None:
        """Listen (again) on the same port."""
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Stop listening and close every proxied connection."""
        if self.listener is not None:
            with _suppress_os():
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            self.listener.close()
            self.listener = None
        with self.lock:
            for sock in self.sockets:
                with _suppress_os():
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with _suppress_os():
            while data := source.recv(65536):
                sink.sendall(data)
        with _suppress_os():
            sink.shutdown(socket.SHUT_WR)


class _suppress_os:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, *_: Any) -> bool:
        return kind is not None and issubclass(kind, OSError)


async def test_a_database_outage_answers_503_and_then_recovers(
    tmp_path: Path, database_url: str
) -> None:
    prefix, _, rest = database_url.partition("@")
    hostport, _, name = rest.partition("/")
    host, _, port = hostport.partition(":")
    proxy = CuttableProxy((host, int(port or 5432)))
    proxy.restore()
    proxied = f"{prefix}@127.0.0.1:{proxy.port}/{name}"
    try:
        with LiveServer(Settings(data_dir=tmp_path / "data", database_url=proxied)) as live:
            async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
                assert (await client.get("/api/traces")).status_code == 200
                proxy.cut()
                for _ in range(2):
                    down = await client.get("/api/traces")
                    assert down.status_code == 503, down.text
                    assert down.json()["error"]["code"] == "unavailable"
                proxy.restore()
                back = await client.get("/api/traces")
                assert back.status_code == 200, back.text
                trace_id = await upload(client)
                assert (await client.get(f"/api/traces/{trace_id}")).status_code == 200
    finally:
        proxy.cut()


async def test_a_job_goes_to_a_holder_with_room_and_takes_a_place_of_it(redis_url: str) -> None:
    """`choose_queue`: a live worker holding the trace with room left, its advertised room
    one less for each job sent (web processes choosing at once do not overfill it), the
    shared queue when no holder has room."""
    redis = connect_redis(redis_url)
    jobs = ArqJobQueue(cast(Any, None), redis, RedisLeases(redis))
    blob = "owner/trace.json"
    try:
        await redis.hset(holders_key(blob), mapping={"busy": "1", "free": "1", "gone": "1"})
        await redis.set(worker_key("busy", "alive"), "0", ex=10)
        await redis.set(worker_key("free", "alive"), "2", ex=10)
        chosen = [await jobs.choose_queue(blob) for _ in range(3)]
        assert chosen == [worker_key("free", "jobs")] * 2 + [QUEUE_NAME]
        assert await redis.get(worker_key("free", "alive")) == b"0"
        assert 0 < await redis.ttl(worker_key("free", "alive")) <= 10
        assert await jobs.choose_queue("owner/other.json") == QUEUE_NAME
    finally:
        await redis.aclose()


class Gate:
    """Wraps an async function so that calls wait while the gate is shut."""

    def __init__(self, function: Any) -> None:
        self.function = function
        self.open = asyncio.Event()
        self.open.set()
        self.waiting = asyncio.Event()

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.open.is_set():
            self.waiting.set()
            await self.open.wait()
        return await self.function(*args, **kwargs)


async def test_live_events_reach_their_subscribers_once_in_order_and_gaps_are_filled(
    redis_url: str,
    stored_trace: StoredTrace,  # noqa: F811 (the fixture)
) -> None:
    """Two buses on one Redis and database, as two processes: what one publishes reaches
    the other's subscribers through the live stream, only their session's events, from
    after the newest stored. Events published but not yet stored when a client
    subscribes, and events trimmed from the live stream before a slow reader read them,
    are read from the session's stream: every event is handed on once, in seq order."""
    engine, sessions, trace = stored_trace.engine, stored_trace.sessions, stored_trace.trace
    chats = ChatRepository(sessions, stored_trace.owner)
    mine, other = await chats.create_session(trace.id), await chats.create_session(trace.id)
    state = cast(Any, SimpleNamespace(engine=engine, sessions=sessions))
    publisher = RedisEventBus(state, connect_redis(redis_url))
    follower = RedisEventBus(state, connect_redis(redis_url))

    def text(*words: str) -> list[dict[str, Any]]:
        return [{"type": "model_chunk_append", "text": word} for word in words]

    async def received(queue: asyncio.Queue[dict[str, Any]], count: int) -> list[Any]:
        events = [await asyncio.wait_for(queue.get(), 10) for _ in range(count)]
        await asyncio.sleep(0.2)  # nothing more comes
        assert queue.empty()
        return [(event["seq"], event["text"]) for event in events]

    try:
        await publisher.publish_many(mine, text("before", "subscribing"))
        # Published, not yet stored (the writer is held up): the subscriber reads them from
        # the session's stream.
        writes = Gate(publisher.writer._write)
        publisher.writer._write = writes  # type: ignore[method-assign]
        writes.open.clear()
        _numbered, kept = await publisher.publish_batch([(mine, text("not", "stored"))])
        await asyncio.wait_for(writes.waiting.wait(), 10)
        assert await chats.last_seq(mine.id) == 2
        async with follower.subscribe(mine.id) as queue:
            assert await received(queue, 2) == [(3, "not"), (4, "stored")]
            writes.open.set()
            await kept
            assert await chats.last_seq(mine.id) == 4

            await publisher.publish_batch([(mine, text("one", "two")), (other, text("other"))])
            assert await received(queue, 2) == [(5, "one"), (6, "two")]

            # A reader that falls behind while the live stream is trimmed past its place.
            reads = Gate(follower.redis.xread)
            follower.redis.xread = reads  # type: ignore[method-assign]
            reads.open.clear()
            await publisher.publish_many(other, text("other"))
            await asyncio.wait_for(reads.waiting.wait(), 10)
            await publisher.publish_many(mine, text("trimmed", "away"))
            await publisher.redis.xtrim(LIVE_KEY, maxlen=0)
            await publisher.publish_batch([(other, text("other")), (mine, text("three"))])
            reads.open.set()
            assert await received(queue, 3) == [(7, "trimmed"), (8, "away"), (9, "three")]

            # An entry that is not the live stream's kind is skipped, not the end of reading.
            await publisher.redis.xadd(LIVE_KEY, {mine.id: b"not an entry"})
            await publisher.publish_many(mine, text("four"))
            assert await received(queue, 1) == [(10, "four")]
        assert follower.reader.followers == {}
        replayed = await follower.replay(mine, 6)
        assert [(event["seq"], event["text"]) for event in replayed] == [
            (7, "trimmed"),
            (8, "away"),
            (9, "three"),
            (10, "four"),
        ]
    finally:
        for bus in (publisher, follower):
            await bus.close()
            await bus.redis.aclose()


async def test_heartbeats_and_checks_asked_together_get_their_own_answers(
    redis_url: str,
) -> None:
    """`RedisLeases.refresh` and `state`, asked in the same turn of the event loop, go
    out in one pipeline; each caller still gets the answer about its own lease."""
    redis = connect_redis(redis_url)
    leases = RedisLeases(redis)
    running, lost, done, waiting = (Lease(f"test:lease:{n}", f"job-{n}") for n in range(4))
    try:
        for lease in (running, lost, done, waiting):
            assert await leases.claim(lease)
        for lease in (running, lost, done):
            assert await leases.take(lease, f"arq:{lease.job_id}")
        await redis.delete(lost.key)
        # The web process gave the job up: no refresh brings it back, nobody gives it up again.
        assert await leases.give_up(lost)
        assert not await leases.give_up(lost)
        await leases.release(done)
        answers = await asyncio.gather(
            leases.refresh(running),
            leases.refresh(lost),
            leases.state(running),
            leases.state(lost),
            leases.state(done),
            leases.state(waiting),
        )
        assert answers == [True, False, "running", "done", "done", "waiting"]
        assert 0 < await redis.pttl(running.key) <= HEARTBEAT_TTL_S * 1000
        assert await redis.get(lost.key) is None
        await redis.delete(waiting.key)
        assert await leases.state(waiting) == "lost"  # gone without being done
    finally:
        await redis.aclose()


async def test_a_lost_job_is_told_once_and_says_whether_a_worker_had_taken_it(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ArqJobQueue.watch`: a job a worker took and then lost is a lost worker however long
    it ran, one never taken is a job no worker took; two processes watching one job tell
    the client once; a job that ends is not lost."""
    monkeypatch.setattr(fleet_module, "WATCH_EVERY_S", 0.05)
    monkeypatch.setattr(fleet_module, "WATCH_GRACE_S", 0.2)
    redis = connect_redis(redis_url)
    here, there = (ArqJobQueue(cast(Any, None), redis, RedisLeases(redis)) for _ in range(2))
    leases = here.leases
    taken, never_taken, ended = (Lease(f"test:turn:{n}", f"job-{n}") for n in range(3))
    told: list[tuple[str, str, bool]] = []

    def tell(process: str, lease: Lease) -> LostHandler:
        async def lost(no_worker: bool) -> None:
            told.append((process, lease.job_id, no_worker))

        return lost

    try:
        for lease in (taken, never_taken, ended):
            assert await leases.claim(lease)
        for lease in (taken, ended):
            assert await leases.take(lease, f"arq:{lease.job_id}")
        watches = [
            here.watch(taken, tell("here", taken)),
            # Another web process adopts the watch; it saw the job running when it began.
            there.watch(taken, tell("there", taken), taken=True),
            here.watch(never_taken, tell("here", never_taken)),
            here.watch(ended, tell("here", ended)),
        ]
        with anyio.fail_after(10):
            watching = asyncio.gather(*watches)
            await asyncio.sleep(0.5)
            assert here._watched == {taken, never_taken, ended} and there._watched == {taken}
            await leases.release(ended)
            await redis.delete(taken.key, never_taken.key)  # the worker died; none took the other
            await watching
        assert sorted((job, no_worker) for _, job, no_worker in told) == [
            ("job-0", False),
            ("job-1", True),
        ]
        assert here._watched == there._watched == set()
    finally:
        await redis.aclose()


async def ask_what_is_never_answered(
    url: str, trace_id: str, model: LoopbackServer
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new session on the web process `url` asks "Will you answer?" of a model that never
    answers; its `connection_ack` and `waiting_for_model` once the model has the request
    (the socket is closed then; the turn goes on)."""
    model.script(slow(120, openai_stream(["never sent"])))
    async with connect(ws_url(url)) as socket_:
        await send(socket_, type="start_analysis", traceId=trace_id)
        ack = await receive(socket_)
        await send(socket_, type="user_prompt", prompt="Will you answer?")
        waiting = await receive(socket_)
        assert waiting["type"] == "waiting_for_model"
        with anyio.fail_after(30):
            while not model.requests:
                await anyio.sleep(0.05)
    return ack, waiting


async def test_a_socket_bound_elsewhere_hears_of_a_turn_lost_with_its_web_process(
    fleet: Fleet, model: LoopbackServer
) -> None:
    """The web process that queued a turn and the worker running it both die: a socket
    that resumes the session on another web process still gets the `error` event, and
    the next prompt works."""
    first, second = fleet.web(), fleet.web()
    worker = fleet.worker()
    trace_id = await new_trace(first)
    ack, waiting = await ask_what_is_never_answered(first, trace_id, model)
    web_process = next(p for p in fleet.processes if first.rsplit(":", 1)[1] in p.args)
    web_process.kill()
    worker.kill()
    killed_at = time.monotonic()
    async with connect(ws_url(second)) as socket_:
        await send(socket_, type="resume", sessionId=ack["sessionId"], afterSeq=waiting["seq"])
        assert (await receive(socket_))["resumed"] is True
        with anyio.fail_after(30):
            failed = await until_turn_ends(socket_)
        assert time.monotonic() - killed_at < 20
        assert [event["type"] for event in failed] == ["error"]
        assert failed[0]["message"] == WORKER_LOST and failed[0]["seq"] == waiting["seq"] + 1
        await next_prompt_works_with_a_new_worker(fleet, socket_, trace_id)


async def test_a_turn_cut_off_with_the_whole_fleet_is_ended_when_a_socket_comes_back(
    fleet: Fleet, model: LoopbackServer
) -> None:
    """Every web process and worker dies while a turn runs: once the turn's key has expired
    unwatched, the first socket bound to the session on the new fleet gets the `error`
    event that ends the turn, and the next prompt works."""
    web, _, trace_id = await one_of_each(fleet)
    ack, waiting = await ask_what_is_never_answered(web, trace_id, model)
    for process in fleet.processes:
        process.kill()
    await anyio.sleep(HEARTBEAT_TTL_S + 1)
    assert not redis.Redis.from_url(fleet.redis_url).exists(turn_key(ack["sessionId"]))
    async with connect(ws_url(fleet.web())) as socket_:
        await send(socket_, type="resume", sessionId=ack["sessionId"], afterSeq=waiting["seq"])
        assert (await receive(socket_))["resumed"] is True
        with anyio.fail_after(30):
            failed = await until_turn_ends(socket_)
        assert failed == [{"type": "error", "message": TURN_CUT_OFF, "seq": waiting["seq"] + 1}]
        await next_prompt_works_with_a_new_worker(fleet, socket_, trace_id)


async def test_a_pooled_connection_killed_while_idle_is_replaced_before_use(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection unused for `PING_AFTER_IDLE_S` is checked at checkout; one used just
    before is not (so a busy pool makes no extra round trips), and then fails."""
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    admin = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=5)

    async def kill_pooled_backend() -> None:
        async with sessions() as session:
            pid = await session.scalar(text("SELECT pg_backend_pid()"))
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)

    async def select_one() -> int | None:
        async with sessions() as session:
            return await session.scalar(text("SELECT 1"))

    try:
        monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 3600.0)
        await kill_pooled_backend()
        with pytest.raises(DBAPIError) as failed:
            await select_one()
        assert failed.value.connection_invalidated
        assert await select_one() == 1  # the dead connection was dropped

        monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 0.05)
        await kill_pooled_backend()
        await anyio.sleep(0.1)
        assert await select_one() == 1
    finally:
        await admin.close()
        await engine.dispose()


def _postgres_cluster() -> tuple[str, str] | None:
    """(version, name) of the local cluster on port 5432 when this test may restart it."""
    if os.geteuid() != 0 or shutil.which("pg_ctlcluster") is None or not _pg_isready():
        return None
    listed = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        version, name, port, status, *_ = line.split()
        if port == "5432" and status == "online":
            return version, name
    return None


def _pg_isready() -> bool:
    ready = subprocess.run(
        ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-t", "2"], capture_output=True, check=False
    )
    return ready.returncode == 0


def _pg_ctlcluster(cluster: tuple[str, str], action: str) -> None:
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            *cluster,
            action,
            *(["-m", "fast"] * (action == "stop")),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
async def restartable_database_url() -> AsyncIterator[str]:
    """A new PostgreSQL database, dropped afterwards through a new connection (the server
    restarts in between, so no connection opened before survives)."""
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_DSN}: {error}")
    name = f"flamesight_test_{secrets.token_hex(6)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{dsn}/{name}"
    finally:
        with anyio.fail_after(60):
            while not await anyio.to_thread.run_sync(_pg_isready):
                await anyio.sleep(0.2)
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_a_restarted_postgresql_answers_503_and_then_recovers(
    tmp_path: Path, redis_url: str, restartable_database_url: str, model: LoopbackServer
) -> None:
    """The machine's PostgreSQL stopped and started for real under a web process and a worker.

    Only as root with `pg_ctlcluster` and the cluster online at the start; the cluster is
    started again in any case, and the test ends only when `pg_isready` answers (other
    tests share this server).
    """
    if shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        pytest.skip("restarting PostgreSQL needs root and pg_ctlcluster")
    cluster = _postgres_cluster()
    if cluster is None:
        pytest.skip("no online PostgreSQL cluster on port 5432 to restart")
    fleet = Fleet(tmp_path, redis_url, restartable_database_url, model.url)
    try:
        web = fleet.web()
        fleet.worker()
        trace_id = await new_trace(web)
        async with connect(ws_url(web)) as socket_, httpx.AsyncClient(base_url=web) as client:
            await send(socket_, type="start_analysis", traceId=trace_id)
            await receive(socket_)
            await send(socket_, type="user_prompt", prompt="Before?")
            before = await until_turn_ends(socket_)
            assert before[-1]["type"] == "model_response_end", before
            await anyio.to_thread.run_sync(_pg_ctlcluster, cluster, "stop")
            for _ in range(2):
                down = await client.get("/api/traces", timeout=30)
                assert down.status_code == 503, down.text
                assert down.json()["error"]["code"] == "unavailable"
            await anyio.to_thread.run_sync(_pg_ctlcluster, cluster, "start")
            with anyio.fail_after(60):
                while not await anyio.to_thread.run_sync(_pg_isready):
                    await anyio.sleep(0.2)
            back = await client.get("/api/traces", timeout=30)
            assert back.status_code == 200, back.text
            assert (await client.get(f"/api/traces/{trace_id}", timeout=30)).status_code == 200
            await send(socket_, type="user_prompt", prompt="After?")
            with anyio.fail_after(60):
                after = await until_turn_ends(socket_)
            assert after[-1]["type"] == "model_response_end", after
            await send(socket_, type="start_analysis", traceId=trace_id)
            history = (await receive(socket_))["history"]
        assert [m["content"] for m in history if m["role"] == "user"] == ["Before?", "After?"]
    finally:
        fleet.stop()
        if not _pg_isready():
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "start"])
        deadline = time.monotonic() + 60
        while not _pg_isready() and time.monotonic() < deadline:
            time.sleep(0.2)

"""Fleet mode under load: concurrent chat sessions on two web processes and two workers.

Everything is real and on loopback: two `flamesight serve --redis-url ...
--database-url postgresql+asyncpg://...` processes, two `flamesight worker`
processes, the machine's Redis (an empty database number, flushed at the
end) and PostgreSQL (a new database, dropped at the end). The model is a
minimal OpenAI-compatible streaming endpoint in a process of its own (so
its threads do not share a GIL with the clients): each answer is
`--tokens` chunks sent `--token-ms` apart, each chunk's text
``<index:send time>`` (wall clock, the same on every process of this
machine), so the client can tell the delay from the model's chunk to its
own receipt of the `model_chunk_append` event carrying it.

`--sessions` WebSocket clients (half on each web process; aiohttp's client on
uvloop, with permessage-deflate as browsers ask for it: the clients, which in a
deployment are browsers elsewhere, take as little as they can of the CPU and
add as little as they can to the delays they measure) each open a new
chat session of one trace; once all are open, each sends `--turns` prompts
one after the other, the first prompts all at the same moment or, with
`--ramp S`, evenly spaced over S seconds (users arriving, not a thundering
herd). Checked per session: `seq` runs 1, 2, 3, ... with no gap
or repeat, every turn ends with `model_response_end`, and every chunk index
0..tokens-1 arrives exactly once per turn, in order. Reported: lost and
duplicated events and chunks (must be 0), the p50/p95/p99/max chunk delay
(target p99 < 50 ms), the time from a prompt to its answer's first text,
turns/s, events/s and chunks/s over the whole run, the
peak RSS of each process (psutil, sampled every 100 ms), and the CPU time
each process used while the chats ran: the flamesight processes, the model,
the clients, the PostgreSQL backends of the run's database and the Redis
server (all of it: other users of that Redis count too), and their total;
and a gauge of the machine's speed before and after the run (`machine_gauge`).

    .venv/bin/python benchmarks/fleet_bench.py                      # 200 sessions x 500 tokens, 20/s
    .venv/bin/python benchmarks/fleet_bench.py --sessions 20 --tokens 100   # quick
    .venv/bin/python benchmarks/fleet_bench.py --token-ms 33.3 --turns 2 --ramp 16.5

Needs Redis at $FLAMESIGHT_BENCH_REDIS (redis://127.0.0.1:6379) and
PostgreSQL at $FLAMESIGHT_BENCH_POSTGRES (postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import orjson
import psutil
import redis
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.live_server import example_bytes, free_port  # noqa: E402

REDIS = os.environ.get("FLAMESIGHT_BENCH_REDIS", "redis://127.0.0.1:6379")
POSTGRES = os.environ.get("FLAMESIGHT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
FLAMESIGHT = str(Path(sys.executable).with_name("flamesight"))
API_KEY = "sk-fleet-bench-0d4e"
STAMP = re.compile(r"<(\d+):(\d+\.\d+)>")
OPEN_SESSIONS: list[str] = []
"""The sessions whose socket is open and acknowledged (the run starts when all are)."""
ANSWERED_SESSIONS: list[str] = []
"""The sessions that have had all their answers (the run ends when all have)."""


# --- the scripted model (its own process) ------------------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    document = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "bench-model",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(document).encode() + b"\n\n"


def serve_model(port: int, tokens: int, token_s: float) -> None:
    """Answer every chat completion with `tokens` time-stamped chunks, `token_s` apart.

    An asyncio server on uvloop, so that the model, which in a deployment runs
    elsewhere, takes as little as it can of the CPU the fleet is measured on.
    """

    def chunked(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data)

    # A text chunk is its JSON with the text filled in: json.dumps per chunk was a third
    # of the model's CPU (60 -> 38 µs per chunk), CPU the fleet's processes do not get.
    head, _, tail = _chunk({"content": "@text@"}).partition(b"@text@")
    text_chunk = head.replace(b"%", b"%%") + b"<%d:%.6f>" + tail.replace(b"%", b"%%")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # one request after another on a kept-alive connection
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                    + chunked(_chunk({"role": "assistant", "content": ""}))
                )
                next_at = time.monotonic()
                for index in range(tokens):
                    next_at += token_s
                    await asyncio.sleep(next_at - time.monotonic())
                    writer.write(chunked(text_chunk % (index, time.time())))
                writer.write(
                    chunked(_chunk({}, "stop")) + chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(answer, "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    uvloop.run(serve())


# --- processes ---------------------------------------------------------------------------


class Processes:
    """The flamesight subprocesses, their logs, and a sampler of their peak RSS."""

    def __init__(self, tmp: Path, env: dict[str, str], common: list[str]) -> None:
        self.tmp = tmp
        self.env = env
        self.common = common
        self.started: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [FLAMESIGHT, *args, *self.common], env=self.env, stdout=out, stderr=out
            )
        self.started.append((name, popen, log))
        self.peak[name] = 0
        return popen

    def web(self, name: str) -> str:
        port = free_port()
        popen = self.start(name, ["serve", "--port", str(port)])
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if popen.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start:\n{(self.tmp / f'{name}.log').read_text()}")
            try:
                if httpx.get(url + "/api/traces", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    def worker(self, name: str, max_jobs: int) -> None:
        self.start(name, ["worker", "--max-jobs", str(max_jobs)])
        log = self.tmp / f"{name}.log"
        deadline = time.monotonic() + 60
        while "Starting worker" not in log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start:\n{log.read_text()}")
            time.sleep(0.1)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            for name, popen, _log in self.started:
                try:
                    rss = psutil.Process(popen.pid).memory_info().rss
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak[name], rss)

    def sample(self) -> None:
        self._sampler.start()

    def cpu_seconds(self, others: dict[str, int], database: str) -> dict[str, float]:
        """CPU time (user + system) used so far by each process, by `others` (name: pid),
        by the PostgreSQL backends serving `database` and by the Redis server."""
        pids = {name: popen.pid for name, popen, _log in self.started} | others
        used = {name: _cpu(psutil.Process(pid)) for name, pid in pids.items()}
        used["postgresql"] = used["redis"] = 0.0
        for process in psutil.process_iter(["name", "cmdline"]):
            command = " ".join(process.info["cmdline"] or ())
            if f" {database} " in f"{command} ":
                name = "postgresql"
            elif process.info["name"] == "redis-server":
                name = "redis"
            else:
                continue
            with contextlib.suppress(psutil.Error):
                used[name] += _cpu(process)
        return used

    def stop(self) -> None:
        self._stop.set()
        for _name, popen, _log in self.started:
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
        for _name, popen, _log in self.started:
            try:
                popen.wait(20)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(5)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


# --- the clients -------------------------------------------------------------------------


@dataclass
class SessionResult:
    seqs: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    chunks_lost: int = 0
    chunks_duplicated: int = 0
    turns_ok: int = 0
    sent: list[float] = field(default_factory=list)
    """Per chunk, like `delays`: when the model sent it (wall clock)."""
    first_token: list[float] = field(default_factory=list)
    """Per turn: seconds from sending the prompt to receiving the answer's first text."""
    errors: list[str] = field(default_factory=list)


async def chat(
    url: str,
    trace_id: str,
    turns: int,
    tokens: int,
    start_after: float,
    opened: asyncio.Event,
    answered: asyncio.Event,
) -> SessionResult:
    """One session: open it, wait until every session is open and `start_after` seconds
    more, then `turns` prompts one after the other, every event checked and timed. The
    socket stays open until every session has its answers, as a user's page does while
    they read (200 sockets closing together would load the web processes while the last
    answers still stream)."""
    result = SessionResult()
    ws = url.replace("http://", "ws://") + "/ws/chat"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http,
        http.ws_connect(ws, compress=15, max_msg_size=0) as socket_,
    ):
        await socket_.send_str(
            orjson.dumps(
                {"type": "start_analysis", "traceId": trace_id, "newSession": True}
            ).decode()
        )
        ack = orjson.loads(await socket_.receive_str())
        assert ack["type"] == "connection_ack", ack
        OPEN_SESSIONS.append(url)
        await opened.wait()
        await asyncio.sleep(start_after)
        for turn in range(turns):
            await socket_.send_str(
                orjson.dumps({"type": "user_prompt", "prompt": f"Turn {turn}?"}).decode()
            )
            asked = time.time()
            seen: list[int] = []
            while True:
                message = await socket_.receive_str()
                received = time.time()
                event = orjson.loads(message)
                result.seqs.append(event["seq"])
                if event["type"] == "model_chunk_append":
                    if not seen:
                        result.first_token.append(received - asked)
                    for index, stamp in STAMP.findall(event["text"]):
                        sent = float(stamp)
                        seen.append(int(index))
                        result.delays.append(received - sent)
                        result.sent.append(sent)
                elif event["type"] == "model_response_end":
                    result.turns_ok += 1
                    break
                elif event["type"] == "error":
                    result.errors.append(event["message"])
                    break
            result.chunks_duplicated += len(seen) - len(set(seen))
            result.chunks_lost += len(set(range(tokens)) - set(seen))
            if seen != sorted(seen):
                result.errors.append("chunks out of order")
        ANSWERED_SESSIONS.append(url)
        await answered.wait()
    return result


def seq_faults(seqs: list[int]) -> tuple[int, int]:
    """(lost, duplicated) events of a session whose seqs should run 1, 2, 3, ..."""
    duplicated = len(seqs) - len(set(seqs))
    lost = (max(seqs) if seqs else 0) - len(set(seqs))
    return lost, duplicated


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the run -----------------------------------------------------------------------------


async def until(condition: Callable[[], bool], sessions: list[asyncio.Task[Any]]) -> None:
    """Wait for `condition`; a session that fails meanwhile raises its error."""
    while not condition():
        failed = [task for task in sessions if task.done()]
        if failed:
            await failed[0]  # say why
        await asyncio.sleep(0.05)


def machine_gauge(seconds: float = 2.0) -> str:
    """How long a fixed piece of Python takes here (encode, parse and match a chunk's
    event): the median and range, in µs of CPU per step, of 50 ms tries over `seconds`.
    This VM's speed changes by twice from minute to minute (and within seconds), and the
    same code's figures with it: measured before and after a run, it says which kind of
    minutes the run had."""
    event = {"type": "model_chunk_append", "text": "<123:1764512345.123456>", "seq": 1234}
    tries: list[float] = []
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        started = time.process_time()
        for _ in range(2_000):
            STAMP.findall(orjson.loads(orjson.dumps(event))["text"])
        tries.append((time.process_time() - started) / 2_000 * 1e6)
    return f"{statistics.median(tries):.2f} µs ({min(tries):.2f} to {max(tries):.2f})"


def claim_redis_db() -> str:
    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{REDIS}/{number}")
        if client.dbsize() == 0 and client.set("flamesight:bench:claim", "1", nx=True):
            return f"{REDIS}/{number}"
    raise SystemExit("no empty Redis database number to run in")


async def run(args: argparse.Namespace) -> None:
    gauge = [machine_gauge()]
    admin = await asyncpg.connect(POSTGRES, timeout=5)
    database = f"flamesight_bench_{secrets.token_hex(6)}"
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    database_url = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    redis_url = claim_redis_db()
    model_port = free_port()
    model = multiprocessing.Process(
        target=serve_model, args=(model_port, args.tokens, args.token_ms / 1000), daemon=True
    )
    model.start()
    tmp = Path(tempfile.mkdtemp(prefix="flamesight-fleet-bench-"))
    env = {
        **os.environ,
        "FLAMESIGHT_LLM_URL": f"http://127.0.0.1:{model_port}/v1",
        "FLAMESIGHT_LLM_API_KEY": API_KEY,
        "XDG_CONFIG_HOME": str(tmp / "config"),
    }
    common = ["--data-dir", str(tmp / "data"), "--database-url", f"{database_url}/{database}"]
    common += ["--redis-url", redis_url]
    processes = Processes(tmp, env, common)
    try:
        webs = [processes.web("web-1"), processes.web("web-2")]
        per_worker = -(-args.sessions // 2)
        processes.worker("worker-1", per_worker)
        processes.worker("worker-2", per_worker)
        processes.sample()
        name, data = example_bytes()
        async with httpx.AsyncClient(base_url=webs[0], timeout=60) as client:
            response = await client.post(
                "/api/traces",
                content=data,
                headers={"content-disposition": f'attachment; filename="{name}"'},
            )
            response.raise_for_status()
            trace_id = response.json()["id"]
        others = {"model": model.pid or 0, "clients": os.getpid()}
        opened, answered = asyncio.Event(), asyncio.Event()
        sessions = [
            asyncio.create_task(
                chat(
                    webs[n % 2],
                    trace_id,
                    args.turns,
                    args.tokens,
                    args.ramp * n / args.sessions,
                    opened,
                    answered,
                )
            )
            for n in range(args.sessions)
        ]
        await until(lambda: len(OPEN_SESSIONS) == args.sessions, sessions)
        cpu_before = processes.cpu_seconds(others, database)
        # The clients' own garbage collection would stop every socket at once (a full
        # collection took 255 ms, at the start) and count as the servers' delay.
        gc.collect()
        gc.freeze()
        gc.disable()
        started = time.monotonic()
        opened.set()
        await until(lambda: len(ANSWERED_SESSIONS) == args.sessions, sessions)
        elapsed = time.monotonic() - started
        gc.enable()
        cpu = processes.cpu_seconds(others, database)
        cpu = {name: used - cpu_before[name] for name, used in cpu.items()}
        answered.set()
        results = await asyncio.gather(*sessions)
        gauge.append(machine_gauge())
        report(args, results, elapsed, processes, cpu, gauge)
    except BaseException:
        for name, _popen, log in processes.started:
            print(f"--- {name} (last lines)\n" + "\n".join(log.read_text().splitlines()[-40:]))
        raise
    finally:
        processes.stop()
        model.terminate()
        model.join(5)
        redis.Redis.from_url(redis_url).flushdb()
        admin = await asyncpg.connect(POSTGRES, timeout=5)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def report(
    args: argparse.Namespace,
    results: list[SessionResult],
    elapsed: float,
    processes: Processes,
    cpu: dict[str, float],
    gauge: list[str],
) -> None:
    lost = duplicated = 0
    for result in results:
        session_lost, session_duplicated = seq_faults(result.seqs)
        lost += session_lost
        duplicated += session_duplicated
    delays = [d * 1000 for result in results for d in result.delays]
    turns = sum(result.turns_ok for result in results)
    events = sum(len(result.seqs) for result in results)
    errors = [e for result in results for e in result.errors]
    p99 = percentile(delays, 0.99) if delays else float("nan")
    first = [t * 1000 for result in results for t in result.first_token]
    ramp = f", first prompts over {args.ramp:g} s" if args.ramp else ", first prompts at once"
    print(
        f"\n{args.sessions} sessions x {args.turns} turns x {args.tokens} tokens "
        f"({args.token_ms} ms apart){ramp}, 2 web processes, 2 workers\n"
        f"machine gauge (`machine_gauge`, lower is faster): {gauge[0]} before, "
        f"{gauge[1]} after\n"
    )
    print(
        "| sessions | turns ok | events | lost events | duplicated events | lost chunks "
        "| duplicated chunks | errors |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {args.sessions} | {turns} / {args.sessions * args.turns} | {events:,} | {lost} "
        f"| {duplicated} | {sum(r.chunks_lost for r in results)} "
        f"| {sum(r.chunks_duplicated for r in results)} | {len(errors)} |"
    )
    print()
    print(
        "| chunk delay p50 ms | p95 ms | p99 ms | max ms | first text p50 ms | p99 ms "
        "| wall s | turns/s | events/s | chunks/s |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    mark = "" if p99 < 50 else " ✗"
    print(
        f"| {statistics.median(delays):.1f} | {percentile(delays, 0.95):.1f} | {p99:.1f}{mark} "
        f"| {max(delays):.1f} | {statistics.median(first):.0f} | {percentile(first, 0.99):.0f} "
        f"| {elapsed:.1f} | {turns / elapsed:.2f} | {events / elapsed:,.0f} "
        f"| {len(delays) / elapsed:,.0f} |"
        if delays
        else "| - | - | - | - | - | - | - | - | - | - |"
    )
    print()
    chunks = max(1, len(delays))
    print("| process | peak RSS MB | CPU s | CPU µs per chunk |")
    print("| --- | ---: | ---: | ---: |")
    for name, used in cpu.items():
        peak = f"{processes.peak[name] / 2**20:.0f}" if name in processes.peak else "-"
        print(f"| {name} | {peak} | {used:.1f} | {used / chunks * 1e6:,.0f} |")
    total = sum(cpu.values())
    print(f"| total | | {total:.1f} | {total / chunks * 1e6:,.0f} |")
    for message in sorted(set(errors))[:5]:
        print(f"error: {message}")
    if args.timeline and delays:
        timeline(results, args.timeline)


def timeline(results: list[SessionResult], step_s: float) -> None:
    """Chunk delays by when the model sent them, `step_s` at a time: where a p99 comes from."""
    start = min(min(result.sent) for result in results if result.sent)
    buckets: dict[int, list[float]] = {}
    for result in results:
        for sent, delay in zip(result.sent, result.delays, strict=True):
            buckets.setdefault(int((sent - start) / step_s), []).append(delay * 1000)
    print("\n| sent from s | chunks | p50 ms | p99 ms | max ms |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for index in sorted(buckets):
        delays = buckets[index]
        print(
            f"| {index * step_s:g} | {len(delays):,} | {statistics.median(delays):.1f} "
            f"| {percentile(delays, 0.99):.1f} | {max(delays):.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--turns", type=int, default=1, help="prompts per session, one at a time")
    parser.add_argument("--tokens", type=int, default=500, help="chunks per answer")
    parser.add_argument(
        "--token-ms",
        type=float,
        default=50.0,
        help="time between chunks (50: 20 tokens/s per answer, 4,000/s for 200 sessions)",
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=0.0,
        help="seconds over which the sessions send their first prompts, evenly spaced "
        "(0: all at the same moment)",
    )
    parser.add_argument(
        "--timeline",
        type=float,
        default=0.0,
        metavar="S",
        help="also print the chunk delays by when the model sent them, S seconds at a time",
    )
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

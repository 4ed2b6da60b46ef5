"""Server speed: chat-turn overhead, 50 concurrent chat sessions, a 200 MB upload.

The server runs as `flamesight serve` would, in a process of its own (this
script started again with `--serve PORT DATA_DIR`: the app of
`create_app`, SQLite and blobs in a temporary data dir, single-user
loopback mode), plus one benchmark-only route, `/bench/cache`, that answers
the profile cache's counters. The model is the tests' scripted loopback
endpoint (`tests.llm_servers`, OpenAI streaming wire format) in this
process, answering at once; it records when each request arrived and when
its answer was sent.

1. Chat-turn overhead: one WebSocket, `start_analysis` then `user_prompt`
   after `user_prompt`, one at a time. Per turn: the time from sending
   `user_prompt` to receiving `model_response_end`, minus the model's own
   time (from its receiving the request to its sending the last byte).
   Turns on the bundled example and on the 200 MB trace (after the
   upload). The cache's parse count must not move between turns: the
   profile is never read or parsed again.
2. Concurrent sessions: 50 WebSockets, each on its own chat session of one
   trace, all sending their turns at once. Every session's `seq` numbers
   must run 1, 2, 3, ... with no gap or repeat, every turn must end with
   `model_response_end`, and a `resume {afterSeq: 0}` afterwards must replay
   exactly what the socket received.
3. Upload: a 200 MB collapsed-stacks file (generated into benchmarks/data/,
   git-ignored, reused when present) streamed as a raw body to
   `POST /api/traces`, until the 201 answer: storage, sniffing and the one
   parse included.

    .venv/bin/python benchmarks/server_bench.py
    .venv/bin/python benchmarks/server_bench.py --turns 30 --sessions 10 --upload-mb 50   # quick

Targets (issue 6): overhead < 30 ms p50; 50 sessions with no lost event;
upload >= 50 MB/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import Request
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from import_inputs import DATA_DIR, MB, write_collapsed  # noqa: E402 (this folder)

from tests.live_server import free_port  # noqa: E402
from tests.llm_servers import Exchange, LoopbackServer, openai_stream  # noqa: E402

TARGET_OVERHEAD_MS = 30.0
TARGET_UPLOAD_MB_PER_SECOND = 50.0
START_TIMEOUT = 60.0
ANSWER = ["The hot path ", "is parse_line; ", "cache the regex."]
CHUNK_BYTES = 1024 * 1024


# --- the server, in a process of its own ---------------------------------------


def serve(port: int, data_dir: Path) -> None:
    """Run the app on 127.0.0.1:`port` with its data in `data_dir` (the child process)."""
    import uvicorn

    from flamesight.server import Settings, create_app

    app = create_app(Settings(data_dir=data_dir))

    @app.get("/bench/cache", include_in_schema=False)
    async def cache_counters(request: Request) -> dict[str, int]:
        stats = request.app.state.flamesight.cache.stats
        return {"parses": stats.parses, "hits": stats.hits, "evictions": stats.evictions}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@contextlib.contextmanager
def server_process(data_dir: Path) -> Iterator[str]:
    """This script as the server on a free port; its base URL until the block ends."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), str(data_dir)], cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the server exited with {process.returncode} while starting")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/api/me", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the model ---------------------------------------------------------------------


class TimedModel:
    """The scripted OpenAI-compatible reply, noting when each answer started and ended."""

    def __init__(self) -> None:
        self.reply = openai_stream(ANSWER)
        self.spans: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def __call__(self, exchange: Exchange) -> None:
        started = time.monotonic()
        try:
            self.reply(exchange)
        finally:
            ended = time.monotonic()
            with self._lock:
                self.spans.append((started, ended))

    def time_since(self, index: int) -> float:
        """Seconds the model spent on the answers from number `index` on."""
        with self._lock:
            return sum(end - start for start, end in self.spans[index:])


# --- the chat protocol -------------------------------------------------------------


async def send(socket: ClientConnection, **message: Any) -> None:
    """Send one protocol message."""
    await socket.send(orjson.dumps(message).decode())


async def receive(socket: ClientConnection) -> dict[str, Any]:
    """The next protocol message."""
    return orjson.loads(await socket.recv(decode=True))


async def start_session(socket: ClientConnection, trace_id: str, model_url: str) -> dict[str, Any]:
    """start_analysis on a new session with the scripted endpoint; the connection_ack."""
    await send(
        socket,
        type="start_analysis",
        traceId=trace_id,
        newSession=True,
        url=model_url,
        auth={"apiKey": "sk-bench"},
    )
    ack = await receive(socket)
    if ack["type"] != "connection_ack":
        raise SystemExit(f"start_analysis failed: {ack}")
    return ack


async def turn(socket: ClientConnection, prompt: str) -> list[dict[str, Any]]:
    """Send a prompt; the events up to and including model_response_end (or error)."""
    await send(socket, type="user_prompt", prompt=prompt)
    events = []
    while True:
        event = await receive(socket)
        events.append(event)
        if event["type"] in ("model_response_end", "error"):
            return events


async def cache_counters(client: httpx.AsyncClient) -> dict[str, int]:
    """The server's profile-cache counters."""
    return (await client.get("/bench/cache")).json()


# --- 1. overhead per turn ----------------------------------------------------------


@dataclass
class OverheadResult:
    """Overhead per chat turn on one trace."""

    trace: str
    samples: int
    turns: int
    overheads_ms: list[float]
    model_ms: list[float]
    parses_before: int
    parses_after: int


async def measure_overhead(
    url: str,
    client: httpx.AsyncClient,
    model: TimedModel,
    model_url: str,
    trace_id: str,
    label: str,
    turns: int,
    per_session: int,
) -> OverheadResult:
    """`turns` turns one at a time (a new session every `per_session`), after two warm-up turns."""
    trace = (await client.get(f"/api/traces/{trace_id}")).json()
    samples = sum(profile.get("samples", 0) for profile in trace["profiles"])
    ws_url = url.replace("http://", "ws://") + "/ws/chat"
    overheads: list[float] = []
    model_times: list[float] = []
    parses_before = -1
    async with connect(ws_url, max_size=None) as socket:
        done = -2  # two warm-up turns
        while done < turns:
            await start_session(socket, trace_id, model_url)
            for _ in range(per_session):
                if done == 0 and parses_before < 0:
                    parses_before = (await cache_counters(client))["parses"]
                first = len(model.spans)
                began = time.monotonic()
                events = await turn(socket, f"Question {done}: what is slow?")
                elapsed = time.monotonic() - began
                if events[-1]["type"] != "model_response_end":
                    raise SystemExit(f"a turn failed: {events[-1]}")
                spent = model.time_since(first)
                if done >= 0:
                    overheads.append((elapsed - spent) * 1000)
                    model_times.append(spent * 1000)
                done += 1
                if done >= turns:
                    break
    parses_after = (await cache_counters(client))["parses"]
    return OverheadResult(
        label, samples, turns, overheads, model_times, parses_before, parses_after
    )


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


# --- 2. concurrent sessions --------------------------------------------------------


@dataclass
class SessionLog:
    """What one concurrent session received."""

    events: list[dict[str, Any]] = field(default_factory=list)
    replayed: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ConcurrencyResult:
    """50 sessions at once: time, and every event accounted for."""

    sessions: int
    turns_each: int
    seconds: float
    events: int
    gaps: int
    repeats: int
    failed_turns: int
    replay_mismatches: int
    turn_p50_ms: float
    turn_p95_ms: float


async def one_session(
    ws_url: str,
    trace_id: str,
    model_url: str,
    turns: int,
    start: asyncio.Event,
    durations: list[float],
    connected: list[str],
) -> SessionLog:
    """A session's turns, after every session is connected; then its replay from seq 0."""
    log = SessionLog()
    async with connect(ws_url, max_size=None) as socket:
        ack = await start_session(socket, trace_id, model_url)
        connected.append(ack["sessionId"])
        await start.wait()
        for number in range(turns):
            began = time.monotonic()
            log.events += await turn(socket, f"Concurrent question {number}")
            durations.append((time.monotonic() - began) * 1000)
        await send(socket, type="resume", sessionId=ack["sessionId"], afterSeq=0)
        await receive(socket)
        for _ in log.events:
            log.replayed.append(await receive(socket))
    return log


async def measure_concurrency(
    url: str, trace_id: str, model_url: str, sessions: int, turns: int
) -> ConcurrencyResult:
    """`sessions` WebSockets, each running `turns` turns, all at once."""
    ws_url = url.replace("http://", "ws://") + "/ws/chat"
    start = asyncio.Event()
    durations: list[float] = []
    connected: list[str] = []
    tasks = [
        asyncio.create_task(
            one_session(ws_url, trace_id, model_url, turns, start, durations, connected)
        )
        for _ in range(sessions)
    ]
    while len(connected) < sessions and not any(task.done() for task in tasks):
        await asyncio.sleep(0.01)
    began = time.monotonic()
    start.set()
    logs = await asyncio.gather(*tasks)
    seconds = time.monotonic() - began
    gaps = repeats = failed = mismatches = 0
    for log in logs:
        seqs = [event["seq"] for event in log.events]
        repeats += len(seqs) - len(set(seqs))
        gaps += len(set(range(1, max(seqs) + 1)) - set(seqs)) if seqs else turns
        ends = [event for event in log.events if event["type"] == "model_response_end"]
        failed += turns - len(ends)
        mismatches += log.events != log.replayed
    return ConcurrencyResult(
        sessions,
        turns,
        seconds,
        sum(len(log.events) for log in logs),
        gaps,
        repeats,
        failed,
        mismatches,
        percentile(durations, 0.5),
        percentile(durations, 0.95),
    )


# --- 3. upload -----------------------------------------------------------------------


@dataclass
class UploadResult:
    """One upload of the big file."""

    megabytes: float
    seconds: float
    samples: int
    trace_id: str

    @property
    def mb_per_second(self) -> float:
        """Throughput, end to end."""
        return self.megabytes / self.seconds


def big_file(megabytes: int) -> Path:
    """The generated collapsed-stacks file of about `megabytes` MB (made once)."""
    path = DATA_DIR / f"collapsed-{megabytes}MB.txt"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        print(f"generating {path.name} ...", file=sys.stderr)
        write_collapsed(path, megabytes / 100)
    return path


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """The file's bytes, a megabyte at a time."""
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


async def measure_upload(client: httpx.AsyncClient, path: Path) -> UploadResult:
    """Stream `path` to POST /api/traces as a raw body; the time until its 201."""
    began = time.monotonic()
    response = await client.post(
        "/api/traces",
        content=file_chunks(path),
        headers={"content-disposition": f'attachment; filename="{path.name}"'},
    )
    seconds = time.monotonic() - began
    if response.status_code != 201:
        raise SystemExit(f"the upload failed: {response.status_code} {response.text[:300]}")
    trace = response.json()
    samples = sum(profile.get("samples", 0) for profile in trace["profiles"])
    return UploadResult(path.stat().st_size / MB, seconds, samples, trace["id"])


# --- the run -------------------------------------------------------------------------


def mark(ok: bool) -> str:
    """A cross after a figure that misses its target."""
    return "" if ok else " ✗"


def print_overhead(results: list[OverheadResult]) -> None:
    print("### Chat-turn overhead (ms; turn time minus the model's own time)\n")
    print(
        "| trace | samples | turns | overhead p50 | overhead p95 | mean | model p50 "
        "| parses before | parses after |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for result in results:
        p50 = percentile(result.overheads_ms, 0.5)
        print(
            f"| {result.trace} | {result.samples:,} | {result.turns} "
            f"| {p50:.1f}{mark(p50 < TARGET_OVERHEAD_MS)} "
            f"| {percentile(result.overheads_ms, 0.95):.1f} "
            f"| {statistics.fmean(result.overheads_ms):.1f} "
            f"| {percentile(result.model_ms, 0.5):.1f} | {result.parses_before} "
            f"| {result.parses_after}{mark(result.parses_after == result.parses_before)} |"
        )
    print()


def print_concurrency(result: ConcurrencyResult) -> None:
    print("### Concurrent chat sessions (one server process)\n")
    print(
        "| sessions | turns each | seconds | turns/s | turn p50 ms | turn p95 ms | events "
        "| seq gaps | seq repeats | failed turns | replay mismatches |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    lost = result.gaps + result.repeats + result.failed_turns + result.replay_mismatches
    print(
        f"| {result.sessions} | {result.turns_each} | {result.seconds:.2f} "
        f"| {result.sessions * result.turns_each / result.seconds:.1f} "
        f"| {result.turn_p50_ms:.0f} | {result.turn_p95_ms:.0f} | {result.events:,} "
        f"| {result.gaps}{mark(result.gaps == 0)} | {result.repeats}{mark(result.repeats == 0)} "
        f"| {result.failed_turns}{mark(result.failed_turns == 0)} "
        f"| {result.replay_mismatches}{mark(lost == 0)} |"
    )
    print()


def print_upload(results: list[UploadResult]) -> None:
    print("### Upload (raw body, streamed; until the 201 answer, parse included)\n")
    print("| run | file MB | samples | seconds | MB/s |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for number, result in enumerate(results, 1):
        rate = result.mb_per_second
        print(
            f"| {number} | {result.megabytes:.1f} | {result.samples:,} | {result.seconds:.2f} "
            f"| {rate:.1f}{mark(rate >= TARGET_UPLOAD_MB_PER_SECOND)} |"
        )
    print()


async def run(arguments: argparse.Namespace, data_dir: Path) -> None:
    from flamesight import examples

    path = big_file(arguments.upload_mb)
    model = TimedModel()
    with LoopbackServer(model) as endpoint, server_process(data_dir) as url:
        model_url = endpoint.url + "/v1"
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            example = examples.path()
            response = await client.post(
                "/api/traces",
                content=example.read_bytes(),
                headers={"content-disposition": f'attachment; filename="{example.name}"'},
            )
            example_id = response.json()["id"]
            overheads = [
                await measure_overhead(
                    url,
                    client,
                    model,
                    model_url,
                    example_id,
                    "bundled example",
                    arguments.turns,
                    arguments.turns_per_session,
                )
            ]
            concurrency = await measure_concurrency(
                url, example_id, model_url, arguments.sessions, arguments.concurrent_turns
            )
            uploads = [await measure_upload(client, path) for _ in range(arguments.uploads)]
            overheads.append(
                await measure_overhead(
                    url,
                    client,
                    model,
                    model_url,
                    uploads[-1].trace_id,
                    f"{arguments.upload_mb} MB collapsed",
                    arguments.turns,
                    arguments.turns_per_session,
                )
            )
    print_overhead(overheads)
    print_concurrency(concurrency)
    print_upload(uploads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100, help="Timed turns per trace.")
    parser.add_argument(
        "--turns-per-session", type=int, default=5, help="Turns before a new session."
    )
    parser.add_argument("--sessions", type=int, default=50, help="Concurrent sessions.")
    parser.add_argument("--concurrent-turns", type=int, default=3, help="Turns per session.")
    parser.add_argument("--upload-mb", type=int, default=200, help="Size of the uploaded file.")
    parser.add_argument("--uploads", type=int, default=2, help="How many times to upload it.")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DATA_DIR"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(int(arguments.serve[0]), Path(arguments.serve[1]))
        return
    data_dir = Path(tempfile.mkdtemp(prefix="flamesight-bench-"))
    try:
        asyncio.run(run(arguments, data_dir))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The WebSocket chat on a real uvicorn, SQLite and PostgreSQL, with a scripted model on loopback.

A turn with tool calls and a rendered snapshot, the history after a
restart, resuming after a dropped socket with no event lost or repeated, a
failing model that leaves the history intact, and no credential left in a
table, a blob or a log line.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from flamesight.server import Settings
from flamesight.server.chat import TURN_CUT_OFF
from tests.live_server import LiveServer, secrets_left
from tests.llm_servers import (
    LoopbackServer,
    openai_error,
    openai_stream,
    openai_tool_calls,
    require,
    slow,
)
from tests.test_server_analyze import API_KEY, bearer_is, upload
from tests.test_server_api import anyio_backend, database_url  # noqa: F401 (fixtures)

pytestmark = pytest.mark.anyio

TURN_ENDS = ("model_response_end", "error")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:  # noqa: F811
    """Server settings on the test database, data in a temporary folder."""
    return Settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveServer]:
    """The app on uvicorn on a loopback port."""
    with LiveServer(settings) as server:
        yield server


async def send(socket: ClientConnection, **message: Any) -> None:
    """Send one protocol message."""
    await socket.send(orjson.dumps(message).decode())


async def receive(socket: ClientConnection) -> dict[str, Any]:
    """The next protocol message."""
    return orjson.loads(await socket.recv(decode=True))


async def until_turn_ends(socket: ClientConnection) -> list[dict[str, Any]]:
    """Messages up to and including the turn's model_response_end or error."""
    received = []
    while True:
        message = await receive(socket)
        received.append(message)
        if message["type"] in TURN_ENDS:
            return received


async def start(socket: ClientConnection, trace_id: str, model_url: str | None) -> dict[str, Any]:
    """start_analysis (with the scripted endpoint and the API key); the connection_ack."""
    endpoint = {} if model_url is None else {"url": model_url, "auth": {"apiKey": API_KEY}}
    await send(socket, type="start_analysis", traceId=trace_id, **endpoint)
    ack = await receive(socket)
    assert ack["type"] == "connection_ack", ack
    return ack


async def test_a_turn_with_tools_and_a_snapshot_survives_a_restart(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    model = LoopbackServer(
        require(bearer_is(API_KEY), openai_stream(["All ", "done."]), openai_error(401, "key"))
    )
    model.script(
        openai_tool_calls(
            [("top_functions", {"n": 3}), ("render_flamegraph", {"width": 400, "height": 200})]
        )
    )
    with LiveServer(settings) as live, model:
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
            trace_id = await upload(client)
            async with connect(live.ws_url) as socket:
                ack = await start(socket, trace_id, model.url + "/v1")
                assert ack["seq"] == 0 and ack["history"] == [] and ack["traceId"] == trace_id
                await send(socket, type="user_prompt", prompt="What is slow here?")
                events = await until_turn_ends(socket)
            types = [event["type"] for event in events]
            # Text pieces that queued together went out as one model_chunk_append.
            runs = [kind for kind, _ in itertools.groupby(types)]
            assert runs == [
                "waiting_for_model",
                "tool_start",
                "tool_end",
                "tool_start",
                "tool_end",
                "model_chunk_start",
                "model_chunk_append",
                "model_chunk_end",
                "model_response_end",
            ]
            text = "".join(e["text"] for e in events if e["type"] == "model_chunk_append")
            assert text == "All done."
            assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
            render = events[4]
            assert render["tool"] == "render_flamegraph" and "image" not in render
            snapshot = await client.get(render["imageUrl"])
            assert snapshot.status_code == 200 and snapshot.content.startswith(b"\x89PNG")
            assert (await client.get("/api/snapshots/nope")).status_code == 404
    session_id = ack["sessionId"]
    with LiveServer(settings) as restarted:
        async with connect(restarted.ws_url) as socket:
            again = await start(socket, trace_id, None)
            assert again["sessionId"] == session_id and again["seq"] == len(events)
            roles = [message["role"] for message in again["history"]]
            assert roles == ["user", "assistant", "tool", "tool", "assistant"]
            assert again["history"][0]["content"] == "What is slow here?"
            calls = [call["tool"] for call in again["history"][1]["toolCalls"]]
            assert calls == ["top_functions", "render_flamegraph"]
            assert again["history"][-1]["content"] == "All done."
            await send(socket, type="resume", sessionId=session_id, afterSeq=0)
            assert (await receive(socket))["resumed"] is True
            replayed = [await receive(socket) for _ in events]
            assert replayed == events
    assert await secrets_left(settings, [API_KEY]) == []
    assert not [r for r in caplog.records if API_KEY in r.getMessage()]


async def test_resume_after_a_dropped_socket_loses_and_repeats_nothing(live: LiveServer) -> None:
    pieces = [f"piece {n} " for n in range(12)]
    with LoopbackServer(slow(0.3, openai_stream(pieces))) as model:
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
            trace_id = await upload(client)
        async with connect(live.ws_url) as socket:
            ack = await start(socket, trace_id, model.url)
            await send(socket, type="user_prompt", prompt="Tell me a lot.")
            before = [await receive(socket)]
        # The socket is gone while the model answers; the turn goes on without it.
        async with connect(live.ws_url) as socket:
            await send(
                socket, type="resume", sessionId=ack["sessionId"], afterSeq=before[-1]["seq"]
            )
            resumed = await receive(socket)
            assert resumed["type"] == "connection_ack" and resumed["seq"] == before[-1]["seq"]
            after = await until_turn_ends(socket)
        async with connect(live.ws_url) as socket:
            await send(socket, type="resume", sessionId=ack["sessionId"], afterSeq=0)
            await receive(socket)
            everything = await until_turn_ends(socket)
    seen = before + after
    assert seen == everything
    assert [event["seq"] for event in seen] == list(range(1, len(seen) + 1))
    assert "".join(e["text"] for e in seen if e["type"] == "model_chunk_append") == "".join(pieces)


async def test_a_turn_cut_off_by_a_restart_is_ended_when_a_socket_comes_back(
    settings: Settings,
) -> None:
    """The server stops while a turn waits for the model: after the restart, the first
    socket bound to the session gets an `error` event that ends the cut-off turn (the web
    app would otherwise wait for it), once, and the next prompt works."""
    with LoopbackServer(openai_stream(["Fine ", "answer."])) as model:
        model.script(slow(120, openai_stream(["never sent"])))
        with LiveServer(settings) as live:
            async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
                trace_id = await upload(client)
            async with connect(live.ws_url) as socket:
                ack = await start(socket, trace_id, model.url)
                await send(socket, type="user_prompt", prompt="Will you answer?")
                waiting = await receive(socket)
                with anyio.fail_after(30):
                    while not model.requests:
                        await anyio.sleep(0.05)
        assert waiting["type"] == "waiting_for_model"
        with LiveServer(settings) as restarted:
            async with connect(restarted.ws_url) as socket:
                again = await start(socket, trace_id, model.url)
                assert again["sessionId"] == ack["sessionId"] and again["seq"] == waiting["seq"]
                with anyio.fail_after(30):
                    ended = await receive(socket)
                assert ended == {"type": "error", "message": TURN_CUT_OFF, "seq": again["seq"] + 1}
                async with connect(restarted.ws_url) as other:
                    await start(other, trace_id, model.url)  # the turn is ended: nothing more
                    await send(other, type="user_prompt", prompt="Now?")
                    answered = await until_turn_ends(other)
                assert answered[0]["seq"] == ended["seq"] + 1
                assert answered[-1]["type"] == "model_response_end"
            async with connect(restarted.ws_url) as socket:
                history = (await start(socket, trace_id, model.url))["history"]
                await send(socket, type="resume", sessionId=ack["sessionId"], afterSeq=0)
                await receive(socket)
                replayed = [(await receive(socket))["type"] for _ in range(answered[-1]["seq"])]
    assert [(m["role"], m["content"]) for m in history] == [
        ("user", "Will you answer?"),
        ("user", "Now?"),
        ("assistant", "Fine answer."),
    ]
    assert replayed.count("error") == 1 and replayed[waiting["seq"]] == "error"


async def test_turns_on_the_servers_endpoint_share_connections_and_a_clients_do_not(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's own endpoint: one HTTP client kept across turns (the second turn's request
    comes on the first one's connection). A client's endpoint: a client per turn, checking
    its URLs, closed at the turn's end."""
    with LoopbackServer(openai_stream(["Kept ", "alive."])) as model:
        monkeypatch.setenv("FLAMESIGHT_LLM_URL", model.url + "/v1")
        monkeypatch.setenv("FLAMESIGHT_LLM_API_KEY", API_KEY)
        with LiveServer(settings) as live:
            async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
                trace_id = await upload(client)
            async with connect(live.ws_url) as socket:
                await start(socket, trace_id, None)
                for prompt in ("One", "Two"):
                    await send(socket, type="user_prompt", prompt=prompt)
                    assert (await until_turn_ends(socket))[-1]["type"] == "model_response_end"
                await start(socket, trace_id, model.url)
                for prompt in ("Three", "Four"):
                    await send(socket, type="user_prompt", prompt=prompt)
                    assert (await until_turn_ends(socket))[-1]["type"] == "model_response_end"
    ports = [request.client_port for request in model.requests]
    assert all(map(bearer_is(API_KEY), model.requests))
    assert len(ports) == 4 and ports[0] == ports[1], ports
    assert len({ports[1], ports[2], ports[3]}) == 3, ports


async def test_a_failing_model_keeps_the_history_and_the_next_prompt_works(
    live: LiveServer,
) -> None:
    with LoopbackServer(openai_stream(["Recovered."])) as model:
        model.script(openai_error(400, "the model broke down"))
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
            trace_id = await upload(client)
        async with connect(live.ws_url) as socket:
            await send(
                socket, type="start_analysis", traceId=trace_id, url="http://169.254.169.254/v1"
            )
            refused = await receive(socket)
            assert refused["type"] == "error" and "169.254.169.254" in refused["message"]
            await send(socket, type="user_prompt", prompt="too early")
            assert "start_analysis" in (await receive(socket))["message"]
            await send(socket, type="start_analysis", traceId="nope")
            assert "no trace" in (await receive(socket))["message"]
            await start(socket, trace_id, model.url)
            await send(socket, type="user_prompt", prompt="First question")
            failed = await until_turn_ends(socket)
            assert [e["type"] for e in failed] == ["waiting_for_model", "error"]
            assert "the model broke down" in failed[-1]["message"]
            await send(socket, type="user_prompt", prompt="Second question")
            worked = await until_turn_ends(socket)
            assert worked[-1]["type"] == "model_response_end"
        async with connect(live.ws_url) as socket:
            ack = await start(socket, trace_id, None)
    sent = [m["content"] for m in model.requests[-1].json()["messages"] if m["role"] == "user"]
    assert sent[:2] == ["First question", "Second question"]
    contents = [(m["role"], m["content"]) for m in ack["history"]]
    assert contents == [
        ("user", "First question"),
        ("user", "Second question"),
        ("assistant", "Recovered."),
    ]

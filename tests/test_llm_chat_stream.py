"""The chat agent's stream reader (`flamesight.llm.chat_stream`) against a loopback endpoint
that cuts its server-sent events in chosen places."""

from __future__ import annotations

import json
import threading
import zlib
from typing import Any

import pytest

from flamesight.agent import ChatAgent, LoadedProfiles
from flamesight.formats import load
from flamesight.llm import ApiKey, NoAuth, Secret, Settings, chat_stream
from flamesight.llm.chat_stream import _EventReader
from tests.llm_servers import (
    Exchange,
    LoopbackServer,
    Reply,
    openai_error,
    openai_json,
    openai_stream,
)
from tests.test_agent import BEFORE


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """A chat.completion.chunk with one choice."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def sse(document: Any, newline: str = "\n") -> bytes:
    """One server-sent event carrying `document`."""
    return f"data: {json.dumps(document)}{newline}{newline}".encode()


def writes(*pieces: bytes) -> Reply:
    """A streamed answer written as exactly these HTTP chunks (each flushed on its own)."""

    def reply(exchange: Exchange) -> None:
        exchange.start_chunks()
        for piece in pieces:
            exchange.chunk(piece)
        exchange.end_chunks()

    return reply


def run(server: LoopbackServer, auth: Any = None) -> list[dict[str, Any]]:
    """One turn of a chat about a small profile; its events as dicts."""
    settings = Settings.for_endpoint(server.url + "/v1", model="test-model", max_retries=0)
    profiles = LoadedProfiles(load(BEFORE, "before.json"), name="before.json")
    agent = ChatAgent(profiles, settings, auth or NoAuth())
    return [event.to_dict() for event in agent.run([], "What is slow?")]


@pytest.fixture
def endpoint():
    with LoopbackServer(openai_stream(["Done."])) as server:
        yield server


def test_events_read_together_are_one_text_piece(endpoint: LoopbackServer) -> None:
    tokens = ["The ", "parser ", "is ", "slow."]
    together = b"".join(sse(chunk({"content": token})) for token in tokens)
    endpoint.script(
        writes(
            sse(chunk({"role": "assistant", "content": ""})),
            together,
            sse(chunk({}, "stop")) + b"data: [DONE]\n\n",
        )
    )
    events = run(endpoint)
    assert events == [
        {"type": "model_chunk_start"},
        {"type": "model_chunk_append", "text": "The parser is slow."},
        {"type": "model_chunk_end"},
        {"type": "model_response_end"},
    ]


def test_events_cut_anywhere_and_crlf_line_ends_are_read_whole(endpoint: LoopbackServer) -> None:
    stream = b"".join(
        [
            sse(chunk({"role": "assistant", "content": ""}), "\r\n"),
            b": a comment line\r\n\r\n",
            sse(chunk({"content": "caf\u00e9 "}), "\r\n"),
            sse(chunk({"content": "au lait"}), "\r\n"),
            sse(chunk({}, "stop"), "\r\n"),
            b"data: [DONE]\r\n\r\n",
        ]
    )
    endpoint.script(writes(*(stream[i : i + 1] for i in range(len(stream)))))
    events = run(endpoint)
    text = "".join(e["text"] for e in events if e["type"] == "model_chunk_append")
    assert text == "caf\u00e9 au lait"
    assert events[-1] == {"type": "model_response_end"}


def test_the_event_reader_keeps_a_split_crlf_and_joins_data_lines() -> None:
    reader = _EventReader()
    assert reader.feed(b"data: one\r") == []
    assert reader.feed(b"\ndata: two\r\n\r") == []
    assert reader.feed(b"\nevent: x\ndata:three\n\n") == [b"one\ntwo", b"three"]
    assert reader.feed(b"id: 7\n\n") == []


def test_one_line_events_with_and_without_the_space_after_data() -> None:
    reader = _EventReader()
    assert reader.feed(b"data: one\n\ndata:two\n\n: ping\n\ndata:  three\n\n") == [
        b"one",
        b"two",
        b" three",
    ]


def test_a_compressed_stream_is_read_through_its_content_encoding(
    endpoint: LoopbackServer,
) -> None:
    """A stream with a content-encoding (gzip) is decoded before its events are read."""
    body = b"".join(
        [
            sse(chunk({"role": "assistant", "content": "Zipped "})),
            sse(chunk({"content": "answer."})),
            sse(chunk({}, "stop")),
            b"data: [DONE]\n\n",
        ]
    )
    packer = zlib.compressobj(wbits=31)  # the gzip format
    packed = packer.compress(body) + packer.flush()

    def reply(exchange: Exchange) -> None:
        exchange.start_chunks(headers={"Content-Encoding": "gzip"})
        exchange.chunk(packed[:20])
        exchange.chunk(packed[20:])
        exchange.end_chunks()

    endpoint.script(reply)
    events = run(endpoint)
    text = "".join(e["text"] for e in events if e["type"] == "model_chunk_append")
    assert text == "Zipped answer."
    assert events[-1] == {"type": "model_response_end"}


def test_an_error_object_in_the_stream_ends_the_turn_with_its_message(
    endpoint: LoopbackServer,
) -> None:
    endpoint.script(
        writes(
            sse(chunk({"content": "Half "})),
            sse({"error": {"message": "the model overloaded", "type": "server_error"}}),
        )
    )
    events = run(endpoint)
    assert [e["type"] for e in events] == ["model_chunk_start", "model_chunk_append", "error"]
    assert events[-1]["message"] == (
        f"{endpoint.url}/v1 reported an error in the middle of the answer "
        "(5 characters received): the model overloaded"
    )


def test_data_that_is_not_json_is_named(endpoint: LoopbackServer) -> None:
    endpoint.script(writes(b"data: <html>oops</html>\n\n"))
    events = run(endpoint)
    assert events == [
        {
            "type": "error",
            "message": f"{endpoint.url}/v1 sent something that is not JSON: '<html>oops</html>'",
        }
    ]


def test_a_plain_json_answer_is_read_as_one_piece(endpoint: LoopbackServer) -> None:
    endpoint.script(openai_json("Not streamed, but complete."))
    events = run(endpoint)
    assert events == [
        {"type": "model_chunk_start"},
        {"type": "model_chunk_append", "text": "Not streamed, but complete."},
        {"type": "model_chunk_end"},
        {"type": "model_response_end"},
    ]


def test_tool_calls_are_put_together_by_index_and_bad_arguments_are_told(
    endpoint: LoopbackServer,
) -> None:
    first = {"index": 0, "id": "call_a", "type": "function", "function": {"name": "hot_"}}
    second = {"index": 1, "id": "call_b", "function": {"name": "top_functions", "arguments": ""}}
    endpoint.script(
        writes(
            sse(chunk({"role": "assistant", "content": None, "tool_calls": [first]})),
            sse(chunk({"tool_calls": [{"index": 0, "function": {"name": "paths"}}]})),
            sse(chunk({"tool_calls": [second]})),
            sse(chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"n": '}}]})),
            sse(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"n": 1}'}}]})),
            sse(chunk({"tool_calls": [{"index": 1, "function": {"arguments": "2"}}]})),
            sse(chunk({}, "tool_calls")) + b"data: [DONE]\n\n",
        )
    )
    events = run(endpoint)
    assert [(e["type"], e["tool"]) for e in events[:4]] == [
        ("tool_start", "hot_paths"),
        ("tool_end", "hot_paths"),
        ("tool_start", "top_functions"),
        ("tool_error", "top_functions"),
    ]
    assert events[0]["args"] == {"n": 1}
    assert events[3]["message"] == "the arguments of top_functions are not valid JSON: '{\"n\": 2'"
    tool_messages = [m for m in endpoint.requests[1].json()["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_a", "call_b"]
    assistant = endpoint.requests[1].json()["messages"][-3]
    assert assistant["content"] is None
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == [
        "hot_paths",
        "top_functions",
    ]


def test_max_completion_tokens_is_sent_once_the_endpoint_asks_for_it(
    endpoint: LoopbackServer,
) -> None:
    endpoint.script(
        openai_error(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
        )
    )
    events = run(endpoint)
    assert events[-1] == {"type": "model_response_end"}
    first, second = (request.json() for request in endpoint.requests)
    assert first["max_tokens"] == 2000 and "max_completion_tokens" not in first
    assert second["max_completion_tokens"] == 2000 and "max_tokens" not in second


def test_an_endpoint_that_refuses_streaming_is_asked_again_without_it_for_the_turn(
    endpoint: LoopbackServer,
) -> None:
    def tool_call_as_json(exchange: Exchange) -> None:
        call = {"id": "call_0", "type": "function"}
        call["function"] = {"name": "top_functions", "arguments": '{"n": 1}'}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        exchange.send_json(200, {"id": "chatcmpl-test", "choices": [choice]})

    endpoint.script(
        openai_error(400, "stream is not supported by this server"),
        tool_call_as_json,
        openai_json("Mostly in parse."),
    )
    events = run(endpoint)
    assert [e["type"] for e in events] == [
        "tool_start",
        "tool_end",
        "model_chunk_start",
        "model_chunk_append",
        "model_chunk_end",
        "model_response_end",
    ]
    # Asked once with streaming; the rest of the turn without it (answers read as JSON).
    assert [r.json()["stream"] for r in endpoint.requests] == [True, False, False]


def test_a_refusal_reads_as_in_one_shot_turns_with_what_to_do(endpoint: LoopbackServer) -> None:
    endpoint.script(openai_error(429, "Rate limit reached for requests", kind="requests"))
    events = run(endpoint)
    assert events == [
        {
            "type": "error",
            "message": f"{endpoint.url}/v1 is rate limiting the requests (HTTP 429: Rate limit "
            "reached for requests): wait and try again, or check the quota of the key",
        }
    ]


def test_without_auth_no_credential_header_is_sent(endpoint: LoopbackServer) -> None:
    events = run(endpoint)
    assert events[-1] == {"type": "model_response_end"}
    assert "authorization" not in endpoint.requests[0].headers


def test_azure_chats_go_to_the_deployment_with_the_api_key_header(
    endpoint: LoopbackServer,
) -> None:
    settings = Settings.for_endpoint(
        endpoint.url, provider="azure", model="perf-4o", api_version="2024-10-21", max_retries=0
    )
    profiles = LoadedProfiles(load(BEFORE, "before.json"), name="before.json")
    agent = ChatAgent(profiles, settings, ApiKey(Secret("azure-key-0001"), "the test"))
    events = [event.to_dict() for event in agent.run([], "What is slow?")]
    assert events[-1] == {"type": "model_response_end"}
    [sent] = endpoint.requests
    assert sent.path == "/openai/deployments/perf-4o/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == "azure-key-0001" and "authorization" not in sent.headers
    assert sent.json()["model"] == "perf-4o" and sent.json()["stream"] is True


def test_a_stream_left_open_after_done_is_closed_and_the_turn_ends(
    endpoint: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The body is read to its end after ``[DONE]`` (so the connection can serve the next
    request), but a server that keeps it open is not waited for past `END_WAIT_S`."""
    monkeypatch.setattr(chat_stream, "END_WAIT_S", 0.2)
    released = threading.Event()
    held_to_the_end = []

    def reply(exchange: Exchange) -> None:
        exchange.start_chunks()
        exchange.chunk(sse(chunk({"role": "assistant", "content": "Answered."})))
        exchange.chunk(sse(chunk({}, "stop")) + b"data: [DONE]\n\n")
        held_to_the_end.append(not released.wait(30))

    endpoint.script(reply)
    events = run(endpoint)
    released.set()
    assert events == [
        {"type": "model_chunk_start"},
        {"type": "model_chunk_append", "text": "Answered."},
        {"type": "model_chunk_end"},
        {"type": "model_response_end"},
    ]
    assert not any(held_to_the_end)

"""The chat agent against a real loopback chat-completions endpoint that streams tool calls."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from PIL import Image

from flamesight import examples
from flamesight.agent import (
    TOOLS,
    ChatAgent,
    DirectorySnapshots,
    LoadedProfiles,
    MemorySnapshots,
    history_from_dicts,
    history_to_dicts,
)
from flamesight.agent.graph import CONCLUDE_MESSAGE
from flamesight.formats import load
from flamesight.llm import ClientCredentials, NoAuth, Secret, Settings
from tests.llm_servers import (
    LoopbackServer,
    TokenIssuer,
    openai_error,
    openai_stream,
    openai_stream_dropped,
    openai_stream_unfinished,
    openai_tool_calls,
    require,
    tools_switched_off,
)


def speedscope(samples: list[tuple[list[str], float]], unit: str = "milliseconds") -> bytes:
    """A sampled speedscope file: each (stack, weight) laid end to end in time."""
    names: list[str] = []
    stacks = []
    for stack, _ in samples:
        for name in stack:
            if name not in names:
                names.append(name)
        stacks.append([names.index(name) for name in stack])
    total = sum(weight for _, weight in samples)
    document = {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": [{"name": name, "file": "app.py"} for name in names]},
        "profiles": [
            {
                "type": "sampled",
                "name": "worker",
                "unit": unit,
                "startValue": 0,
                "endValue": total,
                "samples": stacks,
                "weights": [weight for _, weight in samples],
            }
        ],
    }
    return json.dumps(document).encode()


BEFORE = speedscope(
    [
        (["main", "parse", "read"], 30),
        (["main", "parse", "tokenize"], 20),
        (["main", "render"], 40),
        (["main"], 10),
    ]
)
AFTER = speedscope(
    [
        (["main", "parse", "read"], 10),
        (["main", "parse", "tokenize"], 20),
        (["main", "render"], 60),
        (["main"], 10),
    ]
)


@pytest.fixture
def endpoint():
    """A chat-completions endpoint that answers 'Done.' unless scripted otherwise."""
    with LoopbackServer(openai_stream(["Done."])) as server:
        yield server


def settings_for(server: LoopbackServer) -> Settings:
    """Settings for the loopback endpoint, without retries."""
    return Settings.for_endpoint(server.url + "/v1", model="test-model", max_retries=0)


def small_profiles() -> LoadedProfiles:
    """The two generated profiles, before and after."""
    return LoadedProfiles(
        load(BEFORE, "before.json"), load(AFTER, "after.json"), "before.json", "after.json"
    )


def run(agent: ChatAgent, prompt: str, history: list | None = None) -> tuple[list[dict], list]:
    """Run one turn; its events as dicts and the history after it."""
    turn = agent.run(history or [], prompt)
    events = [event.to_dict() for event in turn]
    return events, turn.history


def joined_appends(events: list[dict]) -> list[dict]:
    """`events` with each run of model_chunk_append joined into one (how a run is cut
    depends on how the network delivered the stream)."""
    joined: list[dict] = []
    for event in events:
        if event["type"] == "model_chunk_append" and joined and joined[-1]["type"] == event["type"]:
            joined[-1] = {**joined[-1], "text": joined[-1]["text"] + event["text"]}
        else:
            joined.append(event)
    return joined


def messages(request: Any) -> list[dict[str, Any]]:
    """The messages of a recorded chat request."""
    return request.json()["messages"]


def last_tool_results(request: Any) -> list[str]:
    """The content of the tool messages at the end of a request (before any image message)."""
    found = []
    for message in reversed(messages(request)):
        if message["role"] == "tool":
            found.append(message["content"])
        elif found:
            break
    return list(reversed(found))


CALLS: list[tuple[str, dict[str, Any]]] = [
    ("top_functions", {"by": "self", "n": 3}),
    ("call_tree", {"function": "parse", "direction": "callees", "depth": 2}),
    ("hot_paths", {"n": 2}),
    ("summarize_range", {"start": "0ms", "end": 50}),
    ("search_frames", {"pattern": "re"}),
    ("compare_ranges", {"a_start": 0, "a_end": 50, "b_start": 50, "b_end": 100}),
    ("compare_profiles", {"by": "self", "n": 3}),
    ("render_flamegraph", {"view": "flamegraph", "width": 400, "height": 200}),
]


def test_every_tool_reaches_the_model_and_the_events_are_exact(endpoint: LoopbackServer) -> None:
    endpoint.script(
        *[openai_tool_calls([call], call_prefix=f"c{i}") for i, call in enumerate(CALLS)],
        openai_stream(["Parsing ", "got faster."]),
    )
    snapshots = MemorySnapshots()
    agent = ChatAgent(
        small_profiles(), settings_for(endpoint), NoAuth(), snapshots=snapshots, max_iterations=9
    )
    events, history = run(agent, "What changed?")

    expected: list[dict[str, Any]] = []
    for name, args in CALLS:
        expected.append({"type": "tool_start", "tool": name, "args": args})
        expected.append({"type": "tool_end", "tool": name})
    expected += [
        {"type": "model_chunk_start"},
        {"type": "model_chunk_append", "text": "Parsing got faster."},
        {"type": "model_chunk_end"},
        {"type": "model_response_end"},
    ]
    # Text pieces read together arrive as one model_chunk_append: compare the joined text.
    events = joined_appends(events)
    assert [{k: e[k] for k in expected[i]} for i, e in enumerate(events)] == expected
    assert len(events) == len(expected)
    assert events[-5]["image"] == "snapshot:1"
    assert all("image" not in e for e in events[:-5])

    # Every request offers the tools; each one after a call carries that tool's result.
    requests = endpoint.requests
    assert len(requests) == len(CALLS) + 1
    offered = [t["function"]["name"] for t in requests[0].json()["tools"]]
    assert offered == [tool.name for tool in TOOLS]
    results = [last_tool_results(r)[0] for r in requests[1:]]
    top, tree, paths, summary, search, ranges, profiles, render = results
    assert top.splitlines() == [
        "Top 3 functions by self time in [0 s, 100 ms), total 100 ms:",
        "rank | self | self% | total | total% | function",
        "1 | 40.0 ms | 40.0% | 40.0 ms | 40.0% | render",
        "2 | 30.0 ms | 30.0% | 30.0 ms | 30.0% | read",
        "3 | 20.0 ms | 20.0% | 20.0 ms | 20.0% | tokenize",
    ]
    assert tree.splitlines() == [
        "Callees of parse in [0 s, 100 ms), depth 2 (total | total% of range | self):",
        "parse  50.0 ms | 50.0% | 0 s",
        "  read  30.0 ms | 30.0% | 30.0 ms",
        "  tokenize  20.0 ms | 20.0% | 20.0 ms",
    ]
    assert paths.splitlines()[1:] == [
        "1. 40.0 ms | 40.0% | main -> render",
        "2. 30.0 ms | 30.0% | main -> parse -> read",
    ]
    assert summary.startswith("Summary of [0 s, 50.0 ms):")
    assert "| read |" in summary and "60.0" in summary
    assert search.splitlines() == [
        "2 functions match 're' (heaviest first; self | total | total% | function | file):",
        "40.0 ms | 40.0 ms | 40.0% | render | app.py",
        "30.0 ms | 30.0 ms | 30.0% | read | app.py",
    ]
    assert ranges.splitlines()[0].startswith(
        "Self time in [50.0 ms, 100 ms) compared with [0 s, 50.0 ms): totals 50.0 ms -> 50.0 ms"
    )
    assert profiles.splitlines()[0].startswith(
        "Self time in 'after.json' compared with 'before.json': totals 100 ms -> 100 ms"
    )
    assert "| changed | read" in profiles and "-20.0 ms (-67%)" in profiles
    assert render.startswith("Rendered a 400x200 PNG flame graph")
    assert "main 100%" in render

    # The request after the render carries the image; the ones before do not.
    image_message = messages(requests[-1])[-1]
    assert image_message["role"] == "user"
    text_part, image_part = image_message["content"]
    assert text_part["type"] == "text" and "render_flamegraph" in text_part["text"]
    assert image_part["type"] == "image_url"
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    png = base64.b64decode(url.split(",", 1)[1])
    assert png == snapshots.images[0][1]
    assert Image.open(io.BytesIO(png)).size == (400, 200)
    for request in requests[:-1]:
        assert "data:image/png" not in request.body.decode()

    # The history: question, eight (call, result) pairs, the answer; no image.
    assert isinstance(history[0], HumanMessage) and history[0].content == "What changed?"
    assert [type(m) for m in history[1:-1]] == [AIMessage, ToolMessage] * len(CALLS)
    assert history[-1].content == "Parsing got faster." and not history[-1].tool_calls
    assert history_from_dicts(history_to_dicts(history)) == history


def test_the_turn_stops_at_the_iteration_limit(endpoint: LoopbackServer) -> None:
    endpoint.default = require(
        tools_switched_off,
        openai_stream(["Concluding ", "with what I have."]),
        openai_tool_calls([("hot_paths", {"n": 1})]),
    )
    agent = ChatAgent(small_profiles(), settings_for(endpoint), NoAuth())
    events, history = run(agent, "Dig forever")
    assert len(endpoint.requests) == 9
    for request in endpoint.requests[:8]:
        assert request.json().get("tool_choice") in (None, "auto")
    final = endpoint.requests[8].json()
    assert final["tool_choice"] == "none"
    assert final["messages"][-1] == {"role": "user", "content": CONCLUDE_MESSAGE.format(limit=8)}
    assert [e["type"] for e in joined_appends(events)] == [
        *(["tool_start", "tool_end"] * 8),
        "model_chunk_start",
        "model_chunk_append",
        "model_chunk_end",
        "model_response_end",
    ]
    assert history[-1].content == "Concluding with what I have."
    assert CONCLUDE_MESSAGE[:20] not in "".join(str(m.content) for m in history)


def test_the_iteration_limit_is_configurable_and_late_tool_calls_are_dropped(
    endpoint: LoopbackServer,
) -> None:
    # This endpoint calls tools even when told not to: the agent ends the turn anyway.
    endpoint.default = openai_tool_calls([("hot_paths", {})], text="Still looking.")
    agent = ChatAgent(small_profiles(), settings_for(endpoint), NoAuth(), max_iterations=2)
    events, history = run(agent, "Go")
    assert len(endpoint.requests) == 3
    assert events[-1] == {"type": "model_response_end"}
    assert history[-1].content == "Still looking." and history[-1].tool_calls == []


def test_the_model_recovers_after_tool_errors(endpoint: LoopbackServer) -> None:
    endpoint.script(
        openai_tool_calls(
            [
                ("call_tree", {"function": "pars"}),
                ("top_functions", {"n": "many"}),
                ("top_functions", {"start": "5s", "end": "6s"}),
                ("no_such_tool", {}),
                ("compare_profiles", {}),
            ],
            call_prefix="bad",
        ),
        openai_tool_calls([("call_tree", {"function": "parse"})], call_prefix="good"),
        openai_stream(["Recovered."]),
    )
    one = LoadedProfiles(load(BEFORE, "before.json"))
    agent = ChatAgent(one, settings_for(endpoint), NoAuth())
    events, history = run(agent, "Callers of pars?")
    errors = [e for e in events if e["type"] == "tool_error"]
    assert [e["tool"] for e in errors] == [
        "call_tree",
        "top_functions",
        "top_functions",
        "no_such_tool",
        "compare_profiles",
    ]
    assert "did you mean 'parse'" in errors[0]["message"]
    assert errors[1]["message"].startswith("bad arguments for top_functions: n:")
    assert "no samples in [5.00 s, 6.00 s)" in errors[2]["message"]
    assert "the profile spans [0 s, 100 ms)" in errors[2]["message"]
    assert "there is no tool 'no_such_tool'" in errors[3]["message"]
    assert "compare_profiles" in errors[4]["message"]
    # The model read every error as a tool result, then went on.
    seen = last_tool_results(endpoint.requests[1])
    assert len(seen) == 5 and all(text.startswith("Error: ") for text in seen)
    assert seen[0] == "Error: " + errors[0]["message"]
    assert last_tool_results(endpoint.requests[2])[0].startswith("Callers of parse") is False
    assert "Callees of parse" in last_tool_results(endpoint.requests[2])[0]
    assert events[-1] == {"type": "model_response_end"}
    assert history[-1].content == "Recovered."
    # With one profile loaded, compare_profiles is not offered.
    offered = [t["function"]["name"] for t in endpoint.requests[0].json()["tools"]]
    assert "compare_profiles" not in offered


def test_an_endpoint_failure_mid_stream_is_an_error_event_and_the_history_survives(
    endpoint: LoopbackServer,
) -> None:
    endpoint.script(
        openai_tool_calls([("top_functions", {"n": 2})], call_prefix="first"),
        openai_stream_dropped(["The heaviest ", "function is"]),
    )
    agent = ChatAgent(small_profiles(), settings_for(endpoint), NoAuth())
    events, history = run(agent, "What is slow?")
    events = joined_appends(events)
    assert [e["type"] for e in events] == [
        "tool_start",
        "tool_end",
        "model_chunk_start",
        "model_chunk_append",
        "error",
    ]
    assert events[3]["text"] == "The heaviest function is"
    assert events[-1]["message"] == (
        f"the connection to {endpoint.url}/v1 was closed in the middle of the answer "
        "(24 characters received): the answer is incomplete; try again"
    )
    assert [type(m) for m in history] == [HumanMessage, AIMessage, ToolMessage]
    assert history[0].content == "What is slow?"
    assert history[2].content.startswith("Top 2 functions by self time")

    # The next turn starts from that history.
    events, history = run(agent, "Try again", history)
    assert events[-1] == {"type": "model_response_end"}
    roles = [m["role"] for m in messages(endpoint.requests[-1])]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert [type(m) for m in history] == [
        HumanMessage,
        AIMessage,
        ToolMessage,
        HumanMessage,
        AIMessage,
    ]


def test_an_http_error_before_the_stream_is_an_error_event_that_says_what_to_do(
    endpoint: LoopbackServer,
) -> None:
    endpoint.script(openai_error(404, "The model `test-model` does not exist", code="not_found"))
    agent = ChatAgent(small_profiles(), settings_for(endpoint), NoAuth())
    events, history = run(agent, "Hello")
    assert events == [
        {
            "type": "error",
            "message": f"{endpoint.url}/v1 answered HTTP 404 (The model `test-model` does "
            "not exist): check the URL (a base URL such as https://HOST/v1, or the full "
            ".../chat/completions URL) and that the model 'test-model' exists there",
        }
    ]
    assert [type(m) for m in history] == [HumanMessage]


def test_a_stream_without_a_finish_and_a_closed_port_are_error_events(
    endpoint: LoopbackServer,
) -> None:
    endpoint.script(openai_stream_unfinished(["Half an "]))
    agent = ChatAgent(small_profiles(), settings_for(endpoint), NoAuth())
    events, history = run(agent, "Hello")
    assert events[-1]["type"] == "error"
    assert events[-1]["message"] == (
        f"the answer from {endpoint.url}/v1 stopped before the model finished (it sent no "
        "finish_reason; 8 characters received): the answer is truncated; try again"
    )
    assert [type(m) for m in history] == [HumanMessage]

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings.for_endpoint(f"http://127.0.0.1:{port}/v1", max_retries=0)
    events, _ = run(ChatAgent(small_profiles(), settings, NoAuth()), "Hello")
    assert events == [
        {
            "type": "error",
            "message": f"cannot connect to http://127.0.0.1:{port}/v1: connection refused; "
            "is the server running on that host and port?",
        }
    ]


def test_the_oauth_token_is_the_key_and_is_refreshed_between_turns() -> None:
    issuer = TokenIssuer("flamesight", "s3cret-client", expires_in=3600)
    now = [0.0]
    with (
        LoopbackServer(issuer) as tokens,
        LoopbackServer(openai_stream(["ok"])) as endpoint,
    ):
        endpoint.default = require(
            issuer.bearer_is_valid,
            openai_stream(["ok"]),
            openai_error(401, "invalid token", kind="invalid_request_error"),
        )
        auth = ClientCredentials(
            tokens.url + "/token", "flamesight", Secret("s3cret-client"), clock=lambda: now[0]
        )
        agent = ChatAgent(small_profiles(), settings_for(endpoint), auth)
        events, history = run(agent, "one")
        assert events[-1] == {"type": "model_response_end"}
        now[0] = 7200.0  # the first token has expired
        events, history = run(agent, "two", history)
        assert events[-1] == {"type": "model_response_end"}
        issuer.issued[1] = "revoked"  # token 2 is refused now: the agent fetches token 3 once
        events, history = run(agent, "three", history)
        assert events[-1] == {"type": "model_response_end"}
        issuer.issued[2] = "revoked"  # and again in a later answer: once per answer
        events, history = run(agent, "four", history)
        assert events[-1] == {"type": "model_response_end"}
    sent = [r.headers["authorization"] for r in endpoint.requests]
    assert sent == [
        "Bearer issued-access-token-1",
        "Bearer issued-access-token-2",
        "Bearer issued-access-token-2",
        "Bearer issued-access-token-3",
        "Bearer issued-access-token-3",
        "Bearer issued-access-token-4",
    ]
    assert len(tokens.requests) == 4


def test_snapshots_go_to_a_directory(endpoint: LoopbackServer, tmp_path: Path) -> None:
    endpoint.script(
        openai_tool_calls(
            [("render_flamegraph", {"view": "sandwich", "function": "parse", "height": 300})]
        ),
        openai_stream(["Seen."]),
    )
    snapshots = DirectorySnapshots(tmp_path / "snaps")
    agent = ChatAgent(small_profiles(), settings_for(endpoint), NoAuth(), snapshots=snapshots)
    events, _ = run(agent, "Show parse")
    end = next(e for e in events if e["type"] == "tool_end")
    assert end["image"] == str(tmp_path / "snaps" / "001-sandwich-parse.png")
    assert Image.open(end["image"]).size == (1200, 300)
    assert "sandwich of parse" in end["summary"]


def test_the_system_message_carries_the_summary(endpoint: LoopbackServer) -> None:
    agent = ChatAgent(LoadedProfiles(load(examples.path())), settings_for(endpoint), NoAuth())
    events, _ = run(agent, "Hi")
    system = messages(endpoint.requests[0])[0]
    assert system["role"] == "system"
    assert "performance analysis" in system["content"]
    assert "distinct_clients" in system["content"]
    assert "seconds" in system["content"]
    assert [e["type"] for e in events][-1] == "model_response_end"


# flamesight chat

PROGRAM = Path(sys.executable).with_name("flamesight")


def run_chat(
    *args: str | Path, cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed `flamesight chat` in `cwd`, with no settings from the environment."""
    if not PROGRAM.is_file():
        pytest.skip(f"{PROGRAM} is not installed (pip install -e . makes it)")
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("FLAMESIGHT_", "OPENAI_")) and name != "COLUMNS"
    }
    environment["XDG_CONFIG_HOME"] = str(cwd / "config")
    return subprocess.run(
        [str(PROGRAM), "chat", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        input=stdin,
        timeout=120,
        check=False,
        env=environment,
    )


def test_chat_once_end_to_end(endpoint: LoopbackServer, tmp_path: Path) -> None:
    endpoint.script(
        openai_tool_calls(
            [("top_functions", {"n": 3}), ("render_flamegraph", {"width": 600, "height": 300})],
            text="Looking at the profile.",
        ),
        openai_stream(["`distinct_clients` takes ", "19.7% of the time."]),
    )
    completed = run_chat(
        examples.path(),
        "--url",
        endpoint.url + "/v1",
        "--model",
        "test-model",
        "--no-auth",
        "--once",
        "What is slow?",
        "--save",
        "transcript.md",
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == (
        "Looking at the profile.\n`distinct_clients` takes 19.7% of the time.\n"
    )
    snapshot = tmp_path / "flamesight-snapshots" / "001-flamegraph.png"
    assert Image.open(snapshot).size == (600, 300)
    assert '> top_functions {"n": 3}' in completed.stderr
    assert "Top 3 functions by self time in [0 s, 4.33 s)" in completed.stderr
    assert f"saved {Path('flamesight-snapshots') / '001-flamegraph.png'}" in (completed.stderr)
    transcript = (tmp_path / "transcript.md").read_text()
    assert transcript.startswith(f"# flamesight chat: {examples.path()}")
    assert "## You\n\nWhat is slow?" in transcript
    assert "![render_flamegraph](flamesight-snapshots/001-flamegraph.png)" in transcript
    assert "`distinct_clients` takes 19.7% of the time." in transcript
    # The model saw the tool results and the image.
    final = endpoint.requests[-1].json()["messages"]
    assert final[0]["role"] == "system" and "distinct_clients" in final[0]["content"]
    assert final[3]["role"] == "tool" and "| distinct_clients" in final[3]["content"]
    assert final[-1]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_chat_interactive_keeps_the_history(endpoint: LoopbackServer, tmp_path: Path) -> None:
    endpoint.script(openai_stream(["First answer."]), openai_stream(["Second answer."]))
    completed = run_chat(
        examples.path(),
        "--url",
        endpoint.url + "/v1",
        "--no-auth",
        cwd=tmp_path,
        stdin="first question\nsecond question\n",
    )
    assert completed.returncode == 0, completed.stderr
    assert "First answer." in completed.stdout and "Second answer." in completed.stdout
    roles = [(m["role"], m["content"]) for m in endpoint.requests[1].json()["messages"][1:]]
    assert roles == [
        ("user", "first question"),
        ("assistant", "First answer."),
        ("user", "second question"),
    ]
    assert not (tmp_path / "flamesight-snapshots").exists()


def test_chat_once_exits_1_when_the_endpoint_fails(
    endpoint: LoopbackServer, tmp_path: Path
) -> None:
    endpoint.script(openai_error(500, "the model crashed", kind="server_error"))
    completed = run_chat(
        examples.path(),
        "--url",
        endpoint.url + "/v1",
        "--no-auth",
        "--max-retries",
        "0",
        "--once",
        "Hi",
        cwd=tmp_path,
    )
    assert completed.returncode == 1
    assert "Error: " in completed.stderr and "the model crashed" in completed.stderr


def established_to(port: int) -> int:
    """How many TCP connections of this machine to 127.0.0.1:`port` are open (ESTABLISHED)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
            count += 1
    return count


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_the_url_check_runs_on_every_request_and_the_client_is_closed_after_the_turn(
    endpoint: LoopbackServer,
) -> None:
    checked: list[str] = []
    endpoint.script(
        openai_tool_calls([("top_functions", {"n": 2})], call_prefix="a"),
        openai_tool_calls([("hot_paths", {"n": 1})], call_prefix="b"),
    )
    settings = dataclasses.replace(settings_for(endpoint), url_check=checked.append)
    agent = ChatAgent(small_profiles(), settings, NoAuth())
    events, history = run(agent, "Look twice")
    assert events[-1]["type"] == "model_response_end"
    assert checked == [f"{endpoint.url}/v1/chat/completions"] * 3
    # The turn's HTTP client is closed with its connections when the turn ends ...
    assert established_to(endpoint.port) == 0
    # ... and the next turn of the same agent opens a new one.
    events, _ = run(agent, "Once more", history)
    assert events[-1]["type"] == "model_response_end" and len(checked) == 4
    assert established_to(endpoint.port) == 0

"""`flamesight mcp`: the MCP client SDK starts the real server over stdio and calls every tool."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from PIL import Image

from flamesight import examples
from flamesight.agent import TOOLS
from flamesight.cli.mcp_command import parse_host_port
from flamesight.mcp import MCP_TOOLS

PROGRAM = Path(sys.executable).with_name("flamesight")


def speedscope(samples: list[tuple[list[str], float]]) -> str:
    """A sampled speedscope document in milliseconds, samples laid end to end."""
    names: list[str] = []
    for stack, _ in samples:
        names += [name for name in stack if name not in names]
    return json.dumps(
        {
            "$schema": "https://www.speedscope.app/file-format-schema.json",
            "shared": {"frames": [{"name": name} for name in names]},
            "profiles": [
                {
                    "type": "sampled",
                    "name": "worker",
                    "unit": "milliseconds",
                    "startValue": 0,
                    "endValue": sum(weight for _, weight in samples),
                    "samples": [[names.index(n) for n in stack] for stack, _ in samples],
                    "weights": [weight for _, weight in samples],
                }
            ],
        }
    )


@pytest.fixture
def traces(tmp_path: Path) -> tuple[str, str]:
    """Two small generated profiles: before and after."""
    before = tmp_path / "before.json"
    after = tmp_path / "after.json"
    before.write_text(speedscope([(["main", "parse"], 30), (["main", "render"], 70)]))
    after.write_text(speedscope([(["main", "parse"], 10), (["main", "render"], 90)]))
    return str(before), str(after)


def server_parameters(tmp_path: Path) -> StdioServerParameters:
    """How the client starts `flamesight mcp`."""
    if not PROGRAM.is_file():
        pytest.skip(f"{PROGRAM} is not installed (pip install -e . makes it)")
    return StdioServerParameters(command=str(PROGRAM), args=["mcp"], cwd=str(tmp_path))


def texts(result: Any) -> str:
    """The text blocks of a tool result, joined."""
    return "\n".join(block.text for block in result.content if block.type == "text")


def test_the_client_lists_and_calls_every_tool_over_stdio(
    tmp_path: Path, traces: tuple[str, str]
) -> None:
    before, after = traces
    example = str(examples.path())
    arguments: dict[str, dict[str, Any]] = {
        "list_profiles": {"trace": example},
        "summary": {"trace": example, "start": "1s", "end": "2s"},
        "top_functions": {"trace": before, "n": 2},
        "call_tree": {"trace": before, "function": "main", "direction": "callees", "depth": 2},
        "hot_paths": {"trace": before, "n": 1},
        "summarize_range": {"trace": before, "start": 0, "end": 50},
        "search_frames": {"trace": before, "pattern": "par"},
        "compare_ranges": {"trace": before, "a_start": 0, "a_end": 30, "b_start": 30, "b_end": 100},
        "compare_profiles": {"trace": before, "other_trace": after},
        "render_flamegraph": {"trace": example, "width": 500, "height": 250},
    }

    async def session() -> tuple[Any, dict[str, Any], list[Any]]:
        async with Client(server_parameters(tmp_path)) as client:
            listed = await client.list_tools()
            results = {}
            for name, args in arguments.items():
                results[name] = await client.call_tool(name, args)
            failures = [
                await client.call_tool("call_tree", {"trace": before, "function": "nope"}),
                await client.call_tool("top_functions", {"trace": str(tmp_path / "missing")}),
                await client.call_tool("top_functions", {"trace": before, "n": 0}),
                await client.call_tool("compare_profiles", {"trace": before}),
                await client.call_tool("no_such_tool", {"trace": before}),
            ]
            return listed, results, failures

    listed, results, failures = anyio.run(session)

    tools = {tool.name: tool for tool in listed.tools}
    assert list(tools) == ["list_profiles", "summary", *(tool.name for tool in TOOLS)]
    assert set(tools) == set(arguments)
    for tool in tools.values():
        assert tool.input_schema["required"][0] == "trace"
        assert tool.description
    assert "other_trace" in tools["compare_profiles"].input_schema["required"]
    assert tools["call_tree"].input_schema["properties"]["direction"]["enum"] == [
        "callers",
        "callees",
    ]

    for name, result in results.items():
        assert not result.is_error, (name, texts(result))
    assert texts(results["list_profiles"]).startswith("1 profiles in log_report.speedscope.json")
    assert "distinct_clients" in texts(results["list_profiles"])
    assert "Range 1.00 s to 2.00 s" in texts(results["summary"])
    assert texts(results["top_functions"]).splitlines()[2:] == [
        "1 | 70.0 ms | 70.0% | 70.0 ms | 70.0% | render",
        "2 | 30.0 ms | 30.0% | 30.0 ms | 30.0% | parse",
    ]
    assert "  render  70.0 ms | 70.0% | 70.0 ms" in texts(results["call_tree"])
    assert "1. 70.0 ms | 70.0% | main -> render" in texts(results["hot_paths"])
    assert texts(results["summarize_range"]).startswith("Summary of [0 s, 50.0 ms):")
    assert "30.0 ms | 30.0 ms | 30.0% | parse" in texts(results["search_frames"])
    assert "totals 30.0 ms -> 70.0 ms" in texts(results["compare_ranges"])
    assert "'after.json' compared with 'before.json'" in texts(results["compare_profiles"])
    assert "-20.0 ms (-67%) | changed | parse" in texts(results["compare_profiles"])

    render = results["render_flamegraph"]
    assert [block.type for block in render.content] == ["text", "image"]
    assert render.content[0].text.startswith("Rendered a 500x250 PNG flame graph")
    image = render.content[1]
    assert image.mime_type == "image/png"
    assert Image.open(io.BytesIO(base64.b64decode(image.data))).size == (500, 250)

    messages = [texts(result) for result in failures]
    assert all(result.is_error for result in failures)
    assert "no function named 'nope'" in messages[0]
    assert messages[1].startswith("cannot open ") and "missing" in messages[1]
    assert messages[2].startswith("bad arguments for top_functions: n:")
    assert "needs other_trace" in messages[3]
    assert "there is no tool 'no_such_tool'" in messages[4]


def test_every_shared_tool_is_offered_with_a_trace_argument() -> None:
    names = [tool.name for tool in MCP_TOOLS]
    assert names[2:] == [tool.name for tool in TOOLS]
    for tool in MCP_TOOLS:
        schema = tool.input_schema()
        assert schema["properties"]["trace"]["type"] == "string"
        assert schema["type"] == "object"


def test_host_and_port_parsing() -> None:
    assert parse_host_port("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert parse_host_port("[::1]:9000") == ("::1", 9000)
    assert parse_host_port(":9000") == ("127.0.0.1", 9000)


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_streamable_http(tmp_path: Path, traces: tuple[str, str]) -> None:
    if not PROGRAM.is_file():
        pytest.skip(f"{PROGRAM} is not installed (pip install -e . makes it)")
    port = free_port()
    server = subprocess.Popen(
        [str(PROGRAM), "mcp", "--http", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError("the MCP HTTP server did not start") from None
                time.sleep(0.1)

        async def session() -> tuple[Any, Any]:
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                listed = await client.list_tools()
                result = await client.call_tool("hot_paths", {"trace": traces[0], "n": 1})
                return listed, result

        listed, result = anyio.run(session)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert "render_flamegraph" in [tool.name for tool in listed.tools]
    assert "1. 70.0 ms | 70.0% | main -> render" in texts(result)

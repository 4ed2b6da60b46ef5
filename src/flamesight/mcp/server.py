"""The analysis tools over the Model Context Protocol (the official `mcp` SDK).

Every tool of `flamesight.agent.tools` is offered with one more argument,
`trace`: the path of a local profile file, loaded once and cached (loaded
again when the file changes). `compare_profiles` takes a second path,
`other_trace`. Two tools exist only here: `list_profiles(trace)` (the
threads or processes of a file) and `summary(trace, start?, end?)` (the
budgeted summary of DESIGN.md). `render_flamegraph` answers with an MCP
image content block (PNG) after its text. A tool that fails answers with
``isError`` and a message the model can act on.

Run it with ``flamesight mcp`` (stdio) or ``flamesight mcp --http HOST:PORT``
(streamable HTTP at ``/mcp``).
"""

from __future__ import annotations

import base64
import copy
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server import Server
from pydantic import BaseModel, ConfigDict, Field

from flamesight import __version__
from flamesight.agent.tools import (
    TOOLS,
    LoadedProfiles,
    Tool,
    ToolFailure,
    ToolOutput,
    checked_range,
)
from flamesight.analysis import profile_breakdown, summary
from flamesight.formats import FormatError, load

SERVER_NAME = "flamesight"
SUMMARY_BUDGET_TOKENS = 2000
INSTRUCTIONS = (
    "flamesight analyses performance profiles (py-spy, perf, pprof, Chrome, speedscope, "
    "cProfile, collapsed stacks and more). Every tool takes `trace`, the path of a profile "
    "file on this machine. Start with summary or top_functions, then drill down with "
    "call_tree, hot_paths and render_flamegraph."
)

_TRACE_SCHEMA = {
    "type": "string",
    "description": "Path of a profile file on this machine (any format flamesight reads).",
}
_OTHER_TRACE_SCHEMA = {
    "type": "string",
    "description": "Path of the second (after) profile file to compare with `trace` (before).",
}


class TraceCache:
    """Profiles by path: each file loaded once, and again only when it changes on disk."""

    def __init__(self) -> None:
        self._loaded: dict[Path, tuple[tuple[int, int], Any]] = {}
        self._lock = threading.Lock()

    def group(self, trace: str) -> Any:
        """The `ProfileGroup` of the file at `trace`; `ToolFailure` when it cannot be read."""
        path = Path(os.path.expanduser(trace)).resolve()
        try:
            info = path.stat()
        except OSError as error:
            raise ToolFailure(f"cannot open {trace}: {error.strerror or error}") from None
        if not path.is_file():
            raise ToolFailure(f"{trace} is not a file; pass the path of a profile file")
        stamp = (info.st_mtime_ns, info.st_size)
        with self._lock:
            cached = self._loaded.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        try:
            group = load(path)
        except FormatError as error:
            raise ToolFailure(f"cannot read {trace}: {error}") from None
        except OSError as error:
            raise ToolFailure(f"cannot read {trace}: {error.strerror or error}") from None
        with self._lock:
            self._loaded[path] = (stamp, group)
        return group

    def profiles(self, trace: str, other: str | None = None) -> LoadedProfiles:
        """`LoadedProfiles` for `trace` (and `other`, to compare with)."""
        return LoadedProfiles(
            self.group(trace),
            self.group(other) if other else None,
            name=Path(trace).name,
            other_name=Path(other).name if other else None,
        )


# the two tools that exist only here


class ListProfilesArgs(BaseModel):
    """Arguments of `list_profiles`."""

    model_config = ConfigDict(extra="forbid")


class SummaryArgs(BaseModel):
    """Arguments of `summary`."""

    model_config = ConfigDict(extra="forbid")
    start: float | str | None = Field(
        default=None,
        description="Start of the range, in the profile's unit or with a suffix ('1.5s', "
        "'200ms'); omit for the whole profile.",
    )
    end: float | str | None = Field(
        default=None, description="End of the range (exclusive), same forms as start."
    )
    profile: int | str | None = Field(
        default=None,
        description="Which profile (thread or process), by index from 0 or by name.",
    )


def _list_profiles(profiles: LoadedProfiles, _args: ListProfilesArgs) -> ToolOutput:
    group = profiles.group
    head = f"{len(group.profiles)} profiles in {profiles.name or group.name} ({group.format})"
    lines = [f"{head}; index | name | unit | samples | total | share | heaviest function:"]
    for share in profile_breakdown(group):
        profile = group.profiles[share.index]
        active = " (main)" if share.index == group.active_index else ""
        percent = f"{share.share_pct:.1f}%" if share.share_pct is not None else "-"
        lines.append(
            f"{share.index} | {share.name}{active} | {share.unit} | {share.samples:,} | "
            f"{profile.format_value(share.total)} | {percent} | {share.top_function or '-'}"
        )
    return ToolOutput("\n".join(lines), head)


def _summary(profiles: LoadedProfiles, args: SummaryArgs) -> ToolOutput:
    profile = profiles.profile(args.profile)
    lo, hi, _ = checked_range(profile, args.start, args.end)
    index = profiles.group.profiles.index(profile)
    document = summary(profiles.group, lo, hi, SUMMARY_BUDGET_TOKENS, profile=index)
    return ToolOutput(document.markdown, f"summary of {profiles.name}")


EXTRA_TOOLS: tuple[Tool, ...] = (
    Tool(
        "list_profiles",
        "List the profiles (threads, processes, sample types) in a profile file, with their "
        "units, sample counts, total weight, share and heaviest function.",
        ListProfilesArgs,
        _list_profiles,
    ),
    Tool(
        "summary",
        "Summarise a profile file, or a time range of it: metadata, top functions by self and "
        "total time, heaviest call paths, timeline, per-thread shares and notable patterns.",
        SummaryArgs,
        _summary,
    ),
)


@dataclass(frozen=True)
class McpTool:
    """A tool as MCP offers it: the shared definition plus its file arguments."""

    tool: Tool

    @property
    def name(self) -> str:
        """The tool's name."""
        return self.tool.name

    def input_schema(self) -> dict[str, Any]:
        """The tool's argument schema with `trace` (and `other_trace`) added."""
        schema = copy.deepcopy(self.tool.parameters())
        properties = {"trace": _TRACE_SCHEMA}
        required = ["trace"]
        if self.tool.needs_other:
            properties["other_trace"] = _OTHER_TRACE_SCHEMA
            required.append("other_trace")
        schema["properties"] = {**properties, **schema.get("properties", {})}
        schema["required"] = required + list(schema.get("required", []))
        schema.setdefault("type", "object")
        return schema

    def describe(self) -> types.Tool:
        """The MCP tool listing entry."""
        return types.Tool(
            name=self.name, description=self.tool.description, input_schema=self.input_schema()
        )

    def run(self, cache: TraceCache, arguments: dict[str, Any]) -> ToolOutput:
        """Load the trace(s) named in `arguments` and run the tool on the rest."""
        arguments = dict(arguments)
        trace = arguments.pop("trace", None)
        other = arguments.pop("other_trace", None)
        if not isinstance(trace, str) or not trace:
            raise ToolFailure(f"{self.name} needs trace: the path of a profile file")
        if self.tool.needs_other and (not isinstance(other, str) or not other):
            raise ToolFailure(f"{self.name} needs other_trace: the path of a second profile")
        profiles = cache.profiles(trace, other if self.tool.needs_other else None)
        return self.tool.call(profiles, arguments)


MCP_TOOLS: tuple[McpTool, ...] = tuple(McpTool(tool) for tool in (*EXTRA_TOOLS, *TOOLS))
"""Every tool the MCP server offers, in order."""


def call_result(output: ToolOutput) -> types.CallToolResult:
    """A tool's output as MCP content: its text, then its PNG as an image block."""
    content: list[Any] = [types.TextContent(type="text", text=output.text)]
    if output.image is not None:
        content.append(
            types.ImageContent(
                type="image",
                data=base64.b64encode(output.image).decode("ascii"),
                mime_type="image/png",
            )
        )
    return types.CallToolResult(content=content, is_error=False)


def error_result(message: str) -> types.CallToolResult:
    """A failed call: the message, flagged as an error the model can read."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], is_error=True
    )


def build_server(cache: TraceCache | None = None) -> Server[Any]:
    """The MCP server with every flamesight tool."""
    traces = cache or TraceCache()
    by_name: dict[str, McpTool] = {tool.name: tool for tool in MCP_TOOLS}

    async def list_tools(
        _ctx: Any, _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool.describe() for tool in MCP_TOOLS])

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = by_name.get(params.name)
        if tool is None:
            names = ", ".join(by_name)
            return error_result(f"there is no tool {params.name!r}; the tools are {names}")
        run: Callable[[], ToolOutput] = lambda: tool.run(traces, params.arguments or {})  # noqa: E731
        try:
            output = await anyio.to_thread.run_sync(run)
        except ToolFailure as failure:
            return error_result(str(failure))
        except Exception as error:  # a bug in a tool: say so, keep serving
            return error_result(
                f"{tool.name} failed unexpectedly ({type(error).__name__}: {error})"
            )
        return call_result(output)

    return Server(
        SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def serve_stdio(server: Server[Any] | None = None) -> None:
    """Serve on stdin/stdout until the client closes them."""
    from mcp.server.stdio import stdio_server

    app = server or build_server()

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await app.run(read_stream, write_stream, app.create_initialization_options())

    anyio.run(main)


def serve_http(host: str, port: int, server: Server[Any] | None = None) -> None:
    """Serve streamable HTTP at http://HOST:PORT/mcp until interrupted."""
    import uvicorn

    app = server or build_server()
    uvicorn.run(app.streamable_http_app(host=host), host=host, port=port, log_level="warning")

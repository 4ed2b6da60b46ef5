"""The analysis tools a model can call: each defined once, offered to the chat agent and MCP.

A `Tool` is a name, a description written for a model, a pydantic argument
schema and a function over `LoadedProfiles`. The functions are thin wrappers
over `flamesight.analysis` and `flamesight.render`; their text results are
short and numeric, with weights formatted in the profile's unit ("1.23 ms",
"45.6 MB", "1,234 samples"). A tool that cannot do what was asked (an unknown
function, an empty range, a bad argument) raises `ToolFailure` with a message
the model can act on; `Tool.call` turns validation errors into one too.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flamesight.analysis import (
    CallNode,
    callees,
    callers,
    diff_profiles,
    diff_ranges,
    hot_paths,
    search_frames,
    summary,
    top_functions,
)
from flamesight.model import Profile, ProfileGroup, parse_quantity
from flamesight.render import render_flamegraph

SUMMARY_BUDGET_TOKENS = 1200
"""Token budget of the `summarize_range` tool's result."""
TREE_LINES = 40
"""At most this many lines of a call tree go back to the model."""
NAME_WIDTH = 120
"""Function names longer than this are cut in results."""

Time = float | str | None


class ToolFailure(Exception):
    """A tool could not do what was asked; the message tells the model what to do instead."""


@dataclass(frozen=True)
class ToolOutput:
    """What a tool returns: text for the model, a one-line summary for people, maybe a PNG."""

    text: str
    summary: str
    image: bytes | None = None


@dataclass
class LoadedProfiles:
    """The profiles the tools work on: one file's group, and optionally a second to compare.

    `name` and `other_name` are what the files are called in results.
    """

    group: ProfileGroup
    other: ProfileGroup | None = None
    name: str | None = None
    other_name: str | None = None

    def profile(self, selector: int | str | None = None) -> Profile:
        """The active profile, or the one numbered (from 0) or named by `selector`."""
        profiles = self.group.profiles
        if selector is None:
            return self.group.active
        if isinstance(selector, int) or (isinstance(selector, str) and selector.isdigit()):
            index = int(selector)
            if 0 <= index < len(profiles):
                return profiles[index]
        else:
            for profile in profiles:
                if profile.name == selector:
                    return profile
            wanted = selector.lower()
            for profile in profiles:
                if wanted in profile.name.lower():
                    return profile
        names = ", ".join(f"{i}: {p.name!r}" for i, p in enumerate(profiles))
        raise ToolFailure(f"no profile {selector!r} in this file; the profiles are {names}")


# argument schemas


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


_START = Field(
    default=None,
    description="Start of the time range, in the profile's unit or with a suffix "
    "('1.5s', '200ms', '30us'); omit for the start of the profile.",
)
_END = Field(
    default=None,
    description="End of the time range (exclusive), same forms as start; omit for the end.",
)
_PROFILE = Field(
    default=None,
    description="Which profile (thread or process) of the file, by index from 0 or by name; "
    "omit for the main one.",
)


class TopFunctionsArgs(_Args):
    """Arguments of `top_functions`."""

    by: Literal["self", "total"] = Field(
        default="self",
        description="'self': time spent in the function itself; 'total': including its callees.",
    )
    n: int = Field(default=20, ge=1, le=100, description="How many functions to list.")
    start: Time = _START
    end: Time = _END
    profile: int | str | None = _PROFILE


class CallTreeArgs(_Args):
    """Arguments of `call_tree`."""

    function: str = Field(description="The function's exact name, as other tools print it.")
    direction: Literal["callers", "callees"] = Field(
        default="callees",
        description="'callers': who calls the function; 'callees': what it calls.",
    )
    depth: int = Field(default=4, ge=1, le=20, description="How many levels to show.")
    start: Time = _START
    end: Time = _END
    profile: int | str | None = _PROFILE


class HotPathsArgs(_Args):
    """Arguments of `hot_paths`."""

    n: int = Field(default=5, ge=1, le=50, description="How many paths to list.")
    start: Time = _START
    end: Time = _END
    profile: int | str | None = _PROFILE


class SummarizeRangeArgs(_Args):
    """Arguments of `summarize_range`."""

    start: Time = Field(description="Start of the range (profile unit, or '1.5s', '200ms').")
    end: Time = Field(description="End of the range (exclusive), same forms as start.")
    profile: int | str | None = _PROFILE


class SearchFramesArgs(_Args):
    """Arguments of `search_frames`."""

    pattern: str = Field(min_length=1, description="Text to find in function names and file paths.")
    regex: bool = Field(default=False, description="Treat the pattern as a regular expression.")
    n: int = Field(default=20, ge=1, le=100, description="How many matches to list at most.")
    profile: int | str | None = _PROFILE


class CompareRangesArgs(_Args):
    """Arguments of `compare_ranges`."""

    a_start: float | str = Field(description="Start of the first (before) range.")
    a_end: float | str = Field(description="End of the first range (exclusive).")
    b_start: float | str = Field(description="Start of the second (after) range.")
    b_end: float | str = Field(description="End of the second range (exclusive).")
    by: Literal["self", "total"] = Field(default="self", description="Compare self or total time.")
    n: int = Field(default=10, ge=1, le=50, description="How many of the largest changes to list.")
    profile: int | str | None = _PROFILE


class CompareProfilesArgs(_Args):
    """Arguments of `compare_profiles`."""

    by: Literal["self", "total"] = Field(default="self", description="Compare self or total time.")
    n: int = Field(default=10, ge=1, le=50, description="How many of the largest changes to list.")


class RenderFlamegraphArgs(_Args):
    """Arguments of `render_flamegraph`."""

    view: Literal["flamegraph", "flamechart", "sandwich"] = Field(
        default="flamegraph",
        description="'flamegraph': stacks merged, heaviest left; 'flamechart': time order; "
        "'sandwich': the callers and callees of one function (needs function).",
    )
    function: str | None = Field(
        default=None, description="The function to centre the sandwich view on."
    )
    start: Time = _START
    end: Time = _END
    width: int = Field(default=1200, ge=200, le=4000, description="Image width in pixels.")
    height: int = Field(default=800, ge=100, le=4000, description="Image height in pixels.")
    profile: int | str | None = _PROFILE


# the tool definition


@functools.cache
def _parameters(args: type[BaseModel]) -> dict[str, Any]:
    """The argument schema of a tool, made once per model class (pydantic takes ~2 ms)."""
    schema = args.model_json_schema()
    schema.pop("title", None)
    schema.pop("description", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema


Run = Callable[[LoadedProfiles, Any], ToolOutput]


@dataclass(frozen=True)
class Tool:
    """One tool: its name, a description for models, its argument schema and its function.

    `needs_other` marks a tool that is offered only when a second profile is loaded.
    """

    name: str
    description: str
    args: type[BaseModel]
    run: Run
    needs_other: bool = False

    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments, as function-calling APIs want it (a fresh copy)."""
        return copy.deepcopy(_parameters(self.args))

    def openai_schema(self) -> dict[str, Any]:
        """The tool in the OpenAI chat-completions `tools` format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters(),
            },
        }

    def validate(self, arguments: dict[str, Any] | None) -> BaseModel:
        """The arguments checked against the schema; `ToolFailure` saying what is wrong."""
        try:
            return self.args.model_validate(arguments or {})
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in error.errors()
            )
            raise ToolFailure(f"bad arguments for {self.name}: {problems}") from None

    def call(self, profiles: LoadedProfiles, arguments: dict[str, Any] | None) -> ToolOutput:
        """Validate `arguments` and run the tool; every failure becomes a `ToolFailure`."""
        args = self.validate(arguments)
        if self.needs_other and profiles.other is None:
            raise ToolFailure(f"{self.name} needs a second profile, and only one is loaded")
        try:
            return self.run(profiles, args)
        except ToolFailure:
            raise
        except (LookupError, ValueError) as error:
            message = str(error.args[0]) if error.args else str(error)
            raise ToolFailure(message) from None


# helpers


def _cut(name: str) -> str:
    return name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"


def _pct(value: float, total: float) -> str:
    return f"{100.0 * value / total:.1f}%" if total > 0 else "0.0%"


def _time(profile: Profile, value: float | str | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_quantity(value, profile.unit)
    except ValueError as error:
        raise ToolFailure(f"{what}: {error}") from None


def checked_range(
    profile: Profile, start: float | str | None, end: float | str | None
) -> tuple[float | None, float | None, Profile]:
    """The range asked for and its slice; `ToolFailure` when it holds no samples."""
    lo = _time(profile, start, "start")
    hi = _time(profile, end, "end")
    if lo is None and hi is None:
        selected = profile
    else:
        if lo is not None and hi is not None and hi <= lo:
            raise ToolFailure(
                f"the range is empty: end {profile.format_value(hi)} is not after start "
                f"{profile.format_value(lo)}"
            )
        selected = profile.slice(lo, hi)
    if selected.total_weight <= 0:
        raise ToolFailure(
            f"no samples in {_range_text(profile, lo, hi)}; the profile spans "
            f"{_range_text(profile, None, None)}. Pick a range inside it."
        )
    return lo, hi, selected


def _range_text(profile: Profile, lo: float | None, hi: float | None) -> str:
    first = profile.start if lo is None else lo
    last = profile.end if hi is None else hi
    return f"[{profile.format_value(first)}, {profile.format_value(last)})"


def _where(profiles: LoadedProfiles, profile: Profile, lo: float | None, hi: float | None) -> str:
    names = f" of {profile.name!r}" if len(profiles.group.profiles) > 1 else ""
    return f"{_range_text(profile, lo, hi)}{names}"


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0]


# the tools


def _top_functions(profiles: LoadedProfiles, args: TopFunctionsArgs) -> ToolOutput:
    profile = profiles.profile(args.profile)
    lo, hi, _ = checked_range(profile, args.start, args.end)
    top = top_functions(profile, by=args.by, n=args.n, start=lo, end=hi)
    fmt = profile.format_value
    head = (
        f"Top {len(top.functions)} functions by {args.by} time in "
        f"{_where(profiles, profile, lo, hi)}, total {fmt(top.total)}:"
    )
    lines = [head, "rank | self | self% | total | total% | function"]
    for rank, f in enumerate(top.functions, 1):
        lines.append(
            f"{rank} | {fmt(f.self)} | {f.self_pct:.1f}% | {fmt(f.total)} | {f.total_pct:.1f}% "
            f"| {_cut(f.name)}"
        )
    return ToolOutput("\n".join(lines), head.rstrip(":"))


def _call_tree(profiles: LoadedProfiles, args: CallTreeArgs) -> ToolOutput:
    profile = profiles.profile(args.profile)
    lo, hi, _ = checked_range(profile, args.start, args.end)
    build = callers if args.direction == "callers" else callees
    tree = build(profile, args.function, depth=args.depth, start=lo, end=hi)
    fmt = profile.format_value
    head = (
        f"{args.direction.capitalize()} of {args.function} in "
        f"{_where(profiles, profile, lo, hi)}, depth {args.depth} "
        f"(total | total% of range | self):"
    )
    lines = [head]
    pending: list[tuple[CallNode, int]] = [(root, 0) for root in reversed(tree.roots)]
    cut = 0
    while pending:
        node, level = pending.pop()
        if len(lines) > TREE_LINES:
            cut += 1
            continue
        lines.append(
            f"{'  ' * level}{_cut(node.name)}  {fmt(node.total)} | "
            f"{_pct(node.total, tree.total)} | {fmt(node.self)}"
        )
        pending.extend((child, level + 1) for child in reversed(node.children))
    if cut:
        lines.append(f"({cut} more nodes not shown; ask for a smaller depth or a narrower range)")
    return ToolOutput("\n".join(lines), head.split(" (")[0])


def _hot_paths(profiles: LoadedProfiles, args: HotPathsArgs) -> ToolOutput:
    profile = profiles.profile(args.profile)
    lo, hi, _ = checked_range(profile, args.start, args.end)
    paths = hot_paths(profile, n=args.n, start=lo, end=hi)
    fmt = profile.format_value
    head = (
        f"The {len(paths)} heaviest call paths in {_where(profiles, profile, lo, hi)} "
        f"(leaf self time | share | path, root first):"
    )
    lines = [head]
    for rank, path in enumerate(paths, 1):
        lines.append(f"{rank}. {fmt(path.weight)} | {path.pct:.1f}% | {_cut(path.text)}")
    return ToolOutput("\n".join(lines), head.split(" (")[0])


def _summarize_range(profiles: LoadedProfiles, args: SummarizeRangeArgs) -> ToolOutput:
    profile = profiles.profile(args.profile)
    lo, hi, _ = checked_range(profile, args.start, args.end)
    index = profiles.group.profiles.index(profile)
    document = summary(profiles.group, lo, hi, SUMMARY_BUDGET_TOKENS, profile=index)
    head = f"Summary of {_where(profiles, profile, lo, hi)}:"
    return ToolOutput(f"{head}\n{document.markdown}", head.rstrip(":"))


def _search_frames(profiles: LoadedProfiles, args: SearchFramesArgs) -> ToolOutput:
    profile = profiles.profile(args.profile)
    found = search_frames(profile, args.pattern, regex=args.regex)
    fmt = profile.format_value
    total = profile.total_weight
    head = f"{len(found)} functions match {args.pattern!r}"
    if not found:
        return ToolOutput(
            f"{head}. Try a shorter pattern, or top_functions to see the names in use.", head
        )
    lines = [f"{head} (heaviest first; self | total | total% | function | file):"]
    for f in found[: args.n]:
        where = f"{f.file}:{f.line}" if f.file and f.line is not None else (f.file or "-")
        lines.append(
            f"{fmt(f.self)} | {fmt(f.total)} | {_pct(f.total, total)} | {_cut(f.name)} | {where}"
        )
    if len(found) > args.n:
        lines.append(f"({len(found) - args.n} more not shown)")
    return ToolOutput("\n".join(lines), head)


def _diff_lines(diff: Any, fmt: Callable[[float], str], n: int) -> list[str]:
    changed = [c for c in diff.functions if c.status != "same"]
    if not changed:
        return ["No function's time changed."]
    lines = ["before | after | change | status | function"]
    for change in changed[:n]:
        sign = "+" if change.delta >= 0 else "-"
        relative = f" ({change.relative * 100:+.0f}%)" if change.relative is not None else ""
        lines.append(
            f"{fmt(change.before)} | {fmt(change.after)} | {sign}{fmt(abs(change.delta))}"
            f"{relative} | {change.status} | {_cut(change.name)}"
        )
    return lines


def _compare_ranges(profiles: LoadedProfiles, args: CompareRangesArgs) -> ToolOutput:
    profile = profiles.profile(args.profile)
    a_lo, a_hi, _ = checked_range(profile, args.a_start, args.a_end)
    b_lo, b_hi, _ = checked_range(profile, args.b_start, args.b_end)
    assert a_lo is not None and a_hi is not None and b_lo is not None and b_hi is not None
    diff = diff_ranges(profile, (a_lo, a_hi), (b_lo, b_hi), by=args.by)
    fmt = profile.format_value
    head = (
        f"{args.by.capitalize()} time in {_range_text(profile, b_lo, b_hi)} compared with "
        f"{_range_text(profile, a_lo, a_hi)}: totals {fmt(diff.before_total)} -> "
        f"{fmt(diff.after_total)}"
    )
    note = " (after side scaled to the before total)" if diff.normalised else ""
    lines = [f"{head}{note}; the largest changes:", *_diff_lines(diff, fmt, args.n)]
    return ToolOutput("\n".join(lines), head)


def _compare_profiles(profiles: LoadedProfiles, args: CompareProfilesArgs) -> ToolOutput:
    assert profiles.other is not None
    before = profiles.group.active
    after = profiles.other.active
    diff = diff_profiles(before, after, by=args.by)
    fmt = before.format_value
    first = profiles.name or before.name
    second = profiles.other_name or after.name
    head = (
        f"{args.by.capitalize()} time in {second!r} compared with {first!r}: totals "
        f"{fmt(diff.before_total)} -> {fmt(diff.after_total)}"
    )
    note = " (after side scaled to the before total)" if diff.normalised else ""
    lines = [f"{head}{note}; the largest changes:", *_diff_lines(diff, fmt, args.n)]
    return ToolOutput("\n".join(lines), head)


def _render_flamegraph(profiles: LoadedProfiles, args: RenderFlamegraphArgs) -> ToolOutput:
    profile = profiles.profile(args.profile)
    lo, hi, selected = checked_range(profile, args.start, args.end)
    if args.view != "sandwich" and args.function is not None:
        raise ToolFailure(
            f"function is for the sandwich view; call render_flamegraph with view='sandwich' "
            f"to centre on {args.function!r}, or leave function out for the {args.view}"
        )
    if args.view == "sandwich" and not args.function:
        raise ToolFailure("the sandwich view needs a function: pass function='name'")
    what = {
        "flamegraph": "flame graph (stacks merged by function, heaviest left, width = time)",
        "flamechart": "flame chart (time left to right, callers above callees)",
        "sandwich": f"sandwich of {args.function} (callers above it, callees below)",
    }[args.view]
    title = f"{profile.name}: {args.view} {_range_text(profile, lo, hi)}"
    png = render_flamegraph(
        profile,
        "png",
        view=args.view,
        function=args.function,
        width=args.width,
        height=args.height,
        start=lo,
        end=hi,
        title=title,
    )
    top = top_functions(selected, by="total", n=3).functions
    widest = ", ".join(f"{_cut(f.name)} {f.total_pct:.0f}%" for f in top)
    head = (
        f"Rendered a {args.width}x{args.height} PNG {what} of {_where(profiles, profile, lo, hi)}"
    )
    text = (
        f"{head}, total {profile.format_value(selected.total_weight)}. Widest functions by "
        f"total: {widest}. The image is attached to the next message."
    )
    return ToolOutput(text, head, png)


TOOLS: tuple[Tool, ...] = (
    Tool(
        "top_functions",
        "List the heaviest functions of the profile (or of a time range), with self time "
        "(in the function itself) and total time (including callees) and their shares.",
        TopFunctionsArgs,
        _top_functions,
    ),
    Tool(
        "call_tree",
        "Show who calls a function (direction='callers') or what it calls "
        "(direction='callees') as an indented tree with total time, share and self time.",
        CallTreeArgs,
        _call_tree,
    ),
    Tool(
        "hot_paths",
        "List the call paths (root to leaf) whose leaf function spends the most self time.",
        HotPathsArgs,
        _hot_paths,
    ),
    Tool(
        "summarize_range",
        "Summarise a time range: top functions, heaviest paths, timeline and notable "
        "patterns (idle, GC, recursion, one function dominating).",
        SummarizeRangeArgs,
        _summarize_range,
    ),
    Tool(
        "search_frames",
        "Find functions whose name or file contains a text (or matches a regular "
        "expression), with their self and total time.",
        SearchFramesArgs,
        _search_frames,
    ),
    Tool(
        "compare_ranges",
        "Compare two time ranges of the profile function by function: what got slower, "
        "faster, appeared or disappeared between range a (before) and range b (after).",
        CompareRangesArgs,
        _compare_ranges,
    ),
    Tool(
        "compare_profiles",
        "Compare the second loaded profile (after) with the first (before) function by "
        "function: what got slower, faster, appeared or disappeared.",
        CompareProfilesArgs,
        _compare_profiles,
        needs_other=True,
    ),
    Tool(
        "render_flamegraph",
        "Draw the profile as a PNG image and look at it: a flame graph, a flame chart (time "
        "order) or the sandwich of one function. Use it to see the overall shape, phases "
        "over time, or where a function is called from.",
        RenderFlamegraphArgs,
        _render_flamegraph,
    ),
)
"""Every tool, in the order they are offered."""

TOOLS_BY_NAME: dict[str, Tool] = {tool.name: tool for tool in TOOLS}


def tools_for(profiles: LoadedProfiles) -> list[Tool]:
    """The tools that make sense for `profiles` (compare_profiles only with a second one)."""
    return [tool for tool in TOOLS if not tool.needs_other or profiles.other is not None]


def find_tool(name: str, offered: Sequence[Tool] = TOOLS) -> Tool:
    """The tool called `name` among `offered`; `ToolFailure` naming the ones there are."""
    for tool in offered:
        if tool.name == name:
            return tool
    names = ", ".join(tool.name for tool in offered)
    raise ToolFailure(f"there is no tool {name!r}; the tools are {names}")

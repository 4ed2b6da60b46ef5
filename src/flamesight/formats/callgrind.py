"""Callgrind (and cachegrind-style) profiles: the text that valgrind's call-graph tools write.

Produced by ``valgrind --tool=callgrind --callgrind-out-file=callgrind.out ./app``
(also by Xdebug's profiler for PHP, and ``valgrind --tool=cachegrind``, whose
files are the call-less subset)::

    # callgrind format
    events: Instructions
    fl=(1) file1.c
    fn=(1) main
    16 20
    cfn=(2) func1
    calls=1 50
    16 400

Header lines ("key: value") come first; ``events:`` names the cost columns.
Then ``fl=``/``fn=`` name the current function, cost lines ("positions costs")
add to its self cost, and ``cfi=``/``cfn=`` + ``calls=`` + one cost line give
the inclusive cost of a call from it. Read as speedscope reads it:

- one profile per event type, named "FILE -- EVENT" ("FILE -- Time" in
  nanoseconds for Xdebug's ``Time_(10ns)``, "FILE -- Memory" in bytes for
  ``Memory_(bytes)``, plain counts otherwise);
- a frame is a function and the file that ``fl=`` named for it ("(unknown)"
  when none); line numbers are left out, since cost lines give the line of
  the code, not of the function;
- the file only gives a call *graph*; it is turned into a call tree by
  assuming every call of a function splits its cost among its callees as the
  function's totals do. Roots are the functions whose total exceeds what
  their callers account for; a function already on the stack is not entered
  again, and subtrees lighter than 0.01% of the profile are not expanded.
  Samples are the call tree's self weights, children first, laid end to end;
- name compression (``fn=(12) name`` then ``fn=(12)``) and subposition
  compression (``+3``, ``-2``, ``*``; speedscope applies it to the cost
  columns too) are undone; ``cfi=``/``cfl=`` hold for the next call only,
  after which the callee's file is again the current ``fl=`` file;
- ``fi=``/``fe=`` (inlined code from another file) do not change the current
  function, which keeps the file ``fl=`` gave it (speedscope makes such cost
  lines a separate frame in the inlined file; see tests/test_format_native.py);
- the cost of a call that is not expanded (a recursive call, a subtree under
  0.01%) stays with its caller as self cost, as speedscope's own comments
  intend (its code drops it), so the profile's total is the program's total.

The call tree is expanded with an explicit stack (no recursion on input depth)
and is bounded: more than `MAX_CALL_TREE_NODES` nodes is a `FormatError`.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

from flamesight.formats.errors import FormatError, shorten
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit

NAME = "callgrind"
TITLE = "callgrind"

MAX_CALL_TREE_NODES = 1_000_000
"""Call-tree nodes one profile may expand to before the file is refused."""

_HEADER = re.compile(r"^\s*(\w+):\s*(.*)$")
_ASSIGNMENT = re.compile(r"^(\w+)=\s*(.*)$")
_NAME_DEFINITION = re.compile(r"^\((\d+)\)\s*(.+)$")
_NAME_USE = re.compile(r"^\((\d+)\)$")
_NUMBER = re.compile(r"^(?:0x[0-9a-fA-F]+|\d+)$")
_MAX_NUMBER_CHARS = 24
_COST_LINE_STARTS = frozenset("0123456789+-*")
_SNIFF_LINES = 400
_SMALLEST_SUBTREE = 1e-4
_UNKNOWN = "(unknown)"


def sniff(head: bytes) -> bool:
    """ "# callgrind format" first, or an ``events:`` header and ``fn=`` lines near the start."""
    text = head.decode("utf-8", "replace")
    if "\x00" in text:
        return False
    if text.lstrip("\ufeff").startswith("# callgrind format"):
        return True
    lines = text.splitlines()[:_SNIFF_LINES]
    has_events = any(line.startswith("events:") for line in lines)
    has_function = any(line.startswith("fn=") for line in lines)
    return has_events and has_function


@dataclass
class _CallGraph:
    """Per-function totals and per-edge inclusive costs, one list entry per event type."""

    events: int
    frames: dict[tuple[str, str], int] = field(default_factory=dict)
    totals: dict[int, list[float]] = field(default_factory=dict)
    children: dict[int, dict[int, list[float]]] = field(default_factory=dict)

    def frame(self, name: str, file: str) -> int:
        """The id of function `name` in `file`."""
        key = (name, file)
        frame = self.frames.get(key)
        if frame is None:
            frame = self.frames[key] = len(self.frames)
        return frame

    def add_self(self, frame: int, costs: list[float]) -> None:
        """Add a self-cost line of `frame`."""
        total = self.totals.setdefault(frame, [0.0] * self.events)
        for index, cost in enumerate(costs):
            total[index] += cost

    def add_call(self, caller: int, callee: int, costs: list[float]) -> None:
        """Add the inclusive cost of a call from `caller` to `callee`."""
        edge = self.children.setdefault(caller, {}).setdefault(callee, [0.0] * self.events)
        total = self.totals.setdefault(caller, [0.0] * self.events)
        for index, cost in enumerate(costs):
            edge[index] += cost
            total[index] += cost


@dataclass
class _Reader:
    """The parser state while the lines are read."""

    graph: _CallGraph | None = None
    event_names: list[str] = field(default_factory=list)
    position_count: int = 1
    previous: list[int] = field(default_factory=list)
    file: str | None = None
    function: str | None = None
    callee_file: str | None = None
    callee_function: str | None = None
    saved_files: dict[str, str] = field(default_factory=dict)
    saved_functions: dict[str, str] = field(default_factory=dict)


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a callgrind file into one profile per event type."""
    text = data.decode("utf-8", "replace").removeprefix("\ufeff")
    # Lines one at a time (split on "\n" only), not a list of millions of strings.
    lines = io.StringIO(text, newline="\n")
    del text
    reader = _Reader()
    index = 0
    for raw in lines:
        line = raw.removesuffix("\n").removesuffix("\r")
        index += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        # Most lines are cost lines, which no header or assignment starts like.
        if line[0] in _COST_LINE_STARTS and _cost_line(reader, line, index, call=False):
            continue
        if _header(reader, line, index):
            continue
        assignment = _ASSIGNMENT.match(line)
        if assignment:
            key, value = assignment.groups()
            if key == "calls":
                if not raw.endswith("\n"):
                    raise FormatError(
                        TITLE, f"line {index}", "the file ends after 'calls=' without its cost line"
                    )
                cost_line = lines.readline().removesuffix("\n").removesuffix("\r")
                index += 1
                if not _cost_line(reader, cost_line, index, call=True):
                    raise FormatError(
                        TITLE,
                        f"line {index}",
                        f"expected the cost line of the call, got {shorten(cost_line)}",
                    )
            else:
                _assign(reader, key, value, index)
            continue
        if _cost_line(reader, line, index, call=False):
            continue
        raise FormatError(
            TITLE,
            f"line {index}",
            f"expected 'key: value', 'key=value' or a cost line, got {shorten(line)}",
        )
    if reader.graph is None:
        raise FormatError(TITLE, "whole file", "no 'events:' header naming the cost columns")
    profiles = [
        _profile(reader.graph, event, event_name, name)
        for event, event_name in enumerate(reader.event_names)
    ]
    return ProfileGroup(name, profiles)


def _header(reader: _Reader, line: str, number: int) -> bool:
    """Handle a "key: value" header line; False if the line is not one."""
    match = _HEADER.match(line)
    if match is None:
        return False
    key, value = match.groups()
    if key == "positions":
        reader.position_count = max(1, len(value.split()))
    elif key == "events":
        if reader.graph is not None:
            raise FormatError(TITLE, f"line {number}", "a second 'events:' header")
        reader.event_names = value.split()
        if not reader.event_names:
            raise FormatError(TITLE, f"line {number}", "the 'events:' header names no event")
        reader.graph = _CallGraph(len(reader.event_names))
    return True


def _assign(reader: _Reader, key: str, value: str, number: int) -> None:
    """Handle a "key=value" line other than ``calls=``."""
    if key == "fl":
        reader.file = _name(value, reader.saved_files, number)
        reader.callee_file = reader.file
    elif key in ("fi", "fe"):
        _name(value, reader.saved_files, number)  # defines a compressed name, if any
    elif key == "fn":
        reader.function = _name(value, reader.saved_functions, number)
        reader.callee_file = reader.file
    elif key in ("cfi", "cfl"):
        reader.callee_file = _name(value, reader.saved_files, number)
    elif key == "cfn":
        reader.callee_function = _name(value, reader.saved_functions, number)
    # ob=, cob=, jump=, jcnd= and unknown keys carry nothing flamesight shows.


def _name(value: str, saved: dict[str, str], number: int) -> str:
    """Undo name compression: "(id) name" defines an id, "(id)" refers to one."""
    definition = _NAME_DEFINITION.match(value)
    if definition:
        key, text = definition.groups()
        if saved.get(key, text) != text:
            raise FormatError(
                TITLE,
                f"line {number}",
                f"name id ({key}) redefined as {shorten(text)}, it was {shorten(saved[key])}",
            )
        saved[key] = text
        return text
    use = _NAME_USE.match(value)
    if use:
        key = use.group(1)
        if key not in saved:
            raise FormatError(TITLE, f"line {number}", f"name id ({key}) used before it is defined")
        return saved[key]
    return value


def _cost_line(reader: _Reader, line: str, number: int, *, call: bool) -> bool:
    """Add a cost line to the current function (or call); False if the line is not one."""
    parts = line.split()
    if not parts:
        return False
    values: list[int] = []
    for column, part in enumerate(parts):
        previous = reader.previous[column] if column < len(reader.previous) else 0
        relative = part[0] in "+-"
        digits = part[1:] if relative else part
        if part == "*":
            value = previous
        elif (digits.isdecimal() and digits.isascii()) or _NUMBER.match(digits):
            if len(part) > _MAX_NUMBER_CHARS:
                raise FormatError(
                    TITLE, f"line {number}", f"number {shorten(part, 30)} is too long"
                )
            magnitude = int(digits, 16) if digits.startswith("0x") else int(digits)
            if not relative:
                value = magnitude
            else:
                value = previous + (magnitude if part[0] == "+" else -magnitude)
        else:
            return False
        values.append(value)
    if reader.graph is None:
        raise FormatError(TITLE, f"line {number}", "a cost line before the 'events:' header")
    reader.previous[: len(values)] = values
    costs = [float(value) for value in values[reader.position_count :]]
    costs = costs[: reader.graph.events]
    graph = reader.graph
    caller = graph.frame(reader.function or _UNKNOWN, reader.file or _UNKNOWN)
    if call:
        callee = graph.frame(reader.callee_function or _UNKNOWN, reader.callee_file or _UNKNOWN)
        graph.add_call(caller, callee, costs)
        reader.callee_file = reader.file
    else:
        graph.add_self(caller, costs)
    return True


def _profile(graph: _CallGraph, event: int, event_name: str, file_name: str) -> Profile:
    """The call tree of one event type, expanded from the call graph without recursion."""
    unit, multiplier, label = Unit.NONE, 1.0, event_name
    if event_name == "Time_(10ns)":
        unit, multiplier, label = Unit.NANOSECONDS, 10.0, "Time"
    elif event_name == "Memory_(bytes)":
        unit, label = Unit.BYTES, "Memory"
    builder = ProfileBuilder(f"{file_name} -- {label}", unit)
    names = list(graph.frames)
    totals = {frame: costs[event] for frame, costs in graph.totals.items()}
    children = {
        parent: [(child, costs[event]) for child, costs in edges.items()]
        for parent, edges in graph.children.items()
    }
    roots = dict(totals)
    for edges in children.values():
        for child, weight in edges:
            roots[child] = roots.get(child, weight) - weight
    threshold = _SMALLEST_SUBTREE * sum(roots.values())
    frame_ids: dict[int, int] = {}
    visited = 0

    def frame_id(frame: int) -> int:
        known = frame_ids.get(frame)
        if known is None:
            known = frame_ids[frame] = builder.frame(*names[frame])
        return known

    for root, root_weight in roots.items():
        if root_weight <= 0:
            continue
        # Each entry: frame, ratio, self weight so far, next child index, stack id.
        path: list[list] = []
        on_path: set[int] = set()
        # The next node to enter: frame, weight, parent stack id, call-graph edge weight.
        pending: tuple[int, float, int, float] | None = (root, root_weight, -1, 0.0)
        while pending is not None or path:
            if pending is not None:
                frame, weight, parent_stack, edge_weight = pending
                pending = None
                total = totals.get(frame, 0.0)
                if frame in on_path or weight < threshold or total == 0:
                    if path:  # the skipped call's cost stays with its caller, as self cost
                        path[-1][2] += edge_weight
                else:
                    visited += 1
                    if visited > MAX_CALL_TREE_NODES:
                        raise FormatError(
                            TITLE,
                            "whole file",
                            f"the call graph expands to more than {MAX_CALL_TREE_NODES:,} "
                            "call-tree nodes",
                        )
                    stack = builder.stack(parent_stack, frame_id(frame))
                    path.append([frame, weight / total, total, 0, stack])
                    on_path.add(frame)
                continue
            top = path[-1]
            frame, ratio, self_weight, next_child, stack = top
            edges = children.get(frame, ())
            if next_child < len(edges):
                child, edge_weight = edges[next_child]
                top[2] = self_weight - edge_weight
                top[3] = next_child + 1
                pending = (child, edge_weight * ratio, stack, edge_weight)
                continue
            path.pop()
            on_path.discard(frame)
            weight = self_weight * ratio * multiplier
            if weight > 0 and weight != float("inf"):
                builder.add_sample(stack, weight)
    return builder.build()

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

Most lines of a file are cost lines of a dozen bytes, so the file is read a
block of about a megabyte at a time (`_read_in_blocks`): the cost lines made
of plain numbers are read as columns with NumPy (subposition compression is a
cumulative sum per column; the costs of a run of the current function's lines
are added at once) and only the other lines in Python. A file with anything
this reading might read differently from the exact line-by-line reading (a
cost line written some other way, costs too large for exact float sums) is
read line by line (`_read_line_by_line`), which also reports errors.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from flamesight.formats.errors import FormatError, shorten
from flamesight.formats.line_columns import line_blocks
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
_COST_LINE_STARTS_BYTES = b"0123456789+-*"
_COST_LINE_STARTS = frozenset(_COST_LINE_STARTS_BYTES.decode())
_SNIFF_LINES = 400
_SMALLEST_SUBTREE = 1e-4
_UNKNOWN = "(unknown)"

_BLOCK_BYTES = 1 << 20
_PLAIN_TOKEN = rb"(?:\*|[+-]?(?:0x[0-9a-fA-F]+|[0-9]+))"
_PLAIN_COST_LINE = re.compile(_PLAIN_TOKEN + rb"(?:[ \t\r]+" + _PLAIN_TOKEN + rb")*[ \t\r]*")
_MAX_DECIMAL_DIGITS = 18
_MAX_HEX_DIGITS = 15
_EXACT_FLOAT_SUM = 2.0**52
"""Below this sum of cost magnitudes, float sums of the costs are exact in any order."""
_COST_START_BYTES = np.zeros(256, bool)
_COST_START_BYTES[np.frombuffer(_COST_LINE_STARTS_BYTES, np.uint8)] = True
_DIGIT_VALUES = np.full(256, 16, np.uint8)
_DIGIT_VALUES[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16)
_DIGIT_VALUES[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def _plain_pairs() -> np.ndarray:
    """For two bytes (a little-endian uint16): may they follow each other in a decimal cost line?"""
    digit, sign, star, blank, newline = range(5)
    kinds = np.full(256, 5, np.uint8)  # 5: anything else
    for kind, members in (
        (digit, b"0123456789"),
        (sign, b"+-"),
        (star, b"*"),
        (blank, b" \t\r"),
        (newline, b"\n"),
    ):
        kinds[np.frombuffer(members, np.uint8)] = kind
    allowed = np.zeros((6, 6), bool)
    for pair in (
        (newline, digit), (newline, sign), (newline, star),
        (digit, digit), (digit, blank), (digit, newline),
        (sign, digit),
        (star, blank), (star, newline),
        (blank, digit), (blank, sign), (blank, star), (blank, blank), (blank, newline),
    ):  # fmt: skip
        allowed[pair] = True
    pairs = np.arange(1 << 16)
    return allowed[kinds[pairs & 0xFF], kinds[pairs >> 8]]


_PLAIN_PAIRS = _plain_pairs()


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
    try:
        reader = _read_in_blocks(data)
    except _Unusual:
        reader = _read_line_by_line(data)
    if reader.graph is None:
        raise FormatError(TITLE, "whole file", "no 'events:' header naming the cost columns")
    profiles = [
        _profile(reader.graph, event, event_name, name)
        for event, event_name in enumerate(reader.event_names)
    ]
    return ProfileGroup(name, profiles)


def _read_line_by_line(data: bytes) -> _Reader:
    """Read every line in Python: the exact reading, for files the block reading leaves."""
    text = data.decode("utf-8", "replace").removeprefix("\ufeff")
    # Lines one at a time (split on "\n" only), not a list of millions of strings.
    lines = io.StringIO(text, newline="\n")
    del text
    reader = _Reader()
    index = 0
    for raw in lines:
        line = raw.removesuffix("\n").removesuffix("\r")
        index += 1
        if not _read_line(reader, line, index, functools.partial(_cost_line, reader)):
            continue
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
    return reader


class _Unusual(Exception):
    """Raised by the block reading for input it leaves to the line-by-line reading."""


@dataclass
class _Blocks:
    """What the block reading carries from one block to the next."""

    number: int = 0  # lines before the block
    calling: bool = False  # the next line is the cost line of a ``calls=`` line
    position_count: int | None = None  # fixed once the first cost line is read
    previous: list[int] = field(default_factory=list)  # the last value of every cost column
    magnitude: float = 0.0  # the sum of every cost's magnitude so far


def _read_in_blocks(data: bytes) -> _Reader:
    """Read the file about a megabyte of lines at a time, its cost lines with NumPy.

    Lines made only of ``*``, ``+``/``-`` and numbers (checked a byte pair at a
    time, and by `_PLAIN_COST_LINE` where that is not enough) are read as
    columns: subposition compression is a cumulative sum per cost column, and
    the costs of a run of the current function's lines are summed at once.
    Other lines are read in Python as the line-by-line reading does. Anything
    the two readings might not agree on (a cost line written some other way,
    a ``positions:`` change after the first cost line, costs near the end of
    exact float sums) raises `_Unusual`.
    """
    reader = _Reader()
    blocks = _Blocks()
    after_bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    for start, end in line_blocks(data, after_bom, _BLOCK_BYTES):
        # The block with the newline before it (so that every line follows one) and after it.
        if start > 0 and data[start - 1] == 10 and data[end - 1] == 10:
            view = np.frombuffer(data, np.uint8, end - start + 1, start - 1)
        else:
            text = b"\n" + data[start:end]
            view = np.frombuffer(text if text.endswith(b"\n") else text + b"\n", np.uint8)
        _read_block(reader, blocks, data, view, start - 1)
    if blocks.calling:
        raise _Unusual
    return reader


def _read_block(reader: _Reader, blocks: _Blocks, data: bytes, view: np.ndarray, base: int) -> None:
    """Read the lines of `view` (``data[base:]``, from a newline to a newline)."""
    newline = view == 10
    blank = newline | (view == 32) | (view == 9) | (view == 13)
    # Events: every newline and every token start; a line's tokens are the events between two newlines.
    marks = newline.copy()
    marks[1:] |= blank[:-1] & ~blank[1:]
    events = np.flatnonzero(marks)
    ends = np.flatnonzero(newline[events])
    newlines = events[ends]  # line k runs from newlines[k] to newlines[k + 1]
    first = ends[:-1] + 1
    tokens = ends[1:] - first
    del marks, ends
    plain = _plain_lines(data, view, base, newline, blank, newlines)
    del newline, blank
    # Between two other lines (and at the block's ends) is a run of plain cost lines.
    others = np.flatnonzero(~plain)
    begins = np.concatenate([[0], others + 1])
    stops = np.append(others, len(plain))
    text_starts = (newlines[others] + base + 1).tolist()
    text_stops = (newlines[others + 1] + base).tolist()
    runs: tuple[list[list[float]], list[list[float]], list[list[float]]] | None = None
    for run, (begin, stop) in enumerate(zip(begins.tolist(), stops.tolist(), strict=True)):
        if stop > begin:
            graph = _require_graph(reader, blocks.number + begin + 1)
            if runs is None:
                prefix = _cost_prefix(reader, blocks, view, events, first, tokens, plain)
                runs = _run_costs(prefix, begins, stops)
            whole, head, rest = runs
            if not blocks.calling:
                _add_costs(reader, graph, whole[run], call=False)
            else:
                _add_costs(reader, graph, head[run], call=True)
                blocks.calling = False
                if stop > begin + 1:
                    _add_costs(reader, graph, rest[run], call=False)
        if run < len(others):
            if blocks.calling:
                raise _Unusual  # the call's cost line is not a plain one
            number = blocks.number + stop + 1
            text = data[text_starts[run] : text_stops[run]]
            line = text.decode("utf-8", "replace").removesuffix("\r")
            blocks.calling = _read_line(reader, line, number, _unusual)
            if blocks.position_count not in (None, reader.position_count):
                raise _Unusual
    blocks.number += len(plain)


def _run_costs(
    prefix: np.ndarray, begins: np.ndarray, stops: np.ndarray
) -> tuple[list[list[float]], list[list[float]], list[list[float]]]:
    """The costs of every run of lines, of its first line and of the rest, from `prefix`."""
    whole = prefix[stops] - prefix[begins]
    head = prefix[np.minimum(begins + 1, len(prefix) - 1)] - prefix[begins]
    return (
        whole.astype(np.float64).tolist(),
        head.astype(np.float64).tolist(),
        (whole - head).astype(np.float64).tolist(),
    )


def _unusual(line: str, number: int) -> bool:
    """False for a line that is not a cost line; `_Unusual` for a cost line that is not plain."""
    if _cost_values(line, [], number) is not None:
        raise _Unusual
    return False


def _plain_lines(
    data: bytes,
    view: np.ndarray,
    base: int,
    newline: np.ndarray,
    blank: np.ndarray,
    newlines: np.ndarray,
) -> np.ndarray:
    """Which lines of `view` are plain cost lines."""
    size = len(view)
    even = view[: size - size % 2].view("<u2")
    odd = view[1 : 1 + (size - 1) // 2 * 2].view("<u2")
    wrong = np.concatenate(
        [
            np.flatnonzero(~_PLAIN_PAIRS[even]) * 2,
            np.flatnonzero(~_PLAIN_PAIRS[odd]) * 2 + 1,
        ]
    )
    wrong += newline[wrong]  # a pair that starts with a newline belongs to the next line
    # A number longer than a cost line may have: that many non-blank bytes in a row.
    long = ~blank
    covered = 1
    while covered <= _MAX_NUMBER_CHARS:
        step = min(covered, _MAX_NUMBER_CHARS + 1 - covered)
        long = long[:-step] & long[step:]
        covered += step
    plain = np.ones(len(newlines) - 1, bool)
    plain[np.searchsorted(newlines, wrong) - 1] = False
    plain[np.searchsorted(newlines, np.flatnonzero(long)) - 1] = False
    # Lines the byte pairs cannot tell, such as hexadecimal numbers, are matched one by one.
    suspects = np.flatnonzero(~plain)
    suspects = suspects[_COST_START_BYTES[view[newlines[suspects] + 1]]]
    for begin, end, line in zip(
        (newlines[suspects] + base + 1).tolist(),
        (newlines[suspects + 1] + base).tolist(),
        suspects.tolist(),
        strict=True,
    ):
        text = data[begin:end]
        if _PLAIN_COST_LINE.fullmatch(text) and max(map(len, text.split())) <= _MAX_NUMBER_CHARS:
            plain[line] = True
    return plain


def _cost_prefix(
    reader: _Reader,
    blocks: _Blocks,
    view: np.ndarray,
    events: np.ndarray,
    first: np.ndarray,
    tokens: np.ndarray,
    plain: np.ndarray,
) -> np.ndarray:
    """Row k: the costs of the block's plain lines before line k, summed per event."""
    assert reader.graph is not None
    if blocks.position_count is None:
        blocks.position_count = reader.position_count
    positions, events_count = reader.position_count, reader.graph.events
    blocks.previous += [0] * (events_count - len(blocks.previous))
    prefix = np.zeros((len(plain) + 1, events_count), np.int64)
    for event in range(events_count):
        column = positions + event
        rows = np.flatnonzero(plain & (tokens > column))
        if len(rows):
            values = _column_values(view, events[first[rows] + column], blocks.previous[event])
            blocks.previous[event] = int(values[-1])
            prefix[rows + 1, event] = values
    blocks.magnitude += float(np.abs(prefix).sum(dtype=np.float64))
    if blocks.magnitude >= _EXACT_FLOAT_SUM:
        raise _Unusual  # float sums of the costs might round: read them one by one
    return np.cumsum(prefix, axis=0, out=prefix)


def _column_values(view: np.ndarray, at: np.ndarray, previous: int) -> np.ndarray:
    """The values of the cost tokens starting at `at`, one column in order, after `previous`."""
    lead = view[at]
    star = lead == ord("*")
    negative = lead == ord("-")
    relative = negative | (lead == ord("+"))
    body = at + relative
    hexadecimal = view[body + 1] == ord("x")
    magnitude = np.zeros(len(at), np.int64)
    # Horner's rule, a digit at a time, on the numbers not yet ended (`live`).
    live = np.flatnonzero(~star)
    position = body[live]
    radix: np.ndarray | int = 10
    if hexadecimal.any():
        position += 2 * hexadecimal[live]
        radix = np.where(hexadecimal[live], 16, 10)
    values = magnitude[live]
    length = 0
    while len(live):
        digit = _DIGIT_VALUES[view[position]]
        going = digit < 16
        if not going.all():
            magnitude[live] = values
            live, position, digit, values = (
                live[going],
                position[going],
                digit[going],
                values[going],
            )
            if isinstance(radix, np.ndarray):
                radix = radix[going]
        if (
            len(live)
            and length >= _MAX_HEX_DIGITS
            and (length >= _MAX_DECIMAL_DIGITS or hexadecimal[live].any())
        ):
            raise _Unusual  # near the end of int64, which the line-by-line reading does not have
        values = values * radix + digit
        position += 1
        length += 1
    if float(magnitude.sum(dtype=np.float64)) + abs(previous) >= _EXACT_FLOAT_SUM:
        raise _Unusual
    # A value is the last absolute one (or `previous`) plus the relative steps since.
    running = np.cumsum(np.where(negative, -magnitude, np.where(relative, magnitude, 0)))
    absolute = ~(relative | star)
    last = np.maximum.accumulate(np.where(absolute, np.arange(len(at)), -1))
    return np.where(last >= 0, (magnitude - running)[last], previous) + running


def _read_line(
    reader: _Reader, line: str, number: int, cost_line: Callable[[str, int], bool]
) -> bool:
    """Handle a line other than a call's cost line; True if it is a ``calls=`` line.

    `cost_line(line, number)` handles a cost line, returning False if the line is not one.
    """
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return False
    # Most lines are cost lines, which no header or assignment starts like.
    if line[0] in _COST_LINE_STARTS and cost_line(line, number):
        return False
    if _header(reader, line, number):
        return False
    assignment = _ASSIGNMENT.match(line)
    if assignment:
        key, value = assignment.groups()
        if key == "calls":
            return True
        _assign(reader, key, value, number)
        return False
    if cost_line(line, number):
        return False
    raise FormatError(
        TITLE,
        f"line {number}",
        f"expected 'key: value', 'key=value' or a cost line, got {shorten(line)}",
    )


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


def _cost_values(line: str, previous: list[int], number: int) -> list[int] | None:
    """The numbers of a cost line, subposition compression undone; None if it is not one."""
    parts = line.split()
    if not parts:
        return None
    values: list[int] = []
    for column, part in enumerate(parts):
        before = previous[column] if column < len(previous) else 0
        relative = part[0] in "+-"
        digits = part[1:] if relative else part
        if part == "*":
            value = before
        elif (digits.isdecimal() and digits.isascii()) or _NUMBER.match(digits):
            if len(part) > _MAX_NUMBER_CHARS:
                raise FormatError(
                    TITLE, f"line {number}", f"number {shorten(part, 30)} is too long"
                )
            magnitude = int(digits, 16) if digits.startswith("0x") else int(digits)
            if not relative:
                value = magnitude
            else:
                value = before + (magnitude if part[0] == "+" else -magnitude)
        else:
            return None
        values.append(value)
    return values


def _cost_line(reader: _Reader, line: str, number: int, *, call: bool = False) -> bool:
    """Add a cost line to the current function (or call); False if the line is not one."""
    values = _cost_values(line, reader.previous, number)
    if values is None:
        return False
    graph = _require_graph(reader, number)
    reader.previous[: len(values)] = values
    costs = [float(value) for value in values[reader.position_count :]]
    _add_costs(reader, graph, costs[: graph.events], call=call)
    return True


def _require_graph(reader: _Reader, number: int) -> _CallGraph:
    """The call graph, which a cost line on line `number` needs the 'events:' header for."""
    if reader.graph is None:
        raise FormatError(TITLE, f"line {number}", "a cost line before the 'events:' header")
    return reader.graph


def _add_costs(reader: _Reader, graph: _CallGraph, costs: list[float], *, call: bool) -> None:
    """Add the costs of a cost line (or of several of the current function's) to the graph."""
    caller = graph.frame(reader.function or _UNKNOWN, reader.file or _UNKNOWN)
    if call:
        callee = graph.frame(reader.callee_function or _UNKNOWN, reader.callee_file or _UNKNOWN)
        graph.add_call(caller, callee, costs)
        reader.callee_file = reader.file
    else:
        graph.add_self(caller, costs)


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

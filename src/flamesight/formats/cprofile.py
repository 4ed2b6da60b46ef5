"""Python `cProfile` / `profile` statistics files (pstats).

``python -m cProfile -o out.prof script.py``, ``pstats.Stats.dump_stats`` and
the pure-Python `profile` module all write the `marshal` serialisation of one
dict::

    {(file, line, funcname): (cc, nc, tottime, cumtime, callers), ...}

`cc` counts primitive (non-recursive) calls, `nc` all calls, `tottime` is the
time spent in the function itself and `cumtime` the time spent in it and its
callees, counted for outermost calls only. `callers` maps each caller's key to
``(nc, cc, tottime, cumtime)`` of that edge (cProfile, where an edge's cumtime
counts the calls made while the same edge was not already running), or to a
plain call count (the `profile` module). Built-in functions have the file
``"~"`` (cProfile) or ``""`` (profile) and line 0; their frames have no file
and no line. Names are kept as Python wrote them (``"<built-in method
time.sleep>"``). Times are read as seconds, what both write with their
default timers; a time beyond 1e15 (either way) or NaN is refused.

Reading
-------
The bytes are walked once before `marshal.loads` sees them: only the type
codes marshal writes are accepted, and every tuple, list or set must fit in the
bytes that follow, so that a few hostile bytes cannot make `marshal.loads`
allocate gigabytes. Code objects (``python -m profile script.py`` puts one in
the key of its top-level entry) are rewritten into plain tuples of their fields,
in the layout CPython 3.11 and later write, so no code object is ever built from
the file; such a key is named by the code's name. Then the dict's shape is
checked entry by entry.

The flame graph: what is exact and what is estimated
----------------------------------------------------
A pstats file has no stacks, only a caller graph, so the call tree is
reconstructed.

- Exact (up to floating-point rounding): the self time of every function is its
  `tottime`, so the profile's total weight is the sum of all `tottime` (a
  negative `tottime`, which the `profile` module's bias calibration can
  produce, counts as 0).
- Estimated: the call paths, and with them every function's total time.

The tree is grown top-down. A function is a root with the part of its cumtime
that no caller explains: all of it when nothing calls it; when some of its
calls have no caller (`nc` exceeds the calls of its caller edges: the call
that was running when profiling started), its cumtime less the edges from
callers outside its own recursion (its strongly connected component in the
call graph); for `profile` files, the share of its calls that have no caller.

A node of function `x` with estimated time `T` gets a child for each callee
`c` with ``T * edge_cumtime(x, c) / cumtime(x)``, capped at `cumtime(c)`.
For `profile` files an edge's time is estimated as the callee's cumtime
shared among its callers by call counts (callers from outside the callee's
recursion first). A recursive function's edges also count what its inner
calls called, so they can add up to more than ``cumtime - tottime`` of its
outermost calls; that budget is then filled heaviest edge first. In a call
graph without recursion this reproduces every function's cumtime as its total.

Recursion is folded: a callee already on the node's path is not entered
again. The time that edge carries, less the callee's own share, is handed on
to the callee's callees as its inner calls spread it (the edge time that did
not fit in its outermost calls, plus edge time in proportion to the calls made
while the same edge was already running), heaviest first and capped by each
edge, callees off the path first; callees on the path are folded the same
way, each at most once per node. The result reads like a stack with the
repeated frames left out (``a;b;a;c`` shows as ``a;b;c``). The inner call's
own time is not made the caller's self time: it is part of the function's
`tottime`, which the function's nodes (its outer occurrence) hold.

Each node then gets ``T * tottime(x) / cumtime(x)`` of self time, scaled down
where a function's nodes would get more than its `tottime`. What is left of a
function's `tottime` (the time of the paths the bounds below cut, or time that
recursion or inconsistent data lost on the way) goes to one extra node of the
function, on the heaviest way into it that the tree lacks: a child the bounds
left unexpanded, or the function below one of its callers' heaviest nodes
that does not have it yet. Functions without any node get theirs the same
way, their callees following. A function with no such way spreads what is
left over its nodes in proportion to their time, or, with no node at all (a
cycle nothing else calls), starts a tree of its own.

The growth is bounded for big files (tens of thousands of functions, where
the number of paths explodes): nodes are expanded heaviest first, a child
carrying less than `MIN_PATH_SHARE` of the total time is not expanded, no path
is longer than `MAX_DEPTH`, at most `MAX_TREE_NODES` nodes are expanded and at
most `MAX_FOLDS` recursive calls are folded per node. The profile has one
sample per node with self time, laid end to end depth first (heaviest child
first), so its time axis is the flame graph's, not wall-clock time.
"""

from __future__ import annotations

import heapq
import marshal
import math
import reprlib
from typing import NamedTuple

import numpy as np

from flamesight.formats.errors import FormatError
from flamesight.model import ProfileBuilder, ProfileGroup, Unit

NAME = "pstats"
TITLE = "Python cProfile/profile stats"

MIN_PATH_SHARE = 1e-5
"""A call path carrying less than this fraction of the total time is not expanded."""

MAX_TREE_NODES = 60_000
"""At most this many nodes of the reconstructed call tree are expanded."""

MAX_DEPTH = 512
"""No reconstructed call path is longer than this."""

MAX_FOLDS = 64
"""At most this many recursive calls are folded into one node's children."""

# marshal type codes (Python/marshal.c); bit 0x80 marks an object others may reference
_FLAG_REF = 0x80
_NULL = ord("0")
_DICT = ord("{")
_TUPLE = ord("(")
_SMALL_TUPLE = ord(")")
_CODE = ord("c")
_SLICE = ord(":")
_LONG = ord("l")
_FLOAT_TEXT = ord("f")
_COMPLEX_TEXT = ord("x")
_INT = ord("i")
_REF = ord("r")
_FIXED_SIZE = {
    ord("N"): 0,  # None
    ord("F"): 0,  # False
    ord("T"): 0,  # True
    ord("S"): 0,  # StopIteration
    ord("."): 0,  # Ellipsis
    _INT: 4,
    ord("I"): 8,  # 64-bit int
    ord("g"): 8,  # binary float
    ord("y"): 16,  # binary complex
    _REF: 4,
}
_STRINGS_LONG_LENGTH = frozenset(map(ord, "stuaA"))  # 4-byte length, then the bytes
_STRINGS_SHORT_LENGTH = frozenset(map(ord, "zZ"))  # 1-byte length, then the bytes
_TEXT_STRINGS = frozenset(map(ord, "tuaAzZ"))
_SEQUENCES = frozenset(map(ord, "([<>"))  # tuple, list, set, frozenset: 4-byte count
# pending-object markers of the walk (non-negative entries count objects still to read)
_DICT_KEY = -1
_DICT_VALUE = -2
_CODE_LINENO = -3
# A code object is 5 raw int32 fields, 8 objects, the raw int32 first line, 2 objects
# (CPython 3.11+); it is rewritten into a tuple of its 10 objects, the name at index 6.
_CODE_HEADER_BYTES = 20
_CODE_OBJECTS_BEFORE_LINENO = 8
_CODE_OBJECTS_AFTER_LINENO = 2
_CODE_TUPLE_LENGTH = _CODE_OBJECTS_BEFORE_LINENO + _CODE_OBJECTS_AFTER_LINENO
_CODE_NAME_INDEX = 6

_NO_FILE = frozenset({"~", ""})
_MAX_COUNT = 2**63 - 1
# Larger times are no measurement (and their sums would overflow): 31 million years in
# seconds, or eleven days from a `profile` timer counting nanoseconds.
_MAX_TIME = 1e15
# how many of a caller's heaviest nodes are tried for a way into a callee it lacks
_WAY_NODES = 8

_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel = 3
_SHORT_REPR.maxstring = 80
_SHORT_REPR.maxother = 80


def sniff(head: bytes) -> bool:
    """A marshal'd dict whose first key is a 3-tuple starting with a string (or an empty dict)."""
    if len(head) < 2 or head[0] & ~_FLAG_REF != _DICT:
        return False
    if head[1] == _NULL:
        return len(head) == 2
    code = head[1] & ~_FLAG_REF
    if code == _SMALL_TUPLE:
        count_end = 3
    elif code == _TUPLE:
        count_end = 6
    else:
        return False
    if len(head) <= count_end or int.from_bytes(head[2:count_end], "little") != 3:
        return False
    string = head[count_end] & ~_FLAG_REF
    if string not in _TEXT_STRINGS:
        return False
    # the file name's length, its text, then the line number: an int or a reference to one
    length_end = count_end + (2 if string in _STRINGS_SHORT_LENGTH else 5)
    if len(head) < length_end:
        return False
    line_at = length_end + int.from_bytes(head[count_end + 1 : length_end], "little")
    if len(head) <= line_at:
        return True
    return head[line_at] & ~_FLAG_REF in (_INT, _REF, _LONG)


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a pstats file into a group of one profile named after the file."""
    stats = _load_stats(data)
    graph = _CallGraph(stats)
    builder = ProfileBuilder(name, Unit.SECONDS, sampled=False)
    builder.metadata.update(
        {
            "functions": len(stats),
            "calls": graph.total_calls,
            "primitive_calls": graph.primitive_calls,
            "call_paths": "reconstructed from the caller graph (estimates); "
            "self time per function is exact",
        }
    )
    _CallTree(graph).emit(builder)
    return ProfileGroup(name, [builder.build()])


# reading the file


def _load_stats(data: bytes) -> dict:
    """The stats dict, read with `marshal.loads` after the bytes passed `_readable_marshal`."""
    readable = _readable_marshal(data)
    try:
        stats = marshal.loads(readable)
    except Exception as error:  # marshal reports bad data with several exception types
        raise FormatError(TITLE, "whole file", f"not readable marshal data ({error})") from None
    if not isinstance(stats, dict):
        raise FormatError(
            TITLE,
            "top level",
            f"expected a dict of function statistics, got {type(stats).__name__} {_quote(stats)}",
        )
    return stats


def _readable_marshal(data: bytes) -> bytes:
    """Check that `data` holds one marshal object `marshal.loads` can read in bounded memory.

    Only known type codes are accepted, and a tuple, list or set may not
    declare more items than there are bytes left (marshal allocates the
    declared size before reading any item). Code objects are rewritten into
    tuples of their object fields (keeping the order of referenceable objects,
    so marshal's back-references stay valid). Trailing bytes after the object
    are ignored, as `pstats` does.
    """
    end = len(data)
    pos = 0
    pending = [1]
    edits: list[tuple[int, int, bytes]] = []

    def truncated() -> FormatError:
        return FormatError(TITLE, f"byte {end}", "the file ends in the middle of the data")

    while pending:
        top = pending[-1]
        if top == 0:
            pending.pop()
            continue
        if top == _CODE_LINENO:
            if pos + 4 > end:
                raise truncated()
            edits.append((pos, pos + 4, b""))
            pos += 4
            pending.pop()
            continue
        if pos >= end:
            raise truncated()
        start = pos
        flagged = data[pos] & _FLAG_REF
        code = data[pos] & ~_FLAG_REF
        pos += 1
        if top == _DICT_KEY:
            if code == _NULL:
                pending.pop()
                continue
            pending[-1] = _DICT_VALUE
        elif top == _DICT_VALUE:
            pending[-1] = _DICT_KEY
        else:
            pending[-1] = top - 1
        size = _FIXED_SIZE.get(code)
        if size is not None:
            pos += size
        elif code in _STRINGS_LONG_LENGTH or code == _LONG or code in _SEQUENCES:
            if pos + 4 > end:
                raise truncated()
            count = int.from_bytes(data[pos : pos + 4], "little", signed=True)
            pos += 4
            if code == _LONG:
                pos += 2 * abs(count)
            elif count < 0 or count > end - pos:
                what = "items" if code in _SEQUENCES else "bytes"
                raise FormatError(
                    TITLE,
                    f"byte {start}",
                    f"declares {count:,} {what} with {end - pos:,} bytes left",
                )
            elif code in _SEQUENCES:
                pending.append(count)
            else:
                pos += count
        elif code in _STRINGS_SHORT_LENGTH or code == _FLOAT_TEXT:
            if pos >= end:
                raise truncated()
            pos += 1 + data[pos]
        elif code == _COMPLEX_TEXT:
            for _ in range(2):
                if pos >= end:
                    raise truncated()
                pos += 1 + data[pos]
        elif code == _SMALL_TUPLE:
            if pos >= end:
                raise truncated()
            pending.append(data[pos])
            pos += 1
        elif code == _DICT:
            pending.append(_DICT_KEY)
        elif code == _SLICE:
            pending.append(3)
        elif code == _CODE:
            pos += _CODE_HEADER_BYTES
            edits.append((start, pos, bytes([_SMALL_TUPLE | flagged, _CODE_TUPLE_LENGTH])))
            pending += [_CODE_OBJECTS_AFTER_LINENO, _CODE_LINENO, _CODE_OBJECTS_BEFORE_LINENO]
        else:
            found = "a null marker" if code == _NULL else f"type code {data[start]:#04x}"
            raise FormatError(TITLE, f"byte {start}", f"not marshal data ({found} here)")
        if pos > end:
            raise truncated()
    if not edits:
        return data
    pieces = []
    done = 0
    for edit_start, edit_end, replacement in edits:
        pieces.append(data[done:edit_start])
        pieces.append(replacement)
        done = edit_end
    pieces.append(data[done:pos])
    return b"".join(pieces)


def _quote(value: object, limit: int = 100) -> str:
    """A short Python rendering of a piece of the file for an error message."""
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _entry(key: object) -> str:
    return f"entry {_quote(key)}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_time(value: object) -> bool:
    """A number no larger than `_MAX_TIME` either way (not NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return -_MAX_TIME <= value <= _MAX_TIME


def _count(value: int) -> int:
    """A call count, clamped to what a 64-bit counter holds."""
    return min(max(value, 0), _MAX_COUNT)


def _key_problem(key: object) -> str | None:
    """What is wrong with a function key (file, line, name), or None.

    The name is a string, or a code object as `_readable_marshal` rewrote it.
    """
    if not (isinstance(key, tuple) and len(key) == 3):
        return f"a function key must be a (file, line, name) tuple, got {_quote(key)}"
    file, line, name = key
    if not isinstance(file, str):
        return f"the file must be a string, got {_quote(file)}"
    if not _is_int(line):
        return f"the line must be an integer, got {_quote(line)}"
    if not (isinstance(name, str) or _code_name(name) is not None):
        return f"the function name must be a string, got {_quote(name)}"
    return None


def _value_problem(value: object) -> str | None:
    """What is wrong with an entry's (cc, nc, tottime, cumtime, callers), or None."""
    if not (isinstance(value, tuple) and len(value) == 5):
        return f"expected (cc, nc, tottime, cumtime, callers), got {_quote(value)}"
    for field, number, check in zip(
        ("cc", "nc", "tottime", "cumtime"),
        value,
        (_is_int, _is_int, _is_time, _is_time),
        strict=False,
    ):
        if not check(number):
            kind = "an integer" if check is _is_int else f"a number up to {_MAX_TIME:g}"
            return f"{field} must be {kind}, got {_quote(number)}"
    if not isinstance(value[4], dict):
        return f"callers must be a dict, got {_quote(value[4])}"
    return None


def _read_edge(edge: object) -> _Edge | str:
    """A caller edge as (calls, primitive calls, cumtime), or what is wrong with it.

    cProfile writes ``(nc, cc, tottime, cumtime)`` per edge, `profile` only a
    call count (primitive calls and time then are None).
    """
    if _is_int(edge):
        return _Edge(_count(edge), None, None)
    if (
        isinstance(edge, tuple)
        and len(edge) == 4
        and _is_int(edge[0])
        and _is_int(edge[1])
        and _is_time(edge[2])
        and _is_time(edge[3])
    ):
        return _Edge(_count(edge[0]), _count(edge[1]), max(float(edge[3]), 0.0))
    return f"expected (nc, cc, tottime, cumtime) or a call count, got {_quote(edge)}"


def _code_name(value: object) -> str | None:
    """The name field of a code object as `_readable_marshal` rewrote it, else None."""
    if isinstance(value, tuple) and len(value) == _CODE_TUPLE_LENGTH:
        name = value[_CODE_NAME_INDEX]
        if isinstance(name, str):
            return name
    return None


class _Edge(NamedTuple):
    """One caller edge: its calls, primitive calls and cumulative time (None from `profile`)."""

    calls: int
    primitive_calls: int | None
    cumtime: float | None


class _CallGraph:
    """The validated stats: time per function, and how each function's time splits.

    For a function `x`: `root_time[x]`, the time of `x` that no caller
    explains (it is a root of the call tree with that time);
    `callee_time[x]`, each callee's cumulative time in calls from `x`;
    `outer_shares[x]`, the fraction of a node's time that each callee takes
    (`_outer_shares`); `inner_weights[x]`, how an inner (recursive) call of `x`
    spreads over its callees (`_inner_weights`).
    """

    def __init__(self, stats: dict) -> None:
        self.keys: list[object] = []
        index_of: dict[object, int] = {}
        self.tottime: list[float] = []
        self.cumtime: list[float] = []
        self.calls: list[int] = []
        self.primitive_calls = 0
        callers_of: list[list[tuple[int, _Edge]]] = []
        seen_callers: set[int] = set()

        for key in stats:
            problem = _key_problem(key)
            if problem:
                raise FormatError(TITLE, _entry(key), problem)
            index_of[key] = len(self.keys)
            self.keys.append(key)
        for key, value in stats.items():
            problem = _value_problem(value)
            if problem:
                raise FormatError(TITLE, _entry(key), problem)
            primitive, calls, own, cumulative, callers = value
            if callers and id(callers) in seen_callers:
                raise FormatError(TITLE, _entry(key), "shares its callers dict with another entry")
            seen_callers.add(id(callers))
            self.primitive_calls += _count(primitive)
            self.calls.append(_count(calls))
            self.tottime.append(max(float(own), 0.0))
            self.cumtime.append(max(float(cumulative), 0.0))
            edges = []
            for caller, raw_edge in callers.items():
                edge = _read_edge(raw_edge)
                problem = _key_problem(caller) or (edge if isinstance(edge, str) else None)
                if problem:
                    raise FormatError(TITLE, f"{_entry(key)}, caller {_quote(caller)}", problem)
                caller_index = index_of.get(caller)
                if caller_index is None:  # a caller without an entry of its own
                    caller_index = index_of[caller] = len(self.keys)
                    self.keys.append(caller)
                    self.tottime.append(0.0)
                    self.cumtime.append(0.0)
                    self.calls.append(0)
                edges.append((caller_index, edge))
            callers_of.append(edges)
        callers_of.extend([] for _ in range(len(self.keys) - len(callers_of)))
        self.total_calls = sum(self.calls)
        self._share_time(callers_of)

    def _share_time(self, callers_of: list[list[tuple[int, _Edge]]]) -> None:
        count = len(self.keys)
        component = _strong_components(
            [[caller for caller, _ in edges if caller != f] for f, edges in enumerate(callers_of)]
        )
        self.callee_time: list[list[tuple[int, float]]] = [[] for _ in range(count)]
        # per callee edge: the fraction of its calls made while the same edge was already
        # running (recursion through it), whose time no edge's cumtime holds
        nested_share: list[list[float]] = [[] for _ in range(count)]
        root_time = [0.0] * count
        for function, edges in enumerate(callers_of):
            cumulative = self.cumtime[function]
            others = [(caller, edge) for caller, edge in edges if caller != function]
            calls_without_caller = self.calls[function] - sum(edge.calls for _, edge in edges)
            outside = [(c, edge) for c, edge in others if component[c] != component[function]]
            if not others:
                root_time[function] = -1.0  # all of it, known once its callees are
            elif all(edge.cumtime is not None for _, edge in others):
                # cProfile: each edge's own cumtime. Callers inside the function's
                # recursion (its strongly connected component) explain no outermost call.
                for caller, edge in others:
                    self.callee_time[caller].append((function, edge.cumtime or 0.0))
                    nested = edge.calls - (edge.primitive_calls or 0)
                    nested_share[caller].append(nested / edge.calls if nested > 0 else 0.0)
                if calls_without_caller > 0:
                    explained = sum(edge.cumtime or 0.0 for _, edge in outside)
                    root_time[function] = max(cumulative - explained, 0.0)
            else:
                # profile: call counts only. Recursive calls from inside the function's
                # component would swamp the callers from outside, so those share first.
                sharing = outside if any(edge.calls > 0 for _, edge in outside) else others
                shared_calls = sum(edge.calls for _, edge in sharing)
                if calls_without_caller > 0 and self.calls[function] > 0:
                    root_time[function] = cumulative * calls_without_caller / self.calls[function]
                if shared_calls > 0:
                    from_callers = cumulative - root_time[function]
                    for caller, edge in sharing:
                        self.callee_time[caller].append(
                            (function, from_callers * edge.calls / shared_calls)
                        )
                        nested_share[caller].append(0.0)
        # a function seen only as a caller (profile's top-level entry) takes what it hands on
        self.effective_cumtime = [
            cumulative if cumulative > 0 or own > 0 else sum(t for _, t in callees)
            for cumulative, own, callees in zip(
                self.cumtime, self.tottime, self.callee_time, strict=True
            )
        ]
        self.outer_shares = [self._outer_shares(f) for f in range(count)]
        self.inner_weights = [self._inner_weights(f, nested_share[f]) for f in range(count)]
        self.root_time = [
            self.effective_cumtime[f] if time < 0 else time for f, time in enumerate(root_time)
        ]

    def _outer_shares(self, function: int) -> list[tuple[int, float]]:
        """The fraction of a function's time that each callee takes in its outermost calls.

        The edges of a recursive function also count the calls its inner
        (recursive) calls make, so they can add up to more than the time its
        outermost calls spend in callees, ``cumtime - tottime``. That budget is
        filled heaviest edge first; in a function without recursion every edge
        fits whole.
        """
        cumulative = self.effective_cumtime[function]
        if cumulative <= 0:
            return []
        budget = max(cumulative - self.tottime[function], 0.0)
        shares = []
        for callee, time in sorted(self.callee_time[function], key=lambda edge: -edge[1]):
            fits = min(time, budget)
            budget -= fits
            shares.append((callee, fits / cumulative))
        return shares

    def _inner_weights(self, function: int, nested_share: list[float]) -> list[tuple[int, float]]:
        """How a function's inner (recursive) calls spread their time over its callees.

        An edge weighs the time that did not fit in the outermost calls (see
        `_outer_shares`), plus the edge's time in proportion to its calls made
        while the same edge was already running. With neither, the edges weigh
        their time. Heaviest first.
        """
        callees = self.callee_time[function]
        cumulative = self.effective_cumtime[function]
        outer = dict(self.outer_shares[function])
        weights = [
            (callee, max(time - outer.get(callee, 0.0) * cumulative, 0.0) + time * nested)
            for (callee, time), nested in zip(callees, nested_share, strict=True)
        ]
        if not any(weight > 0 for _, weight in weights):
            weights = callees
        return sorted(((c, w) for c, w in weights if w > 0), key=lambda edge: -edge[1])

    def frame_of(self, function: int) -> tuple[str, str | None, int | None]:
        """Name, file and line of a function, None where pstats has none (builtins)."""
        file, line, name = self.keys[function]  # type: ignore[misc]
        if not isinstance(name, str):
            name = _code_name(name) or "?"
        return name, None if file in _NO_FILE else file, line if 0 < line <= _MAX_COUNT else None


def _strong_components(predecessors: list[list[int]]) -> list[int]:
    """The strongly connected component of every node of a graph (Tarjan's, without recursion).

    `predecessors[v]` lists the nodes with an edge into `v` (a function's
    callers); the components are those of the reversed graph too.
    """
    count = len(predecessors)
    index = [-1] * count
    low = [0] * count
    component = [-1] * count
    on_stack = [False] * count
    stack: list[int] = []
    next_index = 0
    components = 0
    for start in range(count):
        if index[start] >= 0:
            continue
        work = [(start, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = next_index
                next_index += 1
                stack.append(node)
                on_stack[node] = True
            neighbours = predecessors[node]
            while position < len(neighbours):
                other = neighbours[position]
                position += 1
                if index[other] < 0:
                    work.append((node, position))
                    work.append((other, 0))
                    break
                if on_stack[other]:
                    low[node] = min(low[node], index[other])
            else:
                if low[node] == index[node]:
                    while True:
                        member = stack.pop()
                        on_stack[member] = False
                        component[member] = components
                        if member == node:
                            break
                    components += 1
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
    return component


class _CallTree:
    """The reconstructed call tree: nodes with a parent, a function, an estimated time and self time."""

    def __init__(self, graph: _CallGraph) -> None:
        self.graph = graph
        self.parent: list[int] = []
        self.function: list[int] = []
        self.time: list[float] = []
        self.depth: list[int] = []
        self.self_time: list[float] = []
        total = sum(graph.tottime)
        if total > 0:
            entries = self._grow(max(MIN_PATH_SHARE * total, math.ulp(0.0)))
            leftover = self._natural_self_times()
            self._place_leftover(leftover, entries)

    def _add(self, parent: int, function: int, time: float) -> int:
        """A new node of `function` below `parent` (-1: a root) with estimated `time`."""
        self.parent.append(parent)
        self.function.append(function)
        self.time.append(time)
        self.depth.append(self.depth[parent] + 1 if parent >= 0 else 0)
        self.self_time.append(0.0)
        return len(self.parent) - 1

    def _path_functions(self, node: int) -> set[int]:
        """The functions on the path from a root to `node`."""
        functions = set()
        while node >= 0:
            functions.add(self.function[node])
            node = self.parent[node]
        return functions

    def _children(
        self, node: int, time: float, floor: float, fold: bool = True
    ) -> list[tuple[int, float]]:
        """The callees of a node with their estimated time, recursion folded.

        Only callees that get at least `floor` come back. A callee already on
        the node's path is not entered again; the time of that inner call,
        less its self share, is handed on to its callees as its inner calls
        spread it (`_CallGraph._inner_weights`), as if the repeated frame were
        left out of the stack. Callees on the path are folded the same way,
        each function at most once (and at most `MAX_FOLDS`); without `fold`,
        callees on the path are left out.
        """
        graph = self.graph
        on_path = self._path_functions(node)
        children: dict[int, float] = {}
        folded: list[tuple[int, float]] = []
        for callee, share in graph.outer_shares[self.function[node]]:
            part = time * share
            if part < floor or part <= 0:
                break  # the shares are sorted, heaviest first
            if callee not in on_path:
                children[callee] = children.get(callee, 0.0) + part
            elif fold:
                folded.append((callee, part))
        passed: set[int] = set()
        while folded and len(passed) < MAX_FOLDS:
            function, folded_time = folded.pop()
            if function in passed:
                continue
            passed.add(function)
            cumulative = graph.effective_cumtime[function]
            if cumulative <= 0:
                continue
            # Heaviest first: the callees of a dispatcher's inner calls (hooks that call
            # each other) each weigh about its whole time, the outermost one the most.
            # Callees off the path first; what they leave goes on folding.
            budget = folded_time * max(1.0 - graph.tottime[function] / cumulative, 0.0)
            weights = graph.inner_weights[function]
            for fold_on in (False, True):
                for callee, weight in weights:
                    part = min(folded_time * weight / cumulative, budget)
                    if part < floor or part <= 0:
                        break
                    if (callee in on_path) != fold_on:
                        continue
                    budget -= part
                    if fold_on:
                        folded.append((callee, part))
                    else:
                        children[callee] = children.get(callee, 0.0) + part
        # no node can take more time than its function took in all
        cumtime = graph.effective_cumtime
        return [(callee, min(t, cumtime[callee])) for callee, t in children.items()]

    def _grow(self, threshold: float) -> dict[int, tuple[float, int]]:
        """Expand the tree from the roots, heaviest first, within the bounds.

        Returns, for each function, the heaviest way into it that was left
        unexpanded by the bounds: its estimated time and the node it would
        hang below (-1 for a root).
        """
        graph = self.graph
        entries: dict[int, tuple[float, int]] = {}

        def offer(function: int, time: float, parent: int) -> None:
            if time > entries.get(function, (-1.0, -1))[0]:
                entries[function] = (time, parent)

        heap: list[tuple[float, int, int, int]] = []
        for function, time in enumerate(graph.root_time):
            if time >= threshold:
                heap.append((-time, len(heap), -1, function))
            elif time > 0:
                offer(function, time, -1)
        heapq.heapify(heap)
        sequence = len(heap)
        while heap and len(self.parent) < MAX_TREE_NODES:
            negative_time, _, parent, function = heapq.heappop(heap)
            node = self._add(parent, function, -negative_time)
            expand = self.depth[node] + 1 < MAX_DEPTH
            for callee, time in self._children(node, -negative_time, threshold):
                if expand:
                    heapq.heappush(heap, (-time, sequence, node, callee))
                    sequence += 1
                else:
                    offer(callee, time, node)
        for negative_time, _, parent, function in heap:
            offer(function, -negative_time, parent)
        return entries

    def _ways_through_callers(self, entries: dict[int, tuple[float, int]]) -> None:
        """Add, per function, the heaviest way in from a node of a caller that lacks it.

        For each caller, its heaviest nodes (at most `_WAY_NODES`) are tried in
        turn: the first without the function among its children makes the
        way, with the node's time times the caller's share for the function.
        These are the ways the threshold cut.
        """
        graph = self.graph
        nodes_of: dict[int, list[int]] = {}
        child_functions: dict[int, set[int]] = {}
        for node, (parent, function) in enumerate(zip(self.parent, self.function, strict=True)):
            nodes_of.setdefault(function, []).append(node)
            if parent >= 0:
                child_functions.setdefault(parent, set()).add(function)
        no_children: set[int] = set()
        for caller, nodes in nodes_of.items():
            heaviest = sorted(nodes, key=lambda n: -self.time[n])[:_WAY_NODES]
            for callee, share in graph.outer_shares[caller]:
                for node in heaviest:
                    if callee not in child_functions.get(node, no_children):
                        time = self.time[node] * share
                        if time > entries.get(callee, (-1.0, -1))[0]:
                            entries[callee] = (time, node)
                        break

    def _natural_self_times(self) -> np.ndarray:
        """Give each node its function's self share of the node's time; the rest per function.

        A node of function `f` with estimated time `T` gets ``T * tottime(f) /
        cumtime(f)``. Where the nodes of `f` would get more than `tottime(f)`
        in all, they are scaled down to it. Returns what is left of each
        function's `tottime`: the time of the paths the bounds left out.
        """
        graph = self.graph
        tottime = np.array(graph.tottime, np.float64)
        cumtime = np.array(graph.cumtime, np.float64)
        function = np.array(self.function, np.int64)
        time = np.array(self.time, np.float64)
        own_share = np.divide(tottime, cumtime, out=np.zeros_like(tottime), where=cumtime > 0)
        natural = time * np.minimum(own_share, 1.0)[function]
        given = np.bincount(function, weights=natural, minlength=len(tottime))
        scale = np.divide(tottime, given, out=np.ones_like(tottime), where=given > tottime)
        self.self_time = (natural * scale[function]).tolist()
        return np.maximum(tottime - np.minimum(given, tottime), 0.0)

    def _place_leftover(self, leftover: np.ndarray, entries: dict[int, tuple[float, int]]) -> None:
        """Put each function's leftover time on one node at the heaviest way into it.

        That node hangs below the kept node the way starts from; functions
        that have no node get one the same way (their callees follow, heaviest
        way first), so every function gets at most one such node. A function
        with leftover time and no such way keeps it on its nodes, in
        proportion to their time, or, with no node at all (a cycle nothing
        else calls), starts a tree of its own.
        """
        graph = self.graph
        self._ways_through_callers(entries)
        expanded = set(self.function)
        placed = [False] * len(graph.keys)
        heap = [(-time, function, parent) for function, (time, parent) in entries.items()]
        heapq.heapify(heap)
        orphans = sorted(
            (f for f in np.flatnonzero(leftover > 0).tolist() if f not in expanded),
            key=lambda f: (graph.cumtime[f], -f),
        )
        while heap or orphans:
            if not heap:
                function = orphans.pop()
                if not placed[function]:
                    heap.append((-graph.cumtime[function], function, -1))
                continue
            negative_time, function, parent = heapq.heappop(heap)
            if placed[function] or (function in expanded and leftover[function] <= 0):
                continue
            if parent >= 0 and (
                self.depth[parent] + 1 >= MAX_DEPTH or function in self._path_functions(parent)
            ):
                if function in expanded:
                    continue  # its nodes keep the leftover
                parent = -1
            node = self._add(parent, function, -negative_time)
            placed[function] = True
            self.self_time[node] = float(leftover[function])
            leftover[function] = 0.0
            for callee, time in self._children(node, -negative_time, 0.0, fold=False):
                if not placed[callee] and callee not in expanded:
                    heapq.heappush(heap, (-time, callee, node))
        self._spread_unplaced(leftover)

    def _spread_unplaced(self, leftover: np.ndarray) -> None:
        """Spread the leftover no node took over the function's nodes, by their time."""
        unplaced = set(np.flatnonzero(leftover > 0).tolist())
        if not unplaced:
            return
        weight: dict[int, float] = {}
        for node, function in enumerate(self.function):
            if function in unplaced:
                weight[function] = weight.get(function, 0.0) + self.time[node]
        for node, function in enumerate(self.function):
            if function in unplaced and weight[function] > 0:
                self.self_time[node] += leftover[function] * self.time[node] / weight[function]

    def emit(self, builder: ProfileBuilder) -> None:
        """Add one sample per node with self time, depth first with the heaviest child first."""
        if not self.parent:
            return
        node_self = self.self_time
        count = len(self.parent)
        needed = [t > 0 for t in node_self]
        for node in range(count - 1, -1, -1):
            if needed[node] and self.parent[node] >= 0:
                needed[self.parent[node]] = True
        children: list[list[int]] = [[] for _ in range(count)]
        roots = []
        for node in sorted(
            (n for n in range(count) if needed[n]), key=lambda n: (-self.time[n], n)
        ):
            (children[self.parent[node]] if self.parent[node] >= 0 else roots).append(node)
        frames: dict[int, int] = {}
        stack_of_node: dict[int, int] = {}
        sample_stacks: list[int] = []
        sample_weights: list[float] = []
        pending = roots[::-1]
        while pending:
            node = pending.pop()
            function = self.function[node]
            frame = frames.get(function)
            if frame is None:
                frame = frames[function] = builder.frame(*self.graph.frame_of(function))
            parent = self.parent[node]
            stack = builder.stack(stack_of_node[parent] if parent >= 0 else -1, frame)
            stack_of_node[node] = stack
            if node_self[node] > 0:
                sample_stacks.append(stack)
                sample_weights.append(node_self[node])
            pending.extend(reversed(children[node]))
        builder.add_samples(np.array(sample_stacks, np.int32), np.array(sample_weights, np.float64))

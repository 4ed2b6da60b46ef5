"""V8's sampling profiler log (``node --prof``) and its preprocessed JSON.

``node --prof script.js`` writes ``isolate-<address>-<pid>-v8.log``, a text
log of comma-separated events; the ones that matter here are

- ``shared-library,<path>,<start>,<end>,<slide>``: native code of a library;
- ``code-creation,<type>,<kind>,<time>,<start>,<size>,<name>[,<function>,<state>]``
  (also ``code-move`` and ``code-delete``): generated code and where it lives;
- ``tick,<pc>,<time µs>,<external>,<tos>,<vm state>,<return addresses>...``:
  one sample, its stack as code addresses (``+x``/``-x`` relative to the
  previous one).

``node --prof-process --preprocess isolate*.log > profile.v8log.json``
turns the log into ``{"code": [{"name", "type", "kind"}...], "functions": [...],
"ticks": [{"tm": µs, "vm": state, "s": [code index, offset, ...]}]}``, with
native symbols looked up by ``nm``.

The JSON is read as speedscope, the reference importer, reads it: one
profile in microseconds, ticks in time order, each tick weighing the time
since the previous one (the first since zero); frames named by code type,
"(c++) symbol", "(LIB) path", "(builtin) name", "(bytecode) ~name",
"(stub) name", "(IC) name", "(regexp) name", and JavaScript functions as
"name" or "(anonymous file:line)" with their file, line and column;
addresses no code entry covers are left out of the stack.

The log is first resolved the way the tick processor resolves it (a code
map updated event by event, each tick's addresses looked up when the tick is
seen) and then read like the JSON. Native frames are named after their
library ("(LIB) /usr/bin/node"), since symbol names are not in the log.

The log is read a line at a time, as bytes: of a tick line that differs
from one seen since the code map last changed only in its time, only the
time is read. The JSON's ``ticks`` list, nearly all of a big file, is read
a piece at a time (`json_pieces`), the rest whole. Each distinct stack is
resolved once, and the stack table is made with NumPy
(`flamesight.model.stack_building.path_stacks`).
"""

from __future__ import annotations

import bisect
import io
import re
from array import array
from dataclasses import dataclass, field
from itertools import chain, repeat

import numpy as np

from flamesight.formats.chrome_cpuprofile import describe_json_value, json_head_keys
from flamesight.formats.errors import FormatError, load_json, shorten
from flamesight.formats.json_pieces import ListPieces, list_opener
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, StackTable, Unit
from flamesight.model.stack_building import path_stacks

NAME = "v8-prof"
TITLE = "V8 --prof log"

_LOG_EVENTS = (b"v8-version,", b"shared-library,", b"code-creation,", b"profiler,")
_CODE_TYPES = re.compile(rb'"type"[ \t\r\n]*:[ \t\r\n]*"(?:SHARED_LIB|CPP|CODE|JS)"')
_CPP_NAME = re.compile(r"[tT] ([^(<]*)")
_JS_FUNCTION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-$")
_JS_LOCATION = re.compile(r"([a-zA-Z0-9.\-_/$]*):([0-9]+):([0-9]+)")
_CODE_KIND_PREFIXES = {
    "LoadIC": "(IC) ",
    "StoreIC": "(IC) ",
    "KeyedStoreIC": "(IC) ",
    "KeyedLoadIC": "(IC) ",
    "LoadGlobalIC": "(IC) ",
    "Handler": "(IC) ",
    "BytecodeHandler": "(bytecode) ~",
    "Stub": "(stub) ",
    "Builtin": "(builtin) ",
    "RegExp": "(regexp) ",
}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|u[0-9a-fA-F]{4}|n|\\)")
_PAGE_BITS = 12
_CODE_MAP_EVENTS = frozenset({"code-creation", "code-move", "code-delete", "shared-library"})
_MAX_INT = 2**31
_UNKNOWN = ("(unknown type)", None, None, None)
_TICKS_LIST = list_opener("ticks")


def sniff(head: bytes) -> bool:
    """A ``--prof`` log (its first event) or the ``--preprocess`` JSON (``code`` and ``ticks``)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(_LOG_EVENTS):
        return True
    opener, keys, truncated = json_head_keys(head, max_depth=1)
    if opener != b"{":
        return False
    top = {key for _, key in keys}
    if "code" not in top or top & {"$schema", "traceEvents", "nodes", "head"}:
        return False
    return "ticks" in top or (truncated and _CODE_TYPES.search(head) is not None)


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a ``--prof`` log or its preprocessed JSON into a group of one profile."""
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        codes, times, tick_stacks, stacks = _read_json(data)
    else:
        codes, times, tick_stacks, stacks = _read_log(data)
    return ProfileGroup(name, [_profile(name, codes, times, tick_stacks, stacks)])


# the preprocessed JSON


def _read_json(data: bytes) -> tuple[list, list[float], array, list[tuple[int, ...]]]:
    """The code entries, tick times, tick stack indices and distinct stacks of the JSON.

    The ``ticks`` list, almost all of a big file, is read a piece at a time
    (`json_pieces.ListPieces`) when that works out exactly; otherwise, or
    when a tick needs an error message, the document is read whole.
    """
    in_pieces = _read_json_in_pieces(data)
    if in_pieces is not None:
        return in_pieces
    document = load_json(data, TITLE)
    if not isinstance(document, dict):
        raise FormatError(TITLE, "$", f"expected an object, got {describe_json_value(document)}")
    codes = document.get("code")
    if not isinstance(codes, list):
        raise FormatError(TITLE, "$.code", f"expected a list, got {describe_json_value(codes)}")
    ticks = document.get("ticks")
    if not isinstance(ticks, list):
        raise FormatError(TITLE, "$.ticks", f"expected a list, got {describe_json_value(ticks)}")
    columns = _TickColumns()
    columns.add(ticks)
    return codes, columns.times, columns.tick_stacks, list(columns.distinct)


def _read_json_in_pieces(
    data: bytes,
) -> tuple[list, list[float], array, list[tuple[int, ...]]] | None:
    """`_read_json`'s result with the ticks read a piece at a time, or None to read it whole.

    None when the ``ticks`` list is not found or not read in pieces, when a
    tick fails a check (the whole reading names it), or when the skeleton is
    not an object with a ``code`` list and this ``ticks`` list.
    """
    pieces = ListPieces(data)
    opener = pieces.find(_TICKS_LIST)
    if opener is None:
        return None
    columns = _TickColumns()
    if pieces.read_items(opener.end(), columns.add_if_valid, columns) is None:
        return None
    skeleton = pieces.skeleton()
    if not isinstance(skeleton, dict) or pieces.result(skeleton.get("ticks")) is not columns:
        return None
    codes = skeleton.get("code")
    if not isinstance(codes, list):
        return None
    return codes, columns.times, columns.tick_stacks, list(columns.distinct)


class _TickColumns:
    """Tick times and stack indices (into the distinct stacks), added a list of ticks at a time."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.tick_stacks = array("i")
        self.distinct: dict[tuple[int, ...], int] = {}  # code indices, root first -> index
        self.code_ints: dict[int, int] = {}

    def add(self, ticks: list) -> None:
        """Add ticks (JSON values) that follow those added so far, checking each.

        Types are compared exactly (``type(x) is dict``): JSON values are of
        the built-in types themselves, and a bool is not an int here.
        """
        for index, tick in enumerate(ticks, len(self.times)):
            if type(tick) is not dict:
                raise FormatError(
                    TITLE,
                    f"$.ticks[{index}]",
                    f"expected an object, got {describe_json_value(tick)}",
                )
            time = tick.get("tm")
            if type(time) is not int and type(time) is not float:
                raise FormatError(
                    TITLE,
                    f"$.ticks[{index}].tm",
                    f"expected a time, got {describe_json_value(time)}",
                )
            entries = tick.get("s")
            if type(entries) is not list:
                raise FormatError(
                    TITLE,
                    f"$.ticks[{index}].s",
                    f"expected a list, got {describe_json_value(entries)}",
                )
            # Pairs of (code index, offset), innermost first; speedscope reads the indices.
            ids = tuple(entries[-2::-2])
            if not set(map(type, ids)) <= {int}:  # the usual case is checked at C speed
                at = next(
                    len(entries) - 2 - 2 * i for i, code in enumerate(ids) if type(code) is not int
                )
                raise FormatError(
                    TITLE,
                    f"$.ticks[{index}].s[{at}]",
                    f"expected a code index, got {describe_json_value(entries[at])}",
                )
            stack = self.distinct.get(ids)
            if stack is None:
                # one int object per code index, not one per mention (JSON gives each its own)
                ids = tuple(map(self.code_ints.setdefault, ids, ids))
                stack = self.distinct[ids] = len(self.distinct)
            self.times.append(time)
            self.tick_stacks.append(stack)

    def add_if_valid(self, ticks: list) -> bool:
        """`add` the ticks if all pass its checks; False (some added) if one does not."""
        try:
            self.add(ticks)
        except FormatError:
            return False
        return True


def _code_frame(code: object, where: str) -> tuple[str, str | None, int | None, int | None]:
    """Name, file, line and column of a code entry, as speedscope names it."""
    if not isinstance(code, dict) or not code.get("type"):
        return _UNKNOWN
    kind_of_code = code["type"]
    name = code.get("name")
    if not isinstance(name, str):
        raise FormatError(
            TITLE, f"{where}.name", f"expected a string, got {describe_json_value(name)}"
        )
    if not isinstance(kind_of_code, str):
        raise FormatError(
            TITLE, f"{where}.type", f"expected a string, got {describe_json_value(kind_of_code)}"
        )
    return code_frame(kind_of_code, name, code.get("kind"))


def code_frame(
    code_type: str, name: str, kind: object = None
) -> tuple[str, str | None, int | None, int | None]:
    """Name, file, line and column speedscope gives code of `code_type` ("JS", "CPP", ...) named `name`."""
    if code_type == "CPP":
        match = _CPP_NAME.search(name)
        return (f"(c++) {match.group(1)}" if match else name), None, None, None
    if code_type == "SHARED_LIB":
        return f"(LIB) {name}", None, None, None
    if code_type == "JS":
        located = _js_location(name)
        return located if located else (name, None, None, None)
    if code_type == "CODE":
        prefix = _CODE_KIND_PREFIXES.get(kind) if isinstance(kind, str) else None
        return (prefix + name if prefix else name), None, None, None
    return f"({code_type}) {name}", None, None, None


def _js_location(name: str) -> tuple[str, str, int, int] | None:
    """speedscope's ``/([\\w.$-]*) ([\\w.$/-]*):(\\d+):(\\d+)/`` search, in linear time.

    A match starts at the run of function-name characters before some space
    and continues with a location right after that space; the first space
    whose location matches gives the leftmost match.
    """
    space = name.find(" ")
    while space >= 0:
        tail = _JS_LOCATION.match(name, space + 1)
        if tail:
            start = space
            while start > 0 and name[start - 1] in _JS_FUNCTION_CHARS:
                start -= 1
            function = name[start:space]
            file = tail.group(1)
            line = _small_int(tail.group(2))
            col = _small_int(tail.group(3))
            if not function:
                function = (
                    f"(anonymous {file.rsplit('/', 1)[-1]}:{line})" if file else "(anonymous)"
                )
            return function, file or "(unknown file)", line, col
        space = name.find(" ", space + 1)
    return None


def _small_int(digits: str) -> int:
    return int(digits) if len(digits) < 10 else _MAX_INT - 2


def _profile(
    name: str, codes: list, times: list[float], tick_stacks: array, stacks: list[tuple[int, ...]]
) -> Profile:
    """Ticks in time order, each weighing the time since the previous one.

    Tick *i* has the code indices ``stacks[tick_stacks[i]]``, root first.
    Frames and stacks are made in the order the ticks show them in time.
    """
    builder = ProfileBuilder(name, Unit.MICROSECONDS, sampled=True)
    count = len(times)
    tick_times = np.array(times, np.float64) if count else np.zeros(0)
    order = np.argsort(tick_times, kind="stable")
    tick_times = tick_times[order]
    if count and tick_times[0] < 0:
        at = int(order[0])
        raise FormatError(TITLE, f"tick {at}", f"negative time {times[at]!r}")
    with np.errstate(over="ignore", invalid="ignore"):
        weights = np.diff(tick_times, prepend=0.0)
    if count and not np.isfinite(weights).all():
        raise FormatError(TITLE, "ticks", "the tick times run past the largest number")
    stack_of_tick = np.frombuffer(tick_stacks, np.int32)[order]
    used, first_tick = np.unique(stack_of_tick, return_index=True)
    used = used[np.argsort(first_tick)]  # distinct stacks by their first tick in time
    stack_table, stack_of_used = _stack_table(builder, codes, [stacks[i] for i in used.tolist()])
    resolved = np.full(len(stacks), -1, np.int64)
    resolved[used] = stack_of_used
    keep = weights > 0
    builder.add_samples(
        resolved[stack_of_tick[keep]], weights[keep], tick_times[keep] - weights[keep]
    )
    return builder.build(stack_table)


def _stack_table(
    builder: ProfileBuilder, codes: list, stacks: list[tuple[int, ...]]
) -> tuple[StackTable, np.ndarray]:
    """The stack table of stacks of code indices (root first), and the stack of each.

    Frames are made in the order the stacks name the codes; -1 (no code)
    is left out, and a stack of nothing else is -1.
    """
    frame_of_code = dict.fromkeys(chain.from_iterable(stacks))  # codes in order of first use
    frame_of_code.pop(-1, None)
    code_count = len(codes)
    for code in frame_of_code:
        if code > code_count:
            fields = (f"0x{code:x}", None, None, None)
        elif 0 <= code < code_count:
            fields = _code_frame(codes[code], f"$.code[{code}]")
        else:
            fields = _UNKNOWN
        frame_of_code[code] = builder.frame(*fields)
    lengths = np.fromiter(map(len, stacks), np.int64, len(stacks))
    entries = chain.from_iterable(stacks)
    frames = np.fromiter(map(frame_of_code.get, entries, repeat(-1)), np.int32, lengths.sum())
    owner = np.repeat(np.arange(len(stacks), dtype=np.int32), lengths)
    known = frames >= 0
    frames, owner = frames[known], owner[known]
    # The entries of a stack follow each other, root first: each goes on to
    # the next one, the last to -1.
    starts = np.flatnonzero(np.diff(owner, prepend=-1))
    next_entry = np.arange(1, len(owner) + 1, dtype=np.int32)
    next_entry[np.flatnonzero(np.diff(owner, append=len(stacks)))] = -1
    table, path_stack = path_stacks(starts, next_entry, frames)
    stack_of = np.full(len(stacks), -1, np.int64)
    stack_of[owner[starts]] = path_stack
    return table, stack_of


# the log


@dataclass
class _CodeMap:
    """The tick processor's code map: libraries by page, generated code by address."""

    codes: list[tuple[str, str, str | None]] = field(default_factory=list)
    library_starts: list[int] = field(default_factory=list)
    library_entries: list[tuple[int, int]] = field(default_factory=list)  # (end, code id)
    page_ranges: list[tuple[int, int]] = field(default_factory=list)  # sorted, merged
    page_lows: list[int] = field(default_factory=list)  # of the merged ranges
    page_highs: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    entries: dict[int, tuple[int, int]] = field(default_factory=dict)  # start -> (size, code id)
    _pages_merged: bool = True

    def add_library(self, path: str, start: int, end: int) -> None:
        """A ``shared-library`` line: the whole range resolves to the library."""
        code_id = len(self.codes)
        self.codes.append(("SHARED_LIB", path, None))
        size = max(end - start, 0)
        first = start >> _PAGE_BITS
        last = (start + (size >> _PAGE_BITS << _PAGE_BITS)) >> _PAGE_BITS
        self._mark_pages(first, last)
        at = bisect.bisect_left(self.library_starts, start)
        if at < len(self.library_starts) and self.library_starts[at] == start:
            return  # the first library at an address stays, as in V8's splay tree
        self.library_starts.insert(at, start)
        self.library_entries.insert(at, (start + size, code_id))

    def _mark_pages(self, first: int, last: int) -> None:
        self.page_ranges.append((first, last))
        self._pages_merged = False

    def _merge_pages(self) -> None:
        """Sort and merge the marked page ranges (once per batch of libraries)."""
        ranges = sorted(self.page_ranges)
        merged = ranges[:1]
        for low, high in ranges[1:]:
            if low <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        self.page_ranges = merged
        self.page_lows = [low for low, _ in merged]
        self.page_highs = [high for _, high in merged]
        self._pages_merged = True

    def add_code(
        self, code: tuple[str, str, str | None], start: int, size: int, replace: bool
    ) -> None:
        """A ``code-creation``: covered entries go; a function's code replaces the one at `start`."""
        code_id = len(self.codes)
        self.codes.append(code)
        if replace:
            self.delete(start)
        self._delete_covered(start, start + size)
        if start in self.entries:
            return  # an insert at a taken address is ignored, as in V8's splay tree
        bisect.insort(self.starts, start)
        self.entries[start] = (size, code_id)

    def move(self, source: int, target: int) -> None:
        """A ``code-move``."""
        entry = self.entries.get(source)
        if entry is None:
            return
        self.delete(source)
        self._delete_covered(target, target + entry[0])
        if target not in self.entries:
            bisect.insort(self.starts, target)
            self.entries[target] = entry

    def delete(self, start: int) -> None:
        """A ``code-delete`` (nothing when no code starts there)."""
        if self.entries.pop(start, None) is not None:
            del self.starts[bisect.bisect_left(self.starts, start)]

    def _delete_covered(self, start: int, end: int) -> None:
        """Remove the entries overlapping [start, end), as V8's ``deleteAllCoveredNodes_``."""
        starts = self.starts
        high = bisect.bisect_right(starts, end - 1)
        at = high - 1
        doomed = set()
        while at >= 0 and end - 1 >= start:
            other = starts[at]
            if other < end and start < other + self.entries[other][0]:
                doomed.add(other)
            if other <= start:
                break
            at -= 1
        if doomed:
            low = max(at, 0)
            starts[low:high] = [other for other in starts[low:high] if other not in doomed]
            for other in doomed:
                del self.entries[other]

    def find(self, address: int) -> int:
        """The code id covering `address`, -1 when none does."""
        if not self._pages_merged:
            self._merge_pages()
        page = address >> _PAGE_BITS
        at = bisect.bisect_right(self.page_lows, page) - 1
        if at >= 0 and page <= self.page_highs[at]:
            at = bisect.bisect_right(self.library_starts, address) - 1
            if at >= 0 and address < self.library_entries[at][0]:
                return self.library_entries[at][1]
            return -1
        at = bisect.bisect_right(self.starts, address) - 1
        if at >= 0:
            start = self.starts[at]
            size, code_id = self.entries[start]
            if address < start + size:
                return code_id
        return -1


def _read_log(data: bytes) -> tuple[list, list[int], array, list[tuple[int, ...]]]:
    """The code entries, tick times, tick stack indices and distinct stacks of a log.

    Lines are read one at a time, as bytes. A tick line without quotes or
    backslashes is remembered without its time until the code map next
    changes: a later tick line that differs only in its time has the same
    stack, so only its time is read.
    """
    code_map = _CodeMap()
    found: dict[int, int] = {}  # code ids of addresses looked up since the code map last changed
    seen_ticks: dict[bytes, int] = {}  # tick lines without their time -> stack index, as `found`
    times: list[int] = []
    tick_stacks = array("i")
    distinct: dict[tuple[int, ...], int] = {}
    for number, raw in enumerate(io.BytesIO(data), 1):
        tick = _tick_without_time(raw)
        stack = seen_ticks.get(tick[0]) if tick else None
        time = _ascii_decimal(tick[1]) if tick and stack is not None else None
        if time is not None:
            times.append(time)
            tick_stacks.append(stack)
            continue
        raw = raw.removesuffix(b"\n")
        if not raw.strip():
            continue
        line = raw.decode("utf-8", "replace").rstrip("\r")
        event, _, rest = line.partition(",")
        if event == "tick":
            time, stack_ids = _tick(rest, number, line, code_map, found)
            stack = distinct.setdefault(stack_ids, len(distinct))
            times.append(time)
            tick_stacks.append(stack)
            if tick and b'"' not in raw and b"\\" not in raw:
                seen_ticks[tick[0]] = stack
            continue
        if event in _CODE_MAP_EVENTS:
            found.clear()
            seen_ticks.clear()
        if event == "code-creation":
            fields = _fields(rest)
            if len(fields) < 6:
                raise FormatError(
                    TITLE,
                    f"line {number}",
                    f"a code-creation with {len(fields)} fields: {shorten(line)}",
                )
            code_type, start, size, code_name = fields[0], fields[3], fields[4], fields[5]
            start_address = _address(start, number, "code start")
            code_size = _decimal(size, number, "code size")
            if len(fields) > 6 and fields[6]:
                code_map.add_code(("JS", code_name, None), start_address, code_size, replace=True)
            else:
                code_map.add_code(
                    ("CODE", code_name, code_type), start_address, code_size, replace=False
                )
        elif event == "code-move":
            fields = _fields(rest)
            if len(fields) >= 2:
                code_map.move(
                    _address(fields[0], number, "source"), _address(fields[1], number, "target")
                )
        elif event == "code-delete":
            fields = _fields(rest)
            if fields:
                code_map.delete(_address(fields[0], number, "code start"))
        elif event == "shared-library":
            fields = _fields(rest)
            if len(fields) < 3:
                raise FormatError(
                    TITLE,
                    f"line {number}",
                    f"a shared-library with {len(fields)} fields: {shorten(line)}",
                )
            code_map.add_library(
                fields[0], _address(fields[1], number, "start"), _address(fields[2], number, "end")
            )
    codes = [
        {"type": code_type, "name": code_name, "kind": kind}
        for code_type, code_name, kind in code_map.codes
    ]
    return codes, times, tick_stacks, list(distinct)


def _tick_without_time(raw: bytes) -> tuple[bytes, bytes] | None:
    """A ``tick`` line's bytes with its time field left out, and that field; None for other lines."""
    if not raw.startswith(b"tick,"):
        return None
    time_start = raw.find(b",", 5) + 1
    time_end = raw.find(b",", time_start) if time_start else -1
    if time_end < 0:
        return None
    return raw[:time_start] + raw[time_end:], raw[time_start:time_end]


def _ascii_decimal(text: bytes) -> int | None:
    """The number `_decimal` reads from `text` if `text` is ASCII and one; else None."""
    if len(text) > 20:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _tick(
    rest: str, number: int, line: str, code_map: _CodeMap, found: dict[int, int]
) -> tuple[int, tuple[int, ...]]:
    """The time and the code ids (root first) of a ``tick`` line whose fields are `rest`."""
    fields = _fields(rest)
    if len(fields) < 5:
        raise FormatError(
            TITLE, f"line {number}", f"a tick with {len(fields)} fields: {shorten(line)}"
        )
    pc = _address(fields[0], number, "program counter")
    time = _decimal(fields[1], number, "time")
    if _decimal(fields[2], number, "external-callback flag"):
        pc = _address(fields[3], number, "external callback")
    addresses = [pc]
    previous = pc
    for frame in fields[5:]:
        if frame[:1] in ("+", "-"):
            try:
                previous += int(frame, 16)
            except ValueError:
                continue
            addresses.append(previous)
        elif frame[:1] != "o" and frame:  # "overflow" marks a cut stack
            try:
                addresses.append(int(frame, 16))
            except ValueError:
                continue
    stack = []
    for address in reversed(addresses):
        code = found.get(address)
        if code is None:
            code = found[address] = code_map.find(address)
        stack.append(code)
    return time, tuple(stack)


def _fields(text: str) -> list[str]:
    """The comma-separated fields of a log line, quoted ("...", "" for a quote) or not, unescaped."""
    if '"' not in text:
        fields = text.split(",")
    else:
        fields = []
        position = 0
        length = len(text)
        while position <= length:
            if text.startswith('"', position):
                pieces = []
                position += 1
                while True:
                    close = text.find('"', position)
                    if close < 0:
                        pieces.append(text[position:])
                        position = length
                        break
                    pieces.append(text[position:close])
                    if text.startswith('"', close + 1):
                        pieces.append('"')
                        position = close + 2
                        continue
                    position = close + 1
                    break
                fields.append("".join(pieces))
                comma = text.find(",", position)
                position = length + 1 if comma < 0 else comma + 1
            else:
                comma = text.find(",", position)
                if comma < 0:
                    fields.append(text[position:])
                    break
                fields.append(text[position:comma])
                position = comma + 1
    if "\\" in text:
        fields = [_ESCAPE.sub(_unescape, value) if "\\" in value else value for value in fields]
    return fields


def _unescape(match: re.Match) -> str:
    code = match.group(1)
    if code == "n":
        return "\n"
    if code == "\\":
        return "\\"
    digits = code[1:].strip("{}")
    value = int(digits, 16)
    return chr(value) if value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF else "\ufffd"


def _address(text: str, number: int, what: str) -> int:
    try:
        value = int(text, 16) if text[:2] in ("0x", "0X") else int(text)
    except ValueError:
        raise FormatError(
            TITLE, f"line {number}", f"expected an address as {what}, got {shorten(text)}"
        ) from None
    if not 0 <= value < 2**64:
        raise FormatError(
            TITLE, f"line {number}", f"{what} {shorten(text)} is not a 64-bit address"
        )
    return value


def _decimal(text: str, number: int, what: str) -> int:
    if len(text) > 20:
        raise FormatError(
            TITLE, f"line {number}", f"expected a number as {what}, got {shorten(text)}"
        )
    try:
        return int(text)
    except ValueError:
        raise FormatError(
            TITLE, f"line {number}", f"expected a number as {what}, got {shorten(text)}"
        ) from None

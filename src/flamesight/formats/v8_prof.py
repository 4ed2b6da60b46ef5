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
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

import numpy as np

from flamesight.formats.chrome_cpuprofile import describe_json_value, json_head_keys
from flamesight.formats.errors import FormatError, load_json, shorten
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit

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
        codes, times, stacks = _read_json(data)
    else:
        codes, times, stacks = _read_log(data)
    return ProfileGroup(name, [_profile(name, codes, times, stacks)])


# the preprocessed JSON


def _read_json(data: bytes) -> tuple[list, list[float], list[tuple[int, ...]]]:
    document = load_json(data, TITLE)
    if not isinstance(document, dict):
        raise FormatError(TITLE, "$", f"expected an object, got {describe_json_value(document)}")
    codes = document.get("code")
    if not isinstance(codes, list):
        raise FormatError(TITLE, "$.code", f"expected a list, got {describe_json_value(codes)}")
    ticks = document.get("ticks")
    if not isinstance(ticks, list):
        raise FormatError(TITLE, "$.ticks", f"expected a list, got {describe_json_value(ticks)}")
    times: list[float] = []
    stacks: list[tuple[int, ...]] = []
    distinct: dict[tuple[int, ...], tuple[int, ...]] = {}
    for index, tick in enumerate(ticks):
        where = f"$.ticks[{index}]"
        if not isinstance(tick, dict):
            raise FormatError(TITLE, where, f"expected an object, got {describe_json_value(tick)}")
        time = tick.get("tm")
        if not isinstance(time, int | float) or isinstance(time, bool):
            raise FormatError(
                TITLE, f"{where}.tm", f"expected a time, got {describe_json_value(time)}"
            )
        entries = tick.get("s")
        if not isinstance(entries, list):
            raise FormatError(
                TITLE, f"{where}.s", f"expected a list, got {describe_json_value(entries)}"
            )
        # Pairs of (code index, offset), innermost first; speedscope reads the indices.
        ids = tuple(entries[-2::-2])
        for position, code in enumerate(ids):
            if not isinstance(code, int) or isinstance(code, bool):
                at = len(entries) - 2 - 2 * position
                raise FormatError(
                    TITLE,
                    f"{where}.s[{at}]",
                    f"expected a code index, got {describe_json_value(code)}",
                )
        times.append(time)
        stacks.append(distinct.setdefault(ids, ids))  # equal stacks share one tuple
    return codes, times, stacks


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


def _profile(name: str, codes: list, times: list[float], stacks: list[tuple[int, ...]]) -> Profile:
    """Ticks in time order, each weighing the time since the previous one."""
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
    frames: dict[int, int] = {}
    interned: dict[tuple[int, ...], int] = {}
    code_count = len(codes)
    tick_stacks = np.empty(count, np.int64)
    for position, index in enumerate(order.tolist()):
        ids = stacks[index]
        stack = interned.get(ids)
        if stack is None:
            stack = -1
            for code in ids:
                if code == -1:
                    continue
                frame = frames.get(code)
                if frame is None:
                    if code > code_count:
                        fields = (f"0x{code:x}", None, None, None)
                    elif 0 <= code < code_count:
                        fields = _code_frame(codes[code], f"$.code[{code}]")
                    else:
                        fields = _UNKNOWN
                    frame = frames[code] = builder.frame(*fields)
                stack = builder.stack(stack, frame)
            interned[ids] = stack
        tick_stacks[position] = stack
    keep = weights > 0
    builder.add_samples(tick_stacks[keep], weights[keep], tick_times[keep] - weights[keep])
    return builder.build()


# the log


@dataclass
class _CodeMap:
    """The tick processor's code map: libraries by page, generated code by address."""

    codes: list[tuple[str, str, str | None]] = field(default_factory=list)
    library_starts: list[int] = field(default_factory=list)
    library_entries: list[tuple[int, int]] = field(default_factory=list)  # (end, code id)
    page_ranges: list[tuple[int, int]] = field(default_factory=list)  # sorted, merged
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

    def _merged_pages(self) -> list[tuple[int, int]]:
        """The marked page ranges, sorted and merged (once per batch of libraries)."""
        if not self._pages_merged:
            ranges = sorted(self.page_ranges)
            merged = ranges[:1]
            for low, high in ranges[1:]:
                if low <= merged[-1][1] + 1:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], high))
                else:
                    merged.append((low, high))
            self.page_ranges = merged
            self._pages_merged = True
        return self.page_ranges

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
        page = address >> _PAGE_BITS
        ranges = self._merged_pages()
        at = bisect.bisect_right(ranges, (page, float("inf"))) - 1
        if at >= 0 and ranges[at][0] <= page <= ranges[at][1]:
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


def _read_log(data: bytes) -> tuple[list, list[float], list[tuple[int, ...]]]:
    code_map = _CodeMap()
    found: dict[int, int] = {}  # code ids of addresses looked up since the code map last changed
    times: list[float] = []
    stacks: list[tuple[int, ...]] = []
    distinct: dict[tuple[int, ...], tuple[int, ...]] = {}
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        line = raw.decode("utf-8", "replace").rstrip("\r")
        event, _, rest = line.partition(",")
        if event == "tick":
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
            times.append(time)
            stack = []
            for address in reversed(addresses):
                code = found.get(address)
                if code is None:
                    code = found[address] = code_map.find(address)
                stack.append(code)
            stack_ids = tuple(stack)
            stacks.append(distinct.setdefault(stack_ids, stack_ids))
            continue
        if event in _CODE_MAP_EVENTS:
            found.clear()
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
    return codes, times, stacks


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

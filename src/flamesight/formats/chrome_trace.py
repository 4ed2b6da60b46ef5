"""Chrome's trace event format: `chrome://tracing`, Perfetto JSON, DevTools performance recordings.

The file is a JSON array of events, or an object whose `traceEvents` key holds
that array. Chrome writes the array form incrementally, so a file may stop
after any event, without the closing bracket and with a trailing comma; such
files are read as far as they go.

Three readings, chosen as speedscope chooses them (speedscope is the
reference importer and every number here matches it):

- DevTools recordings carry the V8 sampling profiler in `Profile` /
  `ProfileChunk` events (or one `CpuProfile` event in older versions). Each
  profile becomes one profile of the group, named "file - thread" when there
  are several; the V8 call tree is read by
  `flamesight.formats.chrome_cpuprofile.CpuProfileAssembler`.
- Otherwise the duration events `B`/`E` (begin/end) and `X` (complete) make
  one evented profile per pid/tid, named from `process_name` / `thread_name`
  metadata. Frames are the event name plus its `args` as compact JSON;
  timestamps are rebased on each thread's first event. Events may be out of
  order and badly nested: begins are taken in time order, ends in time order
  preferring, among ends at the same time, one that closes the innermost open
  frame; an end whose name does not match the innermost open frame is
  dropped, frames left open are closed at the last event.
- Hermes (React Native) object files with top-level `samples` and
  `stackFrames` are sampled profiles, one per pid/tid. A `samples` list
  after the events is read in chunks too, into columns (thread, time, stack
  frame id); samples the columns cannot hold as they are (an unusual type,
  a time that is not plain digits or a number) send the rest of the
  document to the plain reading, which checks sample by sample.

The event array is parsed in chunks split on event boundaries, and only the
fields that matter are kept in compact columns, so a trace with millions of
events needs about its own size in memory besides its bytes.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Iterator
from contextlib import suppress
from itertools import compress, repeat
from typing import NamedTuple

import msgspec
import numpy as np
import orjson

from flamesight.formats.chrome_cpuprofile import (
    CpuProfileAssembler,
    describe_json_value,
    json_head_keys,
)
from flamesight.formats.errors import FormatError, shorten
from flamesight.formats.json_pieces import absent_number, decode_typed_json
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit

NAME = "chrome-trace"
TITLE = "Chrome trace events"

_CHUNK_BYTES = 256 * 1024
_SCAN_WINDOW = 1024 * 1024
_SPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
_EVENT_BOUNDARY = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*\{")

_BEGIN, _END, _COMPLETE, _OTHER = 0, 1, 2, 3
_PHASE_CODES = {"B": _BEGIN, "E": _END, "X": _COMPLETE}

_PROFILE_EVENTS = ("CpuProfile", "Profile", "ProfileChunk")
_NAMED_EVENTS = frozenset({*_PROFILE_EVENTS, "thread_name", "process_name"})
_HERMES_ARGS = (
    "line",
    "column",
    "name",
    "category",
    "url",
    "params",
    "allocatedCategory",
    "allocatedName",
)
_SAMPLES_OPENER = re.compile(rb'"samples"[ \t\r\n]*:[ \t\r\n]*\[')
_SAMPLE_FRAME_TYPES = frozenset({int, str, type(None)})
_NUMBER_TYPES = frozenset({int, float})
_MAX_SAFE_INTEGER = 2.0**53 - 1
# Times and durations (microseconds) further from zero are no real times; within it their
# differences and sums stay finite.
_MAX_TIME = 1e300
# Falsy args (JavaScript's null, undefined, false, 0, "" and Python's empty {} and []) by
# how they show in a frame name: not at all, or as {} or [] (empty ones are truthy in JS).
_FALSY_ARGS_CLASS = {dict: 1, list: 2}
_FALSY_ARGS_TEXT = ("", " {}", " []")
_FALSY_CLASSES = len(_FALSY_ARGS_TEXT)
# orjson writes JSON as JavaScript's JSON.stringify does, except for floats (1.0 for 1),
# integers past 2**53 and objects with integer-like keys (JavaScript lists those first).
# Text where none of these can occur is used as it is.
_REWRITE_FOR_JAVASCRIPT = re.compile(rb'[0-9][.eE]|[0-9]{16}|[{,]"(?:0|[1-9][0-9]*)":')


class _Missing:
    """A key absent from a JSON object (JavaScript's `undefined`)."""


_MISSING = _Missing()


class _Opaque:
    """An object or list used where a string is expected: equal only to itself, as in JavaScript."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


# sniffing


def sniff(head: bytes) -> bool:
    """A JSON array of trace events, or an object with a `traceEvents` key."""
    opener, keys, _ = json_head_keys(head, max_depth=2)
    if opener == b"[":
        return any(depth == 2 and key == "ph" for depth, key in keys)
    if opener == b"{":
        top = {key for depth, key in keys if depth == 1}
        return "traceEvents" in top and "$schema" not in top
    return False


# parsing


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a trace into one profile per thread (or per V8 CPU profile)."""
    trace = _read_trace(data)
    del data  # what is needed is read: let the text go (`formats.load` keeps no other reference)
    if trace.is_devtools_recording():
        return _cpu_profile_group(trace, name)
    if trace.is_object and "samples" in trace.other_keys and "stackFrames" in trace.other_keys:
        trace.require_event_list()
        return _sample_group(trace, name)
    trace.require_event_list()
    return _duration_event_group(trace, name)


class _TimedEvent(NamedTuple):
    """An event kept whole (profiles, thread names), with what orders it."""

    ts: float
    position: int
    event: dict
    path: str


class _TraceContents:
    """What `_read_trace` keeps of a trace: duration-event columns and a few whole events."""

    def __init__(self, is_object: bool) -> None:
        self.is_object = is_object
        self.root = "traceEvents" if is_object else ""
        self.other_keys: dict[str, object] = {}
        self.event_count = 0
        self.first_event: dict | None = None
        self.first_without_phase: int | None = None
        self.named_events: list[_TimedEvent] = []
        self.hermes = False
        # duration event columns, one entry per B/E/X event in file order
        # (growable C arrays: no per-chunk objects, no copy when read as NumPy)
        self.thread_column = array("i")
        self.phase_column = array("b")
        self.ts_column = array("d")
        self.duration_column = array("d")  # X events only
        self.pair_column = array("i")
        # interned threads: (pid, tid) as written -> index
        self.thread_ids: dict[tuple[object, object], int] = {}
        self.threads: list[tuple[object, object]] = []
        # interned names, with the token that decides JavaScript equality of names
        self.name_ids: dict[object, int] = {}
        self.names: list[object] = []
        self.name_tokens: list[int] = []
        self.name_token_ids: dict[object, int] = {}
        self.named_names: list[int] = []  # names that mark profile or metadata events
        # interned (name, args) pairs: by name and falsy-args class, or by name and args JSON;
        # per pair its frame key and name token
        self.simple_pairs = np.full(1024, -1, np.int32)
        self.rich_pairs: dict[tuple[int, bytes], int] = {}
        self.pair_key: list[int] = []
        self.pair_name: list[int] = []
        self.key_ids: dict[str, int] = {}
        self.key_frames: list[tuple[str, str | None, int | None, int | None]] = []

    def path(self, index: int) -> str:
        """JSON path of event `index`."""
        return f"{self.root}[{index}]"

    def is_devtools_recording(self) -> bool:
        """speedscope's test: the first event looks like Chrome's and a profile event exists."""
        first = self.first_event
        if first is None or not all(key in first for key in ("pid", "tid", "ph", "cat")):
            return False
        return any(timed.event.get("name") in _PROFILE_EVENTS for timed in self.named_events)

    def require_event_list(self) -> None:
        """The checks that make speedscope accept the events as a trace-event list."""
        if self.event_count == 0:
            raise FormatError(TITLE, self.root or "top level", "the event list is empty")
        if self.first_without_phase is not None:
            raise FormatError(
                TITLE, self.path(self.first_without_phase), "event has no 'ph' (phase) field"
            )


# reading the event array in chunks


def _read_trace(data: bytes) -> _TraceContents:
    start = _skip_space(data, 0)
    if data.startswith(_BOM, start):
        start = _skip_space(data, start + len(_BOM))
    opener = data[start : start + 1]
    if opener == b"[":
        trace = _TraceContents(is_object=False)
        events = _EventArray(data, start + 1)
        _take_events(trace, events)
        rest = _skip_space(data, events.end)
        if rest < len(data):
            raise FormatError(
                TITLE,
                f"byte {rest}",
                f"unexpected {shorten(data[rest : rest + 20])} after the events",
            )
        return trace
    if opener == b"{":
        trace = _TraceContents(is_object=True)
        before, array_start = _locate_trace_events(data, start)
        trace.other_keys.update(before)
        events = _EventArray(data, array_start)
        _take_events(trace, events)
        trace.other_keys.update(_keys_after_events(data, events))
        return trace
    raise FormatError(TITLE, "start of file", "expected a JSON array or object of trace events")


def _take_events(trace: _TraceContents, event_array: _EventArray) -> None:
    for first_index, events in event_array:
        if not events:  # only a trailing comma ("[,") or nothing before a bracket
            continue
        if first_index == 0:
            _take_first_event(trace, events[0])
        _take_chunk(trace, events, first_index)
        trace.event_count = first_index + len(events)
        del events  # before the next chunk is parsed


def _take_first_event(trace: _TraceContents, event: object) -> None:
    if not isinstance(event, dict):
        raise FormatError(TITLE, trace.path(0), f"expected an event object, got {_kind(event)}")
    trace.first_event = event
    args = event.get("args")
    trace.hermes = (
        not trace.is_object and isinstance(args, dict) and all(key in args for key in _HERMES_ARGS)
    )


class _EventArray:
    """Iterates a JSON array from just after its ``[`` as (index of first element, elements) chunks.

    Chunks end on element boundaries, found by a cheap guess (``},{``)
    confirmed by the parse itself, or by an exact scan of strings and
    brackets when the guess falls inside an element. After iteration `end` is
    the offset just past the closing ``]``, or the end of the data when the
    array is cut short (Chrome's partial traces).
    """

    def __init__(self, data: bytes, start: int) -> None:
        self.data = data
        self.start = start
        self.end = len(data)
        self.closed = False

    def __iter__(self) -> Iterator[tuple[int, list]]:
        data = self.data
        size = len(data)
        pos = self.start
        index = 0
        while True:
            pos = _skip_space(data, pos)
            if pos >= size:
                return
            if data[pos] == 0x5D:  # "]"
                self.end = pos + 1
                self.closed = True
                return
            target = pos + _CHUNK_BYTES
            if target < size:
                guess = _EVENT_BOUNDARY.search(data, target)
                if guess is not None:
                    try:
                        events = orjson.loads(b"[" + data[pos : guess.start() + 1] + b"]")
                    except orjson.JSONDecodeError:
                        pass
                    else:
                        index += len(events)
                        # hand the chunk over without keeping it: a chunk alive while the
                        # next one is parsed makes the allocator much slower
                        yield index - len(events), events
                        del events
                        pos = guess.end() - 1
                        continue
            cut, kind = _scan_elements(data, pos, target)
            if kind == "eof":
                text = data[pos:].rstrip(_SPACE)
                if text.endswith(b","):
                    text = text[:-1]
                yield index, self._load(text, pos, truncated=True)
                return
            events = self._load(data[pos:cut], pos, truncated=False)
            if kind == "close" and data[cut] != 0x5D:  # a "}" closes the array
                raise FormatError(TITLE, f"byte {cut}", "expected ']' to close the events, got '}'")
            index += len(events)
            yield index - len(events), events
            del events
            if kind == "close":
                self.end = cut + 1
                self.closed = True
                return
            pos = cut + 1

    def _load(self, text: bytes, offset: int, *, truncated: bool) -> list:
        document = b"[" + text + b"]"
        try:
            events = orjson.loads(document)
        except orjson.JSONDecodeError as error:
            at = min(offset - 1 + _byte_offset(document, error.pos), offset + len(text))
            if truncated and at == offset + len(text):
                problem = "the file ends in the middle of an event"
            else:
                problem = f"not valid JSON ({error.msg})"
            raise FormatError(TITLE, f"byte {at}", problem) from None
        return events


class _ScanWindow(NamedTuple):
    """One window of `_scan_windows`: per byte, whether it is syntax and the nesting level."""

    start: int
    chars: np.ndarray
    quote: np.ndarray  # unescaped quotes
    in_string: np.ndarray  # inside a string, its opening quote included
    outside: np.ndarray  # outside every string, quotes excluded
    closes: np.ndarray  # closing brackets outside strings
    level: np.ndarray  # nesting after the byte, relative to where the scan began


def _scan_windows(data: bytes, pos: int) -> Iterator[_ScanWindow]:
    """Strings and nesting of `data` from `pos` on, tracked exactly, window by window, with NumPy."""
    size = len(data)
    depth = 0
    in_string = False
    odd_backslashes = False
    window_start = pos
    while window_start < size:
        length = min(_SCAN_WINDOW, size - window_start)
        chars = np.frombuffer(data, np.uint8, length, window_start)
        backslash = chars == 0x5C
        if backslash.any() or odd_backslashes:
            positions = np.arange(length, dtype=np.int32)
            last_other = np.maximum.accumulate(np.where(backslash, np.int32(-1), positions))
            run_before = np.empty(length, np.int32)
            run_before[0] = 0
            run_before[1:] = positions[:-1] - last_other[:-1]
            reaches_start = np.empty(length, bool)
            reaches_start[0] = True
            reaches_start[1:] = last_other[:-1] < 0
            escaped = ((run_before + (reaches_start & odd_backslashes)) % 2).astype(bool)
            trailing = length - 1 - int(last_other[-1])
            odd_backslashes = bool((trailing + (odd_backslashes if last_other[-1] < 0 else 0)) % 2)
        else:
            escaped = np.zeros(length, bool)
        quote = (chars == 0x22) & ~escaped
        quotes_so_far = np.cumsum(quote, dtype=np.int32) + (1 if in_string else 0)
        inside = quotes_so_far % 2 == 1
        outside = ~inside & ~quote
        opens = ((chars == 0x7B) | (chars == 0x5B)) & outside
        closes = ((chars == 0x7D) | (chars == 0x5D)) & outside
        level = np.cumsum(opens.astype(np.int32) - closes.astype(np.int32), dtype=np.int32) + depth
        yield _ScanWindow(window_start, chars, quote, inside, outside, closes, level)
        depth = int(level[-1])
        in_string = bool(inside[-1])
        window_start += length


def _scan_elements(data: bytes, pos: int, min_cut: int) -> tuple[int, str]:
    """Find where the array elements starting at `pos` can be cut.

    Returns the offset of the first top-level comma at or after `min_cut`
    ("comma"), of the array's closing bracket if that comes first ("close"),
    or of the end of the data ("eof").
    """
    for window in _scan_windows(data, pos):
        level = window.level
        length = len(level)
        close_at = np.flatnonzero(window.closes & (level < 0))
        commas = (window.chars == 0x2C) & window.outside & (level == 0)
        comma_from = max(0, min_cut - window.start)
        comma_at = np.flatnonzero(commas[comma_from:])
        first_close = int(close_at[0]) if len(close_at) else length
        first_comma = int(comma_at[0]) + comma_from if len(comma_at) else length
        if first_close < length and first_close < first_comma:
            return window.start + first_close, "close"
        if first_comma < length:
            return window.start + first_comma, "comma"
    return len(data), "eof"


def _locate_trace_events(data: bytes, start: int) -> tuple[dict, int]:
    """The top-level keys before `traceEvents` and the offset just after its ``[``.

    One scan of strings and nesting finds the key (a `"traceEvents"` string
    elsewhere, however often it occurs, costs nothing more); then the text
    before it is parsed once.
    """
    key = b'"traceEvents"'
    found = data.find(key, start)
    windows = _scan_windows(data, start)
    window = next(windows, None)
    while found >= 0 and window is not None:
        if found >= window.start + len(window.level):
            window = next(windows, None)
            continue
        at = found - window.start
        colon = _skip_space(data, found + len(key))
        opening = window.quote[at] and window.in_string[at]
        if opening and window.level[at] == 1 and data[colon : colon + 1] == b":":
            break  # a key of the top-level object
        found = data.find(key, found + 1)
    else:
        raise FormatError(TITLE, "top level", "no 'traceEvents' key")
    document = data[start:found] + b'"":0}'
    try:
        before = orjson.loads(document)
    except orjson.JSONDecodeError as error:
        at = start + min(_byte_offset(document, error.pos), found - start)
        raise FormatError(TITLE, f"byte {at}", f"not valid JSON ({error.msg})") from None
    before.pop("", None)
    value = _skip_space(data, colon + 1)
    if data[value : value + 1] != b"[":
        raise FormatError(TITLE, "traceEvents", "expected a list of events")
    return before, value + 1


def _keys_after_events(data: bytes, events: _EventArray) -> dict:
    """The top-level keys after the `traceEvents` array (none when the file stops inside it)."""
    if not events.closed:
        return {}
    rest = _skip_space(data, events.end)
    if data[rest : rest + 1] != b",":
        tail = data[rest:].rstrip(_SPACE)
        if tail in (b"}", b""):
            return {}
        raise FormatError(
            TITLE, f"byte {rest}", f"unexpected {shorten(tail[:20])} after 'traceEvents'"
        )
    after = _keys_with_sample_columns(data, rest + 1)
    if after is not None:
        return after
    tail = data[rest:].rstrip(_SPACE)
    try:
        after = orjson.loads(b"{" + tail[1:])
    except orjson.JSONDecodeError as error:
        at = rest + _byte_offset(b"{" + tail[1:], error.pos)
        raise FormatError(TITLE, f"byte {at}", f"not valid JSON ({error.msg})") from None
    return after


def _skip_space(data: bytes, pos: int) -> int:
    size = len(data)
    while pos < size and data[pos] in _SPACE:
        pos += 1
    return pos


def _byte_offset(document: bytes, char_index: int) -> int:
    """orjson reports character positions; convert one to a byte offset of `document`."""
    return len(document.decode("utf-8", "replace")[:char_index].encode("utf-8", "replace"))


# per-chunk extraction


def _take_chunk(trace: _TraceContents, events: list, first_index: int) -> None:
    get = dict.get
    try:
        phases = list(map(get, events, repeat("ph"), repeat(_MISSING)))
    except TypeError:
        bad = next(i for i, event in enumerate(events) if not isinstance(event, dict))
        raise FormatError(
            TITLE,
            trace.path(first_index + bad),
            f"expected an event object, got {_kind(events[bad])}",
        ) from None
    if trace.first_without_phase is None and _MISSING in phases:
        trace.first_without_phase = first_index + phases.index(_MISSING)
    try:
        codes = np.fromiter(map(_PHASE_CODES.get, phases, repeat(_OTHER)), np.int8, len(phases))
    except TypeError:  # a phase that is an object or a list: not one speedscope reads
        codes = np.fromiter(
            (_PHASE_CODES.get(p, _OTHER) if isinstance(p, str) else _OTHER for p in phases),
            np.int8,
            len(phases),
        )
    is_duration = codes <= _COMPLETE
    others = np.flatnonzero(~is_duration)
    if len(others):
        for index in others.tolist():
            name = events[index].get("name")
            if isinstance(name, str) and name in _NAMED_EVENTS:
                _remember_named_event(trace, events[index], first_index + index)
        selected = np.flatnonzero(is_duration)
        if len(selected) == 0:
            return
        events = [events[i] for i in selected.tolist()]
        codes = codes[selected]
        positions = selected + first_index
    else:
        positions = np.arange(first_index, first_index + len(events))
    _take_duration_events(trace, events, codes, positions)


def _remember_named_event(trace: _TraceContents, event: dict, position: int) -> None:
    ts = event.get("ts", 0)
    trace.named_events.append(
        _TimedEvent(float(ts) if _is_number(ts) else 0.0, position, event, trace.path(position))
    )


def _take_duration_events(
    trace: _TraceContents, events: list, codes: np.ndarray, positions: np.ndarray
) -> None:
    """Append the columns of B/E/X events: thread, phase, time, duration and (name, args) pair."""
    get = dict.get
    count = len(events)
    times = _timestamps(trace, list(map(get, events, repeat("ts"), repeat(_MISSING))), positions)
    complete = np.flatnonzero(codes == _COMPLETE)
    if len(complete):
        trace.duration_column.frombytes(
            _durations(trace, [events[i] for i in complete.tolist()], positions[complete]).tobytes()
        )
    threads = _thread_indices(
        trace,
        list(map(get, events, repeat("pid"), repeat(_MISSING))),
        list(map(get, events, repeat("tid"), repeat(_MISSING))),
        positions,
    )
    # A frame is keyed by name and args. Falsy args only need their type (JavaScript prints
    # {} and [] but not null, 0 or ""), found in a table; other args by their JSON.
    name_index = _name_indices(trace, list(map(get, events, repeat("name"), repeat(_MISSING))))
    args = list(map(get, events, repeat("args")))
    classes = np.fromiter(map(_FALSY_ARGS_CLASS.get, map(type, args), repeat(0)), np.int64, count)
    simple_codes = np.array(name_index, np.int64) * _FALSY_CLASSES + classes
    pair_index = trace.simple_pairs[simple_codes]
    truthy = list(map(bool, args))
    if True in truthy:
        rich_pairs = trace.rich_pairs
        for index, dumped in zip(
            compress(range(count), truthy), map(orjson.dumps, compress(args, truthy)), strict=True
        ):
            pair = rich_pairs.get((name_index[index], dumped))
            pair_index[index] = (
                _intern_pair(trace, name_index[index], dumped) if pair is None else pair
            )
    unknown = np.flatnonzero(pair_index < 0)
    if len(unknown):
        for code in np.unique(simple_codes[unknown]).tolist():
            _intern_pair(trace, code // _FALSY_CLASSES, code % _FALSY_CLASSES)
        pair_index[unknown] = trace.simple_pairs[simple_codes[unknown]]
    if trace.named_names:
        for index in np.flatnonzero(np.isin(simple_codes // _FALSY_CLASSES, trace.named_names)):
            _remember_named_event(trace, events[index], int(positions[index]))
    trace.thread_column.frombytes(threads.tobytes())
    trace.phase_column.frombytes(codes.tobytes())
    trace.ts_column.frombytes(times.tobytes())
    trace.pair_column.frombytes(pair_index.tobytes())


def _thread_indices(
    trace: _TraceContents, pids: list, tids: list, positions: np.ndarray
) -> np.ndarray:
    """The interned (pid, tid) of every event."""
    if pids.count(pids[0]) == len(pids) and tids.count(tids[0]) == len(tids):
        try:
            return np.full(len(pids), _intern_thread(trace, (pids[0], tids[0])), np.int32)
        except TypeError:
            pass
    else:
        pid_array = _integer_column(pids)
        tid_array = _integer_column(tids)
        if (
            pid_array is not None
            and tid_array is not None
            and tid_array.dtype.kind == "i"
            and min(pid_array.min(), tid_array.min()) >= -(2**31)
            and max(pid_array.max(), tid_array.max()) < 2**31
        ):
            combined = pid_array * 2**32 + (tid_array + 2**31)
            distinct, inverse = np.unique(combined, return_inverse=True)
            interned = np.array(
                [
                    _intern_thread(trace, (int(code) >> 32, (int(code) & 0xFFFFFFFF) - 2**31))
                    for code in distinct.tolist()
                ],
                np.int32,
            )
            return interned[inverse]
    threads = list(zip(pids, tids, strict=True))
    try:
        indices = list(map(trace.thread_ids.get, threads))
    except TypeError:
        bad = next(i for i, pair in enumerate(threads) if not all(map(_is_hashable, pair)))
        field = "pid" if not _is_hashable(threads[bad][0]) else "tid"
        raise FormatError(
            TITLE, f"{trace.path(int(positions[bad]))}.{field}", "expected a number or string"
        ) from None
    if None in indices:
        for i, index in enumerate(indices):
            if index is None:
                indices[i] = _intern_thread(trace, threads[i])
    return np.array(indices, np.int32)


def _timestamps(trace: _TraceContents, values: list, positions: np.ndarray) -> np.ndarray:
    """`ts` values: JSON numbers (or numeric strings, which JavaScript coerces) as float64."""
    try:
        array = np.array(values, np.float64)
    except (TypeError, ValueError):
        array = None
    if array is not None and (np.abs(array) <= _MAX_TIME).all():
        return array
    numbers = [_as_number(value) for value in values]
    for i, number in enumerate(numbers):
        if number is None:
            problem = (
                "event has no 'ts' field"
                if values[i] is _MISSING
                else f"'ts' should be a number, got {_kind(values[i])}"
            )
            raise FormatError(TITLE, trace.path(int(positions[i])), problem)
        if abs(number) > _MAX_TIME:
            raise FormatError(
                TITLE, f"{trace.path(int(positions[i]))}.ts", _out_of_range("time", number)
            )
    return np.array(numbers, np.float64)


def _durations(trace: _TraceContents, events: list, positions: np.ndarray) -> np.ndarray:
    """`dur`, else `tdur`, else 0 for complete (X) events."""
    values = []
    for event, position in zip(events, positions.tolist(), strict=True):
        value = event.get("dur")
        field = "dur"
        if value is None:
            value = event.get("tdur")
            field = "tdur"
        if value is None:
            value = 0
        if not _is_number(value) or not math.isfinite(value):
            raise FormatError(
                TITLE, f"{trace.path(position)}.{field}", f"expected a number, got {_kind(value)}"
            )
        if abs(value) > _MAX_TIME:
            raise FormatError(
                TITLE, f"{trace.path(position)}.{field}", _out_of_range("duration", value)
            )
        values.append(value)
    return np.array(values, np.float64)


def _out_of_range(what: str, value: float) -> str:
    return f"{what} {value:g} is out of range (more than {_MAX_TIME:g} microseconds from zero)"


def _integer_column(values: list) -> np.ndarray | None:
    """`values` as an int64 array when they are all JSON integers, else None."""
    try:
        array = np.array(values)
    except (TypeError, ValueError):
        return None
    return array if array.dtype.kind == "i" and array.ndim == 1 else None


def _intern_thread(trace: _TraceContents, thread: tuple[object, object]) -> int:
    index = trace.thread_ids.get(thread)
    if index is None:
        index = trace.thread_ids[thread] = len(trace.threads)
        trace.threads.append(thread)
    return index


def _name_indices(trace: _TraceContents, names: list) -> list[int]:
    """The interned index of every event name."""
    try:
        indices = list(map(trace.name_ids.get, names))
    except TypeError:  # an object or a list as a name
        names = [_hashable(name) for name in names]
        indices = list(map(trace.name_ids.get, names))
    if None in indices:
        for position, index in enumerate(indices):
            if index is None:
                indices[position] = _intern_name(trace, names[position])
    return indices


def _intern_name(trace: _TraceContents, name: object) -> int:
    index = trace.name_ids.get(name)
    if index is not None:
        return index
    index = trace.name_ids[name] = len(trace.names)
    trace.names.append(name)
    token = _name_token(name)
    trace.name_tokens.append(trace.name_token_ids.setdefault(token, len(trace.name_token_ids)))
    needed = len(trace.names) * _FALSY_CLASSES
    if needed > len(trace.simple_pairs):
        grown = np.full(max(needed, 2 * len(trace.simple_pairs)), -1, np.int32)
        grown[: len(trace.simple_pairs)] = trace.simple_pairs
        trace.simple_pairs = grown
    if isinstance(name, str) and name in _NAMED_EVENTS:
        trace.named_names.append(index)
    return index


def _intern_pair(trace: _TraceContents, name_index: int, args: int | bytes) -> int:
    """A new (name, args) combination: its frame key and name token.

    `args` is the class of falsy args (`_FALSY_ARGS_CLASS`) or the JSON of other args.
    """
    raw_name = trace.names[name_index]
    key = _display_name(raw_name)
    parsed_args: object = None
    if isinstance(args, bytes):
        parsed_args = orjson.loads(args)
        key += " " + (
            _js_json(parsed_args) if _REWRITE_FOR_JAVASCRIPT.search(args) else args.decode()
        )
    else:
        key += _FALSY_ARGS_TEXT[args]
    key_id = trace.key_ids.get(key)
    if key_id is None:
        key_id = trace.key_ids[key] = len(trace.key_frames)
        if trace.hermes and isinstance(parsed_args, dict):
            trace.key_frames.append(
                (
                    _display_name(raw_name),
                    _optional_text(parsed_args.get("url")),
                    _optional_int(parsed_args.get("line")),
                    _optional_int(parsed_args.get("column")),
                )
            )
        else:
            trace.key_frames.append((key, None, None, None))
    index = len(trace.pair_key)
    trace.pair_key.append(key_id)
    trace.pair_name.append(trace.name_tokens[name_index])
    if isinstance(args, bytes):  # orjson's output keeps spare capacity; store a tight copy
        trace.rich_pairs[(name_index, bytes(memoryview(args)))] = index
    else:
        trace.simple_pairs[name_index * _FALSY_CLASSES + args] = index
    return index


# B/E/X events: one evented profile per thread


def _duration_event_group(trace: _TraceContents, file_name: str) -> ProfileGroup:
    if not trace.ts_column:
        raise FormatError(
            TITLE, trace.root or "top level", "no duration events (B, E or X) and no CPU profile"
        )
    thread = np.frombuffer(trace.thread_column, np.int32)
    phase = np.frombuffer(trace.phase_column, np.int8)
    times = np.frombuffer(trace.ts_column, np.float64)
    durations = None
    if trace.duration_column:
        durations = np.zeros(len(times))
        durations[phase == _COMPLETE] = np.frombuffer(trace.duration_column, np.float64)
    pair = np.frombuffer(trace.pair_column, np.int32)
    key_of_pair = np.array(trace.pair_key, np.int32)
    name_of_pair = np.array(trace.pair_name, np.int32)
    # Threads are told apart by Number(pid) and Number(tid), so 1 and "1" are one thread.
    partition_of_key: dict[tuple[str, str], int] = {}
    partition_of_thread = np.array(
        [
            partition_of_key.setdefault(
                (_number_text(pid), _number_text(tid)), len(partition_of_key)
            )
            for pid, tid in trace.threads
        ],
        np.int32,
    )
    process_names, thread_names = _metadata_names(trace)
    profiles = []
    for events in _partition_members(partition_of_thread[thread], len(partition_of_key)):
        pid, tid = trace.threads[thread[events[0]]]
        title = _thread_title(pid, tid, process_names, thread_names)
        builder = ProfileBuilder(title, Unit.MICROSECONDS, sampled=False)
        thread_pairs = pair[events]
        _replay_thread(
            builder,
            trace.key_frames,
            phase[events],
            times[events],
            None if durations is None else durations[events],
            key_of_pair[thread_pairs],
            name_of_pair[thread_pairs],
        )
        profiles.append((_sort_key(pid, tid), builder.build()))
    profiles.sort(key=lambda item: item[0])
    return ProfileGroup(file_name, [profile for _, profile in profiles])


def _partition_members(partition: np.ndarray, count: int) -> Iterator[np.ndarray]:
    """The indices of each partition's members, in order, partition by partition."""
    if count <= 16:
        for index in range(count):
            yield np.flatnonzero(partition == index)
        return
    order = np.argsort(partition, kind="stable")
    bounds = np.searchsorted(partition[order], np.arange(count + 1))
    for index in range(count):
        yield order[bounds[index] : bounds[index + 1]]


def _replay_thread(
    builder: ProfileBuilder,
    key_frames: list[tuple[str, str | None, int | None, int | None]],
    phase: np.ndarray,
    times: np.ndarray,
    durations: np.ndarray | None,
    key: np.ndarray,
    name: np.ndarray,
) -> None:
    """speedscope's reading of one thread's B/E/X events, as samples of `builder`.

    `durations` holds the `dur` of X events (None when the trace has none).
    """
    first = min(float(times.min()), _MAX_SAFE_INTEGER)
    times = times - first
    begins = np.flatnonzero(phase == _BEGIN)
    ends = np.flatnonzero(phase == _END)
    complete = np.flatnonzero(phase == _COMPLETE)
    complete_durations = np.zeros(0) if durations is None else durations[complete]
    # Complete events in time order, longer first at equal times, then file order.
    by_start = np.lexsort((np.arange(len(complete)), -complete_durations, times[complete]))
    complete = complete[by_start]
    complete_durations = complete_durations[by_start]
    begin_events = np.concatenate((begins, complete))
    begin_times = times[begin_events]
    begin_order = np.argsort(begin_times, kind="stable")
    begin_events = begin_events[begin_order]
    end_events = np.concatenate((ends, complete))
    end_times = np.concatenate((times[ends], times[complete] + complete_durations))
    end_order = np.argsort(end_times, kind="stable")
    end_events = end_events[end_order]

    begin_keys = key[begin_events]
    used_keys, first_use, used_key_of_begin = np.unique(
        begin_keys, return_index=True, return_inverse=True
    )
    frame_of_used_key = np.zeros(len(used_keys), np.int64)
    for used in np.argsort(first_use).tolist():  # frames numbered in order of first use
        frame_of_used_key[used] = builder.frame(*key_frames[int(used_keys[used])])
    begin_queue = _Queue(
        begin_times[begin_order],
        begin_keys,
        name[begin_events],
        frame_of_used_key[used_key_of_begin],
    )
    end_queue = _Queue(end_times[end_order], key[end_events], name[end_events], None)
    changes = _replay_well_nested(builder, begin_queue, end_queue)
    if changes is None:
        changes = _match_begins_and_ends(builder, begin_queue, end_queue)
    call_times, call_stacks = changes
    weights = np.diff(call_times)
    keep = weights > 0
    builder.add_samples(call_stacks[:-1][keep], weights[keep], call_times[:-1][keep])


class _Queue(NamedTuple):
    """Begin or end events in the order speedscope takes them."""

    times: np.ndarray
    keys: np.ndarray  # frame key ids
    names: np.ndarray  # name token ids
    frames: np.ndarray | None  # builder frame of each begin

    def tied(self) -> np.ndarray:
        """Whether the next event in the queue has the same time."""
        tied = np.zeros(len(self.times), bool)
        tied[:-1] = self.times[1:] == self.times[:-1]
        return tied


_MAX_FAST_DEPTH = 4096
_MAX_ORDERED_TIES = 100_000


class _Nesting(NamedTuple):
    """How well-nested begins and ends pair up, in merged (time) order."""

    order: np.ndarray  # merged position -> index into begins, then ends
    begin_position: np.ndarray  # merged position of each begin, by (depth, position)
    begin_level: np.ndarray  # its depth (1 = outermost), ascending
    match_k: np.ndarray  # for each end (in merged order), its begin's index in the two above


def _replay_well_nested(
    builder: ProfileBuilder, begins: _Queue, ends: _Queue
) -> tuple[np.ndarray, np.ndarray] | None:
    """`_match_begins_and_ends` with array operations, for threads that need none of its repairs.

    Applies when every end closes the innermost open frame by name, no end
    arrives with nothing open, and ends that share a time also match the
    innermost frame by key (so no end is reordered). Returns None otherwise.
    """
    nesting = _nesting(begins, ends)
    if nesting is None:
        return None
    order, begin_position, begin_level, match_k = nesting
    count = len(order)
    # The caller of each begin: the last begin one level up before it.
    ordered = begin_level.astype(np.int64) * (count + 1) + begin_position
    caller = np.searchsorted(ordered, ordered - (count + 1)) - 1
    caller[begin_level == 1] = -1
    del ordered
    frames = begins.frames[order[begin_position]]
    stack = np.full(len(begin_position), -1, np.int64)
    max_level = int(begin_level[-1]) if len(begin_level) else 0
    level_start = np.searchsorted(begin_level, np.arange(1, max_level + 2))
    width = builder.frame_count + 1
    for current in range(max_level):
        lo, hi = level_start[current], level_start[current + 1]
        parents = stack[caller[lo:hi]] if current else np.full(hi - lo, -1, np.int64)
        level_frames = frames[lo:hi]
        _, first, inverse = np.unique(
            parents * width + level_frames, return_index=True, return_inverse=True
        )
        made = [
            builder.stack(parent, frame)
            for parent, frame in zip(
                parents[first].tolist(), level_frames[first].tolist(), strict=True
            )
        ]
        stack[lo:hi] = np.array(made, np.int64)[inverse]
    # After a begin its own stack is open, after an end its caller's.
    after = np.empty(count, np.int32)
    after[begin_position] = stack
    end_position = np.flatnonzero(order >= len(begins.times))
    closed_caller = caller[match_k]
    after[end_position] = np.where(closed_caller >= 0, stack[closed_caller], -1)
    call_times = np.concatenate(([0.0], np.concatenate((begins.times, ends.times))[order]))
    call_stacks = np.concatenate((np.array([-1], np.int32), after))
    return call_times, call_stacks


def _nesting(begins: _Queue, ends: _Queue) -> _Nesting | None:
    """Merge the queues by time and pair each end with the begin it closes, or None when
    speedscope would repair something (see `_replay_well_nested`)."""
    begin_count = len(begins.times)
    count = begin_count + len(ends.times)
    is_begin = np.zeros(count, bool)
    is_begin[:begin_count] = True
    rank = _tie_ranks(begins, ends, is_begin)
    if rank is None:
        return None
    order = np.lexsort((rank, np.concatenate((begins.times, ends.times)))).astype(np.int32)
    del rank
    begin_at = is_begin[order]
    depth = np.cumsum(np.where(begin_at, np.int32(1), np.int32(-1)), dtype=np.int32)
    if depth.min() < 0:
        return None
    level = depth + ~begin_at  # a begin's depth after it, an end's depth before it
    del depth
    if level.max() > _MAX_FAST_DEPTH:
        return None
    # Within one level begins and ends alternate; each end closes the begin before it.
    by_level = np.argsort(level, kind="stable").astype(np.int32)
    sorted_begin = begin_at[by_level]
    sorted_level = level[by_level]
    del level, begin_at
    end_k = np.flatnonzero(~sorted_begin)
    if len(end_k) and (
        end_k[0] == 0
        or not sorted_begin[end_k - 1].all()
        or (sorted_level[end_k - 1] != sorted_level[end_k]).any()
    ):
        return None
    end_index = order[by_level[end_k]] - begin_count
    match_index = order[by_level[end_k - 1]]
    if (ends.names[end_index] != begins.names[match_index]).any():
        return None
    tied = ends.tied()[end_index]
    if (ends.keys[end_index][tied] != begins.keys[match_index][tied]).any():
        return None
    del end_index, match_index, tied
    begin_k = np.flatnonzero(sorted_begin)
    # Ends in merged order, and for each the index (among begins) of the begin it closes.
    end_order = np.argsort(by_level[end_k], kind="stable")
    match_k = (np.searchsorted(begin_k, end_k - 1))[end_order]
    return _Nesting(order, by_level[begin_k], sorted_level[begin_k], match_k)


def _tie_ranks(begins: _Queue, ends: _Queue, is_begin: np.ndarray) -> np.ndarray | None:
    """Order within equal times: ends before begins, except where a begin has the key of
    the next end (then the two queues are merged one event at a time). None when that
    happens too often to do here."""
    rank = is_begin.astype(np.int32)
    tie_times = np.intersect1d(begins.times, ends.times)
    if len(tie_times) == 0:
        return rank
    width = int(max(begins.keys.max(), ends.keys.max())) + 1
    codes = []
    for queue in (begins, ends):
        at = np.minimum(np.searchsorted(tie_times, queue.times), len(tie_times) - 1)
        tied = tie_times[at] == queue.times
        codes.append(at[tied] * width + queue.keys[tied])
    shared = np.intersect1d(codes[0], codes[1])
    if len(shared) == 0:
        return rank
    special = np.unique(shared // width)
    if len(special) > _MAX_ORDERED_TIES:
        return None
    begin_count = len(begins.times)
    for time in tie_times[special].tolist():
        b, b_end = _equal_range(begins.times, time)
        e, e_end = _equal_range(ends.times, time)
        position = 0
        while b < b_end or e < e_end:
            if e >= e_end or (b < b_end and begins.keys[b] == ends.keys[e]):
                rank[b] = position
                b += 1
            else:
                rank[begin_count + e] = position
                e += 1
            position += 1
    return rank


def _equal_range(sorted_values: np.ndarray, value: float) -> tuple[int, int]:
    return (
        int(np.searchsorted(sorted_values, value, "left")),
        int(np.searchsorted(sorted_values, value, "right")),
    )


def _match_begins_and_ends(
    builder: ProfileBuilder, begins: _Queue, ends: _Queue
) -> tuple[np.ndarray, np.ndarray]:
    """Merge the begin and end queues; returns the time and open stack after every change.

    The first entry is (0, no stack). At equal times a begin goes first when
    it has the same key as the next end (a zero-length event), else the end.
    An end that does not close the innermost frame by key is first swapped
    with a later end of the same time that does (by key, else by name); an
    end whose name still differs from the innermost frame's is dropped.
    """
    pool = list(
        range(
            int(
                max(
                    begins.keys.max(initial=0),
                    ends.keys.max(initial=0),
                    begins.names.max(initial=0),
                    ends.names.max(initial=0),
                    begins.frames.max(initial=0),
                )
            )
            + 1
        )
    )
    begin_times = begins.times.tolist()
    begin_keys = _pooled(begins.keys, pool)
    begin_names = _pooled(begins.names, pool)
    begin_frames = _pooled(begins.frames, pool)
    end_times = ends.times.tolist()
    end_keys = _pooled(ends.keys, pool)
    end_names = _pooled(ends.names, pool)
    end_tied = ends.tied().tolist()
    new_stack = builder.stack
    width = builder.frame_count + 1
    stack_of_code: dict[int, int] = {}
    parent_of = array("i")  # the builder numbers the stacks 0, 1, ... as they are made
    open_begins: list[int] = []
    current = -1
    call_times = array("d", [0.0])
    call_stacks = array("i", [-1])
    begin_count = len(begin_times)
    end_count = len(end_times)
    b = 0
    for e in range(end_count):
        end_time = end_times[e]
        end_key = end_keys[e]
        while b < begin_count and (
            begin_times[b] < end_time or (begin_times[b] == end_time and begin_keys[b] == end_key)
        ):
            frame = begin_frames[b]
            code = current * width + frame
            stack = stack_of_code.get(code)
            if stack is None:
                stack = stack_of_code[code] = new_stack(current, frame)
                parent_of.append(current)
            current = stack
            open_begins.append(b)
            call_times.append(begin_times[b])
            call_stacks.append(stack)
            b += 1
        if not open_begins:
            continue
        top = open_begins[-1]
        if end_key != begin_keys[top] and end_tied[e]:
            _swap_in_matching_end(
                end_times, end_keys, end_names, e, begin_keys[top], begin_names[top]
            )
        if end_names[e] == begin_names[top]:
            open_begins.pop()
            current = parent_of[current]
            call_times.append(end_time)
            call_stacks.append(current)
    while b < begin_count:
        frame = begin_frames[b]
        code = current * width + frame
        stack = stack_of_code.get(code)
        if stack is None:
            stack = stack_of_code[code] = new_stack(current, frame)
        current = stack
        call_times.append(begin_times[b])
        call_stacks.append(stack)
        b += 1
    return np.frombuffer(call_times, np.float64), np.frombuffer(call_stacks, np.int32)


def _pooled(values: np.ndarray, pool: list[int]) -> list[int]:
    """`values.tolist()` with every number taken from `pool`, so equal numbers share one object."""
    return list(map(pool.__getitem__, memoryview(values.astype(np.int64, copy=False))))


def _swap_in_matching_end(
    end_times: list[float],
    end_keys: list[int],
    end_names: list[int],
    front: int,
    top_key: int,
    top_name: int,
) -> None:
    """Among the ends at the front's time, bring the first that matches the innermost frame
    by key (else by name) to the front."""
    time = end_times[front]
    count = len(end_times)
    match = -1
    j = front + 1
    while j < count and end_times[j] == time:
        if end_keys[j] == top_key:
            match = j
            break
        j += 1
    if match < 0:
        j = front + 1
        while j < count and end_times[j] == time:
            if end_names[j] == top_name:
                match = j
                break
            j += 1
    if match >= 0:
        end_keys[front], end_keys[match] = end_keys[match], end_keys[front]
        end_names[front], end_names[match] = end_names[match], end_names[front]


def _metadata_names(trace: _TraceContents) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """Process names by pid and thread names by (pid, tid) from `M` metadata events."""
    process_names: dict[str, str] = {}
    thread_names: dict[tuple[str, str], str] = {}
    for timed in trace.named_events:
        event = timed.event
        if event.get("ph") != "M":
            continue
        args = event.get("args")
        label = args.get("name") if isinstance(args, dict) else None
        if not _js_truthy(label):
            continue
        pid = _js_text(event.get("pid", _MISSING))
        if event.get("name") == "process_name":
            process_names[pid] = _js_text(label)
        elif event.get("name") == "thread_name":
            thread_names[(pid, _js_text(event.get("tid", _MISSING)))] = _js_text(label)
    return process_names, thread_names


def _thread_title(
    pid: object,
    tid: object,
    process_names: dict[str, str],
    thread_names: dict[tuple[str, str], str],
) -> str:
    pid_text = _js_text(pid)
    tid_text = _js_text(tid)
    process = process_names.get(pid_text)
    thread = thread_names.get((pid_text, tid_text))
    if process is not None and thread is not None:
        return f"{process} (pid {pid_text}), {thread} (tid {tid_text})"
    if process is not None:
        return f"{process} (pid {pid_text}, tid {tid_text})"
    if thread is not None:
        return f"{thread} (pid {pid_text}, tid {tid_text})"
    return f"pid {pid_text}, tid {tid_text}"


def _sort_key(pid: object, tid: object) -> str:
    """speedscope orders threads by zero-padded "pid:tid" text."""
    return f"{_number_text(pid).rjust(10, '0')}:{_number_text(tid).rjust(10, '0')}"


# Profile / ProfileChunk events: V8 CPU profiles in a DevTools recording


def _cpu_profile_group(trace: _TraceContents, file_name: str) -> ProfileGroup:
    assemblers: dict[object, tuple[CpuProfileAssembler, str]] = {}
    thread_of_profile: dict[object, str] = {}
    thread_names: dict[str, object] = {}
    for timed in sorted(trace.named_events, key=lambda t: (t.ts, t.position)):
        event, path = timed.event, timed.path
        kind = event.get("name")
        thread = f"{_js_text(event.get('pid', _MISSING))}:{_js_text(event.get('tid', _MISSING))}"
        profile_id = _profile_id(event, thread, path) if kind in _PROFILE_EVENTS else None
        if kind == "thread_name":
            args = event.get("args")
            if isinstance(args, dict):
                thread_names[thread] = args.get("name")
        elif kind == "CpuProfile":
            profile = _dig(event, ("args", "data", "cpuProfile"), path)
            assembler = CpuProfileAssembler(TITLE)
            where = f"{path}.args.data.cpuProfile"
            assembler.add_nodes(_field(profile, "nodes", where), f"{where}.nodes")
            assembler.add_samples(_field(profile, "samples", where), f"{where}.samples")
            assembler.add_time_deltas(_field(profile, "timeDeltas", where), f"{where}.timeDeltas")
            assemblers[profile_id] = (assembler, path)
            thread_of_profile[profile_id] = thread
        elif kind == "Profile":
            args = event.get("args")
            data = args.get("data") if isinstance(args, dict) else None
            assembler = CpuProfileAssembler(TITLE)
            if isinstance(data, dict):
                _add_chunk(assembler, data, f"{path}.args.data")
            assemblers[profile_id] = (assembler, path)
            if _js_truthy(event.get("id")):
                thread_of_profile[profile_id] = thread
        elif kind == "ProfileChunk":
            entry = assemblers.get(profile_id)
            args = event.get("args")
            data = args.get("data") if isinstance(args, dict) else None
            if entry is not None and isinstance(data, dict):
                _add_chunk(entry[0], data, f"{path}.args.data")
    if not assemblers:
        raise FormatError(TITLE, trace.root or "top level", "no CPU profile in the recording")
    profiles = []
    active = 0
    for profile_id, (assembler, path) in assemblers.items():
        thread_name = thread_names.get(thread_of_profile.get(profile_id, ""))
        title = file_name
        if _js_truthy(thread_name) and len(assemblers) > 1:
            title = f"{file_name} - {_js_text(thread_name)}"
            if thread_name == "CrRendererMain":
                active = len(profiles)
        profiles.append(assembler.build(title, f"timeDeltas of the profile started at {path}"))
    return ProfileGroup(file_name, profiles, active_index=active)


def _profile_id(event: dict, thread: str, path: str) -> object:
    identifier = event.get("id")
    if not _js_truthy(identifier):
        return thread
    if isinstance(identifier, str | int | float):
        return identifier
    raise FormatError(TITLE, f"{path}.id", f"expected a string or number, got {_kind(identifier)}")


def _add_chunk(assembler: CpuProfileAssembler, data: dict, where: str) -> None:
    """Append what a `Profile` or `ProfileChunk` payload carries."""
    profile = data.get("cpuProfile")
    if _js_truthy(profile):
        if not isinstance(profile, dict):
            raise FormatError(
                TITLE, f"{where}.cpuProfile", f"expected an object, got {_kind(profile)}"
            )
        if _js_truthy(profile.get("nodes")):
            assembler.add_nodes(profile["nodes"], f"{where}.cpuProfile.nodes")
        if _js_truthy(profile.get("samples")):
            assembler.add_samples(profile["samples"], f"{where}.cpuProfile.samples")
    for key in ("nodes", "samples"):  # a Profile event's payload may carry them directly
        if _js_truthy(data.get(key)):
            adder = assembler.add_nodes if key == "nodes" else assembler.add_samples
            adder(data[key], f"{where}.{key}")
    if _js_truthy(data.get("timeDeltas")):
        assembler.add_time_deltas(data["timeDeltas"], f"{where}.timeDeltas")


def _dig(event: dict, keys: tuple[str, ...], path: str) -> dict:
    """The object at ``event[keys[0]][keys[1]]...``, or a FormatError naming its path."""
    value = event
    for key in keys:
        inner = value.get(key)
        if not isinstance(inner, dict):
            raise FormatError(TITLE, f"{path}.{'.'.join(keys)}", "expected an object")
        value = inner
    return value


def _field(document: dict, key: str, where: str) -> object:
    if key not in document:
        raise FormatError(TITLE, where, f"no {key!r} key")
    return document[key]


# Hermes samples + stackFrames: one sampled profile per thread


class _Codes(dict):
    """Codes for hashable values in the order of first use: a value not seen gets the next one."""

    def __missing__(self, key: object) -> int:
        code = self[key] = len(self)
        return code


class _SampleColumns:
    """A Hermes `samples` list as columns: per sample its thread, time and stack frame id.

    Threads are the distinct (pid, tid) pairs and frame ids the distinct `sf`
    values, each in the order of its first sample.
    """

    def __init__(self) -> None:
        self.pair_codes = _Codes()
        self.frame_codes = _Codes()
        self.chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, samples: list) -> bool:
        """Add a chunk of the list; False for a sample that needs the plain reading."""
        get = dict.get
        try:
            ts = list(map(get, samples, repeat("ts"), repeat(_MISSING)))
        except TypeError:  # not an object
            return False
        pids = map(get, samples, repeat("pid"), repeat(_MISSING))
        tids = map(get, samples, repeat("tid"), repeat(_MISSING))
        frame_ids = list(map(get, samples, repeat("sf")))
        times = _plain_times(ts)
        if times is None or not set(map(type, frame_ids)) <= _SAMPLE_FRAME_TYPES:
            return False
        count = len(samples)
        try:
            pairs = zip(pids, tids, strict=True)
            threads = np.fromiter(map(self.pair_codes.__getitem__, pairs), np.int32, count)
        except TypeError:  # a list or object as an id
            return False
        frames = np.fromiter(map(self.frame_codes.__getitem__, frame_ids), np.int32, count)
        self.chunks.append((threads, times, frames))
        return True

    def take_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The thread, time and frame-id columns of all samples (the chunks are let go)."""
        chunks, self.chunks = self.chunks, []
        if not chunks:
            return np.zeros(0, np.int32), np.zeros(0, np.float64), np.zeros(0, np.int32)
        return tuple(np.concatenate(column) for column in zip(*chunks, strict=True))


def _plain_times(values: list) -> np.ndarray | None:
    """The times `_as_number` gives for values that are all numbers or all digit strings, else None."""
    kinds = set(map(type, values))
    if kinds == {str}:
        text = "".join(values)
        if not (text.isascii() and text.isdigit()):
            return None
    elif not kinds <= _NUMBER_TYPES:
        return None
    try:
        times = np.fromiter(map(float, values), np.float64, len(values))
    except (ValueError, OverflowError):  # an empty string, an integer past the floats
        return None
    return times if np.all(np.abs(times) <= _MAX_TIME) else None


class _StackFrame(msgspec.Struct, gc=False):
    """A Hermes stack frame as the column reading keeps it: its name and parent, no more."""

    name: object = _MISSING
    parent: object = None

    def get(self, key: str, default: object = None) -> object:
        """``dict.get`` of the frame's JSON object, for "name" and "parent"."""
        value = getattr(self, key)
        return default if value is _MISSING else value


class _KeysAfterSamples(msgspec.Struct, gc=False):
    """What the column reading keeps of the keys after the events, `samples` held by a marker."""

    samples: list[int]
    stackFrames: dict[str, _StackFrame] | msgspec.UnsetType = msgspec.UNSET


def _keys_with_sample_columns(data: bytes, start: int) -> dict | None:
    """`samples` (as `_SampleColumns`) and `stackFrames` from `start` (just after a comma) on.

    The `samples` list is read a chunk at a time and the rest with the
    list's inside replaced by a number found nowhere in the data; that the
    rest reads with `samples` holding that number alone shows the list read
    is the top-level one. The rest is read with msgspec, which keeps of each
    stack frame only its name and parent (orjson's working memory for a big
    object is many times its size). None (for the plain reading) when there
    is no such list or a check fails.
    """
    opener = _SAMPLES_OPENER.search(data, start)
    if opener is None:
        return None
    columns = _SampleColumns()
    samples = _EventArray(data, opener.end())
    try:
        for _, chunk in samples:
            if not chunk or not columns.add(chunk):  # empty: a comma too many
                return None
    except FormatError:
        return None
    if not samples.closed:
        return None
    marker = absent_number(data, start)
    skeleton = b"{%s%d%s" % (data[start : opener.end()], marker, data[samples.end - 1 :])
    keys = decode_typed_json(skeleton, _KeysAfterSamples)
    if keys is None or keys.samples != [marker]:
        return None
    if keys.stackFrames is msgspec.UNSET:
        return {"samples": columns}
    return {"samples": columns, "stackFrames": keys.stackFrames}


def _sample_group(trace: _TraceContents, file_name: str) -> ProfileGroup:
    samples = trace.other_keys["samples"]
    frames = trace.other_keys["stackFrames"]
    if not isinstance(samples, list | _SampleColumns):
        raise FormatError(TITLE, "samples", f"expected a list, got {_kind(samples)}")
    if not isinstance(frames, dict):
        raise FormatError(TITLE, "stackFrames", f"expected an object, got {_kind(frames)}")
    if isinstance(samples, _SampleColumns):
        return _column_sample_group(trace, samples, frames, file_name)
    by_thread: dict[tuple[str, str], list[int]] = {}
    thread_of_ids: dict[tuple[object, object], tuple[str, str]] = {}  # equal ids, equal text
    for index, sample in enumerate(samples):
        if not isinstance(sample, dict):
            raise FormatError(
                TITLE, f"samples[{index}]", f"expected an object, got {_kind(sample)}"
            )
        ids = (sample.get("pid", _MISSING), sample.get("tid", _MISSING))
        try:
            thread = thread_of_ids.get(ids)
        except TypeError:  # a list or object as an id
            thread = None
        if thread is None:
            thread = (_number_text(ids[0]), _number_text(ids[1]))
            with suppress(TypeError):
                thread_of_ids[ids] = thread
        by_thread.setdefault(thread, []).append(index)
    process_names, thread_names = _metadata_names(trace)
    profiles = []
    for indices in by_thread.values():
        first = samples[indices[0]]
        pid, tid = first.get("pid", _MISSING), first.get("tid", _MISSING)
        title = _thread_title(pid, tid, process_names, thread_names)
        profiles.append((_sort_key(pid, tid), _sampled_thread(title, samples, indices, frames)))
    profiles.sort(key=lambda item: item[0])
    return ProfileGroup(file_name, [profile for _, profile in profiles])


def _column_sample_group(
    trace: _TraceContents, samples: _SampleColumns, frames: dict, file_name: str
) -> ProfileGroup:
    """`_sample_group` for samples read into columns."""
    threads, times, frame_codes = samples.take_columns()
    pairs = list(samples.pair_codes)
    frame_ids = list(samples.frame_codes)
    # pairs whose ids read as the same text are one thread, first pair first
    thread_of_text: dict[tuple[str, str], int] = {}
    first_pairs = []
    thread_of_pair = np.empty(len(pairs), np.int32)
    for index, (pid, tid) in enumerate(pairs):
        text = (_number_text(pid), _number_text(tid))
        if text not in thread_of_text:
            thread_of_text[text] = len(first_pairs)
            first_pairs.append((pid, tid))
        thread_of_pair[index] = thread_of_text[text]
    threads = thread_of_pair[threads]
    order = np.argsort(threads, kind="stable")
    bounds = np.searchsorted(threads[order], np.arange(len(first_pairs) + 1))
    process_names, thread_names = _metadata_names(trace)
    profiles = []
    for thread, (pid, tid) in enumerate(first_pairs):
        indices = order[bounds[thread] : bounds[thread + 1]]
        title = _thread_title(pid, tid, process_names, thread_names)
        profile = _column_thread(
            title, indices, times[indices], frame_codes[indices], frame_ids, frames
        )
        profiles.append((_sort_key(pid, tid), profile))
    profiles.sort(key=lambda item: item[0])
    return ProfileGroup(file_name, [profile for _, profile in profiles])


def _column_thread(
    title: str,
    indices: np.ndarray,
    times: np.ndarray,
    frame_codes: np.ndarray,
    frame_ids: list,
    frames: dict,
) -> Profile:
    """`_sampled_thread` for one thread's columns; stacks made in the order of first use."""
    builder = ProfileBuilder(title, Unit.MICROSECONDS, sampled=True)
    weights = np.maximum(np.diff(times, append=times[-1]), 0.0)
    kept = weights > 0
    codes = frame_codes[kept]
    _, first = np.unique(codes, return_index=True)
    stack_of_code = np.full(len(frame_ids), -1, np.int32)
    stack_of_key: dict[str, int] = {}
    sample_indices = indices[kept]
    for at in np.sort(first).tolist():
        code = int(codes[at])
        where = f"samples[{sample_indices[at]}].sf"
        stack_of_code[code] = _sample_stack(builder, frames, frame_ids[code], where, stack_of_key)
    builder.add_samples(stack_of_code[codes], weights[kept])
    return builder.build()


def _sampled_thread(title: str, samples: list, indices: list[int], frames: dict) -> Profile:
    """Each sample lasts until the thread's next sample; the last one gets no time."""
    builder = ProfileBuilder(title, Unit.MICROSECONDS, sampled=True)
    times = []
    for index in indices:
        value = _as_number(samples[index].get("ts", _MISSING))
        if value is None:
            raise FormatError(
                TITLE,
                f"samples[{index}].ts",
                f"expected a number, got {_kind(samples[index].get('ts'))}",
            )
        if abs(value) > _MAX_TIME:
            raise FormatError(TITLE, f"samples[{index}].ts", _out_of_range("time", value))
        times.append(value)
    weights = np.maximum(np.diff(np.array(times, np.float64), append=times[-1]), 0.0)
    stack_of_frame: dict[object, int] = {}
    stack_of_key: dict[str, int] = {}
    stacks = []
    kept = []
    for index, weight in zip(indices, weights.tolist(), strict=True):
        if weight <= 0:
            continue
        frame_id = samples[index].get("sf")
        stack = stack_of_frame.get(frame_id) if isinstance(frame_id, str | int) else None
        if stack is None:
            stack = _sample_stack(builder, frames, frame_id, f"samples[{index}].sf", stack_of_key)
            if isinstance(frame_id, str | int):
                stack_of_frame[frame_id] = stack
        stacks.append(stack)
        kept.append(weight)
    builder.add_samples(np.array(stacks, np.int32), np.array(kept, np.float64))
    return builder.build()


def _sample_stack(
    builder: ProfileBuilder, frames: dict, frame_id: object, where: str, known: dict[str, int]
) -> int:
    """The stack of stack frame `frame_id`, following `parent` links (id 0 or none ends it).

    `known` holds the stack of every frame key met so far, so each frame is walked once.
    """
    chain = []  # (key, frame) from `frame_id` toward the root
    current = frame_id
    stack = -1
    while _js_truthy(current):
        key = _js_text(current)
        if key in known:
            stack = known[key]
            break
        frame = frames.get(key)
        if not isinstance(frame, dict | _StackFrame):
            raise FormatError(TITLE, where, f"no stack frame {key!r} in 'stackFrames'")
        if len(chain) > len(frames):
            raise FormatError(TITLE, "stackFrames", "the parent links of the frames form a cycle")
        chain.append((key, builder.frame(_js_text(frame.get("name", _MISSING)))))
        current = frame.get("parent")
    for key, frame in reversed(chain):
        stack = known[key] = builder.stack(stack, frame)
    return stack


# JavaScript semantics speedscope relies on


def _js_truthy(value: object) -> bool:
    """JavaScript truthiness: null, undefined, false, 0, NaN and "" are false; {} and [] are true."""
    if value is None or value is _MISSING or value is False:
        return False
    if isinstance(value, int | float):
        return value == value and value != 0
    if isinstance(value, str):
        return value != ""
    return True


def _js_text(value: object) -> str:
    """``String(value)`` / template-literal text of a JSON value."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if value is _MISSING:
        return "undefined"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return _js_number(value)
    if isinstance(value, _Opaque):
        return _js_text(value.value)
    if isinstance(value, dict):
        return "[object Object]"
    if isinstance(value, list):
        return _js_array_text(value)
    return str(value)


def _js_array_text(values: list) -> str:
    """``Array.prototype.toString``: elements joined by commas, nested arrays flattened."""
    parts: list[str] = []
    pending: list[object] = [iter(values)]
    first = True
    while pending:
        iterator = pending[-1]
        item = next(iterator, _MISSING)
        if item is _MISSING:
            pending.pop()
            continue
        if isinstance(item, list):
            pending.append(iter(item))
            continue
        if not first:
            parts.append(",")
        first = False
        parts.append("" if item is None else _js_text(item))
    return "".join(parts)


def _display_name(name: object) -> str:
    """``${event.name || '(unnamed)'}``."""
    return _js_text(name) if _js_truthy(name) else "(unnamed)"


def _name_token(name: object) -> object:
    """A hashable stand-in for a name, equal to another exactly when JavaScript's ``===`` is."""
    if isinstance(name, bool):
        return ("boolean", name)
    if isinstance(name, int | float):
        return ("number", float(name))
    return name


def _number_text(value: object) -> str:
    """``'' + Number(value)``."""
    if value is None or value is False:
        return "0"
    if value is True:
        return "1"
    number = _as_number(value)
    return "NaN" if number is None else _js_number(number)


def _as_number(value: object) -> float | None:
    """A JSON number or numeric string as a finite float, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        if "_" in text:  # Python reads 1_000, JavaScript does not
            return None
        try:
            number = float(text)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _js_number(value: float) -> str:
    """``Number.prototype.toString()``: shortest round-trip digits, exponent only past 1e21 / 1e-7."""
    if isinstance(value, int):
        if -(2**53) <= value <= 2**53:
            return str(value)
        try:
            value = float(value)
        except OverflowError:
            return "Infinity" if value > 0 else "-Infinity"
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    digits = all_digits.lstrip("0")
    point = len(whole) + int(exponent or 0) - (len(all_digits) - len(digits))
    digits = digits.rstrip("0")
    count = len(digits)
    if count <= point <= 21:
        text = digits + "0" * (point - count)
    elif 0 < point <= 21:
        text = f"{digits[:point]}.{digits[point:]}"
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        power = point - 1
        sign_of_power = "+" if power >= 0 else "-"
        head = digits if count == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{head}e{sign_of_power}{abs(power)}"
    return sign + text


def _js_json(value: object) -> str:
    """``JSON.stringify(value)`` exactly, without recursion (objects list integer keys first)."""
    parts: list[str] = []
    pending: list[object] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, tuple):  # literal text queued between values
            parts.append(item[0])
        elif isinstance(item, dict):
            keys = _js_key_order(item)
            pending.append(("}",))
            for position in range(len(keys) - 1, -1, -1):
                pending.append(item[keys[position]])
                separator = "," if position else ""
                pending.append((separator + orjson.dumps(keys[position]).decode() + ":",))
            parts.append("{")
        elif isinstance(item, list):
            pending.append(("]",))
            for position in range(len(item) - 1, -1, -1):
                pending.append(item[position])
                if position:
                    pending.append((",",))
            parts.append("[")
        elif isinstance(item, str):
            parts.append(orjson.dumps(item).decode())
        elif item is None or item is True or item is False:
            parts.append(_js_text(item))
        else:  # a number; JSON has no infinities or NaN
            parts.append(_js_number(item))
    return "".join(parts)


def _js_key_order(document: dict) -> list[str]:
    """JavaScript's own-property order: array-index keys ascending, then insertion order."""
    indices = [key for key in document if _is_array_index(key)]
    if not indices:
        return list(document)
    indices.sort(key=int)
    return indices + [key for key in document if not _is_array_index(key)]


def _is_array_index(key: str) -> bool:
    return (
        key.isdigit() and key.isascii() and (key == "0" or key[0] != "0") and int(key) < 2**32 - 1
    )


# small helpers


def _hashable(value: object) -> object:
    """Objects and lists (unhashable) wrapped so that they compare by identity."""
    return _Opaque(value) if isinstance(value, dict | list) else value


def _is_hashable(value: object) -> bool:
    return not isinstance(value, dict | list)


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _optional_int(value: object) -> int | None:
    """A line or column number, None unless it is a whole number in the 32-bit range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not -(2**31) <= value < 2**31 or not float(value).is_integer():
        return None
    return int(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value: object) -> str:
    """How a JSON value (or a missing one) reads in an error message."""
    return "nothing" if value is _MISSING else describe_json_value(value)

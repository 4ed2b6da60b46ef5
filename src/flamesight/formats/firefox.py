"""Firefox profiler profiles: the Gecko profile JSON, one profile per thread.

Firefox writes it from the profiler (about:profiling, "Save as file" of the
raw Gecko profile) and from the old DevTools performance panel (Firefox 59 to
63 and later, "Save" in the recording list), which wraps the same object as
``{"profile": {...}, "duration": ..., ...}``. The Gecko profile is::

    {"meta": {"startTime": ..., ...}, "libs": [...],
     "threads": [{"name": "GeckoMain", "samples": {"schema": {...}, "data": [...]},
                  "stackTable": {...}, "frameTable": {...}, "stringTable": [...]}],
     "processes": [<Gecko profiles of child processes>]}

Each table is ``{"schema": {column: index}, "data": [[...], ...]}``: a sample
row holds a stack index and a time in milliseconds since ``meta.startTime``,
a stack row its prefix stack (null at the root) and a frame index, a frame
row the string-table index of its location, "name (file:line:column)".

The reading follows speedscope, the reference importer: a frame is parsed
from its location (line as written, column made 1-based), frames of Firefox
itself (``resource:`` and ``self-hosted`` files) and locations that are not
"name (file...)" (C++ labels, JIT tiers) are dropped, each sample's stack
lasts until the next sample's time (the last one gets no time), and the time
from zero to the first sample is idle. Every thread becomes a profile (child
processes' threads shifted to the parent's clock); the one shown first is
the main thread (``GeckoMain``) as speedscope shows it, and a file with one
thread names its profile after the file.

The processed format of profiler.firefox.com (``meta.preprocessedProfileVersion``,
column-wise tables) is recognised and refused with a message saying so.
"""

from __future__ import annotations

import numpy as np
import orjson

from flamesight.formats.chrome_cpuprofile import describe_json_value, json_head_keys
from flamesight.formats.errors import FormatError, load_json
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit

NAME = "firefox"
TITLE = "Firefox profiler (Gecko) JSON"

_MAX_PROCESSES = 10_000
_LINE_BREAKS = "\n\r\u2028\u2029"
_DIGITS = frozenset("0123456789")
_DROPPED_FILE_PREFIXES = ("resource:", "self-hosted:")
_MAX_INT = 2**31
_DEVTOOLS_KEYS = frozenset({"duration", "markers", "memory", "ticks", "allocations"})
_GECKO_KEYS = frozenset({"libs", "meta", "threads", "processes", "pausedRanges"})


def sniff(head: bytes) -> bool:
    """A JSON object holding a Gecko profile (bare, or under DevTools' ``profile`` key)."""
    opener, keys, _ = json_head_keys(head, max_depth=2)
    if opener != b"{":
        return False
    top = [key for depth, key in keys if depth == 1]
    if "$schema" in top or "traceEvents" in top or "nodes" in top:
        return False
    if "meta" in top and ("threads" in top or "libs" in top):
        return True
    if "profile" in top:
        after = keys[keys.index((1, "profile")) + 1 :]
        inner = {key for depth, key in after if depth == 2}
        return bool(inner & _GECKO_KEYS)
    # A DevTools recording's markers and allocations can push "profile" past the head.
    return _DEVTOOLS_KEYS.issubset(top)


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a Gecko profile into a group with one profile per sampled thread."""
    document = load_json(data, TITLE)
    root = _expect_object(document, "$")
    if "threads" not in root:
        if "profile" not in root:
            raise FormatError(TITLE, "$", "no 'profile' (nor 'threads') key: not a Gecko profile")
        gecko, where = _expect_object(root["profile"], "$.profile"), "$.profile"
    else:
        gecko, where = root, "$"
    threads = _threads(gecko, where)
    if len(threads) == 1:
        thread, thread_where, offset = threads[0]
        return ProfileGroup(name, [_thread_profile(thread, thread_where, offset, name)])
    profiles = []
    names: dict[str, int] = {}
    active = None
    for thread, thread_where, offset in threads:
        title = thread.get("name")
        title = title if isinstance(title, str) and title else f"thread {len(profiles) + 1}"
        if title == "GeckoMain" and active is None and thread_where.startswith(f"{where}.threads"):
            active = len(profiles)
        names[title] = names.get(title, 0) + 1
        if names[title] > 1:
            title = f"{title} ({names[title]})"
        profiles.append(_thread_profile(thread, thread_where, offset, title))
    return ProfileGroup(name, profiles, active or 0)


def _threads(gecko: dict, where: str) -> list[tuple[dict, str, float]]:
    """Every thread of the profile and its child processes: (thread, JSON path, time offset)."""
    _reject_processed(gecko, where)
    base_time = _start_time(gecko, where)
    found: list[tuple[dict, str, float]] = []
    pending = [(gecko, where)]
    visited = 0
    while visited < len(pending):
        profile, path = pending[visited]
        visited += 1
        if visited > _MAX_PROCESSES:
            raise FormatError(TITLE, path, f"more than {_MAX_PROCESSES:,} processes")
        offset = _start_time(profile, path) - base_time
        threads = _expect_list(profile.get("threads"), f"{path}.threads")
        for index, thread in enumerate(threads):
            thread_where = f"{path}.threads[{index}]"
            if isinstance(thread, str):  # early Gecko versions store threads as JSON text
                try:
                    thread = orjson.loads(thread)
                except orjson.JSONDecodeError as error:
                    raise FormatError(
                        TITLE, thread_where, f"a thread as text that is not JSON ({error.msg})"
                    ) from None
            found.append((_expect_object(thread, thread_where), thread_where, offset))
        for index, child in enumerate(
            _expect_list(profile.get("processes", []), f"{path}.processes")
        ):
            if isinstance(child, str):
                try:
                    child = orjson.loads(child)
                except orjson.JSONDecodeError as error:
                    raise FormatError(
                        TITLE,
                        f"{path}.processes[{index}]",
                        f"a process as text that is not JSON ({error.msg})",
                    ) from None
            pending.append(
                (_expect_object(child, f"{path}.processes[{index}]"), f"{path}.processes[{index}]")
            )
    if not found:
        raise FormatError(TITLE, f"{where}.threads", "the profile has no threads")
    return found


def _reject_processed(gecko: dict, where: str) -> None:
    meta = gecko.get("meta")
    if isinstance(meta, dict) and "preprocessedProfileVersion" in meta:
        raise FormatError(
            TITLE,
            f"{where}.meta.preprocessedProfileVersion",
            "this is a processed profile from profiler.firefox.com, which is not supported; "
            "save the raw Gecko profile from about:profiling instead",
        )


def _start_time(profile: dict, where: str) -> float:
    meta = profile.get("meta", {})
    if not isinstance(meta, dict):
        return 0.0
    start = meta.get("startTime", 0)
    if start is None:
        return 0.0
    if not _is_number(start):
        raise FormatError(
            TITLE, f"{where}.meta.startTime", f"expected a number, got {describe_json_value(start)}"
        )
    return float(start)


def _thread_profile(thread: dict, where: str, offset: float, title: str) -> Profile:
    builder = ProfileBuilder(title, Unit.MILLISECONDS, sampled=True)
    strings = _expect_list(thread.get("stringTable"), f"{where}.stringTable")
    samples, sample_cols = _table(thread, "samples", where, ("stack", "time"), (0, 1))
    stacks, stack_cols = _table(thread, "stackTable", where, ("prefix", "frame"), (0, 1))
    frames, frame_cols = _table(thread, "frameTable", where, ("location",), (0,))
    frame_ids = _FrameResolver(builder, frames, frame_cols[0], strings, where)
    stack_ids = _StackResolver(builder, stacks, stack_cols, frame_ids, where)
    columns = _sample_columns(samples, sample_cols, stack_ids, where)
    if columns is None:
        columns = _checked_sample_columns(samples, sample_cols, stack_ids, where)
    sample_stacks, times = columns
    _add_samples(builder, sample_stacks, times + offset, f"{where}.samples")
    return builder.build()


def _sample_columns(
    samples: list, columns: tuple[int, ...], stack_ids: _StackResolver, where: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """The stack and time columns, each distinct stack resolved once; None if any row is unusual.

    Well-formed rows (integer or null stacks, numeric times) take this path; anything
    else is left to `_checked_sample_columns`, which names the first bad value.
    """
    stack_col, time_col = columns
    try:
        stacks = [row[stack_col] for row in samples]
        times = [row[time_col] for row in samples]
    except (TypeError, IndexError, KeyError):
        return None
    if not set(map(type, stacks)) <= {int, type(None)} or not set(map(type, times)) <= {
        int,
        float,
    }:
        return None
    present = np.array([-1 if stack is None else stack for stack in stacks], np.int64)
    if np.count_nonzero(present < 0) != stacks.count(None):
        return None  # a negative stack index
    distinct, inverse = np.unique(present, return_inverse=True)
    try:
        resolved = np.array(
            [
                -1 if stack == -1 else stack_ids.stack(stack, f"{where}.samples.data")
                for stack in distinct.tolist()
            ],
            np.int64,
        )
    except FormatError:
        return None
    return resolved[inverse], np.array(times, np.float64)


def _checked_sample_columns(
    samples: list, columns: tuple[int, ...], stack_ids: _StackResolver, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """The stack and time columns, row by row, naming the first bad value."""
    count = len(samples)
    sample_stacks = np.empty(count, np.int64)
    times = np.empty(count, np.float64)
    stack_col, time_col = columns
    for index, row in enumerate(samples):
        row_where = f"{where}.samples.data[{index}]"
        if not isinstance(row, list) or len(row) <= max(stack_col, time_col):
            raise FormatError(
                TITLE,
                row_where,
                f"expected a sample row of {max(stack_col, time_col) + 1}+ values, "
                f"got {describe_json_value(row)}",
            )
        stack, time = row[stack_col], row[time_col]
        if not _is_number(time):
            raise FormatError(
                TITLE,
                f"{row_where}[{time_col}]",
                f"expected a time, got {describe_json_value(time)}",
            )
        times[index] = time
        sample_stacks[index] = (
            -1 if stack is None else stack_ids.stack(stack, f"{row_where}[{stack_col}]")
        )
    return sample_stacks, times


def _add_samples(
    builder: ProfileBuilder, stacks: np.ndarray, times: np.ndarray, where: str
) -> None:
    """Each stack lasts until the next sample; time before the first busy sample is idle from 0."""
    if len(times) < 2:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        times = np.maximum.accumulate(times)  # a step back in time never moves the clock back
        weights = np.diff(times)
    if not np.isfinite(weights).all() or not np.isfinite(times).all():
        raise FormatError(TITLE, where, "the sample times run past the largest number")
    stacks = stacks[:-1]
    starts = times[:-1]
    busy = np.flatnonzero(stacks >= 0)
    keep = weights > 0
    if len(busy) and starts[busy[0]] > 0:
        builder.add_sample(-1, float(starts[busy[0]]), 0.0)
        keep[: busy[0]] = False
    builder.add_samples(stacks[keep], weights[keep], starts[keep])


def _table(
    thread: dict, key: str, where: str, columns: tuple[str, ...], defaults: tuple[int, ...]
) -> tuple[list, tuple[int, ...]]:
    """The data rows of a schema table and the positions of `columns` in them."""
    table = _expect_object(thread.get(key), f"{where}.{key}")
    rows = _expect_list(table.get("data"), f"{where}.{key}.data")
    schema = table.get("schema", {})
    if not isinstance(schema, dict):
        raise FormatError(
            TITLE, f"{where}.{key}.schema", f"expected an object, got {describe_json_value(schema)}"
        )
    positions = []
    for column, default in zip(columns, defaults, strict=True):
        position = schema.get(column, default)
        if not _is_int(position) or not 0 <= position < 1000:
            raise FormatError(
                TITLE,
                f"{where}.{key}.schema.{column}",
                f"expected a column index, got {describe_json_value(position)}",
            )
        positions.append(position)
    return rows, tuple(positions)


class _FrameResolver:
    """Builder frame ids for frame-table rows (-1 for dropped frames), parsed once each."""

    def __init__(
        self, builder: ProfileBuilder, rows: list, column: int, strings: list, where: str
    ) -> None:
        self._builder = builder
        self._rows = rows
        self._column = column
        self._strings = strings
        self._where = where
        self._ids: dict[int, int] = {}
        self._by_location: dict[str, int] = {}

    def frame(self, index: object, where: str) -> int:
        """The builder frame of frame-table row `index`, -1 when speedscope drops it."""
        if not _is_int(index) or not 0 <= index < len(self._rows):
            raise FormatError(
                TITLE,
                where,
                f"expected a frame index below {len(self._rows)}, got {describe_json_value(index)}",
            )
        known = self._ids.get(index)
        if known is not None:
            return known
        row = self._rows[index]
        row_where = f"{self._where}.frameTable.data[{index}]"
        if not isinstance(row, list) or len(row) <= self._column:
            raise FormatError(
                TITLE, row_where, f"expected a frame row, got {describe_json_value(row)}"
            )
        string = row[self._column]
        if not _is_int(string) or not 0 <= string < len(self._strings):
            raise FormatError(
                TITLE,
                f"{row_where}[{self._column}]",
                f"expected a string-table index below {len(self._strings)}, "
                f"got {describe_json_value(string)}",
            )
        location = self._strings[string]
        if not isinstance(location, str):
            raise FormatError(
                TITLE,
                f"{self._where}.stringTable[{string}]",
                f"expected a string, got {describe_json_value(location)}",
            )
        frame = self._by_location.get(location)
        if frame is None:
            fields = parse_location(location)
            frame = -1 if fields is None else self._builder.frame(*fields)
            self._by_location[location] = frame
        self._ids[index] = frame
        return frame


class _StackResolver:
    """Builder stack ids for stack-table rows, walking prefix chains without recursion."""

    def __init__(
        self,
        builder: ProfileBuilder,
        rows: list,
        columns: tuple[int, ...],
        frames: _FrameResolver,
        where: str,
    ) -> None:
        self._builder = builder
        self._rows = rows
        self._prefix_col, self._frame_col = columns
        self._frames = frames
        self._where = where
        self._ids: dict[int, int] = {}

    def stack(self, index: object, where: str) -> int:
        """The builder stack of stack-table row `index` (-1 when every frame is dropped)."""
        if not _is_int(index) or not 0 <= index < len(self._rows):
            raise FormatError(
                TITLE,
                where,
                f"expected a stack index below {len(self._rows)}, got {describe_json_value(index)}",
            )
        known = self._ids.get(index)
        if known is not None:
            return known
        chain: list[tuple[int, int]] = []  # (row, frame) from `index` toward the root
        seen: set[int] = set()
        row_index: int | None = index
        parent = -1
        while row_index is not None:
            known = self._ids.get(row_index)
            if known is not None:
                parent = known
                break
            if row_index in seen:
                raise FormatError(
                    TITLE,
                    f"{self._where}.stackTable.data[{row_index}]",
                    "the stack prefixes form a cycle",
                )
            seen.add(row_index)
            row_where = f"{self._where}.stackTable.data[{row_index}]"
            row = self._rows[row_index]
            if not isinstance(row, list) or len(row) <= max(self._prefix_col, self._frame_col):
                raise FormatError(
                    TITLE, row_where, f"expected a stack row, got {describe_json_value(row)}"
                )
            frame = self._frames.frame(row[self._frame_col], f"{row_where}[{self._frame_col}]")
            chain.append((row_index, frame))
            prefix = row[self._prefix_col]
            if prefix is not None and (not _is_int(prefix) or not 0 <= prefix < len(self._rows)):
                raise FormatError(
                    TITLE,
                    f"{row_where}[{self._prefix_col}]",
                    f"expected a stack index below {len(self._rows)} or null, "
                    f"got {describe_json_value(prefix)}",
                )
            row_index = prefix
        for row_index, frame in reversed(chain):
            if frame >= 0:
                parent = self._builder.stack(parent, frame)
            self._ids[row_index] = parent
        return parent


def parse_location(location: str) -> tuple[str, str, int | None, int | None] | None:
    """Name, file, line and 1-based column of a location "name (file:line:col)", as speedscope reads it.

    None for a location speedscope leaves out: one not of that shape (C++
    labels, JIT tier names) or one in Firefox's own code (``resource:`` or
    ``self-hosted`` files).
    """
    if not location.endswith(")"):
        return None
    # speedscope's pattern is /(.*)\s+\((.*?)(?::(\d+))?(?::(\d+))?\)$/: the
    # greedy name ends at the last "(" that follows white space.
    opening = len(location) - 1
    while True:
        opening = location.rfind("(", 0, opening)
        if opening < 1:
            return None
        if location[opening - 1].isspace():
            break
    inside = location[opening + 1 : -1]
    if any(mark in inside for mark in _LINE_BREAKS):
        return None
    name = location[: opening - 1]
    for mark in _LINE_BREAKS:
        name = name.rpartition(mark)[2]
    file, numbers = inside, []
    for _ in range(2):
        head, colon, digits = file.rpartition(":")
        if not colon or not digits or not _DIGITS.issuperset(digits):
            break
        numbers.insert(0, digits)
        file = head
    if file.startswith(_DROPPED_FILE_PREFIXES) or file == "self-hosted":
        return None
    line = _small_int(numbers[0]) if numbers else None
    col = _small_int(numbers[1]) + 1 if len(numbers) > 1 else None
    return name, file, line, col


def _small_int(digits: str) -> int:
    """A line or column number, held below 2**31 (the model's columns are 64-bit)."""
    return int(digits) if len(digits) < 10 else _MAX_INT - 2


def _expect_object(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise FormatError(TITLE, where, f"expected an object, got {describe_json_value(value)}")
    return value


def _expect_list(value: object, where: str) -> list:
    if not isinstance(value, list):
        raise FormatError(TITLE, where, f"expected a list, got {describe_json_value(value)}")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

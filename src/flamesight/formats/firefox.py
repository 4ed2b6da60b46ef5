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

The rows of the samples, stack and frame tables are what makes a profile
big: they are read a piece at a time (`_read_in_pieces`, with
`json_pieces.ListPieces`) into NumPy columns, and the stacks of all sampled
rows are interned with NumPy a level of depth at a time (`_stack_table`),
giving the frame and stack ids that the row-by-row walk (`_StackResolver`)
gives. Anything unusual (a value out of place, an index out of range, a
prefix cycle) sends a thread to that walk, which names the bad value.
"""

from __future__ import annotations

import dataclasses
import re
from array import array

import numpy as np
import orjson

from flamesight.formats.chrome_cpuprofile import (
    describe_json_value,
    joined,
    json_head_keys,
)
from flamesight.formats.errors import FormatError, load_json
from flamesight.formats.json_pieces import ListPieces
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, StackTable, Unit
from flamesight.model.profile import link_depths

NAME = "firefox"
TITLE = "Firefox profiler (Gecko) JSON"

_MAX_PROCESSES = 10_000
_LINE_BREAKS = "\n\r\u2028\u2029"
_DIGITS = frozenset("0123456789")
_DROPPED_FILE_PREFIXES = ("resource:", "self-hosted:")
_MAX_INT = 2**31
_DEVTOOLS_KEYS = frozenset({"duration", "markers", "memory", "ticks", "allocations"})
_GECKO_KEYS = frozenset({"libs", "meta", "threads", "processes", "pausedRanges"})

# The columns read from each table of a thread (with their positions when the
# schema leaves them out), and what each may hold: a row index, a row index or
# null (-1), a number.
_TABLE_COLUMNS = {
    "samples": (("stack", "time"), (0, 1), ("index or null", "number")),
    "stackTable": (("prefix", "frame"), (0, 1), ("index or null", "index")),
    "frameTable": (("location",), (0,), ("index",)),
}
_NONE = type(None)
_SPACE = rb"[ \t\r\n]*"
_TABLE_OPENER = re.compile(
    rb'"(samples|stackTable|frameTable)"' + _SPACE + rb":" + _SPACE + rb"\{" + _SPACE
    + rb'"schema"' + _SPACE + rb":" + _SPACE + rb"(\{[^{}]*\})" + _SPACE + rb"," + _SPACE
    + rb'"data"' + _SPACE + rb":" + _SPACE + rb"\["
)  # fmt: skip
_PIECE_BYTES = 16 * 1024
"""Rows are read in pieces of about this size: the rows orjson makes of a piece then stay in
the processor's cache while they become columns (a fifth less time than 64 kB pieces)."""
_SMALL_TABLE_BYTES = 64 * 1024
"""Tables whose rows end (``]]``) within this many bytes are not worth reading in pieces."""
_MAX_LEVELS = 4096
"""Stack tables deeper than this are walked row by row (the vectorised walk goes a level at a
time); depths then fit 16 bits, which NumPy sorts by radix."""
_ROW_BLOCK = 1 << 16
"""Stack-table rows taken a block at a time where a pass needs 64-bit temporaries."""


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
    read = _read_in_pieces(data)
    if read is not None:
        del data  # the text is read: let it go (`formats.load` holds no other reference)
        where, threads, tables = read
        profiles = [
            _profile(table, title)
            for table, title in zip(tables, _titles(threads, name), strict=True)
        ]
    else:
        document = load_json(data, TITLE)
        del data
        where, threads = _gecko_threads(document)
        profiles = []
        for (thread, thread_where, offset), title in zip(
            threads, _titles(threads, name), strict=True
        ):
            table = _tables(thread, thread_where, offset, None)
            if table is None:
                profiles.append(_checked_profile(thread, thread_where, offset, title))
            else:
                profiles.append(_profile(table, title))
    return ProfileGroup(name, profiles, _main_thread(threads, where))


def _read_in_pieces(
    data: bytes,
) -> tuple[str, list[tuple[dict, str, float]], list[_ThreadTables]] | None:
    """The threads of a Gecko profile with their big tables read a piece at a time, or None.

    Every ``"samples"``, ``"stackTable"`` or ``"frameTable"`` key holding
    ``{"schema": {...}, "data": [...]}`` with more than a few rows has its
    rows read with `json_pieces.ListPieces`, in the columns that schema
    names; a table is used only where the skeleton holds its marker and the
    same schema (small ones are read with the skeleton). None
    (something unusual, or bad input) sends the caller to the whole reading,
    which names the first problem in its own order.
    """
    pieces = ListPieces(data, _PIECE_BYTES)
    position = 0
    while (found := pieces.find(_TABLE_OPENER, position)) is not None:
        position = found.end()
        if data.find(b"]]", position, position + _SMALL_TABLE_BYTES) >= 0:
            continue  # a small table (markers hold many): read with the skeleton
        reader = _guessed_table(found)
        end = None if reader is None else pieces.read_items(position, reader.add, reader)
        position = position if end is None else end + 1
    skeleton = pieces.skeleton()
    if skeleton is None:
        return None
    try:
        where, threads = _gecko_threads(skeleton)
        tables = [_tables(thread, path, offset, pieces) for thread, path, offset in threads]
    except FormatError:
        return None
    if any(table is None for table in tables):
        return None
    return where, threads, tables


def _guessed_table(found: re.Match[bytes]) -> _TableColumns | None:
    """A reader for the rows of the table `_TABLE_OPENER` found, in the columns of the schema before them."""
    key = found.group(1).decode()
    try:
        positions = _positions(orjson.loads(found.group(2)), key, "")
    except (orjson.JSONDecodeError, FormatError):
        return None
    return _TableColumns(key, positions)


def _gecko_threads(document: object) -> tuple[str, list[tuple[dict, str, float]]]:
    """The JSON path of the Gecko profile in `document` and its threads (see `_threads`)."""
    root = _expect_object(document, "$")
    if "threads" not in root:
        if "profile" not in root:
            raise FormatError(TITLE, "$", "no 'profile' (nor 'threads') key: not a Gecko profile")
        gecko, where = _expect_object(root["profile"], "$.profile"), "$.profile"
    else:
        gecko, where = root, "$"
    return where, _threads(gecko, where)


def _titles(threads: list[tuple[dict, str, float]], name: str) -> list[str]:
    """The profile name of each thread: the file's for a single thread, else the thread's
    name (numbered when repeated)."""
    if len(threads) == 1:
        return [name]
    titles = []
    names: dict[str, int] = {}
    for thread, _, _ in threads:
        title = thread.get("name")
        title = title if isinstance(title, str) and title else f"thread {len(titles) + 1}"
        names[title] = names.get(title, 0) + 1
        if names[title] > 1:
            title = f"{title} ({names[title]})"
        titles.append(title)
    return titles


def _main_thread(threads: list[tuple[dict, str, float]], where: str) -> int:
    """The index of the first ``GeckoMain`` thread of the top process, else 0."""
    if len(threads) == 1:
        return 0
    for index, (thread, thread_where, _) in enumerate(threads):
        if thread.get("name") == "GeckoMain" and thread_where.startswith(f"{where}.threads"):
            return index
    return 0


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


@dataclasses.dataclass
class _ThreadTables:
    """A thread's tables as columns, checked: every index in range, no prefix cycle."""

    where: str
    offset: float
    strings: list[str]
    samples: _TableColumns
    stacks: _TableColumns
    frames: _TableColumns


def _tables(
    thread: dict, where: str, offset: float, pieces: ListPieces | None
) -> _ThreadTables | None:
    """The columns of a thread's tables (read in pieces where `pieces` has them), or None
    if a value is out of place: the row-by-row reading (`_checked_profile`) names it."""
    strings = _expect_list(thread.get("stringTable"), f"{where}.stringTable")
    tables = []
    for key in _TABLE_COLUMNS:
        rows, positions = _table(thread, key, where)
        table = None if pieces is None else pieces.result(rows)
        if table is None:
            table = _TableColumns(key, positions)
            if not table.add(rows):
                return None
        elif table.key != key or table.positions != positions:
            return None
        tables.append(table)
    samples, stacks, frames = tables
    if (
        samples.highest[0] >= stacks.count
        or stacks.highest[0] >= stacks.count
        or stacks.highest[1] >= frames.count
        or frames.highest[0] >= len(strings)
        or not set(map(type, strings)) <= {str}
        or not (stacks.prefixes_come_first() or link_depths(stacks.columns()[0]) is not None)
    ):
        return None
    return _ThreadTables(where, offset, strings, samples, stacks, frames)


class _TableColumns:
    """Columns of a table's rows, read a piece of rows at a time (row indexes as int32,
    null as -1, numbers as float64), with the highest value of each index column.

    Each column grows in one buffer (an `array.array`, which the allocator
    enlarges in place), not as a list of pieces joined at the end: no copy,
    and no scattered blocks left behind.
    """

    def __init__(self, key: str, positions: tuple[int, ...]) -> None:
        self.key = key
        self.positions = positions
        self.count = 0
        self.highest = [-1] * len(positions)
        self._kinds = _TABLE_COLUMNS[key][2]
        self._columns = [array("d" if kind == "number" else "i") for kind in self._kinds]

    def add(self, rows: list) -> bool:
        """Append the columns of `rows`; False if a row or a value is not what the table holds."""
        try:
            columns = [[row[position] for row in rows] for position in self.positions]
        except (TypeError, IndexError, KeyError):
            return False
        chunks = [
            _column_array(column, kind) for column, kind in zip(columns, self._kinds, strict=True)
        ]
        if any(chunk is None for chunk in chunks):
            return False
        for index, (chunk, kind) in enumerate(zip(chunks, self._kinds, strict=True)):
            if kind != "number" and len(chunk):
                self.highest[index] = max(self.highest[index], int(chunk.max()))
            self._columns[index].frombytes(chunk.view(np.uint8))
        self.count += len(rows)
        return True

    def prefixes_come_first(self) -> bool:
        """Whether each row's first column (a stack's prefix) is an earlier row: then the
        prefixes form no cycle."""
        prefix = self.columns()[0]
        return not any(
            np.any(prefix[lo : lo + _ROW_BLOCK] >= np.arange(lo, min(lo + _ROW_BLOCK, len(prefix))))
            for lo in range(0, len(prefix), _ROW_BLOCK)
        )

    def columns(self) -> list[np.ndarray]:
        """The columns (views of the buffers: nothing can be added after)."""
        return [
            np.frombuffer(column, np.float64 if kind == "number" else np.int32)
            for column, kind in zip(self._columns, self._kinds, strict=True)
        ]

    def take(self) -> list[np.ndarray]:
        """The columns, given up (the table is empty after)."""
        columns = self.columns()
        self._columns = []
        return columns


def _column_array(values: list, kind: str) -> np.ndarray | None:
    """One column of rows as an array, or None if a value is not of `kind`."""
    types = set(map(type, values))
    try:
        if kind == "number":
            return np.array(values, np.float64) if types <= {int, float} else None
        if not types <= ({int, _NONE} if kind == "index or null" else {int}):
            return None
        nulls = 0
        if _NONE in types:
            nulls = values.count(None)
            values = [-1 if value is None else value for value in values]
        array = np.array(values, np.int32)  # an index past 2**31 no table can have
    except OverflowError:
        return None
    if np.count_nonzero(array < 0) != nulls:
        return None  # a negative index
    return array


def _profile(tables: _ThreadTables, title: str) -> Profile:
    """The profile of a thread whose tables are checked.

    Its stacks are interned a level of depth at a time (`_stack_table`), or
    row by row for a very deep stack table, with the same ids either way.
    """
    builder = ProfileBuilder(title, Unit.MILLISECONDS, sampled=True)
    sample_stacks, times = tables.samples.take()
    sampled = np.zeros(tables.stacks.count + 1, bool)
    sampled[sample_stacks] = True  # (null, -1, marks the last entry)
    sampled = np.flatnonzero(sampled[:-1]).astype(np.int32)
    stack_table, row_stacks = _stack_table(builder, tables, sampled)
    del sampled
    sample_stacks = row_stacks[sample_stacks]
    del row_stacks
    times += tables.offset
    _add_samples(builder, sample_stacks, times, f"{tables.where}.samples")
    del sample_stacks, times  # the builder holds the samples
    profile = builder.build()
    return profile if stack_table is None else dataclasses.replace(profile, stacks=stack_table)


def _stack_table(
    builder: ProfileBuilder, tables: _ThreadTables, sampled: np.ndarray
) -> tuple[StackTable | None, np.ndarray]:
    """The stacks of the `sampled` stack-table rows, interned as `_StackResolver` interns
    them (sampled rows in index order), with the same frame and stack ids, a level of
    depth at a time; None for the table when the stack table is too deep for that and
    its rows were walked one by one in the builder (`_walked_stacks`).

    Returns the stack table and the stack of every row (-1 where every frame is
    dropped, or the row is not sampled), with one more entry, -1, for index -1.
    The walk reaches each row from the first sampled row (in index order)
    at or below it, and takes the rows new to a sampled row from it toward
    the root (interning their frames in that order), then makes their stacks
    from the root down: both orders follow from that first row and the depth.
    The stack and frame tables' columns are taken from `tables` (and each let
    go of as soon as it is used).
    """
    strings = tables.strings
    (location,) = tables.frames.take()
    prefix, frame = tables.stacks.take()
    levels = StackTable(prefix, frame).levels()
    if len(levels) > _MAX_LEVELS + 1:
        return None, _walked_stacks(builder, strings, location, prefix, frame, sampled)
    rows = len(prefix)
    depth = np.empty(rows, np.uint16)
    for level, nodes in enumerate(levels):
        depth[nodes] = level
    first = np.full(rows, rows, np.int32)  # the first sampled row at or below each row
    first[sampled] = sampled
    for level in reversed(levels[1:]):
        np.minimum.at(first, prefix[level], first[level])
    # Frames, in the order the walk first meets them.
    never = np.iinfo(np.int64).max
    first_visit = np.full(len(location), never)
    span = len(levels)
    for lo in range(0, rows, _ROW_BLOCK):
        block = np.arange(lo, min(lo + _ROW_BLOCK, rows))
        block = block[first[block] < rows]
        visits = first[block].astype(np.int64) * span + (span - 1 - depth[block])
        np.minimum.at(first_visit, frame[block], visits)
    del depth
    met = np.flatnonzero(first_visit < never)
    frame_ids = np.full(len(location), -1, np.int32)
    by_location: dict[str, int] = {}
    for index in met[np.argsort(first_visit[met])].tolist():
        frame_ids[index] = _location_frame(builder, by_location, strings[location[index]])
    row_frames = frame_ids[frame]
    del first_visit, met, frame_ids, frame
    # For each row: the nearest row at or above it with its frame kept, the
    # one strictly above, and how many kept frames its path has.
    nearest = np.full(rows, -1, np.int32)
    above = np.full(rows, -1, np.int32)
    kept = np.zeros(rows, np.uint16)
    for at_depth, level in enumerate(levels):
        own = row_frames[level] >= 0
        if at_depth:  # (the roots have nothing above)
            parents = prefix[level]
            up = nearest[parents]
            above[level] = up
            nearest[level] = np.where(own, level, up)
            kept[level] = kept[parents] + own
        else:
            nearest[level] = np.where(own, level, -1)
            kept[level] = own
    del levels, prefix
    near = nearest[sampled]
    del nearest
    # Stacks, a level of kept frames at a time: (stack above, frame) pairs interned,
    # each with the first sampled row that reaches it.
    stacked = np.flatnonzero((first < rows) & (row_frames >= 0)).astype(np.int32)
    by_kept = stacked[np.argsort(kept[stacked], kind="stable")]
    kept_bounds = np.searchsorted(kept[by_kept], np.arange(1, int(kept.max(initial=0)) + 2))
    del kept, stacked
    temporary = np.full(rows, -1, np.int32)
    frame_span = builder.frame_count + 1
    parents_made: list[np.ndarray] = []
    frames_made: list[np.ndarray] = []
    firsts_made: list[np.ndarray] = []
    made = 0
    for lo, hi in zip(kept_bounds[:-1].tolist(), kept_bounds[1:].tolist(), strict=True):
        level = by_kept[lo:hi]
        up = above[level]
        parent_stacks = np.where(up >= 0, temporary[up], -1).astype(np.int64)
        keys = (parent_stacks + 1) * frame_span + row_frames[level]
        unique_keys, which = np.unique(keys, return_inverse=True)
        temporary[level] = made + which
        parents_made.append((unique_keys // frame_span - 1).astype(np.int32))
        frames_made.append((unique_keys % frame_span).astype(np.int32))
        firsts = np.full(len(unique_keys), rows, np.int32)
        np.minimum.at(firsts, which, first[level])
        firsts_made.append(firsts)
        made += len(unique_keys)
    del by_kept, above, row_frames, first
    # Number the stacks in the order the walk makes them: by their first sampled row,
    # then root first (a row's path has one stack per level: no two in a level share one).
    made_before = np.zeros(rows + 1, np.int32)  # stacks of earlier first rows, counted
    for firsts in firsts_made:
        np.add.at(made_before, firsts + 1, np.int32(1))  # (a NumPy scalar: add.at's fast loop)
    np.cumsum(made_before, dtype=np.int32, out=made_before)
    final = np.empty(made, np.int32)
    done = 0
    for firsts in firsts_made:
        final[done : done + len(firsts)] = made_before[firsts]
        made_before[firsts] += 1
        done += len(firsts)
    del firsts_made, made_before
    temporary_parents = joined(parents_made, np.int32)
    stack_parents = np.empty(made, np.int32)
    stack_parents[final] = np.where(temporary_parents >= 0, final[temporary_parents], -1)
    del temporary_parents, parents_made
    stack_frames = np.empty(made, np.int32)
    stack_frames[final] = joined(frames_made, np.int32)
    row_stacks = np.full(rows + 1, -1, np.int32)
    row_stacks[sampled] = np.where(near >= 0, final[temporary[near]], -1)
    return StackTable(stack_parents, stack_frames), row_stacks


def _walked_stacks(
    builder: ProfileBuilder,
    strings: list[str],
    location: np.ndarray,
    prefix: np.ndarray,
    frame: np.ndarray,
    sampled: np.ndarray,
) -> np.ndarray:
    """The stack of every row (as `_stack_table` gives it), walked row by row with the
    builder's own stacks: for stack tables too deep to go a level at a time."""
    stack_rows = [
        [None if up < 0 else up, row_frame]
        for up, row_frame in zip(prefix.tolist(), frame.tolist(), strict=True)
    ]
    frames = _FrameResolver(builder, [[at] for at in location.tolist()], 0, strings, "")
    stacks = _StackResolver(builder, stack_rows, (0, 1), frames, "")
    row_stacks = np.full(len(prefix) + 1, -1, np.int32)
    for row in sampled.tolist():
        row_stacks[row] = stacks.stack(row, "")
    return row_stacks


def _location_frame(builder: ProfileBuilder, by_location: dict[str, int], location: str) -> int:
    """The builder frame of a frame-table location (-1 when speedscope drops it), parsed once."""
    frame = by_location.get(location)
    if frame is None:
        fields = parse_location(location)
        frame = by_location[location] = -1 if fields is None else builder.frame(*fields)
    return frame


def _checked_profile(thread: dict, where: str, offset: float, title: str) -> Profile:
    """The profile of a thread read row by row, naming the first bad value."""
    builder = ProfileBuilder(title, Unit.MILLISECONDS, sampled=True)
    strings = _expect_list(thread.get("stringTable"), f"{where}.stringTable")
    samples, sample_cols = _table(thread, "samples", where)
    stacks, stack_cols = _table(thread, "stackTable", where)
    frames, frame_cols = _table(thread, "frameTable", where)
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
    """Each stack lasts until the next sample; time before the first busy sample is idle from 0.

    `times` is overwritten.
    """
    if len(times) < 2:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        np.maximum.accumulate(times, out=times)  # a step back in time never moves the clock back
        weights = np.diff(times)
    if not np.isfinite(weights).all() or not np.isfinite(times).all():
        raise FormatError(TITLE, where, "the sample times run past the largest number")
    stacks = stacks[:-1]
    starts = times[:-1]
    keep = weights > 0
    busy = stacks >= 0
    first_busy = int(np.argmax(busy))
    if busy[first_busy] and starts[first_busy] > 0:
        builder.add_sample(-1, float(starts[first_busy]), 0.0)
        keep[:first_busy] = False
    del busy
    if not keep.all():  # (usually every sample is kept: no copies then)
        stacks, weights, starts = stacks[keep], weights[keep], starts[keep]
    builder.add_samples(stacks, weights, starts)


def _table(thread: dict, key: str, where: str) -> tuple[list, tuple[int, ...]]:
    """The data rows of a schema table and the positions of its `_TABLE_COLUMNS` in them."""
    table = _expect_object(thread.get(key), f"{where}.{key}")
    rows = _expect_list(table.get("data"), f"{where}.{key}.data")
    return rows, _positions(table.get("schema", {}), key, f"{where}.{key}")


def _positions(schema: object, key: str, where: str) -> tuple[int, ...]:
    """The positions a table's schema gives its `_TABLE_COLUMNS`."""
    if not isinstance(schema, dict):
        raise FormatError(
            TITLE, f"{where}.schema", f"expected an object, got {describe_json_value(schema)}"
        )
    columns, defaults, _ = _TABLE_COLUMNS[key]
    positions = []
    for column, default in zip(columns, defaults, strict=True):
        position = schema.get(column, default)
        if not _is_int(position) or not 0 <= position < 1000:
            raise FormatError(
                TITLE,
                f"{where}.schema.{column}",
                f"expected a column index, got {describe_json_value(position)}",
            )
        positions.append(position)
    return tuple(positions)


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
        frame = self._ids[index] = _location_frame(self._builder, self._by_location, location)
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

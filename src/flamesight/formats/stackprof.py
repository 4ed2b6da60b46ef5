"""Ruby stackprof: the JSON that ``StackProf.run(mode: ..., raw: true)`` dumps.

Produce it with the stackprof gem::

    StackProf.run(mode: :wall, raw: true, out: "profile.json") { work }
    # or: stackprof --json profile.dump > profile.json

The document has ``mode`` (``cpu``, ``wall``, ``object`` or ``custom``),
``interval``, a ``frames`` object keyed by frame id (``name``, ``file``,
``line``) and ``raw``: a flat list of records ``[height, id_root, ...,
id_leaf, count]`` in time order, plus ``raw_timestamp_deltas`` (one per
sample, in microseconds) and, from stackprof 0.2.26, ``raw_lines`` (the line
of every id in ``raw``).

Read as speedscope reads it, which is the reference for the numbers: one
profile named after the file; each record is one sample of its stack,
weighted by ``count`` in object mode (plain counts), ``count * interval``
microseconds in cpu mode, and the sum of its ``count`` timestamp deltas
(microseconds) in wall and custom mode. A frame is its name (``(unknown)``
when it has none), file and line, the line taken from ``raw_lines`` when
present; a stack that is only ``(garbage collection)`` is put on top of the
previous record's stack.

The number lists (``raw`` and the two beside it) are read a piece at a time
into NumPy arrays (`_read_in_pieces`, with `json_pieces.ListPieces`), and
the records are walked over those arrays, each distinct record's stack made
once.
"""

from __future__ import annotations

import math
import re

import numpy as np

from flamesight.formats.chrome_cpuprofile import describe_json_value, json_head_keys
from flamesight.formats.errors import FormatError, load_json
from flamesight.formats.json_pieces import ListPieces, list_opener
from flamesight.model import ProfileBuilder, ProfileGroup, Unit

NAME = "stackprof"
TITLE = "stackprof JSON"

_MODE = re.compile(rb'"mode"[ \t\r\n]*:[ \t\r\n]*"(?:cpu|wall|object|custom)"')
_GARBAGE_COLLECTION = "(garbage collection)"
_MAX_LINE = 2**62
_LIST_OPENERS = {key: list_opener(key) for key in ("raw", "raw_lines", "raw_timestamp_deltas")}


def sniff(head: bytes) -> bool:
    """A JSON object with a stackprof ``mode`` and stackprof's top-level keys."""
    opener, keys, _ = json_head_keys(head, max_depth=1)
    if opener != b"{":
        return False
    top = {key for _, key in keys}
    return (
        "mode" in top
        and bool(top & {"frames", "raw", "raw_timestamp_deltas", "interval"})
        and _MODE.search(head) is not None
    )


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a stackprof JSON dump into one profile named after the file."""
    read = _read_in_pieces(data)
    if read is None:
        document, lists = load_json(data, TITLE), {}
    else:
        document, lists = read
    del data, read  # the text is read: let it go (`formats.load` holds no other reference)
    if not isinstance(document, dict):
        raise FormatError(
            TITLE, "top level", f"expected a JSON object, got {describe_json_value(document)}"
        )
    mode = document.get("mode")
    if mode not in ("cpu", "wall", "object", "custom"):
        raise FormatError(
            TITLE, "mode", f"expected cpu, wall, object or custom, got {describe_json_value(mode)}"
        )
    frames = document.get("frames")
    if not isinstance(frames, dict):
        raise FormatError(TITLE, "frames", f"expected an object, got {describe_json_value(frames)}")
    raw = lists.get("raw")
    if raw is None:
        raw = _integers(document.get("raw"), "raw")
    lines = lists.get("raw_lines")
    if lines is None and document.get("raw_lines") is not None:
        lines = _integers(document.get("raw_lines"), "raw_lines")
    if lines is not None and len(lines) < len(raw):
        raise FormatError(TITLE, "raw_lines", f"{len(lines)} lines for {len(raw)} raw entries")
    interval = 0.0
    deltas = np.zeros(0)
    if mode == "cpu":
        interval = _number(document.get("interval"), "interval")
    elif mode != "object":
        deltas = lists.get("raw_timestamp_deltas")
        if deltas is None:
            deltas = _numbers(document.get("raw_timestamp_deltas"), "raw_timestamp_deltas")
        deltas = deltas.astype(np.float64, copy=False)
    delta_of = memoryview(deltas)
    builder = ProfileBuilder(name, Unit.NONE if mode == "object" else Unit.MICROSECONDS)
    reader = _FrameReader(builder, frames)
    ids = memoryview(raw)
    line_of = None if lines is None else memoryview(lines)
    stacks: list[int] = []
    weights: list[float] = []
    previous: list[int] = []
    record_stacks: dict[tuple, tuple[list[int], int]] = {}  # (ids, lines) -> (frames, stack)
    sample_index = 0
    position = 0
    while position < len(raw):
        height = ids[position]
        end = position + 1 + height
        if height < 0 or end >= len(raw):
            raise FormatError(
                TITLE,
                f"raw[{position}]",
                f"a stack of {height} frames and its count do not fit in the {len(raw)} entries",
            )
        key = (
            ids[position + 1 : end].tobytes(),
            None if line_of is None else line_of[position + 1 : end].tobytes(),
        )
        known = record_stacks.get(key)
        if known is None:
            stack = [
                reader.frame(ids[at], None if line_of is None else line_of[at], at)
                for at in range(position + 1, end)
            ]
            if len(stack) == 1 and builder.frame_name(stack[0]) == _GARBAGE_COLLECTION:
                stack = previous + stack
                stack_id = builder.stack_of(stack)
            else:
                stack_id = builder.stack_of(stack)
                record_stacks[key] = (stack, stack_id)
        else:
            stack, stack_id = known
        count = ids[end]
        if count < 0:
            raise FormatError(TITLE, f"raw[{end}]", f"negative sample count {count}")
        if mode == "object":
            weight = float(count)
        elif mode == "cpu":
            weight = count * interval
        else:
            if sample_index + count > len(deltas):
                raise FormatError(
                    TITLE,
                    "raw_timestamp_deltas",
                    f"{len(deltas)} deltas for more samples (raw[{end}] needs delta "
                    f"{sample_index + count - 1})",
                )
            if count == 1:  # the sum of one delta as NumPy makes it (from 0.0), without NumPy
                weight = 0.0 + delta_of[sample_index]
            else:
                weight = float(deltas[sample_index : sample_index + count].sum())
            sample_index += count
        if not math.isfinite(weight):
            raise FormatError(TITLE, f"raw[{end}]", "the sample weight is out of range")
        stacks.append(stack_id)
        weights.append(weight)
        previous = stack
        position = end + 1
    builder.add_samples(np.array(stacks, np.int32), np.array(weights, np.float64))
    return ProfileGroup(name, [builder.build()])


def _read_in_pieces(data: bytes) -> tuple[object, dict[str, np.ndarray]] | None:
    """The document with its number lists read a piece at a time, or None.

    ``raw``, ``raw_lines`` and ``raw_timestamp_deltas`` are read with
    `json_pieces.ListPieces` into arrays, used only where the skeleton holds
    their markers and their values are what the whole reading accepts (None
    sends the caller to it, which names the first bad value).
    """
    pieces = ListPieces(data)
    lists = {}
    for key, opener in _LIST_OPENERS.items():
        found = pieces.find(opener)
        if found is not None:
            array = pieces.read_numbers(found.end(), integers=key != "raw_timestamp_deltas")
            if array is None:
                return None
            lists[key] = array
    skeleton = pieces.skeleton()
    if not isinstance(skeleton, dict) or any(
        pieces.result(skeleton.get(key)) is not array for key, array in lists.items()
    ):
        return None
    deltas = lists.get("raw_timestamp_deltas", np.zeros(0))
    if any(len(array) and array.min() <= -(2**63) for key, array in lists.items()) or not (
        np.all(deltas >= 0) and np.all(deltas <= 1e300)
    ):
        return None  # beyond what the whole reading takes
    return skeleton, lists


class _FrameReader:
    """Builder frame ids for (frame id, line) pairs, each entry of ``frames`` checked once."""

    def __init__(self, builder: ProfileBuilder, frames: dict) -> None:
        self.builder = builder
        self.frames = frames
        self.ids: dict[tuple[int, int | None], int] = {}

    def frame(self, frame_id: int, line: int | None, position: int) -> int:
        """The builder frame of stackprof frame `frame_id` (at `line` when given), which is
        ``raw[position]``."""
        key = (frame_id, line)
        found = self.ids.get(key)
        if found is not None:
            return found
        entry = self.frames.get(str(frame_id))
        if not isinstance(entry, dict):
            problem = "is not in 'frames'" if entry is None else "is not an object in 'frames'"
            raise FormatError(TITLE, f"raw[{position}]", f"frame id {frame_id} {problem}")
        label = entry.get("name")
        file = entry.get("file")
        if line is None:
            line = entry.get("line")
        if label is None:
            label = "(unknown)"
        elif not isinstance(label, str):
            raise FormatError(
                TITLE,
                f"frames.{frame_id}.name",
                f"expected a string, got {describe_json_value(label)}",
            )
        if file is not None and not isinstance(file, str):
            raise FormatError(
                TITLE,
                f"frames.{frame_id}.file",
                f"expected a string, got {describe_json_value(file)}",
            )
        if line is not None and (
            not isinstance(line, int) or isinstance(line, bool) or not -_MAX_LINE < line < _MAX_LINE
        ):
            raise FormatError(
                TITLE,
                f"frames.{frame_id}.line",
                f"expected a line number, got {describe_json_value(line)}",
            )
        found = self.ids[key] = self.builder.frame(label, file or None, line)
        return found


def _integers(values: object, where: str) -> np.ndarray:
    """A JSON list of integers as an int64 array, or a FormatError naming the first bad entry."""
    if not isinstance(values, list):
        raise FormatError(TITLE, where, f"expected a list, got {describe_json_value(values)}")
    if set(map(type, values)) <= {int} and (
        not values or -(2**63) < min(values) <= max(values) < 2**63
    ):
        return np.array(values, np.int64)  # the usual case, checked at C speed
    for index, value in enumerate(values):
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) >= 2**63:
            raise FormatError(
                TITLE, f"{where}[{index}]", f"expected an integer, got {describe_json_value(value)}"
            )
    return np.array(values, np.int64)


def _numbers(values: object, where: str) -> np.ndarray:
    """A JSON list of finite non-negative numbers as a float array, or a FormatError naming the first bad one."""
    if not isinstance(values, list):
        raise FormatError(TITLE, where, f"expected a list, got {describe_json_value(values)}")
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1e300:
            raise FormatError(
                TITLE,
                f"{where}[{index}]",
                f"expected a non-negative number, got {describe_json_value(value)}",
            )
    return np.array(values, np.float64)


def _number(value: object, where: str) -> float:
    """A finite non-negative JSON number, or a FormatError naming `where`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1e300:
        raise FormatError(
            TITLE, where, f"expected a non-negative number, got {describe_json_value(value)}"
        )
    return float(value)

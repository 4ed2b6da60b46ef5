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
"""

from __future__ import annotations

import re

import numpy as np

from flamesight.formats.chrome_cpuprofile import describe_json_value, json_head_keys
from flamesight.formats.errors import FormatError, load_json
from flamesight.model import ProfileBuilder, ProfileGroup, Unit

NAME = "stackprof"
TITLE = "stackprof JSON"

_MODE = re.compile(rb'"mode"[ \t\r\n]*:[ \t\r\n]*"(?:cpu|wall|object|custom)"')
_GARBAGE_COLLECTION = "(garbage collection)"
_MAX_LINE = 2**62


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
    document = load_json(data, TITLE)
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
    raw = _integers(document.get("raw"), "raw")
    raw_lines = document.get("raw_lines")
    lines = None if raw_lines is None else _integers(raw_lines, "raw_lines")
    if lines is not None and len(lines) < len(raw):
        raise FormatError(TITLE, "raw_lines", f"{len(lines)} lines for {len(raw)} raw entries")
    interval = 0.0
    deltas = np.zeros(0)
    if mode == "cpu":
        interval = _number(document.get("interval"), "interval")
    elif mode != "object":
        deltas = _numbers(document.get("raw_timestamp_deltas"), "raw_timestamp_deltas")
    builder = ProfileBuilder(name, Unit.NONE if mode == "object" else Unit.MICROSECONDS)
    reader = _FrameReader(builder, frames)
    stacks: list[int] = []
    weights: list[float] = []
    previous: list[int] = []
    record_stacks: dict[tuple, tuple[list[int], int]] = {}  # (ids, lines) -> (frames, stack)
    sample_index = 0
    position = 0
    while position < len(raw):
        height = raw[position]
        end = position + 1 + height
        if height < 0 or end >= len(raw):
            raise FormatError(
                TITLE,
                f"raw[{position}]",
                f"a stack of {height} frames and its count do not fit in the {len(raw)} entries",
            )
        key = (
            tuple(raw[position + 1 : end]),
            None if lines is None else tuple(lines[position + 1 : end]),
        )
        known = record_stacks.get(key)
        if known is None:
            stack = [
                reader.frame(raw[at], None if lines is None else lines[at], f"raw[{at}]")
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
        count = raw[end]
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
            weight = float(deltas[sample_index : sample_index + count].sum())
            sample_index += count
        if not np.isfinite(weight):
            raise FormatError(TITLE, f"raw[{end}]", "the sample weight is out of range")
        stacks.append(stack_id)
        weights.append(weight)
        previous = stack
        position = end + 1
    builder.add_samples(np.array(stacks, np.int32), np.array(weights, np.float64))
    return ProfileGroup(name, [builder.build()])


class _FrameReader:
    """Builder frame ids for (frame id, line) pairs, each entry of ``frames`` checked once."""

    def __init__(self, builder: ProfileBuilder, frames: dict) -> None:
        self.builder = builder
        self.frames = frames
        self.ids: dict[tuple[int, int | None], int] = {}

    def frame(self, frame_id: int, line: int | None, where: str) -> int:
        """The builder frame of stackprof frame `frame_id` (at `line` when given)."""
        key = (frame_id, line)
        found = self.ids.get(key)
        if found is not None:
            return found
        entry = self.frames.get(str(frame_id))
        if not isinstance(entry, dict):
            problem = "is not in 'frames'" if entry is None else "is not an object in 'frames'"
            raise FormatError(TITLE, where, f"frame id {frame_id} {problem}")
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


def _integers(values: object, where: str) -> list[int]:
    """A JSON list of integers as Python ints, or a FormatError naming the first bad entry."""
    if not isinstance(values, list):
        raise FormatError(TITLE, where, f"expected a list, got {describe_json_value(values)}")
    if set(map(type, values)) <= {int} and (
        not values or -(2**63) < min(values) <= max(values) < 2**63
    ):
        return values  # the usual case, checked at C speed
    for index, value in enumerate(values):
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) >= 2**63:
            raise FormatError(
                TITLE, f"{where}[{index}]", f"expected an integer, got {describe_json_value(value)}"
            )
    return values


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

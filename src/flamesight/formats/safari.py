"""Safari / WebKit Web Inspector timeline recordings (JSON).

Safari writes one from the Web Inspector's Timelines tab ("Export" of a
recording with the JavaScript & Events instrument, ``*-recording.json``)::

    {"version": 1,
     "recording": {"displayName": "Timeline Recording 1",
                   "sampleStackTraces": [{"timestamp": 4.51, "stackFrames": [
                       {"name": "gamma", "url": "file:///simple.js", "line": 20, "column": 15},
                       ...]}, ...],
                   "sampleDurations": [0.001, ...], ...}}

Each sample's frames are listed innermost first; ``timestamp`` (seconds)
is when the sample ended and ``sampleDurations[i]`` how long it lasted.

The reading follows speedscope, the reference importer: one profile in
seconds named after the recording, samples laid end to end, a gap of more
than 2 ms between one sample's end and the next one's start kept as idle
time, frames named by their function or "(anonymous file:line)", with lines
and columns as Safari writes them (1-based).

A recording is first read with msgspec into only what matters: each
sample's end and the JSON text of its stack, which is read (and its frames
checked) once per distinct text; the other keys are skipped without being
built. Anything unusual (a type the fast reading does not take, a negative
duration, a bad frame) sends the file to the plain reading of the whole
document, whose checks name the place of the problem.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import orjson

from flamesight.formats.chrome_cpuprofile import (
    check_frame_fields,
    describe_json_value,
    frame_name,
    json_head_keys,
)
from flamesight.formats.errors import FormatError, load_json
from flamesight.formats.json_pieces import decode_typed_json
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit

NAME = "safari"
TITLE = "Safari timeline recording JSON"

IDLE_GAP_SECONDS = 0.002
"""A gap between samples longer than this is idle time (Safari's times do not line up exactly)."""

_MAX_INT = 2**31
_NO_FRAMES = msgspec.Raw(b"[]")


class _Trace(msgspec.Struct, gc=False):
    """A sample as the fast reading takes it: its end and its stack's JSON text."""

    timestamp: float
    stackFrames: msgspec.Raw = _NO_FRAMES


class _Recording(msgspec.Struct, gc=False):
    """The parts of a recording that make the profile."""

    displayName: object = None
    sampleStackTraces: list[_Trace] = []
    sampleDurations: list[float] = []


class _Document(msgspec.Struct, gc=False):
    """A recording file as the fast reading takes it."""

    recording: _Recording


def sniff(head: bytes) -> bool:
    """A JSON object with a ``recording`` that holds timeline sample stacks."""
    opener, keys, _ = json_head_keys(head, max_depth=2)
    if opener != b"{":
        return False
    top = [key for depth, key in keys if depth == 1]
    if "recording" not in top or "$schema" in top or "traceEvents" in top:
        return False
    after = keys[keys.index((1, "recording")) + 1 :]
    inner = {key for depth, key in after if depth == 2}
    return bool(inner & {"sampleStackTraces", "sampleDurations", "instrumentTypes"})


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a recording into a group of one profile named after the recording."""
    document = decode_typed_json(data, _Document)
    if document is not None:
        recording = document.recording
        del document
        title = recording.displayName
        title = title if isinstance(title, str) and title else name
        profile = _read_samples(recording, title)
        if profile is not None:
            return ProfileGroup(title, [profile])
    return _parse_whole(data, name)


def _read_samples(recording: _Recording, title: str) -> Profile | None:
    """The profile of a recording read by msgspec, or None for anything unusual."""
    traces = recording.sampleStackTraces
    durations = np.array(recording.sampleDurations[: len(traces)], np.float64)
    if len(durations) < len(traces) or np.any(durations < 0):
        return None
    builder = ProfileBuilder(title, Unit.SECONDS, sampled=True)
    frames: dict[tuple, int] = {}
    stack_of_text: dict[bytes, int] = {}
    trace_stacks = np.empty(len(traces), np.int64)
    for index, trace in enumerate(traces):
        text = bytes(trace.stackFrames)
        stack = stack_of_text.get(text)
        if stack is None:
            try:
                stack_frames = orjson.loads(text)
                if not isinstance(stack_frames, list):
                    return None
                stack = builder.stack_of(
                    _frame(builder, frames, frame, "stackFrames")
                    for frame in reversed(stack_frames)
                )
            except (orjson.JSONDecodeError, FormatError):
                return None
            stack_of_text[text] = stack
        trace_stacks[index] = stack
    ends = np.fromiter((trace.timestamp for trace in traces), np.float64, len(traces))
    with np.errstate(over="ignore", invalid="ignore"):  # as Python's floats: inf or nan
        idle = (ends[1:] - durations[1:]) - ends[:-1]
    gaps = np.flatnonzero(idle > IDLE_GAP_SECONDS)
    # the idle time before trace g + 1 goes right before its sample
    idle_at = gaps + 1 + np.arange(len(gaps))
    sample_at = np.arange(len(traces)) + np.searchsorted(gaps + 1, np.arange(len(traces)), "right")
    stacks = np.full(len(traces) + len(gaps), -1, np.int64)
    weights = np.empty(len(stacks), np.float64)
    stacks[sample_at], weights[sample_at] = trace_stacks, durations
    weights[idle_at] = idle[gaps]
    _add_samples(builder, stacks, weights)
    return builder.build()


def _add_samples(builder: ProfileBuilder, stacks: np.ndarray, weights: np.ndarray) -> None:
    """Add the samples that take time; refuse times that overflow."""
    keep = weights > 0
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(np.sum(weights[keep])):
            raise FormatError(TITLE, "$.recording", "the sample times run past the largest number")
    builder.add_samples(stacks[keep], weights[keep])


def _parse_whole(data: bytes, name: str) -> ProfileGroup:
    """The plain reading: the whole document as Python objects, checked sample by sample."""
    document = load_json(data, TITLE)
    root = _expect(document, dict, "$", "an object")
    recording = _expect(root.get("recording"), dict, "$.recording", "an object")
    title = recording.get("displayName")
    title = title if isinstance(title, str) and title else name
    traces = _expect(
        recording.get("sampleStackTraces", []), list, "$.recording.sampleStackTraces", "a list"
    )
    durations = _expect(
        recording.get("sampleDurations", []), list, "$.recording.sampleDurations", "a list"
    )
    if len(durations) < len(traces):
        raise FormatError(
            TITLE,
            "$.recording.sampleDurations",
            f"{len(durations):,} durations for {len(traces):,} samples",
        )
    builder = ProfileBuilder(title, Unit.SECONDS, sampled=True)
    frames: dict[tuple, int] = {}
    stacks = np.empty(2 * len(traces), np.int64)
    weights = np.empty(2 * len(traces), np.float64)
    count = 0
    previous_end = None
    for index, trace in enumerate(traces):
        where = f"$.recording.sampleStackTraces[{index}]"
        trace = _expect(trace, dict, where, "an object")
        end = _number(trace.get("timestamp"), f"{where}.timestamp")
        duration = _number(durations[index], f"$.recording.sampleDurations[{index}]")
        if duration < 0:
            raise FormatError(
                TITLE, f"$.recording.sampleDurations[{index}]", f"negative duration {duration!r}"
            )
        if previous_end is not None:
            idle = (end - duration) - previous_end
            if idle > IDLE_GAP_SECONDS:
                stacks[count], weights[count] = -1, idle
                count += 1
        previous_end = end
        stack_frames = _expect(trace.get("stackFrames", []), list, f"{where}.stackFrames", "a list")
        stack = -1
        for depth in range(len(stack_frames) - 1, -1, -1):
            stack = builder.stack(
                stack, _frame(builder, frames, stack_frames[depth], f"{where}.stackFrames[{depth}]")
            )
        stacks[count], weights[count] = stack, duration
        count += 1
    _add_samples(builder, stacks[:count], weights[:count])
    return ProfileGroup(title, [builder.build()])


def _frame(builder: ProfileBuilder, frames: dict[tuple, int], frame: object, where: str) -> int:
    frame = _expect(frame, dict, where, "a stack frame object")
    fields = (frame.get("name"), frame.get("url"), frame.get("line"), frame.get("column"))
    try:
        known = frames.get(fields)
    except TypeError:  # a list or object among the fields: reported below
        known = None
    if known is not None:
        return known
    function, url, line, col = fields
    check_frame_fields(
        TITLE,
        where,
        (("name", function), ("url", url)),
        (("line", line), ("column", col)),
        lowest=-_MAX_INT + 1,
    )
    function = frame_name(function, url, line)
    frame_id = frames[fields] = builder.frame(function, url or None, line, col)
    return frame_id


def _expect(value: object, kind: type, where: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise FormatError(TITLE, where, f"expected {what}, got {describe_json_value(value)}")
    return value


def _number(value: object, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise FormatError(TITLE, where, f"expected a number, got {describe_json_value(value)}")
    return float(value)

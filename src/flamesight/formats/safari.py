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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flamesight.formats.chrome_cpuprofile import (
    check_frame_fields,
    describe_json_value,
    frame_name,
    json_head_keys,
)
from flamesight.formats.errors import FormatError, load_json
from flamesight.model import ProfileBuilder, ProfileGroup, Unit

NAME = "safari"
TITLE = "Safari timeline recording JSON"

IDLE_GAP_SECONDS = 0.002
"""A gap between samples longer than this is idle time (Safari's times do not line up exactly)."""

_MAX_INT = 2**31


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
    keep = weights[:count] > 0
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(np.sum(weights[:count][keep])):
            raise FormatError(TITLE, "$.recording", "the sample times run past the largest number")
    builder.add_samples(stacks[:count][keep], weights[:count][keep])
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

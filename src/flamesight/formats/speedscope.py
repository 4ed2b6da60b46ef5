"""speedscope's own JSON file format: import and export.

The format (https://www.speedscope.app/file-format-schema.json) has shared
frames and a list of profiles, each either

- "sampled": ``samples`` (lists of frame indices, root first) and
  ``weights``, laid end to end from ``startValue``; or
- "evented": ``events`` of type "O" (open) and "C" (close) at times ``at``,
  which must nest and be in time order, every opened frame closed.

Files from speedscope 0.0.1 on are read (the oldest have no ``type`` on a
profile; its keys tell). `export` writes sampled profiles only: samples with
an empty stack carry idle time, and a gap between two samples is written as
an idle sample of the gap's length, since speedscope lays samples end to end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

import flamesight
from flamesight.formats.errors import FormatError, shorten
from flamesight.model import Frame, Profile, ProfileBuilder, ProfileGroup, Unit

NAME = "speedscope"
TITLE = "speedscope JSON"

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"
_UNITS = {unit.value: unit for unit in Unit}


def sniff(head: bytes) -> bool:
    """A JSON object that names speedscope's schema near its start."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"{") and b"speedscope.app/file-format-schema" in text


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a speedscope file into a group, one profile per entry of ``profiles``."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise FormatError(TITLE, f"byte {error.pos}", f"not valid JSON ({error.msg})") from None
    root = _expect(document, dict, "$")
    frames = _frames(_expect(root.get("shared", {"frames": []}), dict, "$.shared").get("frames"))
    entries = _expect(root.get("profiles"), list, "$.profiles")
    if not entries:
        raise FormatError(TITLE, "$.profiles", "the file has no profiles")
    profiles = []
    for index, entry in enumerate(entries):
        where = f"$.profiles[{index}]"
        entry = _expect(entry, dict, where)
        kind = entry.get("type", "evented" if "events" in entry else "sampled")
        builder = ProfileBuilder(
            _text(entry.get("name", f"profile {index + 1}"), f"{where}.name"),
            _unit(entry.get("unit", "none"), f"{where}.unit"),
            sampled=kind == "sampled",
        )
        start = _number(entry.get("startValue", 0), f"{where}.startValue")
        if kind == "sampled":
            _read_sampled(builder, entry, frames, start, where)
        elif kind == "evented":
            _read_evented(builder, entry, frames, where)
        else:
            raise FormatError(TITLE, f"{where}.type", f"unknown profile type {shorten(str(kind))}")
        profiles.append(builder.build())
    active = root.get("activeProfileIndex", 0)
    if not isinstance(active, int) or isinstance(active, bool) or not 0 <= active < len(profiles):
        active = 0
    group_name = root.get("name")
    return ProfileGroup(
        group_name if isinstance(group_name, str) and group_name else name, profiles, active
    )


def _read_sampled(
    builder: ProfileBuilder, entry: dict, frames: list[Frame], start: float, where: str
) -> None:
    samples = _expect(entry.get("samples"), list, f"{where}.samples")
    weights = _expect(entry.get("weights", [1] * len(samples)), list, f"{where}.weights")
    if len(weights) != len(samples):
        raise FormatError(
            TITLE, f"{where}.weights", f"{len(weights)} weights for {len(samples)} samples"
        )
    ids: dict[tuple[int, ...], int] = {}
    stacks = np.empty(len(samples), np.int32)
    for position, sample in enumerate(samples):
        path = tuple(_expect(sample, list, f"{where}.samples[{position}]"))
        try:
            stack = ids.get(path)
        except TypeError:  # an array or object among the indices: _frame_id names it below
            stack = None
        if stack is None:
            frame_ids = [
                _frame_id(builder, frames, index, f"{where}.samples[{position}][{depth}]")
                for depth, index in enumerate(path)
            ]
            stack = ids[path] = builder.stack_of(frame_ids)
        stacks[position] = stack
    values = np.array([_number(w, f"{where}.weights[{i}]") for i, w in enumerate(weights)])
    if len(values) and values.min() < 0:
        at = int(np.argmax(values < 0))
        raise FormatError(TITLE, f"{where}.weights[{at}]", "a weight is negative")
    with np.errstate(over="ignore", invalid="ignore"):
        ends = start + np.cumsum(values)
    if len(ends) and not np.isfinite(ends[-1]):
        at = int(np.argmin(np.isfinite(ends)))
        raise FormatError(
            TITLE, f"{where}.weights[{at}]", "the weights add up past the largest number"
        )
    times = ends - values
    builder.add_samples(stacks, values, times)


def _read_evented(builder: ProfileBuilder, entry: dict, frames: list[Frame], where: str) -> None:
    events = _expect(entry.get("events"), list, f"{where}.events")
    last = first = -np.inf
    frame_ids: dict[int, int] = {}
    for position, event in enumerate(events):
        place = f"{where}.events[{position}]"
        event = _expect(event, dict, place)
        at = _number(event.get("at"), f"{place}.at")
        if at < last:
            raise FormatError(
                TITLE, f"{place}.at", f"time {at} is before the previous event's {last}"
            )
        if first == -np.inf:
            first = at
        elif at - first == np.inf:
            raise FormatError(
                TITLE, f"{place}.at", f"time {at} is too far after the first event's {first}"
            )
        last = at
        index = event.get("frame")
        frame = frame_ids.get(index) if isinstance(index, int) else None
        if frame is None:
            frame = frame_ids[index] = _frame_id(builder, frames, index, f"{place}.frame")
        kind = event.get("type")
        if kind == "O":
            builder.enter(frame, at)
        elif kind == "C":
            open_frames = builder.open_frames
            if not open_frames or open_frames[-1] != frame:
                top = frames[index].name
                innermost = builder.frame_name(open_frames[-1]) if open_frames else "nothing"
                raise FormatError(
                    TITLE, place, f"closes {top!r} while {innermost!r} is the innermost open frame"
                )
            builder.leave(frame, at)
        else:
            raise FormatError(
                TITLE, f"{place}.type", f"expected 'O' or 'C', got {shorten(str(kind))}"
            )
    if builder.open_frames:
        raise FormatError(
            TITLE,
            f"{where}.events",
            f"{len(builder.open_frames)} frame(s) opened but never closed "
            f"(first: {builder.frame_name(builder.open_frames[0])!r})",
        )


def _frames(raw: Any) -> list[Frame]:
    entries = _expect(raw, list, "$.shared.frames")
    frames = []
    for index, entry in enumerate(entries):
        where = f"$.shared.frames[{index}]"
        entry = _expect(entry, dict, where)
        file = entry.get("file")
        frames.append(
            Frame(
                _text(entry.get("name"), f"{where}.name"),
                _text(file, f"{where}.file") if file is not None else None,
                _optional_int(entry.get("line"), f"{where}.line"),
                _optional_int(entry.get("col"), f"{where}.col"),
            )
        )
    return frames


def _frame_id(builder: ProfileBuilder, frames: list[Frame], index: Any, where: str) -> int:
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(frames):
        raise FormatError(
            TITLE, where, f"frame index {shorten(str(index))} is not in $.shared.frames"
        )
    return builder.frame(*frames[index])


def _expect(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind):
        wanted = {dict: "an object", list: "an array"}[kind]
        raise FormatError(TITLE, where, f"expected {wanted}, got {shorten(orjson.dumps(value))}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise FormatError(TITLE, where, f"expected a string, got {shorten(orjson.dumps(value))}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FormatError(TITLE, where, f"expected a number, got {shorten(orjson.dumps(value))}")
    number = float(value)
    if not np.isfinite(number):
        raise FormatError(TITLE, where, f"the number {value} is too large")
    return number


def _optional_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**62) < value < 2**62:
        raise FormatError(
            TITLE, where, f"expected a whole number, got {shorten(orjson.dumps(value))}"
        )
    return value


def _unit(value: Any, where: str) -> Unit:
    unit = _UNITS.get(value) if isinstance(value, str) else None
    if unit is None:
        raise FormatError(
            TITLE, where, f"unknown unit {shorten(str(value))} (one of {', '.join(_UNITS)})"
        )
    return unit


# export


def export(group: ProfileGroup) -> bytes:
    """The group as a speedscope file (sampled profiles), readable by speedscope and by `parse`."""
    frame_index: dict[Frame, int] = {}
    profiles = [_export_profile(profile, frame_index) for profile in group.profiles]
    frames = []
    for frame in frame_index:
        entry: dict[str, Any] = {"name": frame.name}
        if frame.file is not None:
            entry["file"] = frame.file
        if frame.line is not None:
            entry["line"] = frame.line
        if frame.col is not None:
            entry["col"] = frame.col
        frames.append(entry)
    document = {
        "$schema": SCHEMA_URL,
        "shared": {"frames": frames},
        "profiles": profiles,
        "name": group.name,
        "activeProfileIndex": group.active_index,
        "exporter": f"flamesight@{flamesight.__version__}",
    }
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def _export_profile(profile: Profile, frame_index: dict[Frame, int]) -> dict[str, Any]:
    shared = np.fromiter(
        (
            frame_index.setdefault(profile.frames[i], len(frame_index))
            for i in range(len(profile.frames))
        ),
        np.int64,
        len(profile.frames),
    )
    paths: dict[int, list[int]] = {-1: []}
    samples: list[list[int]] = []
    weights: list[float] = []
    cursor = profile.start
    stacks = profile.samples.stack.tolist()
    times = profile.samples.time.tolist()
    for stack, time, weight in zip(stacks, times, profile.samples.weight.tolist(), strict=True):
        if time > cursor:
            samples.append([])
            weights.append(time - cursor)
        path = paths.get(stack)
        if path is None:
            path = paths[stack] = shared[profile.stacks.frames_of(stack)].tolist()
        samples.append(path)
        weights.append(weight)
        cursor = max(cursor, time + weight)
    return {
        "type": "sampled",
        "name": profile.name,
        "unit": profile.unit.value,
        "startValue": profile.start,
        "endValue": profile.end,
        "samples": samples,
        "weights": weights,
    }

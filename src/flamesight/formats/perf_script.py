"""Linux perf: the text that ``perf script`` prints for a ``perf record -g`` recording.

Events are blocks separated by blank lines: a header line, then one line per
stack frame, innermost first::

    app  1234/1240 198792.736893:    1001001 cpu-clock:
                 643 compute (/usr/bin/app)
                 6f3 main (/usr/bin/app)

Read as speedscope reads it, which is the reference for the numbers:

- one profile per thread, named "COMMAND pid: P tid: T" (or "COMMAND tid: T"
  when perf printed no pid), in order of first appearance; the group takes
  the profile's name when there is one, else the file's;
- only events of the first event type met (``cpu-clock``, ``cycles``, ...)
  count, and events without a timestamp are skipped;
- a sample's weight is the time from the midpoint with the previous sample of
  its thread to the midpoint with the next one (the first starts at its own
  timestamp, the last ends there); a thread with a single sample gets weight
  1 in plain counts, since no duration can be known;
- a frame is its symbol with any ``+0x...`` offset dropped and its DSO as the
  file; an unknown symbol is shown as ``??? (DSO)``;
- Rust symbols are demangled (legacy ``_ZN...17h<hash>E`` and v0 ``_R...``,
  see `flamesight.formats.rust_symbols`); C++ names stay as perf printed them.

Times are seconds from the file's first event, so threads share one axis.
Comment lines (``#``) are ignored; events of one thread are ordered by time.
"""

from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from flamesight.formats.errors import FormatError, shorten
from flamesight.formats.rust_symbols import demangle_rust
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit

NAME = "perf_script"
TITLE = "perf script"

# "COMMAND PID[/TID] ... TIME: ... EVENT:"; the command may contain spaces.
_HEADER = re.compile(r"^(\S.+?)\s+(\d+)(?:/(\d+))?\s+")
_TIME = re.compile(r"\s+(\d+\.\d+):\s+")
_EVENT_TYPE = re.compile(r"(\S+):\s*$")
_ADDRESS = re.compile(r"\w+")
_OFFSET = re.compile(r"\+0x[\da-f]+$")
_SNIFF_EVENTS = 3
# perf prints commands of at most 16 characters: a longer header is not perf's,
# and the cap keeps the header patterns linear in the input.
_MAX_HEADER = 512
_MAX_ID_DIGITS = 18

_demangled = functools.lru_cache(maxsize=1 << 16)(demangle_rust)


@dataclass
class _Thread:
    """The samples of one thread, as (time, stack) pairs."""

    builder: ProfileBuilder
    times: list[float] = field(default_factory=list)
    stacks: list[int] = field(default_factory=list)


def _events(data: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """Yield (first line number, lines) of every blank-line separated block, comments dropped.

    Lines are read one at a time and stay bytes (decoded where needed): the
    whole text as one string, and as a list of line strings, would take
    several times the file's size.
    """
    block: list[bytes] = []
    start = 1
    for number, line in enumerate(io.BytesIO(data), 1):
        line = line.removesuffix(b"\n").removesuffix(b"\r")
        if line == b"":
            if block:
                yield start, block
            block = []
            start = number + 1
        elif not line.lstrip().startswith(b"#"):
            if not block:
                start = number
            block.append(line)
    if block:
        yield start, block


def _decoded(line: bytes) -> str:
    """A line as text (bytes that are not UTF-8 replaced)."""
    return line.decode("utf-8", "replace")


def _frame(line: str) -> tuple[str, str] | None:
    """(symbol, DSO) of a stack line "ADDRESS SYMBOL (DSO)", in linear time; None if it is not one."""
    parts = line.split(None, 1)
    if len(parts) != 2 or not _ADDRESS.fullmatch(parts[0]):
        return None
    rest = parts[1]
    opening = rest.rfind(" (")
    closing = rest.find(")", opening + 2)
    if opening <= 0 or closing < 0:
        return None
    dso = rest[opening + 2 : closing]
    if any(character.isspace() for character in dso):
        return None
    return _OFFSET.sub("", rest[:opening]), dso


def _header(line: str) -> tuple[re.Match[str], float, str] | None:
    """(command/thread match, timestamp, event type) of an event header line, or None."""
    if len(line) > _MAX_HEADER:
        return None
    start = _HEADER.match(line)
    timestamp = _TIME.search(line)
    if start is None or timestamp is None:
        return None
    kind = _EVENT_TYPE.search(line)
    return start, float(timestamp.group(1)), kind.group(1) if kind else ""


def sniff(head: bytes) -> bool:
    """The first events have a perf header line (command, thread, "seconds.micros:") and frame lines."""
    if b"\x00" in head:
        return False
    seen = 0
    for _, lines in _events(head):
        header = _header(_decoded(lines[0]))
        if header is None or not header[2]:
            return False
        if len(lines) > 1 and _frame(_decoded(lines[1])) is None:
            return False
        seen += 1
        if seen >= _SNIFF_EVENTS:
            break
    return seen > 0


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read ``perf script`` output into one profile per thread."""
    threads: dict[str, _Thread] = {}
    shown_frames: dict[bytes, tuple[str, str] | tuple[()]] = {}  # a call site's line recurs
    event_type: str | None = None
    for line_number, lines in _events(data):
        first = _decoded(lines[0])
        header = _header(first)
        if header is None:
            if not threads:
                raise FormatError(
                    TITLE,
                    f"line {line_number}",
                    "expected an event header 'COMMAND PID/TID TIME: EVENT:', "
                    f"got {shorten(first)}",
                )
            continue
        start, timestamp, kind = header
        if event_type is None:
            event_type = kind
        elif kind != event_type:
            continue
        if not math.isfinite(timestamp):
            raise FormatError(TITLE, f"line {line_number}", "the timestamp is out of range")
        thread = _thread(threads, start, line_number)
        builder = thread.builder
        frames = []
        for line in lines[1:]:
            shown = shown_frames.get(line)
            if shown is None:
                shown = shown_frames[line] = _shown_frame(_decoded(line))
            if shown:
                frames.append(builder.frame(*shown))
        frames.reverse()
        thread.times.append(timestamp)
        thread.stacks.append(builder.stack_of(frames))
    if not threads:
        raise FormatError(TITLE, "whole file", "no events with a timestamp")
    origin = min(min(t.times) for t in threads.values())
    profiles = [_build(thread, origin) for thread in threads.values()]
    group_name = profiles[0].name if len(profiles) == 1 else name
    return ProfileGroup(group_name, profiles)


def _shown_frame(line: str) -> tuple[str, str] | tuple[()]:
    """(name as shown, DSO) of a stack line, () if it is not one."""
    frame = _frame(line)
    if frame is None:
        return ()
    symbol, dso = frame
    return (f"??? ({dso})" if symbol == "[unknown]" else _demangled(symbol)), dso


def _thread(threads: dict[str, _Thread], header: re.Match[str], line_number: int) -> _Thread:
    """The thread an event header names, created on first sight."""
    command, first, second = header.groups()
    if max(len(first), len(second or "")) > _MAX_ID_DIGITS:
        raise FormatError(TITLE, f"line {line_number}", "the process or thread id is too large")
    pid, tid = (first, second) if second is not None else (None, first)
    parts = [command]
    if pid is not None and int(pid):
        parts.append(f"pid: {int(pid)}")
    if int(tid):
        parts.append(f"tid: {int(tid)}")
    profile_name = " ".join(parts)
    thread = threads.get(profile_name)
    if thread is None:
        thread = threads[profile_name] = _Thread(ProfileBuilder(profile_name, Unit.SECONDS))
    return thread


def _build(thread: _Thread, origin: float) -> Profile:
    """The thread's profile, each sample spanning midpoint to midpoint with its neighbours."""
    times = np.asarray(thread.times, np.float64)
    stacks = np.asarray(thread.stacks, np.int64)
    order = np.argsort(times, kind="stable")
    times, stacks = times[order], stacks[order]
    builder = thread.builder
    if len(times) == 1:
        builder.unit = Unit.NONE
        builder.add_samples(stacks, np.ones(1), times - origin)
        return builder.build()
    # Weights from the absolute timestamps, as speedscope computes them.
    middles = (times[1:] + times[:-1]) / 2
    starts = np.concatenate(([times[0]], middles))
    ends = np.concatenate((middles, [times[-1]]))
    builder.add_samples(stacks, ends - starts, starts - origin)
    return builder.build()

"""Papyrus script and stack profiling logs (Skyrim, Fallout 4 Creation Kit).

Produce one in the game console with ``StartPapyrusScriptProfile SCRIPT`` (or
``StartPapyrusStackProfile``, ``StartFormProfile``), or from a script with
``Debug.StartScriptProfiling``; the game writes ``Logs/Script/Profiling/*.log``::

    Script_example log opened (PC)
    500:PUSH:3053:1:exampleQuest (24021278):example_quest..exampleFunction1
    1500:POP:3053:1:exampleQuest (24021278):example_quest..exampleFunction1
    Log closed

Each event line is ``TIME:EVENT:STACK:DEPTH:FORM:FUNCTION`` with the time in
milliseconds. Read as speedscope's importer reads it, which is the
reference for the numbers: one evented profile named after the file, time
from the first event line; ``PUSH`` enters the function under a ``STACK n``
frame for its stack, ``POP`` leaves it when it is the innermost open frame (a
``POP`` of a frame never entered is taken as running since the start when
nothing else has happened yet, and is ignored otherwise); a ``POP`` at the
same time as its ``PUSH`` is taken right after it even if other lines come
between; a ``STACK`` frame closes with the last function on it unless it is
the outermost one, which stays open until a function runs on another stack;
``QUEUE_PUSH``/``QUEUE_POP``, ``START`` and ``STOP`` add no frames; frames
still open at the end close at the last line's time. Header lines (``...
log opened``, ``Log closed``) and blank lines are skipped.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from flamesight.formats.collapsed import as_utf8
from flamesight.formats.errors import FormatError, shorten
from flamesight.model import ProfileBuilder, ProfileGroup, Unit

NAME = "papyrus"
TITLE = "Papyrus profiling log"

_EVENT_LINE = re.compile(r"^\d+:(?:PUSH|POP|QUEUE_PUSH|QUEUE_POP|START|STOP):\d+(?::|$)")
_INTEGER = re.compile(r"\s*([-+]?\d{1,18})")
_SNIFF_LINES = 5


class _Line(NamedTuple):
    """One event line: time (from the first line), event, stack number and function name."""

    number: int
    at: int
    event: str
    stack: int
    name: str | None


def _skipped(line: str) -> bool:
    """Lines speedscope drops before reading: blank ones and the log's open/close lines."""
    return line == "" or line == "Log closed" or "log opened" in line


def sniff(head: bytes) -> bool:
    """The first lines are a "log opened" header and/or ``TIME:EVENT:STACK:...`` event lines."""
    text = as_utf8(head).decode("utf-8", "replace")
    if "\x00" in text:
        return False
    lines = text.splitlines()[: _SNIFF_LINES + 2]
    if len(head) >= 4096 and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut short
    events = [line for line in lines if not _skipped(line)]
    return bool(events) and all(_EVENT_LINE.match(line) for line in events[:_SNIFF_LINES])


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a Papyrus profiling log into one evented profile in milliseconds."""
    text = as_utf8(data).decode("utf-8", "replace")
    numbered = [
        (number, line)
        for number, line in enumerate(text.splitlines(), 1)
        if not _skipped(line.removesuffix("\r"))
    ]
    if not numbered:
        raise FormatError(TITLE, "whole file", "no event lines ('TIME:EVENT:STACK:...')")
    first = _parse_line(*numbered[0], 0)
    last = _parse_line(*numbered[-1], 0)
    for line in (first, last):
        if line is None:
            number, content = numbered[0] if line is first else numbered[-1]
            raise FormatError(
                TITLE, f"line {number}", f"expected 'TIME:EVENT:STACK:...', got {shorten(content)}"
            )
    assert first is not None and last is not None
    start = first.at
    lines = [_parse_line(number, content, start) for number, content in numbered]
    replay = _Replay(ProfileBuilder(name, Unit.MILLISECONDS, sampled=False))
    run_end = _same_time_runs(lines)
    # POP lines by (time, stack, name), to find the one that closes a PUSH at the same time;
    # each list runs from the last such line to the first, so the next one is at its end.
    pops: dict[tuple[int, int, str | None], list[int]] = {}
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if line is not None and line.event == "POP":
            pops.setdefault((line.at, line.stack, line.name), []).append(index)
    taken: set[int] = set()
    for index, line in enumerate(lines):
        if line is None or index in taken:
            continue
        if line.event == "PUSH":
            replay.enter(line.stack, line.at, _function(line))
            waiting = pops.get((line.at, line.stack, line.name))
            while waiting and waiting[-1] <= index:
                waiting.pop()  # POP lines already read in order
            if waiting and waiting[-1] < run_end[index]:
                position = waiting.pop()
                taken.add(position)
                match = lines[position]
                assert match is not None
                replay.try_leave(match.stack, match.at, _function(match))
        elif line.event == "POP":
            replay.try_leave(line.stack, line.at, _function(line))
    while replay.open:
        replay.leave(last.at - start)
    return ProfileGroup(name, [replay.builder.build()])


def _parse_line(number: int, content: str, start: int) -> _Line | None:
    """The fields of an event line, or None for a line of fewer than three fields."""
    fields = content.removesuffix("\r").split(":")
    if len(fields) < 3:
        return None
    values = []
    for field, what in ((fields[0], "time"), (fields[2], "stack number")):
        match = _INTEGER.match(field)
        if match is None:
            raise FormatError(TITLE, f"line {number}", f"expected a {what}, got {shorten(field)}")
        values.append(int(match.group(1)))
    return _Line(
        number, values[0] - start, fields[1], values[1], fields[5] if len(fields) > 5 else None
    )


def _function(line: _Line) -> str:
    """The function a PUSH or POP line names."""
    if line.name is None:
        raise FormatError(
            TITLE,
            f"line {line.number}",
            f"a {line.event} line needs six fields 'TIME:EVENT:STACK:DEPTH:FORM:FUNCTION'",
        )
    return line.name


def _same_time_runs(lines: list[_Line | None]) -> list[int]:
    """For every line, the index of the first later line that is not an event at the same time."""
    ends = [0] * len(lines)
    following = len(lines)
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        after = lines[index + 1] if index + 1 < len(lines) else None
        if line is not None and after is not None and after.at == line.at:
            ends[index] = following
        else:
            ends[index] = index + 1
        following = ends[index]
    return ends


class _Replay:
    """The open frames of the log, mirrored into an evented `ProfileBuilder`."""

    def __init__(self, builder: ProfileBuilder) -> None:
        self.builder = builder
        self.open: list[str] = []
        self.stack_frames: list[int] = []  # where in `open` the ``STACK n`` frames are
        self.last_event_at = 0

    def _push(self, at: int, name: str) -> None:
        if name.startswith("STACK "):
            self.stack_frames.append(len(self.open))
        self.open.append(name)
        self.builder.enter(self.builder.frame(name), at)
        self.last_event_at = at

    def enter(self, stack: int, at: int, name: str) -> None:
        """Enter function `name` of stack `stack`, under that stack's ``STACK n`` frame."""
        stack_frame = f"STACK {stack}"
        uppermost = self.open[self.stack_frames[-1]] if self.stack_frames else None
        if uppermost != stack_frame:
            if len(self.open) == 1:
                self.leave(self.last_event_at)
            self._push(at, stack_frame)
        self._push(at, name)

    def leave(self, at: int) -> None:
        """Leave the innermost frame, then any QUEUE frame and inner STACK frame it uncovers."""
        # speedscope's recursive leave as a loop: "pop" leaves one frame; "queue" and
        # "stack" are the checks that follow it.
        steps = ["pop"]
        while steps:
            step = steps.pop()
            if step == "pop":
                name = self.open.pop()
                if self.stack_frames and self.stack_frames[-1] == len(self.open):
                    self.stack_frames.pop()
                self.builder.leave(self.builder.frame(name), at)
                steps.append("stack")
                if self.open and self.open[-1].startswith("QUEUE "):
                    steps.append("pop")
            elif len(self.open) > 1 and self.open[-1].startswith("STACK "):
                steps.append("pop")
        self.last_event_at = at

    def try_leave(self, stack: int, at: int, name: str) -> None:
        """Leave `name` if it is the innermost frame; see the module docstring otherwise."""
        if self.open and self.open[-1] == name:
            self.leave(at)
        elif self.last_event_at == 0:
            self.enter(stack, 0, name)
            self.leave(at)

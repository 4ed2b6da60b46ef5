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

A log of event lines of six fields with plain numbers (as the game writes
them) is read as NumPy columns a few megabytes at a time (`_log_columns`);
the lines are put in the order the replay takes them (`_replay_order`), the
text is let go, and the lines are replayed from the columns, the usual
``PUSH`` and ``POP`` lines without a call each (`_Replay.replay_lines`). Any
other log, and one large enough to cross a cap, is read line by line in one
pass, a run of lines at one time at a time, which also reports errors.
Either way the frames entered and the samples are kept in compact arrays,
and the stack table is made from them at the end.
"""

from __future__ import annotations

import itertools
import re
from array import array
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from flamesight.formats.collapsed import as_utf8, text_lines
from flamesight.formats.errors import FormatError, shorten
from flamesight.formats.line_columns import interned_ids, line_blocks, line_bounds
from flamesight.model import (
    Profile,
    ProfileBuilder,
    ProfileGroup,
    StackTable,
    Unit,
    current_limits,
)
from flamesight.model.stack_building import tree_stacks

NAME = "papyrus"
TITLE = "Papyrus profiling log"

_EVENT_LINE = re.compile(r"^\d+:(?:PUSH|POP|QUEUE_PUSH|QUEUE_POP|START|STOP):\d+(?::|$)")
_MAX_DIGITS = 18
_INTEGER = re.compile(rf"\s*([-+]?\d{{1,{_MAX_DIGITS}}})")
_RARE_LINE_BREAKS = (
    b"\x0b",
    b"\x0c",
    b"\x1c",
    b"\x1d",
    b"\x1e",
    "\x85".encode(),
    "\u2028".encode(),
    "\u2029".encode(),
)
"""Line breaks of `str.splitlines` other than ``\n``, ``\r\n`` and ``\r``, in UTF-8."""
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
    """Read a Papyrus profiling log into one evented profile in milliseconds.

    A log of plain event lines is read as columns (`_log_columns`) and, the
    text let go, replayed from them (`_replay_columns`); any other in one
    pass over the lines, a run of lines at the same time at a time: a ``POP``
    that closes a ``PUSH`` at the same time is found within that run.
    """
    data = as_utf8(data)
    try:
        columns = _log_columns(data)
    except _Unusual:
        columns = None
    if columns is not None:
        del data  # the columns hold what the replay needs (`formats.load` keeps no reference)
        replay = _replay_columns(columns, name)
        del columns
        return ProfileGroup(name, [replay.build()])
    lines, last_line = _lines(data)
    del data
    events = ((number, line) for number, line in lines if not _skipped(line))
    first_line = next(events, None)
    if first_line is None or last_line is None:
        raise FormatError(TITLE, "whole file", "no event lines ('TIME:EVENT:STACK:...')")
    first = _parse_line(*first_line, 0)
    last = _parse_line(*last_line, 0)
    for line, (number, content) in ((first, first_line), (last, last_line)):
        if line is None:
            raise FormatError(
                TITLE, f"line {number}", f"expected 'TIME:EVENT:STACK:...', got {shorten(content)}"
            )
    assert first is not None and last is not None
    start = first.at
    replay = _Replay(ProfileBuilder(name, Unit.MILLISECONDS, sampled=False))
    run: list[_Line] = []
    for number, content in itertools.chain([first_line], events):
        line = _parse_line(number, content, start)
        if run and (line is None or line.at != run[0].at):
            _replay_run(replay, run, events, start)
            run = []
        if line is not None:
            run.append(line)
    _replay_run(replay, run, events, start)
    while replay.open:
        replay.leave(last.at - start)
    return ProfileGroup(name, [replay.build()])


class _Unusual(Exception):
    """Raised by `_log_columns` for a log it leaves to the line-by-line reading."""


_BLOCK_BYTES = 1 << 20
_LINES_AT_ONCE = 1 << 16
_PUSH, _POP = 1, 2  # event codes of `_event_columns`; others are 0


class _LogColumns(NamedTuple):
    """The event lines of a log as columns, and the order the replay takes them in."""

    times: np.ndarray  # from the first line's time
    events: np.ndarray
    stacks: np.ndarray
    name_ids: np.ndarray
    names: np.ndarray  # the function name of each name id
    order: np.ndarray


def _log_columns(data: bytes) -> _LogColumns:
    """The columns of a log whose lines (but the skipped ones) all have six fields and plain
    numbers, read with NumPy.

    Raises `_Unusual` for any other log (and so for errors, which the
    line-by-line reading reports at their line), and for one with so many
    lines that the replay might cross a cap (reported at its line too).
    """
    if not _newline_breaks_only(data):
        raise _Unusual
    names: dict[bytes, int] = {}
    blocks = [
        list(_event_columns(data[begin:end], names))
        for begin, end in line_blocks(data, 0, _BLOCK_BYTES)
    ]
    count = sum(len(block[0]) for block in blocks)
    limits = current_limits()
    # A sample per distinct time at most, and a frame per name and per ``STACK n`` line.
    if not count or count > limits.max_samples or count + len(names) > limits.max_frames:
        raise _Unusual
    times, events, stacks, name_ids = (_joined(blocks, column) for column in range(4))
    del blocks
    times -= times[0]
    orders = []
    index_type = np.int32 if len(times) < 2**31 else np.int64
    begin = 0
    while begin < len(times):
        # A block of whole runs of lines at one time, in the order the replay takes them.
        end = min(begin + _LINES_AT_ONCE, len(times))
        while end < len(times) and times[end] == times[end - 1]:
            end += 1
        block = slice(begin, end)
        order = _replay_order(events[block], stacks[block], name_ids[block], times[block])
        orders.append((order + begin).astype(index_type))
        begin = end
    texts = np.array([text.decode("utf-8", "replace") for text in names], object)
    return _LogColumns(times, events, stacks, name_ids, texts, np.concatenate(orders))


def _replay_columns(columns: _LogColumns, name: str) -> _Replay:
    """The lines of a log read as columns (`_log_columns`) replayed in order, every frame left
    at the end (the caller builds the profile once it lets go of the columns)."""
    times, events, stacks, name_ids, names, order = columns
    replay = _Replay(ProfileBuilder(name, Unit.MILLISECONDS, sampled=False))
    for begin in range(0, len(order), _LINES_AT_ONCE):
        lines = order[begin : begin + _LINES_AT_ONCE]
        replay.replay_lines(
            events[lines].tolist(),
            stacks[lines].tolist(),
            times[lines].tolist(),
            names[name_ids[lines]].tolist(),
        )
    closing = int(times[-1])  # the last line's time
    while replay.open:
        replay.leave(closing)
    return replay


def _joined(blocks: list[list[np.ndarray]], column: int) -> np.ndarray:
    """One column of all blocks joined, each block's part let go once copied."""
    joined = np.concatenate([block[column] for block in blocks])
    for block in blocks:
        block[column] = block[column][:0].copy()
    return joined


def _event_columns(
    block: bytes, names: dict[bytes, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Time, event code, stack and name id of every line of `block` not skipped; `_Unusual` if
    one is not a ``TIME:EVENT:STACK:DEPTH:FORM:FUNCTION`` line with plain numbers."""
    view, starts, ends = line_bounds(block)
    skipped = ends == starts
    for mark in (b"log opened", b"Log closed"):
        at = block.find(mark)
        while at >= 0:
            line = int(np.searchsorted(ends, at))
            if mark == b"log opened" or (at == starts[line] and ends[line] - at == len(mark)):
                skipped[line] = True
            at = block.find(mark, at + 1)
    starts, ends = starts[~skipped], ends[~skipped]
    colons = np.flatnonzero(view == ord(":"))
    first = np.searchsorted(colons, starts)
    count = np.searchsorted(colons, ends) - first
    if np.any(count < 5):
        raise _Unusual
    colons = np.append(colons, len(block))
    c1, c2, c3, c5 = (colons[first + k] for k in (0, 1, 2, 4))
    c6 = np.where(count > 5, colons[first + 5], ends)
    length = c2 - c1 - 1
    letters = [view[np.minimum(c1 + k, len(block) - 1)] for k in range(1, 5)]
    events = np.where((length == 4) & _spells(letters, b"PUSH"), _PUSH, 0)
    events[(length == 3) & _spells(letters[:3], b"POP")] = _POP
    texts = list(map(block.__getitem__, map(slice, (c5 + 1).tolist(), c6.tolist())))
    name_ids = interned_ids(texts, names)
    times, stacks = _numbers(view, starts, c1), _numbers(view, c2 + 1, c3)
    return _narrow(times), events.astype(np.int8), _narrow(stacks), name_ids


def _narrow(values: np.ndarray) -> np.ndarray:
    """Non-negative `values` as int32 when they fit (joined blocks are widened back as needed)."""
    return values.astype(np.int32) if len(values) and values.max() < 2**31 else values


def _spells(letters: list[np.ndarray], word: bytes) -> np.ndarray:
    """Whether the bytes `letters` (one array per position) spell `word`."""
    result = letters[0] == word[0]
    for letter, expected in zip(letters[1:], word[1:], strict=True):
        result &= letter == expected
    return result


def _numbers(view: np.ndarray, begins: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The numbers in ``view[begins:ends]``; `_Unusual` unless each is 1 to 18 plain digits."""
    lengths = ends - begins
    if len(lengths) and (lengths.min() < 1 or lengths.max() > _MAX_DIGITS):
        raise _Unusual
    values = np.zeros(len(begins), np.int64)
    for offset in range(int(lengths.max()) if len(lengths) else 0):
        live = lengths > offset
        digit = view[np.where(live, begins + offset, 0)].astype(np.int64) - ord("0")
        if np.any(live & ((digit < 0) | (digit > 9))):
            raise _Unusual
        values = np.where(live, values * 10 + digit, values)
    return values


def _replay_order(
    events: np.ndarray, stacks: np.ndarray, name_ids: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """The lines in the order the replay takes them.

    After a PUSH the replay takes the first POP of the same stack and name
    in its run of lines at one time not taken yet (the POPs of one key go to
    its PUSHes first come, first served), then goes on with the lines after
    the PUSH not taken yet.
    """
    runs = np.concatenate([[0], np.cumsum(times[1:] != times[:-1])])
    calls = np.flatnonzero(events != 0)
    key = (
        runs[calls].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        + stacks[calls].astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
        + name_ids[calls].astype(np.uint64)
    )
    # The PUSH and POP lines of one key together, in file order.
    order = calls[np.argsort(key, kind="stable")]
    count = len(order)
    if not count:
        return np.arange(len(events))
    key.sort(kind="stable")
    group = np.concatenate([[0], np.cumsum(key[1:] != key[:-1])])
    del key, calls
    push = events[order] == _PUSH
    starts = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
    # A POP is taken if a PUSH of its key before it is still waiting: the balance of
    # PUSHes and POPs since the key's first line, never below zero.
    balance = _since_group_start(np.where(push, 1, -1), starts)
    spread = 2 * count + 1  # keeps each key's running minimum apart
    lowest = np.minimum.accumulate(balance - spread * group) + spread * group
    waiting = balance - np.minimum(lowest, 0)
    before = np.concatenate([[0], waiting[:-1]])
    before[starts] = 0
    taken = ~push & (before > 0)
    # The n-th POP taken of a key goes to the n-th PUSH of that key.
    push_at = np.flatnonzero(push)
    taken_at = np.flatnonzero(taken)
    first_push = np.searchsorted(group[push_at], group[taken_at])
    rank = _since_group_start(taken.astype(np.int64), starts)[taken_at] - 1
    line = order[push_at[first_push + rank]]
    partner = order[taken_at]
    same = (
        (runs[partner] == runs[line])
        & (stacks[partner] == stacks[line])
        & (name_ids[partner] == name_ids[line])
    )
    if not np.all(same):
        raise _Unusual  # keys that only look alike
    place = np.arange(len(events)) * 2
    place[partner] = line * 2 + 1
    return np.argsort(place, kind="stable")


def _since_group_start(steps: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Running sums of `steps`, starting again at every position in `starts` (the first is 0)."""
    running = np.cumsum(steps)
    before = running[starts] - steps[starts]
    return running - np.repeat(before, np.diff(np.append(starts, len(steps))))


def _newline_breaks_only(data: bytes) -> bool:
    """Whether `str.splitlines` breaks the text only at ``\n`` (or ``\r\n``)."""
    # A byte is found at memchr speed; a longer mark is searched for only where its first byte is.
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return False
    return not any(mark[:1] in data and mark in data for mark in _RARE_LINE_BREAKS)


def _lines(data: bytes) -> tuple[Iterable[tuple[int, str]], tuple[int, str] | None]:
    """Every line, numbered from 1, and the last line that is not skipped (None if none is).

    Lines end as `str.splitlines` ends them. Where that is at ``\n`` (or
    ``\r\n``) only, as in every log the game writes, they are decoded one at a time.
    """
    if not _newline_breaks_only(data):
        every = data.decode("utf-8", "replace").splitlines()
        last = next(
            ((n, line) for n, line in reversed(list(enumerate(every, 1))) if not _skipped(line)),
            None,
        )
        return enumerate(every, 1), last
    number = data.count(b"\n") + (not data.endswith(b"\n"))
    end = len(data) - data.endswith(b"\n")
    last = None
    while number > 0:
        begin = data.rfind(b"\n", 0, end) + 1
        line = data[begin:end].decode("utf-8", "replace").removesuffix("\r")
        if not _skipped(line):
            last = (number, line)
            break
        number, end = number - 1, begin - 1
    return enumerate(text_lines(data), 1), last


def _parse_line(number: int, content: str, start: int) -> _Line | None:
    """The fields of an event line, or None for a line of fewer than three fields."""
    fields = content.removesuffix("\r").split(":")
    if len(fields) < 3:
        return None
    time, stack = fields[0], fields[2]
    return _Line(
        number,
        _integer(time, "time", number) - start,
        fields[1],
        _integer(stack, "stack number", number),
        fields[5] if len(fields) > 5 else None,
    )


def _integer(field: str, what: str, number: int) -> int:
    """The number a time or stack field starts with."""
    if field.isdigit() and field.isascii() and len(field) <= _MAX_DIGITS:
        return int(field)  # the usual field, without the pattern
    match = _INTEGER.match(field)
    if match is None:
        raise FormatError(TITLE, f"line {number}", f"expected a {what}, got {shorten(field)}")
    return int(match.group(1))


def _replay_run(
    replay: _Replay, run: list[_Line], rest: Iterable[tuple[int, str]], start: int
) -> None:
    """Replay a run of event lines at one time; a ``POP`` closing a ``PUSH`` is taken right after it.

    A line that cannot be replayed is reported only once the rest of the file
    has been read, since a later line that cannot be read is reported first.
    """
    # POP lines by (stack, name), each list from the last line to the first.
    pops: dict[tuple[int, str | None], list[int]] = {}
    for index in range(len(run) - 1, 0, -1):
        if run[index].event == "POP":
            pops.setdefault((run[index].stack, run[index].name), []).append(index)
    taken: set[int] = set()
    try:
        for index, line in enumerate(run):
            if index in taken:
                continue
            if line.event == "PUSH":
                function = _function(line)
                replay.enter(line.stack, line.at, function)
                waiting = pops.get((line.stack, function))
                while waiting and waiting[-1] <= index:
                    waiting.pop()  # POP lines already read in order
                if waiting:
                    taken.add(waiting.pop())
                    replay.try_leave(line.stack, line.at, function)
            elif line.event == "POP":
                replay.try_leave(line.stack, line.at, _function(line))
    except FormatError:
        for number, content in rest:
            if not _skipped(content):
                _parse_line(number, content, start)
        raise


def _function(line: _Line) -> str:
    """The function a PUSH or POP line names."""
    if line.name is None:
        raise FormatError(
            TITLE,
            f"line {line.number}",
            f"a {line.event} line needs six fields 'TIME:EVENT:STACK:DEPTH:FORM:FUNCTION'",
        )
    return line.name


class _Replay:
    """The open frames of the log, turned into the samples `ProfileBuilder.enter`/`leave` make.

    Frames are interned by the builder. Every frame entered is kept as its
    parent and frame in compact arrays, and the samples as the frame entered
    last: stacks are interned from them at the end (`build`), in the order
    the builder's `stack` would number them. A log often has a stack per line
    or two (every ``STACK n`` frame starts a new tree), so a table of them
    while reading would take several times the log's size.
    """

    def __init__(self, builder: ProfileBuilder) -> None:
        self.builder = builder
        self.open: list[str] = []
        self.open_entries: list[int] = []  # the entry (below) of each open frame
        self.stack_frames: list[int] = []  # where in `open` the ``STACK n`` frames are
        self.uppermost: str | None = None  # the innermost ``STACK n`` frame
        self.last_event_at = 0
        self.frames: dict[str, int] = {}
        self.stack_names: set[str] = set()  # the names of ``STACK n`` frames entered
        self.queue_names: set[str] = set()  # and of ``QUEUE ...`` frames
        self.stack_labels: dict[int, str] = {}
        self.entry_parents = array("i")  # every frame entered: the entry it was entered on
        self.entry_frames = array("i")
        self.last_time: int | None = None
        self.limits = current_limits()
        self.sample_entries = array("i")
        self.sample_times = array("q")  # each sample runs to the next one's time (or `last_time`)

    def _advance(self, time: int) -> None:
        """The builder's step to `time`: a sample of the open stack since the previous event."""
        last = self.last_time
        if last is not None and time > last:
            self.sample_entries.append(self.open_entries[-1] if self.open_entries else -1)
            self.sample_times.append(last)
            self.limits.check_samples(len(self.sample_times))
        self.last_time = time

    def _push(self, at: int, name: str) -> None:
        open_entries = self.open_entries
        frame = self.frames.get(name)
        if frame is None:
            frame = self.frames[name] = self.builder.frame(name)
            if name.startswith("STACK "):
                self.stack_names.add(name)
            elif name.startswith("QUEUE "):
                self.queue_names.add(name)
        if name in self.stack_names:
            self.stack_frames.append(len(open_entries))
            self.uppermost = name
        if self.last_time is None or at > self.last_time:
            self._advance(at)
        entry_frames = self.entry_frames
        self.entry_parents.append(open_entries[-1] if open_entries else -1)
        open_entries.append(len(entry_frames))
        entry_frames.append(frame)
        self.open.append(name)
        self.last_event_at = at

    def enter(self, stack: int, at: int, name: str) -> None:
        """Enter function `name` of stack `stack`, under that stack's ``STACK n`` frame."""
        stack_frame = self.stack_labels.get(stack)
        if stack_frame is None:
            stack_frame = self.stack_labels[stack] = f"STACK {stack}"
        if self.uppermost != stack_frame:
            if len(self.open) == 1:
                self.leave(self.last_event_at)
            self._push(at, stack_frame)
        self._push(at, name)

    def leave(self, at: int) -> None:
        """Leave the innermost frame, then any QUEUE frame and inner STACK frame it uncovers."""
        if self.last_time is None or at > self.last_time:
            self._advance(at)  # once: the frames below are left at the same time
        # speedscope's recursive leave as a loop: leaving a frame goes on while the
        # frame below is a QUEUE frame, or a STACK frame that is not the outermost.
        open_, open_entries, stack_frames = self.open, self.open_entries, self.stack_frames
        while True:
            open_.pop()
            open_entries.pop()
            if stack_frames and stack_frames[-1] == len(open_):
                stack_frames.pop()
                self.uppermost = open_[stack_frames[-1]] if stack_frames else None
            if not open_:
                break
            top = open_[-1]
            if top not in self.queue_names and (len(open_) == 1 or top not in self.stack_names):
                break
        self.last_event_at = at

    def replay_lines(
        self, events: list[int], stacks: list[int], times: list[int], functions: list[str]
    ) -> None:
        """Replay event lines read as columns (event codes of `_event_columns`), in order.

        A ``PUSH`` of a function on the stack running, and a ``POP`` of the
        innermost function that uncovers another function, are done here
        without calls (a sample when the time moves on, the frame entered or
        left); anything else by `enter` and `try_leave`. No cap is checked:
        `_log_columns` takes only logs too small to cross one.
        """
        labels, frames, stack_names = self.stack_labels, self.frames, self.stack_names
        open_, open_entries, entry_frames = self.open, self.open_entries, self.entry_frames
        for event, stack, at, function in zip(events, stacks, times, functions, strict=True):
            last = self.last_time
            if event == _PUSH:
                frame = frames.get(function)
                label = labels.get(stack)
                usual = (
                    frame is not None
                    and label is not None
                    and label is self.uppermost
                    and function not in stack_names
                )
            elif event == _POP:
                usual = (
                    len(open_) > 1
                    and open_[-1] == function
                    and function not in stack_names
                    and open_[-2] not in stack_names
                    and open_[-2] not in self.queue_names
                )
            else:
                continue
            if not usual or last is None:
                (self.enter if event == _PUSH else self.try_leave)(stack, at, function)
                continue
            if at > last:
                self.sample_entries.append(open_entries[-1])
                self.sample_times.append(last)
                self.last_time = at
            if event == _PUSH:
                self.entry_parents.append(open_entries[-1])
                open_entries.append(len(entry_frames))
                entry_frames.append(frame)
                open_.append(function)
            else:
                open_.pop()
                open_entries.pop()
            self.last_event_at = at

    def try_leave(self, stack: int, at: int, name: str) -> None:
        """Leave `name` if it is the innermost frame; see the module docstring otherwise."""
        if self.open and self.open[-1] == name:
            self.leave(at)
        elif self.last_event_at == 0:
            self.enter(stack, 0, name)
            self.leave(at)

    def build(self) -> Profile:
        """The profile: the samples in time order, as the replay makes them (each one runs from
        the time the one before ended)."""
        # The entries are made in depth-first order (each on the one open when it is entered).
        parents = np.frombuffer(self.entry_parents, np.int32)
        frames = np.frombuffer(self.entry_frames, np.int32)
        stack_table, stack_of_entry = tree_stacks(StackTable(parents, frames).depth, frames)
        stack_of_entry = np.append(stack_of_entry, np.int32(-1))  # entry -1: no stack
        del parents, frames
        self.entry_parents, self.entry_frames = array("i"), array("i")
        stacks = stack_of_entry[np.frombuffer(self.sample_entries, np.int32)]
        starts = np.frombuffer(self.sample_times, np.int64)
        ends = np.append(starts[1:], self.last_time) if len(starts) else starts
        times, weights = starts.astype(np.float64), (ends - starts).astype(np.float64)
        self.sample_entries, self.sample_times = array("i"), array("q")
        self.builder.add_samples(stacks, weights, times)
        return self.builder.build(stack_table)

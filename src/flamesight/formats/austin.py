"""Austin: the text output of the Austin frame stack sampler for CPython (version 3 on).

Produce it with ``austin -o run.austin python script.py`` (``-s`` for CPU
time, ``-m`` for memory, ``-f`` for the full set of metrics), or with
``austin -p PID``. The file is collapsed stacks with a header::

    # austin: 3.6.0
    # interval: 100
    # mode: wall

    P4317;T0:7ffb7f8b0700;/app/main.py:<module>:1;/app/main.py:work:12 1042

Every sample line is ``P<pid>;T<thread>`` then the frames, outermost first,
each ``FILE:FUNCTION:LINE``, then a space and the metric: microseconds in
``wall`` and ``cpu`` mode, bytes in ``memory`` mode, and in ``full`` mode
the comma-separated time, idle flag and memory, of which the time is taken.
Comment lines (``# key: value``, before and after the samples) become the
profile's metadata; blank lines are skipped.

speedscope has no Austin importer (it would read the file as plain
collapsed stacks); flamesight gives each process/thread pair one profile,
named "process PID thread TID", in order of first appearance, its samples
laid end to end in file order (memory samples of freed memory, negative,
are left out), frames with their file and line. The text is decoded as
the collapsed-stacks importer decodes it (UTF-16 by byte-order mark, UTF-8
otherwise); plain collapsed files (without Austin's header or ``P;T``
prefixes) stay with the collapsed-stacks importer, which comes after this
one.
"""

from __future__ import annotations

import re
from array import array

import numpy as np

from flamesight.formats.collapsed import as_utf8
from flamesight.formats.errors import FormatError, shorten
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit

NAME = "austin"
TITLE = "Austin"

_HEADER = re.compile(r"#\s*(austin|mode)\s*:", re.IGNORECASE)
_META = re.compile(r"#\s*([\w ]+?)\s*:\s*(.*)")
_METRIC = re.compile(r"-?\d{1,15}(?:,-?\d{1,15})*")
_PROCESS = re.compile(r"P\d+")
# a metric in ASCII whose first number (the weight) is not negative
_PLAIN_METRIC = re.compile(rb"(\d{1,15})(?:,-?\d{1,15})*")
_SNIFF_LINES = 50


def sniff(head: bytes) -> bool:
    """An Austin header (``# austin:`` or ``# mode:``) or ``P<pid>;T<tid>;...`` sample lines."""
    text = as_utf8(head).decode("utf-8", "replace")
    if "\x00" in text:
        return False
    lines = [line.strip() for line in text.splitlines()[:_SNIFF_LINES] if line.strip()]
    if len(head) >= 4096 and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut short
    if any(_HEADER.match(line) for line in lines if line.startswith("#")):
        return True
    samples = [line for line in lines if not line.startswith("#")]
    return bool(samples) and all(_sample_fields(line) is not None for line in samples)


def _sample_fields(line: str) -> tuple[str, str, list[str], str] | None:
    """(process, thread, frames, metric) of a sample line, in linear time; None if it is not one."""
    stack, _, metric = line.rpartition(" ")
    if not stack or not _METRIC.fullmatch(metric):
        return None
    parts = stack.split(";")
    if len(parts) < 2 or not _PROCESS.fullmatch(parts[0]) or not parts[1].startswith("T"):
        return None
    return parts[0][1:], parts[1][1:], parts[2:], metric


class _Thread:
    """The samples of one process/thread pair."""

    def __init__(self, name: str, unit: Unit) -> None:
        self.builder = ProfileBuilder(name, unit)
        self.stacks = array("i")
        self.weights = array("d")
        self.frame_ids: dict[str, int] = {}  # frame text -> builder frame

    def stack(self, frames: list[str]) -> int:
        """The stack of frame texts, outermost first."""
        builder, frame_ids = self.builder, self.frame_ids
        stack = -1
        for text in frames:
            frame = frame_ids.get(text)
            if frame is None:
                frame = frame_ids[text] = builder.frame(*_frame(text))
            stack = builder.stack(stack, frame)
        return stack

    def build(self, metadata: dict[str, object]) -> Profile:
        """The thread's profile, samples end to end."""
        self.builder.add_samples(
            np.frombuffer(self.stacks, np.int32), np.frombuffer(self.weights, np.float64)
        )
        self.builder.metadata.update(metadata)
        return self.builder.build()


class _Reader:
    """The profiles of an Austin file, read a line of text at a time."""

    def __init__(self) -> None:
        self.metadata: dict[str, object] = {}
        self.threads: dict[tuple[str, str], _Thread] = {}
        self.mode = "wall"

    def line(self, raw_line: str, number: int) -> tuple[_Thread, int] | None:
        """Read line `number`; for a sample that counts, its thread and stack."""
        line = raw_line.strip()
        if not line:
            return None
        if line.startswith("#"):
            match = _META.fullmatch(line)
            if match:
                key = match.group(1).lower()
                self.metadata[key] = match.group(2)
                if key == "mode" and not self.threads:
                    self.mode = match.group(2).strip().lower()
            return None
        fields = _sample_fields(line)
        if fields is None:
            raise FormatError(
                TITLE,
                f"line {number}",
                f"expected 'P<pid>;T<thread>;file:function:line;... <metric>', got {shorten(line)}",
            )
        process, thread_id, frames, metric = fields
        thread = self.threads.get((process, thread_id))
        if thread is None:
            unit = Unit.BYTES if self.mode == "memory" else Unit.MICROSECONDS
            thread = self.threads[(process, thread_id)] = _Thread(
                f"process {process} thread {thread_id}", unit
            )
        weight = float(metric.split(",", 1)[0])
        if weight < 0:
            return None  # freed memory
        stack = thread.stack(frames)
        thread.stacks.append(stack)
        thread.weights.append(weight)
        return thread, stack


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read Austin output into one profile per process/thread pair.

    The text is read a line at a time, as bytes. A sample line's stack text
    (all but the metric) is remembered with the sample's thread and stack, so
    a later line with the same stack text and a plain metric only adds its
    weight; any other line is decoded and split as `str.splitlines` splits it
    (a newline is never part of a UTF-8 sequence), so line numbers and
    separators such as ``\\r`` or ``\\x0b`` count as before.
    """
    text = as_utf8(data)
    del data  # a UTF-16 file's own bytes are not needed once re-encoded
    reader = _Reader()
    # Stack texts are keyed by views of the text, not copies: a file of mostly
    # distinct stacks would otherwise hold its text twice.
    view = memoryview(text)
    known: dict[memoryview, tuple[_Thread, int]] = {}  # stack text -> thread and stack
    number = 0
    position = 0
    while position < len(text):
        newline = text.find(b"\n", position)
        end = len(text) if newline < 0 else newline
        following = end + 1
        if text.endswith(b"\r", position, end):
            end -= 1
        space = text.rfind(b" ", position, end)
        metric = _PLAIN_METRIC.fullmatch(text, space + 1, end) if space >= 0 else None
        stack_text = view[position:space] if metric else None
        sample = known.get(stack_text)
        if sample is not None:
            thread, stack = sample
            thread.stacks.append(stack)
            thread.weights.append(float(metric.group(1)))
            number += 1
        else:
            lines = text[position:following].decode("utf-8", "replace").splitlines()
            for line in lines:
                number += 1
                sample = reader.line(line, number)
            if metric and len(lines) == 1 and sample is not None:
                known[stack_text] = sample
        position = following
    if not reader.threads:
        raise FormatError(TITLE, "whole file", "no sample lines ('P<pid>;T<thread>;... <metric>')")
    return ProfileGroup(name, [thread.build(reader.metadata) for thread in reader.threads.values()])


def _frame(text: str) -> tuple[str, str | None, int | None]:
    """(function, file, line) of an Austin frame ``FILE:FUNCTION:LINE`` (the file may hold colons)."""
    parts = text.rsplit(":", 2)
    if len(parts) == 3 and parts[2].isdigit() and len(parts[2]) < 18:
        file, function, line = parts
        return function, file or None, int(line) or None
    return text, None, None

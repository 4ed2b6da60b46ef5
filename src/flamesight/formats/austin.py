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

import io
import re
from collections.abc import Iterator

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
        self.stacks: list[int] = []
        self.weights: list[float] = []
        self.stack_ids: dict[tuple[str, ...], int] = {}

    def build(self, metadata: dict[str, object]) -> Profile:
        """The thread's profile, samples end to end."""
        self.builder.add_samples(
            np.array(self.stacks, np.int32), np.array(self.weights, np.float64)
        )
        self.builder.metadata.update(metadata)
        return self.builder.build()


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read Austin output into one profile per process/thread pair."""
    metadata: dict[str, object] = {}
    threads: dict[tuple[str, str], _Thread] = {}
    mode = "wall"
    for number, raw_line in enumerate(_lines(as_utf8(data)), 1):
        line = raw_line.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = _META.fullmatch(line)
            if match:
                key = match.group(1).lower()
                metadata[key] = match.group(2)
                if key == "mode" and not threads:
                    mode = match.group(2).strip().lower()
            continue
        fields = _sample_fields(line)
        if fields is None:
            raise FormatError(
                TITLE,
                f"line {number}",
                f"expected 'P<pid>;T<thread>;file:function:line;... <metric>', got {shorten(line)}",
            )
        process, thread_id, frames, metric = fields
        thread = threads.get((process, thread_id))
        if thread is None:
            unit = Unit.BYTES if mode == "memory" else Unit.MICROSECONDS
            thread = threads[(process, thread_id)] = _Thread(
                f"process {process} thread {thread_id}", unit
            )
        weight = float(metric.split(",", 1)[0])
        if weight < 0:
            continue  # freed memory
        key = tuple(frames)
        stack = thread.stack_ids.get(key)
        if stack is None:
            builder = thread.builder
            stack = thread.stack_ids[key] = builder.stack_of(
                builder.frame(*_frame(frame)) for frame in frames
            )
        thread.stacks.append(stack)
        thread.weights.append(weight)
    if not threads:
        raise FormatError(TITLE, "whole file", "no sample lines ('P<pid>;T<thread>;... <metric>')")
    return ProfileGroup(name, [thread.build(metadata) for thread in threads.values()])


def _lines(data: bytes) -> Iterator[str]:
    """The lines `str.splitlines` finds in the decoded text, decoded one line at a time
    (a newline is never part of a UTF-8 sequence), so the whole text is never a string."""
    for raw in io.BytesIO(data):
        yield from raw.decode("utf-8", "replace").splitlines()


def _frame(text: str) -> tuple[str, str | None, int | None]:
    """(function, file, line) of an Austin frame ``FILE:FUNCTION:LINE`` (the file may hold colons)."""
    parts = text.rsplit(":", 2)
    if len(parts) == 3 and parts[2].isdigit() and len(parts[2]) < 18:
        file, function, line = parts
        return function, file or None, int(line) or None
    return text, None, None

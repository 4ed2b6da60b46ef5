"""pmcstat callgraph text: FreeBSD's hardware-counter sampling profiler.

Produced by ``pmcstat -S inst_retired.any -O samples.pmc ./app`` then
``pmcstat -R samples.pmc -G callgraph.txt``. Each block starts at a sampled
function and lists its callers below it, one more space of indent per level::

    @ inst_retired.any [35705 samples]

    20.86%  [7447]     zfs_lz4_compress @ /boot/kernel/zfs.ko
     100.0%  [7447]      zio_compress_data
      100.0%  [7447]       zio_write_compress @ /boot/kernel/kernel

Read as speedscope reads it: every chain from a sampled function down to its
deepest caller is one sample group, root (the last line) first, weighted by
the count in brackets on its deepest line; a line at the same or a smaller
indent than the one before ends the chain above it. A line without
``@ object`` keeps the object of the line before. A frame is a function name,
its file the object first seen with it. Lines that are not callgraph entries
(the ``@ event`` header, comments) are skipped. Samples are laid end to end in
file order, in plain counts (unit "none").

The file is read a line at a time into columns (frame and indent of each
entry); the chains' stacks are then interned with NumPy, a level of depth
at a time, and numbered as `ProfileBuilder` would number them.
"""

from __future__ import annotations

import re
from array import array

import numpy as np

from flamesight.formats.collapsed import as_utf8, text_lines
from flamesight.formats.errors import FormatError
from flamesight.model import ProfileBuilder, ProfileGroup, Unit
from flamesight.model.stack_building import path_stacks

NAME = "pmcstat"
TITLE = "pmcstat callgraph"

_ENTRY = re.compile(r"^( *)[\d.]+%  \[(\d+)\]\s*(\S+)(?: @ (.*))?$")
_EVENT_HEADER = re.compile(r"^@ \S.* \[\d+ samples\]\s*$")
_MAX_COUNT_DIGITS = 15
_SNIFF_LINES = 50


def sniff(head: bytes) -> bool:
    """The first non-blank line is "@ EVENT [N samples]" and a callgraph entry follows."""
    text = head.decode("utf-8", "replace")
    if "\x00" in text:
        return False
    lines = [line.rstrip("\r") for line in text.split("\n")[:_SNIFF_LINES] if line.strip()]
    if not lines or not _EVENT_HEADER.match(lines[0]):
        return False
    return any(_ENTRY.match(line) for line in lines[1:])


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a pmcstat callgraph into one profile of sample counts."""
    builder = ProfileBuilder(name, Unit.NONE)
    frame_ids: dict[str, int] = {}
    frames = array("i")  # per callgraph entry
    indents = array("i")  # per callgraph entry
    ends = array("i")  # the entries that end a chain
    weights = array("d")  # and their counts
    file: str | None = None
    previous_count = ""
    previous_indent = -1
    for number, line in enumerate(text_lines(as_utf8(data)), 1):
        match = _ENTRY.match(line)
        if match is None:
            continue
        spaces, count, symbol, obj = match.groups()
        if len(count) > _MAX_COUNT_DIGITS:
            raise FormatError(TITLE, f"line {number}", f"sample count {count[:20]}... is too large")
        indent = len(spaces)
        if indent > previous_indent + 1:
            raise FormatError(
                TITLE,
                f"line {number}",
                f"indented {indent} spaces, more than one level below the line before",
            )
        if indent <= previous_indent:
            ends.append(len(frames) - 1)
            weights.append(float(previous_count))
        file = obj or file
        frame = frame_ids.get(symbol)
        if frame is None:
            frame = frame_ids[symbol] = builder.frame(symbol, file)
        frames.append(frame)
        indents.append(indent)
        previous_count = count
        previous_indent = indent
    if previous_indent < 0:
        raise FormatError(TITLE, "whole file", "no callgraph line of the form 'P%  [N]  function'")
    ends.append(len(frames) - 1)
    weights.append(float(previous_count))
    callees = _callees(np.frombuffer(indents, np.int32))
    del indents
    # a chain's stack goes from its end (the root) to its sampled function
    stack_table, stacks = path_stacks(
        np.frombuffer(ends, np.int32), callees, np.frombuffer(frames, np.int32)
    )
    # laid end to end: each sample starts at the sum of the weights before it
    sample_weights = np.frombuffer(weights, np.float64)
    times = np.concatenate(([0.0], np.cumsum(sample_weights)[:-1]))
    builder.add_samples(stacks, sample_weights, times)
    return ProfileGroup(name, [builder.build(stack_table)])


def _callees(indents: np.ndarray) -> np.ndarray:
    """For every entry, the entry one indent up that it calls (the last one before it); -1 at indent 0."""
    callees = np.full(len(indents), -1, np.int64)
    by_indent = np.argsort(indents, kind="stable")
    bounds = np.searchsorted(indents[by_indent], np.arange(int(indents.max()) + 2))
    for indent in range(1, len(bounds) - 1):
        callers = by_indent[bounds[indent] : bounds[indent + 1]]
        called = by_indent[bounds[indent - 1] : bounds[indent]]
        callees[callers] = called[np.searchsorted(called, callers) - 1]
    return callees

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
"""

from __future__ import annotations

import re

from flamesight.formats.collapsed import as_utf8, text_lines
from flamesight.formats.errors import FormatError
from flamesight.model import ProfileBuilder, ProfileGroup, Unit

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
    chain: list[int] = []  # frame ids by indent, innermost (sampled) first
    file: str | None = None
    previous_count = 0
    previous_indent = -1
    for number, line in enumerate(text_lines(as_utf8(data)), 1):
        match = _ENTRY.match(line)
        if match is None:
            continue
        spaces, count, symbol, obj = match.groups()
        if len(count) > _MAX_COUNT_DIGITS:
            raise FormatError(TITLE, f"line {number}", f"sample count {count[:20]}... is too large")
        indent = len(spaces)
        if indent > len(chain):
            raise FormatError(
                TITLE,
                f"line {number}",
                f"indented {indent} spaces, more than one level below the line before",
            )
        if indent <= previous_indent:
            _add(builder, chain, previous_indent, previous_count)
        file = obj or file
        frame = frame_ids.get(symbol)
        if frame is None:
            frame = frame_ids[symbol] = builder.frame(symbol, file)
        del chain[indent:]
        chain.append(frame)
        previous_count = int(count)
        previous_indent = indent
    if previous_indent < 0:
        raise FormatError(TITLE, "whole file", "no callgraph line of the form 'P%  [N]  function'")
    _add(builder, chain, previous_indent, previous_count)
    return ProfileGroup(name, [builder.build()])


def _add(builder: ProfileBuilder, chain: list[int], deepest: int, count: int) -> None:
    """One sample group: the chain up to `deepest`, root first, weighted `count`."""
    builder.add_sample(builder.stack_of(reversed(chain[: deepest + 1])), float(count))

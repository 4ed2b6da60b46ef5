"""Collapsed ("folded") stacks: Brendan Gregg's FlameGraph input format.

One sample group per line, frames root first joined by ``;``, then a space
and a count::

    main;parse;read_token 12

Written by stackcollapse-*.pl, ``py-spy record -f raw``, async-profiler's
``collapsed`` output and many more. Lines that do not end in `` <count>``
(comments, headers, blank lines) are skipped, as speedscope does. Samples
keep file order, laid end to end, in plain counts (unit "none").

UTF-8 by default (bad bytes replaced); UTF-16 files (with a byte-order
mark) and CRLF line ends are read too. The file is scanned as bytes and
each distinct stack text is decoded, split and interned once, so a file of
many repeated stacks costs one dictionary look-up per line (keyed by a view
of the text, so distinct stacks are not copied).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import numpy as np

from flamesight.formats.errors import FormatError
from flamesight.model import ProfileBuilder, ProfileGroup, Unit

NAME = "collapsed"
TITLE = "collapsed stacks"

_LINE = re.compile(r"^(.*) (\d+)\r?$", re.MULTILINE)
_LINE_BYTES = re.compile(rb"^(.*) (\d+)\r?$", re.MULTILINE)
_SNIFF_LINES = 200
_MAX_COUNT_DIGITS = 15


def as_utf8(data: bytes) -> bytes:
    """The file as UTF-8 bytes: UTF-16 (by byte-order mark) is re-encoded, a UTF-8 BOM dropped."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace").encode("utf-8")
    return data.removeprefix(b"\xef\xbb\xbf")


def text_lines(data: bytes) -> Iterator[str]:
    """The lines of UTF-8 text (ended by ``\n`` or ``\r\n``), decoded one at a time: the
    whole text as one string, and a list of its lines, would take several times its size."""
    for raw in io.BytesIO(data):
        yield raw.decode("utf-8", "replace").removesuffix("\n").removesuffix("\r")


def sniff(head: bytes) -> bool:
    """Mostly lines of "frames count" among the first non-blank, non-comment lines."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head[: len(head) // 2 * 2].decode("utf-16", "replace")
    else:
        text = head.decode("utf-8", "replace")
        if "\x00" in text:
            return False
    lines = [line for line in text.splitlines()[:_SNIFF_LINES] if line.strip()]
    if len(head) >= 4096 and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut short
    candidates = [line for line in lines if not line.lstrip().startswith(("#", "//"))]
    matching = sum(1 for line in candidates if _LINE.match(line))
    return matching > 0 and matching * 2 >= len(candidates)


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a collapsed-stacks file into one profile of counts."""
    text = as_utf8(data)
    del data  # a UTF-16 file's own bytes are not needed once re-encoded
    builder = ProfileBuilder(name, Unit.NONE)
    # Stacks are keyed by views of the text, not copies: a file of mostly distinct
    # stacks would otherwise hold its text twice.
    view = memoryview(text)
    stack_ids: dict[memoryview, int] = {}
    stacks: list[int] = []
    counts: list[float] = []
    for match in _LINE_BYTES.finditer(text):
        frames_text, count = view[match.start(1) : match.end(1)], match.group(2)
        if len(count) > _MAX_COUNT_DIGITS:
            line = text.count(b"\n", 0, match.start()) + 1
            raise FormatError(
                TITLE, f"line {line}", f"sample count {count[:20].decode()}... is too large"
            )
        stack = stack_ids.get(frames_text)
        if stack is None:
            stack = stack_ids[frames_text] = builder.stack_of(
                builder.frame(frame)
                for frame in bytes(frames_text).decode("utf-8", "replace").split(";")
            )
        stacks.append(stack)
        counts.append(float(count))
    if not stacks:
        raise FormatError(TITLE, "whole file", "no line of the form 'frame;frame;... count'")
    weights = np.array(counts, dtype=np.float64)
    builder.add_samples(np.array(stacks, dtype=np.int32), weights)
    return ProfileGroup(name, [builder.build()])

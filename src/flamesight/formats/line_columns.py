"""Text read a block of whole lines at a time into NumPy columns.

Line formats whose lines are mostly alike (papyrus logs, Instruments deep
copies) find line and field bounds for a block of about a megabyte at once
with NumPy, and map the distinct texts of a column to ids with one
dictionary pass, instead of a Python step per line.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterator

import numpy as np


def line_blocks(data: bytes, begin: int, size: int) -> Iterator[tuple[int, int]]:
    """(begin, end) of blocks of whole lines of about `size` bytes, from `begin` on."""
    while begin < len(data):
        cut = data.find(b"\n", begin + size)
        end = len(data) if cut < 0 else cut + 1
        yield begin, end
        begin = end


def line_bounds(block: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bytes of `block` as a NumPy array, and where each of its lines begins and ends
    (before its ``\n`` or ``\r\n``)."""
    view = np.frombuffer(block, np.uint8)
    ends = np.flatnonzero(view == ord("\n"))
    if not block.endswith(b"\n"):
        ends = np.append(ends, len(block))
    starts = np.concatenate([[0], ends[:-1] + 1])
    ends -= (ends > starts) & (view[np.maximum(ends - 1, 0)] == ord("\r"))
    return view, starts, ends


def interned_ids(items: list, ids: dict) -> np.ndarray:
    """The id of each item in `ids`, new items numbered on from the ids there, in order."""
    found = list(map(ids.get, items))  # at C speed; new items get the next ids below
    new = itertools.compress(range(len(found)), map(operator.is_, found, itertools.repeat(None)))
    for index in list(new):
        found[index] = ids.setdefault(items[index], len(ids))
    return np.array(found, np.int32)

"""GHC profiling reports in JSON: the ``.prof`` file a Haskell program writes with ``+RTS -pj``.

Produce it by building with profiling and running with the JSON report::

    ghc -prof -fprof-auto Main.hs && ./Main +RTS -pj -RTS

The document has ``program``, ``tick_interval`` (microseconds),
``cost_centres`` (``id``, ``label``, ``module``, ``src_loc``) and
``profile``: the cost-centre call tree, each node with ``id`` (its cost
centre), ``entries``, ``ticks``, ``alloc`` (bytes) and ``children``.

Read as speedscope reads it: two profiles, "PROGRAM time" and "PROGRAM
allocation", both laid out from the same walk of the tree: a node opens at
the running position, its children follow, then its own ticks (or bytes),
and it closes. Nodes that did nothing (no ticks, entries, allocation or
children) are left out. A frame is ``MODULE.LABEL`` with ``src_loc`` as its
file unless that starts with ``<`` (``<built-in>``, ``<entire-module>``).
Time is in milliseconds: each tick counts ``tick_interval`` microseconds
(speedscope counts a tick as one millisecond, the same for the default 1 ms
interval).

A tree as GHC writes it (every node the keys ``id``, ``entries``,
``alloc``, ``ticks`` and ``children`` in that order, integer values) is read
without making an object per node (`_read_tree_text`): its text is checked
against that shape a piece at a time, its numbers read into NumPy columns,
and the rest of the document (the "skeleton", the tree replaced by a number
found nowhere in the file) read by orjson. Any other document, and any bad
value, is read whole with orjson and the tree walked without recursion,
which names the place of the problem.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np
import orjson

from flamesight.formats.chrome_cpuprofile import describe_json_value, json_head_keys
from flamesight.formats.errors import FormatError, load_json
from flamesight.formats.json_pieces import absent_number
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit
from flamesight.model.stack_building import tree_stacks

NAME = "ghc_prof"
TITLE = "GHC profile JSON"

_KEYS = frozenset({"program", "cost_centres", "total_ticks", "tick_interval", "rts_arguments"})
_MAX_VALUE = 1e300

# The tree as GHC writes it (see `_read_tree_text`).
_SPACE = rb"[ \t\r\n]*"
_SPACE_BYTES = b" \t\r\n"
_INTEGER = rb"(?:0|[1-9][0-9]{0,17})"  # at most 18 digits: within int64
_NODE_OPEN = (
    rb"\{"
    + b"".join(
        _SPACE + b'"' + key + b'"' + _SPACE + b":" + _SPACE + _INTEGER + _SPACE + b","
        for key in (b"id", b"entries", b"alloc", b"ticks")
    )
    + _SPACE
    + rb'"children"'
    + _SPACE
    + rb":"
    + _SPACE
    + rb"\["
)
# Node openings, node closings ("]}") and the commas between nodes, nothing else.
_TREE_PIECE = re.compile(
    rb"(?:" + _SPACE + rb"(?:" + _NODE_OPEN + rb"|\]" + _SPACE + rb"\}|,))*+" + _SPACE
)
_PROFILE_KEY = re.compile(rb'"profile"' + _SPACE + rb":" + _SPACE + rb"\{")
_DIGITS_ONLY = bytes(byte if byte in b"0123456789" else ord(" ") for byte in range(256))
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b"{}[],")
_PIECE_BYTES = 1 << 20
_MAX_FAST_DEPTH = 250  # deeper trees go to orjson, which refuses too deep a document
_MAX_FAST_ID = 2**20  # (GHC numbers its cost centres from 1)


def sniff(head: bytes) -> bool:
    """A JSON object with GHC's top-level report keys (``program``, ``cost_centres``, ...)."""
    opener, keys, _ = json_head_keys(head, max_depth=1)
    top = {key for _, key in keys}
    return opener == b"{" and "program" in top and len(top & _KEYS) >= 3


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a ``-pj`` report into a time profile and an allocation profile."""
    fast = _read_tree_text(data)
    document = load_json(data, TITLE) if fast is None else fast[0]
    if not isinstance(document, dict):
        raise FormatError(
            TITLE, "top level", f"expected a JSON object, got {describe_json_value(document)}"
        )
    program = document.get("program")
    if not isinstance(program, str):
        raise FormatError(
            TITLE, "program", f"expected a string, got {describe_json_value(program)}"
        )
    interval = document.get("tick_interval", 1000)
    if not _is_amount(interval) or interval == 0:
        raise FormatError(
            TITLE,
            "tick_interval",
            f"expected a positive number, got {describe_json_value(interval)}",
        )
    centres = _cost_centres(document.get("cost_centres"))
    if fast is not None:
        tree = fast[1]
        frames = _tree_frames(tree, centres, interval / 1000)
        if frames is not None:
            # the text is read: let it go (`formats.load` holds no other reference)
            del data, document, fast
            return ProfileGroup(program, _tree_profiles(tree, *frames, program, interval / 1000))
        document = load_json(data, TITLE)  # the walk below names the bad node
    tree = document.get("profile")
    time = _walk(tree, centres, f"{program} time", Unit.MILLISECONDS, "ticks", interval / 1000)
    allocation = _walk(tree, centres, f"{program} allocation", Unit.BYTES, "alloc", 1.0)
    return ProfileGroup(program, [time, allocation])


class _Tree(NamedTuple):
    """The nodes of a tree read from its text, in depth-first order."""

    depth: np.ndarray
    post: np.ndarray  # each node's place in the order the nodes close
    has_children: np.ndarray
    ids: np.ndarray
    busy: np.ndarray  # whether the node has entries, ticks or allocation
    alloc: np.ndarray
    ticks: np.ndarray


def _read_tree_text(data: bytes) -> tuple[dict, _Tree] | None:
    """The document without its tree, and the tree's columns; None unless the tree has GHC's shape.

    The tree is taken to run from ``"profile": {`` to the last ``}`` before
    the document's closing one. It is exact only if that text is nothing but
    GHC's node openings, closings and commas between nodes, nested as JSON
    requires (checked on the brackets with NumPy), and the document with the
    text replaced by a marker number reads as an object whose "profile" is
    the marker: then the document is valid JSON and its tree is that text.
    """
    found = _PROFILE_KEY.search(data)
    if found is None:
        return None
    start = found.end() - 1
    close = _last_token(data, len(data), start)  # the document's closing brace
    end = _last_token(data, close, start) + 1
    if close <= start or data[close] != ord("}") or data[end - 1] != ord("}"):
        return None
    tree = _tree_columns(data, start, end)
    if tree is None:
        return None
    stem = absent_number(data)
    try:
        skeleton = orjson.loads(b"".join((data[:start], b"%d" % stem, data[end:])))
    except orjson.JSONDecodeError:
        return None
    profile = skeleton.get("profile") if isinstance(skeleton, dict) else None
    if type(profile) is not int or profile != stem:
        return None
    return skeleton, tree


def _last_token(data: bytes, stop: int, floor: int) -> int:
    """The index of the last byte before `stop` that is not JSON white space (`floor` at least)."""
    while stop > floor and data[stop - 1] in _SPACE_BYTES:
        stop -= 1
    return stop - 1


def _tree_columns(data: bytes, start: int, end: int) -> _Tree | None:
    """The nodes of the tree text ``data[start:end]``, read a piece at a time, or None."""
    columns: tuple[list[np.ndarray], ...] = ([], [], [], [])  # id, busy, alloc, ticks
    depths = []  # of the nodes, as they open
    closing_depths = []  # of the nodes, as they close
    level = 0  # lists open (nodes, as the shape below has it)
    before = 0  # the last byte of the shape so far
    position = start
    while position < end:
        cut = data.find(b"{", min(position + _PIECE_BYTES, end), end)
        piece = data[position : end if cut < 0 else cut]
        position += len(piece)
        if _TREE_PIECE.fullmatch(piece) is None:
            return None
        # a node opening becomes "[", a closing "]": the tree as nested lists
        text = piece.translate(None, _NOT_STRUCTURE).replace(b"{,,,,[", b"[")
        shape = np.frombuffer(text.replace(b"]}", b"]"), np.uint8)
        levels = _nesting(shape, level, before)
        if levels is None or (levels[-1] == 0 and position < end):
            return None
        level, before = int(levels[-1]), int(shape[-1])
        depth = levels[shape == ord("[")] - 1
        if depth.max(initial=0) > _MAX_FAST_DEPTH:
            return None
        depths.append(depth.astype(np.uint8))
        closing_depths.append(levels[shape == ord("]")].astype(np.uint8))
        if len(depth):  # (NumPy reads a text of spaces alone as [0])
            numbers = np.fromstring(piece.translate(_DIGITS_ONLY), np.int64, sep=" ")
            if len(numbers) != 4 * len(depth):  # every opening holds four numbers
                return None
            rows = numbers.reshape(-1, 4)
            columns[1].append(rows[:, 1:].any(axis=1))  # busy
            for at in (0, 2, 3):  # id, alloc, ticks: int32 when they fit (joined as int64 if not)
                values = rows[:, at]
                columns[at].append(
                    values.astype(np.int32) if values.max() < 2**31 else values.copy()
                )
    if level != 0:
        return None
    depth = np.concatenate(depths)
    # The nodes of one depth open and close in the same order.
    by_depth = np.argsort(depth, kind="stable")
    post = np.empty(len(depth), np.int32)
    post[by_depth] = np.argsort(np.concatenate(closing_depths), kind="stable")
    del by_depth
    has_children = np.append(depth[1:] > depth[:-1], False)
    joined = []
    for column in columns:  # one column at a time, its pieces let go as it is joined
        joined.append(np.concatenate(column))
        column.clear()
    return _Tree(depth, post, has_children, *joined)


def _nesting(shape: np.ndarray, level: int, before: int) -> np.ndarray | None:
    """How many lists are open after each byte of a piece of a text of "[", "]" and ",", from
    `level` open after the byte `before` (0 at the start); None where the bytes cannot be part
    of one JSON value (lists in lists) or close it before the piece ends."""
    if before == 0 and shape[0] != ord("["):
        return None
    bytes_before = np.append(np.uint8(before), shape[:-1])
    misplaced = (
        ((bytes_before == ord("[")) & (shape == ord(",")))
        | ((bytes_before == ord("]")) & (shape == ord("[")))
        | ((bytes_before == ord(",")) & (shape != ord("[")))
    )
    levels = level + np.cumsum(shape == ord("["), dtype=np.int64)
    levels -= np.cumsum(shape == ord("]"), dtype=np.int64)
    if levels[:-1].min(initial=1) <= 0 or misplaced.any():
        return None
    return levels


def _tree_frames(
    tree: _Tree, centres: dict[int, tuple[str, str | None]], tick_scale: float
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str | None]]] | None:
    """The nodes of a tree read by `_read_tree_text` that did something, the cost centre of each
    (an index into the cost centres in order of first use) and those cost centres.

    None if a node names an unknown cost centre, or one numbered past
    `_MAX_FAST_ID` (looked up in a table by id here), or the totals come
    near the largest number `_walk` takes.
    """
    kept = tree.busy | tree.has_children
    ids = _kept(tree.ids, kept)
    if len(ids) and ids.max() > _MAX_FAST_ID:
        return None
    first_use = np.full(int(ids.max(initial=0)) + 1, len(ids), np.int32)  # by id
    np.minimum.at(first_use, ids, np.arange(len(ids), dtype=np.int32))
    used = np.flatnonzero(first_use < len(ids))
    by_use = used[np.argsort(first_use[used])]  # the ids in order of first use
    known = [centres.get(centre_id) for centre_id in by_use.tolist()]
    totals = (tree.ticks.sum(dtype=np.float64) * tick_scale, tree.alloc.sum(dtype=np.float64))
    if None in known or not all(total <= _MAX_VALUE / 2 for total in totals):
        return None
    rank = first_use  # (reused) the rank of each id in `by_use`
    rank[by_use] = np.arange(len(by_use), dtype=np.int32)
    return kept, rank[ids], known


def _tree_profiles(
    tree: _Tree,
    kept: np.ndarray,
    centre_of_kept: np.ndarray,
    centres: list[tuple[str, str | None]],
    program: str,
    tick_scale: float,
) -> list[Profile]:
    """The time and allocation profiles of the `kept` nodes of a tree, as `_walk` lays them out."""
    builders = (
        ProfileBuilder(f"{program} time", Unit.MILLISECONDS),
        ProfileBuilder(f"{program} allocation", Unit.BYTES),
    )
    frame_of_centre = np.array([builders[0].frame(*centre) for centre in centres], np.int32)
    for centre in centres:
        builders[1].frame(*centre)
    # (the nodes left out have no children: the others still form the tree)
    stacks, stack_of_kept = tree_stacks(_kept(tree.depth, kept), frame_of_centre[centre_of_kept])
    del centre_of_kept
    # Each node adds its own weight when it closes, after its children.
    closing = np.argsort(_kept(tree.post, kept))
    stack_of_kept = stack_of_kept[closing]
    profiles = []
    for builder, amounts, scale in (
        (builders[0], tree.ticks, tick_scale),
        (builders[1], tree.alloc, 1.0),
    ):
        position = np.cumsum(_kept(amounts, kept)[closing] * scale)
        before = np.append(0.0, position)[:-1]
        moved = position > before
        builder.add_samples(stack_of_kept[moved], (position - before)[moved], before[moved])
        profiles.append(builder.build(stacks))
    return profiles


def _kept(column: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``column[kept]``, without a copy when every node is kept."""
    return column if len(kept) and kept.all() else column[kept]


def _is_amount(value: object) -> bool:
    """A finite, non-negative JSON number."""
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= _MAX_VALUE
    )


def _cost_centres(entries: object) -> dict[int, tuple[str, str | None]]:
    """Cost centre id -> (frame name, file)."""
    if not isinstance(entries, list):
        raise FormatError(
            TITLE, "cost_centres", f"expected a list, got {describe_json_value(entries)}"
        )
    centres: dict[int, tuple[str, str | None]] = {}
    for index, entry in enumerate(entries):
        where = f"cost_centres[{index}]"
        if not isinstance(entry, dict):
            raise FormatError(TITLE, where, f"expected an object, got {describe_json_value(entry)}")
        fields = []
        for key in ("label", "module", "src_loc"):
            value = entry.get(key)
            if not isinstance(value, str):
                raise FormatError(
                    TITLE, f"{where}.{key}", f"expected a string, got {describe_json_value(value)}"
                )
            fields.append(value)
        label, module, location = fields
        centre_id = entry.get("id")
        if not isinstance(centre_id, int) or isinstance(centre_id, bool):
            raise FormatError(
                TITLE, f"{where}.id", f"expected an integer, got {describe_json_value(centre_id)}"
            )
        centres[centre_id] = (f"{module}.{label}", None if location.startswith("<") else location)
    return centres


def _walk(
    tree: object,
    centres: dict[int, tuple[str, str | None]],
    name: str,
    unit: Unit,
    measure: str,
    scale: float,
) -> Profile:
    """One profile of the call tree, `measure` ("ticks" or "alloc") times `scale` as each node's own weight."""
    builder = ProfileBuilder(name, unit)
    position = 0.0
    # Every node met as (node, its parent's entry, its index among the parent's children):
    # an error message names the path from these, so no path is built otherwise.
    trail: list[tuple[object, int, int]] = [(tree, -1, 0)]
    # (entry in `trail`, frame or -1 when left out / -2 before the first visit, next child)
    pending: list[tuple[int, int, int]] = [(0, -2, 0)]
    while pending:
        entry, frame, next_child = pending.pop()
        node = trail[entry][0]
        if not isinstance(node, dict):
            raise _node_error(
                trail, entry, "", f"expected an object, got {describe_json_value(node)}"
            )
        children = node.get("children", [])
        if not isinstance(children, list):
            raise _node_error(
                trail, entry, ".children", f"expected a list, got {describe_json_value(children)}"
            )
        if frame == -2:  # first visit: open the node's frame
            amounts = [node.get(key, 0) for key in ("ticks", "entries", "alloc")]
            for key, value in zip(("ticks", "entries", "alloc"), amounts, strict=True):
                if not _is_amount(value):
                    raise _node_error(
                        trail,
                        entry,
                        f".{key}",
                        f"expected a non-negative number, got {describe_json_value(value)}",
                    )
            if not any(amounts) and not children:
                continue
            centre_id = node.get("id")
            centre = centres.get(centre_id) if isinstance(centre_id, int) else None
            if centre is None:
                raise _node_error(
                    trail,
                    entry,
                    ".id",
                    f"cost centre {describe_json_value(centre_id)} is not in cost_centres",
                )
            frame = builder.frame(*centre)
            builder.enter(frame, position)
        if next_child < len(children):
            pending.append((entry, frame, next_child + 1))
            trail.append((children[next_child], entry, next_child))
            pending.append((len(trail) - 1, -2, 0))
            continue
        position += node.get(measure, 0) * scale
        if position > _MAX_VALUE:
            raise _node_error(trail, entry, f".{measure}", "the profile's total is out of range")
        builder.leave(frame, position)
    return builder.build()


def _node_error(
    trail: list[tuple[object, int, int]], entry: int, key: str, problem: str
) -> FormatError:
    """A FormatError naming the tree node `entry` by its path (``profile.children[2]...``)."""
    parts = []
    while trail[entry][1] >= 0:
        parts.append(f".children[{trail[entry][2]}]")
        entry = trail[entry][1]
    return FormatError(TITLE, "profile" + "".join(reversed(parts)) + key, problem)

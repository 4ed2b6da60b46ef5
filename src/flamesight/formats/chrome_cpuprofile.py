"""Chrome DevTools and Node.js `.cpuprofile` files (V8's CPU profile JSON).

A `.cpuprofile` is the `Profiler.Profile` object of the DevTools protocol::

    {"nodes": [{"id": 1, "callFrame": {...}, "children": [2, 3]}, ...],
     "startTime": ..., "endTime": ..., "samples": [2, 2, 3, ...], "timeDeltas": [...]}

`nodes` is the call tree (linked by `children` lists or, in newer files, by
`parent` ids), `samples[i]` is the node on top of the stack at sample *i* and
`timeDeltas[i]` the microseconds since the previous sample (the first one
since `startTime`). Node before 10.x wrote an older shape with the tree nested
under `head` and absolute `timestamps` instead of deltas; it is read too.

The reading follows speedscope, the reference importer: each sample lasts
until the next sample's time (the last one gets no time), time runs from
`startTime` with the time before the first sample left idle, `(root)`,
`(idle)` and `native dummy.js` frames are dropped, `(program)` and
`(garbage collector)` are stacked on top of whatever ran before them, and a
frame is named by its function, or "(anonymous file:line)" when it has none,
with 1-based line and column numbers.

`CpuProfileAssembler` holds that logic; the Chrome trace importer feeds it the
`Profile`/`ProfileChunk` events of a performance recording.

A big file is read a piece at a time (`_read_in_parts`, with
`json_pieces.ListPieces`): the nodes and the two sample lists are what makes
a `.cpuprofile` big, and read whole they take several times the file's size
as Python objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import partial
from itertools import chain, repeat

import numpy as np
import orjson

from flamesight.formats.errors import FormatError, load_json, shorten
from flamesight.formats.json_pieces import PIECE_BYTES, ListPieces, list_opener
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, StackTable, Unit
from flamesight.model.profile import link_depths

NAME = "chrome-cpuprofile"
TITLE = "Chrome/Node .cpuprofile"

_IGNORED_FUNCTIONS = frozenset({"(root)", "(idle)"})
_IGNORED_URL = "native dummy.js"
_STACKED_ON_PREVIOUS = frozenset({"(garbage collector)", "(program)"})

_PROFILE_KEYS = frozenset({"samples", "startTime", "endTime", "timeDeltas"})

# Reading a big document in pieces (see `_read_in_parts`).
_LIST_OPENERS = {key: list_opener(key) for key in ("nodes", "samples", "timeDeltas")}
_PIECE_BYTES = PIECE_BYTES  # a module setting, so that tests can make pieces small
_COMPACT_BLOCK = 1 << 16
# the types a column of nodes may hold
_DICT = frozenset({dict})
_INT = frozenset({int})
_INT_OR_NONE = frozenset({int, type(None)})
_STRING_OR_NONE = frozenset({str, type(None)})
_LIST_OR_NONE = frozenset({list, type(None)})

# A string cut off by the end of the head is one token too: a string that
# could fail to match would be rescanned from each quote inside it (quadratic).
_HEAD_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*(?:"[ \t\r\n]*:?|\\?\Z)|[\[\]{}]', re.DOTALL)
_LEADING_SPACE = b"\xef\xbb\xbf \t\r\n"


def json_head_keys(head: bytes, max_depth: int = 2) -> tuple[bytes, list[tuple[int, str]], bool]:
    """Outline the start of a JSON document without parsing it all.

    Returns the opening bracket (``b"{"``, ``b"["`` or ``b""`` when the text
    is not a JSON object or array), the object keys seen down to `max_depth`
    as ``(depth, key)`` (keys of the top-level object have depth 1, keys of an
    object inside a top-level array depth 2), and whether `head` ends before
    the document closes. Works on text cut anywhere, even mid-token.
    """
    text = head.lstrip(_LEADING_SPACE)
    if not text or text[:1] not in (b"{", b"["):
        return b"", [], False
    depth = 0
    keys: list[tuple[int, str]] = []
    for match in _HEAD_TOKEN.finditer(text):
        token = match.group()
        first = token[:1]
        if first in (b"{", b"["):
            depth += 1
        elif first in (b"}", b"]"):
            depth -= 1
            if depth <= 0:
                return text[:1], keys, False
        elif token.endswith(b":") and depth <= max_depth:
            try:
                key = orjson.loads(token[:-1].rstrip())
            except orjson.JSONDecodeError:
                continue
            keys.append((depth, key))
    return text[:1], keys, True


def sniff(head: bytes) -> bool:
    """A JSON object shaped like a V8 CPU profile (new `nodes` or old `head` layout)."""
    opener, keys, truncated = json_head_keys(head, max_depth=1)
    if opener != b"{":
        return False
    top = {key for _, key in keys}
    if "$schema" in top:
        return False
    if "nodes" in top:
        return bool(top & _PROFILE_KEYS) or (truncated and b'"callFrame"' in head)
    if "head" in top:
        return "timestamps" in top or (truncated and b'"hitCount"' in head and b'"callUID"' in head)
    return False


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a `.cpuprofile` into a group of one profile named after the file."""
    assembler = _read_in_parts(data)
    if assembler is not None:
        del data  # the text is read: let it go (`formats.load` holds no other reference)
        return ProfileGroup(name, [assembler.build(name, "timeDeltas")])
    document = load_json(data, TITLE)
    if not isinstance(document, dict):
        problem = f"expected a JSON object, got {describe_json_value(document)}"
        raise FormatError(TITLE, "top level", problem)
    assembler = CpuProfileAssembler(TITLE)
    if "nodes" in document:
        assembler.add_nodes(_required(document, "nodes", ""), "nodes")
        assembler.add_samples(_required(document, "samples", ""), "samples")
        assembler.add_time_deltas(_required(document, "timeDeltas", ""), "timeDeltas")
        times_key = "timeDeltas"
    elif "head" in document:
        _add_old_profile(assembler, document)
        times_key = "timestamps"
    else:
        raise FormatError(TITLE, "top level", "no 'nodes' (nor an old-style 'head') key")
    del document  # the assembler holds what it needs; free the JSON objects before building
    return ProfileGroup(name, [assembler.build(name, times_key)])


def _read_in_parts(data: bytes) -> CpuProfileAssembler | None:
    """The nodes and sample lists of a big `.cpuprofile`, read a piece at a time, or None.

    Read whole, the `nodes` list of a big profile takes several times its
    size in Python objects, and the number lists far more. Here the three
    lists are read with `ListPieces` (nodes become columns a piece at a
    time), and the result is used only if the skeleton holds each of the
    three top-level keys with its list's marker; None (a check failed, or a
    value needs the node-by-node checks and their error messages) sends the
    caller to the plain reading.
    """
    pieces = ListPieces(data, _PIECE_BYTES)
    nodes_open = pieces.find(_LIST_OPENERS["nodes"])
    if nodes_open is None:
        return None
    assembler = CpuProfileAssembler(TITLE)
    add_nodes = partial(_add_node_piece, assembler)
    if pieces.read_items(nodes_open.end(), add_nodes, assembler) is None:
        return None
    arrays = []
    for key, integers in (("samples", True), ("timeDeltas", False)):
        found = pieces.find(_LIST_OPENERS[key])
        array = None if found is None else pieces.read_numbers(found.end(), integers)
        if array is None:
            return None
        arrays.append(array)
    skeleton = pieces.skeleton()
    if not isinstance(skeleton, dict) or any(
        pieces.result(skeleton.get(key)) is not result
        for key, result in zip(_LIST_OPENERS, (assembler, *arrays), strict=True)
    ):
        return None
    assembler.add_samples(arrays[0], "samples")
    assembler.add_time_deltas(arrays[1], "timeDeltas")
    return assembler


def _add_node_piece(assembler: CpuProfileAssembler, nodes: list) -> bool:
    """Add a piece of the nodes if every one passes the column checks (else False)."""
    columns = _node_columns(nodes)
    if columns is None:
        return False
    assembler._add_columns(*columns)
    return True


def _add_old_profile(assembler: CpuProfileAssembler, document: dict) -> None:
    """The pre-Node-10 layout: a nested `head` tree and absolute `timestamps` in microseconds."""
    start_time = document.get("startTime", 0)
    if not _is_number(start_time):
        raise FormatError(
            TITLE, "startTime", f"expected a number, got {describe_json_value(start_time)}"
        )
    head = _required(document, "head", "")
    # Walk the tree without recursion; `trail` keeps each node's parent and
    # child index so that an error can name the path.
    trail: list[tuple[int, int]] = [(-1, 0)]
    order: list[object] = [head]
    pending: list[int] = [0]
    while pending:
        position = pending.pop()
        node = order[position]
        if not isinstance(node, dict):
            raise FormatError(
                TITLE,
                _old_node_path(trail, position),
                f"expected a call tree node object, got {describe_json_value(node)}",
            )
        children = node.get("children", [])
        if not isinstance(children, list):
            raise FormatError(
                TITLE,
                f"{_old_node_path(trail, position)}.children",
                f"expected a list, got {describe_json_value(children)}",
            )
        child_ids = []
        for child_index, child in enumerate(children):
            trail.append((position, child_index))
            order.append(child)
            child_ids.append(child.get("id") if isinstance(child, dict) else None)
        pending.extend(range(len(order) - 1, len(order) - 1 - len(children), -1))
        try:
            assembler.add_node(
                node_id=node.get("id"),
                function_name=node.get("functionName", ""),
                url=node.get("url"),
                line=node.get("lineNumber"),
                col=0,
                parent=None,
                children=child_ids,
                where="",
            )
        except FormatError as error:  # name the node only now: paths cost depth to build
            raise FormatError(
                TITLE, _old_node_path(trail, position) + error.where, error.problem
            ) from None
    assembler.add_samples(_required(document, "samples", ""), "samples")
    timestamps = _number_array(_required(document, "timestamps", ""), "timestamps")
    deltas = np.diff(timestamps, prepend=start_time * 1_000_000.0)
    assembler.add_time_deltas(deltas, "timestamps")


def _old_node_path(trail: list[tuple[int, int]], position: int) -> str:
    parts = []
    while position > 0:
        parent, child_index = trail[position]
        parts.append(f".children[{child_index}]")
        position = parent
    return "head" + "".join(reversed(parts))


class CpuProfileAssembler:
    """One V8 CPU profile, possibly delivered in chunks, turned into a `Profile` as speedscope does.

    Feed it `add_nodes`, `add_samples` and `add_time_deltas` (any number of
    times, in order, as the chunks of a trace arrive), then call `build`.
    Every input is validated where it arrives, so errors name the JSON path.
    """

    def __init__(self, format_title: str) -> None:
        self._title = format_title
        # The nodes, column by column, in chunks as they arrive (one per
        # `add_nodes` call): ids, declared parent ids (`has_parent` false
        # where there is none), the frame of each node as an index into
        # `_frame_keys`, and the (child id, listing node's index) pairs of the
        # `children` lists.
        self._node_count = 0
        self._ids: list[np.ndarray] = []
        self._parent_ids: list[np.ndarray] = []
        self._has_parent: list[np.ndarray] = []
        self._node_frames: list[np.ndarray] = []
        self._child_ids: list[np.ndarray] = []
        self._child_parents: list[np.ndarray] = []
        # (function name, url, 0-based line, 0-based column) -> its index
        self._frame_keys: dict[tuple[str, str | None, int | None, int | None], int] = {}
        self._samples: list[np.ndarray] = []
        self._deltas: list[np.ndarray] = []

    # input

    def add_nodes(self, nodes: object, where: str) -> None:
        """Append call tree nodes (``[{"id", "callFrame", "children"?, "parent"?}, ...]``).

        The nodes are read column by column (ids, parents, children, each
        callFrame field), checked a column at a time, and kept as NumPy arrays
        and one entry per distinct frame, so no Python object per node
        outlives the call. If a column holds a value it cannot take, the
        nodes are read one by one with `add_node` instead, which names the
        bad one.
        """
        if not isinstance(nodes, list):
            raise FormatError(
                self._title, where, f"expected a list of nodes, got {describe_json_value(nodes)}"
            )
        columns = _node_columns(nodes)
        if columns is not None:
            self._add_columns(*columns)
            return
        for index, node in enumerate(nodes):
            path = f"{where}[{index}]"
            if not isinstance(node, dict):
                raise FormatError(
                    self._title, path, f"expected a node object, got {describe_json_value(node)}"
                )
            frame = node.get("callFrame")
            if not isinstance(frame, dict):
                raise FormatError(
                    self._title,
                    f"{path}.callFrame",
                    f"expected an object, got {describe_json_value(frame)}",
                )
            self.add_node(
                node_id=node.get("id"),
                function_name=frame.get("functionName", ""),
                url=frame.get("url"),
                line=frame.get("lineNumber"),
                col=frame.get("columnNumber"),
                parent=node.get("parent"),
                children=node.get("children"),
                where=path,
                frame_where=f"{path}.callFrame",
            )

    def add_node(
        self,
        *,
        node_id: object,
        function_name: object,
        url: object,
        line: object,
        col: object,
        parent: object,
        children: object,
        where: str,
        frame_where: str | None = None,
    ) -> None:
        """Append one node; `line`/`col` are V8's 0-based numbers, `parent`/`children` node ids."""
        frame_where = where if frame_where is None else frame_where
        if not _is_int(node_id):
            raise FormatError(
                self._title,
                f"{where}.id",
                f"expected an integer, got {describe_json_value(node_id)}",
            )
        if not -(2**63) <= node_id < 2**63:
            raise FormatError(self._title, f"{where}.id", f"node id {node_id} is over 64 bits")
        if function_name is None:
            function_name = ""
        check_frame_fields(
            self._title,
            frame_where,
            (("functionName", function_name), ("url", url)),
            (("lineNumber", line), ("columnNumber", col)),
        )
        if parent is not None and not _is_int(parent):
            raise FormatError(
                self._title,
                f"{where}.parent",
                f"expected a node id, got {describe_json_value(parent)}",
            )
        if children is not None and (
            not isinstance(children, list) or not all(_is_int(child) for child in children)
        ):
            raise FormatError(
                self._title,
                f"{where}.children",
                f"expected a list of node ids, got {shorten(repr(children))}",
            )
        self._add_columns([node_id], [function_name], [url], [line], [col], [parent], [children])

    def _add_columns(
        self,
        ids: list[int],
        names: list[str],
        urls: list[str | None],
        lines: list[int | None],
        cols: list[int | None],
        parents: list[int | None],
        children: list[list[int] | None],
    ) -> None:
        """Store validated node columns (ids within 64 bits, the rest as `add_node` checks them).

        Parent and child ids beyond 64 bits can match no node (ids are
        within 64 bits), so they are stored as no parent and left out.
        """
        first = self._node_count
        self._node_count += len(ids)
        self._ids.append(np.array(ids, np.int64))
        if parents.count(None) == len(parents):
            has_parent = np.zeros(len(parents), bool)
            parent_ids = np.zeros(len(parents), np.int64)
        else:
            has_parent = np.array([p is not None and _fits_int64(p) for p in parents], bool)
            parent_ids = np.array(
                [p if has else 0 for p, has in zip(parents, has_parent.tolist(), strict=True)],
                np.int64,
            )
        self._has_parent.append(has_parent)
        self._parent_ids.append(parent_ids)
        child_ids = list(chain.from_iterable(filter(None, children)))
        child_parents = np.repeat(
            np.arange(first, first + len(ids)), [len(c) if c else 0 for c in children]
        )
        if not all(map(_fits_int64, child_ids)):
            fits = [_fits_int64(child) for child in child_ids]
            child_ids = [c for c, keep in zip(child_ids, fits, strict=True) if keep]
            child_parents = child_parents[np.array(fits, bool)]
        self._child_ids.append(np.array(child_ids, np.int64))
        self._child_parents.append(child_parents.astype(np.int64))
        keys = self._frame_keys
        self._node_frames.append(
            np.array(
                [
                    keys.setdefault(key, len(keys))
                    for key in zip(names, urls, lines, cols, strict=True)
                ],
                np.int64,
            )
        )

    def add_samples(self, samples: object, where: str) -> None:
        """Append sampled node ids."""
        self._samples.append(_integer_array(samples, where, self._title))

    def add_time_deltas(self, deltas: object, where: str) -> None:
        """Append microseconds between samples (the first one counts from the start time)."""
        self._deltas.append(_number_array(deltas, where, self._title))

    # result

    def build(self, name: str, where: str) -> Profile:
        """The profile; `where` names the time deltas in error messages.

        The per-sample arrays are made once each and then shortened in
        place, so that the peak memory stays close to the size of the result.
        """
        builder = ProfileBuilder(name, Unit.MICROSECONDS, sampled=True)
        count = sum(len(chunk) for chunk in self._samples)
        if count == 0:
            self._samples, self._deltas = [], []
            return builder.build()
        # Entry 0 is the time from the start time to the first sample (no
        # node: idle), entries 1..count the samples, and the last one repeats
        # the next-to-last sample at the last sample's time, as speedscope
        # does, which gives the last run no duration.
        size = count + 2 if count > 1 else count + 1
        times = self._sample_times(count, size, where)
        walker = _StackWalker(self, builder)
        self._forget_nodes()
        nodes, new_run = self._sample_nodes(walker.node_index, size)
        if count > 1:
            nodes[-1] = nodes[-3]
            new_run[-1] = True
        # Runs of one node collapse into one entry at the run's first sample.
        nodes = _compact(nodes, new_run)
        times = _compact(times, new_run)
        del new_run
        # A negative delta never moves time backwards.
        np.maximum.accumulate(times, out=times)
        stacks = walker.stacks_of(nodes)
        stack_table = walker.stack_table()
        del nodes, walker
        busy = stacks >= 0
        # time after the last frames closed is not part of the profile
        end = len(stacks) - int(np.argmax(busy[::-1])) if busy.any() else 0
        del busy
        weights = np.zeros(len(times))  # the last entry has no duration
        np.subtract(times[1:], times[:-1], out=weights[:-1])
        keep = weights[:end] > 0
        stacks, times, weights = (_compact(column, keep) for column in (stacks, times, weights))
        builder.add_samples(stacks, weights, times)
        return builder.build(stack_table)

    def _forget_nodes(self) -> None:
        """Drop the node columns (the walker has made its tables from them)."""
        self._ids, self._parent_ids, self._has_parent = [], [], []
        self._node_frames, self._child_ids, self._child_parents = [], [], []

    def _sample_times(self, count: int, size: int, where: str) -> np.ndarray:
        """The start time of the entries of `build` (`size` of them) from the time deltas."""
        deltas = joined(self._deltas, np.float64)
        self._deltas = []
        if len(deltas) < count:
            raise FormatError(
                self._title, where, f"{len(deltas):,} time deltas for {count:,} samples"
            )
        times = np.empty(size)
        elapsed = times[1 : count + 1]
        with np.errstate(over="ignore", invalid="ignore"):
            np.cumsum(deltas[:count], dtype=np.float64, out=elapsed)
            del deltas
            span = elapsed.max() - elapsed.min()  # every duration is at most this
        if not np.isfinite(span):
            finite = np.isfinite(elapsed)
            bad = int(np.argmin(finite)) if not finite.all() else int(np.argmax(elapsed))
            raise FormatError(
                self._title,
                where,
                f"the time deltas add up past the largest float at delta {bad:,} (of {count:,})",
            )
        times[0] = min(0.0, times[1])  # a first sample before the start time leaves no idle time
        times[-1] = times[count]
        return times

    def _sample_nodes(self, node_index: _NodeIndex, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The node index of the entries of `build` (-1 for none and for unknown ids),
        and where a new run of one node id starts."""
        nodes = np.empty(size, np.int32)
        new_run = np.empty(size, bool)
        nodes[0] = -1
        new_run[0] = True
        done = 1
        previous: int | None = None
        while self._samples:
            ids = self._samples.pop(0)
            if len(ids) == 0:
                continue
            for block in range(0, len(ids), _COMPACT_BLOCK):
                block_ids = ids[block : block + _COMPACT_BLOCK].astype(np.int64)
                nodes[done + block : done + block + len(block_ids)] = node_index(block_ids)
            new_run[done] = previous is None or ids[0] != previous
            np.not_equal(ids[1:], ids[:-1], out=new_run[done + 1 : done + len(ids)])
            previous = int(ids[-1])
            done += len(ids)
        return nodes, new_run

    # helpers for _StackWalker

    def _node_tables(self) -> tuple[_NodeIndex, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Node id lookup, and per node: parent index, frame key index, ignore / stack-on-top flags.

        A node's parent is the node whose `children` list names it, else
        the node its `parent` id names; when several do, the last one wins
        (as speedscope's reading in file order has it).
        """
        index_of = _NodeIndex(joined(self._ids, np.int64))
        has_parent = joined(self._has_parent, bool)
        parent = np.where(has_parent, index_of(joined(self._parent_ids, np.int64)), -1)
        child_nodes = index_of(joined(self._child_ids, np.int64))
        child_parents = joined(self._child_parents, np.int64)
        known = child_nodes >= 0
        child_nodes, child_parents = child_nodes[known], child_parents[known]
        # keep the last listing of each child: first occurrence in the reversed order
        _, first_reversed = np.unique(child_nodes[::-1], return_index=True)
        last = len(child_nodes) - 1 - first_reversed
        parent[child_nodes[last]] = child_parents[last]
        node_frames = joined(self._node_frames, np.int64)
        keys = list(self._frame_keys)
        ignored = np.array(
            [name in _IGNORED_FUNCTIONS or url == _IGNORED_URL for name, url, _, _ in keys], bool
        )
        on_top = np.array([name in _STACKED_ON_PREVIOUS for name, _, _, _ in keys], bool)
        return index_of, parent, node_frames, ignored[node_frames], on_top[node_frames]

    def _frame_fields(self, key: tuple) -> tuple[str, str | None, int | None, int | None]:
        """Name, file, 1-based line and column of a frame key, named as speedscope names it."""
        name, url, line, col = key
        line = None if line is None else line + 1
        col = None if col is None else col + 1
        return frame_name(name, url, line), url or None, line, col


class _NodeIndex:
    """Node id -> node index (of the last node with that id), for arrays of ids.

    Ids are sorted once; a lookup is a table index when the ids are dense
    (as V8 numbers them, 1, 2, 3, ...), else a binary search.
    """

    def __init__(self, ids: np.ndarray) -> None:
        order = np.argsort(ids, kind="stable")  # equal ids keep file order: take the last
        sorted_ids = ids[order]
        last = np.append(sorted_ids[1:] != sorted_ids[:-1], True)
        self._ids = sorted_ids[last]
        self._indices = order[last]
        self._table: np.ndarray | None = None
        if len(self._ids):
            self._low = int(self._ids[0])
            span = int(self._ids[-1]) - self._low + 1
            if span <= 2 * len(self._ids) + 1024:
                self._table = np.full(span, -1, np.int32)
                self._table[self._ids - self._low] = self._indices

    def __call__(self, node_ids: np.ndarray) -> np.ndarray:
        """The node index of every id, -1 for ids no node has."""
        if len(self._ids) == 0:
            return np.full(len(node_ids), -1, np.int32)
        if self._table is not None:
            inside = (node_ids >= self._low) & (node_ids < self._low + len(self._table))
            result = np.full(len(node_ids), -1, np.int32)
            result[inside] = self._table[node_ids[inside] - self._low]
            return result
        at = np.minimum(np.searchsorted(self._ids, node_ids), len(self._ids) - 1)
        return np.where(self._ids[at] == node_ids, self._indices[at], -1).astype(np.int32)


class _StackWalker:
    """Replays speedscope's walk from sample to sample.

    For most nodes the stack is simply the node's ancestors below the first
    ignored one, whatever ran before ("fixed" nodes). Their stacks are made
    for all of them at once, a level of depth at a time, and such a node's
    path is the node's own index. The rest, `(program)` and `(garbage
    collector)` and anything called under them, depend on the previous
    stack: those states are further node paths interned in a trie (ids from
    the node count up), and each (previous path, sampled node) step is
    computed once.

    The walker makes the stack table itself (`stack_table`); the builder
    only interns the frames.
    """

    def __init__(self, assembler: CpuProfileAssembler, builder: ProfileBuilder) -> None:
        self._assembler = assembler
        self._builder = builder
        self._node_index, parent, self._node_frame, ignored, on_top = assembler._node_tables()
        self._parent, self._ignored, self._on_top = parent, ignored, on_top
        self._node_count = len(parent)
        self._frame_keys = list(assembler._frame_keys)
        self._frame_of_key = np.full(len(self._frame_keys), -1, np.int64)
        self._fixed = self._fixed_nodes()
        # Fixed nodes with a frame of their own (not ignored), the node their
        # path continues (the parent unless it is ignored), and their stacks.
        self._own_path = self._fixed & ~ignored
        self._base = np.where((parent >= 0) & ~ignored[parent], parent, -1)
        self._stack_of_node = np.full(len(parent), -1, np.int32)
        self._stack_parents: list[np.ndarray] = []
        self._stack_frames: list[np.ndarray] = []
        self._walk_stack_parents: list[int] = []
        self._walk_stack_frames: list[int] = []
        self._stack_count = 0
        self._fixed_stacks()
        # Paths and stacks made by the walk, and lookups for stacks made before it.
        self._path_parent: list[int] | None = None
        self._path_node: list[int] = []
        self._path_stack: list[int] = []
        self._path_ids: dict[tuple[int, int], int] = {}
        self._stack_ids: dict[tuple[int, int], int] = {}
        self._fixed_keys: np.ndarray | None = None
        self._fixed_key_stacks = np.zeros(0, np.int32)

    @property
    def node_index(self) -> _NodeIndex:
        """Node id -> node index, as `stacks_of` takes the nodes."""
        return self._node_index

    def stacks_of(self, nodes: np.ndarray) -> np.ndarray:
        """The stack after each sampled node index (-1, an unknown id, keeps the previous stack).

        `nodes` (int32) is overwritten with the result.
        """
        fixed = np.append(self._fixed, False)[nodes]  # (index -1 reads the spare entry)
        dynamic = np.flatnonzero(~fixed)
        del fixed
        dynamic_nodes = nodes[dynamic].tolist()
        own_paths = np.where(self._own_path, np.arange(self._node_count, dtype=np.int32), -1)
        paths = _look_up_in_place(np.append(own_paths, np.int32(-1)), nodes)
        del own_paths
        # The others follow from the stack before them, in order.
        transitions: dict[tuple[int, int], int] = {}
        current = -1
        previous_index = -1
        for index, node in zip(dynamic.tolist(), dynamic_nodes, strict=True):
            if index != previous_index + 1:
                current = int(paths[index - 1])
            if node >= 0:
                step = (current, node)
                following = transitions.get(step)
                if following is None:
                    following = transitions[step] = self._step(current, node)
                current = following
            paths[index] = current
            previous_index = index
        stack_of_path = np.concatenate(
            (self._stack_of_node, np.array([*self._path_stack, -1], np.int32))
        )
        return _look_up_in_place(stack_of_path, paths)

    def stack_table(self) -> StackTable:
        """The stacks made so far."""
        return StackTable(
            np.concatenate([*self._stack_parents, np.array(self._walk_stack_parents, np.int32)]),
            np.concatenate([*self._stack_frames, np.array(self._walk_stack_frames, np.int32)]),
        )

    def _fixed_stacks(self) -> None:
        """The stack of every fixed node with a frame of its own, a level of depth at a time.

        Stacks are interned by (parent stack, frame), so nodes with the same
        frames from the root up share one.
        """
        nodes = np.flatnonzero(self._own_path)
        if not len(nodes):
            return
        frames = self._frames_of(self._node_frame[nodes])
        frame_of_node = np.zeros(len(self._fixed), np.int64)
        frame_of_node[nodes] = frames
        # depth below the nearest ignored ancestor
        depth = link_depths(np.where(self._own_path, self._base, -1))[nodes]
        order = np.argsort(depth, kind="stable")
        bounds = np.searchsorted(depth[order], np.arange(int(depth.max()) + 2))
        span = len(self._frame_keys) + 1
        for level in range(len(bounds) - 1):
            level_nodes = nodes[order[bounds[level] : bounds[level + 1]]]
            bases = self._base[level_nodes]
            parent_stacks = np.where(bases >= 0, self._stack_of_node[bases], -1).astype(np.int64)
            keys = (parent_stacks + 1) * span + frame_of_node[level_nodes]
            unique_keys, which = np.unique(keys, return_inverse=True)
            self._stack_of_node[level_nodes] = self._stack_count + which
            self._stack_parents.append((unique_keys // span - 1).astype(np.int32))
            self._stack_frames.append((unique_keys % span).astype(np.int32))
            self._stack_count += len(unique_keys)

    def _frames_of(self, keys: np.ndarray) -> np.ndarray:
        """The builder frame of each frame key index, added on first use."""
        for key in np.unique(keys[self._frame_of_key[keys] < 0]).tolist():
            self._frame_of(key)
        return self._frame_of_key[keys]

    def _frame_of(self, key: int) -> int:
        frame = int(self._frame_of_key[key])
        if frame < 0:
            fields = self._assembler._frame_fields(self._frame_keys[key])
            frame = self._frame_of_key[key] = self._builder.frame(*fields)
        return frame

    def _fixed_nodes(self) -> np.ndarray:
        """Nodes whose stack does not depend on the previous one (empty for ignored nodes).

        That holds when no node from it up to the root is stacked on what ran
        before, and the ancestors above its first ignored ancestor are ignored
        too (so none of them can be open). Worked out a level of depth at a time.
        """
        parent, ignored, on_top = self._parent, self._ignored, self._on_top
        depth = link_depths(parent)
        if depth is None:
            raise FormatError(
                self._assembler._title, "nodes", "the parent links of the nodes form a cycle"
            )
        dynamic, fixed, ignored_chain = 1, 2, 3  # states of a node
        state = np.zeros(len(parent), np.int8)
        order = np.argsort(depth, kind="stable")
        bounds = np.searchsorted(depth[order], np.arange(int(depth.max(initial=0)) + 2))
        for level in range(len(bounds) - 1):
            nodes = order[bounds[level] : bounds[level + 1]]
            parents = parent[nodes]
            above = np.where(parents >= 0, state[parents], ignored_chain)
            top = on_top[nodes]
            state[nodes] = np.where(
                ignored[nodes],
                np.where((above == ignored_chain) & ~top, ignored_chain, dynamic),
                np.where(top | (above == dynamic), dynamic, fixed),
            )
        return (state == fixed) | (state == ignored_chain)

    def _step(self, current: int, node: int) -> int:
        """The path after sampling `node` with `current` open (speedscope's LCA walk)."""
        if 0 <= current < self._node_count and self._on_top[node]:
            # The common case, `(program)` after a fixed path: that path has no
            # node stacked on top of another, so the walk stops at its top.
            return current if self._ignored[node] else self._child_path(current, node)
        previous_nodes: list[int] = []
        previous_paths: list[int] = []
        parents, walked_nodes, node_count = self._path_parents(), self._path_node, self._node_count
        path = current
        while path >= 0:
            previous_nodes.append(path if path < node_count else walked_nodes[path - node_count])
            previous_paths.append(path)
            path = parents[path]
        previous_nodes.reverse()
        previous_paths.reverse()
        open_nodes = set(previous_nodes)
        top = previous_nodes[-1] if previous_nodes else -1
        ancestor = node
        steps = 0
        while ancestor >= 0 and ancestor not in open_nodes:
            ancestor = top if self._on_top[ancestor] else int(self._parent[ancestor])
            steps += 1
            if steps > self._node_count:
                raise FormatError(
                    self._assembler._title, "nodes", "the parent links of the nodes form a cycle"
                )
        kept = 0
        if ancestor >= 0:
            kept = len(previous_nodes) - previous_nodes[::-1].index(ancestor)
        base = previous_paths[kept - 1] if kept else -1
        new_top = previous_nodes[kept - 1] if kept else -1
        opened = []
        walker = node
        while walker >= 0 and walker != ancestor and not self._ignored[walker]:
            opened.append(walker)
            walker = new_top if self._on_top[walker] else int(self._parent[walker])
        path = base
        for walker in reversed(opened):
            path = self._child_path(path, walker)
        return path

    def _path_parents(self) -> list[int]:
        """The parent of every path (made when the walk first needs it)."""
        if self._path_parent is None:
            self._path_parent = self._base.tolist()
        return self._path_parent

    def _stack_of_path(self, path: int) -> int:
        if path < self._node_count:
            return int(self._stack_of_node[path])
        return self._path_stack[path - self._node_count]

    def _child_path(self, parent: int, node: int) -> int:
        if self._own_path[node] and self._base[node] == parent:
            return node  # a fixed node's own path
        key = (parent, node)
        path = self._path_ids.get(key)
        if path is None:
            frame = self._frame_of(int(self._node_frame[node]))
            parent_stack = self._stack_of_path(parent) if parent >= 0 else -1
            parents = self._path_parents()
            path = self._path_ids[key] = len(parents)
            parents.append(parent)
            self._path_node.append(node)
            self._path_stack.append(self._stack(parent_stack, frame))
        return path

    def _stack(self, parent: int, frame: int) -> int:
        """The stack `parent` + `frame`, made if neither the fixed nodes nor the walk made it."""
        stack = self._stack_ids.get((parent, frame))
        if stack is not None:
            return stack
        span = len(self._frame_keys) + 1
        if self._fixed_keys is None:  # sorted (parent + 1) * span + frame of the fixed stacks
            table = self.stack_table()
            keys = (table.parent.astype(np.int64) + 1) * span + table.frame
            order = np.argsort(keys)
            self._fixed_keys, self._fixed_key_stacks = keys[order], order.astype(np.int32)
        key = (parent + 1) * span + frame
        at = int(np.searchsorted(self._fixed_keys, key))
        if at < len(self._fixed_keys) and int(self._fixed_keys[at]) == key:
            return int(self._fixed_key_stacks[at])
        stack = self._stack_ids[(parent, frame)] = self._stack_count
        self._walk_stack_parents.append(parent)
        self._walk_stack_frames.append(frame)
        self._stack_count += 1
        return stack


def _node_columns(nodes: list) -> tuple[list, ...] | None:
    """A nodes list as `CpuProfileAssembler._add_columns` takes it, or None if a value is out of place.

    Checks what `add_node` checks, a column at a time (the types of a
    column as one set); None sends the caller to the node-by-node reading,
    which names the bad value.
    """
    if not set(map(type, nodes)) <= _DICT:
        return None
    frames = _column(nodes, "callFrame")
    if not set(map(type, frames)) <= _DICT:
        return None
    ids = _column(nodes, "id")
    names = _column(frames, "functionName", "")
    urls = _column(frames, "url")
    lines = _column(frames, "lineNumber")
    cols = _column(frames, "columnNumber")
    parents = _column(nodes, "parent")
    children = _column(nodes, "children")
    valid = (
        set(map(type, ids)) <= _INT
        and min(ids, default=0) >= -(2**63)
        and max(ids, default=0) < 2**63
        and set(map(type, names)) <= _STRING_OR_NONE
        and set(map(type, urls)) <= _STRING_OR_NONE
        and set(map(type, lines)) <= _INT_OR_NONE
        and set(map(type, cols)) <= _INT_OR_NONE
        and all(-(2**31) <= v < 2**31 for v in _known(lines) + _known(cols))
        and set(map(type, parents)) <= _INT_OR_NONE
        and set(map(type, children)) <= _LIST_OR_NONE
        and set(map(type, chain.from_iterable(filter(None, children)))) <= _INT
    )
    if not valid:
        return None
    if None in names:
        names = ["" if name is None else name for name in names]
    return ids, names, urls, lines, cols, parents, children


def _column(objects: list[dict], key: str, default: object = None) -> list:
    return list(map(dict.get, objects, repeat(key), repeat(default)))


def _known(values: list[int | None]) -> list[int]:
    """The values that are not None: the extremes, as a list of at most two."""
    known = [v for v in values if v is not None] if None in values else values
    return [min(known), max(known)] if known else []


def _fits_int64(value: int) -> bool:
    return -(2**63) <= value < 2**63


def frame_name(function: str | None, url: str | None, line: int | None) -> str:
    """A JavaScript frame's name as speedscope gives it: its function's, else
    "(anonymous FILE:LINE)" (the URL's last part), else "(anonymous)"."""
    if function:
        return function
    if url:
        line_text = "undefined" if line is None else str(line)
        return f"(anonymous {url.rsplit('/', 1)[-1]}:{line_text})"
    return "(anonymous)"


def check_frame_fields(
    title: str,
    where: str,
    strings: Iterable[tuple[str, object]],
    integers: Iterable[tuple[str, object]],
    lowest: int = -(2**31),
) -> None:
    """Refuse frame fields that are neither absent nor strings, and line or column
    numbers that are not integers in [`lowest`, 2**31), naming `where`.`key`."""
    for key, value in strings:
        if value is not None and not isinstance(value, str):
            raise FormatError(
                title, f"{where}.{key}", f"expected a string, got {describe_json_value(value)}"
            )
    for key, value in integers:
        if value is not None and not (_is_int(value) and lowest <= value < 2**31):
            raise FormatError(
                title,
                f"{where}.{key}",
                f"expected a 32-bit integer, got {describe_json_value(value)}",
            )


def joined(chunks: list[np.ndarray], dtype: type) -> np.ndarray:
    """The chunks as one array (the chunk itself when there is one; empty of `dtype` when none)."""
    if len(chunks) == 1:
        return chunks[0]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype)


def _look_up_in_place(table: np.ndarray, indexes: np.ndarray) -> np.ndarray:
    """`indexes` with each index replaced by ``table[index]``, a block at a time (no copy
    of `indexes` as wide integers); -1 reads the last entry."""
    for start in range(0, len(indexes), _COMPACT_BLOCK):
        block = indexes[start : start + _COMPACT_BLOCK]
        block[:] = table[block]
    return indexes


def _compact(column: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``column[keep]`` (`keep` may be shorter), written over the start of `column`: a view of it.

    A block is copied out before it is written back, and never ahead of
    the blocks still to be read, so no second column-sized array is made.
    """
    done = 0
    for start in range(0, len(keep), _COMPACT_BLOCK):
        block = keep[start : start + _COMPACT_BLOCK]
        kept = column[start : start + len(block)][block]
        column[done : done + len(kept)] = kept
        done += len(kept)
    return column[:done]


def _required(document: dict, key: str, where: str) -> object:
    if key not in document:
        raise FormatError(TITLE, where or "top level", f"no {key!r} key")
    return document[key]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer_array(values: object, where: str, title: str = TITLE) -> np.ndarray:
    """A 1-D integer array (int64, or int32 as the reading in parts makes it) of JSON
    integers, or a FormatError naming `where`."""
    if isinstance(values, np.ndarray) and values.dtype in (np.int64, np.int32):
        return values
    if not isinstance(values, list):
        raise FormatError(title, where, f"expected a list, got {describe_json_value(values)}")
    try:
        array = np.array(values, dtype=None if values else np.int64)
    except (ValueError, OverflowError, TypeError):
        array = None
    if array is None or array.ndim != 1 or array.dtype.kind not in "iu":
        bad = next((i for i, v in enumerate(values) if not _is_int(v)), 0)
        raise FormatError(
            title, f"{where}[{bad}]", f"expected an integer, got {describe_json_value(values[bad])}"
        )
    return array.astype(np.int64, copy=False)


def _number_array(values: object, where: str, title: str = TITLE) -> np.ndarray:
    """A 1-D array of JSON numbers (float64 unless given as a NumPy array of numbers),
    or a FormatError naming `where`."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "if":
        return values
    if not isinstance(values, list):
        raise FormatError(title, where, f"expected a list, got {describe_json_value(values)}")
    try:
        array = np.array(values, dtype=None if values else np.float64)
    except (ValueError, OverflowError, TypeError):
        array = None
    if array is None or array.ndim != 1 or array.dtype.kind not in "iuf":
        bad = next((i for i, v in enumerate(values) if not _is_number(v)), 0)
        raise FormatError(
            title, f"{where}[{bad}]", f"expected a number, got {describe_json_value(values[bad])}"
        )
    return array.astype(np.float64, copy=False)


def describe_json_value(value: object) -> str:
    """How a JSON value reads in an error message: its type and a short excerpt."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {shorten(value)}"
    return f"the number {value!r}"

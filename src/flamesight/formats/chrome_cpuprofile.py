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
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import orjson

from flamesight.formats.errors import FormatError, shorten
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit

NAME = "chrome-cpuprofile"
TITLE = "Chrome/Node .cpuprofile"

_IGNORED_FUNCTIONS = frozenset({"(root)", "(idle)"})
_IGNORED_URL = "native dummy.js"
_STACKED_ON_PREVIOUS = frozenset({"(garbage collector)", "(program)"})

_PROFILE_KEYS = frozenset({"samples", "startTime", "endTime", "timeDeltas"})
# Lists of plain numbers read without making a Python object per number, and
# the bytes that may appear between their brackets.
_INTEGER_TEXT = b"0123456789-, \t\r\n"
_NUMBER_TEXT = _INTEGER_TEXT + b".eE+"
_NUMBER_LISTS = {"samples": np.int64, "timeDeltas": np.float64, "timestamps": np.float64}

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
    document = _load_document(data)
    if not isinstance(document, dict):
        raise FormatError(
            TITLE, "top level", f"expected a JSON object, got {describe_json_value(document)}"
        )
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


def _load_document(data: bytes) -> object:
    """The JSON document, with its long number lists read straight into NumPy arrays.

    `samples` and `timeDeltas` (or `timestamps`) hold most of a big profile;
    as Python lists they would take several times the file size.
    """
    lifted: dict[str, np.ndarray] = {}
    pieces = []
    done = 0
    spans = []
    for key, dtype in _NUMBER_LISTS.items():
        match = re.search(rb'"' + key.encode() + rb'"[ \t\r\n]*:[ \t\r\n]*\[', data)
        end = data.find(b"]", match.end()) if match else -1
        if end < 0:
            continue
        array = _plain_number_list(data[match.end() : end], dtype)
        if array is not None:
            lifted[key] = array
            spans.append((match.end(), end))
    view = memoryview(data)  # pieces without copies; only their join is one
    for start, end in sorted(spans):
        pieces.append(view[done:start])
        done = end
    pieces.append(view[done:])
    try:
        document = orjson.loads(b"".join(pieces) if spans else data)
        if not spans:
            return document
        if isinstance(document, dict) and all(document.get(key) == [] for key in lifted):
            document.update(lifted)
            return document
        # a number list matched below the top level: read the file as it is
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise FormatError(
            TITLE, f"line {error.lineno} column {error.colno}", f"not valid JSON ({error.msg})"
        ) from None


def _plain_number_list(text: bytes, dtype: type) -> np.ndarray | None:
    """The numbers of a JSON list's inside (``1, 2, 3``), or None if it holds anything else."""
    if not text.strip():
        return np.zeros(0, dtype)
    integers = not text.translate(None, _INTEGER_TEXT)
    if not integers and (dtype is not np.float64 or text.translate(None, _NUMBER_TEXT)):
        return None
    try:
        array = np.fromstring(text, dtype=np.int64 if integers else np.float64, sep=",")
    except ValueError:
        return None
    if len(array) != text.count(b",") + 1:
        return None
    if integers and len(array) and (array.max() >= 2**63 - 1 or array.min() <= -(2**63)):
        return None  # fromstring saturates numbers past 64 bits
    if not integers and not np.isfinite(array).all():
        return None
    return array.astype(dtype, copy=False)


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
        has_parent = [p is not None and _fits_int64(p) for p in parents]
        self._has_parent.append(np.array(has_parent, bool))
        self._parent_ids.append(
            np.array(
                [p if has else 0 for p, has in zip(parents, has_parent, strict=True)], np.int64
            )
        )
        child_ids: list[int] = []
        child_parents: list[int] = []
        for index, node_children in enumerate(children):
            if node_children:
                child_ids.extend(node_children)
                child_parents.extend([first + index] * len(node_children))
        if not all(map(_fits_int64, child_ids)):
            fits = [_fits_int64(child) for child in child_ids]
            child_ids = [c for c, keep in zip(child_ids, fits, strict=True) if keep]
            child_parents = [p for p, keep in zip(child_parents, fits, strict=True) if keep]
        self._child_ids.append(np.array(child_ids, np.int64))
        self._child_parents.append(np.array(child_parents, np.int64))
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
        """The profile; `where` names the time deltas in error messages."""
        builder = ProfileBuilder(name, Unit.MICROSECONDS, sampled=True)
        samples = _joined(self._samples, np.int64)
        deltas = _joined(self._deltas, np.float64)
        self._samples, self._deltas = [], []
        count = len(samples)
        if count == 0:
            return builder.build()
        if len(deltas) < count:
            raise FormatError(
                self._title, where, f"{len(deltas):,} time deltas for {count:,} samples"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            elapsed = np.cumsum(deltas[:count], out=deltas[:count])  # the deltas are done with
            span = elapsed.max() - elapsed.min()  # every duration below is at most this
        if not np.isfinite(span):
            finite = np.isfinite(elapsed)
            bad = int(np.argmin(finite)) if not finite.all() else int(np.argmax(elapsed))
            raise FormatError(
                self._title,
                where,
                f"the time deltas add up past the largest float at delta {bad:,} (of {count:,})",
            )
        # Runs of one node collapse into one entry at the run's first sample;
        # speedscope then repeats the next-to-last sample at the last sample's
        # time, which gives the last run no duration.
        starts = np.flatnonzero(np.concatenate(([True], samples[1:] != samples[:-1])))
        entry_nodes = samples[starts]
        entry_times = elapsed[starts]
        if count > 1:
            entry_nodes = np.append(entry_nodes, samples[count - 2])
            entry_times = np.append(entry_times, elapsed[count - 1])
        del samples, deltas, elapsed, starts  # free the per-sample arrays before the stacks
        # A negative delta never moves time backwards.
        np.maximum.accumulate(entry_times, out=entry_times)
        stacks = _StackWalker(self, builder).stacks_of(entry_nodes)
        del entry_nodes
        busy = stacks >= 0
        if not busy.any():
            return builder.build()
        # time after the last frames closed is not part of the profile
        end = len(stacks) - int(np.argmax(busy[::-1]))
        del busy
        if entry_times[0] > 0:  # idle from the start time to the first sample
            builder.add_samples(np.array([-1]), entry_times[:1], np.zeros(1))
        weights = np.zeros(len(entry_times))  # the last entry has no duration
        np.subtract(entry_times[1:], entry_times[:-1], out=weights[:-1])
        keep = np.flatnonzero(weights[:end] > 0)
        builder.add_samples(stacks[keep], weights[keep], entry_times[keep])
        del stacks, weights, entry_times, keep  # the builder has its copies
        return builder.build()

    # helpers for _StackWalker

    def _node_tables(self) -> tuple[_NodeIndex, list[int], list[int], list[bool], list[bool]]:
        """Node id lookup, and per node: parent index, frame key index, ignore / stack-on-top flags.

        A node's parent is the node whose `children` list names it, else
        the node its `parent` id names; when several do, the last one wins
        (as speedscope's reading in file order has it).
        """
        index_of = _NodeIndex(_joined(self._ids, np.int64))
        has_parent = _joined(self._has_parent, bool)
        parent = np.where(has_parent, index_of(_joined(self._parent_ids, np.int64)), -1)
        child_nodes = index_of(_joined(self._child_ids, np.int64))
        child_parents = _joined(self._child_parents, np.int64)
        known = child_nodes >= 0
        child_nodes, child_parents = child_nodes[known], child_parents[known]
        # keep the last listing of each child: first occurrence in the reversed order
        _, first_reversed = np.unique(child_nodes[::-1], return_index=True)
        last = len(child_nodes) - 1 - first_reversed
        parent[child_nodes[last]] = child_parents[last]
        node_frames = _joined(self._node_frames, np.int64)
        keys = list(self._frame_keys)
        ignored = np.array(
            [name in _IGNORED_FUNCTIONS or url == _IGNORED_URL for name, url, _, _ in keys], bool
        )
        on_top = np.array([name in _STACKED_ON_PREVIOUS for name, _, _, _ in keys], bool)
        return (
            index_of,
            parent.tolist(),
            node_frames.tolist(),
            ignored[node_frames].tolist(),
            on_top[node_frames].tolist(),
        )

    def _frame_fields(self, key: tuple) -> tuple[str, str | None, int | None, int | None]:
        """Name, file, 1-based line and column of a frame key, named as speedscope names it."""
        name, url, line, col = key
        line = None if line is None else line + 1
        col = None if col is None else col + 1
        if not name:
            if url:
                line_text = "undefined" if line is None else str(line)
                name = f"(anonymous {url.rsplit('/', 1)[-1]}:{line_text})"
            else:
                name = "(anonymous)"
        return name, url or None, line, col


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
                self._table = np.full(span, -1, np.int64)
                self._table[self._ids - self._low] = self._indices

    def __call__(self, node_ids: np.ndarray) -> np.ndarray:
        """The node index of every id, -1 for ids no node has."""
        if len(self._ids) == 0:
            return np.full(len(node_ids), -1, np.int64)
        if self._table is not None:
            inside = (node_ids >= self._low) & (node_ids < self._low + len(self._table))
            result = np.full(len(node_ids), -1, np.int64)
            result[inside] = self._table[node_ids[inside] - self._low]
            return result
        at = np.minimum(np.searchsorted(self._ids, node_ids), len(self._ids) - 1)
        return np.where(self._ids[at] == node_ids, self._indices[at], -1)


class _StackWalker:
    """Replays speedscope's walk from sample to sample.

    For most nodes the stack is simply the node's ancestors below the first
    ignored one, whatever ran before ("fixed" nodes, computed once each). The
    rest, `(program)` and `(garbage collector)` and anything called under
    them, depend on the previous stack: those states are node paths interned
    in a trie, and each (previous path, sampled node) step is computed once.
    """

    def __init__(self, assembler: CpuProfileAssembler, builder: ProfileBuilder) -> None:
        self._assembler = assembler
        self._builder = builder
        tables = assembler._node_tables()
        self._node_index, self._parent, self._node_frame, self._ignored, self._on_top = tables
        self._frame_keys = list(assembler._frame_keys)
        self._fixed = self._fixed_nodes()
        self._path_parent: list[int] = []
        self._path_node: list[int] = []
        self._path_stack: list[int] = []
        self._path_ids: dict[tuple[int, int], int] = {}
        self._frame_of_key: dict[int, int] = {}
        self._fixed_path_of: dict[int, int] = {}

    def stacks_of(self, sampled_ids: np.ndarray) -> np.ndarray:
        """The builder stack after each sampled node id (unknown ids keep the previous stack)."""
        nodes = self._node_index(sampled_ids)
        fixed_nodes = np.array(self._fixed, bool)
        fixed = np.zeros(len(nodes), bool)
        known = nodes >= 0
        fixed[known] = fixed_nodes[nodes[known]]
        path_of_node = np.full(len(fixed_nodes) + 1, -1, np.int64)
        for node in np.unique(nodes[fixed]).tolist():
            path_of_node[node] = self._fixed_path(node)
        paths = path_of_node[nodes]  # (index -1 reads the spare last entry, -1)
        # The others follow from the stack before them, in order.
        transitions: dict[tuple[int, int], int] = {}
        current = -1
        previous_index = -1
        for index in np.flatnonzero(~fixed).tolist():
            if index != previous_index + 1:
                current = int(paths[index - 1])
            node = int(nodes[index])
            if node >= 0:
                step = (current, node)
                following = transitions.get(step)
                if following is None:
                    following = transitions[step] = self._step(current, node)
                current = following
            paths[index] = current
            previous_index = index
        stack_of_path = np.array([*self._path_stack, -1], np.int64)
        return stack_of_path[paths]

    def _fixed_nodes(self) -> list[bool]:
        """Nodes whose stack does not depend on the previous one (empty for ignored nodes).

        That holds when no node from it up to the root is stacked on what ran
        before, and the ancestors above its first ignored ancestor are ignored
        too (so none of them can be open).
        """
        parent, ignored, on_top = self._parent, self._ignored, self._on_top
        unknown, dynamic, fixed, ignored_chain = 0, 1, 2, 3  # states of a node
        state = [unknown] * len(parent)
        for start in range(len(parent)):
            chain = []
            node = start
            while node >= 0 and state[node] == unknown:
                chain.append(node)
                if len(chain) > len(parent):
                    raise FormatError(
                        self._assembler._title,
                        "nodes",
                        "the parent links of the nodes form a cycle",
                    )
                node = parent[node]
            above = ignored_chain if node < 0 else state[node]
            for node in reversed(chain):
                if ignored[node]:
                    fixed_above = above == ignored_chain and not on_top[node]
                    above = ignored_chain if fixed_above else dynamic
                elif on_top[node] or above == dynamic:
                    above = dynamic
                else:
                    above = fixed
                state[node] = above
        return [value in (fixed, ignored_chain) for value in state]

    def _fixed_path(self, node: int) -> int:
        """The path of a fixed node: its ancestors below the first ignored one.

        Paths are remembered per node, so each node's chain is walked only up
        to the nearest ancestor already seen.
        """
        known = self._fixed_path_of
        chain = []
        while node >= 0 and not self._ignored[node] and node not in known:
            chain.append(node)
            node = self._parent[node]
        path = known.get(node, -1) if node >= 0 and not self._ignored[node] else -1
        for node in reversed(chain):
            path = known[node] = self._child_path(path, node)
        return path

    def _step(self, current: int, node: int) -> int:
        """The path after sampling `node` with `current` open (speedscope's LCA walk)."""
        previous_nodes: list[int] = []
        previous_paths: list[int] = []
        path = current
        while path >= 0:
            previous_nodes.append(self._path_node[path])
            previous_paths.append(path)
            path = self._path_parent[path]
        previous_nodes.reverse()
        previous_paths.reverse()
        open_nodes = set(previous_nodes)
        top = previous_nodes[-1] if previous_nodes else -1
        ancestor = node
        steps = 0
        while ancestor >= 0 and ancestor not in open_nodes:
            ancestor = top if self._on_top[ancestor] else self._parent[ancestor]
            steps += 1
            if steps > len(self._parent):
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
            walker = new_top if self._on_top[walker] else self._parent[walker]
        path = base
        for walker in reversed(opened):
            path = self._child_path(path, walker)
        return path

    def _child_path(self, parent: int, node: int) -> int:
        key = (parent, node)
        path = self._path_ids.get(key)
        if path is None:
            key = self._node_frame[node]
            frame = self._frame_of_key.get(key)
            if frame is None:
                frame = self._frame_of_key[key] = self._builder.frame(
                    *self._assembler._frame_fields(self._frame_keys[key])
                )
            parent_stack = self._path_stack[parent] if parent >= 0 else -1
            path = self._path_ids[key] = len(self._path_parent)
            self._path_parent.append(parent)
            self._path_node.append(node)
            self._path_stack.append(self._builder.stack(parent_stack, frame))
        return path


def _node_columns(nodes: list) -> tuple[list, ...] | None:
    """A nodes list as `CpuProfileAssembler._add_columns` takes it, or None if a value is out of place.

    Checks what `add_node` checks, a column at a time; None sends the caller
    to the node-by-node reading, which names the bad value.
    """
    if not all(type(node) is dict for node in nodes):
        return None
    frames = [node.get("callFrame") for node in nodes]
    if not all(type(frame) is dict for frame in frames):
        return None
    ids = [node.get("id") for node in nodes]
    names = [frame.get("functionName", "") for frame in frames]
    urls = [frame.get("url") for frame in frames]
    lines = [frame.get("lineNumber") for frame in frames]
    cols = [frame.get("columnNumber") for frame in frames]
    parents = [node.get("parent") for node in nodes]
    children = [node.get("children") for node in nodes]
    valid = (
        all(type(i) is int and _fits_int64(i) for i in ids)
        and all(type(name) is str or name is None for name in names)
        and all(type(url) is str or url is None for url in urls)
        and all(v is None or (type(v) is int and -(2**31) <= v < 2**31) for v in lines + cols)
        and all(p is None or type(p) is int for p in parents)
        and all(c is None or (type(c) is list and all(type(i) is int for i in c)) for c in children)
    )
    if not valid:
        return None
    names = ["" if name is None else name for name in names]
    return ids, names, urls, lines, cols, parents, children


def _fits_int64(value: int) -> bool:
    return -(2**63) <= value < 2**63


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


def _joined(chunks: list[np.ndarray], dtype: type) -> np.ndarray:
    if len(chunks) == 1:
        return chunks[0]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype)


def _required(document: dict, key: str, where: str) -> object:
    if key not in document:
        raise FormatError(TITLE, where or "top level", f"no {key!r} key")
    return document[key]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer_array(values: object, where: str, title: str = TITLE) -> np.ndarray:
    """A 1-D int64 array of JSON integers, or a FormatError naming `where`."""
    if isinstance(values, np.ndarray) and values.dtype == np.int64:
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
    """A 1-D float64 array of JSON numbers, or a FormatError naming `where`."""
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
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

"""Where every frame goes: the rectangles of a flame graph, a flame chart or a sandwich.

A layout is pure geometry over the profile model, in the profile's own axis
units; `FlameLayout.pixel_left` / `pixel_right` turn it into pixels for the
layout's width. Three views:

- the flame graph (`layout_flamegraph`): stacks merged by function (frames
  with the same name and file), children ordered by total weight, heaviest
  first ("left heavy"), the roots spanning the whole width;
- the flame chart (`layout_flamechart`): time order, consecutive samples that
  have the same function node at a depth merged into one rectangle;
- the sandwich of one function (`layout_sandwich`): its callers above it (an
  inverted tree, direct callers nearest), its callees below it, the function
  itself in the middle; recursion counted once per stack.

Frames narrower than a pixel are not laid out one by one, so the work does not
grow with the number of samples: the flame graph works over the stack table
(after one weighted count of samples per stack) and merges the siblings
narrower than a pixel into one block; the flame chart looks at the sample
under the centre of each pixel column, so it costs O(pixels x depth).
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, NamedTuple

import numpy as np

from flamesight.model import Profile, StackTable, Unit

View = Literal["flamegraph", "flamechart", "sandwich"]
VIEWS: tuple[View, ...] = ("flamegraph", "flamechart", "sandwich")

MIN_FRAME_PIXELS = 1.0
"""Frames narrower than this many pixels are merged with their narrow siblings."""


class FrameBox(NamedTuple):
    """One rectangle of a layout, in axis units.

    `start`/`end` are times on the flame chart, and positions on the
    cumulative-weight axis of the flame graph and the sandwich. `function`
    is -1 for a block that stands for `merged` (more than one) sibling frames
    too narrow to show one by one.
    """

    name: str
    file: str | None
    depth: int
    start: float
    end: float
    self: float
    total: float
    function: int
    merged: int


@dataclass(frozen=True, eq=False)
class FlameLayout:
    """The rectangles of one view as columns, plus what is needed to draw them.

    `x` and `span` are the left edge and the width of every rectangle in axis
    units. `depth` is the stack depth (0 for roots) on the flame graph and
    the flame chart; on the sandwich it is 0 for the function, -k for its
    callers k levels up and +k for its callees k levels down. The first row
    shows `top_depth`; there are `rows` rows. `range_total` is the weight
    that percentages are taken of. `function` indexes `function_names`,
    `function_files` and `function_lines` (-1 for a merged block).
    """

    view: View
    profile_name: str
    unit: Unit
    width: int
    axis_start: float
    axis_end: float
    range_total: float
    top_depth: int
    rows: int
    x: np.ndarray
    span: np.ndarray
    depth: np.ndarray
    function: np.ndarray
    merged: np.ndarray
    self_weight: np.ndarray
    total_weight: np.ndarray
    function_names: list[str]
    function_files: list[str | None]
    function_lines: np.ndarray
    focus: str | None = None

    def __len__(self) -> int:
        return len(self.x)

    @property
    def pixels_per_unit(self) -> float:
        """Pixels per axis unit."""
        return self.width / (self.axis_end - self.axis_start)

    @cached_property
    def pixel_left(self) -> np.ndarray:
        """Left edge of every rectangle in pixels (not rounded)."""
        return (self.x - self.axis_start) * self.pixels_per_unit

    @cached_property
    def pixel_right(self) -> np.ndarray:
        """Right edge of every rectangle in pixels (not rounded)."""
        return (self.x + self.span - self.axis_start) * self.pixels_per_unit

    @property
    def row(self) -> np.ndarray:
        """Row of every rectangle, 0 at the top."""
        return self.depth - self.top_depth

    def name_of(self, index: int) -> str:
        """What rectangle `index` shows: its function's name, or a count of merged frames."""
        function = int(self.function[index])
        if function < 0:
            return f"{int(self.merged[index])} smaller frames"
        return self.function_names[function]

    def location_of(self, index: int) -> str | None:
        """ "file:line" (or only the file) of rectangle `index`; None when unknown or merged."""
        function = int(self.function[index])
        if function < 0 or self.function_files[function] is None:
            return None
        line = int(self.function_lines[function])
        file = self.function_files[function]
        return f"{file}:{line}" if line >= 0 else file

    def boxes(self) -> list[FrameBox]:
        """Every rectangle as a `FrameBox`, ordered by depth, then position."""
        return [
            FrameBox(
                self.name_of(i),
                self.function_files[function] if function >= 0 else None,
                int(self.depth[i]),
                float(self.x[i]),
                float(self.x[i] + self.span[i]),
                float(self.self_weight[i]),
                float(self.total_weight[i]),
                function,
                int(self.merged[i]),
            )
            for i, function in enumerate(self.function.tolist())
        ]


def layout_flamegraph(
    profile: Profile,
    *,
    width: int = 1200,
    start: float | None = None,
    end: float | None = None,
    start_depth: int = 0,
    levels: int | None = None,
) -> FlameLayout:
    """The left-heavy flame graph of [start, end): stacks merged by function.

    The axis runs from 0 to the busy weight of the range (samples with no
    stack left out), so the roots together span the whole `width`. The first
    row is `start_depth`; at most `levels` rows are laid out.
    """
    _check_options(width, start, end, start_depth, levels)
    selected = _select(profile, start, end)
    functions = _Functions.of(selected)
    table = functions.table
    leaf, subtree = functions.weights(selected)
    busy = float(subtree[table.parent < 0].sum())
    axis_end = busy if busy > 0 else 1.0
    boxes = _lay_out_tree(
        _Tree(
            table.parent.astype(np.int64),
            table.frame.astype(np.int64),
            table.depth,
            leaf,
            subtree,
        ),
        functions,
        min_span=axis_end / width * MIN_FRAME_PIXELS,
        level_limit=None if levels is None else start_depth + levels,
    )
    return functions.layout(
        "flamegraph",
        selected,
        boxes.where(boxes.depth >= start_depth),
        width=width,
        axis=(0.0, axis_end),
        range_total=selected.total_weight,
        top_depth=start_depth,
    )


def layout_flamechart(
    profile: Profile,
    *,
    width: int = 1200,
    start: float | None = None,
    end: float | None = None,
    start_depth: int = 0,
    levels: int | None = None,
) -> FlameLayout:
    """The flame chart of [start, end): time left to right, one rectangle per run.

    A run is a stretch of consecutive samples that have the same function
    node (the same path of functions from the root) at a depth. Each pixel
    column looks at the sample under its centre, so samples narrower than a
    pixel fold into their neighbours and the work is O(width x depth), however
    many samples there are. Samples with no stack are gaps. Samples that
    straddle `start` or `end` are clipped to the range, as `Profile.slice`
    clips them. A rectangle's total is its duration, its self weight the
    part of it where its function is the innermost frame; percentages are
    of the range's length.
    """
    _check_options(width, start, end, start_depth, levels)
    samples = profile.samples
    axis_start = profile.start if start is None else float(start)
    axis_end = profile.end if end is None else float(end)
    if axis_end <= axis_start:
        axis_end = axis_start + 1.0
    functions = _Functions.of(profile)
    table = functions.table
    # The sample under the centre of every pixel column, -1 where none is.
    centres = axis_start + (np.arange(width) + 0.5) * ((axis_end - axis_start) / width)
    under = np.searchsorted(samples.time, centres, "right") - 1
    if len(samples):
        candidate = np.maximum(under, 0)
        covering = samples.time[candidate] + samples.weight[candidate] > centres
        under = np.where((under >= 0) & covering, under, -1)
    # Neighbouring columns under the same sample are one entry.
    change = np.ones(width, bool)
    change[1:] = under[1:] != under[:-1]
    first_column = np.flatnonzero(change)
    entry_sample = under[first_column]
    entry_start, entry_end = _entry_spans(
        profile, entry_sample, first_column, width, (axis_start, axis_end)
    )
    node = np.full(len(entry_sample), -1, np.int64)
    if len(samples):
        stack = samples.stack[np.maximum(entry_sample, 0)]
        busy = (entry_sample >= 0) & (stack >= 0)
        node[busy] = functions.node_map[stack[busy]]
    node_depth = np.full(len(node), -1, np.int64)
    node_depth[node >= 0] = table.depth[node[node >= 0]]
    rows = max(int(node_depth.max(initial=-1)) + 1 - start_depth, 0)
    if levels is not None:
        rows = min(rows, levels)
    # path[r, e]: the function node at depth start_depth + r of entry e, or -1.
    entries = len(node)
    path = np.full((rows, entries), -1, np.int64)
    current, current_depth = node.copy(), node_depth.copy()
    alive = np.flatnonzero(current >= 0)
    while alive.size:
        row = current_depth[alive] - start_depth
        shown = (row >= 0) & (row < rows)
        path[row[shown], alive[shown]] = current[alive[shown]]
        current[alive] = table.parent[current[alive]]
        current_depth[alive] -= 1
        alive = alive[current[alive] >= 0]
    # Runs of one node along each row (a run never crosses into the next row).
    flat = path.ravel()
    change = np.ones(flat.size, bool)
    change[1:] = flat[1:] != flat[:-1]
    change[:: max(entries, 1)] = True
    run_start = np.flatnonzero(change)
    run_end = np.append(run_start[1:], flat.size)
    framed = flat[run_start] >= 0
    run_start, run_end = run_start[framed], run_end[framed]
    first_entry = run_start % max(entries, 1)
    last_entry = (run_end - 1) % max(entries, 1)
    x = entry_start[first_entry]
    span = entry_end[last_entry] - x
    # A run's self weight: its entries whose deepest node is on the run's row.
    is_leaf = node_depth[None, :] == (start_depth + np.arange(rows))[:, None]
    leaf_span = np.where(is_leaf, entry_end - entry_start, 0.0).ravel()
    running = np.concatenate(([0.0], np.cumsum(leaf_span)))
    boxes = _Boxes(
        x,
        span,
        run_start // max(entries, 1) + start_depth,
        table.frame[flat[run_start]].astype(np.int64),
        np.ones(len(x), np.int64),
        running[run_end] - running[run_start],
        span.copy(),
    )
    return functions.layout(
        "flamechart",
        profile,
        boxes,
        width=width,
        axis=(axis_start, axis_end),
        range_total=axis_end - axis_start,
        top_depth=start_depth,
        rows=rows,
    )


def layout_sandwich(
    profile: Profile,
    function: str,
    *,
    width: int = 1200,
    start: float | None = None,
    end: float | None = None,
    levels: int | None = None,
) -> FlameLayout:
    """The sandwich of `function` in [start, end): callers above, callees below.

    `function` is a name, or "name (file)" to pick one of several functions
    with that name; all functions that match are shown as one. The axis runs
    from 0 to the function's total weight. Callers form an inverted tree
    (depth -1 holds the direct callers), callees a forward tree (depth 1
    holds what the function calls); both merge paths by function, and a stack
    counts the function once, at its outermost occurrence. At most `levels`
    rows are laid out, shared between callers and callees. LookupError when
    no function matches.
    """
    _check_options(width, start, end, 0, levels)
    selected = _select(profile, start, end)
    functions = _Functions.of(selected)
    targets = functions.matching(function)
    table = functions.table
    leaf, subtree = functions.weights(selected)
    key_of_node = table.frame.astype(np.int64)
    is_target = np.isin(key_of_node, targets)
    distinct = np.where(is_target, 0, 1 + np.arange(len(key_of_node)))
    anchors = np.flatnonzero(is_target & table.outermost_mask(distinct) & (subtree > 0))
    focus_total = float(subtree[anchors].sum())
    axis_end = focus_total if focus_total > 0 else 1.0
    min_span = axis_end / width * MIN_FRAME_PIXELS
    callees = _callee_tree(table, key_of_node, leaf, subtree, anchors)
    callers = _caller_tree(table, key_of_node, subtree, anchors, min_span)
    up = int(callers.level.max())
    down = int(callees.level.max())
    if levels is not None:
        room = max(levels - 1, 0)
        up = min(up, max(room // 2, room - down))
        down = min(down, room - up)
    below = _lay_out_tree(callees, functions, min_span=min_span, level_limit=down + 1)
    above = _lay_out_tree(callers, functions, min_span=min_span, level_limit=up + 1)
    above = above.where(above.depth > 0)
    above.depth = -above.depth
    boxes = _Boxes.concatenate([below, above])
    # The middle row is the function itself: its self weight is counted at
    # every occurrence, and one name stands for all the functions matched.
    middle = boxes.depth == 0
    boxes.self_weight[middle] = float(leaf[is_target].sum())
    boxes.function[middle] = targets[0] if len(targets) == 1 else len(functions.keys)
    return functions.layout(
        "sandwich",
        selected,
        boxes,
        width=width,
        axis=(0.0, axis_end),
        range_total=selected.total_weight,
        top_depth=-up,
        rows=up + 1 + down,
        focus=function,
        extra_name=function if len(targets) > 1 else None,
    )


# -- internals ---------------------------------------------------------------


def _check_options(
    width: int, start: float | None, end: float | None, start_depth: int, levels: int | None
) -> None:
    if width < 1:
        raise ValueError(f"width must be at least 1 pixel, got {width}")
    if start_depth < 0:
        raise ValueError(f"start depth must be 0 or more, got {start_depth}")
    if levels is not None and levels < 0:
        raise ValueError(f"levels must be 0 or more, got {levels}")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")


def _entry_spans(
    profile: Profile,
    entry_sample: np.ndarray,
    first_column: np.ndarray,
    width: int,
    axis: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of every flame-chart entry (one sample under a run of columns).

    An entry is its sample's own span widened to the edges of its columns,
    so that entries of narrow samples tile the axis, but never over the
    neighbouring entries' own spans: where every sample is a pixel wide or
    more, the spans are exact. An entry of no sample spans its columns.
    """
    samples = profile.samples
    column_width = (axis[1] - axis[0]) / width
    column_start = axis[0] + first_column * column_width
    column_end = axis[0] + np.append(first_column[1:], width) * column_width
    own_start, own_end = column_start.copy(), column_end.copy()
    real = entry_sample >= 0
    if len(samples):
        own_start[real] = samples.time[entry_sample[real]]
        own_end[real] = own_start[real] + samples.weight[entry_sample[real]]
    start = np.minimum(own_start, column_start)
    end = np.maximum(own_end, column_end)
    start[1:] = np.maximum(start[1:], own_end[:-1])
    end[:-1] = np.minimum(end[:-1], own_start[1:])
    start = np.clip(start, axis[0], axis[1])
    return start, np.clip(end, start, axis[1])


def _select(profile: Profile, start: float | None, end: float | None) -> Profile:
    if start is None and end is None:
        return profile
    return profile.slice(start, end)


@dataclass
class _Boxes:
    """Rectangles being built: parallel columns (see `FlameLayout`)."""

    x: np.ndarray
    span: np.ndarray
    depth: np.ndarray
    function: np.ndarray
    merged: np.ndarray
    self_weight: np.ndarray
    total_weight: np.ndarray

    def where(self, keep: np.ndarray) -> _Boxes:
        """The rectangles where `keep` is true (or at the indices in `keep`)."""
        return _Boxes(
            self.x[keep],
            self.span[keep],
            self.depth[keep],
            self.function[keep],
            self.merged[keep],
            self.self_weight[keep],
            self.total_weight[keep],
        )

    @classmethod
    def concatenate(cls, parts: list[_Boxes]) -> _Boxes:
        """All rectangles of `parts`, in order."""
        return cls(
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.span for p in parts]),
            np.concatenate([p.depth for p in parts]),
            np.concatenate([p.function for p in parts]),
            np.concatenate([p.merged for p in parts]),
            np.concatenate([p.self_weight for p in parts]),
            np.concatenate([p.total_weight for p in parts]),
        )


@dataclass
class _Tree:
    """A weighted tree as columns: `parent` -1 and `level` 0 for roots."""

    parent: np.ndarray
    function: np.ndarray
    level: np.ndarray
    self_weight: np.ndarray
    total: np.ndarray


@dataclass(frozen=True, eq=False)
class _Functions:
    """A profile's stacks merged by function: the regrouped stack table and the names."""

    key_of_frame: np.ndarray
    keys: list[tuple[str, str | None]]
    table: StackTable
    node_map: np.ndarray
    frame_lines: np.ndarray

    @classmethod
    def of(cls, profile: Profile) -> _Functions:
        """The function tree of `profile` (computed once per stack table by the model)."""
        key_of_frame, keys = profile.frames.function_keys()
        table, node_map = profile.stacks.regroup(key_of_frame)
        return cls(key_of_frame, keys, table, node_map, profile.frames.line)

    def weights(self, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
        """Leaf and subtree weight of every function node over `profile`'s samples."""
        leaf = np.bincount(
            self.node_map, weights=profile.stack_weights(), minlength=len(self.table)
        ).astype(np.float64)
        subtree = self.table.subtree_sums(leaf) if len(self.table) else leaf
        return leaf, subtree

    @cached_property
    def lines(self) -> np.ndarray:
        """The smallest known line of every function's frames, -1 when none is known."""
        unknown = np.iinfo(np.int64).max
        lines = np.full(len(self.keys), unknown, np.int64)
        known = self.frame_lines >= 0
        np.minimum.at(lines, self.key_of_frame[known], self.frame_lines[known])
        lines[lines == unknown] = -1
        return lines

    def name_rank(self, function: np.ndarray) -> np.ndarray:
        """A rank for every entry of `function` that orders by name, then file (-1 first)."""
        unique, inverse = np.unique(function, return_inverse=True)

        def sort_key(index: int) -> tuple[str, str, int]:
            function_id = int(unique[index])
            if function_id < 0:
                return ("", "", -1)
            name, file = self.keys[function_id]
            return (name, file or "", function_id)

        rank = np.empty(len(unique), np.int64)
        rank[sorted(range(len(unique)), key=sort_key)] = np.arange(len(unique))
        return rank[inverse]

    def matching(self, function: str) -> np.ndarray:
        """Ids of the functions named `function` ("name" or "name (file)"); LookupError if none."""
        found = [
            index
            for index, (name, file) in enumerate(self.keys)
            if function in (name, f"{name} ({file})")
        ]
        if not found:
            names = sorted({name for name, _ in self.keys})
            close = difflib.get_close_matches(function, names, n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise LookupError(f"no function named {function!r} in this profile{hint}")
        return np.array(found, np.int64)

    def layout(
        self,
        view: View,
        profile: Profile,
        boxes: _Boxes,
        *,
        width: int,
        axis: tuple[float, float],
        range_total: float,
        top_depth: int,
        rows: int | None = None,
        focus: str | None = None,
        extra_name: str | None = None,
    ) -> FlameLayout:
        """The finished layout of `boxes`, ordered by depth then position.

        `extra_name` is a name with no file or line added after the
        profile's functions (the sandwich's middle row when it stands for
        several functions).
        """
        boxes = boxes.where(np.lexsort((boxes.x, boxes.depth)))
        if rows is None:
            rows = int(boxes.depth.max(initial=top_depth - 1)) + 1 - top_depth
        names = [name for name, _ in self.keys]
        files = [file for _, file in self.keys]
        lines = self.lines
        if extra_name is not None:
            names.append(extra_name)
            files.append(None)
            lines = np.append(lines, -1)
        return FlameLayout(
            view=view,
            profile_name=profile.name,
            unit=profile.unit,
            width=width,
            axis_start=axis[0],
            axis_end=axis[1],
            range_total=range_total,
            top_depth=top_depth,
            rows=rows,
            x=boxes.x.astype(np.float64),
            span=boxes.span.astype(np.float64),
            depth=boxes.depth.astype(np.int64),
            function=boxes.function.astype(np.int64),
            merged=boxes.merged.astype(np.int64),
            self_weight=boxes.self_weight.astype(np.float64),
            total_weight=boxes.total_weight.astype(np.float64),
            function_names=names,
            function_files=files,
            function_lines=lines,
            focus=focus,
        )


def _lay_out_tree(
    tree: _Tree, functions: _Functions, *, min_span: float, level_limit: int | None
) -> _Boxes:
    """Left-heavy placement of a weighted tree from 0; narrow siblings become one block.

    Siblings are ordered by total weight, heaviest first, ties by name; a
    node starts where its parent starts plus the weight of its earlier
    siblings. Siblings narrower than `min_span` come last in that order and
    are drawn as one block of their summed weight (their subtrees, narrower
    still, are left out), so every parent keeps its full width. Nodes at
    `level_limit` and below are left out.
    """
    count = len(tree.parent)
    live = tree.total > 0
    if level_limit is not None:
        live &= tree.level < level_limit
    wide = live & (tree.total >= min_span)
    nodes = np.flatnonzero(wide)
    parents = tree.parent[nodes]
    weights = tree.total[nodes]
    order = np.lexsort((functions.name_rank(tree.function[nodes]), -weights, parents))
    nodes, parents, weights = nodes[order], parents[order], weights[order]
    before = np.cumsum(weights) - weights
    group_start = np.ones(len(nodes), bool)
    group_start[1:] = parents[1:] != parents[:-1]
    first_sibling = np.maximum.accumulate(np.where(group_start, np.arange(len(nodes)), 0))
    offset = before - before[first_sibling]
    # Place level by level. The slot `count` is the origin (the parent of the
    # roots). A node whose parent was not placed (possible only by rounding
    # at the threshold) stays NaN and is dropped.
    slot_of_parent = np.where(tree.parent >= 0, tree.parent, count)
    left = np.full(count + 1, np.nan)
    left[count] = 0.0
    node_levels = tree.level[nodes]
    by_level = np.argsort(node_levels, kind="stable")
    bounds = np.searchsorted(node_levels[by_level], np.arange(int(node_levels.max(initial=-1)) + 2))
    for lo, hi in itertools.pairwise(bounds):
        chosen = by_level[lo:hi]
        left[nodes[chosen]] = left[slot_of_parent[nodes[chosen]]] + offset[chosen]
    # One block per placed parent for all its children narrower than min_span.
    wide_slot = np.append(wide, True)
    narrow = np.flatnonzero(live & ~wide & wide_slot[slot_of_parent])
    narrow_slot = slot_of_parent[narrow]
    size = count + 1
    merged = np.bincount(narrow_slot, minlength=size)
    blocks = np.flatnonzero(merged)
    merged = merged[blocks]
    block_total = np.bincount(narrow_slot, weights=tree.total[narrow], minlength=size)[blocks]
    block_self = np.bincount(narrow_slot, weights=tree.self_weight[narrow], minlength=size)[blocks]
    # A block of one frame is that frame: the sum of its one index is its index.
    only_child = np.bincount(narrow_slot, weights=narrow, minlength=size)[blocks]
    single = merged == 1
    block_function = np.where(
        single, tree.function[np.where(single, only_child, 0).astype(np.int64)], -1
    )
    wide_before = np.bincount(slot_of_parent[nodes], weights=weights, minlength=size)[blocks]
    slot_level = np.append(tree.level, -1)
    boxes = _Boxes(
        np.concatenate((left[nodes], left[blocks] + wide_before)),
        np.concatenate((weights, block_total)),
        np.concatenate((tree.level[nodes], slot_level[blocks] + 1)).astype(np.int64),
        np.concatenate((tree.function[nodes], block_function)).astype(np.int64),
        np.concatenate((np.ones(len(nodes), np.int64), merged)),
        np.concatenate((tree.self_weight[nodes], block_self)),
        np.concatenate((weights, block_total)),
    )
    return boxes.where(~np.isnan(boxes.x))


class _TreeBuilder:
    """Builds a tree level by level from entries keyed by (parent node, function).

    Node 0 is the root: the sandwich's function, with the function id -1
    until the layout names it.
    """

    def __init__(self, root_total: float) -> None:
        self._parts: list[tuple[np.ndarray, ...]] = [
            (
                np.array([-1], np.int64),
                np.array([-1], np.int64),
                np.array([0], np.int64),
                np.zeros(1),
                np.array([root_total]),
            )
        ]
        self._size = 1

    def add_level(
        self,
        parent: np.ndarray,
        function: np.ndarray,
        level: np.ndarray,
        self_weight: np.ndarray,
        total: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Merge entries with the same parent and function into new nodes.

        Returns the node of every entry and that node's summed total.
        """
        radix = int(function.max()) + 1
        unique, inverse = np.unique(parent * radix + function, return_inverse=True)
        inverse = inverse.ravel()
        node_level = np.empty(len(unique), np.int64)
        node_level[inverse] = level
        node_total = np.bincount(inverse, weights=total, minlength=len(unique))
        self._parts.append(
            (
                unique // radix,
                unique % radix,
                node_level,
                np.bincount(inverse, weights=self_weight, minlength=len(unique)),
                node_total,
            )
        )
        ids = self._size + inverse
        self._size += len(unique)
        return ids, node_total[inverse]

    def tree(self) -> _Tree:
        """The tree built so far."""
        return _Tree(*(np.concatenate(column) for column in zip(*self._parts, strict=True)))


def _callee_tree(
    table: StackTable,
    key_of_node: np.ndarray,
    leaf: np.ndarray,
    subtree: np.ndarray,
    anchors: np.ndarray,
) -> _Tree:
    """What the anchors call: their subtrees re-rooted at one node and merged by path.

    A stack node and its descendants land on different levels, and anchored
    subtrees are disjoint, so summing subtree weights counts each sample once
    per tree node. Every path is kept, however light: paths merged from many
    call sites can be wide where each part is narrow.
    """
    builder = _TreeBuilder(float(subtree[anchors].sum()))
    # Children lists of the weighed nodes: `child_order[first[p]:first[p + 1]]`.
    weighed = np.flatnonzero((subtree > 0) & (table.parent >= 0))
    child_order = weighed[np.argsort(table.parent[weighed], kind="stable")]
    first = np.searchsorted(table.parent[child_order], np.arange(len(table) + 1))
    frontier = anchors
    node = np.zeros(len(anchors), np.int64)
    level = 1
    while frontier.size:
        counts = first[frontier + 1] - first[frontier]
        owner = np.repeat(np.arange(len(frontier)), counts)
        within = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        frontier = child_order[first[frontier][owner] + within]
        if not frontier.size:
            break
        node, _ = builder.add_level(
            node[owner],
            key_of_node[frontier],
            np.full(len(frontier), level),
            leaf[frontier],
            subtree[frontier],
        )
        level += 1
    return builder.tree()


def _caller_tree(
    table: StackTable,
    key_of_node: np.ndarray,
    subtree: np.ndarray,
    anchors: np.ndarray,
    min_span: float,
) -> _Tree:
    """Who calls the anchors: each anchor's ancestors, nearest first, merged by path.

    Every anchor brings its subtree weight to each node of its inverted path;
    a caller where the stack begins (a root function) gets it as self weight.
    Paths stop growing where they turn narrower than `min_span`: their
    further callers could only be narrower.
    """
    weight = subtree[anchors]
    builder = _TreeBuilder(float(weight.sum()))
    current = anchors
    node = np.zeros(len(anchors), np.int64)
    level = 1
    while current.size:
        current = table.parent[current]
        going_on = current >= 0
        current, node, weight = current[going_on], node[going_on], weight[going_on]
        if not current.size:
            break
        at_root = table.parent[current] < 0
        node, node_total = builder.add_level(
            node,
            key_of_node[current],
            np.full(len(current), level),
            np.where(at_root, weight, 0.0),
            weight,
        )
        wide = node_total >= min_span
        current, node, weight = current[wide], node[wide], weight[wide]
        level += 1
    return builder.tree()

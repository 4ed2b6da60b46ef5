"""The columnar profile model: frame table, stack table, samples.

A `Profile` is three tables of NumPy columns, in the shape of the Firefox
profiler's processed format:

- frames: `name`, `file`, `line`, `col` (one row per distinct frame; `line`
  and `col` are -1 where unknown);
- stacks: `parent` and `frame` (a prefix tree; a stack is a row index, a
  parent always has a smaller index than its children, -1 is the root);
- samples: `stack`, `time`, `weight`, sorted by time. Sample *i* covers the
  half-open span ``[time[i], time[i] + weight[i])`` of the profile's axis. A
  stack of -1 is time with no frame on the stack (idle between events).

Profiles without timestamps (collapsed stacks, pprof) lay their samples end
to end, so the axis is cumulative weight. Evented input (begin/end events) is
turned into samples by `ProfileBuilder.enter` / `leave`: each interval between
two events becomes one sample of the stack that was open, weighted by its
duration.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

from flamesight.model.limits import ProfileTooLarge, current_limits
from flamesight.model.units import Unit, format_value


class Frame(NamedTuple):
    """One row of the frame table, with None where a field is unknown."""

    name: str
    file: str | None
    line: int | None
    col: int | None


@dataclass(frozen=True, eq=False)
class FrameTable:
    """Distinct frames as columns; `line`/`col` are -1 where unknown."""

    name: np.ndarray
    file: np.ndarray
    line: np.ndarray
    col: np.ndarray

    def __len__(self) -> int:
        return len(self.name)

    def __getitem__(self, index: int) -> Frame:
        line = int(self.line[index])
        col = int(self.col[index])
        return Frame(
            self.name[index],
            self.file[index],
            line if line >= 0 else None,
            col if col >= 0 else None,
        )

    @classmethod
    def from_frames(cls, frames: Sequence[Frame]) -> FrameTable:
        """Build the columns from a sequence of `Frame` rows."""
        names = np.empty(len(frames), dtype=object)
        files = np.empty(len(frames), dtype=object)
        names[:] = [f.name for f in frames]
        files[:] = [f.file for f in frames]
        lines = np.fromiter(
            (-1 if f.line is None else f.line for f in frames), np.int64, len(frames)
        )
        cols = np.fromiter((-1 if f.col is None else f.col for f in frames), np.int64, len(frames))
        return cls(names, files, lines, cols)

    @cached_property
    def identity_keys(self) -> np.ndarray:
        """Every frame its own group: the grouping of per-frame weights."""
        return np.arange(len(self.name), dtype=np.int64)

    def function_keys(self) -> tuple[np.ndarray, list[tuple[str, str | None]]]:
        """Frames grouped into functions keyed by (name, file), computed once.

        The function id of every frame, and the (name, file) of every id.
        """
        return self._function_keys

    @cached_property
    def _function_keys(self) -> tuple[np.ndarray, list[tuple[str, str | None]]]:
        ids: dict[tuple[str, str | None], int] = {}
        key_of_frame = np.fromiter(
            (ids.setdefault((n, f), len(ids)) for n, f in zip(self.name, self.file, strict=True)),
            np.int64,
            len(self.name),
        )
        return key_of_frame, list(ids)


# Groupings memoised per stack table: a few (frames, functions, a caller's own)
# are in use at once; older ones are dropped first.
MEMO_ENTRIES = 16
_SAMPLE_BLOCK = 1 << 16
"""Samples summed a block at a time (`Profile.stack_weights`), to keep the copies small."""
_NODE_BLOCK = 1 << 16
"""Stack nodes taken a block at a time by the tree passes, to keep their temporaries small."""


def link_depths(links: np.ndarray) -> np.ndarray | None:
    """How many links lead from each node to one without (-1), by pointer jumping, in
    the links' integer type; None if the links form a cycle."""
    jump = links.copy()
    depth = (jump >= 0).astype(links.dtype)
    active = np.flatnonzero(jump >= 0)
    for _ in range(len(links).bit_length() + 1):
        if not active.size:
            break
        target = jump[active]
        depth[active] += depth[target]
        jump[active] = jump[target]
        active = active[jump[active] >= 0]
    return None if active.size else depth


@dataclass(frozen=True, eq=False)
class StackTable:
    """A prefix tree of frames: stack `i` is frame `frame[i]` called from `parent[i]`.

    Results that depend only on the tree and a frame grouping (`regroup`,
    `outermost_mask`) are memoised per grouping array, so the slices of a
    profile, which share its stack table, compute them once.
    """

    parent: np.ndarray
    frame: np.ndarray
    _memo: dict[tuple[str, int], tuple[np.ndarray, object]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def _memoised(self, name: str, key: np.ndarray, compute: Callable[[np.ndarray], Any]) -> Any:
        entry = self._memo.get((name, id(key)))
        if entry is None or entry[0] is not key:
            if len(self._memo) >= MEMO_ENTRIES:
                del self._memo[next(iter(self._memo))]
            entry = self._memo[(name, id(key))] = (key, compute(key))
        return entry[1]

    def __len__(self) -> int:
        return len(self.parent)

    def frames_of(self, stack: int) -> list[int]:
        """The frame ids of `stack`, root first."""
        frames = []
        while stack >= 0:
            frames.append(int(self.frame[stack]))
            stack = int(self.parent[stack])
        frames.reverse()
        return frames

    @cached_property
    def depth(self) -> np.ndarray:
        """Depth of every stack node (roots are 0), by pointer jumping."""
        depth = link_depths(self.parent.astype(np.int32, copy=False))
        if depth is None:
            raise ValueError("the stack table's parent links form a cycle")
        return depth

    def levels(self) -> list[np.ndarray]:
        """The nodes a level of depth at a time, roots first (made on each call, not kept).

        A level holds the children of the level above, those of one node
        together and in index order, the nodes in the order of their parents.
        """
        up = self.parent.astype(np.int32) + 1  # 0 for a root
        # nodes by parent, in index order for one parent (builders make mostly sorted
        # parents, which the stable sort takes in runs); node v's children are
        # by_parent[first_child[v + 1] : first_child[v + 2]]
        by_parent = np.argsort(up, kind="stable").astype(np.int32)
        first_child = np.zeros(len(up) + 2, np.int32)
        np.add.at(first_child, up + 1, np.int32(1))  # (a NumPy scalar takes add.at's fast loop)
        np.cumsum(first_child, dtype=np.int32, out=first_child)
        del up
        levels: list[np.ndarray] = []
        level = by_parent[: first_child[1]]
        while len(level):
            levels.append(level)
            if len(level) == 1:  # (deep chains: the children of one node are a slice)
                node = int(level[0])
                level = by_parent[first_child[node + 1] : first_child[node + 2]]
                continue
            first = first_child[level + 1]
            counts = first_child[level + 2] - first
            ends = np.cumsum(counts)
            picks = np.repeat(first - (ends - counts), counts) + np.arange(ends[-1], dtype=np.int32)
            level = by_parent[picks]
        return levels

    @cached_property
    def _tour(self) -> tuple[np.ndarray, np.ndarray]:
        """Pre-order position and subtree size of every node (siblings in index order).

        Both are int32 (node indexes fit: the builders make int32 tables). In
        the order of `levels` (siblings together), each node's offset from its
        parent in pre-order is one plus the subtree sizes of its earlier
        siblings; sizes are summed from the deepest level up, positions from the
        roots down.
        """
        n = len(self.parent)
        levels = self.levels()
        bounds = np.cumsum([0] + [len(level) for level in levels]).tolist()
        order = np.concatenate(levels) if levels else np.zeros(0, np.int32)
        del levels
        parent = self.parent[order].astype(np.int32, copy=False)
        spans = list(itertools.pairwise(bounds))
        size = np.ones(n, np.int32)
        for lo, hi in reversed(spans[1:]):
            np.add.at(size, parent[lo:hi], size[order[lo:hi]])
        # Sums of the sizes before each node among its siblings, as differences of
        # running sums; these may pass 2**32, but each difference is at most n:
        # unsigned sums that wrap around give it exactly.
        sizes = size[order].view(np.uint32)
        before = np.cumsum(sizes, dtype=np.uint32)
        before -= sizes
        del sizes
        later_sibling = np.zeros(n, bool)
        np.equal(parent[1:], parent[:-1], out=later_sibling[1:])
        first_sibling = np.arange(n, dtype=np.int32)  # the position of each node's first sibling
        first_sibling[later_sibling] = 0
        del later_sibling
        np.maximum.accumulate(first_sibling, out=first_sibling)
        before -= before[first_sibling]
        del first_sibling
        offset = before.view(np.int32)
        offset += parent >= 0
        pre = np.empty(n, np.int32)
        for lo, hi in spans:
            pre[order[lo:hi]] = (pre[parent[lo:hi]] if lo else 0) + offset[lo:hi]
        return pre, size

    def node_keys(self, key_of_frame: np.ndarray) -> np.ndarray:
        """The group of every node's frame, for a frame grouping such as functions."""
        return self._memoised("keys", key_of_frame, lambda keys: keys[self.frame])

    def regroup(self, key_of_frame: np.ndarray) -> tuple[StackTable, np.ndarray]:
        """The prefix tree over frame groups (e.g. functions) instead of frames.

        Returns the new table, whose `frame` column holds group ids, and the
        node of the new table that each node of this one maps to. Paths that
        differ only in frames of the same group become one node.
        """
        return self._memoised("regroup", key_of_frame, self._regroup)

    def _regroup(self, key_of_frame: np.ndarray) -> tuple[StackTable, np.ndarray]:
        ids: dict[tuple[int, int], int] = {}
        parents: list[int] = []
        groups: list[int] = []
        node_map = np.empty(len(self.parent), np.int64)
        keys = key_of_frame[self.frame].tolist()
        for node, parent in enumerate(self.parent.tolist()):
            new_parent = int(node_map[parent]) if parent >= 0 else -1
            pair = (new_parent, keys[node])
            new_node = ids.get(pair)
            if new_node is None:
                new_node = ids[pair] = len(parents)
                parents.append(new_parent)
                groups.append(keys[node])
            node_map[node] = new_node
        table = StackTable(np.array(parents, np.int32), np.array(groups, np.int32))
        return table, node_map

    def subtree_sums(self, values: np.ndarray) -> np.ndarray:
        """For every node, the sum of `values` over the node and its descendants."""
        running = self._running_sums(values)
        sums = np.empty(len(values), np.float64)
        for lo in range(0, len(sums), _NODE_BLOCK):
            nodes = np.arange(lo, min(lo + _NODE_BLOCK, len(sums)))
            sums[lo : lo + len(nodes)] = self._subtree_sums(running, nodes)
        return sums

    def _running_sums(self, values: np.ndarray) -> np.ndarray:
        """Running sums of `values` in pre-order, from 0: a subtree's sum is a difference of two."""
        pre, _ = self._tour
        running = np.zeros(len(values) + 1, np.float64)
        running[1:][pre] = values
        return np.cumsum(running, out=running)

    def _subtree_sums(self, running: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """The subtree sums of `nodes`, from the `_running_sums` of the values."""
        pre, size = self._tour
        first = pre[nodes]
        return running[first + size[nodes]] - running[first]

    def outermost_mask(self, key_of_node: np.ndarray) -> np.ndarray:
        """True for nodes whose key does not appear on any ancestor.

        Summing subtree weights over these nodes counts a recursive function
        once per stack.
        """
        return self._memoised("outermost", key_of_node, self._outermost)

    def _outermost(self, key_of_node: np.ndarray) -> np.ndarray:
        n = len(self.parent)
        pre, size = self._tour
        # Each node is the interval [pre, pre + size - 1] of pre-order positions,
        # placed on a line per key; a node is nested when an interval before it
        # on its key's line reaches it.
        node_at = np.empty(n, np.int32)
        node_at[pre] = np.arange(n, dtype=np.int32)
        keys = key_of_node
        if n and keys.min() >= 0 and keys.max() < 2**16:
            keys = keys.astype(np.uint16)  # (sorted in linear time)
        keys = keys[node_at]
        # pre-order positions by key, in pre-order within a key
        by_key = np.argsort(keys, kind="stable")
        span = n + 1
        mask = np.empty(n, bool)
        reach = np.iinfo(np.int64).min  # of the intervals so far, each on its key's line
        for lo in range(0, n, _NODE_BLOCK):
            starts = by_key[lo : lo + _NODE_BLOCK]
            nodes = node_at[starts]
            starts = keys[starts].astype(np.int64) * span + starts
            ends = np.maximum.accumulate(starts + (size[nodes] - 1))
            np.maximum(ends, reach, out=ends)
            outermost = np.empty(len(starts), bool)
            outermost[0] = reach < starts[0]
            np.less(ends[:-1], starts[1:], out=outermost[1:])
            mask[nodes] = outermost
            reach = int(ends[-1])
        return mask


@dataclass(frozen=True, eq=False)
class Samples:
    """Samples sorted by time: `stack` (-1 for none), `time` (span start), `weight` (span length)."""

    stack: np.ndarray
    time: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.stack)


@dataclass(eq=False)
class Profile:
    """One thread or process: frames, stacks and samples in a unit."""

    name: str
    unit: Unit
    frames: FrameTable
    stacks: StackTable
    samples: Samples
    sampled: bool = True
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def start(self) -> float:
        """Start of the profile's axis (first sample's time), 0 when empty."""
        return float(self.samples.time[0]) if len(self.samples) else 0.0

    @property
    def end(self) -> float:
        """End of the profile's axis (the latest span end), 0 when empty."""
        time, weight = self.samples.time, self.samples.weight
        if not len(time):
            return 0.0
        # a block at a time: the sum of two columns would be a third column
        return max(
            float(np.max(time[lo : lo + _SAMPLE_BLOCK] + weight[lo : lo + _SAMPLE_BLOCK]))
            for lo in range(0, len(time), _SAMPLE_BLOCK)
        )

    @property
    def total_weight(self) -> float:
        """Sum of all sample weights."""
        return float(self.samples.weight.sum())

    def format_value(self, value: float) -> str:
        """Format a weight in this profile's unit."""
        return format_value(value, self.unit)

    def stack_weights(self) -> np.ndarray:
        """Weight of every stack node as a leaf (idle samples left out)."""
        stack, weight = self.samples.stack, self.samples.weight
        nodes = len(self.stacks)
        result = np.zeros(nodes)
        # Blocks of `block` samples are summed apart, then added (sums in sample
        # order within a block, as `np.bincount` makes them); idle samples are
        # left out a smaller block at a time, so that the copies stay small.
        block = max(_SAMPLE_BLOCK, nodes)
        sums = result if len(stack) <= block else np.zeros(nodes)
        for lo in range(0, len(stack), block):
            for part in range(lo, min(lo + block, len(stack)), _SAMPLE_BLOCK):
                part_stack = stack[part : min(part + _SAMPLE_BLOCK, lo + block)]
                part_weight = weight[part : part + len(part_stack)]
                if part_stack.min() < 0:
                    used = part_stack >= 0
                    part_stack, part_weight = part_stack[used], part_weight[used]
                np.add.at(sums, part_stack, part_weight)
            if sums is not result:
                result += sums
                sums.fill(0.0)
        return result

    def frame_weights(
        self, key_of_frame: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Self and total weight per frame, or per group when `key_of_frame` maps frames to groups.

        Total counts a frame (or group) once per stack when it recurses.
        """
        if key_of_frame is None:
            key_of_frame = self.frames.identity_keys
        groups = int(key_of_frame.max()) + 1 if len(key_of_frame) else 0
        if len(self.stacks) == 0:
            return np.zeros(groups), np.zeros(groups)
        stacks = self.stacks
        key_of_node = stacks.node_keys(key_of_frame)
        outermost = stacks.outermost_mask(key_of_node)  # (its temporaries go first)
        leaf = self.stack_weights()
        self_weight = np.bincount(key_of_node, weights=leaf, minlength=groups)
        running = stacks._running_sums(leaf)
        del leaf
        # the subtree sums of the outermost nodes, added in node order a block at a time
        total_weight = np.zeros(groups)
        for lo in range(0, len(stacks), _NODE_BLOCK):
            nodes = lo + np.flatnonzero(outermost[lo : lo + _NODE_BLOCK])
            np.add.at(total_weight, key_of_node[nodes], stacks._subtree_sums(running, nodes))
        return self_weight, total_weight

    def slice(self, start: float | None, end: float | None) -> Profile:
        """The part of the profile in [start, end); straddling samples keep their overlap."""
        samples = self.samples
        lo_time = self.start if start is None else start
        hi_time = self.end if end is None else end
        if len(samples) == 0 or hi_time <= lo_time:
            return self._with_samples(Samples(*(_empty_columns())))
        longest = float(samples.weight.max())
        lo = int(np.searchsorted(samples.time, lo_time - longest, "left"))
        hi = int(np.searchsorted(samples.time, hi_time, "left"))
        time = samples.time[lo:hi]
        span_end = time + samples.weight[lo:hi]
        clipped_start = np.maximum(time, lo_time)
        overlap = np.minimum(span_end, hi_time) - clipped_start
        keep = overlap > 0
        return self._with_samples(
            Samples(samples.stack[lo:hi][keep], clipped_start[keep], overlap[keep])
        )

    def _with_samples(self, samples: Samples) -> Profile:
        return Profile(
            self.name, self.unit, self.frames, self.stacks, samples, self.sampled, self.metadata
        )


@dataclass(eq=False)
class ProfileGroup:
    """Several profiles from one file (threads, processes, sample types)."""

    name: str
    profiles: list[Profile]
    active_index: int = 0
    format: str = ""

    @property
    def active(self) -> Profile:
        """The profile to show first."""
        return self.profiles[self.active_index]


def _empty_columns() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int32), np.zeros(0, np.float64), np.zeros(0, np.float64)


class ProfileBuilder:
    """Builds a `Profile` from frames and samples or from enter/leave events.

    Frames and stacks are interned. Samples are appended one at a time
    (`add_sample`) or in bulk (`add_samples`); without a time they are laid
    end to end. Evented input uses `enter`/`leave`, which turn each interval
    between two events into one sample of the open stack.
    """

    def __init__(self, name: str, unit: Unit, *, sampled: bool = True) -> None:
        self.name = name
        self.unit = unit
        self.sampled = sampled
        self.metadata: dict[str, object] = {}
        self._frame_ids: dict[Frame, int] = {}
        self._frames: list[Frame] = []
        self._stack_ids: dict[int, int] = {}  # (parent + 1) << 32 | frame -> stack id
        self._parents = array("i")
        self._stack_frames = array("i")
        # one sample's stack, time and weight take 16 bytes here, not about 100 in lists
        self._stacks = array("i")
        self._times = array("d")
        self._weights = array("d")
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._sample_count = 0
        self._cursor = 0.0
        self._open: list[int] = []
        self._open_stack = -1
        self._last_event: float | None = None
        self._limits = current_limits()

    # frames and stacks

    def frame(
        self, name: str, file: str | None = None, line: int | None = None, col: int | None = None
    ) -> int:
        """The id of the frame with these fields, added on first use."""
        key = Frame(name, file, line, col)
        frame_id = self._frame_ids.get(key)
        if frame_id is None:
            if len(self._frames) >= self._limits.max_frames:
                raise ProfileTooLarge(
                    f"more than {self._limits.max_frames:,} distinct frames (raise max_frames to load it)"
                )
            frame_id = self._frame_ids[key] = len(self._frames)
            self._frames.append(key)
        return frame_id

    def stack(self, parent: int, frame: int) -> int:
        """The id of the stack `parent` + `frame` (parent -1 for a root frame)."""
        key = (parent + 1) << 32 | frame  # one int: less memory per stack than a tuple
        stack_id = self._stack_ids.get(key)
        if stack_id is None:
            stack_id = self._stack_ids[key] = len(self._parents)
            self._parents.append(parent)
            self._stack_frames.append(frame)
        return stack_id

    def stack_of(self, frames: Iterable[int], parent: int = -1) -> int:
        """The id of the stack of `frames` (root first) under `parent`; -1 when empty."""
        stack = parent
        for frame in frames:
            stack = self.stack(stack, frame)
        return stack

    def frame_name(self, frame: int) -> str:
        """The name of frame id `frame`."""
        return self._frames[frame].name

    @property
    def frame_count(self) -> int:
        """Number of distinct frames so far."""
        return len(self._frames)

    # sampled input

    def add_sample(self, stack: int, weight: float, time: float | None = None) -> None:
        """Append one sample; without `time` it starts where the previous one ended."""
        if time is None:
            time = self._cursor
        self._cursor = time + weight
        self._stacks.append(stack)
        self._times.append(time)
        self._weights.append(weight)
        self._count(1)

    def add_samples(
        self, stacks: np.ndarray, weights: np.ndarray, times: np.ndarray | None = None
    ) -> None:
        """Append many samples at once; without `times` they are laid end to end."""
        self._flush()
        weights = np.asarray(weights, np.float64)
        if times is None:
            ends = np.cumsum(weights) + self._cursor
            times = ends - weights
        times = np.asarray(times, np.float64)
        if len(times):
            self._cursor = float(times[-1] + weights[-1])
        self._chunks.append((np.asarray(stacks, np.int32), times, weights))
        self._count(len(weights))

    def _count(self, added: int) -> None:
        self._sample_count += added
        if self._sample_count > self._limits.max_samples:  # (no call per sample otherwise)
            self._limits.check_samples(self._sample_count)

    def _flush(self) -> None:
        if self._stacks:
            self._chunks.append(
                (
                    np.frombuffer(self._stacks, np.int32).copy(),
                    np.frombuffer(self._times, np.float64).copy(),
                    np.frombuffer(self._weights, np.float64).copy(),
                )
            )
            self._stacks, self._times, self._weights = array("i"), array("d"), array("d")

    # evented input

    @property
    def open_frames(self) -> list[int]:
        """The frames currently entered, outermost first (read-only view)."""
        return self._open

    def enter(self, frame: int, time: float) -> None:
        """Open `frame` on top of the current stack at `time`."""
        self._advance(time)
        self._open.append(frame)
        self._open_stack = self.stack(self._open_stack, frame)

    def leave(self, frame: int, time: float) -> None:
        """Close `frame`, which must be the innermost open frame, at `time`."""
        if not self._open or self._open[-1] != frame:
            top = self._frames[self._open[-1]].name if self._open else "nothing"
            raise ValueError(f"cannot leave {self._frames[frame].name!r}: {top!r} is open")
        self._advance(time)
        self._open.pop()
        self._open_stack = int(self._parents[self._open_stack])

    def _advance(self, time: float) -> None:
        if self._last_event is not None and time > self._last_event:
            self.add_sample(self._open_stack, time - self._last_event, self._last_event)
        if self._last_event is None or time > self._last_event:
            self._last_event = time

    # result

    def build(self, stacks: StackTable | None = None) -> Profile:
        """The finished profile, samples sorted by time (stable for ties).

        `stacks` is a stack table made outside the builder (with
        `flamesight.model.stack_building`, say), which the samples' stack ids
        refer to, in place of the builder's own.
        """
        self._flush()
        if len(self._chunks) == 1:  # one bulk add: its columns as they are, not copied
            stack, time, weight = self._chunks[0]
        elif self._chunks:
            stack = np.concatenate([c[0] for c in self._chunks])
            time = np.concatenate([c[1] for c in self._chunks])
            weight = np.concatenate([c[2] for c in self._chunks])
        else:
            stack, time, weight = _empty_columns()
        self._chunks = []
        if len(time) > 1 and np.any(time[1:] < time[:-1]):
            order = np.argsort(time, kind="stable")
            stack, time, weight = stack[order], time[order], weight[order]
        return Profile(
            name=self.name,
            unit=self.unit,
            frames=FrameTable.from_frames(self._frames),
            stacks=StackTable(
                np.frombuffer(self._parents, np.int32).copy(),
                np.frombuffer(self._stack_frames, np.int32).copy(),
            )
            if stacks is None
            else stacks,
            samples=Samples(stack, time, weight),
            sampled=self.sampled,
            metadata=dict(self.metadata),
        )


def merge_profiles(profiles: Sequence[Profile], name: str | None = None) -> Profile:
    """Merge profiles of one unit into one: frames and stacks re-interned, samples by time."""
    if not profiles:
        raise ValueError("nothing to merge")
    units = {p.unit for p in profiles}
    if len(units) > 1:
        raise ValueError(
            "cannot merge profiles in different units: " + ", ".join(sorted(u.value for u in units))
        )
    builder = ProfileBuilder(name or " + ".join(p.name for p in profiles), profiles[0].unit)
    builder.sampled = all(p.sampled for p in profiles)
    for profile in profiles:
        frame_map = np.fromiter(
            (builder.frame(*profile.frames[i]) for i in range(len(profile.frames))),
            np.int64,
            len(profile.frames),
        )
        stack_map = np.empty(len(profile.stacks) + 1, np.int64)
        stack_map[-1] = -1  # index -1 maps "no stack" to itself
        for index, (parent, frame) in enumerate(
            zip(profile.stacks.parent.tolist(), profile.stacks.frame.tolist(), strict=True)
        ):
            stack_map[index] = builder.stack(int(stack_map[parent]), int(frame_map[frame]))
        samples = profile.samples
        builder.add_samples(stack_map[samples.stack], samples.weight, samples.time)
    return builder.build()

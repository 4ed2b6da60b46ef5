"""Call trees: top-down, and the sandwich of one function (its callers and its callees).

Trees are merged by function: frames with the same (name, file) on the same
path are one node. Recursion is counted once per stack: the callers and callees
of a function hang off its outermost occurrence on each stack.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from flamesight.model import Profile, StackTable

Direction = Literal["top-down", "callers", "callees"]


@dataclass
class CallNode:
    """One function on a path, with its self and total weight along that path.

    In a callers tree (inverted, the function at the root) `total` is the
    function's time reached through this chain of callers, and `self` on a
    caller is the part of it whose stacks start at that caller (it is the
    outermost frame); only the root's `self` is time in the function itself.
    """

    name: str
    file: str | None
    self: float
    total: float
    children: list[CallNode] = field(default_factory=list)

    def to_dict(self, range_total: float) -> dict[str, object]:
        """JSON-ready data with percentages of `range_total`, children included."""
        scale = 100.0 / range_total if range_total > 0 else 0.0
        root: dict[str, object] = {}
        pending = [(self, root)]
        while pending:
            node, out = pending.pop()
            out.update(
                name=node.name,
                file=node.file,
                self=node.self,
                total=node.total,
                self_pct=node.self * scale,
                total_pct=node.total * scale,
                children=[],
            )
            for child in node.children:
                child_out: dict[str, object] = {}
                out["children"].append(child_out)  # type: ignore[union-attr]
                pending.append((child, child_out))
        return root


@dataclass
class CallTree:
    """A call tree of a range: top-down, or the callers / callees of one function."""

    profile: str
    unit: str
    direction: Direction
    function: str | None
    total: float
    roots: list[CallNode]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready data."""
        return {
            "profile": self.profile,
            "unit": self.unit,
            "direction": self.direction,
            "function": self.function,
            "total": self.total,
            "roots": [root.to_dict(self.total) for root in self.roots],
        }


@dataclass(frozen=True)
class FunctionView:
    """A profile's stack table merged by function, with leaf and subtree weights of a range."""

    keys: list[tuple[str, str | None]]
    table: StackTable
    leaf: np.ndarray
    subtree: np.ndarray

    @classmethod
    def of(cls, profile: Profile) -> FunctionView:
        """Merge `profile`'s stacks by (name, file) and weigh them by its samples."""
        key_of_frame, keys = profile.frames.function_keys()
        table, node_map = profile.stacks.regroup(key_of_frame)
        used = profile.samples.stack >= 0
        leaf = np.bincount(
            node_map[profile.samples.stack[used]],
            weights=profile.samples.weight[used],
            minlength=len(table),
        ).astype(np.float64)
        return cls(keys, table, leaf, table.subtree_sums(leaf))

    def children(self, floor: float = 0.0, depth: int | None = None) -> dict[int, list[int]]:
        """Child ids of the nodes heavier than `floor` within `depth` levels, heaviest first."""
        wanted = self.subtree > floor
        if depth is not None:
            wanted &= self.table.depth < depth
        nodes = np.flatnonzero(wanted)
        nodes = nodes[np.argsort(-self.subtree[nodes], kind="stable")]
        kids: dict[int, list[int]] = {}
        for node, parent in zip(nodes.tolist(), self.table.parent[nodes].tolist(), strict=True):
            if parent >= 0:
                kids.setdefault(parent, []).append(node)
        return kids

    def roots(self) -> list[int]:
        """Root node ids, heaviest first."""
        roots = np.flatnonzero(self.table.parent < 0)
        return roots[np.argsort(-self.subtree[roots], kind="stable")].tolist()

    def matching(self, function: str) -> set[int]:
        """Function ids named `function` (exact name, or "name (file)"); LookupError if none."""
        found = {
            i for i, (name, file) in enumerate(self.keys) if function in (name, f"{name} ({file})")
        }
        if not found:
            names = sorted({name for name, _ in self.keys})
            close = difflib.get_close_matches(function, names, n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise LookupError(f"no function named {function!r} in this profile{hint}")
        return found

    def outermost(self, targets: set[int]) -> np.ndarray:
        """Nodes of a target function with no target function above them."""
        key_of_node = self.table.frame.astype(np.int64)
        is_target = np.isin(key_of_node, list(targets))
        distinct = np.where(is_target, 0, 1 + np.arange(len(key_of_node)))
        return is_target & self.table.outermost_mask(distinct)


def call_tree(
    profile: Profile,
    depth: int | None = None,
    start: float | None = None,
    end: float | None = None,
    min_pct: float = 0.0,
) -> CallTree:
    """The top-down call tree of [start, end), merged by function, cut at `depth` levels."""
    selected = _select(profile, start, end)
    view = FunctionView.of(selected)
    floor = selected.total_weight * min_pct / 100.0
    kids = view.children(floor, depth)

    def build(node: int) -> CallNode:
        name, file = view.keys[int(view.table.frame[node])]
        return CallNode(name, file, float(view.leaf[node]), float(view.subtree[node]))

    kept = [r for r in view.roots() if view.subtree[r] > floor]
    roots = [build(r) for r in kept]
    pending = [(root_node, r, 1) for root_node, r in zip(roots, kept, strict=True)]
    while pending:
        out, node, level = pending.pop()
        if depth is not None and level >= depth:
            continue
        for child in kids.get(node, []):
            child_out = build(child)
            out.children.append(child_out)
            pending.append((child_out, child, level + 1))
    return CallTree(
        selected.name, selected.unit.value, "top-down", None, selected.total_weight, roots
    )


def callees(
    profile: Profile,
    function: str,
    depth: int | None = None,
    start: float | None = None,
    end: float | None = None,
) -> CallTree:
    """What `function` calls: its forward tree, all its call sites merged, recursion counted once."""
    selected = _select(profile, start, end)
    view = FunctionView.of(selected)
    targets = view.matching(function)
    anchors = view.outermost(targets)
    # Re-root every anchored subtree under one node per target function.
    ids: dict[tuple[int, int], int] = {}
    nodes: list[CallNode] = []
    where = np.full(len(view.table), -1, np.int64)
    parents = view.table.parent.tolist()
    frames = view.table.frame.tolist()
    roots: list[CallNode] = []
    for node in range(len(view.table)):
        parent = parents[node]
        if anchors[node]:
            key = (-1, frames[node])
        elif parent >= 0 and where[parent] >= 0:
            key = (int(where[parent]), frames[node])
        else:
            continue
        index = ids.get(key)
        if index is None:
            index = ids[key] = len(nodes)
            name, file = view.keys[frames[node]]
            nodes.append(CallNode(name, file, 0.0, 0.0))
            if key[0] < 0:
                roots.append(nodes[index])
            else:
                nodes[key[0]].children.append(nodes[index])
        where[node] = index
        nodes[index].self += float(view.leaf[node])
        # A stack node and its descendants map to callee-tree nodes at different
        # depths, so adding every subtree weight counts each sample once per node.
        nodes[index].total += float(view.subtree[node])
    _sort_and_cut(roots, depth)
    return CallTree(
        selected.name, selected.unit.value, "callees", function, selected.total_weight, roots
    )


def callers(
    profile: Profile,
    function: str,
    depth: int | None = None,
    start: float | None = None,
    end: float | None = None,
) -> CallTree:
    """Who calls `function`: the inverted tree above it, recursion counted once per stack."""
    selected = _select(profile, start, end)
    view = FunctionView.of(selected)
    targets = view.matching(function)
    anchors = np.flatnonzero(view.outermost(targets))
    parents = view.table.parent
    frames = view.table.frame
    roots: dict[int, CallNode] = {}
    children: dict[int, dict[int, CallNode]] = {}
    for target in targets:
        name, file = view.keys[target]
        occurrences = frames == target
        roots[target] = CallNode(name, file, float(view.leaf[occurrences].sum()), 0.0)
    for anchor in anchors.tolist():
        weight = float(view.subtree[anchor])
        node = roots[int(frames[anchor])]
        node.total += weight
        above = int(parents[anchor])
        level = 1
        while above >= 0 and (depth is None or level < depth):
            table = children.setdefault(id(node), {})
            key = int(frames[above])
            child = table.get(key)
            if child is None:
                name, file = view.keys[key]
                child = table[key] = CallNode(name, file, 0.0, 0.0)
                node.children.append(child)
            child.total += weight
            if parents[above] < 0:
                child.self += weight
            node = child
            above = int(parents[above])
            level += 1
    ordered = [roots[t] for t in sorted(targets)]
    _sort_and_cut(ordered, depth)
    return CallTree(
        selected.name, selected.unit.value, "callers", function, selected.total_weight, ordered
    )


def _sort_and_cut(roots: list[CallNode], depth: int | None) -> None:
    roots.sort(key=lambda n: -n.total)
    pending = [(root, 1) for root in roots]
    while pending:
        node, level = pending.pop()
        if depth is not None and level >= depth:
            node.children = []
            continue
        node.children.sort(key=lambda n: (-n.total, n.name))
        pending.extend((child, level + 1) for child in node.children)


def _select(profile: Profile, start: float | None, end: float | None) -> Profile:
    if start is None and end is None:
        return profile
    return profile.slice(start, end)

"""The heaviest call paths, with long single-child chains folded."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from flamesight.analysis.calltree import FunctionView
from flamesight.model import Profile


@dataclass(frozen=True)
class HotPath:
    """One root-to-leaf path and the self weight of its leaf.

    `frames` lists function names root first; a folded chain appears as one
    entry "... N frames ...". `text` joins them with " -> ".
    """

    frames: list[str]
    leaf: str
    weight: float
    pct: float
    depth: int
    text: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready data."""
        return asdict(self)


def fold_chain(names: list[str], foldable: list[bool], keep: int = 3) -> list[str]:
    """Replace runs of more than `keep` foldable names by "... N frames ...".

    `foldable[i]` says whether name i may be hidden (a frame with exactly one
    child on the way down); the first and last names are never hidden.
    """
    out: list[str] = []
    run: list[str] = []
    for index, name in enumerate(names):
        hideable = foldable[index] and 0 < index < len(names) - 1
        if hideable:
            run.append(name)
            continue
        out.extend(run if len(run) <= keep else [f"... {len(run)} frames ..."])
        run = []
        out.append(name)
    return out


def hot_paths(
    profile: Profile,
    n: int = 5,
    start: float | None = None,
    end: float | None = None,
    keep_chain: int = 3,
) -> list[HotPath]:
    """The `n` call paths whose leaf carries the most self weight in [start, end)."""
    selected = profile.slice(start, end) if start is not None or end is not None else profile
    view = FunctionView.of(selected)
    if not len(view.table):
        return []
    child_count = np.bincount(view.table.parent[view.table.parent >= 0], minlength=len(view.table))
    total = selected.total_weight
    heaviest = np.argsort(-view.leaf, kind="stable")[:n]
    paths = []
    for leaf in heaviest.tolist():
        if view.leaf[leaf] <= 0:
            break
        nodes = []
        node = leaf
        while node >= 0:
            nodes.append(node)
            node = int(view.table.parent[node])
        nodes.reverse()
        names = [view.keys[int(view.table.frame[i])][0] for i in nodes]
        frames = fold_chain(names, [child_count[i] == 1 for i in nodes], keep_chain)
        weight = float(view.leaf[leaf])
        paths.append(
            HotPath(
                frames=frames,
                leaf=names[-1],
                weight=weight,
                pct=100.0 * weight / total if total > 0 else 0.0,
                depth=len(names),
                text=" -> ".join(frames),
            )
        )
    return paths

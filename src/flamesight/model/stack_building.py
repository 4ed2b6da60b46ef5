"""Stack tables built with NumPy from a whole call tree or from call paths.

Importers whose input is a call tree (one node per row) or one full call
path per sample build their stack table here a level of depth at a time,
instead of one `ProfileBuilder.stack` call per frame: the interning is done
by `np.unique` over (parent stack, frame) keys of a level at once. Both
functions number the stacks as `ProfileBuilder` numbers those it makes one
node or path at a time, so a profile read either way is the same.
"""

from __future__ import annotations

import numpy as np

from flamesight.model.profile import StackTable


def tree_stacks(depth: np.ndarray, frame: np.ndarray) -> tuple[StackTable, np.ndarray]:
    """The stack table of a call tree, and the stack of every node.

    The nodes are given in depth-first order (a node, then its children's
    subtrees in order) by their depth (0 for a root) and frame. Nodes with
    the same frames from the root up share a stack; stacks are made a level
    of depth at a time and numbered in order of first use, as
    `ProfileBuilder.stack` numbers them when called node by node.
    """
    if len(depth) and depth.max() < 2**16:
        depth = depth.astype(np.uint16)  # (sorted in linear time)
    order = np.argsort(depth, kind="stable")
    bounds = np.searchsorted(depth[order], np.arange(int(depth.max(initial=0)) + 2)).tolist()
    span = int(frame.max(initial=0)) + 1
    stack = np.empty(len(depth), np.int32)
    # per stack, in the order made: parent stack, frame, and the first node that has it
    parents, frames, first_use = [np.zeros(0, np.int32)], [np.zeros(0, np.int32)], [order[:0]]
    count = 0
    above = order[:0]
    for level in range(len(bounds) - 1):
        nodes = order[bounds[level] : bounds[level + 1]]
        # a node's parent is the last node one level up before it
        parent_stacks = stack[above[np.searchsorted(above, nodes) - 1]] if level else -1
        keys = (parent_stacks + np.int64(1)) * span + frame[nodes]
        unique, first, which = np.unique(keys, return_index=True, return_inverse=True)
        stack[nodes] = count + which
        parents.append((unique // span - 1).astype(np.int32))
        frames.append((unique % span).astype(np.int32))
        first_use.append(nodes[first])
        count += len(unique)
        above = nodes
    del order, above
    by_use = np.argsort(np.concatenate(first_use))
    number = np.full(count + 1, -1, np.int32)  # the last entry maps "no parent" to itself
    number[by_use] = np.arange(count, dtype=np.int32)
    table = StackTable(number[np.concatenate(parents)[by_use]], np.concatenate(frames)[by_use])
    return table, number[stack]


def path_stacks(
    starts: np.ndarray, next_entry: np.ndarray, frames: np.ndarray
) -> tuple[StackTable, np.ndarray]:
    """A stack table, and the stack of each path of entries from `starts[i]` (its root) on.

    A path goes from an entry to `next_entry` of it until that is -1; entry
    `e` shows frame `frames[e]`. Stacks are interned by (parent stack,
    frame) with NumPy, a level of depth at a time, root first; then they
    are numbered as `ProfileBuilder` numbers the stacks it makes one path
    at a time (by the first path that reaches a stack, then by depth).
    """
    if not len(starts):
        return StackTable(np.zeros(0, np.int32), np.zeros(0, np.int32)), np.zeros(0, np.int64)
    span = int(frames.max()) + 1
    entry = starts.astype(np.int64)
    stack = np.full(len(starts), -1, np.int64)
    active = np.arange(len(starts))
    parents, stack_frames, first_path, depths = [], [], [], []
    count = 0
    while len(active):
        keys = (stack[active] + 1) * span + frames[entry[active]]
        unique_keys, first, which = np.unique(keys, return_index=True, return_inverse=True)
        stack[active] = count + which
        parents.append((unique_keys // span - 1).astype(np.int32))
        stack_frames.append((unique_keys % span).astype(np.int32))
        first_path.append(active[first].astype(np.int32))
        depths.append(np.full(len(unique_keys), len(depths), np.int32))
        count += len(unique_keys)
        entry[active] = next_entry[entry[active]]
        active = active[entry[active] >= 0]
    order = np.lexsort((np.concatenate(depths), np.concatenate(first_path)))
    renumbered = np.empty(count + 1, np.int64)
    renumbered[order] = np.arange(count)
    renumbered[-1] = -1  # no parent stays none
    parent = renumbered[np.concatenate(parents)][order].astype(np.int32)
    return StackTable(parent, np.concatenate(stack_frames)[order]), renumbered[stack]

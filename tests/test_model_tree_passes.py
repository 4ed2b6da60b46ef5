"""The stack table's tree passes and the profile's sums over them, against plain walks.

`StackTable.levels`, the pre-order tour (`_tour`), `subtree_sums`,
`outermost_mask`, `Profile.stack_weights` and `Profile.frame_weights` work a
level or a block at a time with NumPy; here each is compared with a walk of
the tree node by node, on forests whose parents come before their children
or after them, deep chains, and more keys than 16 bits hold.
"""

from __future__ import annotations

import numpy as np
import pytest

from flamesight.model import Profile, StackTable, Unit
from flamesight.model.profile import Frame, FrameTable, Samples


def random_forest(nodes: int, seed: int, shuffled: bool = False) -> np.ndarray:
    """Parents of a forest of `nodes` nodes (a few roots, some long paths); with
    `shuffled` the nodes are renumbered at random, so parents may come after children."""
    rng = np.random.default_rng(seed)
    parent = np.full(nodes, -1, np.int64)
    for node in range(1, nodes):
        if rng.random() < 0.02:
            continue  # another root
        near = rng.random() < 0.7
        parent[node] = rng.integers(max(0, node - 3), node) if near else rng.integers(0, node)
    if shuffled:
        number = rng.permutation(nodes)
        renumbered = np.full(nodes, -1, np.int64)
        renumbered[number] = np.where(parent >= 0, number[np.maximum(parent, 0)], -1)
        parent = renumbered
    return parent.astype(np.int32)


TREES = {
    "empty": np.zeros(0, np.int32),
    "one node": np.array([-1], np.int32),
    "forest": random_forest(3000, 1),
    "shuffled forest": random_forest(3000, 2, shuffled=True),
    "chain": np.arange(-1, 2999, dtype=np.int32),
    "roots only": np.full(50, -1, np.int32),
}


def children_of(parent: np.ndarray) -> tuple[list[int], list[list[int]]]:
    roots: list[int] = []
    children: list[list[int]] = [[] for _ in parent]
    for node, up in enumerate(parent.tolist()):
        (roots if up < 0 else children[up]).append(node)
    return roots, children


def walked_order(parent: np.ndarray) -> list[int]:
    """The nodes in pre-order (siblings in index order), by a depth-first walk."""
    roots, children = children_of(parent)
    order = []
    pending = roots[::-1]
    while pending:
        node = pending.pop()
        order.append(node)
        pending.extend(children[node][::-1])
    return order


def walked_sums(parent: np.ndarray, values: np.ndarray) -> list[float]:
    """The sum of `values` over each node's subtree, children added to parents bottom up."""
    sums = values.tolist()
    for node in reversed(walked_order(parent)):
        if parent[node] >= 0:
            sums[parent[node]] += sums[node]
    return sums


def keys_above(parent: np.ndarray, keys: np.ndarray) -> list[set[int]]:
    """The keys of each node's ancestors, parents before children."""
    above: list[set[int]] = [set() for _ in parent]
    for node in walked_order(parent):
        up = int(parent[node])
        if up >= 0:
            above[node] = above[up] | {int(keys[up])}
    return above


@pytest.mark.parametrize("name", TREES)
def test_levels_and_tour_match_a_walk(name: str) -> None:
    parent = TREES[name]
    table = StackTable(parent, np.zeros(len(parent), np.int32))
    levels = table.levels()
    roots, children = children_of(parent)
    expected = [roots]
    while expected[-1]:
        expected.append([child for node in expected[-1] for child in children[node]])
    assert [level.tolist() for level in levels] == expected[:-1]
    pre, size = table._tour
    assert pre.dtype == size.dtype == np.int32
    order = walked_order(parent)
    assert pre.tolist() == np.argsort(order).tolist()
    assert size.tolist() == walked_sums(parent, np.ones(len(parent), np.int64))
    for depth, level in enumerate(levels):
        assert np.all(table.depth[level] == depth)


@pytest.mark.parametrize("name", TREES)
def test_subtree_sums_and_outermost_nodes_match_a_walk(name: str) -> None:
    parent = TREES[name]
    rng = np.random.default_rng(len(parent))
    values = rng.integers(0, 100, len(parent)).astype(np.float64)
    keys = rng.integers(0, 7, len(parent))
    table = StackTable(parent, np.zeros(len(parent), np.int32))
    assert table.subtree_sums(values).tolist() == walked_sums(parent, values)
    above = keys_above(parent, keys)
    outermost = [int(keys[node]) not in above[node] for node in range(len(parent))]
    assert table.outermost_mask(keys).tolist() == outermost


def test_outermost_nodes_with_more_keys_than_16_bits_hold() -> None:
    parent = random_forest(70_000, 3)
    keys = np.arange(70_000) % 68_000  # a few keys twice: on one path or two
    keys[[5, 6, 7]] = 69_999
    table = StackTable(parent, np.zeros(len(parent), np.int32))
    above = keys_above(parent, keys)
    expected = [int(keys[node]) not in above[node] for node in range(len(parent))]
    assert table.outermost_mask(keys).tolist() == expected
    assert not all(expected)


def profile_of(
    parent: np.ndarray, frames: np.ndarray, stack: np.ndarray, weight: np.ndarray
) -> Profile:
    count = int(frames.max(initial=-1)) + 1
    frame_table = FrameTable.from_frames([Frame(f"f{i}", None, None, None) for i in range(count)])
    samples = Samples(stack, np.cumsum(weight) - weight, weight)
    return Profile("p", Unit.NONE, frame_table, StackTable(parent, frames), samples)


@pytest.mark.parametrize("samples", [10, 70_000, 200_000])
def test_stack_weights_sum_each_block_of_samples_in_order(samples: int) -> None:
    """Idle samples are left out; blocks of max(2**16, nodes) samples are summed apart."""
    parent = random_forest(3000, 4)
    rng = np.random.default_rng(samples)
    stack = rng.integers(-1, len(parent), samples).astype(np.int32)
    weight = rng.exponential(3.0, samples)
    profile = profile_of(parent, np.zeros(len(parent), np.int32), stack, weight)
    expected = np.zeros(len(parent))
    for lo in range(0, samples, 2**16):
        block, block_weight = stack[lo : lo + 2**16], weight[lo : lo + 2**16]
        used = block >= 0
        expected += np.bincount(block[used], weights=block_weight[used], minlength=len(parent))
    assert profile.stack_weights().tolist() == expected.tolist()


@pytest.mark.parametrize("name", ["forest", "shuffled forest", "chain"])
def test_frame_weights_count_a_recursive_frame_once_per_stack(name: str) -> None:
    parent = TREES[name]
    rng = np.random.default_rng(9)
    frames = rng.integers(0, 40, len(parent)).astype(np.int32)
    stack = rng.integers(-1, len(parent), 20_000).astype(np.int32)
    weight = rng.integers(1, 5, 20_000).astype(np.float64)  # sums exact in any order
    profile = profile_of(parent, frames, stack, weight)
    key_of_frame = np.arange(40) % 13
    self_weight, total_weight = profile.frame_weights(key_of_frame)
    key_of_node = key_of_frame[frames]
    above = keys_above(parent, key_of_node)
    expected_self, expected_total = np.zeros(13), np.zeros(13)
    for node, node_weight in zip(stack.tolist(), weight.tolist(), strict=True):
        if node >= 0:
            expected_self[key_of_node[node]] += node_weight
            expected_total[list(above[node] | {int(key_of_node[node])})] += node_weight
    assert self_weight.tolist() == expected_self.tolist()
    assert total_weight.tolist() == expected_total.tolist()

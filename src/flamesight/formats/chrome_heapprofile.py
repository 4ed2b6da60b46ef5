"""Chrome DevTools and Node.js heap profiles (``.heapprofile``, the sampling heap profiler).

Chrome writes one from DevTools' Memory panel ("Allocation sampling", then
"Save"), Node.js with ``node --heap-prof script.js`` (a
``Heap.*.heapprofile`` in the working directory) or through the inspector's
``HeapProfiler.stopSampling``. It is the allocation call tree::

    {"head": {"callFrame": {"functionName": "(root)", "url": "", "lineNumber": -1,
                            "columnNumber": -1, "scriptId": "0"},
              "selfSize": 0, "id": 1, "children": [...]},
     "samples": [{"size": 64, "nodeId": 7, "ordinal": 1}, ...]}

``selfSize`` is the number of bytes (still live, sampled) allocated by a
node's function when called along that path.

The reading follows speedscope, the reference importer: one profile in
bytes, one sample per tree node with its ``selfSize``, root frame included,
nodes in depth-first order laid end to end; frames named by their function
or "(anonymous file:line)", with lines and columns as V8 writes them
(0-based, -1 where unknown, which the model stores as unknown).

The tree is read by msgspec into small structs that keep each node's
``callFrame`` as its JSON text (the ``samples`` list is skipped unread), so
a frame is read once per distinct text; the stacks are then made from the
nodes' depths and frames with NumPy (`tree_stacks`). A document that
msgspec cannot read that way (a bad value, a tree deeper than it goes) is
read whole with orjson and walked node by node, which names the place of a
bad value.
"""

from __future__ import annotations

from array import array
from itertools import repeat

import msgspec
import numpy as np
import orjson

from flamesight.formats.chrome_cpuprofile import (
    check_frame_fields,
    describe_json_value,
    frame_name,
    json_head_keys,
)
from flamesight.formats.errors import FormatError, load_json
from flamesight.formats.json_pieces import decode_typed_json
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit
from flamesight.model.stack_building import tree_stacks

NAME = "chrome-heapprofile"
TITLE = "Chrome/Node .heapprofile"


def sniff(head: bytes) -> bool:
    """A JSON object whose ``head`` node carries a ``selfSize`` (a heap, not a CPU, profile)."""
    opener, keys, _ = json_head_keys(head, max_depth=1)
    if opener != b"{":
        return False
    top = {key for _, key in keys}
    if "head" not in top or top & {"nodes", "timestamps", "$schema", "traceEvents"}:
        return False
    return b'"selfSize"' in head and b'"callFrame"' in head


class _Node(msgspec.Struct, gc=False):
    """A tree node as the fast reading keeps it: its call frame as JSON text, other keys
    skipped, and no list for a node without children."""

    callFrame: msgspec.Raw
    selfSize: int | float
    children: tuple[_Node, ...] = ()


class _Document(msgspec.Struct):
    """The document as the fast reading keeps it: the tree alone (``samples`` is skipped)."""

    head: _Node


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a heap profile into a group of one profile in bytes."""
    profile = _read_tree(data, name)
    if profile is not None:
        return ProfileGroup(name, [profile])
    document = load_json(data, TITLE)
    if not isinstance(document, dict):
        raise FormatError(TITLE, "$", f"expected an object, got {describe_json_value(document)}")
    if "head" not in document:
        raise FormatError(TITLE, "$", "no 'head' key (the root of the allocation tree)")
    builder = ProfileBuilder(name, Unit.BYTES, sampled=True)
    frames: dict[tuple, int] = {}
    stacks: list[int] = []
    weights: list[float] = []
    # Depth first, children in order, without recursion: (node, parent stack, path).
    pending: list[tuple[object, int, str]] = [(document["head"], -1, "$.head")]
    while pending:
        node, parent, where = pending.pop()
        if not isinstance(node, dict):
            raise FormatError(
                TITLE, where, f"expected a node object, got {describe_json_value(node)}"
            )
        stack = builder.stack(parent, _frame(builder, frames, node.get("callFrame"), where))
        size = node.get("selfSize")
        if not isinstance(size, int | float) or isinstance(size, bool) or size < 0:
            raise FormatError(
                TITLE,
                f"{where}.selfSize",
                f"expected a byte count, got {describe_json_value(size)}",
            )
        if size > 0:
            stacks.append(stack)
            weights.append(size)
        children = node.get("children", [])
        if not isinstance(children, list):
            raise FormatError(
                TITLE, f"{where}.children", f"expected a list, got {describe_json_value(children)}"
            )
        for index in range(len(children) - 1, -1, -1):
            pending.append((children[index], stack, f"{where}.children[{index}]"))
    values = np.array(weights, np.float64)
    if len(values) and not np.isfinite(values.sum()):
        raise FormatError(TITLE, "$.head", "the sizes add up past the largest number")
    builder.add_samples(np.array(stacks, np.int64), values)
    return ProfileGroup(name, [builder.build()])


def _frame(
    builder: ProfileBuilder, frames: dict[tuple, int], call_frame: object, where: str
) -> int:
    if not isinstance(call_frame, dict):
        raise FormatError(
            TITLE,
            f"{where}.callFrame",
            f"expected an object, got {describe_json_value(call_frame)}",
        )
    where = f"{where}.callFrame"
    fields = (
        call_frame.get("functionName"),
        call_frame.get("url"),
        call_frame.get("lineNumber"),
        call_frame.get("columnNumber"),
    )
    try:
        known = frames.get(fields)
    except TypeError:  # a list or object among the fields: reported below
        known = None
    if known is not None:
        return known
    function, url, line, col = fields
    check_frame_fields(
        TITLE,
        where,
        (("functionName", function), ("url", url)),
        (("lineNumber", line), ("columnNumber", col)),
    )
    function = frame_name(function, url, line)
    frame_id = frames[fields] = builder.frame(
        function,
        url or None,
        None if line is None or line < 0 else line,
        None if col is None or col < 0 else col,
    )
    return frame_id


def _read_tree(data: bytes, name: str) -> Profile | None:
    """The profile, read through `_Node` structs; None if anything needs the plain reading.

    The tree is walked depth first, children in order, as the plain reading
    walks it, so frames and stacks get the same numbers.
    """
    document = decode_typed_json(data, _Document)
    if document is None:
        return None
    pending = [(document.head, 0)]
    del document
    texts: dict[bytes, int] = {}  # call frame JSON text -> its index, in order of first use
    depths = array("q")
    text_of_node = array("q")
    sizes: list[int | float] = []
    while pending:
        node, depth = pending.pop()
        depths.append(depth)
        text = bytes(node.callFrame)
        known = texts.get(text)
        text_of_node.append(len(texts) if known is None else known)
        if known is None:
            texts[text] = len(texts)
        sizes.append(node.selfSize)
        if node.children:
            pending.extend(zip(reversed(node.children), repeat(depth + 1)))
    try:
        values = np.array(sizes, np.float64)
    except OverflowError:  # an integer past the largest float, which orjson refuses
        return None
    del sizes
    if len(values) and (values.min() < 0 or not np.isfinite(values.sum())):
        return None
    builder = ProfileBuilder(name, Unit.BYTES, sampled=True)
    frame_of_text = np.empty(len(texts), np.int64)
    frames: dict[tuple, int] = {}
    for index, text in enumerate(texts):
        try:
            frame_of_text[index] = _frame(builder, frames, orjson.loads(text), "")
        except (orjson.JSONDecodeError, FormatError):
            return None
    del texts
    stacks, stack_of_node = tree_stacks(
        np.frombuffer(depths, np.int64), frame_of_text[np.frombuffer(text_of_node, np.int64)]
    )
    used = values > 0
    builder.add_samples(stack_of_node[used], values[used])
    return builder.build(stacks)

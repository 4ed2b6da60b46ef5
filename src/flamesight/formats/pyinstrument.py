"""pyinstrument: its saved sessions (``.pyisession``) and its JSON renderer output.

Produce them with the pyinstrument command or API::

    pyinstrument -r session -o run.pyisession script.py
    pyinstrument -r json -o run.json script.py
    # or: profiler.last_session.save("run.pyisession"); JSONRenderer().render(session)

A session is ``frame_records``: one ``[frames, seconds]`` pair per sample,
each frame an identifier ``FUNCTION\\0FILE\\0LINE`` followed by attributes
(``\\x01cCLASS``, ``\\x01lLINE``), outermost first, plus
``start_call_stack``, the stack pyinstrument was started from. The JSON
renderer writes the processed call tree instead: ``root_frame`` with
``function``, ``file_path``, ``line_no``, ``time`` (seconds, the node's
total), ``class_name`` and ``children``.

speedscope has no pyinstrument importer; flamesight reads both as
pyinstrument itself shows them, in seconds, as one profile named after the
file:

- a session gives one sample per record, its time as the weight, in record
  order; the stem pyinstrument trims (the frames of ``start_call_stack``
  above the first branch, its thread and its own command-line frames) is
  trimmed here too, and ``[self]`` markers are dropped (the time is the
  caller's own);
- a rendered tree gives each node one sample of its own time (its time less
  its children's, never below zero), node before children, depth first;
  ``[self]`` nodes count as their parent's own time.

A frame is the function (``CLASS.function`` for methods), its file and its
first line. Trees are walked without recursion.

Both are first read with msgspec into only what matters, the other keys
skipped without being built. A session becomes each record's time and the
JSON text of its frames, which is read once per distinct text into numbers
standing for its frame strings. A tree is first found in the document and
scanned for the names, files, classes and lines it holds; its nodes are
then read into small typed nodes whose fields are ``Literal``s of those
values, so that all nodes share one string (or number) per distinct value.
The file's text is let go once the nodes are read, each node once walked,
and the stacks are made from the nodes' depths and frames with NumPy
(`tree_stacks`). Anything the fast reading does not take sends the file to
the plain reading of the whole document, whose checks name the place of a
problem.
"""

from __future__ import annotations

import dataclasses
import math
import re
from array import array
from typing import Annotated, Generic, Literal, TypeVar

import msgspec
import numpy as np
import orjson

from flamesight.formats.chrome_cpuprofile import describe_json_value, json_head_keys
from flamesight.formats.errors import FormatError, load_json
from flamesight.formats.json_pieces import decode_typed_json
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit
from flamesight.model.stack_building import tree_stacks

NAME = "pyinstrument"
TITLE = "pyinstrument session/JSON"

_SELF_TIME = "[self]"
_MAX_LINE = 2**62
_MAX_SECONDS = 1e300
_Seconds = Annotated[float, msgspec.Meta(ge=0, lt=_MAX_SECONDS)]

_Text = TypeVar("_Text")
_Line = TypeVar("_Line")


class _Node(msgspec.Struct, Generic[_Text, _Line], gc=False):
    """A node of a rendered tree as the fast reading takes it (typed per tree by `_node_type`)."""

    function: _Text
    time: _Seconds
    file_path: _Text | None = None
    line_no: _Line | None = None
    class_name: _Text | None = None
    children: tuple[_Node[_Text, _Line], ...] = ()


class _Document(msgspec.Struct, gc=False):
    """A session (records as their frames' JSON text and seconds) or a rendered tree (its text)."""

    frame_records: list[tuple[msgspec.Raw, _Seconds]] | msgspec.UnsetType = msgspec.UNSET
    start_call_stack: list[str] = []
    root_frame: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    target_description: object = msgspec.UNSET
    program: object = msgspec.UNSET


def _key_pattern(key: str, value: bytes) -> re.Pattern[bytes]:
    """A pattern for ``"key": value`` (any white space) that captures the value's text."""
    return re.compile(b'"' + key.encode() + rb'"[ \t\r\n]*:[ \t\r\n]*' + value)


_STRING_VALUE = rb'"([^"\\]*(?:\\.[^"\\]*)*)"'
_TEXT_PATTERNS = [
    _key_pattern(key, _STRING_VALUE) for key in ("function", "file_path", "class_name")
]
_LINE_PATTERN = _key_pattern("line_no", rb"(-?[0-9]+)")


def sniff(head: bytes) -> bool:
    """A JSON object with pyinstrument's top-level keys (``sample_count`` and a tree or records)."""
    opener, keys, _ = json_head_keys(head, max_depth=1)
    top = {key for _, key in keys}
    return (
        opener == b"{"
        and "sample_count" in top
        and bool(top & {"root_frame", "frame_records", "start_call_stack", "target_description"})
    )


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a pyinstrument session or rendered JSON tree into one profile in seconds."""
    document = decode_typed_json(data, _Document)
    if document is not None:
        builder = ProfileBuilder(name, Unit.SECONDS)
        description = document.target_description
        if description is msgspec.UNSET:
            description = document.program
        if isinstance(description, str):
            builder.metadata["target"] = description
        if document.frame_records is not msgspec.UNSET:
            if _read_typed_session(builder, document):
                return ProfileGroup(name, [builder.build()])
        elif document.root_frame is not msgspec.UNSET:
            root = _decode_tree(document.root_frame)
            if root is not msgspec.UNSET:
                # the nodes hold what is needed (`formats.load` keeps no other reference)
                del data, document
                return ProfileGroup(name, [_read_typed_tree(builder, root)])
    return _parse_whole(data, name)


def _parse_whole(data: bytes, name: str) -> ProfileGroup:
    """The plain reading: the whole document as Python objects, checked value by value."""
    document = load_json(data, TITLE)
    if not isinstance(document, dict):
        raise FormatError(
            TITLE, "top level", f"expected a JSON object, got {describe_json_value(document)}"
        )
    builder = ProfileBuilder(name, Unit.SECONDS)
    description = document.get("target_description", document.get("program"))
    if isinstance(description, str):
        builder.metadata["target"] = description
    if "frame_records" in document:
        _read_session(builder, document)
    elif "root_frame" in document:
        return ProfileGroup(name, [_read_tree(builder, document["root_frame"])])
    else:
        raise FormatError(TITLE, "top level", "neither 'frame_records' nor 'root_frame'")
    return ProfileGroup(name, [builder.build()])


def _seconds(value: object, where: str) -> float:
    """A finite, non-negative number of seconds."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value < _MAX_SECONDS
    ):
        raise FormatError(
            TITLE, where, f"expected a non-negative number, got {describe_json_value(value)}"
        )
    return float(value)


def _text(value: object, where: str) -> str:
    """A JSON string, or a FormatError naming `where`."""
    if not isinstance(value, str):
        raise FormatError(TITLE, where, f"expected a string, got {describe_json_value(value)}")
    return value


def _frame_fields(name: str, file: str | None, line: int | None, class_name: str | None) -> tuple:
    """(name, file, line) of a frame as the model keeps it."""
    if class_name:
        name = f"{class_name}.{name}"
    if line is not None and not 0 < line < _MAX_LINE:
        line = None
    return name, file or None, line


def _read_session(builder: ProfileBuilder, document: dict) -> None:
    """One sample per frame record, the stem trimmed."""
    records = document["frame_records"]
    if not isinstance(records, list):
        raise FormatError(
            TITLE, "frame_records", f"expected a list, got {describe_json_value(records)}"
        )
    infos: dict[str, int] = {}
    stacks: list[list[int]] = []
    weights = np.empty(len(records), np.float64)
    for index, record in enumerate(records):
        where = f"frame_records[{index}]"
        if not isinstance(record, list) or len(record) != 2 or not isinstance(record[0], list):
            raise FormatError(
                TITLE, where, f"expected a [frames, time] pair, got {describe_json_value(record)}"
            )
        stacks.append(
            [
                infos.setdefault(_text(info, f"{where}[0][{i}]"), len(infos))
                for i, info in enumerate(record[0])
            ]
        )
        weights[index] = _seconds(record[1], f"{where}[1]")
    start = document.get("start_call_stack", [])
    if not isinstance(start, list):
        raise FormatError(
            TITLE, "start_call_stack", f"expected a list, got {describe_json_value(start)}"
        )
    start = [_text(info, "start_call_stack") for info in start]
    _add_session_samples(builder, list(infos), stacks, np.arange(len(stacks)), weights, start)


def _read_typed_session(builder: ProfileBuilder, session: _Document) -> bool:
    """Add the samples of a session read by msgspec; False (nothing added) for anything unusual."""
    records = session.frame_records
    weights = np.fromiter((seconds for _, seconds in records), np.float64, len(records))
    infos: dict[str, int] = {}
    stack_of_text: dict[bytes, int] = {}
    stacks: list[list[int]] = []
    record_stacks = np.empty(len(records), np.int32)
    for index, (frames_json, _) in enumerate(records):
        text = bytes(frames_json)
        stack = stack_of_text.get(text)
        if stack is None:
            try:
                frames = orjson.loads(text)
            except orjson.JSONDecodeError:
                return False
            if type(frames) is not list or set(map(type, frames)) - {str}:
                return False
            stack = stack_of_text[text] = len(stacks)
            stacks.append([infos.setdefault(info, len(infos)) for info in frames])
        record_stacks[index] = stack
    _add_session_samples(
        builder, list(infos), stacks, record_stacks, weights, session.start_call_stack
    )
    return True


def _add_session_samples(
    builder: ProfileBuilder,
    infos: list[str],
    stacks: list[list[int]],
    record_stacks: np.ndarray,
    weights: np.ndarray,
    start: list[str],
) -> None:
    """One sample per record: record *i* has the frames ``infos[f] for f in stacks[record_stacks[i]]``.

    `stacks` are in the order of their first record, so frames and stacks are
    made in record order whether or not equal stacks are listed once.
    """
    identifiers = [info.split("\x01")[0] for info in infos]
    stem = _stem_length(stacks, identifiers, [info.split("\x01")[0] for info in start])
    frame_of_info: list[int | None] = [None] * len(infos)
    stack_ids = np.empty(len(stacks), np.int32)
    for index, frames in enumerate(stacks):
        stack = -1
        for info in frames[stem:]:
            frame = frame_of_info[info]
            if frame is None:
                frame = frame_of_info[info] = _session_frame(builder, infos[info])
            if frame >= 0:
                stack = builder.stack(stack, frame)
        stack_ids[index] = stack
    builder.add_samples(stack_ids[record_stacks], weights)


def _stem_length(stacks: list[list[int]], identifiers: list[str], start: list[str]) -> int:
    """How many outer frames pyinstrument trims: the start stack's frames before the first branch.

    A frame of `stacks` is an index into `identifiers`; `start` holds identifiers.
    """
    if not stacks or not start:
        return 0
    outer = [[identifiers[info] for info in frames[: len(start) + 1]] for frames in stacks]
    if any(not ids or ids[0] != start[0] for ids in outer):
        return 0
    depth = 0
    while depth + 1 < len(start) and all(
        len(ids) > depth + 1 and ids[depth + 1] == start[depth + 1] for ids in outer
    ):
        depth += 1
    return depth


def _session_frame(builder: ProfileBuilder, info: str) -> int:
    """The builder frame of a session frame string, or -1 for a ``[self]`` marker."""
    identifier, *attributes = info.split("\x01")
    if identifier == _SELF_TIME:
        return -1
    function, _, rest = identifier.partition("\x00")
    file, _, line_text = rest.partition("\x00")
    class_name = next((a[1:] for a in attributes if a.startswith("c")), None)
    line = int(line_text) if line_text.isdecimal() and len(line_text) < 18 else None
    if file == "<thread>":
        line = None
    return builder.frame(*_frame_fields(function, file, line, class_name))


@dataclasses.dataclass
class _TreeColumns:
    """A rendered tree walked depth first: each node's depth and frame, and the samples.

    A sample is the row of the node whose stack it has (-1 for no stack)
    and its weight. `[self]` nodes have no row.
    """

    depths: array = dataclasses.field(default_factory=lambda: array("i"))
    frames: array = dataclasses.field(default_factory=lambda: array("i"))
    sample_rows: array = dataclasses.field(default_factory=lambda: array("i"))
    sample_weights: array = dataclasses.field(default_factory=lambda: array("d"))

    def profile(self, builder: ProfileBuilder) -> Profile:
        """The profile: stacks made from the rows' depths and frames, samples laid end to end."""
        stacks, stack_of_row = tree_stacks(
            np.frombuffer(self.depths, np.int32), np.frombuffer(self.frames, np.int32)
        )
        rows = np.frombuffer(self.sample_rows, np.int32)
        weights = np.frombuffer(self.sample_weights, np.float64)
        ends = np.cumsum(weights)  # added one by one, as `ProfileBuilder.add_sample` does
        times = np.concatenate(([0.0], ends[:-1])) if len(ends) else ends
        builder.add_samples(np.append(stack_of_row, -1)[rows], weights, times)
        return builder.build(stacks)


def _read_tree(builder: ProfileBuilder, root: object) -> Profile:
    """One sample of own time per node of a rendered tree, depth first."""
    tree = _TreeColumns()
    # (node, where, depth, parent row)
    pending: list[tuple[object, str, int, int]] = []
    if root is not None:  # pyinstrument renders an empty session as null
        pending.append((root, "root_frame", 0, -1))
    while pending:
        node, where, depth, parent = pending.pop()
        if not isinstance(node, dict):
            raise FormatError(TITLE, where, f"expected an object, got {describe_json_value(node)}")
        function = _text(node.get("function"), f"{where}.function")
        total = _seconds(node.get("time"), f"{where}.time")
        children = node.get("children", [])
        if not isinstance(children, list):
            raise FormatError(
                TITLE, f"{where}.children", f"expected a list, got {describe_json_value(children)}"
            )
        if function == _SELF_TIME:
            if total > 0:
                tree.sample_rows.append(parent)
                tree.sample_weights.append(total)
            continue
        file = node.get("file_path")
        line = node.get("line_no")
        class_name = node.get("class_name")
        row = len(tree.depths)
        tree.depths.append(depth)
        tree.frames.append(
            builder.frame(
                *_frame_fields(
                    function,
                    _text(file, f"{where}.file_path") if file is not None else None,
                    line if isinstance(line, int) and not isinstance(line, bool) else None,
                    class_name if isinstance(class_name, str) else None,
                )
            )
        )
        inner = 0.0
        for index, child in enumerate(children):
            if isinstance(child, dict):
                inner += _seconds(child.get("time"), f"{where}.children[{index}].time")
        own = total - inner
        if own > 0 and not math.isclose(total, inner, rel_tol=1e-9, abs_tol=1e-9):
            tree.sample_rows.append(row)
            tree.sample_weights.append(own)
        pending.extend(
            (child, f"{where}.children[{index}]", depth + 1, row)
            for index, child in reversed(list(enumerate(children)))
        )
    return tree.profile(builder)


def _node_type(text: msgspec.Raw) -> object:
    """The type of the tree `text` (or None): `_Node` with ``Literal``s of the values there.

    msgspec decodes a ``Literal`` value as that very object, so nodes share
    one string or number per distinct value instead of one each (for the
    benchmark's tree, 53 MB of nodes instead of 137). The values are found
    by patterns for their keys; a value the patterns miss (say, under a key
    written with escapes) fails the decoding, and the file goes to the
    plain reading. (`typing` keeps the last 128 types it made, so the values
    of the last few trees read stay alive until newer ones push them out.)
    """
    texts = set()
    for pattern in _TEXT_PATTERNS:
        for value in set(pattern.findall(text)):
            try:
                texts.add(orjson.loads(b'"%s"' % value))
            except orjson.JSONDecodeError:
                continue  # not JSON: msgspec refuses it too
    lines = {int(value) for value in set(_LINE_PATTERN.findall(text)) if len(value) <= 20}
    lines = {line for line in lines if -(2**63) <= line < 2**63}  # msgspec's Literal integers
    return (
        _Node[Literal[tuple(texts)] if texts else str, Literal[tuple(lines)] if lines else int]
        | None
    )


def _decode_tree(text: msgspec.Raw) -> _Node | msgspec.UnsetType | None:
    """The tree `text` read as typed nodes (None for a null tree), or UNSET if that fails.

    `text` is part of a document `decode_typed_json` has read, so it is UTF-8.
    """
    try:
        return msgspec.json.decode(text, type=_node_type(text))
    except (msgspec.DecodeError, RecursionError):  # ValidationError included; deep nesting
        return msgspec.UNSET


def _read_typed_tree(builder: ProfileBuilder, root: _Node | None) -> Profile:
    """`_read_tree` for a tree read by msgspec (its values already checked).

    Each node lets go of its children once it is walked, so the nodes walked
    are freed.
    """
    tree = _TreeColumns()
    add_depth, add_frame = tree.depths.append, tree.frames.append
    add_row, add_weight = tree.sample_rows.append, tree.sample_weights.append
    pending: list[tuple[_Node, int, int]] = []  # (node, depth, parent row)
    if root is not None:
        pending.append((root, 0, -1))
    frame_of_fields: dict[tuple, int] = {}
    row = -1
    while pending:
        node, depth, parent = pending.pop()
        total = node.time
        if node.function == _SELF_TIME:
            if total > 0:
                add_row(parent)
                add_weight(total)
            continue
        fields = (node.function, node.file_path, node.line_no, node.class_name)
        frame = frame_of_fields.get(fields)
        if frame is None:
            frame = frame_of_fields[fields] = builder.frame(*_frame_fields(*fields))
        row += 1
        add_depth(depth)
        add_frame(frame)
        children, node.children = node.children, ()
        inner = 0.0
        for child in children:
            inner += child.time
        own = total - inner
        if own > 0 and not math.isclose(total, inner, rel_tol=1e-9, abs_tol=1e-9):
            add_row(row)
            add_weight(own)
        pending.extend((child, depth + 1, row) for child in reversed(children))
    return tree.profile(builder)

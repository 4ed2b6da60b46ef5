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
skipped without being built: a session into each record's time and the JSON
text of its frames, which is read once per distinct text; a tree into small
typed nodes, the file's text let go once they are read and each node once
walked. Anything the fast reading does not take sends the file to the plain
reading of the whole document, whose checks name the place of a problem.
"""

from __future__ import annotations

import math
from typing import Annotated

import msgspec
import numpy as np
import orjson

from flamesight.formats.chrome_cpuprofile import describe_json_value, json_head_keys
from flamesight.formats.errors import FormatError, load_json
from flamesight.formats.json_pieces import decode_typed_json
from flamesight.model import ProfileBuilder, ProfileGroup, Unit

NAME = "pyinstrument"
TITLE = "pyinstrument session/JSON"

_SELF_TIME = "[self]"
_MAX_LINE = 2**62
_MAX_SECONDS = 1e300
_Seconds = Annotated[float, msgspec.Meta(ge=0, lt=_MAX_SECONDS)]


class _Node(msgspec.Struct, gc=False):
    """A node of a rendered tree as the fast reading takes it."""

    function: str
    time: _Seconds
    file_path: str | None = None
    line_no: object = None
    class_name: object = None
    children: tuple[_Node, ...] = ()


class _Document(msgspec.Struct, gc=False):
    """A session (records as their frames' JSON text and seconds) or a rendered tree."""

    frame_records: list[tuple[msgspec.Raw, _Seconds]] | msgspec.UnsetType = msgspec.UNSET
    start_call_stack: list[str] = []
    root_frame: _Node | msgspec.UnsetType | None = msgspec.UNSET
    target_description: object = msgspec.UNSET
    program: object = msgspec.UNSET


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
            del data  # the tree holds what is needed (`formats.load` keeps no other reference)
            _read_typed_tree(builder, document)
            return ProfileGroup(name, [builder.build()])
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
        _read_tree(builder, document["root_frame"])
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
    stacks: list[list[str]] = []
    weights = np.empty(len(records), np.float64)
    for index, record in enumerate(records):
        where = f"frame_records[{index}]"
        if not isinstance(record, list) or len(record) != 2 or not isinstance(record[0], list):
            raise FormatError(
                TITLE, where, f"expected a [frames, time] pair, got {describe_json_value(record)}"
            )
        stacks.append([_text(info, f"{where}[0][{i}]") for i, info in enumerate(record[0])])
        weights[index] = _seconds(record[1], f"{where}[1]")
    start = document.get("start_call_stack", [])
    if not isinstance(start, list):
        raise FormatError(
            TITLE, "start_call_stack", f"expected a list, got {describe_json_value(start)}"
        )
    start = [_text(info, "start_call_stack") for info in start]
    _add_session_samples(builder, stacks, np.arange(len(stacks)), weights, start)


def _read_typed_session(builder: ProfileBuilder, session: _Document) -> bool:
    """Add the samples of a session read by msgspec; False (nothing added) for anything unusual."""
    records = session.frame_records
    weights = np.fromiter((seconds for _, seconds in records), np.float64, len(records))
    stack_of_text: dict[bytes, int] = {}
    stacks: list[list[str]] = []
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
            stacks.append(frames)
        record_stacks[index] = stack
    _add_session_samples(builder, stacks, record_stacks, weights, session.start_call_stack)
    return True


def _add_session_samples(
    builder: ProfileBuilder,
    stacks: list[list[str]],
    record_stacks: np.ndarray,
    weights: np.ndarray,
    start: list[str],
) -> None:
    """One sample per record: record *i* has the frames ``stacks[record_stacks[i]]``.

    `stacks` are in the order of their first record, so frames and stacks are
    made in record order whether or not equal stacks are listed once.
    """
    stem = _stem_length(stacks, [info.split("\x01")[0] for info in start])
    frame_ids: dict[str, int] = {}
    stack_ids = np.empty(len(stacks), np.int32)
    for index, frames in enumerate(stacks):
        stack = -1
        for info in frames[stem:]:
            frame = frame_ids.get(info)
            if frame is None:
                frame = frame_ids[info] = _session_frame(builder, info)
            if frame >= 0:
                stack = builder.stack(stack, frame)
        stack_ids[index] = stack
    builder.add_samples(stack_ids[record_stacks], weights)


def _stem_length(stacks: list[list[str]], start: list[str]) -> int:
    """How many outer frames pyinstrument trims: the start stack's frames before the first branch."""
    if not stacks or not start:
        return 0
    identifiers = [
        [info.split("\x01")[0] for info in frames[: len(start) + 1]] for frames in stacks
    ]
    if any(not ids or ids[0] != start[0] for ids in identifiers):
        return 0
    depth = 0
    while depth + 1 < len(start) and all(
        len(ids) > depth + 1 and ids[depth + 1] == start[depth + 1] for ids in identifiers
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


def _read_tree(builder: ProfileBuilder, root: object) -> None:
    """One sample of own time per node of a rendered tree, depth first."""
    if root is None:
        return  # pyinstrument renders an empty session as null
    # (node, where, parent stack)
    pending: list[tuple[object, str, int]] = [(root, "root_frame", -1)]
    while pending:
        node, where, parent = pending.pop()
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
                builder.add_sample(parent, total)
            continue
        file = node.get("file_path")
        line = node.get("line_no")
        class_name = node.get("class_name")
        frame = builder.frame(
            *_frame_fields(
                function,
                _text(file, f"{where}.file_path") if file is not None else None,
                line if isinstance(line, int) and not isinstance(line, bool) else None,
                class_name if isinstance(class_name, str) else None,
            )
        )
        stack = builder.stack(parent, frame)
        inner = 0.0
        for index, child in enumerate(children):
            if isinstance(child, dict):
                inner += _seconds(child.get("time"), f"{where}.children[{index}].time")
        own = total - inner
        if own > 0 and not math.isclose(total, inner, rel_tol=1e-9, abs_tol=1e-9):
            builder.add_sample(stack, own)
        pending.extend(
            (child, f"{where}.children[{index}]", stack)
            for index, child in reversed(list(enumerate(children)))
        )


def _read_typed_tree(builder: ProfileBuilder, document: _Document) -> None:
    """`_read_tree` for a tree read by msgspec (its times already checked).

    Each node is let go once read: the document no longer holds the root,
    nor a node its children.
    """
    pending: list[tuple[_Node, int]] = []
    if document.root_frame is not None:
        pending.append((document.root_frame, -1))
    document.root_frame = None
    frame_of_fields: dict[tuple, int] = {}
    while pending:
        node, parent = pending.pop()
        total = node.time
        if node.function == _SELF_TIME:
            if total > 0:
                builder.add_sample(parent, total)
            continue
        line, class_name = node.line_no, node.class_name
        fields = (
            node.function,
            node.file_path,
            line if type(line) is int else None,
            class_name if type(class_name) is str else None,
        )
        frame = frame_of_fields.get(fields)
        if frame is None:
            frame = frame_of_fields[fields] = builder.frame(*_frame_fields(*fields))
        stack = builder.stack(parent, frame)
        children, node.children = node.children, ()
        inner = 0.0
        for child in children:
            inner += child.time
        own = total - inner
        if own > 0 and not math.isclose(total, inner, rel_tol=1e-9, abs_tol=1e-9):
            builder.add_sample(stack, own)
        pending.extend((child, stack) for child in reversed(children))

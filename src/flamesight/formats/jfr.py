"""Java Flight Recorder recordings (``.jfr``): execution samples, with and without native ones.

Produce one with ``java -XX:StartFlightRecording=filename=run.jfr,settings=profile
App`` or ``jcmd PID JFR.start`` / ``JFR.dump``.

A recording is a sequence of chunks, each starting with the magic
``FLR\\0`` and a 68-byte header (chunk size, offsets of the last constant
pool event and of the metadata event, the flag for compressed integers).
The metadata event describes every type as a class with fields; constant
pool events (chained backwards by offset deltas) hold the pooled values
(stack traces, methods, classes, symbols) that events refer to by index;
events are size-prefixed records of their class's fields.

Read as speedscope reads it (through jfrview), which is the reference for
the numbers: two profiles, "Without native calls" from the
``jdk.ExecutionSample`` events and "With native calls" from those and the
``jdk.NativeMethodSample`` events, in file order, each sample weighing one
(plain counts) and laid end to end. A frame is ``CLASS:METHOD`` with the
class name dotted (``java.util.ArrayList:add``). The metadata's element
tree is walked without recursion; struct values recurse only along the
nesting of their type definitions, which is capped at 32 levels (a deeper
or self-containing definition is refused); every count is checked against
the bytes left, and pool references are followed a bounded number of times.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from flamesight.formats.errors import FormatError
from flamesight.model import ProfileBuilder, ProfileGroup, Unit

NAME = "jfr"
TITLE = "Java Flight Recorder"

MAGIC = b"FLR\x00"
_HEADER_SIZE = 68
_EXECUTION_SAMPLE = "jdk.ExecutionSample"
_NATIVE_SAMPLE = "jdk.NativeMethodSample"
_MAX_TYPE_DEPTH = 32
_PRIMITIVES = frozenset(
    {"boolean", "byte", "char", "short", "int", "long", "float", "double", "java.lang.String"}
)


class _Ref(NamedTuple):
    """A constant pool reference: (class id, index)."""

    class_id: int
    index: int


class _Field(NamedTuple):
    """A field of a metadata class: its type, and whether it is pooled or an array."""

    name: str
    type_id: int
    pooled: bool
    array: bool


class _Class(NamedTuple):
    """A metadata class: its name and fields in order."""

    name: str
    fields: list[_Field]


def sniff(head: bytes) -> bool:
    """Starts with the JFR chunk magic ``FLR\\0``."""
    return head.startswith(MAGIC)


class _Reader:
    """Bounds-checked reads of JFR's integers and strings from `data[pos:end]`."""

    def __init__(self, data: bytes, pos: int, end: int, compressed: bool) -> None:
        self.data = data
        self.pos = pos
        self.end = end
        self.compressed = compressed

    def fail(self, problem: str) -> FormatError:
        """A FormatError at the current byte."""
        return FormatError(TITLE, f"byte {self.pos}", problem)

    def _take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > self.end:
            raise self.fail("the data ends in the middle of a value")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def byte(self) -> int:
        """One unsigned byte."""
        if self.pos >= self.end:
            raise self.fail("the data ends in the middle of a value")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        """A compressed integer (7 bits per byte, the ninth byte whole), as signed 64 bits."""
        data, pos, end = self.data, self.pos, self.end
        value = 0
        for shift in range(0, 56, 7):
            if pos >= end:
                self.pos = pos
                raise self.fail("the data ends in the middle of a number")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos
                return value - (1 << 64) if value >= 1 << 63 else value
        if pos >= end:
            self.pos = pos
            raise self.fail("the data ends in the middle of a number")
        value |= data[pos] << 56
        self.pos = pos + 1
        return value - (1 << 64) if value >= 1 << 63 else value

    def integer(self, size: int) -> int:
        """An int/long/short/char: compressed, or big-endian of `size` bytes."""
        if self.compressed:
            return self.varint()
        return int.from_bytes(self._take(size), "big", signed=True)

    def count(self) -> int:
        """A length or count, which cannot exceed the bytes left."""
        value = self.integer(4)
        if value < 0 or value > self.end - self.pos:
            raise self.fail(
                f"a count of {value} does not fit in the {self.end - self.pos} bytes left"
            )
        return value

    def string(self) -> str | _Ref | None:
        """A string in any of JFR's encodings (a pooled one as a reference)."""
        encoding = self.byte()
        if encoding == 0:
            return None
        if encoding == 1:
            return ""
        if encoding == 2:
            return _Ref(-1, self.integer(8))
        if encoding in (3, 5):
            raw = self._take(self.count())
            return raw.decode("utf-8" if encoding == 3 else "latin-1", "replace")
        if encoding == 4:
            return "".join(chr(self.integer(2) & 0xFFFF) for _ in range(self.count()))
        raise self.fail(f"unknown string encoding {encoding}")

    def primitive(self, name: str) -> object:
        """A value of a primitive type or a string."""
        if name == "boolean" or name == "byte":
            return self.byte()
        if name == "float":
            return struct.unpack(">f", self._take(4))[0]
        if name == "double":
            return struct.unpack(">d", self._take(8))[0]
        if name == "java.lang.String":
            return self.string()
        return self.integer({"char": 2, "short": 2, "int": 4, "long": 8}[name])


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read the execution samples of every chunk into a group of two profiles."""
    without = ProfileBuilder("Without native calls", Unit.NONE)
    with_native = ProfileBuilder("With native calls", Unit.NONE)
    plain: list[int] = []
    everything: list[int] = []
    start = 0
    chunks = 0
    while start < len(data):
        if data[start : start + 4] != MAGIC:
            raise FormatError(TITLE, f"byte {start}", "expected a chunk starting with 'FLR\\0'")
        if start + _HEADER_SIZE > len(data):
            raise FormatError(TITLE, f"byte {start}", "the chunk header is cut short")
        size, pool_offset, meta_offset = struct.unpack_from(">qqq", data, start + 8)
        if size < _HEADER_SIZE or start + size > len(data):
            raise FormatError(
                TITLE, f"byte {start + 8}", f"chunk size {size} does not fit in the file"
            )
        compressed = bool(data[start + 67] & 1)
        chunk = _Chunk(data, start, start + size, compressed)
        chunk.read_metadata(meta_offset)
        chunk.read_pools(pool_offset)
        for native, stack in chunk.samples():
            for builder, stacks in ((with_native, everything), (without, plain)):
                if native and builder is without:
                    continue
                frames = [builder.frame(frame_name) for frame_name in stack]
                stacks.append(builder.stack_of(frames))
        start += size
        chunks += 1
    if not chunks:
        raise FormatError(TITLE, "whole file", "the file is empty")
    profiles = []
    for builder, stacks in ((without, plain), (with_native, everything)):
        builder.add_samples(np.array(stacks, np.int32), np.ones(len(stacks)))
        profiles.append(builder.build())
    return ProfileGroup(name, profiles)


class _Chunk:
    """One chunk: its types, its constant pools, and its sample events."""

    def __init__(self, data: bytes, start: int, end: int, compressed: bool) -> None:
        self.data = data
        self.start = start
        self.end = end
        self.compressed = compressed
        self.classes: dict[int, _Class] = {}
        self.by_name: dict[str, int] = {}
        self.pools: dict[int, dict[int, object]] = {}

    def _event(self, offset: int, expected_type: int, what: str) -> _Reader:
        """A reader over the event at chunk offset `offset`, past its size and type."""
        if not _HEADER_SIZE <= offset < self.end - self.start:
            raise FormatError(
                TITLE, f"byte {self.start}", f"the {what} offset {offset} is outside the chunk"
            )
        reader = _Reader(self.data, self.start + offset, self.end, self.compressed)
        size = reader.integer(4)
        if size <= 0 or self.start + offset + size > self.end:
            raise reader.fail(f"the {what} event size {size} does not fit in the chunk")
        reader.end = self.start + offset + size
        if reader.integer(8) != expected_type:
            raise reader.fail(f"expected the {what} event")
        return reader

    def read_metadata(self, offset: int) -> None:
        """The class and field definitions of the metadata event."""
        reader = self._event(offset, 0, "metadata")
        for _ in range(3):  # start time, duration, metadata id
            reader.integer(8)
        strings = []
        for _ in range(reader.count()):
            text = reader.string()
            strings.append(text if isinstance(text, str) else "")

        def text_at(index: int) -> str:
            if not 0 <= index < len(strings):
                raise reader.fail(f"string index {index} is not in the metadata's {len(strings)}")
            return strings[index]

        # Walk the element tree without recursion: `pending` elements are left at this
        # level, `parents` holds each open element and the siblings left after it.
        pending = 1
        parents: list[tuple[str, int]] = []  # (element name, children still to read)
        current_class: int | None = None
        while pending or parents:
            if not pending:
                element, pending = parents.pop()
                if element == "class":
                    current_class = None
                continue
            pending -= 1
            element = text_at(reader.integer(4))
            attributes = {}
            for _ in range(reader.count()):
                key = text_at(reader.integer(4))
                attributes[key] = text_at(reader.integer(4))
            if element == "class":
                class_id = _int_attribute(attributes, "id", reader)
                self.classes[class_id] = _Class(attributes.get("name", ""), [])
                self.by_name[attributes.get("name", "")] = class_id
                current_class = class_id
            elif element == "field" and current_class is not None:
                self.classes[current_class].fields.append(
                    _Field(
                        attributes.get("name", ""),
                        _int_attribute(attributes, "class", reader),
                        attributes.get("constantPool") == "true",
                        attributes.get("dimension", "0") not in ("0", ""),
                    )
                )
            children = reader.count()
            parents.append((element, pending))
            pending = children

    def read_pools(self, offset: int) -> None:
        """Every constant pool event, from the last one back along the chain of deltas."""
        seen = set()
        while True:
            if offset in seen:
                raise FormatError(TITLE, f"byte {self.start + offset}", "the constant pools loop")
            seen.add(offset)
            reader = self._event(offset, 1, "constant pool")
            reader.integer(8)  # start time
            reader.integer(8)  # duration
            delta = reader.integer(8)
            reader.byte()  # flush flag
            for _ in range(reader.count()):
                class_id = reader.integer(8)
                pool = self.pools.setdefault(class_id, {})
                for _ in range(reader.count()):
                    index = reader.integer(8)
                    pool[index] = self.value(reader, class_id)
            if delta == 0:
                return
            offset += delta

    def value(self, reader: _Reader, class_id: int, depth: int = 0) -> object:
        """One value of class `class_id`: a primitive, or a tuple of its fields' values."""
        type_class = self.classes.get(class_id)
        if type_class is None:
            raise reader.fail(f"type id {class_id} is not in the metadata")
        if type_class.name in _PRIMITIVES:
            return reader.primitive(type_class.name)
        if depth >= _MAX_TYPE_DEPTH:
            raise reader.fail(
                f"type {type_class.name!r} nests deeper than {_MAX_TYPE_DEPTH} levels"
            )
        values = []
        for field in type_class.fields:
            if field.array:
                values.append([self._field(reader, field, depth) for _ in range(reader.count())])
            else:
                values.append(self._field(reader, field, depth))
        return tuple(values)

    def _field(self, reader: _Reader, field: _Field, depth: int) -> object:
        """One (non-array) value of `field`: a pool reference or an inline value."""
        if field.pooled:
            return _Ref(field.type_id, reader.integer(8))
        return self.value(reader, field.type_id, depth + 1)

    def resolve(self, value: object, reader: _Reader) -> object:
        """Follow constant pool references (bounded) to a value."""
        for _ in range(_MAX_TYPE_DEPTH):
            if not isinstance(value, _Ref):
                return value
            class_id = (
                value.class_id if value.class_id >= 0 else self.by_name.get("java.lang.String", -1)
            )
            pool = self.pools.get(class_id, {})
            if value.index not in pool:
                return None
            value = pool[value.index]
        raise reader.fail("constant pool references loop")

    def _field_of(self, value: object, class_id: int, name: str, reader: _Reader) -> object:
        """Field `name` of a struct value of class `class_id` (None if it is missing)."""
        type_class = self.classes.get(class_id)
        if type_class is None or not isinstance(value, tuple):
            return None
        for field, field_value in zip(type_class.fields, value, strict=False):
            if field.name == name:
                return self.resolve(field_value, reader) if field.pooled else field_value
        return None

    def samples(self) -> list[tuple[bool, list[str]]]:
        """(native?, frame names root first) of every sample event, in file order."""
        wanted = {
            self.by_name.get(_EXECUTION_SAMPLE, -1): False,
            self.by_name.get(_NATIVE_SAMPLE, -1): True,
        }
        wanted.pop(-1, None)
        names = {
            key: self.by_name.get(key, -1)
            for key in (
                "jdk.types.StackTrace",
                "jdk.types.StackFrame",
                "jdk.types.Method",
                "java.lang.Class",
                "jdk.types.Symbol",
            )
        }
        results = []
        cache: dict[tuple[int, int], list[str]] = {}
        position = self.start + _HEADER_SIZE
        while position < self.end:
            reader = _Reader(self.data, position, self.end, self.compressed)
            size = reader.integer(4)
            if size <= 0 or position + size > self.end:
                raise reader.fail(f"event size {size} does not fit in the chunk")
            reader.end = position + size
            event_type = reader.integer(8)
            position += size
            if event_type not in wanted:
                continue
            event = self.value(reader, event_type)
            trace_ref = None
            for field, field_value in zip(self.classes[event_type].fields, event, strict=False):  # type: ignore[arg-type]
                if field.name == "stackTrace":
                    trace_ref = field_value
            key = (trace_ref.class_id, trace_ref.index) if isinstance(trace_ref, _Ref) else None
            frames = cache.get(key) if key else None
            if frames is None:
                frames = self._frames(self.resolve(trace_ref, reader), names, reader)
                if key:
                    cache[key] = frames
            results.append((wanted[event_type], frames))
        return results

    def _frames(self, trace: object, names: dict[str, int], reader: _Reader) -> list[str]:
        """The frame names of a stack trace value, root first."""
        frames = self._field_of(trace, names["jdk.types.StackTrace"], "frames", reader)
        if not isinstance(frames, list):
            return []
        result = []
        for frame in frames:
            method = self._field_of(frame, names["jdk.types.StackFrame"], "method", reader)
            method_name = self._symbol(
                self._field_of(method, names["jdk.types.Method"], "name", reader), names, reader
            )
            class_value = self._field_of(method, names["jdk.types.Method"], "type", reader)
            class_name = self._symbol(
                self._field_of(class_value, names["java.lang.Class"], "name", reader), names, reader
            )
            result.append(f"{class_name.replace('/', '.')}:{method_name}")
        result.reverse()
        return result

    def _symbol(self, symbol: object, names: dict[str, int], reader: _Reader) -> str:
        """The text of a jdk.types.Symbol value (empty when missing)."""
        text = self._field_of(symbol, names["jdk.types.Symbol"], "string", reader)
        text = self.resolve(text, reader)
        return text if isinstance(text, str) else ""


def _int_attribute(attributes: dict[str, str], key: str, reader: _Reader) -> int:
    """A whole-number metadata attribute (class and type ids)."""
    value = attributes.get(key, "")
    if not value.lstrip("-").isdigit() or len(value) > 19:
        raise reader.fail(f"metadata attribute {key!r} is not a number: {value[:40]!r}")
    return int(value)

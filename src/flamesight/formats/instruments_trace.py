"""Instruments ``.trace`` bundles (zipped): the time profiles they hold, read as speedscope reads them.

A bundle is a folder; flamesight takes it as a zip of that folder. What a Time
Profiler run keeps (Instruments 8 to 10):

- ``form.template``: an NSKeyedArchiver binary property list. Its top object
  names the instrument (``$1``, or the first key of ``stubInfoByUUID``; only
  ``com.apple.xray.instrument-type.coresampler2``, and Instruments 7's
  ``...coresampler`` below, is a time profile), the run
  selected in the window (``com.apple.xray.owner.template`` →
  ``_selectedRunNumber``), and the runs (``com.apple.xray.run.data``, an
  ``XRRunListData``: run numbers, and per run a dictionary whose
  ``symbolsByPid`` holds, per process, a ``PFTPersistentSymbols`` list of
  ``PFTSymbolData``: symbol name, source path, then address/line pairs).
- ``corespace/run<N>/core/stores/indexed-store-*/``: one table per store.
  The store whose ``schema.xml`` is named ``time-profile`` has the samples in
  ``bulkstore``: a header (its size at byte 12, the bytes per record at byte
  16, little-endian), then fixed-size records of a 6-byte timestamp (ns), a
  4-byte thread id, ..., and a 4-byte backtrace id in the record's last four
  bytes; a zero timestamp ends the list.
- ``corespace/run<N>/core/uniquing/arrayUniquer/integeruniquer.index`` and
  ``.data``: the backtraces. The index, after a 32-byte header, is a list of
  (byte offset, megabyte offset) pairs of 4-byte integers; each non-zero one
  points into the data file at an array (a 4-byte count, then that many 8-byte
  integers). A backtrace id, or an element of an array, is an address when the
  symbol tables know it, else (its low 32 bits) the index of another array to
  splice in, else an unknown address shown as ``0x`` and 16 hex digits.

Instruments 7 (seen: 7.3.1; ``com.apple.xray.instrument-type.coresampler``)
has the same ``form.template`` (run list, symbol tables) but no stores; its
``corespace`` uniquers are empty. Per run N, for the instrument with UUID U:

- ``Trace<N>.run/<U>-sampler.data``: a header of 4-byte little-endian
  integers (0x12340a0a, version 3, 40, the offset of the first record, the
  bytes per record, the capacity in bytes and in records), then records of an
  8-byte timestamp (ns), an 8-byte thread id, a 4-byte CPU, a 4-byte thread
  state and a 4-byte backtrace id; the unused rest is zeros, and a zero
  timestamp ends the list.
- ``instrument_data/<U>/run_data/<N>.run.zip``: a zip of one file, ``<N>.run``,
  an NSArchiver typedstream (see `TypedStream`) of an ``XRSamplerRun``. Under
  the key ``id_map_nsdata`` (in its event descriptor's substitutions) an
  NSData holds another typedstream: the number of backtraces, then for each an
  ``XRRawBacktrace`` (pid, number of frames, the return addresses leaf first,
  and an integer that is 0 in every one seen) followed by its id, the number
  the sampler's records carry. Addresses are named through the symbol tables,
  as for later versions. (``shared_data/<N>.run/*.zip`` hold typedstreams of
  ``PFTPersistentSymbols``; they are not read.)

speedscope does not read Instruments 7 bundles. Instruments' own call tree
(its deep copy) counts each sample as 1 ms; here, as for later versions, a
sample weighs the time since the previous one.

Any of these files may be zlib-compressed (from Instruments 9); they are
inflated with the same cap. One profile per thread of each run, threads with
more samples first, named "<bundle> - thread <id>"; the first profile of the
selected run is shown first. A sample's weight is the time since the
previous sample of its thread, and the time before a thread's first sample is
an empty-stack sample, as in speedscope. Units: nanoseconds.

Where speedscope differs: it lists a run once per process in its symbol
tables (a slip); flamesight lists each run once.
"""

from __future__ import annotations

import io
import plistlib
import re
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from flamesight.formats.errors import FormatError, shorten
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit, current_limits

TITLE = "Instruments"
TIME_PROFILER = "com.apple.xray.instrument-type.coresampler2"
OLD_TIME_PROFILER = "com.apple.xray.instrument-type.coresampler"  # Instruments 7

MAX_MEMBERS = 100_000
_MAX_BACKTRACE_DEPTH = 100_000
_MAX_EXPANDED_FRAMES = 50_000_000  # frames over all distinct backtraces of a run
_TIME_PROFILE_SCHEMA = re.compile(rb'name="time-profile"')
_STORE = re.compile(r"^corespace/run(\d+)/core/stores/([^/]+)/schema\.xml$")
_UNZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,  # a compression method zipfile lacks
    RuntimeError,  # an encrypted member
)


class TraceBundle:
    """The members of one ``.trace`` folder inside a zip, read on demand within a byte budget."""

    def __init__(self, archive: zipfile.ZipFile, bundle: str) -> None:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise FormatError(
                TITLE, "zip", f"{len(infos):,} members; more than {MAX_MEMBERS:,} is not a trace"
            )
        self.archive = archive
        self.bundle = bundle
        prefix = bundle + "/"
        self.members = {
            info.filename[len(prefix) :]: info
            for info in infos
            if info.filename.startswith(prefix) and not info.is_dir()
        }
        self.budget = current_limits().max_decompressed_bytes

    def has(self, path: str) -> bool:
        return path in self.members

    def read(self, path: str) -> bytes:
        """The member's bytes, inflated when zlib-compressed; counted against the size cap."""
        info = self.members.get(path)
        where = f"{self.bundle}/{path}"
        if info is None:
            raise FormatError(TITLE, where, "missing from the bundle")
        try:
            with self.archive.open(info) as member:
                data = member.read(self.budget + 1)
        except _UNZIP_ERRORS as error:
            raise FormatError(TITLE, where, f"cannot be unzipped ({error})") from None
        self._spend(len(data), where)
        if data[:1] == b"\x78" and len(data) >= 2 and (data[0] << 8 | data[1]) % 31 == 0:
            inflater = zlib.decompressobj()
            try:
                inflated = inflater.decompress(data, self.budget + 1)
            except zlib.error as error:
                raise FormatError(TITLE, where, f"bad zlib data ({error})") from None
            self._spend(len(inflated), where)
            data = inflated
        return data

    def read_zipped(self, path: str, file_name: str) -> bytes:
        """The file named `file_name` (in any folder) of the zip that member `path` is."""
        where = f"{self.bundle}/{path}"
        data = self.read(path)
        content: bytes | None = None
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                infos = archive.infolist()
                found = [
                    info
                    for info in infos[: MAX_MEMBERS + 1]
                    if not info.is_dir() and info.filename.rsplit("/", 1)[-1] == file_name
                ]
                if len(infos) > MAX_MEMBERS:
                    problem = f"a zip of {len(infos):,} members; more than {MAX_MEMBERS:,}"
                elif not found:
                    problem = f"the zip holds no file named {file_name!r}"
                else:
                    with archive.open(found[0]) as member:
                        content = member.read(self.budget + 1)
        except _UNZIP_ERRORS as error:
            problem = f"cannot be unzipped ({error})"
        if content is None:
            raise FormatError(TITLE, where, problem)
        self._spend(len(content), f"{where}/{found[0].filename}")
        return content

    def _spend(self, size: int, where: str) -> None:
        self.budget -= size
        if self.budget < 0:
            limit = current_limits().max_decompressed_bytes
            raise FormatError(
                TITLE,
                where,
                f"the bundle unpacks to more than {limit:,} bytes "
                "(raise max_decompressed_bytes to load it)",
            )


# NSKeyedArchiver


class KeyedArchive:
    """An NSKeyedArchiver property list, its objects decoded one level at a time.

    Containers keep their members as stored (`plistlib.UID` references
    included); `value` follows one reference. Callers walk a fixed number of
    levels, so nothing here recurses on the depth of the object graph.
    """

    def __init__(self, data: bytes, where: str) -> None:
        self.where = where
        try:
            root = plistlib.loads(data)
        except RecursionError:
            raise FormatError(TITLE, where, "property list nested too deeply") from None
        except Exception as error:  # plistlib raises several types for bad input
            raise FormatError(TITLE, where, f"not a property list ({error})") from None
        if (
            not isinstance(root, dict)
            or root.get("$archiver") != "NSKeyedArchiver"
            or not isinstance(root.get("$objects"), list)
            or not isinstance(root.get("$top"), dict)
        ):
            raise FormatError(TITLE, where, "not an NSKeyedArchiver archive")
        self.objects: list[object] = root["$objects"]
        self.top: dict = root["$top"]
        self._decoded: dict[int, object] = {}

    def value(self, item: object) -> object:
        """`item`, or the decoded object it refers to."""
        if not isinstance(item, plistlib.UID):
            return item
        index = item.data
        if index in self._decoded:
            return self._decoded[index]
        if not 0 <= index < len(self.objects):
            raise FormatError(
                TITLE, self.where, f"reference to object {index} of {len(self.objects)}"
            )
        self._decoded[index] = None  # a reference cycle reads as null
        decoded = self._decode(self.objects[index])
        self._decoded[index] = decoded
        return decoded

    def get(self, container: object, key: object) -> object:
        """`container[key]` (a dict), followed; None when absent."""
        if isinstance(container, dict):
            return self.value(container.get(key))
        return None

    def _class_name(self, item: dict) -> str | None:
        reference = item.get("$class")
        if not isinstance(reference, plistlib.UID) or not 0 <= reference.data < len(self.objects):
            return None
        described = self.objects[reference.data]
        name = described.get("$classname") if isinstance(described, dict) else None
        return name if isinstance(name, str) else None

    def _decode(self, item: object) -> object:
        if item == "$null":
            return None
        if not isinstance(item, dict):
            return item
        name = self._class_name(item)
        if name in ("NSString", "NSMutableString"):
            text = item.get("NS.string", item.get("NS.bytes", b""))
            if isinstance(text, bytes):
                text = text.removesuffix(b"\0").decode("utf-8", "replace")
            return text if isinstance(text, str) else None
        if name in ("NSData", "NSMutableData"):
            return item.get("NS.bytes", item.get("NS.data"))
        if name in ("NSArray", "NSMutableArray", "NSSet", "NSMutableSet", "NSOrderedSet"):
            if isinstance(item.get("NS.objects"), list):
                return item["NS.objects"]
            return _numbered(item, "NS.object.")
        if name == "_NSKeyedCoderOldStyleArray":
            count = item.get("NS.count")
            count = count if isinstance(count, int) else 0
            return [item.get(f"${i}") for i in range(min(count, len(item)))]
        if name in ("NSDictionary", "NSMutableDictionary"):
            keys, values = item.get("NS.keys"), item.get("NS.objects")
            if isinstance(keys, list) and isinstance(values, list):
                pairs = zip(keys, values, strict=False)
            else:
                pairs = zip(_numbered(item, "NS.key."), _numbered(item, "NS.object."), strict=False)
            return self._mapping(pairs)
        if name == "XRIntKeyedDictionary":
            size = item.get("$0")
            size = size if isinstance(size, int) else 0
            pairs = (
                (item.get(f"${1 + 2 * i}"), item.get(f"${2 + 2 * i}"))
                for i in range(min(size, len(item)))
            )
            return self._mapping(pairs)
        return item

    def _mapping(self, pairs) -> dict:
        mapping: dict = {}
        for key, value in pairs:
            key = self.value(key)
            if isinstance(key, (str, int, float, bytes)) and key not in mapping:
                mapping[key] = value
        return mapping


def _numbered(item: dict, prefix: str) -> list:
    found = []
    while f"{prefix}{len(found)}" in item:
        found.append(item[f"{prefix}{len(found)}"])
    return found


@dataclass
class Template:
    """What form.template says: the instrument, the selected run, each run's symbols."""

    instrument: str | None
    selected_run: int | None
    runs: list[tuple[int, dict[int, tuple[str, str | None]]]]  # number, address -> (name, file)


def read_template(data: bytes, where: str) -> Template:
    """The instrument, selected run and symbol tables of a bundle's form.template."""
    archive = KeyedArchive(data, where)
    top = archive.top
    instrument = archive.get(top, "$1")
    stubs = archive.get(top, "stubInfoByUUID")
    if isinstance(stubs, dict) and stubs:
        instrument = next(iter(stubs))
    owner = archive.get(top, "com.apple.xray.owner.template")
    selected = (
        archive.get(owner, "_selectedRunNumber") if "com.apple.xray.owner.template" in top else 1
    )
    run_list = archive.get(top, "com.apple.xray.run.data")
    runs: list[tuple[int, dict[int, tuple[str, str | None]]]] = []
    if isinstance(run_list, dict):
        numbers = archive.value(run_list.get("$0"))
        run_data = archive.value(run_list.get("$1"))
        for number in numbers if isinstance(numbers, list) else []:
            number = archive.value(number)
            if not isinstance(number, int) or not isinstance(run_data, dict):
                continue
            symbols_by_pid = archive.get(archive.get(run_data, number), "symbolsByPid")
            if not isinstance(symbols_by_pid, dict):
                raise FormatError(TITLE, where, f"run {number} has no symbol tables (symbolsByPid)")
            runs.append((number, _symbols(archive, symbols_by_pid)))
    if not runs and instrument == TIME_PROFILER:
        raise FormatError(TITLE, where, "no runs in com.apple.xray.run.data")
    return Template(
        instrument if isinstance(instrument, str) else None,
        selected if isinstance(selected, int) else None,
        runs,
    )


def _symbols(archive: KeyedArchive, symbols_by_pid: dict) -> dict[int, tuple[str, str | None]]:
    """address -> (name, file) over every process's PFTPersistentSymbols, first one wins."""
    frames: dict[int, tuple[str, str | None]] = {}
    for reference in symbols_by_pid.values():
        persistent = archive.value(reference)
        if (
            not isinstance(persistent, dict)
            or archive._class_name(persistent) != "PFTPersistentSymbols"
        ):
            continue
        count = archive.value(persistent.get("$4"))
        count = count if isinstance(count, int) else 0
        for i in range(1, min(count, len(persistent))):
            symbol = archive.value(persistent.get(f"${4 + i}"))
            if not isinstance(symbol, dict) or archive._class_name(symbol) != "PFTSymbolData":
                continue
            name = archive.value(symbol.get("$0"))
            path = archive.value(symbol.get("$1"))
            file = path if isinstance(path, str) and path else None
            i_pair = 3
            while True:
                address = archive.value(symbol.get(f"${i_pair}"))
                line = archive.value(symbol.get(f"${i_pair + 1}"))
                if address is None or line is None:
                    break
                if isinstance(address, int) and address not in frames:
                    shown = name if isinstance(name, str) and name else f"0x{address:016x}"
                    frames[address] = (shown, file)
                i_pair += 2
    return frames


# Samples and backtraces


def time_profile_store(bundle: TraceBundle, run: int) -> str | None:
    """The folder of run `run`'s store whose schema is named "time-profile"."""
    stores = []
    for path in bundle.members:
        match = _STORE.match(path)
        if match and int(match.group(1)) == run:
            stores.append(path.removesuffix("/schema.xml"))
    for store in sorted(stores, key=_natural):
        if _TIME_PROFILE_SCHEMA.search(bundle.read(f"{store}/schema.xml")):
            return store
    return None


def _natural(path: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path))


def read_samples(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(timestamp, thread id, backtrace id) per record of a time-profile bulkstore."""
    if len(data) < 20:
        raise FormatError(TITLE, where, f"{len(data)} bytes; too short for a bulkstore header")
    header_size, record_size = struct.unpack_from("<II", data, 12)
    if record_size < 14:
        raise FormatError(TITLE, where, f"{record_size} bytes per record; a sample needs 14")
    if header_size > len(data):
        raise FormatError(
            TITLE, where, f"header of {header_size:,} bytes in a {len(data):,}-byte file"
        )
    count = (len(data) - header_size) // record_size
    records = np.frombuffer(data, np.uint8, count * record_size, header_size).reshape(
        count, record_size
    )
    stamps = np.zeros((count, 8), np.uint8)
    stamps[:, :6] = records[:, :6]
    timestamps = stamps.view("<u8").ravel()
    ends = np.flatnonzero(timestamps == 0)
    count = int(ends[0]) if len(ends) else count
    threads = records[:count, 6:10].copy().view("<u4").ravel()
    backtraces = records[:count, record_size - 4 :].copy().view("<u4").ravel()
    return timestamps[:count].astype(np.int64), threads, backtraces


def read_arrays(index: bytes, data: bytes, where: str) -> list[tuple[int, int]]:
    """(offset, count) in `data` of each array of an integer uniquer, in index order."""
    arrays = []
    for position in range(32, len(index) - 7, 8):
        low, megabytes = struct.unpack_from("<II", index, position)
        offset = low + megabytes * 1024 * 1024
        if offset == 0:
            continue
        if offset + 4 > len(data):
            raise FormatError(
                TITLE, where, f"entry {(position - 32) // 8} points past the data ({offset:,})"
            )
        (length,) = struct.unpack_from("<I", data, offset)
        arrays.append((offset + 4, min(length, (len(data) - offset - 4) // 8)))
    return arrays


class Backtraces:
    """Backtrace ids to frame lists, expanding uniqued arrays without recursion."""

    def __init__(
        self,
        symbols: dict[int, tuple[str, str | None]],
        arrays: list[tuple[int, int]],
        data: bytes,
        where: str,
    ) -> None:
        self.symbols = symbols
        self.arrays = arrays
        self.data = data
        self.where = where
        self.expanded = 0

    def frames(self, backtrace: int) -> list[tuple[str, str | None]]:
        """The frames of `backtrace`, outermost first."""
        found: list[tuple[str, str | None]] = []
        pending: list[tuple[int, int, int]] = []  # (array, next element, elements)
        opened: set[int] = set()
        value = backtrace
        while True:
            if value is not None:
                frame = self.symbols.get(value)
                array = value & 0xFFFFFFFF
                if frame is not None:
                    found.append(frame)
                elif array < len(self.arrays) and array < 0x80000000:
                    if array in opened or len(pending) >= _MAX_BACKTRACE_DEPTH:
                        raise FormatError(
                            TITLE,
                            self.where,
                            f"backtrace {backtrace} refers to itself (array {array})",
                        )
                    opened.add(array)
                    pending.append((array, 0, self.arrays[array][1]))
                else:
                    found.append((f"0x{value:016x}", None))
                if len(found) > _MAX_BACKTRACE_DEPTH:
                    raise FormatError(
                        TITLE,
                        self.where,
                        f"backtrace {backtrace} has over {_MAX_BACKTRACE_DEPTH:,} frames",
                    )
            if not pending:
                break
            array, position, length = pending[-1]
            if position >= length:
                pending.pop()
                opened.discard(array)
                value = None
                continue
            pending[-1] = (array, position + 1, length)
            (value,) = struct.unpack_from("<Q", self.data, self.arrays[array][0] + 8 * position)
        self.expanded += len(found)
        if self.expanded > _MAX_EXPANDED_FRAMES:
            raise FormatError(
                TITLE,
                self.where,
                f"the backtraces expand to over {_MAX_EXPANDED_FRAMES:,} frames",
            )
        found.reverse()
        return found


# Instruments 7: typedstream archives and the sampler's files

_TYPEDSTREAM_MAGIC = b"\x04\x0bstreamtyped"
_TS_INT16, _TS_INT32, _TS_INT64, _TS_REAL = 0x81, 0x82, 0x87, 0x83  # tags before the value
_TS_NEW, _TS_NIL, _TS_END = 0x84, 0x85, 0x86
_TS_FIRST_REFERENCE = -110  # the reference to entry 0 of a table
_TS_INTEGER_BITS = {"c": 8, "C": 8, "B": 8, "s": 16, "S": 16, "i": 32, "I": 32}
_TS_INTEGER_BITS |= {"l": 32, "L": 32, "q": 64, "Q": 64}
_TS_MAX_NESTING = 1_000
_TS_MAX_CODES = 1_000_000  # values of one type encoding (an array of a million addresses)
_SAMPLER_MAGIC = 0x12340A0A
_SAMPLER_RECORD_SIZE = 28  # time (ns) and thread, 8 bytes each; cpu, state, backtrace id, 4 each
_MAX_TIMESTAMP = 1 << 62
_SAMPLER_DATA = re.compile(r"^Trace(\d+)\.run/([0-9A-Fa-f-]+)-sampler\.data$")


@dataclass
class TypedValue:
    """One value of a typedstream: its type code, the depth of objects it sits in, and their class."""

    code: str
    depth: int
    owner: str | None
    value: int | float | bytes | str | None


class TypedStream:
    """An NSArchiver ("typedstream") archive, read as a flat series of values.

    Every value is preceded by its Objective-C type encoding, so the stream can
    be walked without knowing the classes it holds. After the header (4, then
    "streamtyped" for little-endian), an integer is a signed byte, or 0x81,
    0x82 or 0x87 and 2, 4 or 8 bytes; a real is 0x83 and 4 or 8 bytes; 0x84
    starts a new string (length, bytes), class (name, version, superclass) or
    object (class, then typed values up to 0x86); 0x85 is nil; other numbers
    refer back, -110 being the first entry, to the table of strings (type
    encodings, class names) or to the table of objects, classes and C strings.

    Objects are entered, not built: `values` yields the scalars, strings and
    byte runs in stream order, each with the class of the object that encoded
    it, and a ``"@"`` value when an object begins (``value`` = its class) and
    ``"}"`` when it ends.
    """

    def __init__(self, data: bytes, where: str) -> None:
        if not data.startswith(_TYPEDSTREAM_MAGIC):
            raise FormatError(TITLE, where, "not a little-endian typedstream archive")
        self.data = data
        self.where = where
        self.pos = len(_TYPEDSTREAM_MAGIC)
        self.strings: list[bytes] = []
        self.objects: list[str | None] = []  # the class of an object or class; a C string's text
        self.integer()  # the system version

    def fail(self, problem: str) -> FormatError:
        """A `FormatError` at the current byte offset."""
        return FormatError(TITLE, f"{self.where}, byte {self.pos:,}", problem)

    def take(self, size: int) -> bytes:
        """The next `size` bytes."""
        if size < 0 or self.pos + size > len(self.data):
            raise self.fail(f"{size:,} bytes wanted; the archive ends at {len(self.data):,}")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def integer(self) -> int:
        """A signed integer: one byte, or a tag and 2, 4 or 8 bytes."""
        (first,) = struct.unpack("<b", self.take(1))
        if first & 0xFF == _TS_INT16:
            return struct.unpack("<h", self.take(2))[0]
        if first & 0xFF == _TS_INT32:
            return struct.unpack("<i", self.take(4))[0]
        if first & 0xFF == _TS_INT64:
            return struct.unpack("<q", self.take(8))[0]
        return first

    def reference(self, table: list, what: str) -> int:
        """The index of an earlier entry of `table`, from a reference number."""
        index = self.integer() - _TS_FIRST_REFERENCE
        if not 0 <= index < len(table):
            raise self.fail(f"reference to {what} {index} of {len(table)}")
        return index

    def shared_string(self) -> bytes | None:
        """A string written once and referred to afterwards (type encodings, class names)."""
        tag = self.take(1)[0]
        if tag == _TS_NIL:
            return None
        if tag == _TS_NEW:
            text = self.take(self.integer())
            self.strings.append(text)
            return text
        self.pos -= 1
        return self.strings[self.reference(self.strings, "string")]

    def earlier_object(self) -> tuple[bool, str | None]:
        """Nil or a reference to the object table: (True, the entry); (False, None) before a new one."""
        tag = self.take(1)[0]
        if tag == _TS_NEW:
            return False, None
        if tag == _TS_NIL:
            return True, None
        self.pos -= 1
        return True, self.objects[self.reference(self.objects, "object")]

    def class_name(self) -> str | None:
        """A class (and its superclasses, when new): the name of the first one."""
        known, name = self.earlier_object()
        if known:
            return name
        names: list[str | None] = []
        tag = _TS_NEW
        while tag == _TS_NEW:  # a new class, then its superclass
            text = self.shared_string()
            names.append(None if text is None else text.decode("utf-8", "replace"))
            self.objects.append(names[-1])
            self.integer()  # the class version
            tag = self.take(1)[0]
        if tag != _TS_NIL:
            self.pos -= 1
            self.reference(self.objects, "object")
        return names[0]

    def type_codes(self, encoding: bytes) -> list[str]:
        """The type codes of one type encoding, arrays repeated and structures flattened.

        An array of ``c`` or ``C`` is one code, ``"[c"``, whose value is its bytes.
        """
        text = encoding.decode("ascii", "replace")
        budget = len(self.data) - self.pos  # each value takes a byte at least
        codes: list[str] = []
        opened: list[tuple[int, int]] = []  # (index in codes, length) of the open arrays
        i = 0
        while i < len(text):
            char = text[i]
            i += 1
            if char == "[":
                digits = re.match(r"\d*", text[i:]).group()
                i += len(digits)
                if not 0 < len(digits) <= 9:
                    raise self.fail(f"array type without a length in {shorten(text)}")
                if text[i : i + 2] in ("c]", "C]"):
                    if int(digits):  # so that every code takes a byte at least
                        codes.append("[c" + digits)
                    i += 2
                else:
                    opened.append((len(codes), int(digits)))
            elif char == "]":
                if not opened:
                    raise self.fail(f"unbalanced ']' in {shorten(text)}")
                start, length = opened.pop()
                if (len(codes) - start) * length > min(budget, _TS_MAX_CODES):
                    raise self.fail(
                        f"type {shorten(text)} has more values than the archive can hold"
                    )
                codes[start:] = codes[start:] * length
            elif char == "{":
                end = text.find("=", i)
                if end < 0:
                    raise self.fail(f"structure type without fields in {shorten(text)}")
                i = end + 1
            elif char in "}rnNoORV":  # ends of structures, qualifiers
                continue
            else:
                codes.append(char)
            if len(codes) > min(budget, _TS_MAX_CODES):
                raise self.fail(f"type {shorten(text)} has more values than the archive can hold")
        return codes

    def values(self) -> Iterator[TypedValue]:
        """Every value of the archive in order; objects are walked with a stack, not recursion."""
        open_objects: list[tuple[str | None, list[str], int]] = [(None, [], 0)]
        while True:
            owner, codes, next_code = open_objects[-1]
            depth = len(open_objects) - 1
            if next_code == len(codes):
                if depth == 0 and self.pos >= len(self.data):
                    return
                if depth and self.data[self.pos : self.pos + 1] == bytes([_TS_END]):
                    self.pos += 1
                    open_objects.pop()
                    yield TypedValue("}", depth - 1, owner, None)
                    continue
                encoding = self.shared_string()
                if encoding is None:
                    raise self.fail("a value without a type")
                open_objects[-1] = (owner, self.type_codes(encoding), 0)
                continue
            code = codes[next_code]
            open_objects[-1] = (owner, codes, next_code + 1)
            if code == "@":
                known, _ = self.earlier_object()
                if not known:
                    index = len(self.objects)
                    self.objects.append(None)  # the object is numbered before its class
                    name = self.objects[index] = self.class_name()
                    if len(open_objects) > _TS_MAX_NESTING:
                        raise self.fail(f"objects nested over {_TS_MAX_NESTING:,} deep")
                    open_objects.append((name, [], 0))
                    yield TypedValue("@", depth, owner, name)
            else:
                yield TypedValue(code, depth, owner, self.scalar(code))

    def scalar(self, code: str) -> int | float | bytes | str | None:
        """One value that is not an object."""
        bits = _TS_INTEGER_BITS.get(code)
        if bits is not None:
            value = self.integer()
            return value & ((1 << bits) - 1) if code.isupper() else value
        if code in "fd":
            if self.data[self.pos : self.pos + 1] == bytes([_TS_REAL]):
                self.pos += 1
                return struct.unpack(
                    "<f" if code == "f" else "<d", self.take(4 if code == "f" else 8)
                )[0]
            return float(self.integer())
        if code.startswith("[c"):
            return self.take(int(code[2:]))
        if code == "+":
            return self.take(self.integer())
        if code == "*":  # a C string is a pointer, kept in the object table
            known, earlier = self.earlier_object()
            if known:
                return earlier
            text = self.shared_string()
            self.objects.append(None if text is None else text.decode("utf-8", "replace"))
            return self.objects[-1]
        if code in "%:":
            text = self.shared_string()
            return None if text is None else text.decode("utf-8", "replace")
        if code == "#":
            return self.class_name()
        raise self.fail(f"type {code!r} is not read")


def sampler_id_map(run: bytes, where: str) -> bytes:
    """The archive of backtraces an XRSamplerRun keeps under the key "id_map_nsdata"."""
    key_depth = None  # depth of the key just read, while its value has not begun
    value_depth = None  # depth inside the data object that follows the key
    id_map = None
    for value in TypedStream(run, where).values():  # all of it, so that a cut one fails
        if value.code == "+" and value.owner in ("NSString", "NSMutableString"):
            key_depth = value.depth - 1 if value.value == b"id_map_nsdata" else None
        elif value.code == "@" and key_depth is not None:
            found = value.depth == key_depth and value.value in ("NSData", "NSMutableData")
            value_depth = value.depth + 1 if found else None
            key_depth = None
        elif value.code.startswith("[c") and value.depth == value_depth and id_map is None:
            id_map = value.value
    if not isinstance(id_map, bytes):
        raise FormatError(TITLE, where, "no backtraces (no data under the key id_map_nsdata)")
    return id_map


def read_raw_backtraces(id_map: bytes, where: str) -> dict[int, list[int]]:
    """Backtrace id -> return addresses, leaf first, from the archive of `sampler_id_map`."""
    stream = TypedStream(id_map, where)
    backtraces: dict[int, list[int]] = {}
    count = None
    fields: list[int] | None = None  # the integers of the XRRawBacktrace being read
    finished: list[int] | None = None  # the last one read, waiting for its id
    frames = 0
    for value in stream.values():
        if value.code == "@" and value.depth == 0:
            if count is None:
                raise stream.fail("the map does not start with its number of backtraces")
            if value.value != "XRRawBacktrace":
                raise stream.fail(f"expected a backtrace (XRRawBacktrace), got {value.value}")
            fields = []
        elif value.code == "}" and value.depth == 0:
            finished, fields = fields, None
        elif fields is not None and value.depth == 1 and isinstance(value.value, int):
            fields.append(value.value)
        elif value.depth == 0 and value.code in _TS_INTEGER_BITS:
            if count is None:
                count = value.value
                continue
            if finished is None:
                raise stream.fail(f"backtrace id {value.value} follows no backtrace")
            if len(finished) < 2 or not 0 <= finished[1] <= len(finished) - 2:
                raise stream.fail(f"backtrace {value.value} is not (pid, length, addresses)")
            if finished[1] > _MAX_BACKTRACE_DEPTH:
                raise stream.fail(f"backtrace {value.value} has {finished[1]:,} frames")
            frames += finished[1]
            if frames > _MAX_EXPANDED_FRAMES:
                raise stream.fail(f"the backtraces have over {_MAX_EXPANDED_FRAMES:,} frames")
            backtraces.setdefault(value.value, finished[2 : 2 + finished[1]])
            finished = None
    if count is None or fields is not None or finished is not None or count != len(backtraces):
        raise stream.fail(f"the map announces {count} backtraces and holds {len(backtraces)}")
    return backtraces


def read_sampler_records(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(timestamp, thread id, backtrace id) per record of an Instruments 7 sampler file."""
    if len(data) < 20:
        raise FormatError(TITLE, where, f"{len(data)} bytes; too short for a sampler header")
    magic, version, _, offset, record_size = struct.unpack_from("<5I", data)
    if magic != _SAMPLER_MAGIC:
        raise FormatError(TITLE, where, f"not a sampler file (starts {data[:4].hex()})")
    if version != 3:
        raise FormatError(TITLE, where, f"sampler file version {version}; only 3 is read")
    if record_size < _SAMPLER_RECORD_SIZE:
        raise FormatError(
            TITLE, where, f"{record_size} bytes per record; a sample needs {_SAMPLER_RECORD_SIZE}"
        )
    if offset > len(data):
        raise FormatError(TITLE, where, f"records start at {offset:,} in a {len(data):,}-byte file")
    count = (len(data) - offset) // record_size
    records = np.frombuffer(data, np.uint8, count * record_size, offset).reshape(count, record_size)
    timestamps = records[:, 0:8].copy().view("<u8").ravel()
    ends = np.flatnonzero(timestamps == 0)
    count = int(ends[0]) if len(ends) else count
    if count and int(timestamps[:count].max()) >= _MAX_TIMESTAMP:
        raise FormatError(TITLE, where, "a sample's timestamp is out of range")
    threads = records[:count, 8:16].copy().view("<u8").ravel()
    backtraces = records[:count, 24:28].copy().view("<u4").ravel()
    return timestamps[:count].astype(np.int64), threads, backtraces


class SamplerBacktraces:
    """Backtrace ids of an Instruments 7 run to frame lists, through the run's id map."""

    def __init__(
        self,
        addresses: dict[int, list[int]],
        symbols: dict[int, tuple[str, str | None]],
        where: str,
    ) -> None:
        self.addresses = addresses
        self.symbols = symbols
        self.where = where

    def frames(self, backtrace: int) -> list[tuple[str, str | None]]:
        """The frames of `backtrace`, outermost first."""
        addresses = self.addresses.get(backtrace)
        if addresses is None:
            raise FormatError(TITLE, self.where, f"backtrace {backtrace} is not in the id map")
        return [
            # the template's property list keeps addresses as signed 64-bit integers
            self.symbols.get(a - (1 << 64) if a >= 1 << 63 else a) or (f"0x{a:016x}", None)
            for a in reversed(addresses)
        ]


def read_sampler_trace(bundle: TraceBundle, template: Template, name: str) -> ProfileGroup:
    """The profiles of an Instruments 7 Time Profiler bundle: one per thread of each run."""
    samplers: dict[int, list[tuple[str, str]]] = {}
    for path in bundle.members:
        match = _SAMPLER_DATA.match(path)
        if match:
            samplers.setdefault(int(match.group(1)), []).append((path, match.group(2)))
    profiles: list[Profile] = []
    active = 0
    for number, symbols in template.runs:
        if not samplers.get(number):
            raise FormatError(
                TITLE, f"{bundle.bundle}/Trace{number}.run", "no <instrument>-sampler.data file"
            )
        if number == template.selected_run:
            active = len(profiles)
        for path, instrument in sorted(samplers[number]):
            run_path = f"instrument_data/{instrument}/run_data/{number}.run.zip"
            where = f"{bundle.bundle}/{run_path}/{number}.run"
            id_map = sampler_id_map(bundle.read_zipped(run_path, f"{number}.run"), where)
            addresses = read_raw_backtraces(id_map, f"{where}, id_map_nsdata")
            backtraces = SamplerBacktraces(addresses, symbols, f"{where}, id_map_nsdata")
            where = f"{bundle.bundle}/{path}"
            samples = read_sampler_records(bundle.read(path), where)
            profiles.extend(_thread_profiles(name, samples, backtraces, where))
    return ProfileGroup(name, profiles, active)


def read_trace(bundle: TraceBundle, template: Template, name: str) -> ProfileGroup:
    """The profiles of a Time Profiler bundle: one per thread of each run."""
    if template.instrument == OLD_TIME_PROFILER:
        return read_sampler_trace(bundle, template, name)
    profiles: list[Profile] = []
    active = 0
    for number, symbols in template.runs:
        core = f"corespace/run{number}/core"
        store = time_profile_store(bundle, number)
        if store is None:
            raise FormatError(
                TITLE, f"{bundle.bundle}/{core}/stores", "no store with a 'time-profile' schema"
            )
        where = f"{bundle.bundle}/{store}/bulkstore"
        samples = read_samples(bundle.read(f"{store}/bulkstore"), where)
        if not len(samples[0]):
            raise FormatError(TITLE, where, "no samples")
        uniquer = f"{core}/uniquing/arrayUniquer/integeruniquer"
        data = bundle.read(f"{uniquer}.data")
        arrays = read_arrays(
            bundle.read(f"{uniquer}.index"), data, f"{bundle.bundle}/{uniquer}.index"
        )
        backtraces = Backtraces(symbols, arrays, data, f"{bundle.bundle}/{uniquer}.data")
        if number == template.selected_run:
            active = len(profiles)
        profiles.extend(_thread_profiles(name, samples, backtraces, where))
    return ProfileGroup(name, profiles, active)


def _thread_profiles(
    name: str,
    samples: tuple[np.ndarray, np.ndarray, np.ndarray],
    backtraces: Backtraces | SamplerBacktraces,
    where: str,
) -> list[Profile]:
    """One profile per thread of (timestamp, thread, backtrace id) samples, busiest first."""
    timestamps, threads, backtrace_ids = samples
    if not len(timestamps):
        raise FormatError(TITLE, where, "no samples")
    profiles = []
    for thread, _ in Counter(threads.tolist()).most_common():  # ties keep first-seen order
        mine = threads == thread
        profiles.append(
            _thread_profile(
                f"{name} - thread {thread}",
                timestamps[mine],
                backtrace_ids[mine],
                backtraces,
                where,
            )
        )
    return profiles


def _thread_profile(
    name: str,
    timestamps: np.ndarray,
    backtrace_ids: np.ndarray,
    backtraces: Backtraces | SamplerBacktraces,
    where: str,
) -> Profile:
    if np.any(np.diff(timestamps) < 0):
        raise FormatError(TITLE, where, f"{name}: sample timestamps go backwards")
    builder = ProfileBuilder(name, Unit.NANOSECONDS)
    stack_of_backtrace: dict[int, int] = {}
    stacks = np.empty(len(backtrace_ids), np.int32)
    for i, backtrace in enumerate(backtrace_ids.tolist()):
        stack = stack_of_backtrace.get(backtrace)
        if stack is None:
            frames = [builder.frame(n, f) for n, f in backtraces.frames(backtrace)]
            stack = stack_of_backtrace[backtrace] = builder.stack_of(frames)
        stacks[i] = stack
    times = timestamps.astype(np.float64)
    starts = np.concatenate(([times[0]], times[:-1]))
    builder.add_sample(-1, times[0], 0.0)  # before the first sample nothing is known
    builder.add_samples(stacks, times - starts, starts)
    return builder.build()

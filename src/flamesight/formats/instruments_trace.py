"""Instruments ``.trace`` bundles (zipped): the time profiles they hold, read as speedscope reads them.

A bundle is a folder; flamesight takes it as a zip of that folder. What a Time
Profiler run keeps (Instruments 8 to 10):

- ``form.template``: an NSKeyedArchiver binary property list. Its top object
  names the instrument (``$1``, or the first key of ``stubInfoByUUID``; only
  ``com.apple.xray.instrument-type.coresampler2`` is a time profile), the run
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

Not read yet: Instruments 7 bundles (``...instrument-type.coresampler``, no
``stores/`` folder; the samples are in ``Trace1.run/<UUID>-sampler.data``,
which starts ``0a0a3412 03000000 28000000 00100000 1c000000 00000700
00400000``). speedscope does not read them either; they are refused with a
message.

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

import plistlib
import re
import struct
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from flamesight.formats.errors import FormatError
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit, current_limits

TITLE = "Instruments"
TIME_PROFILER = "com.apple.xray.instrument-type.coresampler2"
OLD_TIME_PROFILER = "com.apple.xray.instrument-type.coresampler"  # Instruments 7: not read

MAX_MEMBERS = 100_000
_MAX_BACKTRACE_DEPTH = 100_000
_MAX_EXPANDED_FRAMES = 50_000_000  # frames over all distinct backtraces of a run
_TIME_PROFILE_SCHEMA = re.compile(rb'name="time-profile"')
_STORE = re.compile(r"^corespace/run(\d+)/core/stores/([^/]+)/schema\.xml$")


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
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            EOFError,
            OSError,
            ValueError,
            NotImplementedError,  # a compression method zipfile lacks
            RuntimeError,  # an encrypted member
        ) as error:
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


def read_trace(bundle: TraceBundle, template: Template, name: str) -> ProfileGroup:
    """The profiles of a Time Profiler bundle: one per thread of each run."""
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
        timestamps, threads, backtrace_ids = read_samples(bundle.read(f"{store}/bulkstore"), where)
        if not len(timestamps):
            raise FormatError(TITLE, where, "no samples")
        uniquer = f"{core}/uniquing/arrayUniquer/integeruniquer"
        data = bundle.read(f"{uniquer}.data")
        arrays = read_arrays(
            bundle.read(f"{uniquer}.index"), data, f"{bundle.bundle}/{uniquer}.index"
        )
        backtraces = Backtraces(symbols, arrays, data, f"{bundle.bundle}/{uniquer}.data")
        if number == template.selected_run:
            active = len(profiles)
        order = Counter(threads.tolist()).most_common()  # ties keep first-seen order
        for thread, _ in order:
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
    return ProfileGroup(name, profiles, active)


def _thread_profile(
    name: str,
    timestamps: np.ndarray,
    backtrace_ids: np.ndarray,
    backtraces: Backtraces,
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

"""Instruments ``.trace`` bundles (zipped Time Profiler runs of Instruments 7.3.1 to 10.0).

Each bundle of the conformance corpus loads, and its samples are checked
against an independent reading of the bulkstore (or, for 7.3.1, the sampler
file) done here with `struct`, one record at a time: per thread, the number of
samples (plus the empty-stack sample before the first) and the total weight
(the thread's last timestamp, since each sample weighs the time since the one
before it). The 7.3.1 bundle is also checked against Instruments' own deep
copy of the same recording, and cut or overwritten copies of its files fail
with a `FormatError`.
"""

from __future__ import annotations

import io
import itertools
import struct
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import pytest

from flamesight.formats import FormatError, instruments, instruments_trace, load
from flamesight.model import ProfileGroup, Unit, limits_in_force

BUNDLES = {
    # version: (run number, function names the run must show)
    "8.3.3": (1, {"start", "main", "alpha()", "beta()", "gamma()", "delta()", "leakMemory()"}),
    "9.3.1": (1, {"start", "main", "alpha()", "beta()", "gamma()", "delta()", "leakMemory()"}),
    # An iOS app: UIKit's run loop, the app's own main left as an address.
    "10.0": (2, {"start", "UIApplicationMain", "CFRunLoopRunSpecific", "__CFRunLoopRun"}),
}


def _bundle_path(conformance_dir: Path, version: str) -> Path:
    return conformance_dir / "profiles" / "Instruments" / version / "simple-time-profile.trace.zip"


def _bulkstore_records(path: Path, run: int) -> list[tuple[int, int]]:
    """(timestamp, thread) of each record of the run's time-profile store, read by hand."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist() if "/stores/" in name}

    def plain(data: bytes) -> bytes:
        return zlib.decompress(data) if data[:2] == b"\x78\x9c" else data

    prefix = f"simple-time-profile.trace/corespace/run{run}/core/stores/"
    (schema,) = [
        name
        for name, data in members.items()
        if name.startswith(prefix)
        and name.endswith("/schema.xml")
        and b'name="time-profile"' in plain(data)
    ]
    data = plain(members[schema.replace("schema.xml", "bulkstore")])
    header_size = int.from_bytes(data[12:16], "little")
    record_size = int.from_bytes(data[16:20], "little")
    records = []
    for offset in range(header_size, len(data) - record_size + 1, record_size):
        timestamp = int.from_bytes(data[offset : offset + 6], "little")
        if timestamp == 0:
            break
        (thread,) = struct.unpack("<I", data[offset + 6 : offset + 10])
        records.append((timestamp, thread))
    return records


@pytest.mark.parametrize("version", sorted(BUNDLES))
def test_time_profile_bundle_matches_its_bulkstore(conformance_dir: Path, version: str) -> None:
    path = _bundle_path(conformance_dir, version)
    run, names = BUNDLES[version]
    group = load(path)
    assert group.format == "instruments"
    assert group.name == "simple-time-profile.trace"
    records = _bulkstore_records(path, run)
    assert len(records) > 50
    per_thread = Counter(thread for _, thread in records)
    threads = [thread for thread, _ in per_thread.most_common()]
    assert [p.name for p in group.profiles] == [
        f"simple-time-profile.trace - thread {t}" for t in threads
    ]
    for profile, thread in zip(group.profiles, threads, strict=True):
        assert profile.unit is Unit.NANOSECONDS
        assert len(profile.samples) == per_thread[thread] + 1
        last = max(timestamp for timestamp, t in records if t == thread)
        assert profile.total_weight == pytest.approx(last, rel=0, abs=0.5)
    main_thread = group.profiles[0]
    shown = {main_thread.frames[i].name for i in range(len(main_thread.frames))}
    assert names <= shown, sorted(names - shown)


def test_time_profile_weights_of_instruments_9(conformance_dir: Path) -> None:
    """The C++ program's functions carry most of the time, with their source file."""
    profile = load(_bundle_path(conformance_dir, "9.3.1")).active
    self_weight, total_weight = profile.frame_weights()
    table = {
        profile.frames[i].name: (
            profile.frames[i].file,
            float(self_weight[i]),
            float(total_weight[i]),
        )
        for i in range(len(profile.frames))
    }
    file, _, main_total = table["main"]
    assert file is not None and file.endswith("simple.cpp")
    assert main_total > 0.9 * profile.total_weight
    for name in ("alpha()", "beta()", "gamma()", "delta()"):
        assert table[name][0] == file
        assert 0 < table[name][1] <= table[name][2] <= main_total


def test_bundle_over_the_size_cap_fails_naming_the_member(conformance_dir: Path) -> None:
    """The cap counts what the members unpack to, not only the zip's own size."""
    data = _bundle_path(conformance_dir, "9.3.1").read_bytes()
    cap = len(data) + 1000
    with (
        limits_in_force(max_decompressed_bytes=cap),
        pytest.raises(
            FormatError, match=rf"\.trace/.+: the bundle unpacks to more than {cap:,} bytes"
        ),
    ):
        instruments.parse(data, "simple-time-profile.trace.zip")


def test_bundle_with_too_many_members_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instruments_trace, "MAX_MEMBERS", 3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(4):
            archive.writestr(f"run.trace/member-{i}", b"")
    with pytest.raises(FormatError, match=r"^Instruments, zip: 4 members; more than 3"):
        load(buffer.getvalue(), "run.trace.zip")


def test_backtrace_that_contains_itself_fails() -> None:
    """An array of the integer uniquer that lists its own index is an error, not a hang."""
    data = struct.pack("<IQ", 1, 0)  # array 0 = [0]
    backtraces = instruments_trace.Backtraces({}, [(4, 1)], data, "x.data")
    with pytest.raises(FormatError, match=r"backtrace 0 refers to itself"):
        backtraces.frames(0)


def test_backtrace_splices_arrays_and_shows_unknown_addresses() -> None:
    # array 0 = [0x1000, 1], array 1 = [0x2000, 0xdead0000beef]
    data = struct.pack("<IQQ", 2, 0x1000, 1) + struct.pack("<IQQ", 2, 0x2000, 0xDEAD0000BEEF)
    symbols = {0x1000: ("leaf", "a.c"), 0x2000: ("main", None)}
    backtraces = instruments_trace.Backtraces(symbols, [(4, 2), (24, 2)], data, "x.data")
    assert backtraces.frames(0) == [
        ("0x0000dead0000beef", None),
        ("main", None),
        ("leaf", "a.c"),
    ]


# Instruments 7: Trace<N>.run/<instrument>-sampler.data and the XRSamplerRun typedstream

SAMPLER_7 = "simple-time-profile.trace/Trace1.run/4C48231D-3012-454B-8C3F-014FEF176501-sampler.data"
RUN_7 = "simple-time-profile.trace/instrument_data/4C48231D-3012-454B-8C3F-014FEF176501/run_data/1.run.zip"


def _read_bundle(data: bytes) -> ProfileGroup:
    """The profiles of a zipped bundle, read by `instruments_trace` as the importer does."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        bundle = instruments_trace.TraceBundle(archive, "simple-time-profile.trace")
        template = instruments_trace.read_template(bundle.read("form.template"), "form.template")
        return instruments_trace.read_trace(bundle, template, "simple-time-profile.trace")


def _bundle_7(conformance_dir: Path) -> bytes:
    return _bundle_path(conformance_dir, "7.3.1").read_bytes()


def _slim_bundle_7(conformance_dir: Path) -> bytes:
    """The 7.3.1 bundle without its (empty) corespace uniquers, quick to zip again."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(_bundle_7(conformance_dir))) as source,
        zipfile.ZipFile(buffer, "w") as target,
    ):
        for info in source.infolist():
            if "/corespace/" not in info.filename:
                target.writestr(info, source.read(info))
    return buffer.getvalue()


def _replaced(data: bytes, member: str, content: bytes) -> bytes:
    """The zip `data` with `member` holding `content`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            target.writestr(info, content if info.filename == member else source.read(info))
    return buffer.getvalue()


def _run_archive(data: bytes) -> tuple[str, bytes]:
    """The name and bytes of the XRSamplerRun typedstream zipped inside the bundle."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        inner = archive.read(RUN_7)
    with zipfile.ZipFile(io.BytesIO(inner)) as archive:
        (name,) = archive.namelist()
        return name, archive.read(name)


def _with_run_archive(data: bytes, run: bytes) -> bytes:
    name, _ = _run_archive(data)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, run)
    return _replaced(data, RUN_7, buffer.getvalue())


def _sampler_records(data: bytes) -> list[tuple[int, int, int]]:
    """(timestamp, thread, backtrace id) of each sampler record, read by hand."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sampler = archive.read(SAMPLER_7)
    offset, size = struct.unpack_from("<II", sampler, 12)
    records = []
    for start in range(offset, len(sampler) - size + 1, size):
        timestamp, thread, _cpu, _state, backtrace = struct.unpack_from("<QQIII", sampler, start)
        if timestamp == 0:
            break
        records.append((timestamp, thread, backtrace))
    return records


def test_instruments_7_bundle_matches_its_sampler_file(conformance_dir: Path) -> None:
    data = _bundle_7(conformance_dir)
    group = _read_bundle(data)
    records = _sampler_records(data)
    assert len(records) == 4275
    (thread,) = {thread for _, thread, _ in records}
    assert [p.name for p in group.profiles] == [f"simple-time-profile.trace - thread {thread}"]
    profile = group.active
    assert profile.unit is Unit.NANOSECONDS
    assert len(profile.samples) == len(records) + 1
    assert profile.total_weight == pytest.approx(records[-1][0], rel=0, abs=0.5)
    main = next(i for i in range(len(profile.frames)) if profile.frames[i].name == "main")
    assert profile.frames[main].file.endswith("/simple.cpp")


def _deep_copy_rows(conformance_dir: Path) -> dict[str, tuple[float, float]]:
    """Function name -> (self, total) in ms, from Instruments' deep copy of the recording."""
    path = (
        conformance_dir / "profiles" / "Instruments" / "7.3.1" / "simple-time-profile-deep-copy.txt"
    )
    profile = load(path).active
    self_weight, total_weight = profile.frame_weights()
    return {
        profile.frames[i].name: (float(self_weight[i]), float(total_weight[i]))
        for i in range(len(profile.frames))
    }


def _per_function(profile) -> tuple[Counter, Counter, dict[str, float]]:
    """Samples with the function as leaf, samples with it anywhere, and its total weight."""
    leaf: Counter = Counter()
    anywhere: Counter = Counter()
    weight: Counter = Counter()
    for stack, sample_weight in zip(
        profile.samples.stack.tolist(), profile.samples.weight.tolist(), strict=True
    ):
        names = [profile.frames[f].name for f in profile.stacks.frames_of(stack)]
        if names:
            leaf[names[-1]] += 1
        for name in set(names):
            anywhere[name] += 1
            weight[name] += sample_weight
    return leaf, anywhere, weight


def test_instruments_7_bundle_agrees_with_its_deep_copy(conformance_dir: Path) -> None:
    """Instruments' call tree of the same recording counts each sample as 1 ms.

    So every function's self and total time in the deep copy is the number of
    samples of the bundle that end in it or pass through it. flamesight weighs
    a sample by the time since the previous one, so a function's weight lies
    between its sample count times the shortest and the longest gap between
    two samples of the sampler file.
    """
    data = _bundle_7(conformance_dir)
    leaf, anywhere, weight = _per_function(_read_bundle(data).active)
    rows = _deep_copy_rows(conformance_dir)
    assert rows["start"] == (0, 4273) and rows["delta()"] == (693, 2126)
    for name, (self_ms, total_ms) in rows.items():
        assert (leaf[name], anywhere[name]) == (self_ms, total_ms), name
    timestamps = [timestamp for timestamp, _, _ in _sampler_records(data)]
    gaps = [b - a for a, b in itertools.pairwise(timestamps)]
    for name, (_, total_ms) in rows.items():
        assert total_ms * min(gaps) <= weight[name] <= total_ms * max(gaps), name
    # Outside the deep copy's tree: two samples in dyld before main.
    assert anywhere["_dyld_start"] == len(timestamps) - rows["start"][1] == 2


def _typedstream(*parts: bytes) -> bytes:
    return b"\x04\x0bstreamtyped\x81\xe8\x03" + b"".join(parts)


def test_typedstream_values_objects_and_references() -> None:
    stream = _typedstream(
        b"\x84\x01I\x81\x2e\x03",  # "I" 814
        b"\x84\x01@\x84\x84\x84\x03Raw\x02\x84\x84\x08NSObject\x00\x85",  # new Raw object
        b"\x84\x0c[2Q][0i][0c]\x87" + struct.pack("<q", 0x1000) + b"\x87" + struct.pack("<q", 1),
        b"\x84\x01*\x84\x84\x01d",  # a C string
        b"\x86",
        b"\x93\x84\x93\x97\x95\x86",  # "@": a second Raw object holding the same C string
    )
    values = [
        (v.code, v.depth, v.owner, v.value)
        for v in instruments_trace.TypedStream(stream, "x").values()
    ]
    assert values == [
        ("I", 0, None, 814),
        ("@", 0, None, "Raw"),
        ("Q", 1, "Raw", 0x1000),
        ("Q", 1, "Raw", 1),
        ("*", 1, "Raw", "d"),
        ("}", 0, "Raw", None),
        ("@", 0, None, "Raw"),
        ("*", 1, "Raw", "d"),
        ("}", 0, "Raw", None),
    ]


@pytest.mark.parametrize(
    ("stream", "problem"),
    [
        (b"\x04\x0btypedstream", "not a little-endian typedstream"),
        (_typedstream(b"\x84\x01I\x82\x01"), r"byte 20: 4 bytes wanted; the archive ends at 21"),
        (_typedstream(b"\x93"), "reference to string 1 of 0"),
        (_typedstream(b"\x84\x01@\x84\x99"), "reference to object 7 of 1"),
        (_typedstream(b"\x84\x08[99999Q]"), "has more values than the archive can hold"),
        (_typedstream(b"\x84\x01^\x00"), "type '\\^' is not read"),
        (_typedstream(b"\x84\x0b[1234567890i]"), "array type without a length"),
        (_typedstream(b"\x84\x01@" + b"\x84\x84\x84\x01A\x00\x85\x92" * 1001), "nested over"),
    ],
)
def test_bad_typedstream_fails_naming_the_byte(stream: bytes, problem: str) -> None:
    with pytest.raises(FormatError, match=rf"^Instruments, x\b.*{problem}"):
        list(instruments_trace.TypedStream(stream, "x").values())


def test_instruments_7_truncated_run_archive_fails_with_the_offset(conformance_dir: Path) -> None:
    """Cut anywhere, the XRSamplerRun archive gives a FormatError naming the file and byte."""
    data = _slim_bundle_7(conformance_dir)
    _, run = _run_archive(data)
    for size in range(0, len(run), len(run) // 40):
        with pytest.raises(FormatError, match=r"^Instruments, simple-time-profile\.trace/instr"):
            _read_bundle(_with_run_archive(data, run[:size]))


def test_instruments_7_corrupted_run_archive_fails_or_loads(conformance_dir: Path) -> None:
    """Bytes overwritten anywhere in the archive: a FormatError, or a profile, nothing else."""
    data = _slim_bundle_7(conformance_dir)
    _, run = _run_archive(data)
    for position in range(17, len(run), len(run) // 20):
        for byte in (0x00, 0x84):
            changed = run[:position] + bytes([byte]) + run[position + 1 :]
            try:
                group = _read_bundle(_with_run_archive(data, changed))
            except FormatError as error:
                assert "simple-time-profile.trace/" in str(error)
            else:
                assert group.profiles


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda sampler: sampler[:10], "sampler-data: 10 bytes; too short for a sampler header"),
        (lambda sampler: b"\0" + sampler[1:], "not a sampler file"),
        (lambda sampler: sampler[:4] + b"\x04" + sampler[5:], "sampler file version 4"),
        (lambda sampler: sampler[:16] + b"\x08" + sampler[17:], "8 bytes per record"),
        (lambda sampler: sampler[:4096] + b"\0" * 8, "no samples"),
        (lambda sampler: sampler[:4120] + b"\xff\xff" + sampler[4122:], "backtrace 65535 is not"),
        (lambda sampler: sampler[:4124] + b"\x01" + b"\0" * 7 + sampler[4132:], "go backwards"),
    ],
)
def test_instruments_7_bad_sampler_file_fails(conformance_dir: Path, change, problem) -> None:
    data = _slim_bundle_7(conformance_dir)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sampler = archive.read(SAMPLER_7)
    with pytest.raises(FormatError, match=problem.replace("-", ".")):
        _read_bundle(_replaced(data, SAMPLER_7, change(sampler)))


def test_instruments_7_bundle_without_its_run_archive_names_it(conformance_dir: Path) -> None:
    data = _slim_bundle_7(conformance_dir)
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            if info.filename != RUN_7:
                target.writestr(info, source.read(info))
    with pytest.raises(FormatError, match=r"run_data/1\.run\.zip: missing from the bundle"):
        _read_bundle(buffer.getvalue())
    with pytest.raises(FormatError, match=r"1\.run\.zip: the zip holds no file named '1\.run'"):
        _read_bundle(_replaced(data, RUN_7, _zip_of({"2.run": b""})))
    with pytest.raises(FormatError, match=r"1\.run\.zip: cannot be unzipped"):
        _read_bundle(_replaced(data, RUN_7, b"PK\x03\x04 not a zip"))


def _zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()

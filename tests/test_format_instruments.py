"""Instruments ``.trace`` bundles (zipped Time Profiler runs of Instruments 8.3.3, 9.3.1, 10.0).

Each bundle of the conformance corpus loads, and its samples are checked
against an independent reading of the bulkstore done here with `struct`, one
record at a time: per thread, the number of samples (plus the empty-stack
sample before the first) and the total weight (the thread's last timestamp,
since each sample weighs the time since the one before it).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import pytest

from flamesight.formats import FormatError, instruments, instruments_trace, load
from flamesight.model import Unit, limits_in_force

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

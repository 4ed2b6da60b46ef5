"""pprof and ``perf script`` importers: exact numbers on small files built here."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from flamesight.analysis import top_functions
from flamesight.formats import FormatError, load, perf_script, pprof, pprof_pb2
from flamesight.model import Unit


def go_like_profile() -> pprof_pb2.Profile:
    """A CPU profile shaped as Go writes it: samples/count and cpu/nanoseconds."""
    profile = pprof_pb2.Profile()
    profile.string_table.extend(
        ["", "samples", "count", "cpu", "nanoseconds", "main.main", "main.work", "m.go", "inl"]
    )
    profile.sample_type.add(type=1, unit=2)
    profile.sample_type.add(type=3, unit=4)
    profile.function.add(id=1, name=5, filename=7, start_line=3)
    profile.function.add(id=2, name=6, filename=7, start_line=9)
    profile.function.add(id=3, name=8, filename=7, start_line=20)
    profile.mapping.add(id=1, filename=7)
    profile.location.add(id=1, address=0x1000).line.add(function_id=1, line=4)
    # location 2: `inl` inlined into main.work (the last line is the caller)
    location = profile.location.add(id=2, address=0x2000)
    location.line.add(function_id=3, line=21)
    location.line.add(function_id=2, line=11)
    profile.location.add(id=3, address=0xBEEF, mapping_id=1)  # no symbols
    profile.sample.add(location_id=[2, 1], value=[3, 30_000_000])
    profile.sample.add(location_id=[1], value=[1, 10_000_000])
    profile.sample.add(location_id=[3, 1], value=[2, 20_000_000])
    profile.sample.add(location_id=[1], value=[0, 0])
    profile.period = 10_000_000
    return profile


def test_pprof_one_profile_per_sample_type_cpu_first() -> None:
    data = gzip.compress(go_like_profile().SerializeToString())
    group = load(data, "cpu.pb.gz")
    assert group.format == "pprof"
    assert [p.name for p in group.profiles] == ["cpu.pb.gz", "cpu.pb.gz (samples, count)"]
    cpu, counts = group.profiles
    assert (cpu.unit, counts.unit) == (Unit.NANOSECONDS, Unit.NONE)
    assert cpu.total_weight == 60_000_000
    assert counts.total_weight == 6
    assert len(cpu.samples) == 3  # the zero-valued sample adds nothing
    top = {f.name: (f.self, f.total) for f in top_functions(cpu, n=None).functions}
    assert top == {
        "main.main": (10_000_000, 60_000_000),
        "main.work": (30_000_000, 30_000_000),
        "0xbeef": (20_000_000, 20_000_000),
    }
    frames = {cpu.frames[i].name: cpu.frames[i] for i in range(len(cpu.frames))}
    assert frames["main.work"].file == "m.go" and frames["main.work"].line == 9
    assert frames["0xbeef"].file == "m.go"
    # samples lie end to end in file order
    assert cpu.samples.time.tolist() == [0, 30_000_000, 40_000_000]


def test_pprof_default_sample_type_wins() -> None:
    profile = go_like_profile()
    profile.default_sample_type = 1  # "samples"
    group = load(profile.SerializeToString(), "p")
    assert group.profiles[0].metadata["sample_type"] == "samples"
    assert group.profiles[0].unit == Unit.NONE


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda p: p.sample.add(location_id=[1], value=[-1, 5]),
            r"sample\[4\]\.value\[0\].*negative",
        ),
        (lambda p: p.sample.add(location_id=[99], value=[1, 5]), "location id 99"),
        (lambda p: p.sample.add(location_id=[1], value=[1]), r"1 values for 2 sample types"),
        (lambda p: p.function.add(id=7, name=500), r"function\[3\]\.name.*string index 500"),
    ],
)
def test_pprof_bad_input_names_the_place(change, message: str) -> None:
    profile = go_like_profile()
    change(profile)
    with pytest.raises(FormatError, match=message):
        load(profile.SerializeToString(), "p")


def test_pprof_sniff_rejects_text() -> None:
    assert pprof.sniff(go_like_profile().SerializeToString())
    assert not pprof.sniff(b"\nmain;work 3\nmain 1\n")
    assert not pprof.sniff(b"")


def deep_profile() -> bytes:
    """A profile whose samples are 128 bytes and longer too (lengths of two bytes),
    with a sample among the other fields and unknown fields of every plain wire type."""
    profile = go_like_profile()
    for depth in (1, 40, 70, 200):
        profile.sample.add(location_id=[1, 2, 1] * depth, value=[depth, depth * 1000])
    more = pprof_pb2.Profile()
    more.sample.add(location_id=[3, 2, 1], value=[5, 5000])
    unknown = (
        b"\xa0\x01\x96\x01"  # field 20, varint 150
        b"\xa9\x01"
        + bytes(8)  # field 21, fixed64
        + b"\xb5\x01"
        + bytes(4)  # field 22, fixed32
        + b"\xba\x01\x03abc"  # field 23, bytes
    )
    data = profile.SerializeToString()
    middle = len(data) // 2
    while pprof._split_samples(data[:middle]) is None:  # a field boundary
        middle += 1
    return data[:middle] + unknown + more.SerializeToString() + data[middle:]


def test_pprof_field_walk_reads_as_protobuf() -> None:
    """The samples found by walking the top-level fields, and the message made of
    the rest, read as protobuf reads the whole message."""
    data = deep_profile()
    header, sample_of_encoding, distinct = pprof._split_samples(data)
    whole = pprof_pb2.ProfileWithEncodedSamples.FromString(data)
    assert [distinct[i] for i in sample_of_encoding] == list(whole.sample)
    rest = pprof_pb2.ProfileWithEncodedSamples.FromString(header)
    whole.ClearField("sample")
    assert rest == whole
    assert max(len(sample) for sample in distinct) > 300
    # An (unknown) group is not walked: protobuf reads the file, to the same result.
    grouped = data + b"\xc3\x01\xc4\x01"  # field 24: start group, end group
    assert pprof._split_samples(grouped) is None
    walked, read_whole = pprof.parse(data, "p"), pprof.parse(grouped, "p")
    for a, b in zip(walked.profiles, read_whole.profiles, strict=True):
        assert [a.frames[i] for i in range(len(a.frames))] == [
            b.frames[i] for i in range(len(b.frames))
        ]
        for column in ("stack", "time", "weight"):
            assert np.array_equal(getattr(a.samples, column), getattr(b.samples, column))


@pytest.mark.parametrize("cut", [1, 2, 7, 40])
def test_pprof_cut_short_is_refused(cut: int) -> None:
    data = deep_profile()
    with pytest.raises(FormatError, match="not a valid pprof protobuf"):
        pprof.parse(data[:-cut], "p")


PERF = """\
# ========
# captured on: today
# ========
#
app  100/101 10.000000:    1000 cpu-clock:
\t    643 work+0x1f (/usr/bin/app)
\t    6f3 main (/usr/bin/app)

app  100/101 10.002000:    1000 cpu-clock:
\t    6f3 main (/usr/bin/app)

app  100/102 10.001000:    1000 cpu-clock:
\t    abc [unknown] ([unknown])

app  100/101 10.003000:    1 page-faults:
\t    6f3 main (/usr/bin/app)

app  100/101 10.006000:    1000 cpu-clock:
\t    643 work (/usr/bin/app)
\t    6f3 main (/usr/bin/app)
"""


def test_perf_threads_midpoint_weights_and_first_event_type() -> None:
    group = load(PERF.encode(), "perf.txt")
    assert group.format == "perf_script"
    assert group.name == "perf.txt"
    assert [p.name for p in group.profiles] == ["app pid: 100 tid: 101", "app pid: 100 tid: 102"]
    main, other = group.profiles
    # samples at 10.000, 10.002, 10.006 (the page fault is another event type)
    assert main.unit == Unit.SECONDS
    np.testing.assert_allclose(main.samples.weight, [0.001, 0.003, 0.002], rtol=1e-9)
    np.testing.assert_allclose(main.samples.time, [0.0, 0.001, 0.004], atol=1e-12)
    top = {f.name: (f.self, f.total) for f in top_functions(main, n=None).functions}
    assert top["work"] == pytest.approx((0.003, 0.003))
    assert top["main"] == pytest.approx((0.003, 0.006))
    # a single sample has no duration: weight 1 in plain counts
    assert other.unit == Unit.NONE
    assert other.total_weight == 1
    assert other.frames[0].name == "??? ([unknown])"
    assert other.samples.time.tolist() == pytest.approx([0.001], abs=1e-12)


def test_perf_bad_header_names_the_line() -> None:
    with pytest.raises(FormatError, match=r"perf script, line 1: expected an event header"):
        perf_script.parse(b"not perf at all\n\tmore\n", "x")

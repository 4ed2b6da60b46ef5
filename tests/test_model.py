"""flamesight.model: properties over generated profiles checked against naive references.

The generated profiles are random stack trees with recursion (few distinct
frames, long paths), random weights, idle samples (stack -1), samples laid
end to end or at explicit (possibly overlapping, unsorted) times, added one by
one or in bulk. Weights and times are multiples of 1/4 so that every sum and
clip is exact in floating point and results can be compared exactly.
"""

from __future__ import annotations

import tracemalloc
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flamesight.model import (
    Frame,
    Profile,
    ProfileBuilder,
    Unit,
    format_value,
    merge_profiles,
    parse_quantity,
)

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FUNCTION_NAMES = ("main", "parse", "walk", "emit")
FILE_NAMES = ("a.py", "b.py", None)


def frame_fields(index: int) -> Frame:
    """Frame `index` of a generated profile; names and files repeat, lines make frames distinct."""
    return Frame(
        FUNCTION_NAMES[index % len(FUNCTION_NAMES)],
        FILE_NAMES[index % len(FILE_NAMES)],
        index,
        None,
    )


@dataclass(frozen=True)
class SampleSpec:
    """One generated sample: an index into the spec's paths (-1 for idle), weight, time."""

    path: int
    weight: float
    time: float | None


@dataclass(frozen=True)
class ProfileSpec:
    """What a generated profile is made of, independent of the model's tables."""

    frame_count: int
    paths: list[tuple[int, ...]]
    samples: list[SampleSpec]
    bulk: bool

    def timed_samples(self) -> list[tuple[tuple[int, ...], float, float]]:
        """(frames root first, time, weight) per sample in time order (stable), as the model stores them."""
        rows = []
        cursor = 0.0
        for sample in self.samples:
            time = cursor if sample.time is None else sample.time
            cursor = time + sample.weight
            frames = () if sample.path < 0 else self.paths[sample.path]
            rows.append((frames, time, sample.weight))
        rows.sort(key=lambda row: row[1])
        return rows


quarters = st.integers(0, 400).map(lambda n: n / 4)


@st.composite
def profile_specs(draw: st.DrawFn, max_samples: int = 40) -> ProfileSpec:
    """A random stack tree with recursion and samples over it."""
    frame_count = draw(st.integers(1, 9))
    frame_ids = st.integers(0, frame_count - 1)
    paths = draw(
        st.lists(st.lists(frame_ids, min_size=1, max_size=14).map(tuple), min_size=1, max_size=12)
    )
    timed = draw(st.booleans())
    times = quarters if timed else st.none()
    samples = draw(
        st.lists(
            st.builds(SampleSpec, st.integers(-1, len(paths) - 1), quarters, times),
            max_size=max_samples,
        )
    )
    return ProfileSpec(frame_count, paths, samples, draw(st.booleans()))


def build(spec: ProfileSpec, unit: Unit = Unit.MILLISECONDS, name: str = "generated") -> Profile:
    """The profile of `spec`, built through `ProfileBuilder` (one by one or in bulk)."""
    builder = ProfileBuilder(name, unit)
    frame_ids = [builder.frame(*frame_fields(i)) for i in range(spec.frame_count)]
    assert frame_ids == list(range(spec.frame_count))
    stack_ids = [builder.stack_of(path) for path in spec.paths]
    stacks = [-1 if s.path < 0 else stack_ids[s.path] for s in spec.samples]
    weights = [s.weight for s in spec.samples]
    timed = any(s.time is not None for s in spec.samples)
    if spec.bulk:
        times = np.array([s.time for s in spec.samples], np.float64) if timed else None
        builder.add_samples(np.array(stacks, np.int64), np.array(weights, np.float64), times)
    else:
        for stack, sample in zip(stacks, spec.samples, strict=True):
            builder.add_sample(stack, sample.weight, sample.time)
    return builder.build()


def naive_frame_weights(
    rows: list[tuple[tuple[int, ...], float, float]], key_of_frame: list[int], groups: int
) -> tuple[list[float], list[float]]:
    """Self and total per group: walk every sample's stack, count a group once per stack for total."""
    self_weight = [0.0] * groups
    total_weight = [0.0] * groups
    for frames, _time, weight in rows:
        if not frames:
            continue
        self_weight[key_of_frame[frames[-1]]] += weight
        for group in {key_of_frame[frame] for frame in frames}:
            total_weight[group] += weight
    return self_weight, total_weight


def naive_slice(
    rows: list[tuple[tuple[int, ...], float, float]], start: float, end: float
) -> list[tuple[tuple[int, ...], float, float]]:
    """The samples overlapping [start, end), each clipped to its overlap."""
    clipped = []
    for frames, time, weight in rows:
        begin = max(time, start)
        overlap = min(time + weight, end) - begin
        if overlap > 0:
            clipped.append((frames, begin, overlap))
    return clipped


def sample_rows(profile: Profile) -> list[tuple[tuple[int, ...], float, float]]:
    """The profile's samples as (frames root first, time, weight), read through the stack table."""
    samples = profile.samples
    return [
        (tuple(profile.stacks.frames_of(int(stack))), float(time), float(weight))
        for stack, time, weight in zip(samples.stack, samples.time, samples.weight, strict=True)
    ]


def assert_same_samples(left: Profile, right: Profile) -> None:
    """Equal sample columns (stacks, times, weights)."""
    np.testing.assert_array_equal(left.samples.stack, right.samples.stack)
    np.testing.assert_array_equal(left.samples.time, right.samples.time)
    np.testing.assert_array_equal(left.samples.weight, right.samples.weight)


# frame weights


@PROPERTY_SETTINGS
@given(profile_specs())
def test_frame_weights_match_a_naive_walk_of_every_stack(spec: ProfileSpec) -> None:
    profile = build(spec)
    self_weight, total_weight = profile.frame_weights()
    expected_self, expected_total = naive_frame_weights(
        spec.timed_samples(), list(range(spec.frame_count)), spec.frame_count
    )
    assert self_weight.tolist() == expected_self
    assert total_weight.tolist() == expected_total


@PROPERTY_SETTINGS
@given(profile_specs())
def test_function_weights_group_frames_by_name_and_file(spec: ProfileSpec) -> None:
    profile = build(spec)
    key_of_frame, keys = profile.frames.function_keys()
    assert keys == list(
        dict.fromkeys((f.name, f.file) for f in map(frame_fields, range(spec.frame_count)))
    )
    self_weight, total_weight = profile.frame_weights(key_of_frame)
    expected_self, expected_total = naive_frame_weights(
        spec.timed_samples(), key_of_frame.tolist(), len(keys)
    )
    assert self_weight.tolist() == expected_self
    assert total_weight.tolist() == expected_total


@PROPERTY_SETTINGS
@given(profile_specs())
def test_self_sums_to_the_weight_outside_idle_and_total_bounds_self(spec: ProfileSpec) -> None:
    profile = build(spec)
    self_weight, total_weight = profile.frame_weights()
    idle = sum(s.weight for s in spec.samples if s.path < 0)
    assert profile.total_weight == sum(s.weight for s in spec.samples)
    assert self_weight.sum() == profile.total_weight - idle
    assert np.all(total_weight >= self_weight)
    assert np.all(total_weight <= profile.total_weight - idle)


@PROPERTY_SETTINGS
@given(profile_specs())
def test_samples_are_sorted_by_time_and_keep_their_stacks(spec: ProfileSpec) -> None:
    profile = build(spec)
    assert len(profile.samples) == len(spec.samples)
    assert np.all(np.diff(profile.samples.time) >= 0)
    assert sample_rows(profile) == spec.timed_samples()


def test_frame_weights_of_a_profile_without_samples_are_zero() -> None:
    builder = ProfileBuilder("empty", Unit.NONE)
    builder.stack_of([builder.frame("a"), builder.frame("b")])
    profile = builder.build()
    self_weight, total_weight = profile.frame_weights()
    assert self_weight.tolist() == [0, 0]
    assert total_weight.tolist() == [0, 0]
    assert (profile.total_weight, profile.start, profile.end) == (0, 0, 0)


def test_recursion_counts_total_once_per_stack() -> None:
    builder = ProfileBuilder("recursive", Unit.NONE)
    a, b = builder.frame("a"), builder.frame("b")
    builder.add_sample(builder.stack_of([a, b, a, b, a]), 3)
    builder.add_sample(builder.stack_of([a, b]), 2)
    self_weight, total_weight = builder.build().frame_weights()
    assert self_weight.tolist() == [3, 2]
    assert total_weight.tolist() == [5, 5]


def test_repeated_frame_weights_do_not_keep_growing_memory() -> None:
    """A long-running process asks for the same profile's weights again and again."""
    builder = ProfileBuilder("memo", Unit.NONE)
    frames = [builder.frame(f"f{i}") for i in range(2000)]
    builder.add_sample(builder.stack_of(frames), 1)
    profile = builder.build()
    profile.frame_weights()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(200):
            profile.frame_weights()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 200 calls over 2,000 frames and stacks: anything kept per call is megabytes.
    assert grown < 1_000_000, f"{grown:,} bytes retained by 200 frame_weights() calls"


# slices


bounds = st.integers(-20, 2000).map(lambda n: n / 4)


@PROPERTY_SETTINGS
@given(profile_specs(), bounds, bounds)
def test_slice_clips_straddling_samples_to_their_overlap(
    spec: ProfileSpec, start: float, end: float
) -> None:
    profile = build(spec)
    sliced = profile.slice(start, end)
    expected = naive_slice(spec.timed_samples(), start, end)
    assert sample_rows(sliced) == expected
    assert sliced.total_weight == sum(weight for _frames, _time, weight in expected)
    assert sliced.frames is profile.frames and sliced.stacks is profile.stacks


@PROPERTY_SETTINGS
@given(profile_specs(), bounds, bounds, bounds, bounds)
def test_slice_of_a_slice_is_the_slice_of_the_intersection(
    spec: ProfileSpec, a: float, b: float, c: float, d: float
) -> None:
    profile = build(spec)
    twice = profile.slice(a, b).slice(c, d)
    once = profile.slice(max(a, c), min(b, d))
    assert_same_samples(twice, once)
    for left, right in zip(twice.frame_weights(), once.frame_weights(), strict=True):
        np.testing.assert_array_equal(left, right)


@PROPERTY_SETTINGS
@given(profile_specs())
def test_slice_over_the_whole_range_keeps_everything_with_weight(spec: ProfileSpec) -> None:
    profile = build(spec)
    whole = profile.slice(None, None)
    assert whole.total_weight == profile.total_weight
    assert len(whole.samples) == int(np.count_nonzero(profile.samples.weight > 0))


def test_slice_keeps_only_the_overlap_of_straddling_samples() -> None:
    builder = ProfileBuilder("straddle", Unit.MILLISECONDS)
    a, b = builder.frame("a"), builder.frame("b")
    builder.add_sample(builder.stack_of([a]), 10)  # [0, 10)
    builder.add_sample(-1, 5)  # [10, 15)
    builder.add_sample(builder.stack_of([a, b]), 10)  # [15, 25)
    profile = builder.build()
    sliced = profile.slice(7, 18)
    assert sliced.samples.time.tolist() == [7, 10, 15]
    assert sliced.samples.weight.tolist() == [3, 5, 3]
    assert sliced.total_weight == 11
    self_weight, total_weight = sliced.frame_weights()
    assert self_weight.tolist() == [3, 3]
    assert total_weight.tolist() == [6, 3]
    assert (sliced.start, sliced.end) == (7, 18)
    assert len(profile.slice(18, 7).samples) == 0
    assert len(profile.slice(30, 40).samples) == 0


def test_slice_finds_a_long_sample_that_started_long_before_the_range() -> None:
    builder = ProfileBuilder("long", Unit.MILLISECONDS)
    frame = builder.stack_of([builder.frame("long")])
    builder.add_sample(frame, 1000, time=0)
    for time in range(1, 500):
        builder.add_sample(frame, 1, time=float(time))
    sliced = builder.build().slice(900, 910)
    assert sliced.samples.time.tolist() == [900]
    assert sliced.samples.weight.tolist() == [10]


# evented input


@st.composite
def event_sequences(draw: st.DrawFn) -> list[tuple[str, int, float]]:
    """Balanced-or-not enter/leave events with non-decreasing times, always leaving the innermost frame."""
    events: list[tuple[str, int, float]] = []
    open_frames: list[int] = []
    time = draw(st.integers(0, 10)) / 4
    for _ in range(draw(st.integers(0, 40))):
        time += draw(st.integers(0, 12)) / 4
        if open_frames and draw(st.booleans()):
            events.append(("leave", open_frames.pop(), time))
        else:
            frame = draw(st.integers(0, 4))
            open_frames.append(frame)
            events.append(("enter", frame, time))
    return events


def expected_evented_samples(
    events: list[tuple[str, int, float]],
) -> list[tuple[tuple[int, ...], float, float]]:
    """One sample per interval between two events with a positive length, of the stack then open."""
    samples = []
    open_frames: list[int] = []
    last_time: float | None = None
    for kind, frame, time in events:
        if last_time is not None and time > last_time:
            samples.append((tuple(open_frames), last_time, time - last_time))
        last_time = time
        if kind == "enter":
            open_frames.append(frame)
        else:
            open_frames.pop()
    return samples


@PROPERTY_SETTINGS
@given(event_sequences())
def test_enter_and_leave_become_one_sample_per_interval(
    events: list[tuple[str, int, float]],
) -> None:
    builder = ProfileBuilder("evented", Unit.MICROSECONDS, sampled=False)
    frames = [builder.frame(f"f{i}") for i in range(5)]
    for kind, frame, time in events:
        if kind == "enter":
            builder.enter(frames[frame], time)
        else:
            builder.leave(frames[frame], time)
    profile = builder.build()
    assert profile.sampled is False
    assert sample_rows(profile) == expected_evented_samples(events)


def test_evented_profile_with_idle_gaps() -> None:
    builder = ProfileBuilder("evented", Unit.MICROSECONDS, sampled=False)
    a, b = builder.frame("a"), builder.frame("b")
    builder.enter(a, 0)
    builder.enter(b, 2)
    builder.leave(b, 5)
    builder.leave(a, 6)
    builder.enter(b, 10)
    builder.leave(b, 11)
    profile = builder.build()
    assert sample_rows(profile) == [
        ((a,), 0, 2),
        ((a, b), 2, 3),
        ((a,), 5, 1),
        ((), 6, 4),
        ((b,), 10, 1),
    ]
    self_weight, total_weight = profile.frame_weights()
    assert self_weight.tolist() == [3, 4]
    assert total_weight.tolist() == [6, 4]
    assert profile.total_weight == 11


def test_leaving_a_frame_that_is_not_innermost_is_refused_and_changes_nothing() -> None:
    builder = ProfileBuilder("evented", Unit.MICROSECONDS, sampled=False)
    a, b = builder.frame("a"), builder.frame("b")
    builder.enter(a, 0)
    builder.enter(b, 1)
    with pytest.raises(ValueError, match="cannot leave 'a': 'b' is open"):
        builder.leave(a, 2)
    assert builder.open_frames == [a, b]
    builder.leave(b, 3)
    builder.leave(a, 4)
    with pytest.raises(ValueError, match="'nothing' is open"):
        builder.leave(a, 5)
    assert sample_rows(builder.build()) == [((a,), 0, 1), ((a, b), 1, 2), ((a,), 3, 1)]


# merging


@PROPERTY_SETTINGS
@given(st.lists(profile_specs(max_samples=15), min_size=1, max_size=4))
def test_merge_keeps_totals_and_every_frame_weight(specs: list[ProfileSpec]) -> None:
    profiles = [build(spec, name=f"p{i}") for i, spec in enumerate(specs)]
    merged = merge_profiles(profiles)
    assert merged.name == " + ".join(p.name for p in profiles)
    assert merged.unit is Unit.MILLISECONDS
    assert len(merged.samples) == sum(len(p.samples) for p in profiles)
    assert merged.total_weight == sum(p.total_weight for p in profiles)
    assert np.all(np.diff(merged.samples.time) >= 0)
    expected_self: dict[Frame, float] = defaultdict(float)
    expected_total: dict[Frame, float] = defaultdict(float)
    for profile in profiles:
        for index, (self_w, total_w) in enumerate(zip(*profile.frame_weights(), strict=True)):
            expected_self[profile.frames[index]] += self_w
            expected_total[profile.frames[index]] += total_w
    self_weight, total_weight = merged.frame_weights()
    assert {merged.frames[i] for i in range(len(merged.frames))} == set(expected_self)
    for index in range(len(merged.frames)):
        frame = merged.frames[index]
        assert self_weight[index] == expected_self[frame]
        assert total_weight[index] == expected_total[frame]


def test_merge_refuses_mixed_units_and_nothing() -> None:
    builder = ProfileBuilder("bytes", Unit.BYTES)
    builder.add_sample(builder.stack_of([builder.frame("alloc")]), 64)
    in_bytes = builder.build()
    builder = ProfileBuilder("time", Unit.SECONDS)
    builder.add_sample(builder.stack_of([builder.frame("run")]), 1)
    in_seconds = builder.build()
    with pytest.raises(ValueError, match="different units: bytes, seconds"):
        merge_profiles([in_bytes, in_seconds])
    with pytest.raises(ValueError, match="nothing to merge"):
        merge_profiles([])
    assert merge_profiles([in_bytes, in_bytes], name="both").total_weight == 128


def test_merge_is_sampled_only_when_every_input_is() -> None:
    sampled = ProfileBuilder("s", Unit.MICROSECONDS)
    sampled.add_sample(sampled.stack_of([sampled.frame("a")]), 1)
    evented = ProfileBuilder("e", Unit.MICROSECONDS, sampled=False)
    frame = evented.frame("a")
    evented.enter(frame, 0)
    evented.leave(frame, 2)
    merged = merge_profiles([sampled.build(), evented.build()])
    assert merged.sampled is False
    assert merged.frame_weights()[1].tolist() == [3]


# size extremes


def test_a_fifty_thousand_deep_chain() -> None:
    depth = 50_000
    builder = ProfileBuilder("deep", Unit.NONE)
    frames = [builder.frame(f"level{i}") for i in range(depth)]
    leaf = builder.stack_of(frames)
    builder.add_sample(leaf, 3)
    builder.add_sample(builder.stack_of(frames[: depth // 2]), 2)
    profile = builder.build()
    assert len(profile.stacks) == depth
    assert profile.stacks.frames_of(leaf) == frames
    self_weight, total_weight = profile.frame_weights()
    assert self_weight[-1] == 3 and self_weight[depth // 2 - 1] == 2 and self_weight.sum() == 5
    assert np.all(total_weight[: depth // 2] == 5) and np.all(total_weight[depth // 2 :] == 3)
    sliced = profile.slice(1, 4)
    assert sliced.frame_weights()[1][0] == 3


def test_a_fifty_thousand_deep_recursion() -> None:
    builder = ProfileBuilder("recursion", Unit.NONE)
    a, b, c = builder.frame("a"), builder.frame("b"), builder.frame("c")
    builder.add_sample(builder.stack_of([a, b] * 25_000 + [c]), 7)
    self_weight, total_weight = builder.build().frame_weights()
    assert self_weight.tolist() == [0, 0, 7]
    assert total_weight.tolist() == [7, 7, 7]


def test_a_wide_tree() -> None:
    width = 100_000
    builder = ProfileBuilder("wide", Unit.NONE)
    root = builder.stack_of([builder.frame("root")])
    children = [builder.stack(root, builder.frame(f"child{i}")) for i in range(width)]
    builder.add_samples(np.array(children), np.arange(width, dtype=np.float64) % 5 + 1)
    profile = builder.build()
    self_weight, total_weight = profile.frame_weights()
    assert total_weight[0] == profile.total_weight == sum(i % 5 + 1 for i in range(width))
    assert self_weight[0] == 0
    np.testing.assert_array_equal(self_weight[1:], np.arange(width) % 5 + 1)
    np.testing.assert_array_equal(total_weight[1:], self_weight[1:])


# units


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1.234, Unit.MILLISECONDS, "1.23 ms"),
        (1_234_000, Unit.NANOSECONDS, "1.23 ms"),
        (45.6e6, Unit.BYTES, "45.6 MB"),
        (1234, Unit.NONE, "1,234 samples"),
        (1_234_567, Unit.NONE, "1,234,567 samples"),
        (2.5, Unit.NONE, "2.50 samples"),
        (0, Unit.SECONDS, "0 s"),
        (1, Unit.SECONDS, "1.00 s"),
        (12.34, Unit.SECONDS, "12.3 s"),
        (4321, Unit.SECONDS, "4,321 s"),
        (789, Unit.MICROSECONDS, "789 µs"),
        (0.5, Unit.NANOSECONDS, "0.50 ns"),
        (250, Unit.NANOSECONDS, "250 ns"),
        (-1.5, Unit.MILLISECONDS, "-1.50 ms"),
        (512, Unit.BYTES, "512 B"),
        (1536, Unit.BYTES, "1.54 kB"),
        (3.2e9, Unit.BYTES, "3.20 GB"),
        (7.5e12, Unit.BYTES, "7.50 TB"),
    ],
)
def test_format_value(value: float, unit: Unit, text: str) -> None:
    assert format_value(value, unit) == text


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (999.9, Unit.MICROSECONDS, "1.00 ms"),
        (0.9996, Unit.SECONDS, "1.00 s"),
        (9.996, Unit.MILLISECONDS, "10.0 ms"),
        (99.96, Unit.MILLISECONDS, "100 ms"),
        (999.6, Unit.BYTES, "1.00 kB"),
        (999_999, Unit.BYTES, "1.00 MB"),
    ],
)
def test_format_value_rounding_up_to_the_next_unit(value: float, unit: Unit, text: str) -> None:
    """Three significant digits after rounding: 999.9 µs is "1.00 ms", not "1,000 µs"."""
    assert format_value(value, unit) == text


@PROPERTY_SETTINGS
@given(
    st.floats(min_value=1e-12, max_value=1e15, allow_nan=False),
    st.sampled_from(
        [Unit.SECONDS, Unit.MILLISECONDS, Unit.MICROSECONDS, Unit.NANOSECONDS, Unit.BYTES]
    ),
)
def test_format_value_shows_at_most_three_significant_digits(value: float, unit: Unit) -> None:
    """Below the largest unit a number stays under 1,000, and decimals never add a fourth digit."""
    text = format_value(value, unit)
    number, suffix = text.split(" ")
    if suffix not in ("s", "TB"):
        assert float(number.replace(",", "")) < 1000, text
    if "." in number:
        assert len(number.replace(".", "").lstrip("0")) <= 3, text


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [
        ("1.5s", Unit.MILLISECONDS, 1500),
        ("200ms", Unit.SECONDS, 0.2),
        ("30us", Unit.NANOSECONDS, 30_000),
        ("30µs", Unit.MICROSECONDS, 30),
        ("10ns", Unit.NANOSECONDS, 10),
        ("10ns", Unit.MICROSECONDS, 0.01),
        (" 2 ms ", Unit.MICROSECONDS, 2000),
        ("1.5S", Unit.SECONDS, 1.5),
        ("1e3ms", Unit.SECONDS, 1),
        (".5s", Unit.MILLISECONDS, 500),
        ("-5ms", Unit.MILLISECONDS, -5),
        ("42", Unit.MILLISECONDS, 42),
        ("42", Unit.NONE, 42),
        ("2.5", Unit.BYTES, 2.5),
        ("100b", Unit.BYTES, 100),
        ("3 seconds", Unit.MILLISECONDS, 3000),
    ],
)
def test_parse_quantity(text: str, unit: Unit, value: float) -> None:
    assert parse_quantity(text, unit) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "unit", "message"),
    [
        ("", Unit.SECONDS, "cannot read ''"),
        ("abc", Unit.SECONDS, "cannot read 'abc'"),
        ("1.2.3s", Unit.SECONDS, "cannot read"),
        ("nan", Unit.SECONDS, "cannot read"),
        ("5 parsecs", Unit.SECONDS, "unknown unit 'parsecs'"),
        ("10ms", Unit.NONE, "is in milliseconds, but this profile is in none"),
        ("10ms", Unit.BYTES, "is in milliseconds, but this profile is in bytes"),
        ("10b", Unit.SECONDS, "is in bytes, but this profile is in seconds"),
    ],
)
def test_parse_quantity_errors(text: str, unit: Unit, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_quantity(text, unit)


@PROPERTY_SETTINGS
@given(
    st.integers(0, 10**9),
    st.integers(0, 4),
    st.sampled_from(
        [
            ("s", Unit.SECONDS),
            ("ms", Unit.MILLISECONDS),
            ("us", Unit.MICROSECONDS),
            ("ns", Unit.NANOSECONDS),
        ]
    ),
)
def test_parse_quantity_in_the_profiles_own_unit_is_exact(
    mantissa: int, decimals: int, suffix_unit: tuple[str, Unit]
) -> None:
    """--start 7.7us on a microsecond profile is 7.7, the same float as a bare 7.7."""
    suffix, unit = suffix_unit
    text = f"{mantissa / 10**decimals:.{decimals}f}"
    assert parse_quantity(text + suffix, unit) == parse_quantity(text, unit) == float(text)


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [
        ("1.1ms", Unit.MICROSECONDS, 1100.0),
        ("7.7us", Unit.MICROSECONDS, 7.7),
        ("0.3s", Unit.MILLISECONDS, 300.0),
    ],
)
def test_parse_quantity_converts_decimal_text_to_the_nearest_float(
    text: str, unit: Unit, value: float
) -> None:
    """ "1.1ms" on a microsecond profile is exactly 1100, not 1100.0000000000002."""
    assert parse_quantity(text, unit) == value

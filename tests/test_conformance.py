"""Every conformance profile in a supported format matches what speedscope computes.

`../shared/conformance/expected.json` holds, per file, the profile names and
every frame's self and total weight as speedscope's importer reports them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from flamesight.analysis import summary
from flamesight.formats import FormatError, load
from tests.conftest import CONFORMANCE

# Folders (and single files) under profiles/ whose formats flamesight reads.
SUPPORTED = (
    "stackprof/",
    "haskell/",
    "papyrus/",
    "java-flight-recorder/",
    "speedscope/",
    "stackcollapse/",
    "Chrome/",
    "node/",
    "trace-event/",
    "pprof/",
    "linux-perf/",
    "callgrind/",
    "pmcstat/",
    "Instruments/",
    "Firefox/",
    "Safari/",
)
# Files in supported folders that belong to formats not read yet.
NOT_YET: tuple[str, ...] = ()
# Files that are not profiles and must fail with a FormatError: speedscope's own
# invalid files, and the binary-layout grammars (Synalyze It! XML) kept beside
# the Instruments 8.3.3 traces, which document the format but hold no samples.
MUST_FAIL = (
    "speedscope/invalid/",
    "Instruments/8.3.3/integer-uniquer-data.grammar",
    "Instruments/8.3.3/integer-uniquer-index.grammar",
    "Instruments/8.3.3/object-allocations.grammar",
    "Instruments/8.3.3/time-sample-bulkstore.grammar",
)
# Formats where flamesight shows more profiles than speedscope, after the ones it
# shows: pprof gives every sample type a profile, speedscope only the preferred one.
EXTRA_PROFILES = ("pprof/",)


def _expected() -> dict[str, dict]:
    path = CONFORMANCE / "expected.json"
    return orjson.loads(path.read_bytes()) if path.is_file() else {}


def _supported(relative: str) -> bool:
    return relative.startswith(SUPPORTED) and not relative.endswith(NOT_YET)


def _profile_files() -> list[str]:
    root = CONFORMANCE / "profiles"
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


EXPECTED = _expected()
ENTRIES = sorted(k for k in EXPECTED if _supported(k))
UNLISTED = [
    f
    for f in _profile_files()
    if _supported(f) and f not in EXPECTED and not f.startswith(MUST_FAIL)
]
INVALID = [f for f in _profile_files() if f.startswith(MUST_FAIL)]


def _frame_key(name: str, file: str | None, line: int | None, col: int | None) -> tuple:
    # V8 heap profiles write -1 for an unknown line or column and speedscope keeps
    # it; the model stores every negative number as unknown.
    line = None if line is None or line < 0 else line
    col = None if col is None or col < 0 else col
    return (name, file or None, line, col)


def frame_table(profile) -> dict[tuple, tuple[float, float]]:
    """(name, file, line, col) -> (self, total), merging rows that print alike."""
    self_weight, total_weight = profile.frame_weights()
    table: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for index in range(len(profile.frames)):
        frame = profile.frames[index]
        row = table[_frame_key(*frame)]
        row[0] += float(self_weight[index])
        row[1] = max(row[1], float(total_weight[index]))
    return {key: (s, t) for key, (s, t) in table.items()}


@pytest.mark.parametrize("relative", ENTRIES or [pytest.param("none", marks=pytest.mark.skip)])
def test_matches_speedscope(conformance_dir: Path, relative: str) -> None:
    """Profile names and every frame's self and total weight agree with speedscope."""
    expected = EXPECTED[relative]
    group = load(conformance_dir / "profiles" / relative)
    names = [p.name for p in group.profiles]
    wanted_names = [p["name"] for p in expected["profiles"]]
    if relative.startswith(EXTRA_PROFILES):
        names = names[: len(wanted_names)]
    assert names == wanted_names
    assert group.active_index == expected["index_to_view"]
    for profile, want in zip(group.profiles, expected["profiles"], strict=False):
        got = frame_table(profile)
        wanted: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for frame in want["frames"]:
            row = wanted[_frame_key(frame["name"], frame["file"], frame["line"], frame["col"])]
            row[0] += frame["self"]
            row[1] = max(row[1], frame["total"])
        for key, (self_w, total_w) in wanted.items():
            assert key in got, f"{profile.name}: frame {key} missing; have {sorted(got)[:10]}"
            got_self, got_total = got[key]
            assert math.isclose(got_self, self_w, rel_tol=1e-9, abs_tol=1e-9), (
                key,
                "self",
                got_self,
                self_w,
            )
            assert math.isclose(got_total, total_w, rel_tol=1e-9, abs_tol=1e-9), (
                key,
                "total",
                got_total,
                total_w,
            )
        extra = {k for k, (s, t) in got.items() if (s or t) and k not in wanted}
        assert not extra, f"{profile.name}: frames speedscope does not have: {sorted(extra)[:10]}"


@pytest.mark.parametrize("relative", UNLISTED or [pytest.param("none", marks=pytest.mark.skip)])
def test_unlisted_file_loads_or_says_why(conformance_dir: Path, relative: str) -> None:
    """A supported file with no expectations loads, or fails with a FormatError."""
    try:
        group = load(conformance_dir / "profiles" / relative)
    except FormatError as error:
        assert str(error)
    else:
        assert group.profiles


@pytest.mark.parametrize("relative", INVALID or [pytest.param("none", marks=pytest.mark.skip)])
def test_invalid_speedscope_files_fail(conformance_dir: Path, relative: str) -> None:
    """Files speedscope itself rejects raise a FormatError with a message."""
    with pytest.raises(FormatError, match=r".+, .+: .+"):
        load(conformance_dir / "profiles" / relative)


@pytest.mark.parametrize(
    "relative", [*ENTRIES, *UNLISTED] or [pytest.param("none", marks=pytest.mark.skip)]
)
def test_summary_of_every_profile_fits_its_budget(conformance_dir: Path, relative: str) -> None:
    """The budgeted summary of each profile of a real file stays within 1000 and 2000 tokens."""
    try:
        group = load(conformance_dir / "profiles" / relative)
    except FormatError:
        pytest.skip(f"{relative} is not read (its FormatError is tested above)")
    for profile in group.profiles:
        # A profile with no weight on any frame (an Instruments thread sampled once, whose
        # weight is all the empty stack before its first sample) has no top functions.
        on_frames = profile.samples.weight[profile.samples.stack >= 0]
        if not len(profile.samples) or not on_frames.any():
            continue
        for budget in (1000, 2000):
            result = summary(profile, budget_tokens=budget)
            assert max(result.json_tokens, result.markdown_tokens) <= budget, (profile.name, budget)
            assert result.data["top_self"], profile.name

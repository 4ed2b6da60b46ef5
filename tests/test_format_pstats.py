"""The pstats importer: files cProfile and profile really write, checked against the stdlib's pstats.

The call paths of a pstats profile are reconstructed (see
`flamesight.formats.cprofile`); what must hold exactly is the self time of
every function (its tottime) and the total weight (the sum of tottime). Each
function's total may not exceed its cumtime in a profile the bounds do not
cut.
"""

from __future__ import annotations

import marshal
import math
import pstats
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from flamesight.analysis import top_functions
from flamesight.formats import FORMAT_MODULES, FormatError, cprofile, load
from flamesight.model import Profile

FORMATS_DIR = Path(cprofile.__file__).parent

PROGRAM = textwrap.dedent(
    """
    import time


    def fibonacci(n):
        return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)


    def hot_loop(count):
        total = 0
        for i in range(count):
            total += i * i
        return total


    def is_even(n):
        return True if n == 0 else is_odd(n - 1)


    def is_odd(n):
        return False if n == 0 else is_even(n - 1)


    def format_record(i):
        return f"{i:08d}"


    def parse_records(count):
        return [format_record(i) for i in range(count)]


    def main():
        fibonacci(15)
        hot_loop(600_000)
        is_even(300)
        parse_records(3000)
        time.sleep(0.005)


    if __name__ == "__main__":
        main()
    """
)


def record(directory: Path, module: str) -> Path:
    """Run PROGRAM under ``python -m <module> -o`` and return the stats file."""
    script = directory / "program.py"
    script.write_text(PROGRAM)
    output = directory / f"{module}.prof"
    subprocess.run(
        [sys.executable, "-m", module, "-o", str(output), str(script)],
        check=True,
        cwd=directory,
        timeout=60,
        capture_output=True,
    )
    return output


@pytest.fixture(scope="module")
def cprofile_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stats file written by ``python -m cProfile -o``."""
    return record(tmp_path_factory.mktemp("cprofile"), "cProfile")


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stats file written by the pure-Python ``python -m profile -o``."""
    return record(tmp_path_factory.mktemp("profile"), "profile")


def parse_file(path: Path) -> Profile:
    """The file's one profile, read by the pstats importer."""
    group = cprofile.parse(path.read_bytes(), path.name)
    assert [p.name for p in group.profiles] == [path.name]
    return group.active


def frame_of_key(key: tuple) -> tuple[str, str | None, int | None]:
    """How the importer names a pstats key: no file and line for builtins."""
    file, line, name = key
    if not isinstance(name, str):  # profile's top-level entry holds a code object
        name = name.co_name
    return name, None if file in ("~", "") else file, line if line > 0 else None


def weights_by_key(profile: Profile, stats: dict) -> dict[tuple, tuple[float, float]]:
    """Our (self, total) for every function of `stats`, by its pstats key."""
    self_weight, total_weight = profile.frame_weights()
    index = {tuple(profile.frames[i][:3]): i for i in range(len(profile.frames))}
    result = {}
    for key in stats:
        frame = index.get(frame_of_key(key))
        result[key] = (0.0, 0.0) if frame is None else (self_weight[frame], total_weight[frame])
    return result


def assert_matches_stdlib(profile: Profile, path: Path) -> None:
    """Self == tottime per function, total weight == total_tt, total <= cumtime."""
    reference = pstats.Stats(str(path))
    stats = reference.stats
    ours = weights_by_key(profile, stats)
    assert profile.total_weight == pytest.approx(reference.total_tt, rel=1e-9)
    slack = 1e-9 * reference.total_tt + 1e-12
    for key, (_, nc, tottime, cumtime, _) in stats.items():
        self_time, total_time = ours[key]
        assert self_time == pytest.approx(max(tottime, 0.0), rel=1e-9, abs=1e-15), key
        if nc == 0:  # profile's top-level placeholder: never called, heads every path
            continue
        assert total_time <= cumtime + slack, (key, total_time, cumtime)


def stack_names(profile: Profile) -> list[list[str]]:
    """The frame names of every sample's stack, root first."""
    return [
        [profile.frames[f].name for f in profile.stacks.frames_of(int(stack))]
        for stack in profile.samples.stack
    ]


# files the profilers really write


def test_cprofile_numbers_match_the_standard_library(cprofile_file: Path) -> None:
    profile = parse_file(cprofile_file)
    assert profile.unit == "seconds"
    assert not profile.sampled
    assert_matches_stdlib(profile, cprofile_file)


def line_of(definition: str) -> int:
    """The line of PROGRAM where `definition` starts."""
    return PROGRAM.splitlines().index(definition) + 1


def test_cprofile_hot_function_is_first_by_self_time(cprofile_file: Path) -> None:
    top = top_functions(parse_file(cprofile_file), by="self", n=3).functions
    assert top[0].name == "hot_loop"
    key = (str(cprofile_file.parent / "program.py"), line_of("def hot_loop(count):"), "hot_loop")
    assert top[0].self == pytest.approx(pstats.Stats(str(cprofile_file)).stats[key][2], rel=1e-9)


def test_cprofile_names_files_and_lines(cprofile_file: Path) -> None:
    profile = parse_file(cprofile_file)
    frames = {profile.frames[i].name: profile.frames[i] for i in range(len(profile.frames))}
    script = str(cprofile_file.parent / "program.py")
    assert frames["main"].file == script
    assert frames["main"].line == line_of("def main():")
    sleep = frames["<built-in method time.sleep>"]
    assert (sleep.file, sleep.line) == (None, None)
    assert frames["<built-in method builtins.exec>"].file is None


def test_cprofile_paths_follow_the_callers_and_fold_recursion(cprofile_file: Path) -> None:
    profile = parse_file(cprofile_file)
    stacks = stack_names(profile)
    for names in stacks:
        assert len(names) == len(set(names)), f"a function repeats on {names}"
    paths = {tuple(names) for names in stacks}
    outer = ("<built-in method builtins.exec>", "<module>", "main")
    assert (*outer, "hot_loop") in paths
    assert (*outer, "<built-in method time.sleep>") in paths
    assert (*outer, "fibonacci") in paths
    assert (*outer, "parse_records", "<listcomp>", "format_record") in paths
    assert (*outer, "is_even", "is_odd") in paths
    # every path starts at the function that ran the script (or the profiler's own disable)
    assert {names[0] for names in stacks} <= {
        "<built-in method builtins.exec>",
        "<method 'disable' of '_lsprof.Profiler' objects>",
    }


def test_profile_module_file_with_call_counts_and_a_code_object(profile_file: Path) -> None:
    data = profile_file.read_bytes()
    assert cprofile.sniff(data[: 64 * 1024])
    profile = parse_file(profile_file)
    assert_matches_stdlib(profile, profile_file)
    stacks = stack_names(profile)
    assert {names[0] for names in stacks} == {"profiler"}
    assert any(names[-2:] == ["main", "hot_loop"] for names in stacks)
    frames = {profile.frames[i].name: profile.frames[i] for i in range(len(profile.frames))}
    assert (frames["sleep"].file, frames["sleep"].line) == (None, None)


def test_dump_stats_of_two_runs_added_together(cprofile_file: Path, tmp_path: Path) -> None:
    second = record(tmp_path, "cProfile")
    merged = pstats.Stats(str(cprofile_file))
    merged.add(str(second))
    output = tmp_path / "merged.prof"
    merged.dump_stats(str(output))
    assert_matches_stdlib(parse_file(output), output)


def test_load_detects_pstats(cprofile_file: Path) -> None:
    missing = [n for n in FORMAT_MODULES if not (FORMATS_DIR / f"{n}.py").is_file()]
    if missing:
        pytest.skip(f"load needs every importer; missing: {', '.join(missing)}")
    group = load(cprofile_file)
    assert group.format == "pstats"
    assert group.name == cprofile_file.name
    assert group.active.total_weight == pytest.approx(
        pstats.Stats(str(cprofile_file)).total_tt, rel=1e-9
    )


# small inline cases

MAIN = ("app.py", 1, "main")
PARSE = ("app.py", 10, "parse")
WALK = ("tree.py", 5, "walk")
LEN = ("~", 0, "<built-in method builtins.len>")


def synthetic() -> dict:
    """main -> parse -> walk (recursive) -> len, with consistent cProfile numbers."""
    return {
        MAIN: (1, 1, 0.1, 1.0, {}),
        PARSE: (2, 2, 0.2, 0.9, {MAIN: (2, 2, 0.2, 0.9)}),
        WALK: (2, 9, 0.6, 0.7, {PARSE: (2, 2, 0.5, 0.7), WALK: (7, 2, 0.1, 0.35)}),
        LEN: (9, 9, 0.1, 0.1, {WALK: (9, 9, 0.1, 0.1)}),
    }


def parse_stats(stats: dict) -> Profile:
    return cprofile.parse(marshal.dumps(stats), "inline.prof").active


def runs(profile: Profile) -> dict[str, float]:
    """Weight per stack, the names joined by ';'."""
    result: dict[str, float] = {}
    for names, weight in zip(stack_names(profile), profile.samples.weight, strict=True):
        key = ";".join(names)
        result[key] = result.get(key, 0.0) + float(weight)
    return result


def test_a_call_chain_becomes_one_stack_per_function() -> None:
    profile = parse_stats(synthetic())
    assert runs(profile) == pytest.approx(
        {
            "main": 0.1,
            "main;parse": 0.2,
            "main;parse;walk": 0.6,
            "main;parse;walk;<built-in method builtins.len>": 0.1,
        }
    )
    _, total = profile.frame_weights()
    assert total.max() == pytest.approx(1.0)


def test_time_is_shared_among_callers_by_edge_cumtime() -> None:
    log = ("util.py", 3, "log")
    stats = {
        MAIN: (1, 1, 0.0, 1.0, {}),
        PARSE: (1, 1, 0.1, 0.4, {MAIN: (1, 1, 0.1, 0.4)}),
        WALK: (1, 1, 0.3, 0.6, {MAIN: (1, 1, 0.3, 0.6)}),
        log: (4, 4, 0.6, 0.6, {PARSE: (1, 1, 0.3, 0.3), WALK: (3, 3, 0.3, 0.3)}),
    }
    assert runs(parse_stats(stats)) == pytest.approx(
        {"main;parse": 0.1, "main;parse;log": 0.3, "main;walk": 0.3, "main;walk;log": 0.3}
    )


def test_a_caller_without_an_entry_still_heads_the_path() -> None:
    ghost = ("lib.py", 7, "ghost")
    stats = {WALK: (1, 1, 0.5, 0.5, {ghost: (1, 1, 0.5, 0.5)})}
    assert runs(parse_stats(stats)) == pytest.approx({"ghost;walk": 0.5})


def test_a_call_running_when_profiling_started_makes_a_root() -> None:
    # recorded with enable() inside the outer call: only the inner calls have a caller
    stats = {WALK: (1, 5, 0.5, 0.5, {WALK: (4, 1, 0.4, 0.4)})}
    assert runs(parse_stats(stats)) == pytest.approx({"walk": 0.5})


def test_a_cycle_nothing_calls_keeps_every_self_time() -> None:
    a, b = ("m.py", 1, "a"), ("m.py", 2, "b")
    stats = {
        a: (0, 3, 0.3, 0.5, {b: (3, 3, 0.3, 0.5)}),
        b: (0, 3, 0.2, 0.5, {a: (3, 3, 0.2, 0.5)}),
    }
    profile = parse_stats(stats)
    self_time, _ = profile.frame_weights()
    assert sorted(self_time) == pytest.approx([0.2, 0.3])
    assert profile.total_weight == pytest.approx(0.5)


def test_negative_tottime_from_profile_calibration_counts_as_zero() -> None:
    stats = {
        MAIN: (1, 1, 0.3, 0.2, {}),
        PARSE: (1, 1, -0.1, -0.1, {MAIN: 1}),
    }
    profile = parse_stats(stats)
    assert runs(profile) == pytest.approx({"main": 0.3})


def test_a_code_object_in_a_key_is_named_by_its_code_name() -> None:
    # python -m profile keys its top-level entry with the code object it ran
    code = compile("def inner():\n    return [x for x in range(3)]\n", "prog.py", "exec")
    top = ("profile", 0, code)
    stats = {top: (1, 1, 0.2, 0.3, {}), MAIN: (1, 1, 0.1, 0.1, {top: 1})}
    profile = parse_stats(stats)
    assert runs(profile) == pytest.approx({"<module>": 0.2, "<module>;main": 0.1})
    frames = {profile.frames[i] for i in range(len(profile.frames))}
    assert ("<module>", "profile", None, None) in frames


def test_an_empty_stats_dict_is_an_empty_profile() -> None:
    assert cprofile.sniff(marshal.dumps({}))
    profile = parse_stats({})
    assert len(profile.samples) == 0
    assert profile.total_weight == 0


def test_a_big_caller_graph_is_bounded_and_keeps_self_times_exact() -> None:
    """20,000 functions, each called from up to 4 earlier ones, with cycles."""
    rng = random.Random(7)
    count = 20_000
    keys = [(f"mod{i % 300}.py", i + 1, f"f{i}") for i in range(count)]
    own = [rng.expovariate(1.0) * (1e-4 if rng.random() < 0.9 else 1e-2) for _ in range(count)]
    callers: list[list[tuple[int, float]]] = [[] for _ in range(count)]
    for i in range(1, count):
        chosen = {rng.randrange(max(0, i - 2000), i) for _ in range(rng.randint(1, 4))}
        weights = [rng.random() for _ in chosen]
        callers[i] = [(c, w / sum(weights)) for c, w in zip(chosen, weights, strict=True)]
    callees: list[list[tuple[int, float]]] = [[] for _ in range(count)]
    for i, edges in enumerate(callers):
        for c, share in edges:
            callees[c].append((i, share))
    cumulative = [0.0] * count
    for i in range(count - 1, -1, -1):
        cumulative[i] = own[i] + sum(cumulative[j] * share for j, share in callees[i])
    stats = {
        keys[i]: (
            1,
            1,
            own[i],
            cumulative[i],
            {keys[c]: (1, 1, own[i] * s, cumulative[i] * s) for c, s in callers[i]},
        )
        for i in range(count)
    }
    for _ in range(500):  # recursion: late functions calling early ones again
        late, early = rng.randrange(count // 2, count), rng.randrange(count // 2)
        stats[keys[early]][4][keys[late]] = (1, 0, 0.0, cumulative[early] * 0.01)
    profile = parse_stats(stats)
    assert len(profile.samples) <= cprofile.MAX_TREE_NODES + count
    assert int(profile.stacks.depth.max()) < cprofile.MAX_DEPTH
    ours = weights_by_key(profile, stats)
    for i, key in enumerate(keys):
        assert ours[key][0] == pytest.approx(own[i], rel=1e-9, abs=1e-15)
    assert profile.total_weight == pytest.approx(math.fsum(own), rel=1e-9)


# bad input


def test_truncated_file(cprofile_file: Path) -> None:
    data = cprofile_file.read_bytes()
    with pytest.raises(FormatError, match=r"ends in the middle of the data") as error:
        cprofile.parse(data[: len(data) // 2], "cut.prof")
    assert str(error.value).startswith("Python cProfile/profile stats, byte ")


def test_a_marshalled_int_is_not_stats() -> None:
    with pytest.raises(
        FormatError, match=r"top level: expected a dict of function statistics, got int 5"
    ):
        cprofile.parse(marshal.dumps(5), "int.prof")


@pytest.mark.parametrize(
    ("stats", "message"),
    [
        (
            {MAIN: (1, 2, 3)},
            r"entry \('app.py', 1, 'main'\): expected \(cc, nc, tottime, cumtime, callers\), got \(1, 2, 3\)",
        ),
        (
            {MAIN: [1, 1, 0.1, 0.1, {}]},
            r"expected \(cc, nc, tottime, cumtime, callers\), got \[1, 1, 0.1, 0.1, \{\}\]",
        ),
        (
            {("app.py", 1): (1, 1, 0.1, 0.1, {})},
            r"entry \('app.py', 1\): a function key must be a \(file, line, name\) tuple",
        ),
        ({("app.py", "1", "main"): (1, 1, 0.1, 0.1, {})}, r"the line must be an integer, got '1'"),
        ({MAIN: (1, 1, "0.1", 0.1, {})}, r"tottime must be a number up to 1e\+15, got .0.1."),
        ({MAIN: (1, 1, 0.1, float("nan"), {})}, r"cumtime must be a number up to 1e\+15, got nan"),
        ({MAIN: (1.5, 1, 0.1, 0.1, {})}, r"cc must be an integer, got 1.5"),
        ({MAIN: (1, 1, 0.1, 0.1, [])}, r"callers must be a dict, got \[\]"),
        (
            {PARSE: (1, 1, 0.1, 0.1, {MAIN: (1, 1, 0.1)})},
            r"entry \('app.py', 10, 'parse'\), caller \('app.py', 1, 'main'\): expected \(nc, cc, tottime, cumtime\) or a call count, got \(1, 1, 0.1\)",
        ),
        (
            {PARSE: (1, 1, 0.1, 0.1, {"main": 1})},
            r"caller 'main': a function key must be a \(file, line, name\) tuple",
        ),
    ],
)
def test_wrong_shapes_name_the_entry(stats: dict, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        cprofile.parse(marshal.dumps(stats), "bad.prof")


def test_a_huge_declared_tuple_is_refused_before_marshal_allocates_it() -> None:
    data = b"{(\xff\xff\xff\x7f"
    with pytest.raises(
        FormatError, match=r"byte 1: declares 2,147,483,647 items with 0 bytes left"
    ):
        cprofile.parse(data, "huge.prof")


def test_unknown_marshal_type_code() -> None:
    with pytest.raises(FormatError, match=r"byte 1: not marshal data \(type code 0x3f here\)"):
        cprofile.parse(b"{?", "odd.prof")


def test_sniff_claims_pstats_and_nothing_else(cprofile_file: Path) -> None:
    assert cprofile.sniff(cprofile_file.read_bytes()[: 64 * 1024])
    assert cprofile.sniff(marshal.dumps(synthetic()))
    for other in (
        b'{"nodes": [], "samples": []}',
        b"{)\n",
        b"main;parse;walk 12\n",
        marshal.dumps([1, 2, 3]),
        marshal.dumps({"a": 1}),
        marshal.dumps({("a", "1", "b"): 1}),
        b"",
        b"{",
    ):
        assert not cprofile.sniff(other), other


def test_frames_are_interned_once_per_function(cprofile_file: Path) -> None:
    profile = parse_file(cprofile_file)
    frames = [tuple(profile.frames[i][:3]) for i in range(len(profile.frames))]
    assert len(frames) == len(set(frames))
    assert np.all(profile.samples.weight > 0)

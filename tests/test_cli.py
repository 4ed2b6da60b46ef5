"""The `flamesight` command: run in-process through click's CliRunner and as a real program.

Every number the command prints is checked against `flamesight.formats.load`
and `flamesight.analysis.top_functions` on the same file.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from flamesight import __version__, examples
from flamesight.analysis import top_functions
from flamesight.cli import main
from flamesight.cli.display import location
from flamesight.cli.progress import SHOW_AFTER_SECONDS, LoadProgress
from flamesight.formats import load
from flamesight.model import Profile, merge_profiles

EXAMPLE = examples.path()
PROGRAM = Path(sys.executable).with_name("flamesight")
TOP_KEYS = {"format", "profile", "unit", "total", "start", "end", "functions"}
FUNCTION_KEYS = {"name", "file", "line", "self", "total", "self_pct", "total_pct"}


def run(*args: str | Path) -> Result:
    """Run the command in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def program_environment() -> dict[str, str]:
    """The environment for the program, without a COLUMNS value (tables take the pipe width)."""
    environment = dict(os.environ)
    environment.pop("COLUMNS", None)
    return environment


def run_program(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the installed `flamesight` program with pipes for stdout and stderr."""
    if not PROGRAM.is_file():
        pytest.skip(f"{PROGRAM} is not installed (pip install -e . makes it)")
    return subprocess.run(
        [str(PROGRAM), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=program_environment(),
    )


def top_json(*args: str | Path) -> dict:
    """`flamesight top ... --json`, checked to print exactly one JSON object and nothing on stderr."""
    result = run("top", *args, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    document = orjson.loads(result.stdout)
    assert set(document) == TOP_KEYS
    for function in document["functions"]:
        assert set(function) == FUNCTION_KEYS
    return document


def expected_top(
    file: Path | str,
    profile: Profile,
    by: str = "self",
    n: int | None = 20,
    start: float | None = None,
    end: float | None = None,
) -> dict:
    """What `top --json` must print: `top_functions` on the profile, plus the format."""
    result = top_functions(profile, by, n, start, end)
    return {"format": load(file).format, **orjson.loads(orjson.dumps(result.to_dict()))}


def assert_clean_failure(result: Result | subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit status 2, an 'Error:' line naming the problem on stderr, no traceback, no stdout."""
    code = result.exit_code if isinstance(result, Result) else result.returncode
    assert code == 2, (result.stdout, result.stderr)
    assert "Error:" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    for needle in needles:
        assert needle in result.stderr


# --- the bundled example ---------------------------------------------------


def test_example_is_a_real_py_spy_profile() -> None:
    """The bundled example loads, comes from py-spy, and is small enough to ship."""
    assert EXAMPLE.is_file()
    assert EXAMPLE.stat().st_size < 400_000
    group = load(EXAMPLE)
    assert group.format == "speedscope"
    assert orjson.loads(EXAMPLE.read_bytes())["exporter"].startswith("py-spy")
    profile = group.active
    assert profile.unit.value == "seconds"
    assert len(profile.samples) > 500
    names = {profile.frames[i].name for i in range(len(profile.frames))}
    assert {"parse_line", "distinct_clients", "build_report"} <= names
    assert EXAMPLE.with_name("log_report.py").is_file()


def test_version() -> None:
    """--version prints the package version."""
    result = run("--version")
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_info_table_on_example() -> None:
    """info names the format and shows every profile with its formatted numbers."""
    group = load(EXAMPLE)
    profile = group.active
    result = run("info", EXAMPLE)
    assert result.exit_code == 0, result.stderr
    assert "speedscope" in result.stdout
    assert profile.name in result.stdout
    assert profile.format_value(profile.total_weight) in result.stdout
    assert f"{len(profile.samples):,}" in result.stdout
    assert f"{len(profile.frames):,}" in result.stdout
    assert f"*{group.active_index}" in result.stdout


@pytest.mark.parametrize(
    "relative",
    ["Chrome/65/simple.cpuprofile", "trace-event/multiprocess.json", "stackcollapse/simple.txt"],
)
def test_info_json_matches_load(conformance_dir: Path, relative: str) -> None:
    """info --json reports exactly what `load` read, raw numbers in the profile's unit."""
    file = conformance_dir / "profiles" / relative
    group = load(file)
    result = run("info", file, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    document = orjson.loads(result.stdout)
    assert document["format"] == group.format
    assert document["format_title"]
    assert document["active_index"] == group.active_index
    assert len(document["profiles"]) == len(group.profiles)
    for index, (row, profile) in enumerate(zip(document["profiles"], group.profiles, strict=True)):
        assert row == {
            "index": index,
            "name": profile.name,
            "active": index == group.active_index,
            "unit": profile.unit.value,
            "sampled": profile.sampled,
            "total": profile.total_weight,
            "samples": len(profile.samples),
            "frames": len(profile.frames),
            "start": profile.start,
            "end": profile.end,
        }


@pytest.mark.parametrize("by", ["self", "total"])
def test_top_json_on_example_matches_top_functions(by: str) -> None:
    """top --json is top_functions of the active profile, totals in seconds (the profile's unit)."""
    profile = load(EXAMPLE).active
    document = top_json(EXAMPLE, "--by", by, "-n", "7")
    assert document == expected_top(EXAMPLE, profile, by, 7)
    assert document["unit"] == "seconds"
    assert document["total"] == pytest.approx(profile.total_weight)
    assert 1 < document["total"] < 60  # seconds stay seconds
    assert len(document["functions"]) == 7
    ranking = [f[by] for f in document["functions"]]
    assert ranking == sorted(ranking, reverse=True)


def test_top_limit_zero_lists_every_function() -> None:
    """-n 0 lists all functions with weight."""
    profile = load(EXAMPLE).active
    document = top_json(EXAMPLE, "-n", "0")
    assert document == expected_top(EXAMPLE, profile, n=None)
    assert len(document["functions"]) > 20


def test_top_table_on_example() -> None:
    """The table shows the top functions with location, weights and percentages."""
    profile = load(EXAMPLE).active
    expected = top_functions(profile, "self", 5)
    result = run("top", EXAMPLE, "-n", "5")
    assert result.exit_code == 0, result.stderr
    for header in ("function", "file:line", "self", "self %", "total", "total %"):
        assert header in result.stdout
    for function in expected.functions:
        assert function.name in result.stdout
        assert f"{function.self_pct:.1f}%" in result.stdout
        assert profile.format_value(function.total) in result.stdout
        if function.file:
            assert f"{Path(function.file).name}:{function.line}" in result.stdout


@pytest.mark.parametrize(
    ("start", "end", "start_value", "end_value"),
    [
        ("0.5s", "1500ms", 0.5, 1.5),
        ("250000us", "2000000000ns", 0.25, 2.0),
        ("0.75", None, 0.75, None),
        (None, "1s", None, 1.0),
    ],
)
def test_top_time_range_with_units(
    start: str | None, end: str | None, start_value: float | None, end_value: float | None
) -> None:
    """--start/--end take s, ms, us, ns or a bare number in the profile's unit (seconds here)."""
    profile = load(EXAMPLE).active
    args = [*(["--start", start] if start else []), *(["--end", end] if end else [])]
    document = top_json(EXAMPLE, *args)
    expected = expected_top(EXAMPLE, profile, start=start_value, end=end_value)
    assert document["start"] == pytest.approx(expected["start"], rel=1e-12)
    assert document["end"] == pytest.approx(expected["end"], rel=1e-12)
    assert document["total"] == pytest.approx(expected["total"], rel=1e-9)
    assert [f["name"] for f in document["functions"]] == [f["name"] for f in expected["functions"]]
    for got, want in zip(document["functions"], expected["functions"], strict=True):
        assert got["self"] == pytest.approx(want["self"], rel=1e-9)
        assert got["total"] == pytest.approx(want["total"], rel=1e-9)
    span = (end_value if end_value is not None else profile.end) - (start_value or profile.start)
    assert document["total"] <= span + 1e-9
    assert document["total"] < profile.total_weight


def test_top_time_units_convert_to_microseconds(conformance_dir: Path) -> None:
    """On a microsecond profile, "10ms" means 10,000 and a bare number is microseconds."""
    file = conformance_dir / "profiles" / "Chrome/65/simple.cpuprofile"
    profile = load(file).active
    with_units = top_json(file, "--start", "10ms", "--end", "0.03s")
    bare = top_json(file, "--start", "10000", "--end", "30000")
    assert with_units["start"] == pytest.approx(10_000)
    assert with_units["end"] == pytest.approx(30_000)
    assert bare["start"] == 10_000
    assert with_units["total"] == pytest.approx(bare["total"], rel=1e-12)
    assert bare == expected_top(file, profile, start=10_000, end=30_000)
    assert bare["unit"] == "microseconds"


def test_bad_times_exit_2() -> None:
    """Unreadable times, unknown units and an empty range are reported, exit 2."""
    assert_clean_failure(run("top", EXAMPLE, "--start", "soon"), "--start", "soon")
    assert_clean_failure(run("top", EXAMPLE, "--end", "3parsecs"), "--end", "parsecs")
    assert_clean_failure(run("top", EXAMPLE, "--start", "2s", "--end", "1s"), "--end")


def test_time_suffix_on_a_sample_count_profile_exits_2(conformance_dir: Path) -> None:
    """A time on a profile counted in samples is refused; a bare number is accepted."""
    file = conformance_dir / "profiles" / "stackcollapse/simple.txt"
    assert_clean_failure(run("top", file, "--start", "1ms"), "--start")
    document = top_json(file, "--start", "2", "--end", "9")
    assert document["unit"] == "none"
    assert document == expected_top(file, load(file).active, start=2, end=9)


def test_profile_by_name_and_by_index(conformance_dir: Path) -> None:
    """--profile picks one profile by its name or its number in `info`."""
    file = conformance_dir / "profiles" / "trace-event/multiprocess.json"
    group = load(file)
    assert len(group.profiles) > 2
    for index, profile in enumerate(group.profiles):
        by_index = top_json(file, "--profile", str(index))
        by_name = top_json(file, "--profile", profile.name)
        assert by_index == by_name == expected_top(file, profile)
        assert by_name["profile"] == profile.name


def test_unknown_profile_exits_2_and_lists_profiles(conformance_dir: Path) -> None:
    """An unknown name or an index past the end is reported with the profiles there are."""
    file = conformance_dir / "profiles" / "trace-event/multiprocess.json"
    first = load(file).profiles[0].name
    assert_clean_failure(run("top", file, "--profile", "no such thread"), "no such thread", first)
    assert_clean_failure(run("top", file, "--profile", "99"), "'99'", first)


def test_merge_covers_every_profile(conformance_dir: Path) -> None:
    """--merge ranks the merged profiles: its total is the sum of all totals."""
    file = conformance_dir / "profiles" / "trace-event/multiprocess.json"
    group = load(file)
    document = top_json(file, "--merge", "-n", "0")
    assert document["total"] == pytest.approx(sum(p.total_weight for p in group.profiles))
    merged = merge_profiles(group.profiles, name=document["profile"])
    assert document == expected_top(file, merged, n=None)
    names = {f["name"] for f in document["functions"]}
    assert names == {f.name for p in group.profiles for f in top_functions(p, n=None).functions}


def test_profile_and_merge_together_exit_2() -> None:
    """--profile and --merge exclude each other."""
    assert_clean_failure(run("top", EXAMPLE, "--merge", "--profile", "0"), "--merge")


def test_bad_option_values_exit_2() -> None:
    """click's own checks (choices, ranges) also exit 2."""
    assert_clean_failure(run("top", EXAMPLE, "--by", "calls"), "calls")
    assert_clean_failure(run("top", EXAMPLE, "-n", "-3"), "-3")


def test_table_locations_are_short_and_json_keeps_full_paths(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Tables show paths relative to the working directory or their last two parts."""
    monkeypatch.chdir(tmp_path)
    assert location(str(tmp_path / "app" / "main.py"), 7) == str(Path("app", "main.py")) + ":7"
    assert location("/usr/lib/python3.11/json/encoder.py", 334) == "…/json/encoder.py:334"
    assert location("/srv/app.py", None) == "/srv/app.py"
    assert location("<string>", 3) == "<string>:3"
    assert location(None, 3) == ""
    document = top_json(EXAMPLE, "-n", "0")
    assert all(
        Path(f["file"]).is_absolute() for f in document["functions"] if f["file"].endswith(".py")
    )


# --- convert ---------------------------------------------------------------


@pytest.mark.parametrize(
    "relative", [None, "trace-event/multiprocess.json", "Chrome/65/simple.cpuprofile"]
)
def test_convert_round_trip_keeps_every_number(
    conformance_dir: Path, tmp_path: Path, relative: str | None
) -> None:
    """convert writes speedscope JSON that loads back with the same profiles and weights."""
    file = EXAMPLE if relative is None else conformance_dir / "profiles" / relative
    output = tmp_path / "out.speedscope.json"
    result = run("convert", file, "-o", output)
    assert result.exit_code == 0, result.stderr
    assert str(output) in result.stdout
    original, converted = load(file), load(output)
    assert converted.format == "speedscope"
    assert converted.active_index == original.active_index
    assert [p.name for p in converted.profiles] == [p.name for p in original.profiles]
    for before, after in zip(original.profiles, converted.profiles, strict=True):
        assert after.unit == before.unit
        assert after.total_weight == pytest.approx(before.total_weight, rel=1e-9)
        want = {
            (f.name, f.file): (f.self, f.total) for f in top_functions(before, n=None).functions
        }
        got = {(f.name, f.file): (f.self, f.total) for f in top_functions(after, n=None).functions}
        assert got.keys() == want.keys()
        for key, (self_weight, total_weight) in want.items():
            assert got[key][0] == pytest.approx(self_weight, rel=1e-9, abs=1e-12)
            assert got[key][1] == pytest.approx(total_weight, rel=1e-9, abs=1e-12)


def test_convert_to_stdout(tmp_path: Path) -> None:
    """-o - writes the speedscope document itself to stdout."""
    result = run("convert", EXAMPLE, "-o", "-")
    assert result.exit_code == 0, result.stderr
    document = orjson.loads(result.stdout_bytes)
    assert "speedscope" in document["$schema"]


def test_convert_needs_an_output() -> None:
    """-o is required."""
    assert_clean_failure(run("convert", EXAMPLE), "-o")


# --- bad input -------------------------------------------------------------


def test_format_error_exits_2_without_traceback(conformance_dir: Path) -> None:
    """A file flamesight cannot read: the FormatError message on stderr, exit 2."""
    for invalid in sorted((conformance_dir / "profiles" / "speedscope" / "invalid").iterdir()):
        for command in (
            ["info", invalid],
            ["top", invalid, "--json"],
            ["convert", invalid, "-o", "-"],
        ):
            assert_clean_failure(run(*command), invalid.name, "speedscope")


def test_unknown_format_exits_2(tmp_path: Path) -> None:
    """Bytes that are no profile at all are reported with what flamesight reads."""
    junk = tmp_path / "notes.bin"
    junk.write_bytes(b"\x00\x01\x02 this is not a profile \xff\xfe")
    assert_clean_failure(run("info", junk), "notes.bin", "not a profile")


def test_missing_file_exits_2(tmp_path: Path) -> None:
    """A file that does not exist is named in the message, exit 2."""
    missing = tmp_path / "missing.cpuprofile"
    for command in ("info", "top", "convert"):
        assert_clean_failure(run(command, missing), "missing.cpuprofile", "does not exist")


# --- the installed program -------------------------------------------------


def test_program_top_json_matches_in_process() -> None:
    """The real `flamesight` program prints the same JSON, and nothing on stderr (no progress bar)."""
    completed = run_program("top", EXAMPLE, "--json", "--by", "total", "--start", "200ms")
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    assert orjson.loads(completed.stdout) == top_json(EXAMPLE, "--by", "total", "--start", "200ms")


def test_program_info_and_top_tables() -> None:
    """info and top print tables; with stderr not a terminal nothing is drawn there."""
    info = run_program("info", EXAMPLE)
    assert info.returncode == 0, info.stderr
    assert load(EXAMPLE).active.name in info.stdout
    assert info.stderr == ""
    top = run_program("top", EXAMPLE, "-n", "3")
    assert top.returncode == 0, top.stderr
    assert top_functions(load(EXAMPLE).active, "self", 1).functions[0].name in top.stdout
    assert top.stderr == ""


def test_program_version() -> None:
    """`flamesight --version` works as an installed program."""
    completed = run_program("--version")
    assert completed.returncode == 0
    assert __version__ in completed.stdout


def test_program_errors_exit_2(conformance_dir: Path, tmp_path: Path) -> None:
    """The program's failures: exit 2, message on stderr, no traceback."""
    invalid = next((conformance_dir / "profiles" / "speedscope" / "invalid").iterdir())
    assert_clean_failure(run_program("top", invalid), invalid.name)
    assert_clean_failure(run_program("info", tmp_path / "nope.json"), "nope.json", "does not exist")
    assert_clean_failure(run_program("top", EXAMPLE, "--start", "1 fortnight"), "--start")


def test_program_convert_round_trip(tmp_path: Path) -> None:
    """The program's convert output loads back with the same total."""
    output = tmp_path / "example.speedscope.json"
    completed = run_program("convert", EXAMPLE, "-o", output)
    assert completed.returncode == 0, completed.stderr
    assert load(output).active.total_weight == pytest.approx(load(EXAMPLE).active.total_weight)


# --- progress ---------------------------------------------------------------


def run_on_terminal(*args: str | Path) -> tuple[bytes, subprocess.CompletedProcess[bytes]]:
    """Run the program with stderr on a pseudo-terminal; what it drew there, and the result."""
    if not PROGRAM.is_file():
        pytest.skip(f"{PROGRAM} is not installed")
    controller, terminal = pty.openpty()
    drawn = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        completed = subprocess.run(
            [str(PROGRAM), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=terminal,
            timeout=300,
            check=False,
            env=program_environment(),
        )
    finally:
        os.close(terminal)
        reader.join(timeout=10)
        os.close(controller)
    return bytes(drawn), completed


@pytest.fixture(scope="module")
def slow_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collapsed-stacks file big enough (about 60 MB, 200,000 distinct stacks, each one
    interned on its own) that loading it takes a while, about 2.5 s here."""
    block = "".join(
        f"main;serve_{i % 31};handle_{i % 211};query_{i % 1009};leaf_{i} {i % 13 + 1}\n"
        for i in range(200_000)
    ).encode()
    path = tmp_path_factory.mktemp("slow") / "big.folded"
    path.write_bytes(block * (60_000_000 // len(block)))
    return path


def test_progress_bar_draws_the_load_stages() -> None:
    """Once a load outlasts the delay, the bar shows the load's stage on the console."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    with LoadProgress(console, delay=0.0) as progress:
        deadline = time.monotonic() + 5
        while not progress.shown and time.monotonic() < deadline:
            time.sleep(0.01)
        load(EXAMPLE, progress=progress)
    assert progress.shown
    assert "parsing speedscope" in screen.getvalue()


def test_quick_load_on_a_terminal_draws_nothing() -> None:
    """On a terminal a load shorter than the delay leaves no trace; the table still prints."""
    drawn, completed = run_on_terminal("info", EXAMPLE)
    assert completed.returncode == 0
    assert drawn == b""
    assert load(EXAMPLE).active.name.encode() in completed.stdout


def test_long_load_on_a_terminal_shows_a_progress_bar_but_not_with_json(slow_profile: Path) -> None:
    """A slow load draws a bar on a terminal's stderr, never for --json or when stderr is a pipe."""
    started = time.perf_counter()
    load(slow_profile)
    if time.perf_counter() - started < 2 * SHOW_AFTER_SECONDS:
        pytest.skip("this machine loads the big file too fast for a progress bar to appear")
    drawn, completed = run_on_terminal("top", slow_profile, "-n", "3")
    assert completed.returncode == 0
    assert b"parsing" in drawn
    assert b"leaf_" in completed.stdout
    assert b"parsing" not in completed.stdout
    drawn, completed = run_on_terminal("top", slow_profile, "-n", "3", "--json")
    assert completed.returncode == 0
    assert drawn == b""
    assert orjson.loads(completed.stdout)["functions"]
    piped = run_program("info", slow_profile)
    assert piped.returncode == 0
    assert piped.stderr == ""

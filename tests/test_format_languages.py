"""Importers for language profilers: stackprof, GHC ``-pj``, Papyrus, pyinstrument, Austin, JFR.

Small files written here pin the exact numbers and error messages; real
files written on this machine by pyinstrument and by the JVM's flight
recorder are checked against a reading of our own (the JSON itself, and the
JDK's ``jfr print``). Austin's binary needs a newer C library than this
machine has (``austin-dist`` 4 wants glibc 2.38), so its test builds a file
in Austin's documented text format instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import orjson
import pytest

from flamesight.formats import FormatError, load
from flamesight.model import Profile


def weights(profile: Profile) -> dict[str, tuple[float, float]]:
    """Frame name -> (self, total), names assumed distinct."""
    self_weight, total_weight = profile.frame_weights()
    return {
        profile.frames[i].name: (float(self_weight[i]), float(total_weight[i]))
        for i in range(len(profile.frames))
    }


def stacks(profile: Profile) -> list[tuple[list[str], float]]:
    """Every sample as (frame names root first, weight), in time order."""
    result = []
    for stack, weight in zip(profile.samples.stack, profile.samples.weight, strict=True):
        frames = profile.stacks.frames_of(int(stack))
        result.append(([profile.frames[f].name for f in frames], float(weight)))
    return result


# stackprof


def stackprof(mode: str, **extra: object) -> bytes:
    document = {
        "version": 1.2,
        "mode": mode,
        "interval": 1000,
        "frames": {
            "10": {"name": "<main>", "file": "app.rb", "line": 1},
            "20": {"name": "Object#work", "file": "app.rb", "line": 5},
            "30": {"name": "(garbage collection)"},
            "40": {"file": "app.rb", "line": 9},
        },
        "raw": [2, 10, 20, 2, 1, 30, 1, 2, 10, 40, 1],
        "raw_timestamp_deltas": [900, 1100, 1000, 700],
    }
    document.update(extra)
    return orjson.dumps(document)


@pytest.mark.parametrize(
    ("mode", "unit", "expected"),
    [
        ("wall", "microseconds", [2000.0, 1000.0, 700.0]),
        ("cpu", "microseconds", [2000.0, 1000.0, 1000.0]),
        ("object", "none", [2.0, 1.0, 1.0]),
    ],
)
def test_stackprof_modes(mode: str, unit: str, expected: list[float]) -> None:
    group = load(stackprof(mode), "app.json")
    assert group.format == "stackprof"
    (profile,) = group.profiles
    assert profile.name == "app.json"
    assert profile.unit.value == unit
    assert stacks(profile) == [
        (["<main>", "Object#work"], expected[0]),
        # a lone garbage collection frame sits on the previous stack
        (["<main>", "Object#work", "(garbage collection)"], expected[1]),
        (["<main>", "(unknown)"], expected[2]),
    ]
    assert profile.frames[0] == ("<main>", "app.rb", 1, None)


def test_stackprof_raw_lines_split_frames_by_line() -> None:
    data = stackprof("object", raw_lines=[0, 3, 6, 0, 0, 0, 0, 0, 3, 9, 0])
    (profile,) = load(data).profiles
    assert [(f.name, f.line) for f in (profile.frames[i] for i in range(len(profile.frames)))] == [
        ("<main>", 3),
        ("Object#work", 6),
        ("(garbage collection)", 0),
        ("(unknown)", 9),
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"raw": [2, 10, 99, 1]}, "stackprof JSON, raw[2]: frame id 99 is not in 'frames'"),
        ({"raw": [5, 10, 20]}, "stackprof JSON, raw[0]: a stack of 5 frames and its count"),
        ({"raw_timestamp_deltas": [1]}, "stackprof JSON, raw_timestamp_deltas: 1 deltas"),
        ({"raw": [1, 10, -2]}, "stackprof JSON, raw[2]: negative sample count -2"),
        ({"raw": [1, 10, True]}, "stackprof JSON, raw[2]: expected an integer, got "),
        ({"raw": [1, 10, 2**63]}, "stackprof JSON, raw[2]: expected an integer, got "),
    ],
)
def test_stackprof_errors_name_the_place(change: dict, message: str) -> None:
    with pytest.raises(FormatError) as caught:
        load(stackprof("wall", **change))
    assert str(caught.value).startswith(message)


# GHC -pj


def ghc(tick_interval: int = 1000, child_id: int = 2) -> bytes:
    return orjson.dumps(
        {
            "program": "tiny",
            "arguments": ["tiny"],
            "rts_arguments": ["-pj"],
            "total_ticks": 6,
            "tick_interval": tick_interval,
            "total_alloc": 168,
            "cost_centres": [
                {"id": 1, "label": "MAIN", "module": "MAIN", "src_loc": "<built-in>"},
                {"id": 2, "label": "work", "module": "Main", "src_loc": "Main.hs:3:1-9"},
                {"id": 3, "label": "idle", "module": "Main", "src_loc": "Main.hs:9:1-5"},
            ],
            "profile": {
                "id": 1,
                "entries": 0,
                "alloc": 8,
                "ticks": 1,
                "children": [
                    {"id": child_id, "entries": 2, "alloc": 160, "ticks": 5, "children": []},
                    {"id": 3, "entries": 0, "alloc": 0, "ticks": 0, "children": []},
                ],
            },
        }
    )


def test_ghc_time_and_allocation_profiles() -> None:
    group = load(ghc(), "tiny.prof")
    assert group.format == "ghc_prof"
    assert group.name == "tiny"
    time, allocation = group.profiles
    assert (time.name, time.unit.value) == ("tiny time", "milliseconds")
    assert (allocation.name, allocation.unit.value) == ("tiny allocation", "bytes")
    # children first, then the node's own weight; the node that did nothing is left out
    assert stacks(time) == [(["MAIN.MAIN", "Main.work"], 5.0), (["MAIN.MAIN"], 1.0)]
    assert weights(allocation) == {"MAIN.MAIN": (8.0, 168.0), "Main.work": (160.0, 160.0)}
    assert time.frames[1] == ("Main.work", "Main.hs:3:1-9", None, None)
    assert time.frames[0].file is None  # "<built-in>" is not a file


def test_ghc_ticks_count_the_tick_interval() -> None:
    time = load(ghc(tick_interval=20_000)).profiles[0]
    assert weights(time)["MAIN.MAIN"] == (20.0, 120.0)


def test_ghc_unknown_cost_centre_names_the_node() -> None:
    with pytest.raises(FormatError) as caught:
        load(ghc(child_id=7))
    assert str(caught.value) == (
        "GHC profile JSON, profile.children[0].id: cost centre the number 7 is not in cost_centres"
    )


# Papyrus

PAPYRUS = b"""Script_tiny log opened (PC)
100:PUSH:7:1:None:quest..outer
150:PUSH:7:2:None:quest..inner
150:PUSH:9:1:None:quest..other
150:POP:7:2:None:quest..inner
400:POP:7:1:None:quest..outer
500:PUSH:9:1:None:quest..late
600:POP:9:1:None:quest..late
Log closed
"""


def test_papyrus_events_become_stack_frames() -> None:
    group = load(PAPYRUS, "tiny.log")
    assert group.format == "papyrus"
    (profile,) = group.profiles
    assert profile.unit.value == "milliseconds"
    assert stacks(profile) == [
        (["STACK 7", "quest..outer"], 50.0),
        # the POP of "inner" at its PUSH's time is taken first; "other" opens under
        # its own STACK frame, and the POP of "outer" (not innermost) is ignored
        (["STACK 7", "quest..outer", "STACK 9", "quest..other"], 350.0),
        (["STACK 7", "quest..outer", "STACK 9", "quest..other", "quest..late"], 100.0),
    ]
    assert "quest..inner" in {profile.frames[i].name for i in range(len(profile.frames))}


def test_papyrus_bad_time_names_the_line() -> None:
    with pytest.raises(FormatError) as caught:
        load(b"Script_x log opened (PC)\n" + b"100:PUSH:7:1:None:f\n" * 5 + b"x1:POP:7:1:None:f\n")
    assert str(caught.value) == "Papyrus profiling log, line 7: expected a time, got 'x1'"


# pyinstrument (real files)

WORKLOAD = textwrap.dedent(
    """
    import time


    def leaf(n):
        total = 0
        for i in range(n):
            total += i * i
        return total


    class Worker:
        def run(self):
            return leaf(300_000)


    def main():
        for _ in range(6):
            Worker().run()
            time.sleep(0.01)


    main()
    """
)


def run_pyinstrument(tmp_path: Path, renderer: str) -> Path:
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD)
    output = tmp_path / f"run.{renderer}"
    command = [sys.executable, "-m", "pyinstrument", "-r", renderer, "-o", str(output), str(script)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return output


def test_pyinstrument_session_file(tmp_path: Path) -> None:
    path = run_pyinstrument(tmp_path, "session")
    session = json.loads(path.read_text())
    group = load(path)
    assert group.format == "pyinstrument"
    (profile,) = group.profiles
    assert profile.unit.value == "seconds"
    records = session["frame_records"]
    assert len(profile.samples) == len(records)
    assert profile.total_weight == pytest.approx(sum(time for _, time in records), rel=1e-12)
    # our own reading: the time of records whose innermost frame is `leaf`
    leaf_time = sum(time for frames, time in records if frames[-1].split("\x00")[0] == "leaf")
    in_run = sum(time for frames, time in records if any("\x01cWorker" in f for f in frames))
    got = weights(profile)
    assert leaf_time > 0
    assert got["leaf"][0] == pytest.approx(leaf_time, rel=1e-12)
    assert got["Worker.run"][1] == pytest.approx(in_run, rel=1e-12)
    assert "MainThread" not in got  # the stem pyinstrument trims


def test_pyinstrument_json_renderer_file(tmp_path: Path) -> None:
    path = run_pyinstrument(tmp_path, "json")
    document = json.loads(path.read_text())
    (profile,) = load(path).profiles
    assert profile.total_weight == pytest.approx(document["root_frame"]["time"], abs=1e-5)
    # our own reading: total time per function over the tree (no recursion here)
    totals: Counter[str] = Counter()
    pending = [document["root_frame"]]
    while pending:
        node = pending.pop()
        name = node["function"]
        if node.get("class_name"):
            name = f"{node['class_name']}.{name}"
        totals[name] += node["time"]
        pending.extend(node["children"])
    got = weights(profile)
    for name in ("main", "Worker.run", "leaf"):
        assert got[name][1] == pytest.approx(totals[name], abs=1e-5), name


def test_pyinstrument_bad_record_names_the_place() -> None:
    data = orjson.dumps(
        {
            "sample_count": 1,
            "start_call_stack": [],
            "target_description": "x",
            "frame_records": [[["f\x00a.py\x001"], -1]],
        }
    )
    with pytest.raises(FormatError) as caught:
        load(data)
    assert str(caught.value) == (
        "pyinstrument session/JSON, frame_records[0][1]: "
        "expected a non-negative number, got the number -1"
    )


# Austin (built in its documented format: the binary cannot run here)

AUSTIN = b"""# austin: 3.6.0
# interval: 100
# mode: wall

P42;T0:7f01;/app/main.py:<module>:1;/app/main.py:work:12 1042
P42;T0:7f01;/app/main.py:<module>:1;/app/main.py:work:12;C:\\lib\\x.py:leaf:3 500
P42;T0:7f02 100
P42;T0:7f01;/app/main.py:<module>:1 8

# duration: 1650
"""


def test_austin_threads_and_frames() -> None:
    group = load(AUSTIN, "run.austin")
    assert group.format == "austin"
    main, other = group.profiles
    assert (main.name, other.name) == ("process 42 thread 0:7f01", "process 42 thread 0:7f02")
    assert main.unit.value == "microseconds"
    assert weights(main) == {
        "<module>": (8.0, 1550.0),
        "work": (1042.0, 1542.0),
        "leaf": (500.0, 500.0),
    }
    assert main.frames[2] == ("leaf", "C:\\lib\\x.py", 3, None)
    assert other.total_weight == 100.0 and stacks(other) == [([], 100.0)]
    assert main.metadata["mode"] == "wall" and main.metadata["duration"] == "1650"


def test_austin_memory_and_full_modes() -> None:
    memory = load(b"# mode: memory\nP1;T1;a.py:f:1 64\nP1;T1;a.py:f:1 -32\n").profiles[0]
    assert (memory.unit.value, memory.total_weight) == ("bytes", 64.0)
    full = load(b"# mode: full\nP1;T1;a.py:f:1 10,0,-64\nP1;T1;a.py:g:2 5,1,128\n").profiles[0]
    assert (full.unit.value, full.total_weight) == ("microseconds", 15.0)


def test_plain_collapsed_stays_collapsed() -> None:
    assert load(b"main;work 3\nmain 1\n").format == "collapsed"
    assert load(b"# generated\nP1;work 3\n").format == "collapsed"


def test_austin_bad_line_names_it() -> None:
    with pytest.raises(FormatError) as caught:
        load(b"# mode: wall\nP1;T1;a.py:f:1 10\nnot a sample\n")
    assert str(caught.value) == (
        "Austin, line 3: expected 'P<pid>;T<thread>;file:function:line;... <metric>', "
        "got 'not a sample'"
    )


# Java Flight Recorder (a real recording made here)

JAVA_PROGRAM = textwrap.dedent(
    """
    public class Spin {
        static long work(int n) {
            long s = 0;
            for (int i = 0; i < n; i++) s += Long.toString(i).hashCode();
            return s;
        }

        public static void main(String[] args) {
            long end = System.currentTimeMillis() + 1500;
            long t = 0;
            while (System.currentTimeMillis() < end) t += work(100000);
            System.out.println(t);
        }
    }
    """
)


@pytest.mark.profiler
@pytest.mark.timeout(180)
def test_jfr_recording_made_here(tmp_path: Path) -> None:
    java, jfr = shutil.which("java"), shutil.which("jfr")
    if not java or not jfr:
        pytest.skip("java and jfr (JDK 11+) are not installed")
    source = tmp_path / "Spin.java"
    source.write_text(JAVA_PROGRAM)
    recording = tmp_path / "spin.jfr"
    subprocess.run(
        [java, f"-XX:StartFlightRecording=filename={recording},settings=profile", str(source)],
        check=True,
        capture_output=True,
        timeout=150,
        cwd=tmp_path,
    )
    printed = subprocess.run(
        [jfr, "print", "--json", "--events", "jdk.ExecutionSample", str(recording)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    events = json.loads(printed.stdout)["recording"]["events"]
    leaves: Counter[str] = Counter()
    for event in events:
        frames = event["values"]["stackTrace"]["frames"]
        if frames:
            method = frames[0]["method"]
            leaves[f"{method['type']['name'].replace('/', '.')}:{method['name']}"] += 1
    group = load(recording)
    assert group.format == "jfr"
    without, with_native = group.profiles
    assert without.name == "Without native calls" and with_native.name == "With native calls"
    assert without.total_weight == len(events) > 0
    assert with_native.total_weight >= without.total_weight
    got = weights(without)
    for name, count in leaves.most_common(5):
        assert got[name][0] == count, name
    assert got["Spin:main"][1] > 0


def test_jfr_truncated_file_is_a_format_error() -> None:
    heavy = (
        Path(__file__).resolve().parents[2]
        / "shared/conformance/profiles/java-flight-recorder/heavy.jfr"
    )
    if not heavy.is_file():
        pytest.skip("conformance corpus not found")
    data = heavy.read_bytes()
    with pytest.raises(FormatError) as caught:
        load(data[:1000])
    assert str(caught.value) == (
        f"Java Flight Recorder, byte 8: chunk size {len(data)} does not fit in the file"
    )
    with pytest.raises(FormatError, match=r"^Java Flight Recorder, byte \d+: "):
        load(data[:68] + bytes(len(data) - 68))

"""Real profilers on this machine write files; flamesight's numbers must match a reading of our own.

Each test runs a profiler (py-spy, pyinstrument, Node's ``--cpu-prof``,
cProfile, Linux perf) on a small program with nested calls, recursion and a
hot loop, loads the file with `flamesight.formats.load`, and compares the
totals and per-function weights with a small reader written here, separately
from the importers, following the format as speedscope (the reference
importer) reads it. A profiler that is missing or cannot run here (ptrace or
perf_event permissions in a container) skips its test with the reason.
"""

from __future__ import annotations

import itertools
import json
import pstats
import re
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from flamesight.formats import FORMAT_MODULES, load
from flamesight.model import Profile, ProfileGroup

pytestmark = pytest.mark.profiler

VENV_BIN = Path(sys.executable).parent
FORMATS_DIR = Path(__file__).resolve().parents[1] / "src" / "flamesight" / "formats"
RUN_SECONDS = 1.0

PYTHON_PROGRAM = textwrap.dedent(
    f"""
    import time


    def fibonacci(n):
        return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)


    def hot_loop(count):
        total = 0
        for i in range(count):
            total += i * i
        return total


    def work():
        fibonacci(16)
        hot_loop(200_000)


    def main():
        deadline = time.perf_counter() + {RUN_SECONDS}
        while time.perf_counter() < deadline:
            work()


    if __name__ == "__main__":
        main()
    """
)

NODE_PROGRAM = textwrap.dedent(
    """
    function fibonacci(n) { return n < 2 ? n : fibonacci(n - 1) + fibonacci(n - 2); }
    function hotLoop(count) { let total = 0; for (let i = 0; i < count; i++) total += (i * i) % 7; return total; }
    function work() { fibonacci(22); hotLoop(3e6); }
    function main() { const deadline = Date.now() + 600; while (Date.now() < deadline) work(); }
    main();
    """
)


@pytest.fixture(autouse=True)
def every_importer() -> None:
    """`load` imports every importer; skip until they all exist."""
    missing = [n for n in FORMAT_MODULES if not (FORMATS_DIR / f"{n}.py").is_file()]
    if missing:
        pytest.skip(f"load needs every importer; missing: {', '.join(missing)}")


def run(command: list[str], cwd: Path, what: str, timeout: float = 30) -> None:
    """Run a profiler, skipping the test with its own words when it cannot run here."""
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        pytest.skip(f"{what} is not installed ({command[0]})")
    if done.returncode != 0:
        pytest.skip(
            f"{what} cannot run here (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-400:]}"
        )


def python_program(directory: Path) -> Path:
    script = directory / "program.py"
    script.write_text(PYTHON_PROGRAM)
    return script


def frame_key(profile: Profile, frame: int) -> tuple[str, str | None, int | None]:
    name, file, line, _ = profile.frames[frame]
    return name, file, line


def self_by(profile: Profile, key=frame_key) -> Counter:
    """Our self weight per frame key (frames with the same key summed)."""
    self_weight, _ = profile.frame_weights()
    result: Counter = Counter()
    for frame in range(len(profile.frames)):
        if self_weight[frame]:
            result[key(profile, frame)] += float(self_weight[frame])
    return result


def assert_counters_close(ours: Counter, theirs: Counter, rel: float = 1e-9) -> None:
    keys = {k for k in ours | theirs if ours[k] or theirs[k]}
    for key in keys:
        assert ours[key] == pytest.approx(theirs[key], rel=rel, abs=1e-9), key


# py-spy


def read_collapsed(text: str) -> tuple[float, Counter]:
    """Total count and count per leaf frame text, as speedscope reads folded stacks.

    A line is ``<stack> <count>`` (``^(.*) (\\d+)$``); an empty stack is one
    frame with an empty name.
    """
    total = 0
    leaves: Counter = Counter()
    for line in text.splitlines():
        match = re.fullmatch(r"(.*) (\d+)", line)
        if match:
            count = int(match[2])
            total += count
            leaves[match[1].split(";")[-1]] += count
    return total, leaves


def record_py_spy(directory: Path, output_format: str, output: Path) -> None:
    py_spy = VENV_BIN / "py-spy"
    if not py_spy.is_file():
        found = shutil.which("py-spy")
        if not found:
            pytest.skip("py-spy is not installed")
        py_spy = Path(found)
    script = python_program(directory)
    options = ["-r", "200", "-d", "2", "-f", output_format, "-o", str(output)]
    command = [str(py_spy), "record", *options, "--", sys.executable, str(script)]
    run(command, directory, "py-spy")


def test_py_spy_raw_collapsed_stacks(tmp_path: Path) -> None:
    output = tmp_path / "py-spy.txt"
    record_py_spy(tmp_path, "raw", output)
    total, leaves = read_collapsed(output.read_text())
    group = load(output)
    assert group.format == "collapsed"
    profile = group.active
    assert total > 50
    # py-spy writes samples without a Python frame as " <count>": speedscope keeps
    # them as a frame with an empty name
    assert profile.total_weight == total, f"{leaves['']} samples with an empty stack"
    assert_counters_close(self_by(profile, lambda p, f: p.frames[f].name), leaves)
    assert any("hot_loop (program.py:" in leaf for leaf in leaves)


def test_py_spy_speedscope(tmp_path: Path) -> None:
    output = tmp_path / "py-spy.speedscope.json"
    record_py_spy(tmp_path, "speedscope", output)
    document = json.loads(output.read_text())
    frames = document["shared"]["frames"]
    group = load(output)
    assert group.format == "speedscope"
    assert [p.name for p in group.profiles] == [p["name"] for p in document["profiles"]]
    for ours, theirs in zip(group.profiles, document["profiles"], strict=True):
        assert ours.unit == theirs["unit"]
        assert ours.total_weight == pytest.approx(sum(theirs["weights"]), rel=1e-9)
        leaves: Counter = Counter()
        for sample, weight in zip(theirs["samples"], theirs["weights"], strict=True):
            if sample:
                frame = frames[sample[-1]]
                leaves[frame["name"], frame.get("file"), frame.get("line")] += weight
        assert_counters_close(self_by(ours), leaves)


# pyinstrument


def evented_weights(profile: dict, frames: list[dict]) -> tuple[float, float, Counter, Counter]:
    """Span, busy time, self and total per frame key from a speedscope evented profile.

    Total counts a frame once while it is open anywhere on the stack.
    """
    events = profile["events"]
    stack: list[tuple] = []
    self_time: Counter = Counter()
    total_time: Counter = Counter()
    busy = 0.0
    for event, following in itertools.pairwise(events):
        frame = frames[event["frame"]]
        key = (frame["name"], frame.get("file"), frame.get("line"))
        if event["type"] == "O":
            stack.append(key)
        else:
            assert stack and stack[-1] == key
            stack.pop()
        span = following["at"] - event["at"]
        if stack and span > 0:
            busy += span
            self_time[stack[-1]] += span
            for open_key in set(stack):
                total_time[open_key] += span
    return events[-1]["at"] - events[0]["at"], busy, self_time, total_time


def test_pyinstrument_speedscope_renderer(tmp_path: Path) -> None:
    script = python_program(tmp_path)
    output = tmp_path / "pyinstrument.speedscope.json"
    run(
        [sys.executable, "-m", "pyinstrument", "-r", "speedscope", "-o", str(output), str(script)],
        tmp_path,
        "pyinstrument",
    )
    document = json.loads(output.read_text())
    group = load(output)
    assert group.format == "speedscope"
    assert len(group.profiles) == len(document["profiles"])
    for ours, theirs in zip(group.profiles, document["profiles"], strict=True):
        events = theirs["events"]
        assert len(events) >= 8
        assert sum(e["type"] == "O" for e in events) == sum(e["type"] == "C" for e in events)
        span, busy, self_time, total_time = evented_weights(theirs, document["shared"]["frames"])
        assert ours.total_weight == pytest.approx(span, rel=1e-9)
        ours_busy = float(ours.samples.weight[ours.samples.stack >= 0].sum())
        assert ours_busy == pytest.approx(busy, rel=1e-9)
        assert_counters_close(self_by(ours), self_time)
        _, our_totals = ours.frame_weights()
        totals: Counter = Counter()
        for frame in range(len(ours.frames)):
            totals[frame_key(ours, frame)] += float(our_totals[frame])
        assert_counters_close(totals, total_time)
        assert any(key[0] == "hot_loop" for key in self_time)


# Node


def test_node_cpu_prof(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    (tmp_path / "program.js").write_text(NODE_PROGRAM)
    run([node, "--cpu-prof", "--cpu-prof-dir=profiles", "program.js"], tmp_path, "node")
    (output,) = (tmp_path / "profiles").glob("*.cpuprofile")
    document = json.loads(output.read_text())
    nodes = {n["id"]: n for n in document["nodes"]}
    samples = document["samples"]
    times = document["startTime"] + np.cumsum(document["timeDeltas"], dtype=np.float64)
    # each sample lasts until the next one; the last gets no time
    weights = np.append(np.diff(times), 0.0)
    self_by_function: Counter = Counter()
    for node_id, weight in zip(samples, weights, strict=True):
        self_by_function[nodes[node_id]["callFrame"]["functionName"]] += float(weight)
    group = load(output)
    assert group.format == "chrome-cpuprofile"
    profile = group.active
    assert profile.unit == "microseconds"
    assert profile.total_weight == pytest.approx(float(sum(document["timeDeltas"])), rel=1e-9)
    ours = self_by(profile, lambda p, f: p.frames[f].name)
    for function in ("hotLoop", "fibonacci", "work"):
        assert ours[function] == pytest.approx(self_by_function[function], rel=1e-9, abs=1e-6)
    assert self_by_function["hotLoop"] > 0


# cProfile


def test_cprofile(tmp_path: Path) -> None:
    script = python_program(tmp_path)
    output = tmp_path / "program.prof"
    run([sys.executable, "-m", "cProfile", "-o", str(output), str(script)], tmp_path, "cProfile")
    reference = pstats.Stats(str(output))
    group = load(output)
    assert group.format == "pstats"
    profile = group.active
    assert profile.total_weight == pytest.approx(reference.total_tt, rel=1e-9)
    self_weight, total_weight = profile.frame_weights()
    index = {frame_key(profile, f): f for f in range(len(profile.frames))}
    slack = 1e-9 * reference.total_tt
    for (file, line, name), (_, _, tottime, cumtime, _) in reference.stats.items():
        frame = index[name, None if file == "~" else file, line or None]
        assert self_weight[frame] == pytest.approx(tottime, rel=1e-9, abs=1e-15)
        assert total_weight[frame] <= cumtime + slack
    top = max(range(len(profile.frames)), key=lambda f: self_weight[f])
    assert profile.frames[top].name == "hot_loop"


# Linux perf


def read_perf_script(text: str) -> tuple[dict[tuple, list[float]], Counter]:
    """Timestamps per thread and samples per leaf symbol, read as speedscope reads ``perf script``.

    Events are separated by blank lines; the first line names the command,
    thread, time and event type (only the first event type counts); each
    stack line is ``address symbol+offset (file)``, innermost first.
    """
    times: dict[tuple, list[float]] = {}
    per_leaf: Counter = Counter()
    event_type = None
    for block in text.split("\n\n"):
        lines = block.split("\n")
        header = re.match(r"^(\S.+?)\s+(\d+)(?:/?(\d+))?\s+", lines[0])
        stamp = re.search(r"\s+(\d+\.\d+):\s+", lines[0])
        if not header or not stamp:
            continue
        kind = re.search(r"(\S+):\s*$", lines[0])
        kind_name = kind[1] if kind else ""
        if event_type is not None and kind_name != event_type:
            continue
        event_type = kind_name
        times.setdefault((header[1], header[3] or header[2]), []).append(float(stamp[1]))
        for line in lines[1:]:
            frame = re.match(r"^\s*(\w+)\s*(.+) \((\S*)\)", line)
            if frame:
                symbol = re.sub(r"\+0x[\da-f]+$", "", frame[2])
                per_leaf["??? (" + frame[3] + ")" if symbol == "[unknown]" else symbol] += 1
                break
    return times, per_leaf


def test_perf_record_and_script(tmp_path: Path) -> None:
    """Each thread spans its first to last sample; every leaf has perf's sample count."""
    perf = shutil.which("perf")
    if perf is None:
        pytest.skip("perf is not installed")
    script = python_program(tmp_path)
    data = tmp_path / "perf.data"
    run(
        [perf, "record", "-g", "-o", str(data), "--", sys.executable, str(script)],
        tmp_path,
        "perf record",
    )
    done = subprocess.run(
        [perf, "script", "-i", str(data)], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0 or not done.stdout.strip():
        pytest.skip(f"perf script cannot run here: {done.stderr.strip()[-400:]}")
    output = tmp_path / "perf.txt"
    output.write_text(done.stdout)
    times, per_leaf = read_perf_script(done.stdout)
    group: ProfileGroup = load(output)
    assert group.format == "perf_script"
    spans = sorted(max(t) - min(t) if len(t) > 1 else 1.0 for t in times.values())
    assert sorted(p.total_weight for p in group.profiles) == pytest.approx(spans, rel=1e-9)
    assert sorted(len(p.samples) for p in group.profiles) == sorted(len(t) for t in times.values())
    ours: Counter = Counter()
    for profile in group.profiles:
        leaves = profile.stacks.frame[profile.samples.stack[profile.samples.stack >= 0]]
        ours.update(profile.frames.name[leaves].tolist())
    assert sum(per_leaf.values()) > 50
    assert ours == per_leaf

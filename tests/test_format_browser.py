"""Firefox (Gecko) profiles, Safari recordings, V8 heap profiles and V8 ``--prof`` logs.

Small files written here check exact weights, frame naming and error
messages; files produced by the real ``node --heap-prof``, ``node --prof``
and ``node --prof-process --preprocess`` on a small program are checked
against an independent reading of the same files.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from flamesight.formats import FormatError, load
from flamesight.formats.firefox import parse_location
from flamesight.formats.v8_prof import code_frame
from flamesight.model import Profile, Unit

NODE = shutil.which("node") or ("/usr/bin/node" if Path("/usr/bin/node").is_file() else None)
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


def weights_by_name(profile: Profile) -> dict[str, tuple[float, float]]:
    """(self, total) per frame name, frames of one name added up (totals of distinct frames)."""
    self_weight, total_weight = profile.frame_weights()
    table: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for index in range(len(profile.frames)):
        row = table[profile.frames[index].name]
        row[0] += float(self_weight[index])
        row[1] += float(total_weight[index])
    return {name: (s, t) for name, (s, t) in table.items()}


def stacks_in_order(profile: Profile) -> list[tuple[str, float]]:
    """Each sample as ("a;b;c", weight), in time order ("" for idle)."""
    result = []
    for stack, weight in zip(
        profile.samples.stack.tolist(), profile.samples.weight.tolist(), strict=True
    ):
        names = []
        while stack >= 0:
            names.append(profile.frames[int(profile.stacks.frame[stack])].name)
            stack = int(profile.stacks.parent[stack])
        result.append((";".join(reversed(names)), weight))
    return result


# Firefox


def gecko_thread(name: str, samples: list, stacks: list, locations: list[str]) -> dict:
    """A thread in the Gecko format: one frame per location, strings in order."""
    return {
        "name": name,
        "samples": {"schema": {"stack": 0, "time": 1, "responsiveness": 2}, "data": samples},
        "stackTable": {"schema": {"prefix": 0, "frame": 1}, "data": stacks},
        "frameTable": {
            "schema": {"location": 0, "implementation": 1, "line": 3},
            "data": [[index, None, None, None] for index in range(len(locations))],
        },
        "stringTable": locations,
    }


LOCATIONS = [
    "main (file:///app.js:1:0)",
    "js::RunScript",
    "leaf (file:///app.js:7:4)",
    "forEach (self-hosted:12:3)",
    "inner (resource://gre/modules/x.js:3)",
]
# stacks: 0 main, 1 main>RunScript, 2 main>RunScript>leaf, 3 main>forEach, 4 main>forEach>inner
STACKS = [[None, 0], [0, 1], [1, 2], [0, 3], [3, 4]]


def test_gecko_profile_weights_follow_speedscope() -> None:
    """Each stack lasts until the next sample; dropped frames vanish; idle from zero."""
    thread = gecko_thread(
        "GeckoMain",
        [[2, 2.0, 0], [2, 3.0, 0], [0, 5.0, 0], [4, 6.5, 0], [None, 7.0, 0], [2, 9.0, 0]],
        STACKS,
        LOCATIONS,
    )
    document = {"meta": {"version": 9, "startTime": 100.0}, "libs": [], "threads": [thread]}
    group = load(orjson.dumps(document), "gecko.json")
    assert group.format == "firefox"
    (profile,) = group.profiles
    assert profile.name == "gecko.json"
    assert profile.unit is Unit.MILLISECONDS
    assert stacks_in_order(profile) == [
        ("", 2.0),
        ("main;leaf", 1.0),
        ("main;leaf", 2.0),
        ("main", 1.5),
        ("main", 0.5),
        ("", 2.0),
    ]
    assert weights_by_name(profile) == {"main": (2.0, 5.0), "leaf": (3.0, 3.0)}
    leaf = next(
        profile.frames[i] for i in range(len(profile.frames)) if profile.frames[i].name == "leaf"
    )
    assert (leaf.file, leaf.line, leaf.col) == ("file:///app.js", 7, 5)


def test_gecko_threads_become_profiles_and_main_thread_is_shown_first() -> None:
    """Several threads (child processes too) are profiles; GeckoMain is the active one."""
    worker = gecko_thread("DOM Worker", [[0, 1.0], [0, 2.0]], STACKS, LOCATIONS)
    main = gecko_thread("GeckoMain", [[0, 1.0], [2, 4.0], [0, 5.0]], STACKS, LOCATIONS)
    child = {
        "meta": {"startTime": 110.0},
        "threads": [gecko_thread("GeckoMain", [[0, 0.0], [0, 1.0]], STACKS, LOCATIONS)],
    }
    document = {
        "meta": {"startTime": 100.0},
        "libs": [],
        "threads": [worker, main],
        "processes": [child],
    }
    group = load(orjson.dumps(document), "many.json")
    assert [p.name for p in group.profiles] == ["DOM Worker", "GeckoMain", "GeckoMain (2)"]
    assert group.active_index == 1
    assert stacks_in_order(group.profiles[1]) == [("", 1.0), ("main", 3.0), ("main;leaf", 1.0)]
    # the child process's clock starts 10 ms after the parent's
    assert group.profiles[2].samples.time.tolist() == [0.0, 10.0]


def test_devtools_recording_wraps_the_gecko_profile() -> None:
    """The DevTools performance panel's file holds the Gecko profile under "profile"."""
    thread = gecko_thread("GeckoMain", [[0, 1.0], [0, 3.0]], STACKS, LOCATIONS)
    document = {
        "label": "",
        "duration": 3.0,
        "markers": [],
        "frames": [],
        "memory": [],
        "ticks": [],
        "allocations": {"sites": [], "timestamps": [], "frames": [], "sizes": []},
        "profile": {"meta": {"startTime": 0}, "libs": [], "threads": [thread]},
        "fileType": "",
        "version": 2,
    }
    (profile,) = load(orjson.dumps(document), "rec.json").profiles
    assert weights_by_name(profile) == {"main": (2.0, 2.0)}


@pytest.mark.parametrize(
    ("location", "fields"),
    [
        ("a (file:///x.js:1:0)", ("a", "file:///x.js", 1, 1)),
        ("a (file:///x.js:12)", ("a", "file:///x.js", 12, None)),
        ("a (file:///x.js)", ("a", "file:///x.js", None, None)),
        ("a b  (http://h:80/x.js:3:4)", ("a b ", "http://h:80/x.js", 3, 5)),
        ("f (x.js:1:2:3)", ("f", "x.js:1", 2, 4)),
        ("js::RunScript", None),
        ("g (resource://gre/x.js:1)", None),
        ("h (self-hosted:2:1)", None),
        ("h (self-hosted)", None),
        ("broken (x.js:1", None),
        ("(x.js:1)", None),
    ],
)
def test_gecko_locations_are_read_as_speedscope_reads_them(location: str, fields: tuple) -> None:
    """Name, file, line and 1-based column from "name (file:line:col)"; Firefox internals dropped."""
    assert parse_location(location) == fields


def test_gecko_long_hostile_location_is_read_in_linear_time() -> None:
    """A location full of " (" does not make the reading quadratic."""
    location = " (" * 200_000 + "x)"
    assert parse_location(location) == (" (" * 199_999, "x", None, None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t["samples"]["data"].append([9, 5.0]),
            "Firefox profiler (Gecko) JSON, $.threads[0].samples.data[2][0]: "
            "expected a stack index below 5, got the number 9",
        ),
        (
            lambda t: t["samples"]["data"].append([-1, 5.0]),
            "Firefox profiler (Gecko) JSON, $.threads[0].samples.data[2][0]: "
            "expected a stack index below 5, got the number -1",
        ),
        (
            lambda t: t["samples"]["data"].append([0, "later"]),
            "Firefox profiler (Gecko) JSON, $.threads[0].samples.data[2][1]: "
            "expected a time, got the string 'later'",
        ),
        (
            lambda t: t["stackTable"]["data"].__setitem__(0, [1, 0]),
            "Firefox profiler (Gecko) JSON, $.threads[0].stackTable.data[1]: "
            "the stack prefixes form a cycle",
        ),
        (
            lambda t: t["frameTable"]["data"].__setitem__(0, [99]),
            "Firefox profiler (Gecko) JSON, $.threads[0].frameTable.data[0][0]: "
            "expected a string-table index below 5, got the number 99",
        ),
        (
            lambda t: t.pop("stringTable"),
            "Firefox profiler (Gecko) JSON, $.threads[0].stringTable: expected a list, got null",
        ),
    ],
)
def test_gecko_errors_name_the_place(change, message: str) -> None:
    """Bad tables raise a FormatError with the JSON path."""
    thread = gecko_thread("GeckoMain", [[2, 1.0], [0, 2.0]], STACKS, LOCATIONS)
    change(thread)
    document = {"meta": {"startTime": 0}, "libs": [], "threads": [thread]}
    with pytest.raises(FormatError) as caught:
        load(orjson.dumps(document))
    assert str(caught.value) == message


def test_processed_firefox_profile_is_refused_with_a_reason() -> None:
    """profiler.firefox.com's processed format says what to save instead."""
    document = {
        "meta": {"preprocessedProfileVersion": 40, "startTime": 0},
        "libs": [],
        "threads": [],
    }
    with pytest.raises(FormatError, match=r"processed profile from profiler\.firefox\.com"):
        load(orjson.dumps(document))


def test_deep_gecko_stack_does_not_recurse() -> None:
    """A 200,000-deep prefix chain is walked without recursion."""
    depth = 200_000
    stacks = [[None, 0]] + [[index, 0] for index in range(depth - 1)]
    thread = gecko_thread("GeckoMain", [[depth - 1, 0.0], [0, 1.0]], stacks, ["f (a.js:1)"])
    document = {"meta": {"startTime": 0}, "libs": [], "threads": [thread]}
    (profile,) = load(orjson.dumps(document)).profiles
    assert weights_by_name(profile) == {"f": (1.0, 1.0)}


# Safari


def safari_recording(traces: list, durations: list) -> bytes:
    """A Web Inspector recording with these samples."""
    return orjson.dumps(
        {
            "version": 1,
            "recording": {
                "displayName": "Timeline Recording 1",
                "startTime": 0.0,
                "instrumentTypes": ["timeline-record-type-script"],
                "records": [],
                "sampleStackTraces": traces,
                "sampleDurations": durations,
            },
            "overview": {},
        }
    )


def test_safari_samples_end_to_end_with_idle_gaps() -> None:
    """Innermost-first frames, durations in seconds, a gap over 2 ms is idle."""
    leaf = {"name": "leaf", "url": "file:///a/app.js", "line": 4, "column": 9}
    anonymous = {"name": "", "url": "file:///a/app.js", "line": 1, "column": 1}
    traces = [
        {"timestamp": 1.000, "stackFrames": [leaf, anonymous]},
        {"timestamp": 1.001, "stackFrames": [anonymous]},
        {"timestamp": 1.011, "stackFrames": [leaf, anonymous]},
        {"timestamp": 1.012, "stackFrames": [{"name": "", "url": "", "line": 0, "column": 0}]},
    ]
    group = load(safari_recording(traces, [0.001, 0.001, 0.002, 0.001]), "rec.json")
    assert group.format == "safari"
    assert group.name == "Timeline Recording 1"
    (profile,) = group.profiles
    assert profile.unit is Unit.SECONDS
    got = stacks_in_order(profile)
    assert [stack for stack, _ in got] == [
        "(anonymous app.js:1);leaf",
        "(anonymous app.js:1)",
        "",
        "(anonymous app.js:1);leaf",
        "(anonymous)",
    ]
    assert [round(weight, 9) for _, weight in got] == [0.001, 0.001, 0.008, 0.002, 0.001]


def test_safari_errors_name_the_place() -> None:
    """Too few durations, and a bad frame field, are reported with their JSON path."""
    frame = {"name": "f", "url": "a.js", "line": 1, "column": 1}
    with pytest.raises(FormatError) as caught:
        load(safari_recording([{"timestamp": 1.0, "stackFrames": [frame]}], []))
    assert str(caught.value) == (
        "Safari timeline recording JSON, $.recording.sampleDurations: 0 durations for 1 samples"
    )
    bad = {"name": "f", "url": "a.js", "line": "one", "column": 1}
    with pytest.raises(FormatError) as caught:
        load(safari_recording([{"timestamp": 1.0, "stackFrames": [frame, bad]}], [0.001]))
    assert str(caught.value) == (
        "Safari timeline recording JSON, $.recording.sampleStackTraces[0].stackFrames[1].line: "
        "expected a 32-bit integer, got the string 'one'"
    )


# V8 heap profiles


def heap_node(name: str, url: str, line: int, size: int, children: list) -> dict:
    """A node of a sampling heap profile."""
    call_frame = {"functionName": name, "scriptId": "1", "url": url, "lineNumber": line}
    call_frame["columnNumber"] = 4
    return {"callFrame": call_frame, "selfSize": size, "id": 0, "children": children}


def test_heap_profile_self_sizes_in_bytes() -> None:
    """Every node weighs its selfSize; the root frame stays; anonymous functions are named."""
    tree = heap_node(
        "(root)",
        "",
        -1,
        0,
        [
            heap_node(
                "main", "/srv/app.js", 10, 100, [heap_node("", "/srv/lib/util.js", 3, 28, [])]
            ),
            heap_node("main", "/srv/app.js", 10, 0, []),
        ],
    )
    group = load(orjson.dumps({"head": tree, "samples": []}), "Heap.heapprofile")
    assert group.format == "chrome-heapprofile"
    (profile,) = group.profiles
    assert profile.unit is Unit.BYTES
    assert stacks_in_order(profile) == [
        ("(root);main", 100.0),
        ("(root);main;(anonymous util.js:3)", 28.0),
    ]
    assert weights_by_name(profile)["(root)"] == (0.0, 128.0)
    root = profile.frames[0]
    assert (root.name, root.file, root.line, root.col) == ("(root)", None, None, 4)


def test_heap_profile_errors_and_deep_trees() -> None:
    """A bad selfSize names its path; a tree as deep as the JSON reader allows is read."""
    tree = heap_node("(root)", "", -1, 0, [heap_node("f", "a.js", 1, 0, [])])
    tree["children"][0]["selfSize"] = "big"
    with pytest.raises(FormatError) as caught:
        load(orjson.dumps({"head": tree}))
    assert str(caught.value) == (
        "Chrome/Node .heapprofile, $.head.children[0].selfSize: "
        "expected a byte count, got the string 'big'"
    )
    node = heap_node("leaf", "a.js", 2, 8, [])
    text = orjson.dumps(node)
    for _ in range(400):  # orjson refuses documents nested over 1,024 levels
        text = (
            b'{"callFrame": {"functionName": "f", "url": "a.js"}, "selfSize": 0, "children": [%s]}'
            % text
        )
    (profile,) = load(b'{"head": %s}' % text).profiles
    assert weights_by_name(profile) == {"f": (0.0, 8.0), "leaf": (8.0, 8.0)}


# V8 --prof


@pytest.mark.parametrize(
    ("code", "fields"),
    [
        (("JS", "leaf /tmp/a.js:3:14"), ("leaf", "/tmp/a.js", 3, 14)),
        (("JS", " /tmp/a.js:1:1"), ("(anonymous a.js:1)", "/tmp/a.js", 1, 1)),
        (("JS", "~f /a/b-c.js:2:3"), ("f", "/a/b-c.js", 2, 3)),
        (("JS", "*fn node:internal/x:1:2"), ("*fn node:internal/x:1:2", None, None, None)),
        (("JS", "no location"), ("no location", None, None, None)),
        (
            ("CPP", "T v8::internal::Heap::Scavenge(int)"),
            ("(c++) v8::internal::Heap::Scavenge", None, None, None),
        ),
        (("SHARED_LIB", "/usr/bin/node"), ("(LIB) /usr/bin/node", None, None, None)),
        (("CODE", "CallFunction", "Builtin"), ("(builtin) CallFunction", None, None, None)),
        (("CODE", "Add", "BytecodeHandler"), ("(bytecode) ~Add", None, None, None)),
        (("CODE", "LoadIC", "Handler"), ("(IC) LoadIC", None, None, None)),
        (("CODE", "x", "Eval"), ("x", None, None, None)),
        (("Other", "y"), ("(Other) y", None, None, None)),
    ],
)
def test_v8_code_names_follow_speedscope(code: tuple, fields: tuple) -> None:
    """Code entries are named by type as speedscope names them."""
    assert code_frame(*code) == fields


def test_v8_preprocessed_json_ticks_weigh_time_since_the_previous_one() -> None:
    """Ticks sorted by time; stacks read from the code indices; unknown addresses left out."""
    document = {
        "code": [
            {"name": "/usr/bin/node", "type": "SHARED_LIB"},
            {"name": "main /a.js:1:1", "type": "JS", "kind": "Opt"},
            {"name": "leaf /a.js:5:3", "type": "JS", "kind": "Unopt"},
        ],
        "functions": [],
        "ticks": [
            {"tm": 30, "vm": 0, "s": [2, 4, -1, 99, 1, 8]},
            {"tm": 10, "vm": 0, "s": [1, 0]},
            {"tm": 35, "vm": 0, "s": [0, 7, 2, 0, 1, 3]},
            {"tm": 35, "vm": 0, "s": [7, 0]},
        ],
    }
    group = load(orjson.dumps(document), "p.v8log.json")
    assert group.format == "v8-prof"
    (profile,) = group.profiles
    assert profile.unit is Unit.MICROSECONDS
    assert stacks_in_order(profile) == [
        ("main", 10.0),
        ("main;leaf", 20.0),
        ("main;leaf;(LIB) /usr/bin/node", 5.0),
    ]


V8_LOG = b"""v8-version,11,3,244,8,0,0
shared-library,/usr/bin/node,0x400000,0x800000,0
code-creation,Builtin,2,50,0x1000,256,InterpreterEntryTrampoline
code-creation,JS,10,100,0x10000000,64,main /app.js:1:1,0x20000000,~
code-creation,JS,10,120,0x10000100,64,leaf /app.js:9:5,0x20000040,~
tick,0x10000110,500,0,0x0,0,0x10000010
tick,0x10000110,700,0,0x0,0,0x400100,0x10000010
code-move,0x10000100,0x10001000
tick,0x10001010,900,0,0x0,0,+10,-1000,overflow
code-delete,0x10001000
tick,0x10001010,1000,0,0x0,0,0x1010
code-creation,"LazyCompile",10,1100,0x10001000,32,"quoted\\x2C /app.js:3:7",0x20000080,~
tick,0x10001000,1300,1,0x10001004,0
"""


def test_v8_log_is_resolved_like_the_tick_processor() -> None:
    """Code creation, move and delete are followed; offsets, overflow and callbacks handled."""
    (profile,) = load(V8_LOG, "isolate.log").profiles
    assert stacks_in_order(profile) == [
        ("main;leaf", 500.0),
        ("main;(LIB) /usr/bin/node;leaf", 200.0),
        # +10 from pc 0x10001010 is 0x10001020 (leaf, moved), -1000 from there is main
        ("main;leaf;leaf", 200.0),
        ("(builtin) InterpreterEntryTrampoline", 100.0),
        ("(anonymous app.js:3)", 300.0),
    ]
    frame = next(
        profile.frames[i] for i in range(len(profile.frames)) if profile.frames[i].name == "leaf"
    )
    assert (frame.file, frame.line, frame.col) == ("/app.js", 9, 5)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"tick,0x10,500", "V8 --prof log, line 2: a tick with 2 fields: 'tick,0x10,500'"),
        (
            b"tick,pc,500,0,0x0,0",
            "V8 --prof log, line 2: expected an address as program counter, got 'pc'",
        ),
        (
            b"code-creation,JS,10,100,0x10,sixty,f /a.js:1:1",
            "V8 --prof log, line 2: expected a number as code size, got 'sixty'",
        ),
    ],
)
def test_v8_log_errors_name_the_line(line: bytes, message: str) -> None:
    """A malformed event names its line."""
    with pytest.raises(FormatError) as caught:
        load(b"v8-version,11,3,244,8,0,0\n" + line + b"\n")
    assert str(caught.value) == message


# real files from node

PROGRAM = """
function leaf(n) { let s = 0; for (let i = 0; i < n; i++) { s += Math.sqrt(i) * Math.sin(i); } return s; }
function makeObjects(n) { const a = []; for (let i = 0; i < n; i++) { a.push({ i, s: 'x' + i }); } return a; }
function alpha() { return leaf(200000); }
function beta() { return makeObjects(20000); }
const kept = [];
const start = Date.now();
while (Date.now() - start < 400) { alpha(); kept.push(beta()); }
globalThis.kept = kept;
"""


def run_node(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run node in `cwd`, failing the test with its output when it fails."""
    result = subprocess.run([NODE, *args], cwd=cwd, capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result


@needs_node
def test_real_node_heap_profile(tmp_path: Path) -> None:
    """``node --heap-prof``: self bytes per function equal the selfSize sums in the file."""
    (tmp_path / "prog.js").write_text(PROGRAM)
    run_node(["--heap-prof", "--heap-prof-interval=4096", "prog.js"], tmp_path)
    (path,) = tmp_path.glob("*.heapprofile")
    document = orjson.loads(path.read_bytes())
    expected: dict[str, float] = defaultdict(float)
    total = 0.0
    pending = [document["head"]]
    while pending:
        node = pending.pop()
        pending.extend(node["children"])
        total += node["selfSize"]
        if node["callFrame"]["functionName"]:
            expected[node["callFrame"]["functionName"]] += node["selfSize"]
    group = load(path)
    assert group.format == "chrome-heapprofile"
    (profile,) = group.profiles
    assert profile.unit is Unit.BYTES
    assert profile.total_weight == total > 0
    got = weights_by_name(profile)
    for function, size in expected.items():
        assert got[function][0] == size, function
    assert expected["makeObjects"] > 0


def tick_totals(document: dict) -> tuple[float, dict[str, float]]:
    """Total time and, per JavaScript function, the time of ticks it is on the stack of."""
    codes = document["code"]
    totals: dict[str, float] = defaultdict(float)
    previous = 0
    for tick in sorted(document["ticks"], key=lambda t: t["tm"]):
        weight = tick["tm"] - previous
        previous = tick["tm"]
        names = set()
        for code_index in tick["s"][0::2]:
            if 0 <= code_index < len(codes) and codes[code_index].get("type") == "JS":
                names.add(codes[code_index]["name"].split(" ")[0].lstrip("~*^+"))
        for name in names:
            totals[name] += weight
    return float(previous), totals


@needs_node
def test_real_node_prof_log_and_preprocessed_json(tmp_path: Path) -> None:
    """``node --prof`` log and its ``--preprocess`` JSON: JavaScript time per function agrees."""
    (tmp_path / "prog.js").write_text(PROGRAM)
    run_node(["--prof", "prog.js"], tmp_path)
    (log,) = tmp_path.glob("isolate-*.log")
    preprocessed = run_node(["--prof-process", "--preprocess", log.name], tmp_path).stdout
    (tmp_path / "profile.v8log.json").write_bytes(preprocessed)
    total, expected = tick_totals(orjson.loads(preprocessed))
    assert expected["leaf"] > 0 and expected["makeObjects"] > 0
    for path in (tmp_path / "profile.v8log.json", log):
        group = load(path)
        assert group.format == "v8-prof"
        (profile,) = group.profiles
        assert profile.unit is Unit.MICROSECONDS
        assert profile.total_weight == total
        got = weights_by_name(profile)
        for function in ("leaf", "makeObjects", "alpha", "beta"):
            assert got[function][1] == expected[function], (path.name, function)

"""Chrome/Node `.cpuprofile` and Chrome trace events: speedscope's numbers, edge cases, errors."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson
import pytest

from flamesight.formats import chrome_cpuprofile, chrome_trace
from flamesight.formats.errors import FormatError
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit
from tests.conftest import CONFORMANCE


def read(data: bytes | str, name: str = "profile.json") -> ProfileGroup:
    """Sniff and parse with the module that claims the data, as `formats.load` does."""
    if isinstance(data, str):
        data = data.encode()
    claimed = [m for m in (chrome_cpuprofile, chrome_trace) if m.sniff(data[: 64 * 1024])]
    assert len(claimed) == 1, f"claimed by {[m.NAME for m in claimed]}"
    return claimed[0].parse(data, name)


def trace(events: list, name: str = "trace.json") -> ProfileGroup:
    return read(orjson.dumps(events), name)


def frame_weights(profile: Profile) -> dict[str, tuple[float, float]]:
    """Frame name -> (self, total)."""
    self_weight, total_weight = profile.frame_weights()
    return {
        profile.frames[i].name: (float(self_weight[i]), float(total_weight[i]))
        for i in range(len(profile.frames))
    }


def runs(profile: Profile) -> list[tuple[str, float]]:
    """The profile in time order as runs of one stack, like speedscope's test dumps.

    speedscope's dump prints time only up to the last frame change, so idle
    time at the very end is left out.
    """
    result: list[list] = []
    for stack, weight in zip(
        profile.samples.stack.tolist(), profile.samples.weight.tolist(), strict=True
    ):
        names = ";".join(profile.frames[f].name for f in profile.stacks.frames_of(stack))
        if result and result[-1][0] == names:
            result[-1][1] += weight
        else:
            result.append([names, weight])
    while result and result[-1][0] == "":
        result.pop()
    return [(names, weight) for names, weight in result]


# conformance files: frames and the time-ordered runs speedscope prints

_UNITS = {"µs": 1.0, "ms": 1e3, "s": 1e6}


def _expected_entries() -> list[str]:
    path = CONFORMANCE / "expected.json"
    if not path.is_file():
        return []
    return sorted(
        key
        for key in orjson.loads(path.read_bytes())
        if key.startswith(("Chrome/", "node/", "trace-event/"))
        and not key.endswith((".heapprofile", ".v8log.json"))
    )


@pytest.fixture(scope="module")
def expected(conformance_dir: Path) -> dict:
    return orjson.loads((conformance_dir / "expected.json").read_bytes())


@pytest.mark.parametrize("relative", _expected_entries() or ["none"])
def test_conformance_runs_match_speedscope(
    conformance_dir: Path, expected: dict, relative: str
) -> None:
    """Names, the profile to show, every frame's weights and the runs in time order."""
    want = expected[relative]
    group = read((conformance_dir / "profiles" / relative).read_bytes(), Path(relative).name)
    assert [p.name for p in group.profiles] == [p["name"] for p in want["profiles"]]
    assert group.name == want["group_name"]
    assert group.active_index == want["index_to_view"]
    for profile, wanted in zip(group.profiles, want["profiles"], strict=True):
        assert profile.unit is Unit.MICROSECONDS
        self_weight, total_weight = profile.frame_weights()
        got = {}
        for i in range(len(profile.frames)):
            frame = profile.frames[i]
            got[(frame.name, frame.file, frame.line, frame.col)] = (
                float(self_weight[i]),
                float(total_weight[i]),
            )
        for frame in wanted["frames"]:
            key = (frame["name"], frame["file"] or None, frame["line"], frame["col"])
            assert key in got, key
            assert got[key] == pytest.approx((frame["self"], frame["total"]), rel=1e-9)
        printed = []
        for text in wanted["stacks"]:
            match = re.fullmatch(r"(.*) ([0-9.]+)(µs|ms|s)", text, re.S)
            assert match, text
            printed.append((match[1], float(match[2]) * _UNITS[match[3]]))
        ours = runs(profile)
        assert [names for names, _ in ours] == [names for names, _ in printed]
        for (_, weight), (_, shown) in zip(ours, printed, strict=True):
            assert weight == pytest.approx(shown, rel=5e-3, abs=0.006)


@pytest.mark.parametrize(
    "relative",
    ["Chrome/65/sucrase.cpuprofile", "trace-event/hermes-multiple-frames.json"],
)
def test_unlisted_conformance_files_load(conformance_dir: Path, relative: str) -> None:
    group = read((conformance_dir / "profiles" / relative).read_bytes(), Path(relative).name)
    assert group.profiles and all(len(p.samples) for p in group.profiles)


def test_sucrase_self_time_is_the_time_until_the_next_sample(conformance_dir: Path) -> None:
    """An independent reading of a big real profile agrees on every frame's self time."""
    data = (conformance_dir / "profiles" / "Chrome/65/sucrase.cpuprofile").read_bytes()
    profile = read(data, "sucrase.cpuprofile").profiles[0]
    assert _self_time_by_hand(json.loads(data)) == pytest.approx(_self_by_frame(profile))


def _self_time_by_hand(document: dict) -> dict[tuple, float]:
    """Each sample lasts until the next; its node is the frame on top of the stack."""
    nodes = {node["id"]: node["callFrame"] for node in document["nodes"]}
    times = np.cumsum(document["timeDeltas"][: len(document["samples"])])
    self_time: dict[tuple, float] = defaultdict(float)
    for node_id, start, end in zip(document["samples"], times[:-1], times[1:], strict=False):
        frame = nodes[node_id]
        if frame["functionName"] in ("(root)", "(idle)"):
            continue
        url = frame.get("url") or None
        line = frame["lineNumber"] + 1 if "lineNumber" in frame else None
        col = frame["columnNumber"] + 1 if "columnNumber" in frame else None
        name = frame["functionName"] or (
            f"(anonymous {url.rsplit('/', 1)[-1]}:{line})" if url else "(anonymous)"
        )
        self_time[(name, url, line, col)] += float(end - start)
    return {key: value for key, value in self_time.items() if value}


def _self_by_frame(profile: Profile) -> dict[tuple, float]:
    self_weight, _ = profile.frame_weights()
    return {
        tuple(profile.frames[i]): float(self_weight[i])
        for i in range(len(profile.frames))
        if self_weight[i]
    }


# Node's --cpu-prof


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_cpu_prof_file(tmp_path: Path) -> None:
    script = (
        "function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2) }\n"
        "const until = Date.now() + 300; let total = 0;\n"
        "while (Date.now() < until) total += fib(20);\n"
        "console.log(total > 0)"
    )
    subprocess.run(
        ["node", "--cpu-prof", f"--cpu-prof-dir={tmp_path}", "--cpu-prof-interval", "200"],
        input=script.encode(),
        check=True,
        capture_output=True,
        timeout=60,
    )
    (path,) = tmp_path.glob("*.cpuprofile")
    data = path.read_bytes()
    document = json.loads(data)
    assert chrome_cpuprofile.sniff(data[: 64 * 1024]) and not chrome_trace.sniff(data[:65536])
    group = chrome_cpuprofile.parse(data, path.name)
    (profile,) = group.profiles
    assert profile.name == group.name == path.name
    assert profile.unit is Unit.MICROSECONDS and profile.sampled
    deltas = document["timeDeltas"][: len(document["samples"])]
    assert min(deltas) >= 0
    assert profile.end <= sum(deltas)
    by_hand = _self_time_by_hand(document)
    assert by_hand == pytest.approx(_self_by_frame(profile))
    assert profile.total_weight == pytest.approx(sum(deltas) - _trailing_idle(document))
    fib_total = max(t for name, (_, t) in frame_weights(profile).items() if name == "fib")
    fib_self = sum(v for key, v in by_hand.items() if key[0] == "fib")
    assert fib_total == pytest.approx(fib_self)  # fib calls nothing else


def _trailing_idle(document: dict) -> float:
    """Time after the last sample of a frame (idle samples at the end are not kept)."""
    samples = document["samples"]
    deltas = document["timeDeltas"][: len(samples)]
    names = {n["id"]: n["callFrame"]["functionName"] for n in document["nodes"]}
    last_busy = max(
        (i for i, s in enumerate(samples) if names[s] not in ("(root)", "(idle)")), default=-1
    )
    if last_busy < 0:
        return float(sum(deltas))
    # the last busy run ends where the next sample starts
    return float(sum(deltas[last_busy + 2 :])) if last_busy + 1 < len(samples) else 0.0


# .cpuprofile: small cases


def cpuprofile(nodes: list, samples: list, deltas: list, **extra: object) -> bytes:
    return orjson.dumps(
        {
            "nodes": nodes,
            "startTime": 0,
            "endTime": 100,
            **extra,
            "samples": samples,
            "timeDeltas": deltas,
        }
    )


def node(
    node_id: int, name: str, children: list[int] = (), url: str = "", line: int = 0, col: int = 0
) -> dict:
    return {
        "id": node_id,
        "callFrame": {
            "functionName": name,
            "scriptId": "1",
            "url": url,
            "lineNumber": line,
            "columnNumber": col,
        },
        "children": list(children),
    }


def test_cpuprofile_names_lines_and_anonymous_frames() -> None:
    data = cpuprofile(
        [
            node(1, "(root)", [2]),
            node(2, "", [3], url="https://x.test/static/app.js", line=9, col=4),
            node(3, "work", url="https://x.test/static/app.js", line=19, col=0),
        ],
        [2, 3, 3, 2],
        [5, 10, 10, 10],
    )
    profile = read(data, "app.cpuprofile").profiles[0]
    frames = {profile.frames[i].name: profile.frames[i] for i in range(len(profile.frames))}
    assert frames["(anonymous app.js:10)"] == (
        "(anonymous app.js:10)",
        "https://x.test/static/app.js",
        10,
        5,
    )
    assert frames["work"].line == 20 and frames["work"].col == 1
    assert runs(profile) == [
        ("", 5),
        ("(anonymous app.js:10)", 10),
        ("(anonymous app.js:10);work", 20),
    ]
    assert profile.start == 0 and profile.end == 35


def test_cpuprofile_program_and_gc_stack_on_what_ran_before() -> None:
    data = cpuprofile(
        [
            node(1, "(root)", [2, 4, 5, 6]),
            node(2, "main", [3]),
            node(3, "leaf"),
            node(4, "(garbage collector)"),
            node(5, "(program)"),
            node(6, "(idle)"),
        ],
        [3, 4, 5, 6, 5, 2, 2],
        [0, 1, 2, 3, 4, 5, 6],
    )
    profile = read(data).profiles[0]
    assert runs(profile) == [
        ("main;leaf", 1),
        ("main;leaf;(garbage collector)", 2),
        ("main;leaf;(garbage collector);(program)", 3),
        ("", 4),
        ("(program)", 5),
        ("main", 6),
    ]


def test_cpuprofile_parent_links_negative_deltas_and_unknown_nodes() -> None:
    nodes = [
        {"id": 1, "callFrame": {"functionName": "(root)"}},
        {"id": 2, "callFrame": {"functionName": "a"}, "parent": 1},
        {"id": 3, "callFrame": {"functionName": "b", "url": "b.js"}, "parent": 2},
    ]
    data = cpuprofile(nodes, [2, 3, 99, 2, 3], [10, 10, -5, 20, 10])
    profile = read(data).profiles[0]
    frames = {profile.frames[i].name: profile.frames[i] for i in range(len(profile.frames))}
    assert frames["b"] == ("b", "b.js", None, None)
    # Sample times 10, 20, 15 -> 20 (never back), 35, 45. The unknown node 99 keeps a;b
    # open; the last sample gets no time.
    assert runs(profile) == [("", 10), ("a", 10), ("a;b", 15), ("a", 10)]
    assert profile.total_weight == 45


def _stacks_after_samples(assembler, samples: list[int], *, shortcut: bool) -> list[tuple]:
    builder = ProfileBuilder("t", Unit.MICROSECONDS)
    walker = chrome_cpuprofile._StackWalker(assembler, builder)
    if not shortcut:  # replay every sample with speedscope's full walk
        walker._fixed = [False] * len(walker._fixed)
    stacks = walker.stacks_of(walker.node_index(np.array(samples, np.int64))).tolist()
    frames, stack_table = builder.build().frames, walker.stack_table()
    return [tuple(frames[f] for f in stack_table.frames_of(s)) for s in stacks]


def test_cpuprofile_fixed_stacks_match_the_full_walk() -> None:
    """The shortcut for nodes whose stack never depends on the previous sample is exact."""
    rng = random.Random(99)
    kinds = ["a", "b", "c", "", "(program)", "(garbage collector)", "(idle)", "(root)"]
    for _ in range(2000):
        count = rng.randint(2, 25)
        assembler = chrome_cpuprofile.CpuProfileAssembler("test")
        for index in range(count):
            assembler.add_node(
                node_id=index + 1,
                function_name="(root)" if index == 0 else rng.choice(kinds),
                url="native dummy.js" if rng.random() < 0.1 else "x.js",
                line=index,
                col=0,
                parent=None if index == 0 else rng.randrange(index) + 1,
                children=None,
                where="nodes",
            )
        samples = [rng.randint(1, count + 1) for _ in range(rng.randint(1, 40))]
        assert _stacks_after_samples(assembler, samples, shortcut=True) == _stacks_after_samples(
            assembler, samples, shortcut=False
        )


def test_cpuprofile_old_node_layout() -> None:
    head = {
        "functionName": "(root)",
        "url": "",
        "lineNumber": 0,
        "id": 1,
        "hitCount": 0,
        "callUID": 1,
        "children": [
            {
                "functionName": "main",
                "url": "m.js",
                "lineNumber": 4,
                "id": 2,
                "hitCount": 1,
                "callUID": 2,
                "children": [],
            },
        ],
    }
    data = orjson.dumps(
        {
            "head": head,
            "startTime": 1,
            "endTime": 2,
            "samples": [2, 2, 2],
            "timestamps": [1_000_010, 1_000_020, 1_000_050],
        }
    )
    profile = read(data, "old.cpuprofile").profiles[0]
    assert runs(profile) == [("", 10), ("main", 40)]
    assert profile.frames[0] == ("main", "m.js", 5, 1)


def test_cpuprofile_sniffing() -> None:
    new = cpuprofile([node(1, "(root)")], [1], [0])
    assert chrome_cpuprofile.sniff(new)
    assert chrome_cpuprofile.sniff(new[:40])  # cut inside the node list
    assert not chrome_cpuprofile.sniff(
        b'{"head": {"callFrame": {}, "selfSize": 0, "children": []}, "samples": []}'
    )
    assert not chrome_cpuprofile.sniff(
        b'{"$schema": "https://www.speedscope.app/file-format-schema.json", "nodes": [], "samples": []}'
    )
    assert not chrome_cpuprofile.sniff(b'[{"ph": "B"}]')
    assert not chrome_trace.sniff(new)


@pytest.mark.parametrize(
    ("data", "where", "problem"),
    [
        (b'{"nodes": [', "line 1 column 12", "not valid JSON"),
        (
            b'{"nodes": {}, "samples": [], "timeDeltas": []}',
            "nodes",
            "expected a list of nodes, got an object",
        ),
        (
            b'{"nodes": [{"id": 1}], "samples": [], "timeDeltas": []}',
            "nodes[0].callFrame",
            "expected an object, got null",
        ),
        (
            b'{"nodes": [{"id": "x", "callFrame": {}}], "samples": [], "timeDeltas": []}',
            "nodes[0].id",
            "expected an integer",
        ),
        (
            b'{"nodes": [{"id": 1, "callFrame": {"lineNumber": "3"}}], "samples": [], "timeDeltas": []}',
            "nodes[0].callFrame.lineNumber",
            "expected a 32-bit integer, got the string '3'",
        ),
        (
            b'{"nodes": [{"id": 1, "callFrame": {}}], "samples": [1, 1.5], "timeDeltas": [1, 1]}',
            "samples[1]",
            "expected an integer, got the number 1.5",
        ),
        (
            b'{"nodes": [{"id": 1, "callFrame": {}}], "samples": [1, 1], "timeDeltas": [1, null]}',
            "timeDeltas[1]",
            "expected a number, got null",
        ),
        (
            b'{"nodes": [{"id": 1, "callFrame": {}}], "samples": [1, 1], "timeDeltas": [1]}',
            "timeDeltas",
            "1 time deltas for 2 samples",
        ),
        (
            b'{"nodes": [{"id": 1, "callFrame": {}}], "samples": [1]}',
            "top level",
            "no 'timeDeltas' key",
        ),
        (
            b'{"nodes": [{"id": 1, "callFrame": {"functionName": "a"}, "parent": 2}, {"id": 2, "callFrame": {"functionName": "b"}, "parent": 1}], "samples": [1, 1], "timeDeltas": [1, 1]}',
            "nodes",
            "form a cycle",
        ),
    ],
)
def test_cpuprofile_errors_name_the_place(data: bytes, where: str, problem: str) -> None:
    with pytest.raises(FormatError) as caught:
        chrome_cpuprofile.parse(data, "bad.cpuprofile")
    assert caught.value.where == where
    assert problem in caught.value.problem
    assert str(caught.value).startswith("Chrome/Node .cpuprofile, ")


# .cpuprofile: big files are read in pieces


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> int:
    """Pieces of 2 kB, so that a small document is read in many of them."""
    monkeypatch.setattr(chrome_cpuprofile, "_PIECE_BYTES", 2048)
    return 2048


def big_cpuprofile_document(seed: int = 7, nodes: int = 600, samples: int = 8000) -> dict:
    """A profile whose nodes and sample lists each take several pieces, with
    `positionTicks` (objects inside nodes), (program) and GC samples, and names
    that hold JSON-looking text."""
    rng = random.Random(seed)
    tricky = ['x"samples":[1,2]', "a},{b", '},{"id":7}', "]}", "\\", 'nodes"', "日本語 ☃"]
    document_nodes = [
        {"id": 1, "callFrame": {"functionName": "(root)", "url": "", "lineNumber": -1}},
        {"id": 2, "callFrame": {"functionName": "(program)", "url": "", "lineNumber": -1}},
        {"id": 3, "callFrame": {"functionName": "(garbage collector)", "url": ""}},
    ]
    children: dict[int, list[int]] = {1: [2, 3]}
    for node_id in range(4, nodes + 1):
        parent = rng.choice([1, *range(max(4, node_id - 50), node_id)])
        children.setdefault(parent, []).append(node_id)
        name = f"f{rng.randrange(400)}" + (rng.choice(tricky) if rng.random() < 0.05 else "")
        node = {
            "id": node_id,
            "callFrame": {
                "functionName": name,
                "scriptId": str(node_id % 9),
                "url": f"https://x.test/{rng.randrange(30)}.js",
                "lineNumber": rng.randrange(500),
                "columnNumber": rng.randrange(80),
            },
            "hitCount": rng.randrange(3),
        }
        if rng.random() < 0.3:
            node["positionTicks"] = [{"line": 3, "ticks": 1}, {"line": 9, "ticks": 2}]
        document_nodes.append(node)
    for node in document_nodes:
        if node["id"] in children:
            node["children"] = children[node["id"]]
    sampled = [2, 3, *range(4, nodes + 1)]
    picks = [rng.choice(sampled) for _ in range(samples)]
    for index in range(0, samples, 7):  # runs of one node
        picks[index] = picks[index - 1]
    return {
        "nodes": document_nodes,
        "startTime": 100,
        "endTime": 100 + 10 * samples,
        "samples": picks,
        "timeDeltas": [rng.choice([0, 1, 10, 11, 12, 250]) for _ in range(samples)],
    }


def read_plainly(data: bytes) -> ProfileGroup:
    """Parse with the whole-document reading: the same JSON with the `nodes` key
    spelled with an escape, which the reading in pieces does not look for."""
    plain = data.replace(b'"nodes"', b'"node\\u0073"')
    assert chrome_cpuprofile._read_in_parts(plain) is None
    return chrome_cpuprofile.parse(plain, "profile.json")


def assert_same_profiles(got: ProfileGroup, expected: ProfileGroup) -> None:
    (a,), (b,) = got.profiles, expected.profiles
    assert [a.frames[i] for i in range(len(a.frames))] == [
        b.frames[i] for i in range(len(b.frames))
    ]
    for column in ("parent", "frame"):
        assert np.array_equal(getattr(a.stacks, column), getattr(b.stacks, column))
    for column in ("stack", "time", "weight"):
        assert np.array_equal(getattr(a.samples, column), getattr(b.samples, column))
    assert len(a.samples) > 0


def test_cpuprofile_big_file_read_in_pieces_as_read_whole() -> None:
    data = orjson.dumps(big_cpuprofile_document(nodes=6000, samples=150_000))
    assert len(data) > 4 * chrome_cpuprofile._PIECE_BYTES
    assert chrome_cpuprofile._read_in_parts(data) is not None
    assert_same_profiles(chrome_cpuprofile.parse(data, "profile.json"), read_plainly(data))


@pytest.mark.parametrize(
    "variant",
    ["indented", "keys in another order", "no spaces, CRLF", "decoy keys", "wide numbers"],
)
def test_cpuprofile_read_in_pieces_whatever_the_layout(variant: str, small_pieces: int) -> None:
    document = big_cpuprofile_document(seed=len(variant))
    if variant == "indented":
        data = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    elif variant == "keys in another order":
        order = ["timeDeltas", "endTime", "samples", "startTime", "nodes"]
        document["nodes"] = [dict(reversed(node.items())) for node in document["nodes"]]
        data = orjson.dumps({key: document[key] for key in order})
    elif variant == "no spaces, CRLF":
        data = json.dumps(document, separators=(",", ":"), indent=1).replace("\n", "\r\n").encode()
    elif variant == "decoy keys":
        # the same key names inside nodes, in strings and escaped in other keys
        document["nodes"][5]["callFrame"]["samples"] = [1, 2, 3]
        document["nodes"][6]["timeDeltas"] = [4]
        document = {'"samples": [9]': 1, **document, "meta": {"nodes": [], "samples": [5]}}
        data = orjson.dumps(document)
    else:
        ids = {node["id"]: 2**40 + 3 * node["id"] for node in document["nodes"]}
        for node in document["nodes"]:
            node["id"] = ids[node["id"]]
            if "children" in node:
                node["children"] = [ids[child] for child in node["children"]]
        document["samples"] = [ids[sample] for sample in document["samples"]]
        document["timeDeltas"] = [
            d + 0.25 if i % 3 else d * 1e0 for i, d in enumerate(document["timeDeltas"])
        ]
        data = orjson.dumps(document)
    assert chrome_cpuprofile._read_in_parts(data) is not None
    assert_same_profiles(chrome_cpuprofile.parse(data, "profile.json"), read_plainly(data))


def test_cpuprofile_read_whole_when_the_guesses_fail(small_pieces: int) -> None:
    """Key text that the search takes for the lists but that is not them sends the
    reading to the whole document, with the same result."""
    document = big_cpuprofile_document()
    for decoy in (
        {'x"samples': [1, 2]},
        {'x"nodes': [{"id": 1}]},
        {"meta": {"nodes": [], "samples": [5]}},
    ):
        data = orjson.dumps({**decoy, **document})
        assert chrome_cpuprofile._read_in_parts(data) is None
        assert_same_profiles(chrome_cpuprofile.parse(data, "p.json"), read_plainly(data))
    # a repeated key: the last one counts, as in the whole reading
    text = orjson.dumps(document)
    data = text[:-1] + b',"samples":' + orjson.dumps(document["samples"][::-1]) + b"}"
    assert_same_profiles(chrome_cpuprofile.parse(data, "p.json"), read_plainly(data))


@pytest.mark.parametrize(
    ("change", "where", "problem"),
    [
        (lambda d: d.replace(b'"id":599,', b'"id":"599",'), "nodes[598].id", "expected an integer"),
        (
            lambda d: d.replace(b'"samples":[', b'"samples":[1.5,'),
            "samples[0]",
            "expected an integer",
        ),
        (
            lambda d: d.replace(b'"timeDeltas":[', b'"timeDeltas":[null,'),
            "timeDeltas[0]",
            "expected a number",
        ),
        (
            lambda d: d.replace(b'"timeDeltas":[', b'"timeDeltas":[1,,'),
            "line 1 column",
            "not valid JSON",
        ),
        (lambda d: d[:-40], "line 1 column", "not valid JSON"),
    ],
)
def test_cpuprofile_big_file_errors_name_the_place(
    change, where: str, problem: str, small_pieces: int
) -> None:
    data = change(orjson.dumps(big_cpuprofile_document()))
    with pytest.raises(FormatError) as caught:
        chrome_cpuprofile.parse(data, "bad.cpuprofile")
    assert caught.value.where.startswith(where)
    assert problem in caught.value.problem


def test_cpuprofile_empty_lists_read_in_pieces() -> None:
    data = b'{"nodes": [ ], "startTime": 0, "samples": [\n], "timeDeltas": []}'
    assert chrome_cpuprofile._read_in_parts(data) is not None
    (profile,) = chrome_cpuprofile.parse(data, "empty.cpuprofile").profiles
    assert len(profile.samples) == 0


# trace events: duration events


def test_trace_names_threads_from_metadata_and_orders_them() -> None:
    group = trace(
        [
            {"ph": "M", "name": "thread_name", "pid": 2, "tid": "7", "args": {"name": "worker"}},
            {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "renderer"}},
            {"ph": "X", "name": "b", "pid": 2, "tid": 7, "ts": 5, "dur": 2},
            {"ph": "X", "name": "a", "pid": 10, "tid": 1, "ts": 1, "dur": 3},
            {"ph": "X", "name": "c", "pid": "2", "tid": 7.0, "ts": 9, "dur": 1},
        ]
    )
    assert [p.name for p in group.profiles] == [
        "renderer (pid 2), worker (tid 7)",
        "pid 10, tid 1",
    ]
    assert group.name == "trace.json"
    first = group.profiles[0]
    assert not first.sampled
    # pid "2" and tid 7.0 are the same thread as pid 2, tid 7; time starts at its first event
    assert runs(first) == [("b", 2), ("", 2), ("c", 1)]


def test_trace_frame_names_carry_args_as_javascript_prints_them() -> None:
    args = {"b": 1.0, "2": [1e21, 1e-7, 0.5, -0.0], "1": {"z": 12345678901234567890, "s": 'é\n"x"'}}
    group = trace(
        [
            {"ph": "B", "name": "f", "pid": 1, "tid": 1, "ts": 0, "args": args},
            {"ph": "B", "name": "", "pid": 1, "tid": 1, "ts": 1, "args": {}},
            {"ph": "B", "pid": 1, "tid": 1, "ts": 2, "args": []},
            {"ph": "B", "name": "g", "pid": 1, "tid": 1, "ts": 3, "args": None},
            {"ph": "B", "name": "h", "pid": 1, "tid": 1, "ts": 4, "args": 0},
            {"ph": "B", "name": 5, "pid": 1, "tid": 1, "ts": 5, "args": "x"},
            {"ph": "E", "pid": 1, "tid": 1, "ts": 6},
        ]
    )
    names = [group.profiles[0].frames[i].name for i in range(len(group.profiles[0].frames))]
    assert names == [
        'f {"1":{"z":12345678901234567000,"s":"é\\n\\"x\\""},"2":[1e+21,1e-7,0.5,0],"b":1}',
        "(unnamed) {}",
        "(unnamed) []",
        "g",
        "h",
        '5 "x"',
    ]


def test_trace_repairs_like_speedscope() -> None:
    """Out-of-order input, an end whose name does not match, and frames left open."""
    group = trace(
        [
            {"ph": "E", "name": "a", "pid": 0, "tid": 0, "ts": 9},
            {"ph": "B", "name": "a", "pid": 0, "tid": 0, "ts": 0},
            {"ph": "B", "name": "b", "pid": 0, "tid": 0, "ts": 2},
            {"ph": "E", "name": "zzz", "pid": 0, "tid": 0, "ts": 3},
            {"ph": "E", "name": "b", "pid": 0, "tid": 0, "ts": 4},
            {"ph": "B", "name": "c", "pid": 0, "tid": 0, "ts": 10},
        ]
    )
    profile = group.profiles[0]
    # "zzz" does not close b and is dropped; c opens at 10 and is closed there at the end
    assert runs(profile) == [("a", 2), ("a;b", 2), ("a", 5)]
    assert profile.total_weight == 10  # with the idle second before c
    assert frame_weights(profile) == {"a": (7, 9), "b": (2, 2), "c": (0, 0)}


@pytest.mark.parametrize(
    "ending",
    [b"]", b"\n]\n", b"", b",", b",\n\n  ", b"  \n"],
    ids=["closed", "closed-space", "no-bracket", "comma", "comma-space", "space"],
)
def test_trace_partial_files(ending: bytes) -> None:
    body = b'[{"ph":"B","name":"a","pid":0,"tid":0,"ts":0},\n{"ph":"E","name":"a","pid":0,"tid":0,"ts":4}'
    group = read(body + ending)
    assert runs(group.profiles[0]) == [("a", 4)]


def test_trace_object_form_with_keys_around_the_events() -> None:
    data = (
        b'{"metadata": {"traceEvents": "not this one", "n": [{"a":1},{"b":2}]},\n'
        b' "traceEvents": [{"ph":"X","name":"a","pid":0,"tid":0,"ts":0,"dur":3}],\n'
        b' "displayTimeUnit": "ms"}'
    )
    assert chrome_trace.sniff(data)
    group = read(data)
    assert runs(group.profiles[0]) == [("a", 3)]


def test_trace_sniffing() -> None:
    assert chrome_trace.sniff(b'[{"ph":"X","ts":1,"name":"a"}]')
    assert chrome_trace.sniff(b'  [\n  {"name": "a", "ph": "B", "t')  # cut mid-key
    assert not chrome_trace.sniff(b'  [\n  {"name": "a", "p')
    assert chrome_trace.sniff(b'{"traceEvents": [')
    assert not chrome_trace.sniff(
        b'{"$schema": "https://www.speedscope.app/file-format-schema.json", "traceEvents": []}'
    )
    assert not chrome_trace.sniff(b"[1, 2, 3]")
    assert not chrome_trace.sniff(b"main;a 1\n")
    assert not chrome_cpuprofile.sniff(b'[{"ph":"X","ts":1,"name":"a"}]')


@pytest.mark.parametrize(
    ("data", "where", "problem"),
    [
        (b"[]", "top level", "the event list is empty"),
        (
            b'[{"ph":"B","name":"a","pid":0,"tid":0,"ts":0}, {"name":"b"}]',
            "[1]",
            "event has no 'ph'",
        ),
        (b'[{"ph":"B","name":"a","pid":0,"tid":0}]', "[0]", "event has no 'ts' field"),
        (
            b'[{"ph":"B","name":"a","pid":0,"tid":0,"ts":"soon"}]',
            "[0]",
            "'ts' should be a number, got the string 'soon'",
        ),
        (
            b'[{"ph":"X","name":"a","pid":0,"tid":0,"ts":1,"dur":"long"}]',
            "[0].dur",
            "expected a number",
        ),
        (
            b'[{"ph":"B","name":"a","pid":0,"tid":0,"ts":0}, 7]',
            "[1]",
            "expected an event object, got the number 7",
        ),
        (
            b'[{"ph":"B","name":"a","pid":{},"tid":0,"ts":0}]',
            "[0].pid",
            "expected a number or string",
        ),
        (
            b'[{"ph":"B","name":"a","pid":0,"tid":0,"ts":0}, {"ph":"E" "ts":1}]',
            "byte 57",
            "expected ',' or '}'",
        ),
        (
            b'[{"ph":"B","name":"a","pid":0,"tid":0,"ts":0}, {"ph":"E","na',
            "byte 60",
            "the file ends in the middle of an event",
        ),
        (
            b'[{"ph":"B","name":"a","pid":0,"tid":0,"ts":0}] trailing',
            "byte 47",
            "unexpected 'trailing' after the events",
        ),
        (b'{"otherEvents": [{"ph": "B"}]}', "top level", "no 'traceEvents' key"),
        (b'{"traceEvents": {"ph": "B"}}', "traceEvents", "expected a list of events"),
        (b'[{"ph":"i","name":"mark","pid":0,"tid":0,"ts":0}]', "top level", "no duration events"),
    ],
)
def test_trace_errors_name_the_place(data: bytes, where: str, problem: str) -> None:
    with pytest.raises(FormatError) as caught:
        chrome_trace.parse(data, "bad.json")
    assert caught.value.where == where
    assert problem in caught.value.problem
    assert str(caught.value).startswith("Chrome trace events, ")


# trace events: chunked reading of big files


def _nested_complete_events(count: int, seed: int) -> tuple[list[dict], dict[str, float]]:
    """Top-level X events with one nested child each, and the self time of every name."""
    rng = random.Random(seed)
    events = []
    self_time: dict[str, float] = defaultdict(float)
    ts = 0
    awkward = ['},{"x":1}', '\\"},{\\"', "\\\\", "}]", "[{", "é€😀"]
    for i in range(count):
        outer, inner = f"outer{i % 7}", f"inner{i % 5}"
        detail = rng.choice(awkward) * rng.randint(1, 3)
        events.append(
            {
                "ph": "X",
                "name": outer,
                "pid": 1,
                "tid": i % 3,
                "ts": ts,
                "dur": 10,
                "args": {"d": detail},
            }
        )
        events.append(
            {
                "ph": "X",
                "name": inner,
                "pid": 1,
                "tid": i % 3,
                "ts": ts + 2,
                "dur": 5,
                "args": {"n": [{"k": i % 2}, {"k": 2}]},
            }
        )
        self_time[f'{outer} {{"d":{json.dumps(detail, ensure_ascii=False)}}}'] += 5
        self_time[f'{inner} {{"n":[{{"k":{i % 2}}},{{"k":2}}]}}'] += 5
        ts += 10 + rng.randint(0, 1) * 3
    return events, self_time


@pytest.mark.parametrize("layout", ["one-per-line", "compact", "pretty", "object"])
def test_trace_big_files_are_read_in_chunks(layout: str) -> None:
    events, self_time = _nested_complete_events(6000, seed=len(layout))
    if layout == "one-per-line":
        data = b"[\n" + b",\n".join(orjson.dumps(e) for e in events) + b"\n]"
    elif layout == "compact":
        data = orjson.dumps(events)
    elif layout == "pretty":
        data = orjson.dumps(events, option=orjson.OPT_INDENT_2)
    else:
        data = orjson.dumps({"metadata": {"a": [{}, {}]}, "traceEvents": events, "after": [{}, {}]})
    assert len(data) > 4 * chrome_trace._CHUNK_BYTES
    group = read(data)
    got: dict[str, float] = defaultdict(float)
    for profile in group.profiles:
        for name, (self_weight, _) in frame_weights(profile).items():
            got[name] += self_weight
    assert dict(got) == pytest.approx(dict(self_time))


def test_chunk_and_window_sizes_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    events, _ = _nested_complete_events(300, seed=3)
    data = b"[" + b",\n".join(orjson.dumps(e) for e in events)  # partial, Chrome-style
    reference = [runs(p) for p in read(data).profiles]
    for chunk, window in ((64, 7), (1000, 64), (5, 3)):
        monkeypatch.setattr(chrome_trace, "_CHUNK_BYTES", chunk)
        monkeypatch.setattr(chrome_trace, "_SCAN_WINDOW", window)
        assert [runs(p) for p in read(data).profiles] == reference


# trace events: the array-based replay agrees with the event-by-event one


def _queues(rng: random.Random) -> tuple[list, list, list]:
    """Random begins and ends, often nested, often at equal times, sometimes mismatched."""
    keys = rng.randint(1, 5)
    begins, ends, stack, now = [], [], [], 0
    for _ in range(rng.randint(1, 30)):
        now += rng.choice([0, 0, 1, 2])
        if stack and rng.random() < 0.5:
            key = stack.pop()
            ends.append((now, key if rng.random() < 0.85 else rng.randrange(keys)))
        else:
            key = rng.randrange(keys)
            stack.append(key)
            begins.append((now, key))
    begins.sort(key=lambda item: item[0])
    ends.sort(key=lambda item: item[0])
    return begins, ends, [k % 2 if k > 2 else k for k in range(keys)]


def _replayed(replay, begins: list, ends: list, name_of_key: list) -> list | None:
    builder = ProfileBuilder("t", Unit.MICROSECONDS)
    frames = np.array([builder.frame(f"k{k}") for k in range(len(name_of_key))], np.int64)

    def queue(items: list, with_frames: bool) -> chrome_trace._Queue:
        times = np.array([t for t, _ in items], np.float64)
        keys = np.array([k for _, k in items], np.int64)
        names = np.array([name_of_key[k] for k in keys], np.int64)
        return chrome_trace._Queue(times, keys, names, frames[keys] if with_frames else None)

    changes = replay(builder, queue(begins, True), queue(ends, False))
    if changes is None:
        return None
    profile = builder.build()
    return [
        (time, tuple(profile.stacks.frames_of(stack)) if stack >= 0 else ())
        for time, stack in zip(changes[0].tolist(), changes[1].tolist(), strict=True)
    ]


def test_array_replay_matches_event_by_event_replay() -> None:
    rng = random.Random(1234)
    compared = 0
    for _ in range(3000):
        begins, ends, name_of_key = _queues(rng)
        fast = _replayed(chrome_trace._replay_well_nested, begins, ends, name_of_key)
        if fast is not None:
            compared += 1
            assert fast == _replayed(chrome_trace._match_begins_and_ends, begins, ends, name_of_key)
    assert compared > 500


# trace events: DevTools recordings (Profile / ProfileChunk)


def test_devtools_recording_profiles_per_thread() -> None:
    def chunk(pid: int, tid: int, ident: str, ts: int, data: dict) -> dict:
        return {
            "ph": "P",
            "cat": "v8",
            "name": "ProfileChunk",
            "pid": pid,
            "tid": tid,
            "ts": ts,
            "id": ident,
            "args": {"data": data},
        }

    nodes = [
        {"id": 1, "callFrame": {"functionName": "(root)"}},
        {
            "id": 2,
            "callFrame": {"functionName": "run", "url": "w.js", "lineNumber": 0, "columnNumber": 0},
            "parent": 1,
        },
    ]
    events = [
        {
            "ph": "M",
            "cat": "__metadata",
            "name": "thread_name",
            "pid": 1,
            "tid": 5,
            "ts": 0,
            "args": {"name": "DedicatedWorker thread"},
        },
        {
            "ph": "M",
            "cat": "__metadata",
            "name": "thread_name",
            "pid": 1,
            "tid": 9,
            "ts": 0,
            "args": {"name": "CrRendererMain"},
        },
        chunk(1, 77, "0x2", 30, {"cpuProfile": {"samples": [2]}, "timeDeltas": [7]}),
        {
            "ph": "P",
            "cat": "v8",
            "name": "Profile",
            "pid": 1,
            "tid": 5,
            "ts": 10,
            "id": "0x1",
            "args": {"data": {"startTime": 10}},
        },
        {
            "ph": "P",
            "cat": "v8",
            "name": "Profile",
            "pid": 1,
            "tid": 9,
            "ts": 11,
            "id": "0x2",
            "args": {"data": {"startTime": 11}},
        },
        chunk(
            1,
            77,
            "0x1",
            20,
            {"cpuProfile": {"nodes": nodes, "samples": [2, 2]}, "timeDeltas": [1, 4]},
        ),
        chunk(
            1,
            77,
            "0x2",
            21,
            {"cpuProfile": {"nodes": nodes, "samples": [1, 2]}, "timeDeltas": [2, 3]},
        ),
        chunk(1, 77, "0x3", 22, {"cpuProfile": {"samples": [2]}, "timeDeltas": [3]}),
        {
            "ph": "P",
            "cat": "v8",
            "name": "ProfileChunk",
            "pid": 1,
            "tid": 77,
            "ts": 40,
            "id": "0x1",
            "args": {},
        },
        {"ph": "X", "cat": "toplevel", "name": "Task", "pid": 1, "tid": 9, "ts": 0, "dur": 100},
    ]
    group = trace(events, "rec.json")
    assert [p.name for p in group.profiles] == [
        "rec.json - DedicatedWorker thread",
        "rec.json - CrRendererMain",
    ]
    assert group.active_index == 1
    worker, main = group.profiles
    # samples at 1 and 5: one run of "run" from the first sample to the last
    assert runs(worker) == [("", 1), ("run", 4)]
    assert frame_weights(worker)["run"] == (4, 4)
    assert runs(main) == [("", 5), ("run", 7)]
    assert main.frames[0] == ("run", "w.js", 1, 1)


# Hermes samples


def test_hermes_samples_and_stack_frames() -> None:
    data = {
        "traceEvents": [
            {
                "name": "process_name",
                "ph": "M",
                "cat": "__metadata",
                "pid": 3,
                "ts": "0",
                "tid": "-1",
                "args": {"name": "hermes"},
            },
        ],
        "samples": [
            {"cpu": "-1", "name": "", "ts": "100", "pid": 3, "tid": "8", "weight": "1", "sf": 2},
            {"cpu": "-1", "name": "", "ts": "130", "pid": 3, "tid": "8", "weight": "1", "sf": 3},
            {"cpu": "-1", "name": "", "ts": "150", "pid": 3, "tid": "8", "weight": "1", "sf": 1},
        ],
        "stackFrames": {
            "1": {"name": "[root]", "category": "root"},
            "2": {"name": "main", "category": "JavaScript", "parent": 1},
            "3": {"name": "helper", "category": "JavaScript", "parent": 2},
        },
    }
    group = read(orjson.dumps(data))
    (profile,) = group.profiles
    assert profile.name == "hermes (pid 3, tid 8)"
    assert runs(profile) == [("[root];main", 30), ("[root];main;helper", 20)]
    bad = dict(data, samples=[dict(data["samples"][0], sf=9), data["samples"][1]])
    with pytest.raises(FormatError, match=r"samples\[0\]\.sf: no stack frame '9'"):
        read(orjson.dumps(bad))


def test_profiles_have_consistent_axes() -> None:
    events, _ = _nested_complete_events(50, seed=9)
    for profile in trace(events).profiles:
        samples = profile.samples
        assert np.all(np.diff(samples.time) >= 0)
        assert np.all(samples.weight > 0)
        assert math.isclose(float(samples.time[-1] + samples.weight[-1]), profile.end)

"""The fast readings of JSON formats made of many small objects: Safari, pyinstrument, Hermes.

Each fast reading must give exactly the profile of the plain reading of the
whole document (frames, stacks, sample stacks, times and weights), must be
the reading actually taken for ordinary files, and must leave files it does
not take to the plain reading, whose errors name the place.
"""

from __future__ import annotations

import json
import math
import random

import msgspec
import numpy as np
import orjson
import pytest

from flamesight.formats import FormatError, chrome_trace, json_pieces, load, pyinstrument, safari
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit


def assert_same(got: ProfileGroup, expected: ProfileGroup) -> None:
    """Same profiles: names, units, metadata, frame rows, stack table, sample columns."""
    assert got.name == expected.name
    assert len(got.profiles) == len(expected.profiles)
    for a, b in zip(got.profiles, expected.profiles, strict=True):
        assert (a.name, a.unit, a.sampled, a.metadata) == (b.name, b.unit, b.sampled, b.metadata)
        assert [a.frames[i] for i in range(len(a.frames))] == [
            b.frames[i] for i in range(len(b.frames))
        ]
        assert a.stacks.parent.tolist() == b.stacks.parent.tolist()
        assert a.stacks.frame.tolist() == b.stacks.frame.tolist()
        assert a.samples.stack.tolist() == b.samples.stack.tolist()
        assert np.array_equal(a.samples.time, b.samples.time)
        assert np.array_equal(a.samples.weight, b.samples.weight)


def error_of(data: bytes) -> str:
    with pytest.raises(FormatError) as caught:
        load(data)
    return str(caught.value)


# Safari


def safari_recording(traces: list, durations: list, **recording: object) -> bytes:
    return orjson.dumps(
        {
            "version": 1,
            "recording": {
                "displayName": "Recording ✓",
                "records": [{"type": "ignored", "data": [1, {"x": None}]}],
                "sampleStackTraces": traces,
                "sampleDurations": durations,
                **recording,
            },
            "overview": {"secondsPerPixel": 0.01},
        }
    )


def safari_traces(count: int, seed: int) -> tuple[list, list]:
    """Samples drawn from a few stacks (shared frames, unicode names), some with idle gaps."""
    rng = random.Random(seed)
    frames = [
        {"name": name, "url": f"https://example.com/{name or 'x'}.js", "line": i, "column": i + 1}
        for i, name in enumerate(["main", "", "λ-render", "parse", "", "gc"])
    ]
    stacks = [[rng.choice(frames) for _ in range(rng.randint(0, 5))] for _ in range(12)]
    traces, durations, clock = [], [], 4.25
    for _ in range(count):
        step = rng.choice([0.001, 0.0012, 0.0009, 0])
        clock += step + (0.01 if rng.random() < 0.1 else 0.0)
        trace: dict = {"timestamp": clock}
        stack = rng.choice(stacks)
        if stack or rng.random() < 0.5:
            trace["stackFrames"] = stack
        traces.append(trace)
        durations.append(step if rng.random() < 0.9 else int(step * 1000))
    return traces, durations


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_safari_fast_reading_matches_the_plain_one(seed: int) -> None:
    traces, durations = safari_traces(300, seed)
    data = safari_recording(traces, [*durations, 0.5])
    document = json_pieces.decode_typed_json(data, safari._Document)
    assert document is not None
    assert safari._read_samples(document.recording, "Recording ✓") is not None  # taken
    assert_same(safari.parse(data, "r.json"), safari._parse_whole(data, "r.json"))


def test_safari_unusual_files_are_read_plainly() -> None:
    frame = {"name": "f", "url": "a.js", "line": 1, "column": 1}
    # a bad frame: the fast reading gives up, the plain one names the place
    bad = {"name": "f", "url": "a.js", "line": "one", "column": 1}
    data = safari_recording([{"timestamp": 1.0, "stackFrames": [frame]}] * 3 + [
        {"timestamp": 1.1, "stackFrames": [frame, bad]}
    ], [0.001] * 4)  # fmt: skip
    assert error_of(data) == (
        "Safari timeline recording JSON, $.recording.sampleStackTraces[3].stackFrames[1].line: "
        "expected a 32-bit integer, got the string 'one'"
    )
    data = safari_recording([{"timestamp": 1.0, "stackFrames": [frame]}], [-0.5])
    assert error_of(data) == (
        "Safari timeline recording JSON, $.recording.sampleDurations[0]: negative duration -0.5"
    )
    data = safari_recording([{"timestamp": True, "stackFrames": [frame]}], [0.5])
    assert error_of(data) == (
        "Safari timeline recording JSON, $.recording.sampleStackTraces[0].timestamp: "
        "expected a number, got true"
    )
    # text that is not UTF-8, even in a key the fast reading skips, is not JSON
    data = safari_recording([{"timestamp": 1.0, "stackFrames": [frame]}], [0.5])
    data = data.replace(b'"ignored"', b'"ign\xffred"')
    assert json_pieces.decode_typed_json(data, safari._Document) is None
    assert "not valid JSON" in error_of(data)
    # a title that is no string: the file's name, as the plain reading gives it
    odd = safari_recording([{"timestamp": 1.0, "stackFrames": [frame]}], [0.5], displayName=7)
    assert safari.parse(odd, "odd.json").name == "odd.json"


# pyinstrument sessions


START = ["MainThread\x00<thread>\x00140", "_run_code\x00<frozen runpy>\x0065\x01l88"]


def session(records: list, start: list = START, **keys: object) -> bytes:
    return orjson.dumps(
        {
            "start_time": 1.5,
            "sample_count": len(records),
            "start_call_stack": start,
            "target_description": "Program: app.py",
            "sys_path": ["/srv"],
            **keys,
            "frame_records": records,
        }
    )


def session_records(count: int, seed: int) -> list:
    rng = random.Random(seed)
    frames = [
        "main\x00/srv/app.py\x0010\x01cApp\x01l12",
        "run\x00/srv/app.py\x0020",
        "[self]\x00\x00",
        "λ\x00/srv/ünï.py\x00x",
        "work\x00/srv/app.py\x0030\x01l31",
    ]
    stacks = [START + [rng.choice(frames) for _ in range(rng.randint(0, 4))] for _ in range(10)]
    stacks.append(START[:1])
    return [[rng.choice(stacks), rng.choice([0.001, 0, 2, 0.0005])] for _ in range(count)]


@pytest.mark.parametrize("seed", [4, 5])
def test_pyinstrument_session_fast_reading_matches_the_plain_one(seed: int) -> None:
    data = session(session_records(200, seed))
    document = pyinstrument.decode_typed_json(data, pyinstrument._Document)
    assert document is not None and document.frame_records is not msgspec.UNSET
    builder = ProfileBuilder("x", Unit.SECONDS)
    assert pyinstrument._read_typed_session(builder, document)  # taken
    got = pyinstrument.parse(data, "run.pyisession")
    assert_same(got, pyinstrument._parse_whole(data, "run.pyisession"))
    assert got.profiles[0].metadata == {"target": "Program: app.py"}


def test_pyinstrument_session_equal_frames_in_texts_written_differently() -> None:
    frames = [*START, "main\x00/srv/app.py\x0010", "[self]"]
    text = orjson.dumps(frames)
    spaced = text.replace(b",", b", ")  # another text, the same frames
    records = b"[[%s,0.5],[%s,0.25],[%s,0.125]]" % (text, orjson.dumps(frames[:3]), spaced)
    data = session([]).replace(b'"frame_records":[]', b'"frame_records":' + records)
    document = pyinstrument.decode_typed_json(data, pyinstrument._Document)
    assert pyinstrument._read_typed_session(ProfileBuilder("x", Unit.SECONDS), document)
    got = pyinstrument.parse(data, "run.pyisession")
    assert_same(got, pyinstrument._parse_whole(data, "run.pyisession"))
    profile = got.profiles[0]
    assert profile.samples.stack.tolist() == [1, 1, 1]  # the stem trimmed, [self] dropped
    assert profile.stacks.frames_of(1) == [0, 1] and profile.frames[0].name == "_run_code"
    assert profile.samples.weight.tolist() == [0.5, 0.25, 0.125]


def test_pyinstrument_session_errors_still_name_the_place() -> None:
    records = session_records(5, 6)
    records[3] = [records[3][0], True]
    assert error_of(session(records)) == (
        "pyinstrument session/JSON, frame_records[3][1]: expected a non-negative number, got true"
    )
    records[3] = [[*START, 7], 0.001]
    assert error_of(session(records)) == (
        "pyinstrument session/JSON, frame_records[3][0][2]: expected a string, got the number 7"
    )
    records[3] = [START, 1e301]
    assert "frame_records[3][1]: expected a non-negative number" in error_of(session(records))


# pyinstrument rendered trees


NAMES = ["main", "run", "[self]", "λ", 'say "hi"\\', "C:\\app\\x.py"]


def tree_node(rng: random.Random, depth: int, odd: bool = False) -> dict:
    """A random node; `odd` adds values pyinstrument never writes (the fast reading leaves them)."""
    name = rng.choice(NAMES)
    children = [
        tree_node(rng, depth + 1, odd) for _ in range(rng.randint(0, 3 if depth < 4 else 0))
    ]
    node = {
        "function": name,
        "file_path_short": "app.py",
        "file_path": rng.choice(["/srv/app.py", "", None, "/srv/ünï.py", "C:\\app\\x.py"]),
        "line_no": rng.choice([1, 7, 0, None, 2**40, 10**18] + ([True, "3", 2**62] if odd else [])),
        "time": sum(child["time"] for child in children) + rng.choice([0.0, 0.001, 0.25]),
        "await_time": 0.0,
        "is_application_code": True,
        "children": children,
    }
    if rng.random() < 0.5:
        node["class_name"] = rng.choice(["App", "", None] + ([3] if odd else []))
    return node


def tree_document(root: object, style: str = "orjson") -> bytes:
    document = {"sample_count": 9, "target_description": "x", "root_frame": root}
    if style == "ascii":  # as pyinstrument writes it: ``"key": value``, \\u escapes
        return json.dumps(document).encode()
    if style == "indented":
        return json.dumps(document, indent=1, ensure_ascii=False).encode()
    return orjson.dumps(document)


def typed_tree(data: bytes) -> object:
    """The tree of `data` as the fast reading reads it (UNSET when it does not take it)."""
    document = pyinstrument.decode_typed_json(data, pyinstrument._Document)
    return pyinstrument._decode_tree(document.root_frame)


def reference_tree(data: bytes) -> Profile:
    """The tree read node by node into a `ProfileBuilder`, samples added one at a time."""
    document = orjson.loads(data)
    builder = ProfileBuilder("t.json", Unit.SECONDS)
    builder.metadata["target"] = document["target_description"]
    pending = [(document["root_frame"], -1)]
    while pending:
        node, parent = pending.pop()
        if node["function"] == "[self]":
            if node["time"] > 0:
                builder.add_sample(parent, node["time"])
            continue
        line, class_name = node.get("line_no"), node.get("class_name")
        name = f"{class_name}.{node['function']}" if class_name else node["function"]
        line = line if type(line) is int and 0 < line < 2**62 else None
        stack = builder.stack(parent, builder.frame(name, node.get("file_path") or None, line))
        inner = 0.0
        for child in node["children"]:
            inner += child["time"]
        if node["time"] - inner > 0 and not math.isclose(node["time"], inner, abs_tol=1e-9):
            builder.add_sample(stack, node["time"] - inner)
        pending.extend((child, stack) for child in reversed(node["children"]))
    return builder.build()


@pytest.mark.parametrize(
    ("seed", "style"), [(7, "orjson"), (8, "ascii"), (9, "indented"), (10, "ascii")]
)
def test_pyinstrument_tree_fast_reading_matches_the_plain_one(seed: int, style: str) -> None:
    rng = random.Random(seed)
    children = [tree_node(rng, 1) for _ in range(4)]
    root = {"function": "<module>", "time": sum(c["time"] for c in children), "children": children}
    data = tree_document(root, style)
    assert isinstance(typed_tree(data), pyinstrument._Node)  # the tree is read typed
    got = pyinstrument.parse(data, "t.json")
    assert len(got.profiles[0].samples) > 0
    expected = pyinstrument._parse_whole(data, "t.json")
    assert_same(got, expected)
    assert_same(ProfileGroup("t.json", [reference_tree(data)]), expected)  # as before the columns


def test_pyinstrument_tree_nodes_share_their_values() -> None:
    def node(time: float, children: list) -> dict:
        fields = {"function": "wörk", "file_path": "C:\\a.py", "line_no": 1234, "class_name": "K"}
        return {**fields, "time": time, "children": children}

    root = typed_tree(tree_document(node(2.0, [node(0.5, []), node(0.5, [])]), "ascii"))
    first, second = root.children
    for field in ("function", "file_path", "line_no", "class_name"):
        assert getattr(first, field) is getattr(second, field) is getattr(root, field)
    assert (root.function, root.file_path, root.line_no) == ("wörk", "C:\\a.py", 1234)


@pytest.mark.parametrize("seed", [11, 12])
def test_pyinstrument_unusual_tree_values_are_read_plainly(seed: int) -> None:
    rng = random.Random(seed)
    root = {"function": "<module>", "time": 9.0, "line_no": True, "children": []}
    root["children"] = [tree_node(rng, 1, odd=True) for _ in range(3)]
    data = tree_document(root)
    assert typed_tree(data) is msgspec.UNSET
    assert_same(pyinstrument.parse(data, "t.json"), pyinstrument._parse_whole(data, "t.json"))


def test_pyinstrument_tree_values_the_patterns_miss_are_read_plainly() -> None:
    # a key written with an escape: its value is not among those the patterns find
    data = (
        b'{"sample_count": 1, "root_frame": {"\\u0066unction": "f", "file_path": "a", "time": 1}}'
    )
    assert typed_tree(data) is msgspec.UNSET
    got = pyinstrument.parse(data, "t.json")
    assert_same(got, pyinstrument._parse_whole(data, "t.json"))
    assert got.profiles[0].frames[0].name == "f"
    # keys inside strings add values no node has, which does no harm
    inside = b'"file_path": "function\\": \\"g\\", \\"line_no\\": 5"'
    data = b'{"sample_count": 1, "root_frame": {"function": "f", %s, "time": 1}}' % inside
    assert isinstance(typed_tree(data), pyinstrument._Node)
    assert_same(pyinstrument.parse(data, "t.json"), pyinstrument._parse_whole(data, "t.json"))


def test_pyinstrument_tree_self_time_at_the_root() -> None:
    root = {"function": "[self]", "time": 0.5, "children": [{"function": "lost", "time": 0.5}]}
    data = tree_document(root)
    assert isinstance(typed_tree(data), pyinstrument._Node)
    profile = pyinstrument.parse(data, "t.json").profiles[0]
    assert profile.samples.stack.tolist() == [-1] and len(profile.frames) == 0
    assert_same(ProfileGroup("t.json", [profile]), pyinstrument._parse_whole(data, "t.json"))


def test_pyinstrument_mutated_trees_read_as_the_plain_reading_reads_them() -> None:
    rng = random.Random(14)
    children = [tree_node(rng, 1) for _ in range(3)]
    root = {"function": "<module>", "time": 9.0, "line_no": 3, "children": children}
    original = tree_document(root, "ascii")
    replacements = b'"\\:,{}[]0123456789.-e tnul'
    for _ in range(400):
        data = bytearray(original)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data))
            if rng.random() < 0.3:
                del data[at]
            else:
                data[at] = rng.choice(replacements)
        try:
            expected = pyinstrument._parse_whole(bytes(data), "m.json")
        except FormatError:
            with pytest.raises(FormatError):
                pyinstrument.parse(bytes(data), "m.json")
        else:
            assert_same(pyinstrument.parse(bytes(data), "m.json"), expected)


def test_pyinstrument_tree_errors_still_name_the_place() -> None:
    leaf = {"function": "leaf", "time": -1.0, "children": []}
    root = {"function": "main", "time": 1.0, "children": [leaf]}
    data = orjson.dumps({"sample_count": 1, "root_frame": root})
    assert error_of(data) == (
        "pyinstrument session/JSON, root_frame.children[0].time: "
        "expected a non-negative number, got the number -1.0"
    )
    root["children"] = [{"function": 5, "time": 0.5}]
    assert error_of(orjson.dumps({"sample_count": 1, "root_frame": root})) == (
        "pyinstrument session/JSON, root_frame.children[0].function: "
        "expected a string, got the number 5"
    )
    root["children"] = [{"function": "x", "time": 0.5, "children": {}}]
    assert error_of(orjson.dumps({"sample_count": 1, "root_frame": root})) == (
        "pyinstrument session/JSON, root_frame.children[0].children: expected a list, got an object"
    )
    empty = orjson.dumps({"sample_count": 0, "root_frame": None})
    assert typed_tree(empty) is None
    assert len(pyinstrument.parse(empty, "e.json").profiles[0].samples) == 0


# Hermes samples


def hermes_trace(samples: list, frames: dict, before: bytes = b"") -> bytes:
    events = [
        {"name": "process_name", "ph": "M", "pid": 3, "ts": "0", "tid": "-1", "args": {"name": "h"}},
        {"name": "thread_name", "ph": "M", "pid": 3, "ts": "0", "tid": "8", "args": {"name": "js"}},
    ]  # fmt: skip
    return b'{"traceEvents":%s,%s"samples":%s,"stackFrames":%s}' % (
        orjson.dumps(events),
        before,
        orjson.dumps(samples),
        orjson.dumps(frames),
    )


def hermes_samples(count: int, seed: int) -> tuple[list, dict]:
    """Samples of two threads over a small frame tree, some at equal times, some with odd text."""
    rng = random.Random(seed)
    frames = {"1": {"name": "[root]", "category": "root"}}
    for key in range(2, 40):
        frames[str(key)] = {
            "name": rng.choice(["main", "render", "},{", "λ"]),
            "category": "JavaScript",
            "parent": rng.randint(1, key - 1),
        }
    samples, clock = [], 1000
    for _ in range(count):
        clock += rng.choice([0, 3, 10, 17])
        sf = rng.randint(1, 39)
        samples.append(
            {
                "cpu": "-1",
                "name": rng.choice(["", "},{", '"]'])[: rng.randint(0, 3)],
                "ts": str(clock),
                "pid": 3,
                "tid": rng.choice(["8", "9", 8]),
                "weight": "1",
                "sf": sf if rng.random() < 0.7 else str(sf),
            }
        )
    return samples, frames


def read_plainly(data: bytes) -> ProfileGroup:
    """The reading without columns: `samples` spelled with an escape is not looked for."""
    plain = data.replace(b'"samples":', b'"sample\\u0073":')
    assert isinstance(chrome_trace._read_trace(plain).other_keys["samples"], list)
    return chrome_trace.parse(plain, "hermes.json")


def columns_taken(data: bytes) -> bool:
    samples = chrome_trace._read_trace(data).other_keys["samples"]
    return isinstance(samples, chrome_trace._SampleColumns)


@pytest.mark.parametrize(("count", "seed"), [(5, 10), (400, 11), (9000, 12)])
def test_hermes_columns_match_the_plain_reading(count: int, seed: int) -> None:
    """Up to several chunks of 256 kB, with `},{` inside names to mislead the cuts."""
    samples, frames = hermes_samples(count, seed)
    data = hermes_trace(samples, frames)
    assert columns_taken(data)
    got = chrome_trace.parse(data, "hermes.json")
    assert_same(got, read_plainly(data))
    assert sum(len(p.samples) for p in got.profiles) > 0


def test_hermes_numbers_as_times_and_a_nested_samples_key() -> None:
    samples, frames = hermes_samples(50, 13)
    for index, sample in enumerate(samples):
        sample["ts"] = int(sample["ts"]) + (0.5 if index % 3 else 0)
    nested = b'"meta":{"samples":[{"ts":"1","sf":1}]},'
    data = hermes_trace(samples, frames, nested)
    assert columns_taken(data) is False  # the first `samples` found is not the top-level one
    plain = hermes_trace(samples, frames)
    assert columns_taken(plain)
    assert_same(chrome_trace.parse(plain, "hermes.json"), read_plainly(plain))
    assert_same(chrome_trace.parse(data, "hermes.json"), read_plainly(plain))


def test_hermes_unusual_samples_are_read_plainly() -> None:
    samples, frames = hermes_samples(30, 14)
    samples[4]["ts"] = " 1200 "  # Number() takes spaces; the columns do not
    data = hermes_trace(samples, frames)
    assert not columns_taken(data)
    assert_same(chrome_trace.parse(data, "hermes.json"), read_plainly(data))
    samples[4] = ["not", "a", "sample"]
    assert error_of(hermes_trace(samples, frames)) == (
        "Chrome trace events, samples[4]: expected an object, got a list"
    )
    samples[4] = dict(samples[5], ts=None)
    assert error_of(hermes_trace(samples, frames)) == (
        "Chrome trace events, samples[4].ts: expected a number, got null"
    )


def test_hermes_column_errors_name_the_sample() -> None:
    samples, frames = hermes_samples(30, 15)
    for index, sample in enumerate(samples):
        sample["tid"], sample["ts"] = "8", str(1000 + 10 * index)
    samples[20]["sf"] = 77
    data = hermes_trace(samples, frames)
    assert columns_taken(data)
    plain = data.replace(b'"samples":', b'"sample\\u0073":')
    assert error_of(data) == error_of(plain)
    assert (
        error_of(data)
        == "Chrome trace events, samples[20].sf: no stack frame '77' in 'stackFrames'"
    )


def test_hermes_unusual_stack_frames_are_read_plainly() -> None:
    samples, frames = hermes_samples(40, 16)
    frames["2"] = {"category": "JavaScript", "parent": None}  # no name: "undefined", as plainly
    frames["3"] = dict(frames["3"], name=orjson.Fragment(b"12345678901234567890123"), parent=0)
    data = hermes_trace(samples, frames)
    assert columns_taken(data)
    assert_same(chrome_trace.parse(data, "hermes.json"), read_plainly(data))
    frames["39"] = "not a frame"  # refused by the typed reading: read plainly
    data = hermes_trace(samples, frames)
    assert not columns_taken(data)
    assert_same(chrome_trace.parse(data, "hermes.json"), read_plainly(data))


def test_deep_nesting_is_left_to_the_plain_reading() -> None:
    """msgspec refuses nesting past its limit with a RecursionError; orjson's error is reported."""
    deep = b"[" * 5000 + b"]" * 5000
    data = safari_recording([], []).replace(b'"overview":{', b'"overview":{"x":%s,' % deep)
    assert json_pieces.decode_typed_json(data, safari._Document) is None
    assert "not valid JSON" in error_of(data)
    data = session(session_records(3, 17), extra=orjson.Fragment(deep))
    assert "not valid JSON" in error_of(data)


def test_hermes_commas_too_many_are_not_json() -> None:
    samples, frames = hermes_samples(20, 18)
    data = hermes_trace(samples, frames)
    for bad in (data.replace(b'],"stackFrames"', b',],"stackFrames"'),
                data.replace(b'"samples":[', b'"samples":[,'),
                data.replace(b'},{"cpu"', b'},,{"cpu"', 1)):  # fmt: skip
        assert "not valid JSON" in error_of(bad)  # as the plain reading says

"""Big JSON lists read a piece at a time (`formats.json_pieces`) and the importers that use it.

The reading in pieces must give exactly what orjson gives for the whole
document, whatever the layout and wherever the cuts fall, or give up (None)
so that the importer reads the whole document. The Firefox and stackprof
importers must give the same profiles either way, and still name the place
of a bad value.
"""

from __future__ import annotations

import itertools
import json
import math
import random

import numpy as np
import orjson
import pytest

from flamesight.formats import FormatError, firefox, stackprof
from flamesight.formats.json_pieces import ListPieces, list_opener
from flamesight.model import Profile, ProfileGroup

TRICKY = ["],[", '},{"k":', "a,b", '"x"', "]", "\\", "日本語 ☃", ""]

# json_pieces


def items_of(data: bytes, key: str, piece_bytes: int) -> list | None:
    """The list at top-level `key` as the reading in pieces gives it (None if it gives up)."""
    pieces = ListPieces(data, piece_bytes)
    found = pieces.find(list_opener(key))
    collected: list = []

    def add(items: list) -> bool:
        collected.extend(items)
        return True

    if found is None or pieces.read_items(found.end(), add, collected) is None:
        return None
    skeleton = pieces.skeleton()
    if not isinstance(skeleton, dict) or pieces.result(skeleton.get(key)) is not collected:
        return None
    return collected


def rows_document(seed: int, count: int) -> dict:
    """A list of rows, objects and strings holding cut-like text, between decoy keys."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        kind = rng.randrange(4)
        if kind == 0:
            rows.append([index, rng.random(), None])
        elif kind == 1:
            rows.append({"k": index, "s": rng.choice(TRICKY), "n": [[1, 2], {"k": 3}]})
        elif kind == 2:
            rows.append(rng.choice(TRICKY))
        else:
            rows.append([[rng.choice(TRICKY)], index])
    return {"before": '"rows": [1', "rows": rows, "after": {"rows": [1, 2]}, "end": "],["}


@pytest.mark.parametrize("piece_bytes", [1, 7, 64, 300, 4096])
@pytest.mark.parametrize("indent", [False, True])
def test_items_read_in_pieces_are_the_items_read_whole(piece_bytes: int, indent: bool) -> None:
    """Mixed items, with cut-like text in strings and nested lists, cut at every size."""
    document = rows_document(piece_bytes, 400)
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2 if indent else 0)
    assert items_of(data, "rows", piece_bytes) == document["rows"]


@pytest.mark.parametrize(
    ("items", "text"),
    [
        ([], b"[]"),
        ([], b"[ \r\n ]"),
        ([{"k": 1}], b'[{"k": 1}]'),
        ([[1], [2]], b"[ [1] ,\n[2] ]"),
        ([{}, {}], b"[{},{}]"),
    ],
)
def test_short_lists_close_where_they_close(items: list, text: bytes) -> None:
    data = b'{"rows": ' + text + b', "more": [[1], [2]], "z": {"a": "]"}}'
    for piece_bytes in (1, 2, 3, 1000):
        assert items_of(data, "rows", piece_bytes) == items


@pytest.mark.parametrize(
    "data",
    [
        b'{"rows": [[1], [2],, [3]]}',  # not JSON inside the list
        b'{"rows": [[1], [2], [3]}',  # the list never closes
        b'{"rows": [[1], [2]] "x": 1}',  # not JSON in the rest
        b'{"rows": [[1], [2]], "rows": [5]}',  # a later key wins: not the list read
        b'{"a": {"rows": [[1], [2]]}, "rows": [5]}',  # not the key expected
    ],
)
def test_reading_in_pieces_gives_up_on_what_it_cannot_prove(data: bytes) -> None:
    for piece_bytes in (1, 4, 1000):
        assert items_of(data, "rows", piece_bytes) is None


def test_a_key_inside_a_string_is_not_taken_for_the_list() -> None:
    data = b'{"s": "x\\"rows\\": [1, 2]", "rows": [[3]]}'
    assert items_of(data, "rows", 2) == [[3]]


def test_a_refused_piece_stops_the_reading() -> None:
    pieces = ListPieces(b'{"rows": [1, 2, 3, 4]}', 1)
    start = pieces.find(list_opener("rows")).end()
    calls = []

    def refuse_twos(items: list) -> bool:
        calls.append(items)
        return 2 not in items

    assert pieces.read_items(start, refuse_twos) is None
    assert calls[-1] == [2]


@pytest.mark.parametrize(
    ("text", "integers", "expected", "dtype"),
    [
        (b"1, 2, -3", True, [1, 2, -3], np.int32),
        (b"1, 4294967296, -3", True, [1, 2**32, -3], np.int64),
        (b"1, 2.5, 3", False, [1.0, 2.5, 3.0], np.float64),
        (b"9007199254740993, 1e0", False, [9007199254740993.0, 1.0], np.float64),
        (b" ", True, [], np.int32),
        (b"1, 2.5", True, None, None),
        (b"1, true", True, None, None),
        (b"1, null", False, None, None),
        (b'1, "2"', False, None, None),
        (b"1, 18446744073709551616", True, None, None),
        (b"1, 01", True, None, None),
        (b"1,, 2", True, None, None),
    ],
)
def test_numbers_read_in_pieces(text: bytes, integers: bool, expected, dtype) -> None:
    data = b'{"n": [' + text + b'], "m": 1}'
    for piece_bytes in (1, 3, 1000):
        pieces = ListPieces(data, piece_bytes)
        array = pieces.read_numbers(pieces.find(list_opener("n")).end(), integers)
        if expected is None:
            assert array is None
            continue
        assert array.dtype == dtype and array.tolist() == expected
        skeleton = pieces.skeleton()
        assert pieces.result(skeleton["n"]) is array and skeleton["m"] == 1


def test_lists_inside_a_list_read_are_not_found_again() -> None:
    data = b'{"rows": [{"rows": [1]}, {"rows": [2]}], "next": {"rows": [3]}}'
    pieces = ListPieces(data, 1)
    pattern = list_opener("rows")
    first = pieces.find(pattern)
    end = pieces.read_items(first.end(), lambda items: True, "outer")
    second = pieces.find(pattern)
    assert second.start() > end
    assert pieces.read_items(second.end(), lambda items: True, "inner") is not None
    skeleton = pieces.skeleton()
    assert pieces.result(skeleton["rows"]) == "outer"
    assert pieces.result(skeleton["next"]["rows"]) == "inner"


def test_the_markers_do_not_occur_in_the_document() -> None:
    """A document holding the first marker candidates still reads exactly."""
    candidates = [731_694_205_836 * 10 + index for index in range(3)]
    document = {"rows": [[value] for value in candidates], "stem": 731_694_205_836}
    assert items_of(orjson.dumps(document), "rows", 4) == document["rows"]


# Firefox: the tables read in pieces, and the stacks interned a level at a time


def gecko_document(seed: int, samples: int = 30_000, threads: int = 2) -> dict:
    """Threads with dropped frames (Firefox internals, C++ labels), null and repeated stacks,
    stack rows repeating a (prefix, frame) pair, prefixes after their rows, times
    that step back, and a child process."""
    rng = random.Random(seed)

    def thread(name: str) -> dict:
        locations = ["(root)", "js::RunScript", "forEach (self-hosted:1:2)"] + [
            f"f{index} (https://x.test/{index % 7}.js:{index}:{index % 13})" for index in range(60)
        ]
        locations.append("inner (resource://gre/x.js:3)")
        frames = [[index, None, 3] for index in range(len(locations))]
        frames.reverse()  # frame rows in another order than the strings
        stacks: list[list[int | None]] = [[None, len(frames) - 1]]
        for _ in range(3000):
            stacks.append([rng.randrange(len(stacks)), rng.randrange(len(frames))])
        stacks.append(list(stacks[-1]))  # a repeated (prefix, frame) pair
        # a row whose prefix comes after it (still no cycle)
        stacks.append([len(stacks) + 1, 5])
        stacks.append([3, 7])
        sample_rows = []
        clock = 1.5
        for _ in range(samples):
            clock += rng.choice([1.0, 0.5, 0.0, -0.25, 2.0])
            stack = rng.choice([None, *range(len(stacks))]) if rng.random() < 0.9 else 2
            sample_rows.append([stack, clock, 0.0])
        return {
            "name": name,
            "samples": {"schema": {"stack": 0, "time": 1, "rss": 2}, "data": sample_rows},
            "markers": {"schema": {"name": 0, "time": 1, "data": 2}, "data": []},
            "stackTable": {"schema": {"frame": 1, "prefix": 0}, "data": stacks},
            "frameTable": {"schema": {"location": 0, "line": 2}, "data": frames},
            "stringTable": locations,
        }

    child = {"meta": {"startTime": 1000.5}, "threads": [thread("GeckoMain")], "processes": []}
    return {
        "meta": {"startTime": 1000.0, "version": 12},
        "libs": [],
        "threads": [thread(f"worker {index}") for index in range(threads - 1)]
        + [thread("GeckoMain")],
        "processes": [child],
    }


def checked_reading(data: bytes, name: str) -> list[Profile]:
    """The profiles as the row-by-row reading makes them (the reference)."""
    _, threads = firefox._gecko_threads(orjson.loads(data))
    titles = firefox._titles(threads, name)
    return [
        firefox._checked_profile(thread, where, offset, title)
        for (thread, where, offset), title in zip(threads, titles, strict=True)
    ]


def assert_same_profile(got: Profile, expected: Profile) -> None:
    assert got.name == expected.name and got.unit == expected.unit
    assert [got.frames[i] for i in range(len(got.frames))] == [
        expected.frames[i] for i in range(len(expected.frames))
    ]
    for column in ("parent", "frame"):
        assert getattr(got.stacks, column).tolist() == getattr(expected.stacks, column).tolist()
    for column in ("stack", "time", "weight"):
        assert getattr(got.samples, column).tolist() == getattr(expected.samples, column).tolist()


def assert_same_group(got: ProfileGroup, expected: list[Profile], active: int) -> None:
    assert len(got.profiles) == len(expected) and got.active_index == active
    for profile, reference in zip(got.profiles, expected, strict=True):
        assert_same_profile(profile, reference)


@pytest.mark.parametrize("indent", [False, True])
def test_gecko_tables_read_in_pieces_give_the_row_by_row_profiles(
    indent: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = orjson.dumps(gecko_document(3), option=orjson.OPT_INDENT_2 if indent else 0)
    pieces: dict[int, int] = {}  # pieces of rows added, per table
    add = firefox._TableColumns.add

    def counted_add(table: firefox._TableColumns, rows: list) -> bool:
        pieces[id(table)] = pieces.get(id(table), 0) + 1
        return add(table, rows)

    monkeypatch.setattr(firefox._TableColumns, "add", counted_add)
    read = firefox._read_in_pieces(data)
    assert read is not None
    assert all(pieces[id(tables.samples)] > 1 for tables in read[2])  # several pieces
    group = firefox.parse(data, "gecko.json")
    assert [p.name for p in group.profiles] == ["worker 0", "GeckoMain", "GeckoMain (2)"]
    assert sum(len(p.samples) for p in group.profiles) > 50_000
    assert_same_group(group, checked_reading(data, "gecko.json"), 1)


def test_gecko_tables_not_read_in_pieces_give_the_same_profiles() -> None:
    """With the tables' keys escaped nothing is read in pieces: the skeleton is the whole
    document, and its tables become columns the same way."""
    data = orjson.dumps(gecko_document(4, samples=5000, threads=1))
    plain = data.replace(b'"data"', b'"dat\\u0061"')
    assert firefox._read_in_pieces(plain) is not None  # nothing found: all of it in the skeleton
    plain_group = firefox.parse(plain, "p.json")
    assert_same_group(plain_group, checked_reading(data, "p.json"), 0)
    assert_same_group(firefox.parse(data, "p.json"), plain_group.profiles, 0)


def test_gecko_small_tables_read_in_pieces_give_the_same_profiles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Small tables are left to the skeleton, but read in pieces they give the same, empty
    ones included."""
    monkeypatch.setattr(firefox, "_SMALL_TABLE_BYTES", 0)
    document = gecko_document(7, samples=50)
    document["threads"][0]["samples"]["data"] = []
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    read = firefox._read_in_pieces(data)
    assert read is not None
    assert [tables.samples.count > 0 for tables in read[2]] == [False, True, True]
    assert_same_group(firefox.parse(data, "s.json"), checked_reading(data, "s.json"), 1)


@pytest.mark.parametrize("extra", [0, 1, 50])
def test_gecko_stack_table_at_the_level_limit(extra: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stack table `_MAX_LEVELS` deep is interned a level at a time; deeper ones are
    walked row by row. Both give the row-by-row reading's profile."""
    walked = []
    walk = firefox._walked_stacks
    monkeypatch.setattr(firefox, "_walked_stacks", lambda *args: walked.append(1) or walk(*args))
    depth = firefox._MAX_LEVELS + extra  # of the deepest row: rows 0 .. depth
    stacks = [[None, 0]] + [[index, index % 3] for index in range(depth)]
    thread = {
        "name": "GeckoMain",
        "samples": {"data": [[depth, 1.0], [depth - 7, 2.0], [None, 3.0], [0, 4.0], [5, 6.5]]},
        "stackTable": {"data": stacks},
        "frameTable": {"data": [[0], [1], [2]]},
        "stringTable": ["a (x.js:1)", "js::RunScript", "b (y.js:2:3)"],
    }
    data = orjson.dumps({"meta": {"startTime": 0}, "threads": [thread]})
    (profile,) = firefox.parse(data, "limit.json").profiles
    assert_same_profile(profile, checked_reading(data, "limit.json")[0])
    assert bool(walked) == bool(extra) and len(profile.stacks) > 2 * depth // 3
    busy = profile.samples.weight[profile.samples.stack >= 0].sum()
    assert profile.frame_weights()[1][0] == busy  # every stack starts at row 0's frame


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t["samples"]["data"].__setitem__(4000, [99_999, 5.0, 0]),
            "$.threads[0].samples.data[4000][0]: expected a stack index below 3004, "
            "got the number 99999",
        ),
        (
            lambda t: t["samples"]["data"].__setitem__(4000, [1.0, 5.0, 0]),
            "$.threads[0].samples.data[4000][0]: expected a stack index below 3004, "
            "got the number 1.0",
        ),
        (
            lambda t: t["samples"]["data"].__setitem__(5000, [1, True, 0]),
            "$.threads[0].samples.data[5000][1]: expected a time, got true",
        ),
        (
            lambda t: t["stackTable"]["data"].__setitem__(slice(1, 3), [[2, 1], [1, 1]]),
            "$.threads[0].stackTable.data[2]: the stack prefixes form a cycle",
        ),
    ],
)
def test_gecko_errors_in_big_tables_name_the_place(change, message: str) -> None:
    document = gecko_document(5, samples=6000, threads=1)
    document["processes"] = []
    (thread,) = document["threads"]
    thread["samples"]["data"][0] = [2, 0.5, 0.0]  # reaches stack rows 0..2
    change(thread)
    data = orjson.dumps(document)
    assert firefox._read_in_pieces(data) is None
    with pytest.raises(FormatError, match=r"\$\.threads\[0\]") as caught:
        firefox.parse(data, "bad.json")
    assert message in str(caught.value)


def test_gecko_unreached_bad_rows_are_read_as_before() -> None:
    """A bad row no sample reaches makes the pieces give up, and the row-by-row reading
    (which never looks at it) loads the file."""
    document = gecko_document(6, samples=2000, threads=1)
    document["processes"] = []
    (thread,) = document["threads"]
    stacks = thread["stackTable"]["data"]
    stacks.append(["not a prefix", 0])
    data = orjson.dumps(document)
    assert firefox._read_in_pieces(data) is None
    assert_same_group(firefox.parse(data, "g.json"), checked_reading(data, "g.json"), 0)


@pytest.mark.parametrize("piece_bytes", [1, 40, 333])
def test_gecko_rows_cut_into_tiny_pieces_give_the_row_by_row_profiles(
    piece_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces of a row or a few rows: every cut between rows is a piece boundary somewhere."""
    monkeypatch.setattr(firefox, "_PIECE_BYTES", piece_bytes)
    monkeypatch.setattr(firefox, "_SMALL_TABLE_BYTES", 0)
    pieces: list[int] = []  # rows per piece added
    add = firefox._TableColumns.add
    monkeypatch.setattr(
        firefox._TableColumns,
        "add",
        lambda table, rows: pieces.append(len(rows)) or add(table, rows),
    )
    data = orjson.dumps(gecko_document(8, samples=3000), option=orjson.OPT_INDENT_2)
    read = firefox._read_in_pieces(data)
    assert read is not None
    assert all(tables.samples.count == 3000 for tables in read[2])
    assert len(pieces) > 100  # (several pieces per table)
    assert_same_group(firefox.parse(data, "t.json"), checked_reading(data, "t.json"), 1)


def test_gecko_samples_all_kept_or_not_give_the_row_by_row_profiles() -> None:
    """Times that only go forward keep every sample (its columns go to the profile as
    they are); equal times and steps back leave some out. Both as the row-by-row reading."""
    document = gecko_document(10, samples=4000, threads=1)
    document["processes"] = []
    (thread,) = document["threads"]
    rows = thread["samples"]["data"]
    forward = json.loads(json.dumps(document))
    for index, row in enumerate(forward["threads"][0]["samples"]["data"]):
        row[1] = 2.0 + 1.5 * index
    for changed in (document, forward):
        data = orjson.dumps(changed)
        assert firefox._read_in_pieces(data) is not None
        assert_same_group(firefox.parse(data, "k.json"), checked_reading(data, "k.json"), 0)
    assert any(row[1] <= previous[1] for previous, row in itertools.pairwise(rows))


# stackprof: the number lists read in pieces


def stackprof_document(mode: str, seed: int = 9, records: int = 6000) -> dict:
    rng = random.Random(seed)
    ids = [70_098_916_000_000 + 40 * index for index in range(50)]
    frames = {
        str(frame_id): {"name": f"M#f{i}", "file": "a.rb", "line": i}
        for i, frame_id in enumerate(ids)
    }
    frames["7"] = {"name": "(garbage collection)", "file": ""}
    raw, lines = [], []
    for _ in range(records):
        if rng.random() < 0.05:
            stack = [7]
        else:
            stack = [ids[0]] + [rng.choice(ids) for _ in range(rng.randrange(30))]
        count = rng.choice([1, 1, 1, 2, 3, 9])
        raw += [len(stack), *stack, count]
        lines += [len(stack), *(rng.randrange(5) for _ in stack), count]
    samples = sum(_counts(raw))
    return {
        "version": 1.2,
        "mode": mode,
        "interval": 1000,
        "frames": frames,
        "raw": raw,
        "raw_lines": lines,
        "raw_timestamp_deltas": [rng.choice([999, 1000.5, 1001]) for _ in range(samples)],
    }


def _counts(raw: list[int]) -> list[int]:
    """The sample count of every record of `raw`."""
    counts = []
    position = 0
    while position < len(raw):
        position += raw[position] + 1
        counts.append(raw[position])
        position += 1
    return counts


def read_stackprof_plainly(data: bytes) -> ProfileGroup:
    """The whole reading: the same JSON with the list keys spelled with an escape."""
    plain = data.replace(b'"raw', b'"r\\u0061w')
    read = stackprof._read_in_pieces(plain)
    assert read is not None and read[1] == {}
    return stackprof.parse(plain, "app.json")


@pytest.mark.parametrize("mode", ["wall", "cpu", "object"])
def test_stackprof_lists_read_in_pieces_give_the_same_profile(mode: str) -> None:
    data = json.dumps(stackprof_document(mode), indent=1).encode()
    read = stackprof._read_in_pieces(data)
    assert read is not None and set(read[1]) == {"raw", "raw_lines", "raw_timestamp_deltas"}
    (got,), (expected,) = (
        stackprof.parse(data, "app.json").profiles,
        read_stackprof_plainly(data).profiles,
    )
    assert_same_profile(got, expected)
    assert len(got.samples) == 6000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["raw"].__setitem__(-1, -4), "negative sample count -4"),
        (lambda d: d["raw"].__setitem__(0, 10**6), "raw[0]: a stack of 1000000 frames"),
        (lambda d: d["raw"].__setitem__(5, True), "raw[5]: expected an integer, got true"),
        (lambda d: d["raw"].__setitem__(5, -(2**63)), "raw[5]: expected an integer"),
        (lambda d: d["raw_timestamp_deltas"].pop(), "raw_timestamp_deltas: "),
        (
            lambda d: d["raw_timestamp_deltas"].__setitem__(3, -1),
            "raw_timestamp_deltas[3]: expected a non-negative number",
        ),
    ],
)
def test_stackprof_errors_in_big_lists_name_the_place(change, message: str) -> None:
    document = stackprof_document("wall")
    change(document)
    with pytest.raises(FormatError) as caught:
        stackprof.parse(orjson.dumps(document), "bad.json")
    assert message in str(caught.value)


def test_stackprof_single_delta_weighs_as_its_sum() -> None:
    """A record of one sample weighs what NumPy's sum of its one delta gives (-0.0 is 0.0)."""
    document = {
        "mode": "wall",
        "frames": {"1": {"name": "a"}},
        "raw": [1, 1, 1, 1, 1, 2],
        "raw_timestamp_deltas": [-0.0, 5.0, 1.5],
    }
    (profile,) = stackprof.parse(orjson.dumps(document), "app.json").profiles
    assert [math.copysign(1.0, weight) for weight in profile.samples.weight.tolist()] == [1.0, 1.0]
    assert profile.samples.weight.tolist() == [0.0, 6.5]

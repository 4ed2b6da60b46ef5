"""The fast readings of call-tree formats: GHC ``-pj`` reports, heap profiles, Instruments deep copies.

Each fast reading must give exactly the profile of the plain one (frames,
stacks, sample stacks, times and weights, array for array): the GHC and
heap profile readings are compared with their plain node-by-node walks (the
fast path switched off), the deep copy with an enter/leave reading written
here as the importer used to read it. Inputs are random trees, read in tiny
pieces so that the cuts fall everywhere. Bad input still names its place.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import orjson
import pytest

from flamesight.formats import FormatError, chrome_heapprofile, ghc_prof, instruments, load
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit


def assert_same(group: ProfileGroup, expected: ProfileGroup) -> None:
    """The two groups hold the same profiles, column for column."""
    assert group.name == expected.name
    assert len(group.profiles) == len(expected.profiles)
    for profile, other in zip(group.profiles, expected.profiles, strict=True):
        assert (profile.name, profile.unit) == (other.name, other.unit)
        columns = [
            (profile.frames.name, other.frames.name),
            (profile.frames.file, other.frames.file),
            (profile.frames.line, other.frames.line),
            (profile.frames.col, other.frames.col),
            (profile.stacks.parent, other.stacks.parent),
            (profile.stacks.frame, other.stacks.frame),
            (profile.samples.stack, other.samples.stack),
            (profile.samples.time, other.samples.time),
            (profile.samples.weight, other.samples.weight),
        ]
        for column, other_column in columns:
            assert column.dtype == other_column.dtype
            assert np.array_equal(column, other_column)


def random_tree(seed: int, nodes: int) -> list[tuple[int, int]]:
    """(depth, label) of the nodes of a random tree in depth-first order, labels often repeated."""
    rng = random.Random(seed)
    tree = [(0, 0)]
    for _ in range(nodes - 1):
        tree.append((rng.randint(1, tree[-1][0] + 1), rng.randrange(6)))
    return tree


def nested(tree: list[tuple[int, int]], node_object, separator: str = ",") -> str:
    """The tree as nested JSON objects, `node_object(index)` giving a node's text up to its
    children list."""
    parts = []
    depths = [depth for depth, _ in tree] + [0]
    for index, depth in enumerate(depths[:-1]):
        if index and depth <= depths[index - 1]:
            parts.append(separator)
        parts.append(node_object(index))
        parts.append("]}" * (depth - depths[index + 1] + 1) if depths[index + 1] <= depth else "")
    return "".join(parts)


# GHC -pj


def ghc_report(tree: list[tuple[int, int]], seed: int, layout: str = "ghc") -> bytes:
    """A ``-pj`` report of `tree`; "ghc" lays nodes out as GHC does, "reordered" puts
    ``children`` first, which only the plain reading reads."""
    rng = random.Random(seed)
    centres = [
        {"id": 10 + label, "label": f"f{label % 4}", "module": "Main", "src_loc": f"M.hs:{label}"}
        for label in range(6)
    ]
    centres.append({"id": 99, "label": "MAIN", "module": "MAIN", "src_loc": "<built-in>"})

    def node_opening(index: int) -> str:
        idle = rng.random() < 0.2  # (a leaf that did nothing is left out)
        entries, alloc, ticks = (
            (0, 0, 0) if idle else (rng.randrange(4), rng.randrange(50), rng.randrange(9))
        )
        fields = {
            "id": 99 if index == 0 else 10 + tree[index][1],
            "entries": entries,
            "alloc": alloc * 1_000_003 if alloc % 7 else alloc * 2**40,
            "ticks": ticks,
        }
        return (
            "{"
            + ", ".join(f'"{key}": {value}' for key, value in fields.items())
            + ', "children": [\n'
        )

    head = {"program": "app", "total_ticks": 1, "tick_interval": 20_000, "cost_centres": centres}
    if layout == "reordered":
        nodes: list[dict] = []  # the open nodes, root first
        for index, (depth, _) in enumerate(tree):
            node = orjson.loads(node_opening(index) + "]}")
            node = {"children": node.pop("children"), **node}
            del nodes[depth:]
            if nodes:
                nodes[-1]["children"].append(node)
            else:
                root = node
            nodes.append(node)
        return orjson.dumps({**head, "profile": root})
    tree_text = nested(tree, node_opening, "\n,").encode()
    return orjson.dumps(head)[:-1] + b',\n"profile": ' + tree_text + b"\n}\n"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ghc_fast_reading_is_the_plain_one(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    data = ghc_report(random_tree(seed, 300), seed)
    monkeypatch.setattr(ghc_prof, "_PIECE_BYTES", 40)  # cuts after nearly every node
    assert ghc_prof._read_tree_text(data) is not None  # the fast reading is taken
    group = ghc_prof.parse(data, "x")
    with monkeypatch.context() as plain:
        plain.setattr(ghc_prof, "_read_tree_text", lambda data: None)
        expected = ghc_prof.parse(data, "x")
    assert_same(group, expected)
    time, allocation = group.profiles
    assert len(time.samples) > 50 and len(allocation.samples) > 50
    # the same tree with its keys in another order: read by the plain walk, same profiles
    reordered = ghc_report(random_tree(seed, 300), seed, "reordered")
    assert ghc_prof._read_tree_text(reordered) is None
    assert_same(ghc_prof.parse(reordered, "x"), expected)


@pytest.mark.parametrize(("centre", "ticks"), [(b"1", b"0"), (b"1", b"3"), (b"5000000", b"3")])
def test_ghc_fast_reading_of_a_lone_root(
    monkeypatch: pytest.MonkeyPatch, centre: bytes, ticks: bytes
) -> None:
    """A root that did nothing is left out (no frame at all); one that did is the only sample;
    a cost centre numbered past the lookup table is read by the plain walk."""
    data = (
        b'{"program": "p", "cost_centres": [{"id": %s, "label": "M", "module": "M", '
        b'"src_loc": "<x>"}], "profile": {"id": %s, "entries": 0, "alloc": 0, "ticks": %s, '
        b'"children": []}}' % (centre, centre, ticks)
    )
    assert ghc_prof._read_tree_text(data) is not None
    group = ghc_prof.parse(data, "x")
    monkeypatch.setattr(ghc_prof, "_read_tree_text", lambda data: None)
    assert_same(group, ghc_prof.parse(data, "x"))


def test_ghc_real_report_takes_the_fast_reading(conformance_dir: Path) -> None:
    data = (conformance_dir / "profiles" / "haskell" / "simple.prof").read_bytes()
    assert ghc_prof._read_tree_text(data) is not None
    group = load(data)
    assert [p.name for p in group.profiles] == ["binary-trees time", "binary-trees allocation"]
    assert group.profiles[0].total_weight == 798.0  # total_ticks at 1 ms


GHC_DOCUMENT = (
    b'{"program": "p", "tick_interval": 1000, "cost_centres": ['
    b'{"id": 1, "label": "MAIN", "module": "MAIN", "src_loc": "<built-in>"}, '
    b'{"id": 2, "label": "f", "module": "M", "src_loc": "M.hs:1"}],\n'
    b'"profile": {"id": 1, "entries": 0, "alloc": 8, "ticks": 1, "children": [\n'
    b'{"id": 2, "entries": 1, "alloc": 0, "ticks": 2, "children": []}\n'
    b',{"id": 2, "entries": 1, "alloc": 0, "ticks": 0, "children": [\n'
    b'{"id": %s, "entries": 1, "alloc": 0, "ticks": 3, "children": []}%s\n]}\n]}\n}\n'
)


@pytest.mark.parametrize(
    ("inner_id", "after", "message"),
    [
        (
            b"7",
            b"",
            "GHC profile JSON, profile.children[1].children[0].id: "
            "cost centre the number 7 is not in cost_centres",
        ),
        (b"2", b",", "GHC profile JSON, line 5 column 64: not valid JSON (trailing comma"),
        (b"2", b"]}", "GHC profile JSON, line 7 column 1: not valid JSON"),
        (
            b"2",
            b',{"id": 2, "entries": 1, "alloc": 0, "ticks": -1, "children": []}',
            "GHC profile JSON, profile.children[1].children[1].ticks: "
            "expected a non-negative number, got the number -1",
        ),
        (
            b"2.5",
            b"",
            "GHC profile JSON, profile.children[1].children[0].id: "
            "cost centre the number 2.5 is not in cost_centres",
        ),
    ],
)
@pytest.mark.parametrize("piece_bytes", [20, ghc_prof._PIECE_BYTES])
def test_ghc_errors_still_name_the_place(
    monkeypatch: pytest.MonkeyPatch, piece_bytes: int, inner_id: bytes, after: bytes, message: str
) -> None:
    monkeypatch.setattr(ghc_prof, "_PIECE_BYTES", piece_bytes)
    with pytest.raises(FormatError) as caught:
        ghc_prof.parse(GHC_DOCUMENT % (inner_id, after), "x")
    assert str(caught.value).startswith(message)


def test_ghc_tree_text_must_be_the_profile_key() -> None:
    """Text shaped like a tree that is not the document's last "profile" value is not taken."""
    good = GHC_DOCUMENT % (b"2", b"")
    assert ghc_prof._read_tree_text(good) is not None
    # a second "profile" key after the tree: orjson keeps the last one
    twice = good.rstrip()[:-1] + b', "profile": {"id": 1, "children": []}}'
    assert ghc_prof._read_tree_text(twice) is None
    assert [len(p.samples) for p in ghc_prof.parse(twice, "x").profiles] == [0, 0]


# Heap profiles


def heap_profile(tree: list[tuple[int, int]], seed: int) -> bytes:
    rng = random.Random(seed)

    def node_object(index: int) -> str:
        label = tree[index][1]
        function = {5: "", 4: "größe"}.get(label, f"f{label % 4}")  # (not all ASCII)
        call_frame = {"functionName": function, "scriptId": "3"}
        call_frame |= {"url": f"/app/m{label}.js", "lineNumber": label}
        if label != 2:
            call_frame["columnNumber"] = label * 3
        size = rng.choice([0, 0, 16, 64, 2**53 + 1, 1.5])
        return (
            f'{{"callFrame": {orjson.dumps(call_frame).decode()}, "selfSize": {size}, '
            f'"id": {index + 1}, "children": ['
        )

    samples = orjson.dumps([{"size": 16, "nodeId": 2, "ordinal": n} for n in range(5)])
    return b'{"head": %s, "samples": %s}' % (nested(tree, node_object).encode(), samples)


@pytest.mark.parametrize("seed", [4, 5])
def test_heap_fast_reading_is_the_plain_one(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    data = heap_profile(random_tree(seed, 300), seed)
    assert chrome_heapprofile._read_tree(data, "x") is not None  # the fast reading is taken
    group = chrome_heapprofile.parse(data, "x")
    with monkeypatch.context() as plain:
        plain.setattr(chrome_heapprofile, "_read_tree", lambda data, name: None)
        expected = chrome_heapprofile.parse(data, "x")
    assert_same(group, expected)
    assert len(group.profiles[0].samples) > 50


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ((b'"selfSize": 16', b'"selfSize": "16"'), "$.head.children[0].selfSize: expected a byte"),
        ((b'"selfSize": 16', b'"selfSize": -16'), "$.head.children[0].selfSize: expected a byte"),
        ((b'"lineNumber": 3', b'"lineNumber": 3.5'), "$.head.children[0].callFrame.lineNumber: "),
        ((b'"children": []', b'"children": {}'), "$.head.children[0].children: expected a list"),
        ((b'"id": 2', b'"id": "\xff"'), "line 1 column 1: not valid JSON"),
    ],
)
def test_heap_errors_still_name_the_place(change: tuple[bytes, bytes], message: str) -> None:
    document = (
        b'{"head": {"callFrame": {"functionName": "(root)", "url": ""}, "selfSize": 0, "id": 1, '
        b'"children": [{"callFrame": {"functionName": "f", "url": "a.js", "lineNumber": 3}, '
        b'"selfSize": 16, "id": 2, "children": []}]}}'
    )
    assert chrome_heapprofile.parse(document, "x").profiles[0].total_weight == 16.0
    bad = document.replace(*change)
    with pytest.raises(FormatError) as caught:
        chrome_heapprofile.parse(bad, "x")
    assert str(caught.value).startswith(f"Chrome/Node .heapprofile, {message}")


# Instruments deep copies


def deep_copy(tree: list[tuple[int, int]], seed: int, source: bool) -> bytes:
    """A deep copy of `tree` with random totals (children may add up past their parent),
    blank rows and CRLF line ends."""
    rng = random.Random(seed)
    header = "Weight\tSelf Weight\t" + ("Source Path\t" if source else "") + "Symbol Name"
    lines = [header]
    for depth, label in tree:
        if rng.random() < 0.05:
            lines.append("1.00 ms  1.0%\t0 s\t" + ("\t" if source else "") + "   ")
        weight = rng.choice(["0 s", "1.00 ms", "2.50 ms", "3.00 s", "1.20 min", "7 ns", "9 µs"])
        path = (f"/src/f{label}.c" if label % 2 else "") + "\t" if source else ""
        lines.append(f"{weight}  12.0%\t0 s\t{path}{' ' * (depth + 2)}f{label}()")
    return "\r\n".join(lines).encode() + (b"\r\n" if seed % 2 else b"")


def deep_copy_by_events(data: bytes, name: str) -> Profile:
    """A deep copy read with `ProfileBuilder.enter`/`leave`, a decoded line at a time."""
    lines = data.decode().split("\n")
    header = lines[0].rstrip("\r").split("\t")
    symbol_column, weight_column = header.index("Symbol Name"), header.index("Weight")
    source_column = header.index("Source Path") if "Source Path" in header else None
    builder = ProfileBuilder(name, Unit.MILLISECONDS)
    open_ends: list[float] = []
    cumulative = 0.0
    base = None
    for number, line in enumerate(lines[1:], 2):
        cells = line.removesuffix("\r").split("\t")
        cell = cells[symbol_column] if symbol_column < len(cells) else ""
        if not cell.strip():
            continue
        indent = len(cell) - len(cell.lstrip())
        base = indent if base is None else base
        while len(open_ends) > indent - base:
            cumulative = max(cumulative, open_ends.pop())
            builder.leave(builder.open_frames[-1], cumulative)
        weight = instruments._weight(cells[weight_column], instruments._MILLISECONDS, set(), number)
        file = cells[source_column].strip() if source_column is not None else ""
        builder.enter(builder.frame(cell.strip(), file or None), cumulative)
        open_ends.append(cumulative + weight)
    while open_ends:
        cumulative = max(cumulative, open_ends.pop())
        builder.leave(builder.open_frames[-1], cumulative)
    return builder.build()


@pytest.mark.parametrize(("seed", "source"), [(6, False), (7, True), (8, False)])
def test_instruments_rows_are_read_as_events_would(
    monkeypatch: pytest.MonkeyPatch, seed: int, source: bool
) -> None:
    data = deep_copy(random_tree(seed, 400), seed, source)
    monkeypatch.setattr(instruments, "_PIECE_BYTES", 30)  # cuts after nearly every line
    group = instruments.parse(data, "x")
    assert_same(group, ProfileGroup("x", [deep_copy_by_events(data, "x")]))
    assert len(group.profiles[0].samples) > 100


def test_instruments_errors_name_the_line_after_cached_cells() -> None:
    """A weight or symbol cell seen before is not parsed again, yet errors keep their line."""
    header = b"Running Time\tSelf (ms)\t\tSymbol Name\n"
    rows = b"1.0ms 100.0%\t1\t \ta\n" * 3 + b"1.0ms 100.0%\t1\t \t b\n"
    with pytest.raises(FormatError, match=r"^Instruments, line 6: 'b' is indented 3 spaces"):
        instruments.parse(header + rows + b"1.0ms 100.0%\t1\t \t   b\n", "x")
    with pytest.raises(FormatError, match=r"^Instruments, line 6: unknown unit 'parsecs'"):
        instruments.parse(header + rows + b"1.0 parsecs 100.0%\t1\t \ta\n", "x")


def read_line_by_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch the column reading of deep copies off."""

    def unusual(*args: object) -> None:
        raise instruments._Unusual

    monkeypatch.setattr(instruments, "_row_columns", unusual)


@pytest.mark.parametrize("seed", range(9, 17))
def test_instruments_columns_read_what_lines_read(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Lines alike or not (CRLF, a source column, short rows), blocks cut anywhere: the column
    reading gives the line-by-line reading's profile, and is the one taken."""
    data = deep_copy(random_tree(seed, 300), seed, seed % 3 == 0)
    if seed % 2:
        data = data.replace(b"\r\n", b"\n")  # LF only: lines alike, read as strides of cells
    if seed % 4 == 1:
        data += b"\n2.00 ms  1.0%\n\n"  # short rows, with no symbol cell
    monkeypatch.setattr(instruments, "_PIECE_BYTES", seed * 7)
    lines_taken = []
    row_lines = instruments._row_lines
    monkeypatch.setattr(
        instruments, "_row_lines", lambda *args: lines_taken.append(1) or row_lines(*args)
    )
    group = instruments.parse(data, "x")
    assert not lines_taken
    read_line_by_line(monkeypatch)
    assert_same(group, instruments.parse(data, "x"))
    assert lines_taken
    assert_same(group, ProfileGroup("x", [deep_copy_by_events(data, "x")]))


def test_instruments_chains_and_overflows_keep_the_event_order() -> None:
    """Children adding up past their parent, and totals that do not add up exactly in floats:
    the samples are those enter/leave events make, bit for bit."""
    header = b"Weight\tSelf Weight\tSymbol Name\n"
    rows = [(0, "2.16 min"), (1, "2.16 min"), (2, "1.10 min"), (2, "1.07 min"), (3, "0.07 s")]
    rows += [(1, "0.10 ms"), (2, "0.30 ms"), (2, "0.03 ms"), (0, "7.00 ms")]
    text = b"".join(
        f"{weight}  50.0%\t0 s\t{' ' * (depth + 3)}f{index}\n".encode()
        for index, (depth, weight) in enumerate(rows)
    )
    group = instruments.parse(header + text, "x")
    assert_same(group, ProfileGroup("x", [deep_copy_by_events(header + text, "x")]))
    assert group.profiles[0].samples.weight.sum() > 0


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (b"1.00 ms  9.0%\t0 s\t  a\n1.00 ms  9.0%\t0 s\t    b\n", r"line 3: 'b' is indented 4"),
        (b"1.00 ms  9.0%\t0 s\t  a\n1.00 ms  9.0%\t0 s\t b\n", r"line 3: 'b' is indented 1"),
        (b"1.00 ms  9.0%\t0 s\t  a\n1.00 pc  9.0%\t0 s\t   b\n", r"line 3: unknown unit 'pc'"),
        (b"\n1.00 ms  9.0%\t0 s\t   \n", r"whole file: no row with a symbol"),
    ],
)
def test_instruments_errors_of_lines_alike_name_the_line(
    monkeypatch: pytest.MonkeyPatch, rows: bytes, message: str
) -> None:
    """The column reading leaves errors to the line-by-line reading, which names the line."""
    monkeypatch.setattr(instruments, "_PIECE_BYTES", 10)
    data = b"Weight\tSelf Weight\tSymbol Names\n" + rows * 3
    with pytest.raises(FormatError, match=r"^Instruments, " + message):
        instruments.parse(data, "x")


@pytest.mark.parametrize("seed", range(4))
def test_instruments_chains_passed_over_keep_the_samples(seed: int) -> None:
    """Rows whose first child has their total (chains of them, with later children too, at
    the end of the file or followed by shallower rows) are passed over by the running position:
    the samples stay those enter/leave events make."""
    rng = random.Random(seed)
    tree = random_tree(seed, 500)
    weights = ["1.00 ms", "2.50 ms", "0.07 s", "2.16 min", "1.10 min", "0 s"]
    lines = ["Weight\tSelf Weight\tSymbol Name"]
    previous = (-1, "")
    for depth, label in tree:
        same = depth == previous[0] + 1 and rng.random() < 0.6
        weight = previous[1] if same else rng.choice(weights)
        lines.append(f"{weight}  12.0%\t0 s\t{' ' * (depth + 1)}f{label}()")
        previous = (depth, weight)
    data = "\n".join(lines).encode()
    group = instruments.parse(data, "x")
    assert_same(group, ProfileGroup("x", [deep_copy_by_events(data, "x")]))
    assert len(group.profiles[0].samples) > 50

"""JavaScript source maps: VLQ decoding, remapping frames, bad maps, `--source-map`.

The conformance cases are real profiles of one TypeScript program bundled by
esbuild, parcel and webpack; speedscope is the reference for what remapping
them gives (the mapping strictly before a frame's position, names guessed
from the embedded sources where the map has none).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from flamesight.analysis import top_functions
from flamesight.cli import main
from flamesight.formats import FormatError, load
from flamesight.formats.source_map import apply_source_map, parse_source_map, vlq_decode
from flamesight.model import Frame, ProfileGroup

MAP_NAME = "typescript-source-map-test.js.map"

# --- VLQ ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("A", [0]),
        ("C", [1]),
        ("D", [-1]),
        ("AAAA", [0, 0, 0, 0]),
        ("gB", [16]),
        ("hB", [-16]),
        ("f", [-15]),
        ("e", [15]),
        ("gBACE", [16, 0, 1, 2]),
        ("2HwcqxB", [123, 456, 789]),
        ("+/////D", [2**31 - 1]),
        ("", []),
    ],
)
def test_vlq_decode(text: str, values: list[int]) -> None:
    assert vlq_decode(text) == values


def test_mappings_decode_to_sorted_absolute_columns() -> None:
    document = {
        "version": 3,
        "sources": ["a.ts", "b.ts"],
        "names": ["x", "y"],
        # line 0: col 4 -> a.ts 0:0 "x"; col 0 (out of order) -> b.ts 2:1
        # line 2: col 3 -> a.ts 3:0 "y"; col 5 (no source)
        "mappings": "IAAAA,JCEC;;GDCDC,E",
    }
    decoded = parse_source_map(orjson.dumps(document))
    assert decoded.gen_line.tolist() == [0, 0, 2, 2]
    assert decoded.gen_col.tolist() == [0, 4, 3, 5]
    assert decoded.source.tolist() == [1, 0, 0, -1]
    assert decoded.orig_line.tolist() == [2, 0, 3, -1]
    assert decoded.orig_col.tolist() == [1, 0, 0, -1]
    assert decoded.name.tolist() == [-1, 0, 1, -1]


# --- a tiny profile, remapped exactly -----------------------------------------

BUNDLE = "http://localhost:8080/dist/bundle.js"


def cpuprofile(frames: list[tuple[str, str, int, int]]) -> bytes:
    """A cpuprofile whose root calls each frame (0-based V8 positions) once, 1 ms each.

    A last sample of the root ends the one before (the last sample gets no time).
    """
    nodes: list[dict[str, object]] = [
        {
            "id": 1,
            "callFrame": {"functionName": "(root)", "scriptId": "0", "url": ""},
            "children": list(range(2, len(frames) + 2)),
        }
    ]
    for index, (name, url, line, col) in enumerate(frames):
        nodes.append(
            {
                "id": index + 2,
                "callFrame": {
                    "functionName": name,
                    "scriptId": "1",
                    "url": url,
                    "lineNumber": line,
                    "columnNumber": col,
                },
            }
        )
    samples = [*range(2, len(frames) + 2), 1]
    return orjson.dumps(
        {
            "nodes": nodes,
            "startTime": 0,
            "endTime": 1000 * len(samples),
            "samples": samples,
            "timeDeltas": [1000] * len(samples),
        }
    )


TINY_MAP = {
    "version": 3,
    "file": "bundle.js",
    "sourceRoot": "/app/",
    "sources": ["src/a.ts", "./lib/../b.ts"],
    "names": ["alpha", "beta"],
    "sourcesContent": [
        "\n" * 9 + "  helper = () => {\n",
        None,
    ],
    # line 0: col 0 -> a.ts 0:0 "alpha", col 20 -> b.ts 4:2 "beta"
    # line 2: col 4 -> a.ts 9:0 (no name)
    "mappings": "AAAAA,oBCIEC;;IDKF",
}

TINY_FRAMES = [
    ("a", BUNDLE, 0, 25),  # after the col 20 mapping: beta
    ("b", BUNDLE, 0, 20),  # at col 20: the mapping strictly before, alpha
    ("c", BUNDLE, 2, 10),  # no name: guessed from sourcesContent
    ("d", BUNDLE, 0, 0),  # nothing before it: unchanged
    ("e", "http://localhost:8080/dist/other.js", 0, 25),  # another script: unchanged
    ("f", BUNDLE + "?v=3", 0, 30),  # query ignored: beta
]


def tiny_group() -> ProfileGroup:
    """The tiny profile of `TINY_FRAMES`, loaded."""
    return load(cpuprofile(TINY_FRAMES))


def frames_by_old_name(before: ProfileGroup, after: ProfileGroup) -> dict[str, Frame]:
    """Each frame of `after`, keyed by the name it had in `before`."""
    old, new = before.active.frames, after.active.frames
    return {old[i].name: new[i] for i in range(len(old))}


def test_tiny_profile_remaps_exactly() -> None:
    group = tiny_group()
    remapped = apply_source_map(group, orjson.dumps(TINY_MAP))
    frames = frames_by_old_name(group, remapped)
    assert frames["a"] == Frame("beta", "/app/b.ts", 5, 3)
    assert frames["b"] == Frame("alpha", "/app/src/a.ts", 1, 1)
    assert frames["c"] == Frame("helper", "/app/src/a.ts", 10, 1)
    assert frames["d"] == Frame("d", BUNDLE, 1, 1)
    assert frames["e"] == Frame("e", "http://localhost:8080/dist/other.js", 1, 26)
    assert frames["f"] == Frame("beta", "/app/b.ts", 5, 3)
    # Stacks and samples are shared; analysis groups the remapped functions.
    assert remapped.active.stacks is group.active.stacks
    assert remapped.active.samples is group.active.samples
    top = top_functions(remapped.active, "self", None, None, None)
    weights = {(f.name, f.file): f.self for f in top.functions}
    assert weights[("beta", "/app/b.ts")] == 2000
    assert weights[("alpha", "/app/src/a.ts")] == 1000
    assert remapped.active.total_weight == group.active.total_weight


@pytest.mark.parametrize("mappings", ["", ";;;", ",,"])
def test_empty_mappings_change_nothing(mappings: str) -> None:
    group = tiny_group()
    remapped = apply_source_map(group, orjson.dumps(TINY_MAP | {"mappings": mappings}))
    frames = frames_by_old_name(group, remapped)
    assert all(frame.name == old for old, frame in frames.items())


def test_map_name_selects_the_script_when_file_is_missing() -> None:
    group = tiny_group()
    document = {key: value for key, value in TINY_MAP.items() if key != "file"}
    remapped = apply_source_map(group, orjson.dumps(document), map_name="dist/bundle.js.map")
    assert frames_by_old_name(group, remapped)["a"].name == "beta"
    other = apply_source_map(group, orjson.dumps(document), map_name="other.js.map")
    frames = frames_by_old_name(group, other)
    assert frames["a"].name == "a"
    assert frames["e"] == Frame("beta", "/app/b.ts", 5, 3)
    with pytest.raises(FormatError, match="no 'file' field"):
        apply_source_map(group, orjson.dumps(document))


# --- bad maps --------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "where", "problem"),
    [
        ({"version": 2}, "version", "expected 3"),
        ({"sections": []}, "sections", "index maps"),
        ({"sources": "a.ts"}, "sources", "expected a list"),
        ({"names": ["x", 3]}, "names[1]", "expected a string"),
        ({"mappings": 7}, "mappings", "expected a string"),
        ({"sourceRoot": 1}, "sourceRoot", "expected a string"),
        ({"mappings": "AAAA;A$AA"}, "generated line 2, segment 1", "not a base64 VLQ character"),
        ({"mappings": "AAAA,AAg"}, "generated line 1, segment 2", "continuation digit"),
        ({"mappings": "AAAA,AA"}, "segment 2 ('AA')", "has 2"),
        ({"mappings": "AAAAA;;ACAA"}, "generated line 3, segment 1", "source index out of range"),
        ({"mappings": "AAAAC"}, "segment 1", "name index out of range"),
        ({"mappings": "AADA"}, "segment 1", "original line is negative"),
        ({"mappings": "D"}, "segment 1", "generated column is negative"),
        ({"mappings": "ggggggggB"}, "segment 1", "longer than 7 digits"),
        ({"mappings": "AAAA,AAAé"}, "segment 2", "not a base64 VLQ character"),
    ],
)
def test_bad_maps_name_the_place(change: dict[str, object], where: str, problem: str) -> None:
    document = {"version": 3, "sources": ["a.ts"], "names": ["x"], "mappings": "AAAA"} | change
    with pytest.raises(FormatError) as caught:
        parse_source_map(orjson.dumps(document))
    assert where in caught.value.where
    assert problem in caught.value.problem
    assert str(caught.value).startswith("source map, ")


@pytest.mark.parametrize(
    ("data", "where"), [(b"{not json", "JSON"), (b"[3]", "top level"), (b"", "JSON")]
)
def test_not_a_map(data: bytes, where: str) -> None:
    with pytest.raises(FormatError) as caught:
        apply_source_map(tiny_group(), data, map_name="bundle.js.map")
    assert caught.value.where == where


# --- the conformance cases ------------------------------------------------------

# (bundle position in the profile, 1-based) -> (name, original file, line, column)
# for a few frames of each case; all agree with speedscope's remapping.
WEBPACK = "webpack://speedscope-sourcemap-test-project/"
CASES = {
    "chrome-85-esbuild": (
        "esbuild",
        {
            (1, 15): ("gamma", "gamma.ts", 1, 14),
            (1, 260): ("zap", "kludge.ts", 9, 3),
            (1, 276): ("get floop", "kludge.ts", 13, 7),
            (1, 226): ("l constructor", "kludge.ts", 4, 3),
            (1, 75): ("e", "beta.ts", 3, 8),
            (1, 119): ("m", "delta.ts", 3, 22),
            (1, 158): ("r", "alpha.ts", 4, 8),
            (1, 1): ("(anonymous typescript-source-map-test.js:1)", None, 1, 1),
        },
    ),
    "chrome-85-parcel": (
        "parcel",
        {
            (8, 140): ("alpha", "../alpha.ts", 4, 17),
            (4, 119): ("beta", "../beta.ts", 3, 17),
            (2, 104): ("e", "../gamma.ts", 1, 22),
            (10, 139): ("o constructor", "../kludge.ts", 4, 3),
            (10, 211): ("o.zap", "../kludge.ts", 9, 3),
            (6, 125): ("r", "../delta.ts", 3, 22),
        },
    ),
    "chrome-85-webpack": (
        "webpack",
        {
            (1, 169): ("alpha", WEBPACK + "alpha.ts", 4, 17),
            (1, 88): ("beta", WEBPACK + "beta.ts", 3, 17),
            (1, 34): ("n", WEBPACK + "gamma.ts", 1, 22),
            (1, 243): ("n constructor", WEBPACK + "kludge.ts", 4, 3),
            (1, 305): ("n.zap", WEBPACK + "kludge.ts", 9, 3),
            (1, 368): ("get", WEBPACK + "kludge.ts", 13, 3),
        },
    ),
    "firefox-79-webpack": (
        "webpack",
        {
            (1, 169): ("alpha", WEBPACK + "alpha.ts", 4, 17),
            (1, 88): ("beta", WEBPACK + "beta.ts", 3, 17),
            (1, 181): ("t/<", WEBPACK + "alpha.ts", 5, 4),
            (1, 305): ("n.prototype.zap", WEBPACK + "kludge.ts", 9, 3),
        },
    ),
    "safari-13-webpack": (
        "webpack",
        {
            (1, 169): ("alpha", WEBPACK + "alpha.ts", 4, 17),
            (1, 88): ("beta", WEBPACK + "beta.ts", 3, 17),
            (1, 305): ("zap", WEBPACK + "kludge.ts", 9, 3),
            (1, 130): ("r", WEBPACK + "delta.ts", 3, 22),
        },
    ),
}


@pytest.fixture
def source_maps(conformance_dir: Path) -> Path:
    """The conformance `source-maps/` folder, or a skip."""
    folder = conformance_dir / "profiles" / "source-maps"
    if not folder.is_dir():
        pytest.skip(f"no source-maps folder in {conformance_dir}")
    return folder


@pytest.mark.parametrize("case", sorted(CASES))
def test_conformance_profiles_name_the_typescript(source_maps: Path, case: str) -> None:
    tool, expected = CASES[case]
    map_file = source_maps / tool / MAP_NAME
    group = load(source_maps / f"{case}.json")
    remapped = apply_source_map(group, map_file.read_bytes(), map_name=map_file.name)
    for before, after in zip(group.profiles, remapped.profiles, strict=True):
        assert after.stacks is before.stacks
        assert after.total_weight == before.total_weight
    old, new = group.active.frames, remapped.active.frames
    bundle = next(str(f) for f in old.file if str(f).endswith("/typescript-source-map-test.js"))
    by_position = {
        (old[i].line, old[i].col): new[i] for i in range(len(old)) if old[i].file == bundle
    }
    for position, (name, file, line, col) in expected.items():
        assert by_position[position] == Frame(name, file or bundle, line, col), position
    sources = {str(f) for f in new.file if f and str(f).endswith(".ts")}
    assert {Path(f).name for f in sources} == {
        "alpha.ts",
        "beta.ts",
        "gamma.ts",
        "delta.ts",
        "kludge.ts",
    }
    # The remapped functions are what analysis ranks.
    top = top_functions(remapped.active, "total", None, None, None)
    names = {f.name for f in top.functions}
    assert {"zap"} & names or {"n.zap", "o.zap", "n.prototype.zap"} & names
    if tool != "esbuild":
        assert {"alpha", "beta"} <= names


def test_a_map_for_another_bundle_changes_nothing(source_maps: Path) -> None:
    group = load(source_maps / "chrome-85-webpack.json")
    map_file = source_maps / "esbuild" / MAP_NAME
    remapped = apply_source_map(group, map_file.read_bytes(), map_name="other-bundle.js.map")
    old, new = group.active.frames, remapped.active.frames
    assert [old[i] for i in range(len(old))] == [new[i] for i in range(len(new))]


# --- the command line ---------------------------------------------------------


def run(*args: str | Path) -> Result:
    """Run the command in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_top_json_shows_remapped_names(tmp_path: Path) -> None:
    profile = tmp_path / "tiny.cpuprofile"
    profile.write_bytes(cpuprofile(TINY_FRAMES))
    map_file = tmp_path / "bundle.js.map"
    map_file.write_bytes(orjson.dumps(TINY_MAP))
    plain = orjson.loads(run("top", profile, "--json").stdout)
    assert {f["name"] for f in plain["functions"]} == {"a", "b", "c", "d", "e", "f"}
    result = run("top", profile, "--json", "--source-map", map_file)
    assert result.exit_code == 0, result.output
    functions = orjson.loads(result.stdout)["functions"]
    rows = {(f["name"], f["file"], f["line"]): f["self"] for f in functions}
    assert rows[("beta", "/app/b.ts", 5)] == 2000
    assert rows[("alpha", "/app/src/a.ts", 1)] == 1000
    assert rows[("helper", "/app/src/a.ts", 10)] == 1000


def test_source_map_option_on_every_profile_command() -> None:
    for name in ("info", "top", "convert", "summary", "tree", "diff", "render", "analyze", "chat"):
        command = main.commands[name]
        options = [p for p in command.params if p.name == "source_maps"]
        assert len(options) == 1, name
        assert options[0].multiple, name


def test_conformance_top_json_with_source_map(source_maps: Path) -> None:
    result = run(
        "top",
        source_maps / "chrome-85-webpack.json",
        "--json",
        "--by",
        "total",
        "-n",
        "0",
        "--source-map",
        source_maps / "webpack" / MAP_NAME,
    )
    assert result.exit_code == 0, result.output
    functions = orjson.loads(result.stdout)["functions"]
    found = {(f["name"], f["file"]) for f in functions}
    assert ("alpha", WEBPACK + "alpha.ts") in found
    assert ("beta", WEBPACK + "beta.ts") in found


def test_bad_source_map_is_an_input_error(tmp_path: Path) -> None:
    profile = tmp_path / "tiny.cpuprofile"
    profile.write_bytes(cpuprofile(TINY_FRAMES))
    map_file = tmp_path / "bundle.js.map"
    map_file.write_bytes(b'{"version": 3, "sources": [], "mappings": "AAAA", "sections": []}')
    result = run("info", profile, "--source-map", map_file)
    assert result.exit_code == 2
    assert f"cannot use source map {map_file}" in result.stderr
    assert "index maps" in result.stderr

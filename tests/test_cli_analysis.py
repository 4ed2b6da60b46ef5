"""The analysis commands `summary`, `tree`, `diff` and `render`, in-process and as a real program.

Small profiles are written as collapsed stacks (plain sample counts, samples
laid end to end in file order) or as speedscope JSON with two threads, so
every number the commands print is known exactly; on the bundled example the
output is checked against the `flamesight.analysis` and `flamesight.render`
functions on the same profile.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from flamesight import examples
from flamesight.analysis import (
    call_tree,
    callees,
    callers,
    diff_profiles,
    diff_ranges,
    estimate_tokens,
    summary,
)
from flamesight.cli import main
from flamesight.formats import load
from flamesight.model import ProfileGroup, merge_profiles
from flamesight.render import render_flamegraph
from tests.test_cli import assert_clean_failure, run_program

EXAMPLE = examples.path()
SVG = "{http://www.w3.org/2000/svg}"

# Total 100 samples: read 0-30, tokenize 30-40, render 40-80, paint 80-100.
BEFORE = """main;parse;read 30
main;parse;tokenize 10
main;render 40
main;render;render;paint 20
"""
# Same total: read 30 -> 10, paint gone, compress new, tokenize and render the same.
AFTER = """main;parse;read 10
main;parse;tokenize 10
main;render 40
main;compress 40
"""


def run(*args: str | Path) -> Result:
    """Run the command in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def run_json(*args: str | Path) -> dict:
    """Run a command with --json: exit 0, nothing on stderr, one JSON document on stdout."""
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return orjson.loads(result.stdout)


def plain(data: object) -> object:
    """`data` as it looks after a JSON round trip (tuples become lists, and so on)."""
    return orjson.loads(orjson.dumps(data))


def write(path: Path, text: str) -> Path:
    """Write `text` to `path` and return the path."""
    path.write_text(text)
    return path


@pytest.fixture
def before(tmp_path: Path) -> Path:
    """The collapsed-stacks profile BEFORE."""
    return write(tmp_path / "before.folded", BEFORE)


@pytest.fixture
def after(tmp_path: Path) -> Path:
    """The collapsed-stacks profile AFTER."""
    return write(tmp_path / "after.folded", AFTER)


@pytest.fixture
def threads(tmp_path: Path) -> Path:
    """A speedscope file in milliseconds with two threads: main (60 ms) and worker (40 ms)."""
    document = {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {
            "frames": [{"name": "main"}, {"name": "handle"}, {"name": "work"}, {"name": "wait"}]
        },
        "profiles": [
            {
                "type": "sampled",
                "name": "main",
                "unit": "milliseconds",
                "startValue": 0,
                "endValue": 60,
                "samples": [[0, 1], [0, 3]],
                "weights": [45, 15],
            },
            {
                "type": "sampled",
                "name": "worker",
                "unit": "milliseconds",
                "startValue": 0,
                "endValue": 40,
                "samples": [[2], [0, 1]],
                "weights": [30, 10],
            },
        ],
        "activeProfileIndex": 0,
    }
    path = tmp_path / "threads.speedscope.json"
    path.write_bytes(orjson.dumps(document))
    return path


def node(tree: dict, *names: str) -> dict:
    """The node reached from `tree`'s roots by following `names`."""
    children = tree["roots"]
    found: dict = {}
    for name in names:
        found = next(child for child in children if child["name"] == name)
        children = found["children"]
    return found


def shape(nodes: list[dict]) -> list:
    """A tree as nested [name, self, total, children] lists."""
    return [[n["name"], n["self"], n["total"], shape(n["children"])] for n in nodes]


# --- summary -------------------------------------------------------------------


def test_summary_json_on_example_is_the_library_summary_within_budget() -> None:
    """summary --json prints `summary(group)` compactly, and it fits the budget it was given."""
    group = load(EXAMPLE)
    for budget in (400, 2000):
        result = run("summary", EXAMPLE, "--budget", str(budget), "--json")
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        expected = summary(group, budget_tokens=budget)
        assert orjson.loads(result.stdout) == plain(expected.data)
        assert result.stdout.strip() == expected.json()
        assert estimate_tokens(result.stdout.strip()) <= budget
    names = [row["name"] for row in orjson.loads(result.stdout)["top_self"]]
    assert "distinct_clients" in names[:3]


def test_summary_markdown_is_the_default_and_format_json_equals_json() -> None:
    """Without --format the Markdown rendering is printed; --format json equals --json."""
    group = load(EXAMPLE)
    result = run("summary", EXAMPLE, "--budget", "800")
    assert result.exit_code == 0, result.stderr
    expected = summary(group, budget_tokens=800)
    assert result.stdout == expected.markdown
    assert result.stdout.startswith("# Profile: ")
    assert "## Top functions by self time" in result.stdout
    assert estimate_tokens(result.stdout) <= 800
    as_format = run("summary", EXAMPLE, "--budget", "800", "--format", "json")
    assert as_format.exit_code == 0
    assert as_format.stdout == run("summary", EXAMPLE, "--budget", "800", "--json").stdout


def test_summary_exact_numbers_and_range_on_collapsed_stacks(before: Path) -> None:
    """On a profile of known counts the summary names the exact weights of the range."""
    whole = run_json("summary", before)
    assert [(r["name"], r["self"], r["self_pct"]) for r in whole["top_self"]] == [
        ("render", "40 samples", 40.0),
        ("read", "30 samples", 30.0),
        ("paint", "20 samples", 20.0),
        ("tokenize", "10 samples", 10.0),
    ]
    assert whole["top_total"][0] == {
        "name": "main",
        "total": "100 samples",
        "self_pct": 0.0,
        "total_pct": 100.0,
    }
    assert whole["range"]["weight"] == "100 samples"
    # [20, 50): read 20-30, tokenize 30-40, render 40-50: 10 samples each.
    ranged = run_json("summary", before, "--start", "20", "--end", "50")
    assert ranged == plain(summary(load(before), 20, 50).data)
    assert ranged["range"]["weight"] == "30 samples"
    assert ranged["range"]["share_of_profile_pct"] == 30.0
    assert {(r["name"], r["self"]) for r in ranged["top_self"]} == {
        ("read", "10 samples"),
        ("tokenize", "10 samples"),
        ("render", "10 samples"),
    }


def test_summary_time_units_profile_and_merge(threads: Path) -> None:
    """--start/--end take units; --profile picks a thread; --merge sums both threads."""
    group = load(threads)
    ranged = run_json("summary", threads, "--start", "0.01s", "--end", "50ms")
    assert ranged == plain(summary(group, 10, 50).data)
    assert ranged["range"]["weight"] == "40.0 ms"
    assert [t["name"] for t in ranged["threads"]] == ["main", "worker"]
    assert [t["share_pct"] for t in ranged["threads"]] == [60.0, 40.0]
    worker = run_json("summary", threads, "--profile", "worker")
    assert worker == run_json("summary", threads, "--profile", "1")
    assert worker == plain(summary(group, profile=1).data)
    assert worker["top_self"][0]["name"] == "work"
    merged = run_json("summary", threads, "--merge")
    assert merged["profile"]["total"] == "100 ms"
    assert merged["profile"]["format"] == "speedscope"
    assert merged["threads"] == []
    assert {(r["name"], r["self"]) for r in merged["top_self"]} == {
        ("handle", "55.0 ms"),
        ("work", "30.0 ms"),
        ("wait", "15.0 ms"),
    }


def test_summary_bad_input_exits_2(before: Path) -> None:
    """A budget below the minimum, bad times, bad profiles: exit 2 with the reason."""
    assert_clean_failure(run("summary", before, "--budget", "50"), "--budget", "50")
    assert_clean_failure(run("summary", before, "--start", "1ms"), "--start")
    assert_clean_failure(run("summary", before, "--start", "9", "--end", "3"), "--end")
    assert_clean_failure(run("summary", before, "--profile", "7"), "'7'")
    assert_clean_failure(run("summary", before, "--profile", "0", "--merge"), "--merge")
    assert_clean_failure(run("summary", before, "--format", "yaml"), "yaml")


# --- tree ----------------------------------------------------------------------


def test_tree_top_down_exact(before: Path) -> None:
    """The top-down tree merges by function; recursion stays a path; numbers are exact."""
    document = run_json("tree", before, "--min-pct", "0")
    assert document["direction"] == "top-down"
    assert (document["total"], document["start"], document["end"]) == (100.0, 0.0, 100.0)
    assert shape(document["roots"]) == [
        [
            "main",
            0.0,
            100.0,
            [
                ["render", 40.0, 60.0, [["render", 0.0, 20.0, [["paint", 20.0, 20.0, []]]]]],
                ["parse", 0.0, 40.0, [["read", 30.0, 30.0, []], ["tokenize", 10.0, 10.0, []]]],
            ],
        ]
    ]
    assert node(document, "main", "render")["total_pct"] == 60.0
    expected = call_tree(load(before).active, min_pct=0)
    assert document == {
        "format": "collapsed",
        "start": 0.0,
        "end": 100.0,
        "min_pct": 0.0,
        **plain(expected.to_dict()),
    }


def test_tree_depth_min_pct_and_range(before: Path) -> None:
    """--depth cuts levels, --min-pct drops light nodes, --start/--end narrow the range."""
    shallow = run_json("tree", before, "--depth", "2", "--min-pct", "0")
    assert shape(shallow["roots"]) == [
        ["main", 0.0, 100.0, [["render", 40.0, 60.0, []], ["parse", 0.0, 40.0, []]]]
    ]
    heavy = run_json("tree", before, "--min-pct", "15")
    assert shape(node(heavy, "main", "parse")["children"]) == [["read", 30.0, 30.0, []]]
    ranged = run_json("tree", before, "--start", "20", "--end", "50", "--min-pct", "0")
    assert ranged["total"] == 30.0
    assert (ranged["start"], ranged["end"]) == (20.0, 50.0)
    assert node(ranged, "main", "parse")["total"] == 20.0
    assert node(ranged, "main", "render")["self"] == 10.0
    assert ranged == {
        "format": "collapsed",
        "start": 20.0,
        "end": 50.0,
        "min_pct": 0.0,
        **plain(call_tree(load(before).active, None, 20, 50).to_dict()),
    }


def test_tree_callees_and_callers_of_a_recursive_function(before: Path) -> None:
    """--callees: the tree below render; --callers: the inverted tree above paint and render."""
    profile = load(before).active
    below = run_json("tree", before, "--function", "render")
    assert below["direction"] == "callees"
    assert shape(below["roots"]) == [
        ["render", 40.0, 60.0, [["render", 0.0, 20.0, [["paint", 20.0, 20.0, []]]]]]
    ]
    assert below["roots"] == plain(callees(profile, "render").to_dict()["roots"])
    assert run_json("tree", before, "-f", "render", "--callees") == below
    above = run_json("tree", before, "--function", "paint", "--callers")
    assert above["direction"] == "callers"
    assert above["function"] == "paint"
    assert [n["name"] for n in [above["roots"][0], *walk(above["roots"][0])]] == [
        "paint",
        "render",
        "render",
        "main",
    ]
    assert all(n["total"] == 20.0 for n in walk(above["roots"][0]))
    assert above["roots"] == plain(callers(profile, "paint").to_dict()["roots"])
    render_callers = run_json("tree", before, "-f", "render", "--callers")
    assert shape(render_callers["roots"]) == [["render", 40.0, 60.0, [["main", 60.0, 60.0, []]]]]
    cut = run_json("tree", before, "-f", "paint", "--callers", "--depth", "2")
    assert shape(cut["roots"]) == [["paint", 20.0, 20.0, [["render", 0.0, 20.0, []]]]]


def walk(root: dict) -> list[dict]:
    """The nodes below `root` along first children."""
    found = []
    while root["children"]:
        root = root["children"][0]
        found.append(root)
    return found


def test_tree_table_on_example() -> None:
    """The table shows the heaviest paths indented, with weights and percentages."""
    profile = load(EXAMPLE).active
    expected = call_tree(profile, depth=3, min_pct=0.5)
    result = run("tree", EXAMPLE, "--depth", "3")
    assert result.exit_code == 0, result.stderr
    assert "top-down call tree" in result.stdout
    for header in ("total", "total %", "self", "self %", "function"):
        assert header in result.stdout
    root = expected.roots[0]
    child = root.children[0]
    lines = result.stdout.splitlines()
    root_line = next(line for line in lines if f"   {root.name}" in line)
    assert profile.format_value(root.total) in root_line
    assert f"{100 * root.total / expected.total:.1f}%" in root_line
    child_line = next(line for line in lines if f"     {child.name} " in line)
    assert profile.format_value(child.total) in child_line
    assert lines.index(child_line) == lines.index(root_line) + 1


def test_tree_callers_table_on_example() -> None:
    """The callers table names the function first and says the tree is inverted."""
    profile = load(EXAMPLE).active
    expected = callers(profile, "parse_line")
    result = run("tree", EXAMPLE, "-f", "parse_line", "--callers")
    assert result.exit_code == 0, result.stderr
    assert "callers of parse_line" in result.stdout
    assert profile.format_value(expected.roots[0].total) in result.stdout
    body = result.stdout[result.stdout.index("parse_line  ") :]
    assert body.index("build_report.<locals>.<listcomp>") < body.index("main")


def test_tree_unknown_function_suggests_close_names(tmp_path: Path, before: Path) -> None:
    """An unknown --function exits 2 naming similar functions, also by substring."""
    assert_clean_failure(run("tree", before, "-f", "rendr"), "'rendr'", "did you mean", "'render'")
    long_names = write(tmp_path / "long.folded", "main;write_http_response_body 5\nmain;idle 5\n")
    assert_clean_failure(
        run("tree", long_names, "-f", "resp", "--callers"),
        "no function named 'resp'",
        "'write_http_response_body'",
    )
    assert_clean_failure(run("tree", EXAMPLE, "-f", "prase_lin"), "'parse_line'")


def test_tree_bad_usage_exits_2(before: Path) -> None:
    """--callers without --function, a zero depth, a bad time: exit 2."""
    assert_clean_failure(run("tree", before, "--callers"), "--callers needs --function")
    assert_clean_failure(run("tree", before, "--depth", "0"), "--depth")
    assert_clean_failure(run("tree", before, "--end", "soon"), "--end", "soon")
    assert_clean_failure(run("tree", before, "--min-pct", "101"), "--min-pct")


def test_tree_profile_and_merge(threads: Path) -> None:
    """--profile picks a thread by name or number; --merge adds both threads' trees."""
    group = load(threads)
    worker = run_json("tree", threads, "--profile", "worker")
    assert worker == run_json("tree", threads, "--profile", "1")
    assert shape(worker["roots"]) == [
        ["work", 30.0, 30.0, []],
        ["main", 0.0, 10.0, [["handle", 10.0, 10.0, []]]],
    ]
    merged = run_json("tree", threads, "--merge")
    assert merged["total"] == 100.0
    assert shape(merged["roots"])[0] == [
        "main",
        0.0,
        70.0,
        [["handle", 55.0, 55.0, []], ["wait", 15.0, 15.0, []]],
    ]
    combined = merge_profiles(group.profiles)
    assert merged["roots"] == plain(call_tree(combined, min_pct=0.5).to_dict()["roots"])


# --- diff ----------------------------------------------------------------------


def test_diff_two_files_exact(before: Path, after: Path) -> None:
    """Before, after, change, relative change and new/gone per function, largest change first."""
    document = run_json("diff", before, after)
    assert document["before_file"] == str(before)
    assert document["after_file"] == str(after)
    assert (document["before_total"], document["after_total"]) == (100.0, 100.0)
    assert document["normalised"] is False
    rows = [
        (f["name"], f["before"], f["after"], f["delta"], f["relative"], f["status"])
        for f in document["functions"]
    ]
    assert rows[:3] == [
        ("compress", 0.0, 40.0, 40.0, None, "new"),
        ("paint", 20.0, 0.0, -20.0, -1.0, "gone"),
        ("read", 30.0, 10.0, -20.0, pytest.approx(-2 / 3), "changed"),
    ]
    assert sorted(rows[3:]) == [
        ("render", 40.0, 40.0, 0.0, 0.0, "same"),
        ("tokenize", 10.0, 10.0, 0.0, 0.0, "same"),
    ]
    assert document["new"] == ["compress"]
    assert document["gone"] == ["paint"]
    expected = diff_profiles(load(before).active, load(after).active)
    assert document == {
        "before_file": str(before),
        "after_file": str(after),
        **plain(expected.to_dict()),
    }


def test_diff_normalises_when_totals_differ(tmp_path: Path, before: Path) -> None:
    """An after profile with every count doubled shows the same changes, scaled to the before total."""
    doubled = "".join(f"{stack} {int(count) * 2}\n" for stack, count in _lines(AFTER))
    bigger = write(tmp_path / "bigger.folded", doubled)
    same_total = write(tmp_path / "after.folded", AFTER)
    scaled = run_json("diff", before, bigger, "-n", "0")
    assert scaled["after_total"] == 200.0
    assert scaled["normalised"] is True
    plain_diff = run_json("diff", before, same_total, "-n", "0")
    assert scaled["functions"] == plain_diff["functions"]
    raw = run_json("diff", before, bigger, "--no-normalise")
    assert raw["normalised"] is False
    assert raw["functions"][0] == {
        "name": "compress",
        "file": None,
        "before": 0.0,
        "after": 80.0,
        "delta": 80.0,
        "relative": None,
        "before_pct": 0.0,
        "after_pct": 40.0,
        "status": "new",
    }


def _lines(text: str) -> list[tuple[str, str]]:
    return [tuple(line.rsplit(" ", 1)) for line in text.splitlines()]  # type: ignore[misc]


def test_diff_by_total_and_limit(before: Path, after: Path) -> None:
    """--by total compares total weight; -n keeps the largest changes, new/gone lists stay full."""
    document = run_json("diff", before, after, "--by", "total", "-n", "2")
    assert document["by"] == "total"
    assert len(document["functions"]) == 2
    parse = diff_profiles(load(before).active, load(after).active, "total")
    assert document == {
        "before_file": str(before),
        "after_file": str(after),
        **plain(parse.to_dict(2)),
    }
    assert [(f["name"], f["delta"]) for f in document["functions"]] == [
        ("compress", 40.0),
        ("paint", -20.0),  # ties on the size of the change go by name
    ]
    every = run_json("diff", before, after, "--by", "total", "-n", "0")
    assert {f["name"]: (f["before"], f["after"]) for f in every["functions"]} == {
        "main": (100.0, 100.0),
        "compress": (0.0, 40.0),
        "paint": (20.0, 0.0),
        "parse": (40.0, 20.0),
        "read": (30.0, 10.0),
        "render": (60.0, 40.0),
        "tokenize": (10.0, 10.0),
    }


def test_diff_two_ranges_of_one_file(before: Path) -> None:
    """--range twice compares two ranges; an open side runs to the profile's edge."""
    document = run_json("diff", before, "--range", "0:40", "--range", "40:", "-n", "0")
    assert (document["before_total"], document["after_total"]) == (40.0, 60.0)
    assert document["normalised"] is True
    changes = {f["name"]: (f["before"], f["after"], f["status"]) for f in document["functions"]}
    assert changes == {
        "read": (30.0, 0.0, "gone"),
        "tokenize": (10.0, 0.0, "gone"),
        "render": (0.0, pytest.approx(40 * 40 / 60), "new"),
        "paint": (0.0, pytest.approx(20 * 40 / 60), "new"),
    }
    expected = diff_ranges(load(before).active, (0, 40), (40, 100))
    assert document["functions"] == plain(expected.to_dict()["functions"])
    assert document["before"] == expected.before


def test_diff_ranges_with_time_units_on_example() -> None:
    """On the example (seconds), 0:1s and 2s:3s are the library's ranges (0, 1) and (2, 3)."""
    document = run_json("diff", EXAMPLE, "--range", "0:1s", "--range", "2s:3000ms")
    expected = diff_ranges(load(EXAMPLE).active, (0.0, 1.0), (2.0, 3.0))
    assert document == {
        "before_file": str(EXAMPLE),
        "after_file": str(EXAMPLE),
        **plain(expected.to_dict(20)),
    }
    assert "distinct_clients" in document["new"]


def test_diff_table(before: Path, after: Path) -> None:
    """The table shows both totals, each changed function with its change, and new/gone names."""
    result = run("diff", before, after)
    assert result.exit_code == 0, result.stderr
    for header in ("function", "before", "after", "change", "change %", "status"):
        assert header in result.stdout
    read_line = next(line for line in result.stdout.splitlines() if " read " in line)
    assert " ".join(read_line.split()[1:]) == "30 samples 10 samples -20 samples -66.7% changed"
    compress_line = next(line for line in result.stdout.splitlines() if "compress" in line)
    assert "+40 samples" in compress_line
    assert "New (1): compress" in result.stdout
    assert "Gone (1): paint" in result.stdout
    assert "2 functions unchanged" in result.stdout
    same = run("diff", before, before)
    assert same.exit_code == 0
    assert "No function changed" in same.stdout


def test_diff_bad_usage_exits_2(tmp_path: Path, before: Path, after: Path, threads: Path) -> None:
    """Wrong argument counts, bad ranges and profiles in different units: exit 2."""
    assert_clean_failure(run("diff", before), "two files")
    assert_clean_failure(run("diff", before, after, EXAMPLE), "two files")
    assert_clean_failure(run("diff", before, "--range", "0:10"), "two ranges")
    assert_clean_failure(run("diff", before, after, "--range", "0:1", "--range", "1:2"), "one file")
    assert_clean_failure(
        run("diff", before, "--range", "10", "--range", "1:2"), "'10' is not START:END"
    )
    assert_clean_failure(
        run("diff", before, "--range", "5:2", "--range", "1:2"), "end is not after"
    )
    assert_clean_failure(run("diff", before, "--range", "0:1ms", "--range", "1:2"), "--range")
    assert_clean_failure(run("diff", before, threads), "none", "milliseconds")
    assert_clean_failure(run("diff", before, tmp_path / "gone.folded"), "does not exist")


# --- render --------------------------------------------------------------------


def test_render_png_on_example_is_the_library_image(tmp_path: Path) -> None:
    """-o out.png writes what render_flamegraph draws, at the asked width."""
    output = tmp_path / "out.png"
    result = run("render", EXAMPLE, "-o", output, "--width", "640")
    assert result.exit_code == 0, result.stderr
    assert str(output) in result.stdout
    assert "flame graph" in result.stdout
    with Image.open(output) as image:
        assert image.format == "PNG"
        assert image.width == 640
        assert image.height > 100
    profile = load(EXAMPLE).active
    assert output.read_bytes() == render_flamegraph(profile, "png", width=640)


@pytest.mark.parametrize("view", ["flamegraph", "flamechart"])
def test_render_svg_views_parse(tmp_path: Path, before: Path, view: str) -> None:
    """SVG output parses, has the asked width, and a <title> tooltip per frame."""
    output = tmp_path / "out.svg"
    result = run("render", before, "-o", output, "--view", view, "--width", "500")
    assert result.exit_code == 0, result.stderr
    root = ET.parse(output).getroot()
    assert root.tag == f"{SVG}svg"
    assert root.get("width") in ("500", "500px")
    tooltips = [t.text or "" for t in root.iter(f"{SVG}title")]
    for name in ("main", "parse", "read", "tokenize", "render", "paint"):
        assert any(text.startswith(name) for text in tooltips), (name, tooltips)
    expected = render_flamegraph(load(before).active, "svg", view=view, width=500)  # type: ignore[arg-type]
    assert output.read_bytes() == expected


def test_render_sandwich_theme_height_and_range(tmp_path: Path, before: Path) -> None:
    """--function draws the sandwich; --height, --theme and --start/--end reach the renderer."""
    profile = load(before).active
    output = tmp_path / "sandwich.png"
    result = run(
        "render", before, "-o", output, "-f", "render", "--height", "240", "--theme", "dark"
    )
    assert result.exit_code == 0, result.stderr
    assert "sandwich of render" in result.stdout
    with Image.open(output) as image:
        assert image.size == (1200, 240)
    assert output.read_bytes() == render_flamegraph(
        profile, "png", view="sandwich", function="render", height=240, theme="dark"
    )
    ranged = tmp_path / "ranged.png"
    result = run("render", before, "-o", ranged, "--start", "20", "--end", "50", "--width", "300")
    assert result.exit_code == 0, result.stderr
    assert ranged.read_bytes() == render_flamegraph(profile, "png", width=300, start=20, end=50)
    dark, light = (tmp_path / "dark.png"), (tmp_path / "light.png")
    assert run("render", before, "-o", dark, "--theme", "dark").exit_code == 0
    assert run("render", before, "-o", light).exit_code == 0
    with Image.open(dark) as first, Image.open(light) as second:
        assert first.convert("RGB").getpixel((1, 1)) != second.convert("RGB").getpixel((1, 1))


def test_render_profile_and_merge(tmp_path: Path, threads: Path) -> None:
    """--profile and --merge choose what is drawn."""
    group = load(threads)
    worker = tmp_path / "worker.svg"
    assert run("render", threads, "-o", worker, "--profile", "worker").exit_code == 0
    assert worker.read_bytes() == render_flamegraph(group.profiles[1], "svg")
    merged = tmp_path / "merged.svg"
    assert run("render", threads, "-o", merged, "--merge").exit_code == 0
    titles = [t.text or "" for t in ET.parse(merged).getroot().iter(f"{SVG}title")]
    assert any(text.startswith("work") for text in titles)
    assert any(text.startswith("wait") for text in titles)


def test_render_bad_input_exits_2(tmp_path: Path, before: Path) -> None:
    """Unknown image types, a sandwich without a function, unknown functions: exit 2."""
    assert_clean_failure(run("render", before, "-o", tmp_path / "x.jpg"), "x.jpg", ".png or .svg")
    assert_clean_failure(
        run("render", before, "-o", tmp_path / "x.png", "--view", "sandwich"), "--function"
    )
    assert_clean_failure(
        run("render", before, "-o", tmp_path / "x.png", "--view", "flamechart", "-f", "render"),
        "sandwich",
    )
    assert_clean_failure(
        run("render", before, "-o", tmp_path / "x.png", "-f", "rendr"), "did you mean", "'render'"
    )
    assert_clean_failure(run("render", before, "-o", tmp_path / "x.png", "--width", "5"), "--width")
    assert_clean_failure(run("render", before, "-o", tmp_path / "x.png", "--height", "10"), "10")
    assert_clean_failure(run("render", before, "-o", tmp_path / "x.png", "--theme", "neon"), "neon")
    assert_clean_failure(run("render", before), "-o")
    assert not (tmp_path / "x.png").exists()


def test_render_unwritable_output_exits_1(tmp_path: Path, before: Path) -> None:
    """A file that cannot be written is an output error (exit 1), not bad input."""
    result = run("render", before, "-o", tmp_path / "no" / "such" / "dir.png")
    assert result.exit_code == 1
    assert "cannot write" in result.stderr
    assert "Traceback" not in result.stderr


# --- commands in help, and the installed program --------------------------------


def test_commands_are_registered_on_main() -> None:
    """`flamesight --help` lists the analysis commands beside info, top and convert."""
    result = run("--help")
    assert result.exit_code == 0
    for command in ("summary", "tree", "diff", "render", "info", "top", "convert"):
        assert command in result.stdout


def test_program_summary_tree_diff_render(tmp_path: Path, before: Path, after: Path) -> None:
    """The installed program prints the same JSON as in-process, writes images, exits 2 on errors."""
    for args in (
        ("summary", before, "--json"),
        ("tree", before, "-f", "render", "--json"),
        ("diff", before, after, "--json"),
    ):
        completed = run_program(*args)
        assert completed.returncode == 0, completed.stderr
        assert completed.stderr == ""
        assert orjson.loads(completed.stdout) == run_json(*args[:-1])
    image = tmp_path / "program.png"
    completed = run_program("render", EXAMPLE, "-o", image, "--width", "333")
    assert completed.returncode == 0, completed.stderr
    with Image.open(io.BytesIO(image.read_bytes())) as opened:
        assert opened.width == 333
    assert_clean_failure(run_program("tree", before, "-f", "nothing_like_it"), "nothing_like_it")


def test_summary_of_a_group_uses_the_active_profile(threads: Path) -> None:
    """Without --profile the group's active profile is summarised, with thread shares."""
    group = load(threads)
    assert isinstance(group, ProfileGroup)
    document = run_json("summary", threads)
    assert document["profile"]["name"] == group.active.name == "main"
    assert document == plain(summary(group).data)

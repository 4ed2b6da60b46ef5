"""flamesight.render: exact layouts on small profiles, and the PNG and SVG they make."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from flamesight.model import Profile, ProfileBuilder, Unit
from flamesight.render import (
    FlameLayout,
    layout_flamechart,
    layout_flamegraph,
    layout_sandwich,
    render_flamegraph,
)
from flamesight.render.scene import (
    BOTTOM_MARGIN,
    ELLIPSIS,
    LABEL_SIZE,
    MAX_AUTO_HEIGHT,
    PLOT_TOP,
    ROW_HEIGHT,
    THEMES,
    axis_ticks,
    bundled_font,
    hashed_color,
    plan_scene,
)

SVG = "{http://www.w3.org/2000/svg}"


def small_profile() -> Profile:
    """main -> a / b, with c under both, idle in the middle and a recursive a."""
    b = ProfileBuilder("small", Unit.MILLISECONDS)
    main = b.frame("main", "m.py", 1)
    a = b.frame("a", "a.py", 10)
    a_later_line = b.frame("a", "a.py", 14)
    bb = b.frame("b", "b.py", 20)
    c = b.frame("c")
    b.add_sample(b.stack_of([main, a]), 2)  # [0, 2)
    b.add_sample(b.stack_of([main, a_later_line, c]), 1)  # [2, 3)
    b.add_sample(b.stack_of([main, bb]), 3)  # [3, 6)
    b.add_sample(-1, 1)  # [6, 7) idle
    b.add_sample(b.stack_of([main, a]), 2)  # [7, 9)
    b.add_sample(b.stack_of([main, bb, a, c]), 2)  # [9, 11)
    b.add_sample(b.stack_of([main, a, bb, a, c]), 2)  # [11, 13)
    return b.build()


def rows(layout: FlameLayout) -> list[tuple[str, int, float, float, float, float]]:
    return [(b.name, b.depth, b.start, b.end, b.self, b.total) for b in layout.boxes()]


# -- flame graph ---------------------------------------------------------------


def test_flamegraph_is_left_heavy_and_merged_by_function() -> None:
    layout = layout_flamegraph(small_profile(), width=120)
    assert (layout.axis_start, layout.axis_end, layout.range_total) == (0, 12, 13)
    assert (layout.top_depth, layout.rows) == (0, 5)
    # a (7) is heavier than b (5); frames of a on two lines are one function.
    assert rows(layout) == [
        ("main", 0, 0, 12, 0, 12),
        ("a", 1, 0, 7, 4, 7),
        ("b", 1, 7, 12, 3, 5),
        ("b", 2, 0, 2, 0, 2),
        ("c", 2, 2, 3, 1, 1),
        ("a", 2, 7, 9, 0, 2),
        ("a", 3, 0, 2, 0, 2),
        ("c", 3, 7, 9, 2, 2),
        ("c", 4, 0, 2, 2, 2),
    ]
    assert layout.pixel_left.tolist()[:3] == [0, 0, 70]
    assert layout.pixel_right.tolist()[:3] == [120, 70, 120]
    # The function's line is the smallest line of its frames.
    assert layout.location_of(1) == "a.py:10"
    assert layout.location_of(4) is None


def test_flamegraph_ties_are_ordered_by_name_and_roots_span_the_width() -> None:
    b = ProfileBuilder("ties", Unit.NONE)
    for name in ("zeta", "alpha", "mid"):
        b.add_sample(b.stack_of([b.frame(name)]), 4)
    b.add_sample(b.stack_of([b.frame("heavy")]), 5)
    layout = layout_flamegraph(b.build(), width=170)
    assert rows(layout) == [
        ("heavy", 0, 0, 5, 5, 5),
        ("alpha", 0, 5, 9, 4, 4),
        ("mid", 0, 9, 13, 4, 4),
        ("zeta", 0, 13, 17, 4, 4),
    ]
    assert layout.pixel_right[-1] == 170


def test_flamegraph_range_start_depth_and_levels() -> None:
    profile = small_profile()
    # [8, 12): half of the second (main, a) sample, (main, b, a, c), half of the last;
    # a and b tie at 2, so a comes first by name.
    ranged = layout_flamegraph(profile, width=100, start=8, end=12)
    assert rows(ranged) == [
        ("main", 0, 0, 4, 0, 4),
        ("a", 1, 0, 2, 1, 2),
        ("b", 1, 2, 4, 0, 2),
        ("b", 2, 0, 1, 0, 1),
        ("a", 2, 2, 4, 0, 2),
        ("a", 3, 0, 1, 0, 1),
        ("c", 3, 2, 4, 2, 2),
        ("c", 4, 0, 1, 1, 1),
    ]
    deep = layout_flamegraph(profile, width=100, start_depth=2, levels=2)
    assert (deep.top_depth, deep.rows) == (2, 2)
    assert {box.depth for box in deep.boxes()} == {2, 3}
    assert deep.row.min() == 0


def test_narrow_siblings_merge_into_one_block_that_keeps_the_width() -> None:
    b = ProfileBuilder("tail", Unit.NONE)
    main = b.frame("main")
    b.add_sample(b.stack_of([main, b.frame("heavy")]), 1000)
    for i in range(1000):
        b.add_sample(b.stack_of([main, b.frame(f"tiny{i}"), b.frame("below")]), 1)
    b.add_sample(b.stack_of([main, b.frame("lonely")]), 1)
    b.add_sample(b.stack_of([b.frame("other root")]), 1)
    layout = layout_flamegraph(b.build(), width=100)  # a pixel is 20.02 samples
    depth_one = [box for box in layout.boxes() if box.depth == 1]
    assert [(x.name, x.start, x.end, x.merged, x.function) for x in depth_one] == [
        ("heavy", 0, 1000, 1, 1),
        ("1001 smaller frames", 1000, 2001, 1001, -1),
    ]
    roots = [box for box in layout.boxes() if box.depth == 0]
    # A block of one narrow frame is that frame.
    assert [(x.name, x.merged) for x in roots] == [("main", 1), ("other root", 1)]
    assert sum(x.end - x.start for x in roots) == layout.axis_end == 2002
    assert layout.pixel_right[layout.depth == 1].max() == pytest.approx(
        layout.pixel_right[layout.depth == 0][0]
    )
    assert not any(box.name == "below" for box in layout.boxes())


def test_flamegraph_work_does_not_grow_with_narrow_frames() -> None:
    b = ProfileBuilder("many", Unit.NONE)
    main = b.frame("main")
    stacks = [b.stack_of([main, b.frame(f"f{i}"), b.frame(f"g{i % 7}")]) for i in range(5000)]
    rng = np.random.default_rng(3)
    b.add_samples(np.array(stacks)[rng.integers(0, 5000, 200_000)], np.ones(200_000))
    layout = layout_flamegraph(b.build(), width=300)
    assert len(layout) <= 3  # main and one block: every f_i is narrower than a pixel
    assert layout.total_weight[layout.depth == 1].sum() == 200_000


# -- flame chart ---------------------------------------------------------------


def test_flamechart_merges_consecutive_samples_and_splits_at_gaps() -> None:
    layout = layout_flamechart(small_profile(), width=130)
    assert (layout.axis_start, layout.axis_end, layout.rows) == (0, 13, 5)
    assert rows(layout) == [
        ("main", 0, 0, 6, 0, 6),
        ("main", 0, 7, 13, 0, 6),
        ("a", 1, 0, 3, 2, 3),
        ("b", 1, 3, 6, 3, 3),
        ("a", 1, 7, 9, 2, 2),
        ("b", 1, 9, 11, 0, 2),
        ("a", 1, 11, 13, 0, 2),
        ("c", 2, 2, 3, 1, 1),
        ("a", 2, 9, 11, 0, 2),
        ("b", 2, 11, 13, 0, 2),
        ("c", 3, 9, 11, 2, 2),
        ("a", 3, 11, 13, 0, 2),
        ("c", 4, 11, 13, 2, 2),
    ]
    assert layout.pixel_left.tolist()[:2] == [0, 70]


def test_flamechart_range_clips_straddling_samples() -> None:
    layout = layout_flamechart(small_profile(), width=100, start=4, end=8, start_depth=1)
    assert (layout.axis_start, layout.axis_end, layout.top_depth) == (4, 8, 1)
    assert rows(layout) == [("b", 1, 4, 6, 2, 2), ("a", 1, 7, 8, 1, 1)]


def test_flamechart_folds_narrow_samples_into_pixel_columns() -> None:
    b = ProfileBuilder("busy", Unit.MICROSECONDS)
    main, left, right = b.frame("main"), b.frame("left"), b.frame("right")
    one, two = b.stack_of([main, left]), b.stack_of([main, right])
    # 100 000 samples alternating between two stacks, then one long sample.
    b.add_samples(np.tile([one, two], 50_000), np.full(100_000, 0.01))
    b.add_sample(one, 1000)
    layout = layout_flamechart(b.build(), width=200)
    assert len(layout) <= 1 + 200
    top = [box for box in layout.boxes() if box.depth == 0]
    assert [(x.name, x.start, x.end) for x in top] == [("main", 0, pytest.approx(2000))]
    # Below main, runs of left and right tile the axis; the long sample ends the last one.
    below = [box for box in layout.boxes() if box.depth == 1]
    assert {box.name for box in below} <= {"left", "right"}
    assert [box.start for box in below[1:]] == [box.end for box in below[:-1]]
    assert (below[0].start, below[-1].name, below[-1].end) == (0, "left", pytest.approx(2000))
    assert below[-1].start <= 1000


# -- sandwich ------------------------------------------------------------------


def test_sandwich_has_callers_above_and_callees_below() -> None:
    profile = small_profile()
    layout = layout_sandwich(profile, "a", width=90)
    assert (layout.axis_end, layout.top_depth, layout.rows) == (9, -2, 6)
    assert rows(layout) == [
        ("main", -2, 7, 9, 2, 2),
        ("main", -1, 0, 7, 7, 7),
        ("b", -1, 7, 9, 0, 2),
        ("a", 0, 0, 9, 4, 9),
        ("c", 1, 0, 3, 3, 3),
        ("b", 1, 3, 5, 0, 2),
        ("a", 2, 3, 5, 0, 2),
        ("c", 3, 3, 5, 2, 2),
    ]
    # Recursion counted once: the middle row is the function's total weight.
    key_of_frame, keys = profile.frames.function_keys()
    self_weight, total_weight = profile.frame_weights(key_of_frame)
    a = keys.index(("a", "a.py"))
    assert (self_weight[a], total_weight[a]) == (4, 9)


def test_sandwich_shares_rows_between_callers_and_callees() -> None:
    layout = layout_sandwich(small_profile(), "a", width=90, levels=3)
    assert (layout.top_depth, layout.rows) == (-1, 3)
    assert sorted({box.depth for box in layout.boxes()}) == [-1, 0, 1]


def test_sandwich_of_a_name_in_several_files_and_of_an_unknown_function() -> None:
    b = ProfileBuilder("two files", Unit.NONE)
    main = b.frame("main")
    b.add_sample(b.stack_of([main, b.frame("load", "x.py")]), 3)
    b.add_sample(b.stack_of([main, b.frame("load", "y.py")]), 1)
    profile = b.build()
    both = layout_sandwich(profile, "load", width=40)
    assert rows(both) == [("main", -1, 0, 4, 4, 4), ("load", 0, 0, 4, 4, 4)]
    assert both.location_of(1) is None
    one = layout_sandwich(profile, "load (y.py)", width=40)
    assert rows(one)[-1] == ("load", 0, 0, 1, 1, 1)
    with pytest.raises(LookupError, match=r"no function named 'lod'.*did you mean 'load'"):
        layout_sandwich(profile, "lod")


@st.composite
def random_profiles(draw: st.DrawFn) -> Profile:
    """Up to 40 samples of integer weight over stacks of up to 6 of 5 functions, idle included."""
    b = ProfileBuilder("random", Unit.NONE)
    frames = [b.frame(name, "f.py") for name in "pqrst"]
    paths = st.lists(st.integers(0, 4), min_size=0, max_size=6)
    for path, weight in draw(
        st.lists(st.tuples(paths, st.integers(1, 5)), min_size=1, max_size=40)
    ):
        b.add_sample(b.stack_of([frames[i] for i in path]), weight)
    return b.build()


@settings(max_examples=60, deadline=None)
@given(random_profiles())
def test_layouts_agree_with_the_model_weights(profile: Profile) -> None:
    key_of_frame, keys = profile.frames.function_keys()
    self_weight, total_weight = profile.frame_weights(key_of_frame)
    samples = profile.samples
    stack_depth = np.append(profile.stacks.depth, -1)[samples.stack]  # -1: idle
    width = int(profile.end) * 2  # every sample two pixels or more: exact layouts
    graph = layout_flamegraph(profile, width=width)
    chart = layout_flamechart(profile, width=width)
    for depth in range(int(stack_depth.max(initial=-1)) + 1):
        busy = samples.weight[stack_depth >= depth].sum()
        assert graph.span[graph.depth == depth].sum() == busy
        assert chart.span[chart.depth == depth].sum() == busy
    for function in range(len(keys)):
        for layout in (graph, chart):
            assert layout.self_weight[layout.function == function].sum() == self_weight[function]
        if total_weight[function] > 0:
            sandwich = layout_sandwich(profile, keys[function][0], width=width)
            middle = sandwich.depth == 0
            assert sandwich.total_weight[middle].tolist() == [total_weight[function]]
            assert sandwich.self_weight[middle].tolist() == [self_weight[function]]
            # Callers and callees never hold more than the function's total.
            for depth in set(sandwich.depth.tolist()):
                assert sandwich.span[sandwich.depth == depth].sum() <= total_weight[function]


# -- images --------------------------------------------------------------------


def png_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.convert("RGB")


def test_png_paints_frames_where_the_layout_puts_them() -> None:
    profile = small_profile()
    data = render_flamegraph(profile, "png", width=260)
    image = png_image(data)
    layout = layout_flamegraph(profile, width=260)
    assert image.size == (260, PLOT_TOP + 5 * ROW_HEIGHT + BOTTOM_MARGIN)
    background = THEMES["light"].background
    for left, right, row in zip(layout.pixel_left, layout.pixel_right, layout.row, strict=True):
        y = PLOT_TOP + int(row) * ROW_HEIGHT + ROW_HEIGHT // 2
        for x in (int(left) + 1, int(right) - 3):
            assert image.getpixel((x, y)) != background, (x, y)
    # Nothing below c at depth 2 (x in [43.3, 65)): background there.
    y_depth_3 = PLOT_TOP + 3 * ROW_HEIGHT + ROW_HEIGHT // 2
    assert image.getpixel((54, y_depth_3)) == background
    assert image.getpixel((10, image.height - 1)) == background


def test_png_frame_colors_come_from_the_name_hash() -> None:
    profile = small_profile()
    image = png_image(render_flamegraph(profile, "png", width=260))
    # Row 0 is main; sample away from its label.
    y = PLOT_TOP + ROW_HEIGHT // 2
    assert image.getpixel((250, y)) == hashed_color("main", THEMES["light"])
    by_file = png_image(render_flamegraph(profile, "png", width=260, color_by="file"))
    assert by_file.getpixel((250, y)) == hashed_color("m.py", THEMES["light"])


def test_dark_theme_differs_from_light() -> None:
    profile = small_profile()
    light = png_image(render_flamegraph(profile, "png", width=200, theme="light"))
    dark = png_image(render_flamegraph(profile, "png", width=200, theme="dark"))
    assert light.size == dark.size
    assert light.getpixel((199, light.height - 1)) == THEMES["light"].background
    assert dark.getpixel((199, dark.height - 1)) == THEMES["dark"].background
    y = PLOT_TOP + ROW_HEIGHT // 2
    assert dark.getpixel((190, y)) == hashed_color("main", THEMES["dark"])
    assert light.getpixel((190, y)) != dark.getpixel((190, y))


def test_every_view_renders_at_the_asked_size(tmp_path) -> None:
    profile = small_profile()
    for view, function in (("flamegraph", None), ("flamechart", None), ("sandwich", "a")):
        path = tmp_path / f"{view}.png"
        data = render_flamegraph(profile, path, view=view, function=function, width=300, height=90)
        assert path.read_bytes() == data
        assert png_image(data).size == (300, 90)
        svg = ET.fromstring(render_flamegraph(profile, "svg", view=view, function=function))
        assert svg.get("width") == "1200"


def test_height_cuts_rows_and_deep_stacks_are_capped() -> None:
    b = ProfileBuilder("deep", Unit.NONE)
    frame = b.frame("recurse")
    b.add_sample(b.stack_of([frame] * 600), 1)
    profile = b.build()
    image = png_image(render_flamegraph(profile, "png", width=100))
    assert image.height <= MAX_AUTO_HEIGHT
    short = png_image(render_flamegraph(profile, "png", width=100, height=PLOT_TOP + 60))
    assert short.height == PLOT_TOP + 60


def test_svg_has_one_group_per_frame_with_a_tooltip() -> None:
    profile = small_profile()
    layout = layout_flamegraph(profile, width=1200)
    root = ET.fromstring(render_flamegraph(profile, "svg"))
    frames = root.findall(f".//{SVG}g[@class='frame']")
    assert len(frames) == len(layout) == 9
    assert len(root.findall(f".//{SVG}g[@class='frame']/{SVG}rect")) == 9
    titles = [frame.find(f"{SVG}title").text for frame in frames]
    assert titles[0] == "main (m.py:1) self 0 s, total 12.0 ms (92.3%)"
    assert titles[1] == "a (a.py:10) self 4.00 ms, total 7.00 ms (53.8%)"
    assert titles[4] == "c self 1.00 ms, total 1.00 ms (7.7%)"
    rect = frames[2].find(f"{SVG}rect")
    assert float(rect.get("x")) == pytest.approx(700)
    assert int(rect.get("y")) == PLOT_TOP + ROW_HEIGHT
    assert frames[0].find(f"{SVG}text").text == "main"


def test_svg_escapes_names_and_drops_characters_xml_cannot_hold() -> None:
    b = ProfileBuilder('<script>alert("&")</script>', Unit.NONE)
    nasty = 'operator<<(std::ostream&, "q\'s")\x01\ud800'
    b.add_sample(b.stack_of([b.frame(nasty, "<file>.cc", 3)]), 1)
    root = ET.fromstring(render_flamegraph(b.build(), "svg", view="flamechart"))
    title = root.find(f".//{SVG}g[@class='frame']/{SVG}title").text
    assert title.startswith(
        'operator<<(std::ostream&, "q\'s")\ufffd\ufffd (<file>.cc:3) self 1 samples'
    )
    assert root.find(f"{SVG}text[@class='title']").text.startswith('<script>alert("&")</script>')


def test_long_labels_end_with_an_ellipsis_and_fit_their_box() -> None:
    b = ProfileBuilder("labels", Unit.NONE)
    long_name = "a_function_with_a_rather_long_name_that_cannot_fit"
    b.add_sample(b.stack_of([b.frame("main"), b.frame(long_name)]), 1)
    b.add_sample(b.stack_of([b.frame("main"), b.frame("x")]), 1)
    profile = b.build()
    layout = layout_flamegraph(profile, width=200)
    scene = plan_scene(layout, height=None, theme="light", color_by="name", title=None)
    labels = dict(zip(scene.index.tolist(), scene.label, strict=True))
    long_box = next(i for i, box in enumerate(layout.boxes()) if box.name == long_name)
    label = labels[long_box]
    assert label.endswith(ELLIPSIS) and long_name.startswith(label[:-1])
    assert len(label) > 3
    room = layout.pixel_right[long_box] - layout.pixel_left[long_box] - 6
    assert bundled_font(LABEL_SIZE).getlength(label) <= room
    assert labels[next(i for i, box in enumerate(layout.boxes()) if box.name == "x")] == "x"
    root = ET.fromstring(render_flamegraph(profile, "svg", width=200))
    texts = [t.text for t in root.findall(f".//{SVG}g[@class='frame']/{SVG}text")]
    assert any(t.endswith(ELLIPSIS) for t in texts)


def test_sandwich_image_rules_off_the_function_row() -> None:
    image = png_image(render_flamegraph(small_profile(), "png", view="sandwich", function="a"))
    middle_top = PLOT_TOP + 2 * ROW_HEIGHT  # two rows of callers above
    axis = THEMES["light"].axis
    assert image.getpixel((600, middle_top - 1)) == axis
    assert image.getpixel((600, middle_top + ROW_HEIGHT - 1)) == axis
    assert image.getpixel((600, middle_top + ROW_HEIGHT // 2)) == hashed_color("a", THEMES["light"])


def test_flamechart_tooltips_say_when() -> None:
    root = ET.fromstring(render_flamegraph(small_profile(), "svg", view="flamechart"))
    titles = [t.text for t in root.findall(f".//{SVG}g[@class='frame']/{SVG}title")]
    assert titles[1] == "main (m.py:1) self 0 s, total 6.00 ms (46.2%), at 7.00 ms"


def test_time_axis_uses_the_profile_unit() -> None:
    layout = layout_flamechart(small_profile(), width=1200)
    ticks = axis_ticks(layout)
    assert ticks[0] == (0, "0 s")
    assert ticks[1] == (pytest.approx(1200 / 13 * 2), "2.00 ms")
    assert ticks[-1][1] == "12.0 ms"


def test_empty_profile_renders_an_empty_image() -> None:
    empty = ProfileBuilder("empty", Unit.NONE).build()
    for view in ("flamegraph", "flamechart"):
        image = png_image(render_flamegraph(empty, "png", view=view, width=100))
        assert image.size == (100, PLOT_TOP + BOTTOM_MARGIN)
    assert len(layout_flamechart(empty, width=50)) == 0


def test_bad_options_are_refused() -> None:
    profile = small_profile()
    with pytest.raises(ValueError, match="image format"):
        render_flamegraph(profile, "out.jpg")
    with pytest.raises(ValueError, match="unknown view"):
        render_flamegraph(profile, "png", view="icicle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown theme"):
        render_flamegraph(profile, "png", theme="solarized")
    with pytest.raises(ValueError, match="needs a function"):
        render_flamegraph(profile, "png", view="sandwich")
    with pytest.raises(ValueError, match="must be after start"):
        render_flamegraph(profile, "png", start=5, end=5)
    with pytest.raises(ValueError, match="width must be"):
        render_flamegraph(profile, "png", width=1_000_000)
    with pytest.raises(ValueError, match="no room"):
        render_flamegraph(profile, "png", height=20)
    with pytest.raises(LookupError, match="no function named"):
        render_flamegraph(profile, "png", view="sandwich", function="zzz")

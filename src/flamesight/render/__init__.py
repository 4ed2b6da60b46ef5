"""Flame graph, flame chart and sandwich images of a profile, as PNG or SVG.

`render_flamegraph` is the one entry point that makes an image; the layout
functions give the rectangles themselves, for callers that draw their own.
"""

from __future__ import annotations

from pathlib import Path

from flamesight.model import Profile
from flamesight.render.layout import (
    VIEWS,
    FlameLayout,
    FrameBox,
    View,
    layout_flamechart,
    layout_flamegraph,
    layout_sandwich,
)
from flamesight.render.png import render_png
from flamesight.render.scene import (
    COLOR_BY,
    SVG_TEXT_SLACK,
    THEMES,
    ColorBy,
    plan_scene,
    rows_for_height,
)
from flamesight.render.svg import render_svg

IMAGE_FORMATS = ("png", "svg")
MIN_WIDTH = 16
MAX_SIDE = 10_000
"""The widest and tallest image made, in pixels."""

__all__ = [
    "COLOR_BY",
    "IMAGE_FORMATS",
    "THEMES",
    "VIEWS",
    "ColorBy",
    "FlameLayout",
    "FrameBox",
    "View",
    "layout_flamechart",
    "layout_flamegraph",
    "layout_sandwich",
    "render_flamegraph",
]


def render_flamegraph(
    profile: Profile,
    path_or_format: str | Path,
    *,
    view: View = "flamegraph",
    function: str | None = None,
    width: int = 1200,
    height: int | None = None,
    start: float | None = None,
    end: float | None = None,
    start_depth: int = 0,
    theme: str = "light",
    color_by: ColorBy = "name",
    title: str | None = None,
) -> bytes:
    """Draw `profile` as a flame graph, flame chart or sandwich; PNG or SVG bytes.

    `path_or_format` is "png" or "svg" to only get the bytes, or a file path
    ending in .png or .svg to also write them there. `view` is "flamegraph"
    (left heavy, merged by function), "flamechart" (time order) or
    "sandwich" (callers above `function`, callees below it). `start`/`end`
    select a range of the profile's axis, in its unit. Without `height`
    the image is as tall as the stacks are deep (capped); with it, deeper
    rows are cut. `start_depth` hides the shallowest rows of the flame graph
    and flame chart. `theme` is "light" or "dark"; `color_by` colours frames
    by a stable hash of their "name", "file" or "package" (the file's
    folder). Images are at most 10 000 pixels wide and tall. ValueError for
    bad options, LookupError when `function` is not in the profile.
    """
    image_format, path = _output(path_or_format)
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    if theme not in THEMES:
        raise ValueError(f"unknown theme {theme!r}; choose one of {', '.join(THEMES)}")
    if color_by not in COLOR_BY:
        raise ValueError(f"unknown color_by {color_by!r}; choose one of {', '.join(COLOR_BY)}")
    if not MIN_WIDTH <= width <= MAX_SIDE:
        raise ValueError(f"width must be {MIN_WIDTH} to {MAX_SIDE} pixels, got {width}")
    if height is not None and height > MAX_SIDE:
        raise ValueError(f"height must be at most {MAX_SIDE} pixels, got {height}")
    levels = rows_for_height(height)
    if levels == 0:
        raise ValueError(f"height {height} leaves no room for a row of frames")
    if view == "sandwich":
        if function is None:
            raise ValueError("the sandwich view needs a function")
        if start_depth:
            raise ValueError("start depth applies to the flame graph and the flame chart only")
        layout = layout_sandwich(
            profile, function, width=width, start=start, end=end, levels=levels
        )
    else:
        if function is not None:
            raise ValueError(f"a function is shown by the sandwich view, not the {view}")
        lay_out = layout_flamegraph if view == "flamegraph" else layout_flamechart
        layout = lay_out(
            profile, width=width, start=start, end=end, start_depth=start_depth, levels=levels
        )
    if image_format == "png":
        scene = plan_scene(layout, height=height, theme=theme, color_by=color_by, title=title)
        data = render_png(scene)
    else:
        scene = plan_scene(
            layout,
            height=height,
            theme=theme,
            color_by=color_by,
            title=title,
            text_slack=SVG_TEXT_SLACK,
        )
        data = render_svg(scene)
    if path is not None:
        path.write_bytes(data)
    return data


def _output(path_or_format: str | Path) -> tuple[str, Path | None]:
    """The image format, and the file to write (None for bytes only)."""
    if isinstance(path_or_format, str) and path_or_format.lower() in IMAGE_FORMATS:
        return path_or_format.lower(), None
    path = Path(path_or_format)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in IMAGE_FORMATS:
        raise ValueError(f"cannot tell the image format of {str(path)!r}: use a .png or .svg name")
    return suffix, path

"""What a rendered flame graph shows, in pixels: shared by the PNG and SVG writers.

A `Scene` is a layout turned into an image plan: the canvas size, the theme,
the title, the time-axis ticks, and for every rectangle its pixel box, fill
colour and the label that fits in it. Colours come from a stable hash of the
function's name (or its file or package), so the same function has the same
colour in every image and every run. Text is measured with the font Pillow
ships (`ImageFont.load_default`), never a system font.
"""

from __future__ import annotations

import colorsys
import functools
import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import ImageFont

from flamesight.model import Unit, format_value
from flamesight.render.layout import FlameLayout

ColorBy = Literal["name", "file", "package"]
COLOR_BY: tuple[ColorBy, ...] = ("name", "file", "package")

ROW_HEIGHT = 18
"""Pixels per row of frames, the 1-pixel gap below each row included."""
LABEL_SIZE = 11
TITLE_SIZE = 13
TITLE_HEIGHT = 22
AXIS_HEIGHT = 18
PLOT_TOP = TITLE_HEIGHT + AXIS_HEIGHT
BOTTOM_MARGIN = 4
MAX_AUTO_HEIGHT = 2400
"""The tallest image made when no height is asked for; deeper stacks are cut."""
LABEL_PADDING = 3
MIN_LABEL_PIXELS = 3 * LABEL_PADDING + 6
"""Boxes narrower than this get no label."""
TICK_SPACING = 110
"""Rough pixels between two time-axis ticks."""
ELLIPSIS = "…"
SVG_TEXT_SLACK = 1.12
"""SVG text is drawn by the viewer's sans-serif font: leave room for a wider one."""


@dataclass(frozen=True)
class Theme:
    """Colours of one look: background, text, axis, and how frames are tinted."""

    name: str
    background: tuple[int, int, int]
    text: tuple[int, int, int]
    frame_text: tuple[int, int, int]
    axis: tuple[int, int, int]
    merged_fill: tuple[int, int, int]
    lightness: float
    saturation: float


THEMES = {
    "light": Theme(
        "light",
        background=(255, 255, 255),
        text=(34, 34, 34),
        frame_text=(17, 17, 17),
        axis=(150, 150, 150),
        merged_fill=(200, 200, 200),
        lightness=0.72,
        saturation=0.62,
    ),
    "dark": Theme(
        "dark",
        background=(30, 30, 30),
        text=(224, 224, 224),
        frame_text=(240, 240, 240),
        axis=(110, 110, 110),
        merged_fill=(85, 85, 85),
        lightness=0.34,
        saturation=0.5,
    ),
}


@dataclass(frozen=True, eq=False)
class Scene:
    """An image plan: canvas, title, axis ticks, and the boxes to paint.

    Box columns are parallel: `left`/`right` are pixel edges (right
    exclusive, not rounded), `row` the row of frames it is in (0 at the top),
    `fill` an (n, 3) array of RGB, `label` the fitted text or "" for none,
    `index` the rectangle in `layout` each box comes from. `focus_row` is
    the sandwich's middle row (the function itself), None on other views.
    """

    layout: FlameLayout
    theme: Theme
    width: int
    height: int
    title: str
    ticks: list[tuple[float, str]]
    rows: int
    left: np.ndarray
    right: np.ndarray
    row: np.ndarray
    fill: np.ndarray
    label: list[str]
    index: np.ndarray
    focus_row: int | None

    @property
    def top(self) -> np.ndarray:
        """The pixel row where every box starts."""
        return PLOT_TOP + self.row * ROW_HEIGHT


def rows_for_height(height: int | None) -> int | None:
    """The most rows of frames an image of `height` pixels holds (None: the auto cap)."""
    if height is None:
        return (MAX_AUTO_HEIGHT - PLOT_TOP - BOTTOM_MARGIN) // ROW_HEIGHT
    return max((height - PLOT_TOP - BOTTOM_MARGIN) // ROW_HEIGHT, 0)


def plan_scene(
    layout: FlameLayout,
    *,
    height: int | None,
    theme: str,
    color_by: str,
    title: str | None,
    text_slack: float = 1.0,
) -> Scene:
    """Lay the rectangles of `layout` out on a canvas `layout.width` wide.

    Without `height` the canvas is as tall as the rows need. Rows that do not
    fit are left out. `text_slack` widens measured text, for viewers whose
    font is not the one measured (SVG).
    """
    chosen = THEMES[theme]
    if height is None:
        height = PLOT_TOP + layout.rows * ROW_HEIGHT + BOTTOM_MARGIN
    rows = min(layout.rows, rows_for_height(height) or 0)
    row = layout.row
    left = layout.pixel_left
    right = layout.pixel_right
    kept = np.flatnonzero((row < rows) & (right > left))
    row, left, right = row[kept], left[kept], right[kept]
    fills = frame_colors(layout, kept, chosen, color_by)
    fitter = label_fitter(LABEL_SIZE)
    label = [
        fitter.fit(layout.name_of(int(i)), (r - lft - 2 * LABEL_PADDING) / text_slack)
        if r - lft >= MIN_LABEL_PIXELS
        else ""
        for i, lft, r in zip(kept.tolist(), left.tolist(), right.tolist(), strict=True)
    ]
    return Scene(
        layout=layout,
        theme=chosen,
        width=layout.width,
        height=height,
        title=title if title is not None else default_title(layout),
        ticks=axis_ticks(layout),
        rows=rows,
        left=left,
        right=right,
        row=row,
        fill=fills,
        label=label,
        index=kept,
        focus_row=-layout.top_depth
        if layout.view == "sandwich" and rows > -layout.top_depth
        else None,
    )


def default_title(layout: FlameLayout) -> str:
    """ "<profile> · <view> · <extent>" in the profile's unit."""
    fmt = _formatter(layout)
    if layout.view == "flamegraph":
        busy = layout.axis_end if len(layout) else 0.0
        extent = fmt(layout.range_total)
        if busy != layout.range_total:
            extent = f"{fmt(busy)} on stack of {extent}"
        return f"{layout.profile_name} · flame graph · {extent}"
    if layout.view == "flamechart":
        return (
            f"{layout.profile_name} · flame chart · "
            f"{fmt(layout.axis_start)} to {fmt(layout.axis_end)}"
        )
    focus_total = float(layout.total_weight[layout.depth == 0].sum())
    share = percent(focus_total, layout.range_total)
    return (
        f"{layout.profile_name} · {layout.focus} · callers above, callees below · "
        f"{fmt(focus_total)} ({share})"
    )


def tooltip(layout: FlameLayout, index: int) -> str:
    """ "name (file:line) self X, total Y (Z%)" for rectangle `index`."""
    fmt = _formatter(layout)
    location = layout.location_of(index)
    name = layout.name_of(index)
    where = f" ({location})" if location else ""
    total = float(layout.total_weight[index])
    text = (
        f"{name}{where} self {fmt(float(layout.self_weight[index]))}, "
        f"total {fmt(total)} ({percent(total, layout.range_total)})"
    )
    if layout.view == "flamechart":
        text += f", at {fmt(float(layout.x[index]))}"
    return text


def percent(part: float, whole: float) -> str:
    """`part` as a percentage of `whole`, one decimal ("12.5%")."""
    return f"{100.0 * part / whole:.1f}%" if whole > 0 else "0.0%"


def axis_ticks(layout: FlameLayout) -> list[tuple[float, str]]:
    """Pixel positions and labels of round values along the axis.

    Labels are values in the profile's unit; when rounding would print the
    same label twice (a short range far from 0), later ticks show the offset
    from the first one ("+20.0 ms").
    """
    fmt = _formatter(layout)
    extent = layout.axis_end - layout.axis_start
    if extent <= 0 or layout.width < 2:
        return []
    step = _round_step(extent / max(layout.width // TICK_SPACING, 1))
    first = math.ceil(layout.axis_start / step - 1e-9)
    values = [
        (first + k) * step
        for k in range(int((layout.axis_end - first * step) / step + 1e-9) + 1)
        if (first + k) * step <= layout.axis_end
    ]
    labels = [fmt(v) for v in values]
    if len(set(labels)) < len(labels):
        labels = [labels[0]] + [f"+{fmt(v - values[0])}" for v in values[1:]]
    scale = layout.pixels_per_unit
    return [((v - layout.axis_start) * scale, text) for v, text in zip(values, labels, strict=True)]


def frame_colors(layout: FlameLayout, kept: np.ndarray, theme: Theme, color_by: str) -> np.ndarray:
    """RGB fill of the rectangles `kept` of `layout`: a stable hash of name, file or package."""
    functions = layout.function[kept]
    unique, inverse = np.unique(functions, return_inverse=True)
    palette = np.empty((len(unique), 3), np.uint8)
    for slot, function in enumerate(unique.tolist()):
        if function < 0:
            palette[slot] = theme.merged_fill
            continue
        key = _color_key(layout.function_names[function], layout.function_files[function], color_by)
        palette[slot] = hashed_color(key, theme)
    return palette[inverse.ravel()]


def hashed_color(key: str, theme: Theme) -> tuple[int, int, int]:
    """The colour of `key` in `theme`: the same for the same key in every run."""
    digest = zlib.crc32(key.encode("utf-8", "surrogatepass"))
    hue = (digest & 0xFFFF) / 0x10000
    lightness = theme.lightness + ((digest >> 16) & 0xFF) / 0xFF * 0.08 - 0.04
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, theme.saturation)
    return round(red * 255), round(green * 255), round(blue * 255)


def _color_key(name: str, file: str | None, color_by: str) -> str:
    if color_by == "name" or not file:
        return name
    if color_by == "file":
        return file
    package = re.split(r"[/\\]", file.rstrip("/\\"))
    return "/".join(package[:-1]) or file


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def printable(text: str) -> str:
    """`text` with control characters, lone surrogates and non-characters as U+FFFD."""
    return _UNPRINTABLE.sub("\ufffd", text)


class LabelFitter:
    """Cuts labels to a pixel width with an ellipsis, measured in Pillow's bundled font."""

    def __init__(self, font: ImageFont.FreeTypeFont) -> None:
        self.font = font
        self._advance: dict[str, float] = {}
        self.ellipsis_width = font.getlength(ELLIPSIS)

    def fit(self, text: str, room: float) -> str:
        """`text`, or its longest prefix + "…" that fits in `room` pixels ("" if none does)."""
        text = printable(text)
        widths = [self._char_width(ch) for ch in text]
        if sum(widths) <= room and self.font.getlength(text) <= room:
            return text
        budget = room - self.ellipsis_width
        used = 0.0
        keep = 0
        for width in widths:
            if used + width > budget:
                break
            used += width
            keep += 1
        while keep > 0:
            candidate = text[:keep].rstrip() + ELLIPSIS
            if self.font.getlength(candidate) <= room:
                return candidate
            keep -= 1
        return ""

    def _char_width(self, char: str) -> float:
        width = self._advance.get(char)
        if width is None:
            width = self._advance[char] = self.font.getlength(char)
        return width


@functools.lru_cache(maxsize=4)
def bundled_font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled TrueType font at `size` pixels (needs Pillow built with FreeType)."""
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError("Pillow was built without FreeType; flamesight needs it to draw text")
    return font


@functools.lru_cache(maxsize=4)
def label_fitter(size: int) -> LabelFitter:
    """A shared `LabelFitter` for the bundled font at `size` pixels."""
    return LabelFitter(bundled_font(size))


def _formatter(layout: FlameLayout) -> Callable[[float], str]:
    """Formats a value in the layout's unit."""
    return functools.partial(_format_in_unit, unit=layout.unit)


def _format_in_unit(value: float, unit: Unit) -> str:
    return format_value(value, unit)


def _round_step(rough: float) -> float:
    """The 1, 2 or 5 x 10^k at or above `rough`."""
    power = 10.0 ** math.floor(math.log10(rough))
    for multiple in (1.0, 2.0, 5.0, 10.0):
        if multiple * power >= rough * (1 - 1e-9):
            return multiple * power
    return 10.0 * power

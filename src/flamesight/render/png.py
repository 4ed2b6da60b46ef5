"""PNG output: a scene painted with NumPy (frames) and Pillow (text).

Frames are painted as whole rows of pixels at once, so the cost grows with
the image size, not with the number of frames; labels, the title and the
axis are drawn with Pillow's bundled font.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from flamesight.render.scene import (
    LABEL_PADDING,
    LABEL_SIZE,
    PLOT_TOP,
    ROW_HEIGHT,
    TITLE_HEIGHT,
    TITLE_SIZE,
    Scene,
    bundled_font,
    label_fitter,
)

PNG_COMPRESS_LEVEL = 3
"""zlib level: flame graphs are flat colour, so a low level is nearly as small and much faster."""


def render_png(scene: Scene) -> bytes:
    """The scene as PNG bytes."""
    image = Image.fromarray(paint_frames(scene), "RGB")
    draw = ImageDraw.Draw(image)
    draw_header(draw, scene)
    draw_focus_lines(draw, scene)
    draw_labels(draw, scene)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()


def pixel_edges(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Rounded left edge and painted right edge (exclusive) of every box.

    Boxes 3 pixels wide or more leave their last column as a gap, so that
    neighbours stay apart.
    """
    left = np.clip(np.rint(scene.left), 0, scene.width).astype(np.int64)
    right = np.clip(np.rint(scene.right), 0, scene.width).astype(np.int64)
    return left, np.where(right - left >= 3, right - 1, right)


def paint_frames(scene: Scene) -> np.ndarray:
    """An (height, width, 3) image: background, and every box filled with its colour."""
    background = np.array(scene.theme.background, np.uint8)
    canvas = np.empty((scene.height, scene.width, 3), np.uint8)
    canvas[:] = background
    left, right = pixel_edges(scene)
    lengths = np.maximum(right - left, 0)
    # Which box covers every pixel of every row (-1: none), painted all at once.
    owner = np.full((scene.rows, scene.width), -1, np.int64)
    starts = np.cumsum(lengths) - lengths
    pixel_box = np.repeat(np.arange(len(lengths)), lengths)
    column = np.arange(int(lengths.sum())) - starts[pixel_box] + left[pixel_box]
    owner[scene.row[pixel_box], column] = pixel_box
    palette = np.vstack((scene.fill.reshape(-1, 3), background))
    # Rows always fit the canvas (the scene keeps only those), so this is a view.
    band = canvas[PLOT_TOP : PLOT_TOP + scene.rows * ROW_HEIGHT].reshape(
        scene.rows, ROW_HEIGHT, scene.width, 3
    )
    band[:, : ROW_HEIGHT - 1] = palette[owner][:, None]  # owner -1: the background
    return canvas


def draw_header(draw: ImageDraw.ImageDraw, scene: Scene) -> None:
    """The title, and the axis with its tick marks and values."""
    theme = scene.theme
    title = label_fitter(TITLE_SIZE).fit(scene.title, scene.width - 2 * LABEL_PADDING - 4)
    draw.text(
        (LABEL_PADDING + 2, TITLE_HEIGHT // 2),
        title,
        font=bundled_font(TITLE_SIZE),
        fill=theme.text,
        anchor="lm",
    )
    font = bundled_font(LABEL_SIZE)
    baseline = PLOT_TOP - 3
    draw.line([(0, baseline), (scene.width - 1, baseline)], fill=theme.axis)
    for x, text in scene.ticks:
        column = min(round(x), scene.width - 1)
        draw.line([(column, baseline - 4), (column, baseline)], fill=theme.axis)
        text_width = font.getlength(text)
        text_x = column + 3 if column + 3 + text_width <= scene.width else column - 3 - text_width
        draw.text((text_x, baseline - 8), text, font=font, fill=theme.text, anchor="lm")


def draw_focus_lines(draw: ImageDraw.ImageDraw, scene: Scene) -> None:
    """Rules above and below the sandwich's middle row, in the row gaps."""
    if scene.focus_row is None:
        return
    top = PLOT_TOP + scene.focus_row * ROW_HEIGHT
    for y in (top - 1, top + ROW_HEIGHT - 1):
        if 0 <= y < scene.height:
            draw.line([(0, y), (scene.width - 1, y)], fill=scene.theme.axis)


def draw_labels(draw: ImageDraw.ImageDraw, scene: Scene) -> None:
    """Each box's fitted label, left aligned and vertically centred."""
    font = bundled_font(LABEL_SIZE)
    colour = scene.theme.frame_text
    left, _ = pixel_edges(scene)
    middle = scene.top + (ROW_HEIGHT - 1) / 2
    for box, label in enumerate(scene.label):
        if label:
            draw.text(
                (int(left[box]) + LABEL_PADDING, float(middle[box])),
                label,
                font=font,
                fill=colour,
                anchor="lm",
            )

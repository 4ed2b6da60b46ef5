"""SVG output: one <g> per frame with a <title> tooltip, a <rect> and its label.

Text from the profile (function names, files, the title) is escaped, and
characters XML cannot hold at all are replaced, so any name makes a valid
document.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from flamesight.render.scene import (
    LABEL_PADDING,
    LABEL_SIZE,
    PLOT_TOP,
    ROW_HEIGHT,
    TITLE_HEIGHT,
    TITLE_SIZE,
    Scene,
    printable,
    tooltip,
)

FONT_FAMILY = "Aileron, Helvetica, Arial, sans-serif"
"""Aileron is the font the labels were measured in (Pillow's bundled one)."""


def render_svg(scene: Scene) -> bytes:
    """The scene as an SVG document (UTF-8)."""
    theme = scene.theme
    width, height = scene.width, scene.height
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family={quoteattr(FONT_FAMILY)} '
        f'font-size="{LABEL_SIZE}">\n',
        f'<rect class="background" width="{width}" height="{height}" '
        f'fill="{_hex(theme.background)}"/>\n',
        f'<text class="title" x="{LABEL_PADDING + 2}" y="{TITLE_HEIGHT // 2}" '
        f'dominant-baseline="central" font-size="{TITLE_SIZE}" fill="{_hex(theme.text)}">'
        f"{_text(scene.title)}</text>\n",
    ]
    baseline = PLOT_TOP - 3
    axis = _hex(theme.axis)
    out.append(f'<g class="axis" fill="{_hex(theme.text)}">\n')
    out.append(f'<line x1="0" y1="{baseline}" x2="{width}" y2="{baseline}" stroke="{axis}"/>\n')
    for x, text in scene.ticks:
        anchor = "start" if x < width - 60 else "end"
        shift = 3 if anchor == "start" else -3
        out.append(
            f'<line x1="{x:.2f}" y1="{baseline - 4}" x2="{x:.2f}" y2="{baseline}" '
            f'stroke="{axis}"/><text x="{x + shift:.2f}" y="{baseline - 8}" '
            f'dominant-baseline="central" text-anchor="{anchor}">{_text(text)}</text>\n'
        )
    out.append("</g>\n")
    if scene.focus_row is not None:
        top = PLOT_TOP + scene.focus_row * ROW_HEIGHT
        for y in (top - 1, top + ROW_HEIGHT - 1):
            out.append(
                f'<line class="focus" x1="0" y1="{y + 0.5}" x2="{width}" y2="{y + 0.5}" '
                f'stroke="{axis}"/>\n'
            )
    out.append(f'<g class="frames" fill="{_hex(theme.frame_text)}">\n')
    layout = scene.layout
    fills = [_hex(tuple(colour)) for colour in scene.fill.tolist()]
    middle = ROW_HEIGHT // 2
    for box, (index, left, right, top, label) in enumerate(
        zip(
            scene.index.tolist(),
            scene.left.tolist(),
            scene.right.tolist(),
            scene.top.tolist(),
            scene.label,
            strict=True,
        )
    ):
        painted = right - left - 1 if right - left >= 3 else right - left
        text = (
            f'<text x="{left + LABEL_PADDING:.2f}" y="{top + middle}" '
            f'dominant-baseline="central">{_text(label)}</text>'
            if label
            else ""
        )
        out.append(
            f'<g class="frame"><title>{_text(tooltip(layout, index))}</title>'
            f'<rect x="{left:.2f}" y="{top}" width="{painted:.2f}" height="{ROW_HEIGHT - 1}" '
            f'fill="{fills[box]}"/>{text}</g>\n'
        )
    out.append("</g>\n</svg>\n")
    return "".join(out).encode("utf-8")


def _text(value: str) -> str:
    return escape(printable(value))


def _hex(colour: tuple[int, ...]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)

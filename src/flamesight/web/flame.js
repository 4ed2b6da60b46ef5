// Drawing rows of rectangles on a canvas: the flame chart, the flame graph,
// the sandwich's callers and callees, and the overview strip all use this.
//
// A row is sorted by start and its rectangles do not overlap, so the ends are
// sorted too: the first visible rectangle is a binary search away, and a run
// of rectangles narrower than a pixel is skipped with one more search (it is
// drawn as one merged pixel column). Drawing a viewport therefore costs
// O(visible rows x (pixels + rectangles wider than a pixel) x log n),
// however many samples the profile has. Zoomed out, those searches jump
// through rows of hundreds of thousands of rectangles, one cache miss each,
// so a long row also keeps a coarse copy (see coarseRow) that such views draw.

import { upperBound } from "./model.js";

export const ROW_HEIGHT = 18;
const LABEL_FONT = "11px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";

/** FNV-1a hash of a string, 32 bits. */
export function hashName(name) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    hash ^= name.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** The colour of a function, stable across views, reloads and themes (by its name). */
export function colourOf(name, theme) {
  const hash = hashName(name);
  const hue = hash % 360;
  const saturation = 45 + ((hash >>> 9) % 25);
  const lightness = theme === "dark" ? 30 + ((hash >>> 17) % 12) : 68 + ((hash >>> 17) % 14);
  return `hsl(${hue} ${saturation}% ${lightness}%)`;
}

/** A CSS colour as a little-endian RGBA word (what a Uint32Array over ImageData holds). */
let probe = null;
export function cssWord(colour) {
  if (!probe) probe = new OffscreenCanvas(1, 1).getContext("2d", { willReadFrequently: true });
  probe.clearRect(0, 0, 1, 1);
  probe.fillStyle = colour;
  probe.fillRect(0, 0, 1, 1);
  const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
  return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

/** Rows longer than this get a coarse copy, of about this many pieces per row's extent. */
const COARSE_MIN_LENGTH = 32768;
const COARSE_PIECES = 16384;
const coarseRows = new WeakMap();

/**
 * The row to draw when a pixel spans `perPixel` axis units: the row itself,
 * or, when a pixel covers at least four of its grains, its coarse copy, in
 * which each run of rectangles narrower than a grain that fits in one grain
 * is one rectangle (fn -1, drawn as merged, unless the run is a single
 * rectangle). Built once per row. Hit tests keep using the full row.
 */
function coarseRow(row, perPixel) {
  if (row.length < COARSE_MIN_LENGTH) return row;
  let coarse = coarseRows.get(row);
  if (!coarse) {
    const { start, end, fn, length: n } = row;
    const grain = (end[n - 1] - start[0]) / COARSE_PIECES;
    const cStart = new Float64Array(n);
    const cEnd = new Float64Array(n);
    const cFn = new Int32Array(n);
    let k = 0;
    for (let i = 0; i < n; ) {
      let j = i + 1;
      if (end[i] - start[i] < grain) {
        const limit = start[i] + grain;
        while (j < n && end[j] <= limit) j++;
      }
      cStart[k] = start[i];
      cEnd[k] = end[j - 1];
      cFn[k] = j - i > 1 ? -1 : fn[i];
      k++;
      i = j;
    }
    coarse = { grain, start: cStart.slice(0, k), end: cEnd.slice(0, k), fn: cFn.slice(0, k), length: k };
    coarseRows.set(row, coarse);
  }
  return perPixel >= 4 * coarse.grain ? coarse : row;
}

/** upperBound for a value that is usually close after `from`: exponential, then binary search. */
function gallop(array, value, from, length) {
  let lo = from;
  let step = 1;
  let hi = from;
  while (hi < length && array[hi] <= value) {
    lo = hi + 1;
    hi = from + step;
    step *= 2;
  }
  return upperBound(array, value, lo, Math.min(hi, length));
}

export function themeColours() {
  const style = getComputedStyle(document.documentElement);
  const read = (name) => style.getPropertyValue(name).trim();
  return {
    theme: document.documentElement.dataset.theme || "light",
    background: read("--canvas-bg"),
    text: read("--frame-text"),
    merged: read("--merged"),
    dimmed: read("--dimmed"),
    dimmedText: read("--dimmed-text"),
    axis: read("--axis-text"),
    grid: read("--grid"),
    selection: read("--selection"),
    outline: read("--outline"),
    words: {
      background: cssWord(read("--canvas-bg")),
      merged: cssWord(read("--merged")),
      dimmed: cssWord(read("--dimmed")),
    },
  };
}

/**
 * A canvas showing rows: `setRows` gives the data, `draw(viewport)` paints
 * the axis range [x0, x1) from `scrollTop` pixels down.
 */
export class FlameCanvas {
  constructor(canvas, { flip = false, rowHeight = ROW_HEIGHT, top = 0, labels = true } = {}) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.flip = flip;
    this.rowHeight = rowHeight;
    this.top = top; // pixels above the first row (the time axis)
    this.labels = labels;
    this.rows = [];
    this.functions = null;
    this.firstDepth = 0;
    this.colours = new Map();
    this.matches = null;
    this.hover = null;
    this.charWidth = 6.6;
  }

  setRows(rows, functions, firstDepth = 0) {
    this.rows = rows;
    this.functions = functions;
    this.firstDepth = firstDepth;
  }

  /** Match the canvas's pixels to its CSS size (times the device pixel ratio). */
  resize(cssWidth, cssHeight) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(cssWidth * ratio));
    const height = Math.max(1, Math.round(cssHeight * ratio));
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.canvas.style.height = `${cssHeight}px`;
    this.cssWidth = cssWidth;
    this.cssHeight = cssHeight;
    this.ratio = ratio;
  }

  /** Forget cached colours (after a theme change). */
  recolour() {
    this.colours.clear();
  }

  rowY(index) {
    return this.flip
      ? this.cssHeight - (index + 1) * this.rowHeight + this.scrollTop
      : this.top + index * this.rowHeight - this.scrollTop;
  }

  /** The pixel buffer (device pixels) that rectangles are written into. */
  buffer() {
    const { width, height } = this.canvas;
    if (!this.image || this.image.width !== width || this.image.height !== height) {
      this.image = this.context.createImageData(width, height);
      this.pixels = new Uint32Array(this.image.data.buffer);
    }
    return this.pixels;
  }

  /** The colour of `fn` as a little-endian RGBA word for the pixel buffer. */
  word(fn, palette) {
    if (fn < 0) return palette.words.merged;
    if (this.matches && !this.matches[fn]) return palette.words.dimmed;
    let word = this.colours.get(fn);
    if (word === undefined) {
      word = cssWord(colourOf(this.functions.names[fn], palette.theme));
      this.colours.set(fn, word);
    }
    return word;
  }

  /**
   * Paint [x0, x1) of the rows. Rectangles are written straight into a pixel
   * buffer (no canvas state changes per rectangle), then put on the canvas
   * in one call, and labels drawn on top. Returns how many rectangles were drawn.
   */
  draw({ x0, x1, scrollTop = 0 }, palette) {
    const ctx = this.context;
    const { cssWidth: width, cssHeight: height, rowHeight } = this;
    this.x0 = x0;
    this.x1 = x1;
    this.scrollTop = scrollTop;
    const pixels = this.buffer();
    const stride = this.canvas.width;
    const deviceHeight = this.canvas.height;
    const ratio = this.ratio;
    pixels.fill(palette.words.background);
    let drawn = 0;
    const labels = [];
    // A row is drawn into one scan line, then copied to each of its pixel rows.
    if (!this.line || this.line.length !== stride) this.line = new Uint32Array(stride);
    const line = this.line;
    const fill = (word, left, _top, w) => {
      const xa = Math.max(0, Math.round(left * ratio));
      const xb = Math.min(stride, Math.max(xa + 1, Math.round((left + w) * ratio)));
      if (xb - xa === 1) line[xa] = word;
      else line.fill(word, xa, xb);
    };
    if (this.functions) {
      const scale = width / (x1 - x0);
      const gap = rowHeight >= 6 ? 1 : 0;
      const tall = rowHeight - gap;
      for (let r = 0; r < this.rows.length; r++) {
        const y = this.rowY(r + this.firstDepth);
        if (y + rowHeight <= this.top || y >= height) continue;
        const row = coarseRow(this.rows[r], 1 / scale);
        const { start, end, fn } = row;
        line.fill(palette.words.background);
        // Neighbouring merged columns are drawn as one rectangle.
        let mergedLeft = -1;
        let mergedRight = -1;
        let i = upperBound(end, x0, 0, row.length);
        while (i < row.length && start[i] < x1) {
          const left = (start[i] - x0) * scale;
          const right = (end[i] - x0) * scale;
          if (right - left >= 1) {
            if (mergedRight > mergedLeft) fill(palette.words.merged, mergedLeft, y, mergedRight - mergedLeft, tall);
            mergedLeft = mergedRight = -1;
            const clippedLeft = Math.max(left, 0);
            const clippedRight = Math.min(right, width);
            fill(this.word(fn[i], palette), clippedLeft, y, Math.max(clippedRight - clippedLeft - gap, 1), tall);
            if (this.labels && clippedRight - clippedLeft > 24) labels.push(fn[i], clippedLeft, clippedRight, y);
            drawn++;
            i++;
          } else {
            // Everything up to the next pixel boundary is one merged column.
            const pixel = Math.floor(left);
            const next = gallop(end, x0 + (pixel + 1) / scale, i + 1, row.length);
            if (next - i > 1) {
              if (mergedRight !== pixel) {
                if (mergedRight > mergedLeft) fill(palette.words.merged, mergedLeft, y, mergedRight - mergedLeft, tall);
                mergedLeft = pixel;
              }
              mergedRight = pixel + 1;
            } else {
              fill(this.word(fn[i], palette), pixel, y, 1, tall);
            }
            drawn++;
            i = next;
          }
        }
        if (mergedRight > mergedLeft) fill(palette.words.merged, mergedLeft, y, mergedRight - mergedLeft, tall);
        const ya = Math.max(0, Math.round(Math.max(y, this.top) * ratio));
        const yb = Math.min(deviceHeight, Math.round((y + tall) * ratio));
        for (let yy = ya; yy < yb; yy++) pixels.set(line, yy * stride);
      }
    }
    ctx.putImageData(this.image, 0, 0);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    if (labels.length && rowHeight >= 12) {
      ctx.font = LABEL_FONT;
      ctx.textBaseline = "middle";
      this.charWidth = ctx.measureText("abcdefghij").width / 10;
      for (let k = 0; k < labels.length; k += 4) {
        const fnId = labels[k];
        const left = labels[k + 1];
        const right = labels[k + 2];
        const y = labels[k + 3];
        if (fnId < 0) continue;
        const room = Math.floor((right - left - 8) / this.charWidth);
        if (room < 3) continue;
        const name = this.functions.names[fnId];
        const text = name.length <= room ? name : `${name.slice(0, room - 1)}…`;
        const dim = this.matches && !this.matches[fnId];
        ctx.fillStyle = dim ? palette.dimmedText : palette.text;
        ctx.fillText(text, left + 4, y + rowHeight / 2);
      }
    }
    if (this.hover) this.outline(this.hover, palette);
    return drawn;
  }

  outline({ row: r, index: i }, palette) {
    const row = this.rows[r];
    if (!row || i >= row.length) return;
    const scale = this.cssWidth / (this.x1 - this.x0);
    const left = Math.max((row.start[i] - this.x0) * scale, 0);
    const right = Math.min((row.end[i] - this.x0) * scale, this.cssWidth);
    const ctx = this.context;
    ctx.strokeStyle = palette.outline;
    ctx.lineWidth = 1.5;
    ctx.strokeRect(left + 0.5, this.rowY(r + this.firstDepth) + 0.5, Math.max(right - left - 1, 1), this.rowHeight - 2);
  }

  /** The rectangle under the CSS pixel (x, y) of the last drawing: {row, index} or null. */
  hit(x, y) {
    if (!this.functions || y < this.top) return null;
    const level = this.flip
      ? Math.floor((this.cssHeight - y + this.scrollTop) / this.rowHeight)
      : Math.floor((y - this.top + this.scrollTop) / this.rowHeight);
    const r = level - this.firstDepth;
    const row = this.rows[r];
    if (!row) return null;
    const scale = this.cssWidth / (this.x1 - this.x0);
    const at = this.x0 + x / scale;
    const slack = 0.5 / scale; // half a pixel, so merged slivers can be pointed at
    const i = upperBound(row.end, at - slack, 0, row.length);
    if (i < row.length && row.start[i] <= at + slack) return { row: r, index: i };
    return null;
  }

  /** What the rectangle {row, index} stands for. */
  describe({ row: r, index: i }) {
    const row = this.rows[r];
    const fn = row.fn[i];
    const span = row.end[i] - row.start[i];
    return {
      fn,
      name: fn >= 0 ? this.functions.names[fn] : "smaller frames, merged",
      location: fn >= 0 ? this.functions.location(fn) : "",
      start: row.start[i],
      end: row.end[i],
      self: row.self[i],
      total: row.total ? row.total[i] : span,
    };
  }

  /** Rows needed to show every row (for scrolling limits). */
  get depth() {
    return this.rows.length + this.firstDepth;
  }
}

"""Instruments (Xcode, macOS): call-tree "deep copy" text, and ``.trace`` bundles in a zip.

**Deep copy.** In Instruments 7.3 to 16, select the call tree of a Time
Profiler, Allocations or CPU Counters (cycles) run and choose Edit > Deep Copy
(Cmd-Shift-C); the pasted text is tab-separated, one row per call-tree node,
the symbol indented one space per level::

    Running Time	Self (ms)		Symbol Name
    4273.0ms   99.9%	0	 	start
    4273.0ms   99.9%	0	 	 main
    2126.0ms   49.7%	693	 	  delta()

Read as speedscope reads it: the header names the columns ("Symbol Name", or
"Symbol Names" from Instruments 16 on); a row's total weight is its
"Weight", "Running Time" or "Bytes Used" cell, and its depth the number of
spaces before the symbol (counted from the first row's, since Instruments 16
indents the root too). Each row opens its frame where the previous sibling's
subtree ended and runs for its total weight, so a node's self weight is what
its children leave of its total. A frame is the symbol and the "Source Path"
cell, when there is one. Units: milliseconds for time (``ms``, ``s``, ``min``,
``µs``, ``ns``), bytes for "Bytes Used" (``Bytes``, ``KB``, ``MB``, ``GB``,
powers of 1024), plain counts for cycles (``cycles``, ``Kc``, ``Mc``,
``Gc``). Values keep their decimals (speedscope truncates them to integers).
One profile, named after the file. The lines are cut into cells with NumPy
a block at a time (lines alike, as usual, split at once and each column a
stride of the cells), each distinct symbol and weight cell decoded once;
anything unusual, and so every error, is left to a line-by-line reading
that names the line. The stacks are made from the rows' depths and frames
at the end (`tree_stacks`), and the samples by following the rows in order,
passing over the rows of call chains that have nothing of their own.

**``.trace`` bundles** (a folder, so given as a zip of it) are binary
databases whose layout changes with every Instruments release. Time Profiler
bundles of Instruments 8 to 10 are read as speedscope reads them, and those
of Instruments 7 (which speedscope does not read) from their sampler files;
see `flamesight.formats.instruments_trace` for both layouts. Any other
bundle (an Allocations run) is refused with a `FormatError` that names the
instrument it recorded and says to load a deep copy instead. The zip is read within the decompressed-size cap and a cap on
its member count.
"""

from __future__ import annotations

import io
import plistlib
import re
import zipfile
from array import array
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from flamesight.formats import instruments_trace
from flamesight.formats.collapsed import as_utf8
from flamesight.formats.errors import FormatError, shorten
from flamesight.formats.line_columns import interned_ids, line_blocks, line_bounds
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit
from flamesight.model.stack_building import tree_stacks

NAME = "instruments"
TITLE = "Instruments"

_DEEP_COPY_HEADER = re.compile(r"^[\w \t()]*\tSymbol Name")
# Anchored, and the unit starts with a letter, so that no digit run can be split
# two ways (speedscope's unanchored pattern backtracks cubically on long numbers).
_WEIGHT = re.compile(r"\s*(\d+(?:\.\d+)?) ?([^\W\d]\w*)\s+\d+(?:\.\d+)?%")
_SYMBOL_COLUMNS = ("Symbol Name", "Symbol Names")
_TIME_COLUMNS = ("Weight", "Running Time")
_BYTES_COLUMN = "Bytes Used"
_ZIP_MAGIC = b"PK\x03\x04"
_MAX_VALUE_DIGITS = 30
_PIECE_BYTES = 1 << 20
_ROWS_AT_ONCE = 1 << 16

_MILLISECONDS = {"ms": 1.0, "s": 1e3, "min": 60e3, "µs": 1e-3, "us": 1e-3, "ns": 1e-6}
_CYCLES = {"cycles": 1.0, "Kc": 1e3, "Mc": 1e6, "Gc": 1e9}
_BYTES = {"Bytes": 1.0, "KB": 1024.0, "MB": 1024.0**2, "GB": 1024.0**3}


def sniff(head: bytes) -> bool:
    """A deep copy's tab-separated header with "Symbol Name", or a zip of a ``.trace`` folder."""
    if head.startswith(_ZIP_MAGIC):
        return b".trace/" in head[:4096]
    text = as_utf8(head).decode("utf-8", "replace")
    return _DEEP_COPY_HEADER.match(text) is not None


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a deep copy into one profile; refuse a ``.trace`` zip with the reason."""
    if data.startswith(_ZIP_MAGIC):
        return _trace_bundle(data)
    rows = _read_rows(as_utf8(data), name)
    del data  # the text is read: let it go (`formats.load` holds no other reference)
    return ProfileGroup(name, [_rows_profile(rows)])


class _Rows(NamedTuple):
    """The rows of a deep copy as `_read_rows` reads them: the frame, depth and total weight
    of every row, its frames made in `builder`."""

    builder: ProfileBuilder
    frames: np.ndarray
    depths: np.ndarray
    totals: np.ndarray


def _read_rows(text: bytes, name: str) -> _Rows:
    """The call tree of a deep copy, a row per node.

    The rows are read as NumPy columns a block of lines at a time
    (`_row_columns`), or, when that finds anything unusual (and so for
    errors), line by line (`_row_lines`). A symbol or weight cell is decoded
    and parsed once per distinct text.
    """
    body = text.find(b"\n") + 1 or len(text)
    first = text[:body].decode("utf-8", "replace").removesuffix("\n").removesuffix("\r")
    header = first.split("\t")
    symbol_column = next((header.index(c) for c in _SYMBOL_COLUMNS if c in header), None)
    if symbol_column is None:
        raise FormatError(TITLE, "line 1", f"no 'Symbol Name' column in {shorten(first)}")
    if _BYTES_COLUMN in header:
        weight_column, scales = header.index(_BYTES_COLUMN), _BYTES
    else:
        weight_column = next((header.index(c) for c in _TIME_COLUMNS if c in header), None)
        scales = {**_MILLISECONDS, **_CYCLES}
        if weight_column is None:
            raise FormatError(TITLE, "line 1", "no 'Weight', 'Running Time' or 'Bytes Used' column")
    columns = _Columns(
        symbol_column,
        weight_column,
        header.index("Source Path") if "Source Path" in header else None,
        scales,
    )
    builder = ProfileBuilder(name, Unit.BYTES if scales is _BYTES else Unit.MILLISECONDS)
    units_seen: set[str] = set()
    try:
        rows = _Rows(builder, *_row_columns(text, body, columns, builder, units_seen))
    except _Unusual:
        units_seen.clear()
        rows = _Rows(builder, *_row_lines(text, body, columns, builder, units_seen))
    if scales is not _BYTES and units_seen and units_seen <= set(_CYCLES):
        builder.unit = Unit.NONE
    return rows


class _Columns(NamedTuple):
    """Where the cells a row is read from are, and the weight units of the weight column."""

    symbol: int
    weight: int
    source: int | None
    scales: dict[str, float]


class _Unusual(Exception):
    """Raised by `_row_columns` for a text it leaves to the line-by-line reading."""


def _row_columns(
    text: bytes, body: int, columns: _Columns, builder: ProfileBuilder, units_seen: set[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frame, depth and total weight of every row, the lines cut into cells with NumPy.

    Raises `_Unusual` (before making any frame) for a row indented deeper
    than one level below the row before it, or a weight cell that is not
    read as a weight, so that `_row_lines` reports it at its line.
    """
    symbols: dict[bytes | tuple[bytes, bytes], int] = {}
    weights: dict[bytes, int] = {}
    lines = text.count(b"\n", body) + 1
    symbol_of_row, weight_of_row = np.empty(lines, np.int32), np.empty(lines, np.int32)
    rows = 0
    for begin, end in line_blocks(text, body, _PIECE_BYTES):
        symbol_cells, weight_cells = _cells(text[begin:end], columns)
        symbol_of_row[rows : rows + len(symbol_cells)] = interned_ids(symbol_cells, symbols)
        weight_of_row[rows : rows + len(weight_cells)] = interned_ids(weight_cells, weights)
        rows += len(symbol_cells)
    symbol_of_row, weight_of_row = symbol_of_row[:rows], weight_of_row[:rows]
    cells = [_symbol(key) for key in symbols]
    del symbols
    indents = np.array([cell[0] if cell else -1 for cell in cells], np.int32)
    if np.any(indents < 0):  # rows with a blank symbol cell are left out
        used = indents[symbol_of_row] >= 0
        symbol_of_row, weight_of_row = symbol_of_row[used], weight_of_row[used]
    if not len(symbol_of_row):
        raise _Unusual
    depths = indents[symbol_of_row]
    depths -= depths[0]
    if np.any(depths < 0) or np.any(np.diff(depths) > 1):
        raise _Unusual
    texts = list(weights)
    values = np.zeros(len(texts))
    try:
        for index in np.flatnonzero(np.bincount(weight_of_row, minlength=len(texts))).tolist():
            values[index] = _weight(
                texts[index].decode("utf-8", "replace"), columns.scales, units_seen, 0
            )
    except FormatError:
        raise _Unusual from None
    totals = values[weight_of_row]
    del weight_of_row
    frame_of = np.full(len(cells), -1, np.int32)
    for index in np.flatnonzero(np.bincount(symbol_of_row, minlength=len(cells))).tolist():
        frame_of[index] = builder.frame(cells[index][1], cells[index][2] or None)
    return frame_of[symbol_of_row], depths, totals


def _cells(block: bytes, columns: _Columns) -> tuple[list, list[bytes]]:
    """The symbol cells (with their source cells) and weight cells of the lines of `block`
    that have a symbol cell."""
    view, starts, ends = line_bounds(block)
    tabs = np.flatnonzero(view == ord("\t"))
    first = np.searchsorted(tabs, starts)
    count = np.searchsorted(tabs, ends) - first  # a line's cells are one more than its tabs
    if b"\r" not in block and len(count) and count.min() == count.max() >= columns.symbol:
        # Lines alike (as usual): every cell at once, and each column a stride of them.
        every = block.replace(b"\t", b"\n").split(b"\n")
        if block.endswith(b"\n"):
            every.pop()
        width = int(count[0]) + 1

        def cell(column: int) -> list[bytes]:
            return every[column::width] if column < width else [b""] * len(count)

    else:
        keep = count >= columns.symbol
        starts, ends, first, count = starts[keep], ends[keep], first[keep], count[keep]
        tabs = np.append(tabs, 0)

        def cell(column: int) -> list[bytes]:
            """Cell `column` of every line, empty where the line has fewer cells."""
            after = tabs[np.minimum(first + column - 1, len(tabs) - 1)] + 1 if column else starts
            before = np.where(column < count, tabs[first + np.minimum(column, count)], ends)
            missing = column > count
            after, before = np.where(missing, 0, after), np.where(missing, 0, before)
            return list(map(block.__getitem__, map(slice, after.tolist(), before.tolist())))

    symbol = cell(columns.symbol)
    if columns.source is not None:
        symbol = list(zip(symbol, cell(columns.source), strict=True))
    return symbol, cell(columns.weight)


def _row_lines(
    text: bytes, body: int, columns: _Columns, builder: ProfileBuilder, units_seen: set[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frame, depth and total weight of every row, read line by line; errors name the line."""
    frames, depths, totals = array("i"), array("i"), array("d")
    # Per distinct symbol cell (with the source cell, when there is one):
    # [indent, symbol, file, frame or -1 until a row uses it], or [] when blank.
    symbols: dict[bytes | tuple[bytes, bytes], list] = {}
    weights: dict[bytes, float] = {}
    symbol_column, weight_column, source_column = columns.symbol, columns.weight, columns.source
    opened = 0  # the depth of the row before, plus one
    base_indent: int | None = None
    number = 1
    for begin, end in line_blocks(text, body, _PIECE_BYTES):
        lines = text[begin:end].split(b"\n")
        if text[end - 1] == ord("\n"):
            lines.pop()
        for line in lines:
            number += 1
            cells = line.removesuffix(b"\r").split(b"\t")
            if symbol_column >= len(cells):
                continue
            key = cells[symbol_column]
            if source_column is not None:
                key = (key, cells[source_column] if source_column < len(cells) else b"")
            symbol = symbols.get(key)
            if symbol is None:
                symbol = symbols[key] = _symbol(key)
            if not symbol:
                continue
            indent = symbol[0]
            if base_indent is None:
                base_indent = indent
            depth = indent - base_indent
            if depth < 0 or depth > opened:
                raise FormatError(
                    TITLE,
                    f"line {number}",
                    f"{shorten(symbol[1])} is indented {indent} spaces; the row before it is at "
                    f"depth {opened} (counted from {base_indent})",
                )
            opened = depth + 1
            weight_text = cells[weight_column] if weight_column < len(cells) else b""
            weight = weights.get(weight_text)
            if weight is None:
                weight = weights[weight_text] = _weight(
                    weight_text.decode("utf-8", "replace"), columns.scales, units_seen, number
                )
            frame = symbol[3]
            if frame < 0:
                frame = symbol[3] = builder.frame(symbol[1], symbol[2] or None)
            frames.append(frame)
            depths.append(depth)
            totals.append(weight)
    if base_indent is None:
        raise FormatError(TITLE, "whole file", "no row with a symbol under the header")
    return (
        np.frombuffer(frames, np.int32),
        np.frombuffer(depths, np.int32),
        np.frombuffer(totals, np.float64),
    )


def _samples(depths: np.ndarray, totals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The samples of the rows, in order: the row whose own weight each is, its time and weight.

    As enter/leave events lay them out: a row opens at the running position
    and runs for its total weight; when it closes (after its children), the
    span from the running position to its end, when that is ahead, is its own
    weight, and the running position moves to its end. The rows are followed
    in order, so the additions are made in the order the events make them;
    but a row whose first child has the same total is passed over (the usual
    long chains of calls): the child opens and ends where it does, so the row
    has no weight of its own and moves nothing. A row after such rows closes
    the open rows as the first of them would.
    """
    passed_over = np.zeros(len(depths), bool)
    passed_over[:-1] = (depths[1:] == depths[:-1] + 1) & (totals[1:] == totals[:-1])
    rows = np.flatnonzero(~passed_over)
    closing_depths = depths[np.append(0, rows[:-1] + 1)]  # the row after the row before
    sample_rows, sample_times, sample_weights = array("q"), array("d"), array("d")
    open_depths: list[int] = []
    open_ends: list[float] = []  # the end of every open row's total weight
    open_rows: list[int] = []
    cumulative = 0.0
    # a last row at depth 0 closes them all
    for row, closing_depth, depth, total in zip(
        _parts(np.append(rows, -1)),
        _parts(np.append(closing_depths, 0)),
        _parts(np.append(depths[rows], 0)),
        _parts(np.append(totals[rows], 0.0)),
        strict=True,
    ):
        while open_depths and open_depths[-1] >= closing_depth:
            open_depths.pop()
            end = open_ends.pop()
            closing = open_rows.pop()
            if end > cumulative:
                sample_rows.append(closing)
                sample_times.append(cumulative)
                sample_weights.append(end - cumulative)
                cumulative = end
        open_depths.append(depth)
        open_ends.append(cumulative + total)
        open_rows.append(row)
    return (
        np.frombuffer(sample_rows, np.int64),
        np.frombuffer(sample_times, np.float64),
        np.frombuffer(sample_weights, np.float64),
    )


def _parts(values: np.ndarray) -> Iterator[int | float]:
    """The values as Python numbers, converted `_ROWS_AT_ONCE` at a time."""
    for begin in range(0, len(values), _ROWS_AT_ONCE):
        yield from values[begin : begin + _ROWS_AT_ONCE].tolist()


def _rows_profile(rows: _Rows) -> Profile:
    """The profile of the rows: each row's own weight a sample of the stack made from the
    rows' depths and frames."""
    stacks, stack_of_row = tree_stacks(rows.depths, rows.frames)
    sample_rows, sample_times, sample_weights = _samples(rows.depths, rows.totals)
    builder = rows.builder
    builder.add_samples(stack_of_row[sample_rows], sample_weights, sample_times)
    return builder.build(stacks)


def _symbol(key: bytes | tuple[bytes, bytes]) -> list:
    """[indent, symbol, file, -1] of a symbol cell (with its source cell), [] when blank."""
    cell, source = (key, b"") if isinstance(key, bytes) else key
    text = cell.decode("utf-8", "replace")
    symbol = text.strip()
    if not symbol:
        return []
    return [len(text) - len(text.lstrip()), symbol, source.decode("utf-8", "replace").strip(), -1]


def _weight(text: str, scales: dict[str, float], units_seen: set[str], number: int) -> float:
    """A weight cell ("4273.0ms   99.9%", "96.08 Gc  100.0%", " 429.93 MB  100.0%") in the profile's unit."""
    match = _WEIGHT.match(text)
    if match is None:
        return 0.0
    value, unit = match.groups()
    if len(value) > _MAX_VALUE_DIGITS:
        raise FormatError(TITLE, f"line {number}", f"weight {shorten(value, 30)} is too long")
    scale = scales.get(unit)
    if scale is None:
        raise FormatError(
            TITLE,
            f"line {number}",
            f"unknown unit {shorten(unit, 20)} in {shorten(text)} "
            f"(expected one of {', '.join(scales)})",
        )
    units_seen.add(unit)
    return float(value) * scale


def _trace_bundle(data: bytes) -> ProfileGroup:
    """The time profiles of a zipped ``.trace`` bundle, or the reason it cannot be read."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            bundle_name = next((n.split("/")[0] for n in names if ".trace/" in n), None)
            if bundle_name is None:
                raise FormatError(TITLE, "zip", "the zip holds no '.trace' folder")
            bundle = instruments_trace.TraceBundle(archive, bundle_name)
            if not bundle.has("form.template"):
                raise _refusal(bundle_name, None)
            template_bytes = bundle.read("form.template")
            template = instruments_trace.read_template(
                template_bytes, f"{bundle_name}/form.template"
            )
            if template.instrument not in (
                instruments_trace.TIME_PROFILER,
                instruments_trace.OLD_TIME_PROFILER,
            ):
                raise _refusal(bundle_name, _instrument_of(template_bytes))
            return instruments_trace.read_trace(bundle, template, bundle_name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        raise FormatError(
            TITLE, "zip", f"not a readable zip of a .trace folder ({error})"
        ) from None


def _refusal(bundle: str, instrument: str | None) -> FormatError:
    """The `FormatError` for a bundle flamesight cannot read, naming what it recorded."""
    recorded = f" (it recorded {instrument})" if instrument else ""
    return FormatError(
        TITLE,
        bundle,
        f"reading this .trace bundle is not supported{recorded}; open the trace in Instruments, "
        "select the call tree, choose Edit > Deep Copy and load the pasted text instead",
    )


def _instrument_of(template: bytes) -> str | None:
    """What the bundle's form.template says was recorded: "a time profile", "allocations", ..."""
    try:
        archive = plistlib.loads(template)
    except Exception:  # any malformed property list: the message just says less
        return None
    objects = archive.get("$objects", []) if isinstance(archive, dict) else []
    kinds = {
        text.rsplit(".", 1)[-1]
        for text in objects
        if isinstance(text, str) and text.startswith("com.apple.xray.instrument-type.")
    }
    if any("coresampler" in kind or "sampler" in kind for kind in kinds):
        return "a time profile"
    if any("alloc" in kind.lower() for kind in kinds) or any(
        isinstance(text, str) and "Allocations" in text for text in objects
    ):
        return "allocations"
    return ", ".join(sorted(kinds)) or None

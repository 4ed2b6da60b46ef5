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
One profile, named after the file. Lines are read as bytes, each distinct
symbol and weight cell decoded once, and the stacks made from the rows'
depths and frames at the end (`tree_stacks`), not row by row.

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

import dataclasses
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
    """The rows of a deep copy as `_read_rows` reads them: the frame and depth of every row,
    and the samples, each naming the row whose own weight it is."""

    builder: ProfileBuilder
    frames: array
    depths: array
    sample_rows: array
    sample_times: array
    sample_weights: array


def _read_rows(text: bytes, name: str) -> _Rows:
    """The call tree of a deep copy, a row per node, with each node's self weight as a sample.

    Lines are read as bytes, a piece of the text at a time; a symbol or
    weight cell is decoded and parsed once per distinct text. The running
    position and the samples follow the rows in order, as enter/leave events
    would lay them out: a row opens where the one before it ended and runs
    for its total weight.
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
    source_column = header.index("Source Path") if "Source Path" in header else None
    rows = _Rows(
        ProfileBuilder(name, Unit.BYTES if scales is _BYTES else Unit.MILLISECONDS),
        array("i"),
        array("i"),
        array("q"),
        array("d"),
        array("d"),
    )
    frames, add_frame, add_depth = rows.frames, rows.frames.append, rows.depths.append
    # Per distinct symbol cell (with the source cell, when there is one):
    # [indent, symbol, file, frame or -1 until a row uses it], or [] when blank.
    symbols: dict[bytes | tuple[bytes, bytes], list] = {}
    weights: dict[bytes, float] = {}
    units_seen: set[str] = set()
    open_ends: list[float] = []  # the end of every open row's total weight
    open_rows: list[int] = []
    cumulative = 0.0
    base_indent: int | None = None
    number = 1
    for lines in _pieces(text, body):
        for line in lines:
            number += 1
            cells = line.split(b"\t")
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
            opened = len(open_rows)
            if depth < 0 or depth > opened:
                raise FormatError(
                    TITLE,
                    f"line {number}",
                    f"{shorten(symbol[1])} is indented {indent} spaces; the row before it is at "
                    f"depth {opened} (counted from {base_indent})",
                )
            if opened > depth:
                cumulative = _close(rows, open_rows, open_ends, depth, cumulative)
            weight_text = cells[weight_column] if weight_column < len(cells) else b""
            weight = weights.get(weight_text)
            if weight is None:
                weight = weights[weight_text] = _weight(
                    weight_text.decode("utf-8", "replace"), scales, units_seen, number
                )
            frame = symbol[3]
            if frame < 0:
                frame = symbol[3] = rows.builder.frame(symbol[1], symbol[2] or None)
            open_rows.append(len(frames))
            open_ends.append(cumulative + weight)
            add_frame(frame)
            add_depth(depth)
    if base_indent is None:
        raise FormatError(TITLE, "whole file", "no row with a symbol under the header")
    _close(rows, open_rows, open_ends, 0, cumulative)
    if scales is not _BYTES and units_seen and units_seen <= set(_CYCLES):
        rows.builder.unit = Unit.NONE
    return rows


def _close(
    rows: _Rows, open_rows: list[int], open_ends: list[float], depth: int, cumulative: float
) -> float:
    """Close the open rows deeper than `depth`, innermost first; the running position after.

    A closing row's own weight is what its children left of its total: the
    span from the running position to its end, when that is ahead.
    """
    while len(open_rows) > depth:
        end = open_ends.pop()
        row = open_rows.pop()
        if end > cumulative:
            rows.sample_rows.append(row)
            rows.sample_times.append(cumulative)
            rows.sample_weights.append(end - cumulative)
            cumulative = end
    return cumulative


def _rows_profile(rows: _Rows) -> Profile:
    """The profile of the rows: the stacks made from the rows' depths and frames."""
    stacks, stack_of_row = tree_stacks(
        np.frombuffer(rows.depths, np.int32), np.frombuffer(rows.frames, np.int32)
    )
    builder = rows.builder
    builder.add_samples(
        stack_of_row[np.frombuffer(rows.sample_rows, np.int64)],
        np.frombuffer(rows.sample_weights, np.float64),
        np.frombuffer(rows.sample_times, np.float64),
    )
    return dataclasses.replace(builder.build(), stacks=stacks)


def _pieces(text: bytes, start: int) -> Iterator[list[bytes]]:
    """The lines of `text` from `start` on, without their ends, a list per piece of the text."""
    while start < len(text):
        cut = text.find(b"\n", start + _PIECE_BYTES)
        piece = text[start : len(text) if cut < 0 else cut + 1]
        start += len(piece)
        lines = piece.split(b"\n")
        if piece.endswith(b"\n"):
            lines.pop()
        if b"\r" in piece:
            lines = [line.removesuffix(b"\r") for line in lines]
        yield lines


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

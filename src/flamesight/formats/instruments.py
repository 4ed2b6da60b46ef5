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
One profile, named after the file.

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

from flamesight.formats import instruments_trace
from flamesight.formats.collapsed import as_utf8, text_lines
from flamesight.formats.errors import FormatError, shorten
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit

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
    return ProfileGroup(name, [_deep_copy(data, name)])


def _deep_copy(data: bytes, name: str) -> Profile:
    """The call tree of a deep copy as samples (each node's self weight)."""
    lines = text_lines(as_utf8(data))
    first = next(lines, "")
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
    builder = ProfileBuilder(name, Unit.BYTES if scales is _BYTES else Unit.MILLISECONDS)
    open_ends: list[float] = []  # the end of every open frame's total weight
    open_frames: list[int] = []
    cumulative = 0.0
    base_indent: int | None = None
    units_seen: set[str] = set()
    for number, line in enumerate(lines, 2):
        cells = line.split("\t")
        if symbol_column >= len(cells) or not cells[symbol_column].strip():
            continue
        cell = cells[symbol_column]
        symbol = cell.strip()
        indent = len(cell) - len(cell.lstrip())
        if base_indent is None:
            base_indent = indent
        depth = indent - base_indent
        if depth < 0 or depth > len(open_frames):
            raise FormatError(
                TITLE,
                f"line {number}",
                f"{shorten(symbol)} is indented {indent} spaces; the row before it is at "
                f"depth {len(open_frames)} (counted from {base_indent})",
            )
        while len(open_frames) > depth:
            cumulative = max(cumulative, open_ends.pop())
            builder.leave(open_frames.pop(), cumulative)
        weight_text = cells[weight_column] if weight_column < len(cells) else ""
        weight = _weight(weight_text, scales, units_seen, number)
        file = (
            cells[source_column].strip()
            if source_column is not None and source_column < len(cells)
            else ""
        )
        frame = builder.frame(symbol, file or None)
        builder.enter(frame, cumulative)
        open_frames.append(frame)
        open_ends.append(cumulative + weight)
    if base_indent is None:
        raise FormatError(TITLE, "whole file", "no row with a symbol under the header")
    while open_frames:
        cumulative = max(cumulative, open_ends.pop())
        builder.leave(open_frames.pop(), cumulative)
    if scales is not _BYTES and units_seen and units_seen <= set(_CYCLES):
        builder.unit = Unit.NONE
    return builder.build()


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

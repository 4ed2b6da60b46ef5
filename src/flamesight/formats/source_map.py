"""JavaScript source maps (v3): remap the frames of a profile of bundled code.

`parse_source_map` decodes a map (JSON with ``version``, ``sources``,
``sourceRoot``, ``names`` and ``mappings`` in base64 VLQ) into NumPy columns
sorted by generated position; `apply_source_map` rewrites the frame tables of
a `ProfileGroup` with it. Index maps (``sections``) are refused.

Which frames a map applies to: a frame whose file (URL query and fragment
ignored) is the map's generated file or ends with ``/`` + its name. The
generated file's name is taken from both places speedscope looks: the map's
``file`` field, and the map file's own name without ``.map`` (so
``bundle.js.map`` applies to ``.../bundle.js`` even when ``file`` is
missing, as esbuild writes it). A frame also needs a line and a column.

How a frame is remapped follows speedscope, the reference importer. Browsers
report a function's position at the opening parenthesis of its argument
list, not at its name, so the mapping used is the last one that starts
strictly before the frame's position in the generated file. The frame takes
that mapping's original file (``sourceRoot`` joined), line and column (the
model is 1-based, mappings are 0-based). Its name becomes the mapping's
original name; where the mapping has none and the map embeds the source
(``sourcesContent``), the first identifier at the original position is used.
The frame keeps its own name when the new one is "function", "const" or
"export" (a miss), or is part of the old name ("n.zap" stays "n.zap" rather
than "zap"); "constructor" becomes "<old name> constructor". Mappings
without a source leave the frame as it is.

Only the frame tables change: the stack tables and samples are shared with
the input, so two frames that remap to the same place stay two rows, and
analysis groups them into one function by (name, file).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
import orjson

from flamesight.formats.errors import FormatError, shorten
from flamesight.model import FrameTable, Profile, ProfileGroup, ProfileTooLarge, current_limits

TITLE = "source map"

BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
COMMA = 64
SEMICOLON = 65
INVALID = -1

# A VLQ value of more than 7 digits (35 bits) cannot be a position in a real
# file; refusing it keeps the shifts below in range.
MAX_VLQ_DIGITS = 7

# Names speedscope's guess from the source text can land on that are not a
# function name: the frame keeps its own.
NOT_NAMES = frozenset({"function", "const", "export"})

IDENTIFIER = re.compile(r"\w+", re.ASCII)
URL_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]*")

_CODES = np.full(256, INVALID, np.int16)
_CODES[np.frombuffer(BASE64.encode(), np.uint8)] = np.arange(64)
_CODES[ord(",")] = COMMA
_CODES[ord(";")] = SEMICOLON


@dataclass(frozen=True, eq=False)
class SourceMap:
    """A decoded source map: one row per mapping, sorted by generated position.

    All positions are 0-based. `source`, `orig_line` and `orig_col` are -1
    for a mapping without a source; `name` is -1 where the mapping has none.
    """

    file: str | None
    sources: list[str]
    sources_content: list[str | None]
    names: list[str]
    gen_line: np.ndarray
    gen_col: np.ndarray
    source: np.ndarray
    orig_line: np.ndarray
    orig_col: np.ndarray
    name: np.ndarray

    def __len__(self) -> int:
        return len(self.gen_line)

    def lookup(self, line: np.ndarray, col: np.ndarray) -> np.ndarray:
        """For 0-based generated positions, the row of the last mapping strictly before each.

        -1 where no mapping comes before the position.
        """
        if len(self) == 0:
            return np.full(len(line), -1, np.int64)
        span = int(max(self.gen_col.max(), col.max(initial=0))) + 2
        keys = self.gen_line * span + self.gen_col
        targets = line.astype(np.int64) * span + col.astype(np.int64)
        return np.searchsorted(keys, targets, "left") - 1


def vlq_decode(text: str) -> list[int]:
    """The signed integers of one base64 VLQ string (e.g. one mapping segment)."""
    values, _ = _decode_numbers(text, _codes_of(text))
    return values.tolist()


def parse_source_map(data: bytes | str) -> SourceMap:
    """Decode a v3 source map, raising `FormatError` naming the JSON path or segment."""
    limit = current_limits().max_decompressed_bytes
    if len(data) > limit:
        raise ProfileTooLarge(f"source map larger than {limit:,} bytes")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise FormatError(TITLE, "JSON", str(error)) from None
    if not isinstance(document, dict):
        raise FormatError(TITLE, "top level", f"expected an object, got {_kind(document)}")
    if "sections" in document:
        raise FormatError(
            TITLE,
            "sections",
            "index maps (with 'sections') are not supported; "
            "give the map of each generated file instead",
        )
    version = document.get("version")
    if version != 3:
        raise FormatError(TITLE, "version", f"expected 3, got {version!r}")
    sources = _string_list(document, "sources", required=True)
    names = _string_list(document, "names", required=False)
    root = _optional_string(document, "sourceRoot") or ""
    file = _optional_string(document, "file") or None
    content = document.get("sourcesContent")
    if content is None:
        sources_content: list[str | None] = [None] * len(sources)
    elif isinstance(content, list) and all(c is None or isinstance(c, str) for c in content):
        sources_content = (content + [None] * len(sources))[: len(sources)]
    else:
        raise FormatError(TITLE, "sourcesContent", "expected a list of strings or nulls")
    mappings = document.get("mappings")
    if not isinstance(mappings, str):
        raise FormatError(TITLE, "mappings", f"expected a string, got {_kind(mappings)}")
    columns = _decode_mappings(mappings, len(sources), len(names))
    return SourceMap(
        file=file,
        sources=[_source_path(root, source) for source in sources],
        sources_content=sources_content,
        names=names,
        **columns,
    )


def apply_source_map(
    group: ProfileGroup, map_data: bytes | str, *, map_name: str | None = None
) -> ProfileGroup:
    """The group with the frames of the map's generated file remapped to the original sources.

    `map_name` is the map file's name (``bundle.js.map``); with the map's
    ``file`` field it says which frames the map applies to. Stack tables and
    samples are shared with `group`; frame tables are new.
    """
    source_map = parse_source_map(map_data)
    generated = set()
    if source_map.file:
        generated.add(source_map.file.replace("\\", "/"))
    if map_name:
        base = PurePath(map_name.replace("\\", "/")).name
        generated.add(base[: -len(".map")] if base.endswith(".map") else base)
    if not generated:
        raise FormatError(
            TITLE,
            "file",
            "the map has no 'file' field and no file name was given: "
            "cannot tell which script it maps",
        )
    remapped: dict[int, FrameTable] = {}
    profiles = []
    for profile in group.profiles:
        frames = remapped.get(id(profile.frames))
        if frames is None:
            frames = remapped[id(profile.frames)] = _remap_frames(
                profile.frames, source_map, generated
            )
        profiles.append(
            Profile(
                profile.name,
                profile.unit,
                frames,
                profile.stacks,
                profile.samples,
                profile.sampled,
                profile.metadata,
            )
        )
    return ProfileGroup(group.name, profiles, group.active_index, group.format)


# remapping


def _remap_frames(frames: FrameTable, source_map: SourceMap, generated: set[str]) -> FrameTable:
    matches: dict[object, bool] = {}
    selected = np.zeros(len(frames), bool)
    for index, file in enumerate(frames.file.tolist()):
        match = matches.get(file)
        if match is None:
            match = matches[file] = _file_matches(file, generated)
        selected[index] = match
    selected &= (frames.line >= 1) & (frames.col >= 1)
    rows = np.flatnonzero(selected)
    names = frames.name.copy()
    files = frames.file.copy()
    lines = frames.line.copy()
    cols = frames.col.copy()
    if len(rows) == 0:
        return FrameTable(names, files, lines, cols)
    found = source_map.lookup(frames.line[rows] - 1, frames.col[rows] - 1)
    lines_of_source: dict[int, list[str] | None] = {}
    for row, mapping in zip(rows.tolist(), found.tolist(), strict=True):
        if mapping < 0:
            continue
        source = int(source_map.source[mapping])
        if source < 0:
            continue
        orig_line = int(source_map.orig_line[mapping])
        orig_col = int(source_map.orig_col[mapping])
        name_index = int(source_map.name[mapping])
        if name_index >= 0:
            new_name: str | None = source_map.names[name_index]
        else:
            if source not in lines_of_source:
                content = source_map.sources_content[source]
                lines_of_source[source] = content.split("\n") if content is not None else None
            new_name = _guess_name(lines_of_source[source], orig_line, orig_col)
        names[row] = _choose_name(names[row], new_name)
        files[row] = source_map.sources[source]
        lines[row] = orig_line + 1
        cols[row] = orig_col + 1
    return FrameTable(names, files, lines, cols)


def _file_matches(file: object, generated: set[str]) -> bool:
    if not isinstance(file, str) or not file:
        return False
    path = file.split("#", 1)[0].split("?", 1)[0].replace("\\", "/")
    return any(path == name or path.endswith("/" + name.lstrip("/")) for name in generated)


def _guess_name(lines: list[str] | None, line: int, col: int) -> str | None:
    if lines is None or line >= len(lines):
        return None
    found = IDENTIFIER.search(lines[line], col)
    return found.group(0) if found else None


def _choose_name(old: str, new: str | None) -> str:
    if not new or new in NOT_NAMES or new in old:
        return old
    if new == "constructor":
        return f"{old} constructor"
    return new


def _source_path(root: str, source: str) -> str:
    if root and not URL_PREFIX.match(source) and not source.startswith("/"):
        source = root.rstrip("/") + "/" + source
    return _normalize(source)


def _normalize(path: str) -> str:
    prefix_match = URL_PREFIX.match(path)
    prefix = prefix_match.group(0) if prefix_match else ""
    rest = path[len(prefix) :]
    if not rest or rest in {".", "/"}:
        return path
    trailing = "/" if rest.endswith("/") else ""
    normal = posixpath.normpath(rest)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    return prefix + normal + trailing


# decoding


def _decode_mappings(mappings: str, source_count: int, name_count: int) -> dict[str, np.ndarray]:
    codes = _codes_of(mappings)
    values, starts = _decode_numbers(mappings, codes)
    separators = np.cumsum(codes >= COMMA)
    semicolons = np.cumsum(codes == SEMICOLON)
    # The segment and line of every number: separators before its first character.
    segment_of_number = separators[starts] if len(starts) else np.zeros(0, np.int64)
    first = np.ones(len(starts), bool)
    first[1:] = segment_of_number[1:] != segment_of_number[:-1]
    segment_first = np.flatnonzero(first)
    field_count = np.diff(np.append(segment_first, len(starts)))
    bad = np.flatnonzero((field_count != 1) & (field_count != 4) & (field_count != 5))
    if len(bad):
        position = int(starts[segment_first[bad[0]]])
        raise FormatError(
            TITLE,
            _segment_where(mappings, position),
            f"a segment has 1, 4 or 5 fields, this one has {int(field_count[bad[0]])}",
        )
    segment_start = starts[segment_first]
    gen_line = semicolons[segment_start].astype(np.int64) if len(segment_start) else _ints(0)

    def field(index: int, present: np.ndarray) -> np.ndarray:
        return values[segment_first[present] + index]

    # Generated columns restart at 0 on every line; the other fields run on.
    col_delta = values[segment_first]
    running = np.cumsum(col_delta)
    line_first = np.ones(len(gen_line), bool)
    line_first[1:] = gen_line[1:] != gen_line[:-1]
    before_line = np.where(line_first, running - col_delta, 0)
    line_base = before_line[
        np.maximum.accumulate(np.where(line_first, np.arange(len(gen_line)), 0))
    ]
    gen_col = running - line_base

    has_source = field_count >= 4
    has_name = field_count == 5
    source = np.full(len(gen_line), -1, np.int64)
    orig_line = np.full(len(gen_line), -1, np.int64)
    orig_col = np.full(len(gen_line), -1, np.int64)
    name = np.full(len(gen_line), -1, np.int64)
    source[has_source] = np.cumsum(field(1, has_source))
    orig_line[has_source] = np.cumsum(field(2, has_source))
    orig_col[has_source] = np.cumsum(field(3, has_source))
    name[has_name] = np.cumsum(field(4, has_name))

    checks = (
        (gen_col < 0, "the generated column is negative"),
        (has_source & ((source < 0) | (source >= source_count)), "source index out of range"),
        (has_source & (orig_line < 0), "the original line is negative"),
        (has_source & (orig_col < 0), "the original column is negative"),
        (has_name & ((name < 0) | (name >= name_count)), "name index out of range"),
    )
    for failed, problem in checks:
        wrong = np.flatnonzero(failed)
        if len(wrong):
            detail = _out_of_range_detail(problem, wrong[0], source, name, source_count, name_count)
            raise FormatError(TITLE, _segment_where(mappings, int(segment_start[wrong[0]])), detail)

    order = np.lexsort((name, orig_col, orig_line, source, gen_col, gen_line))
    return {
        "gen_line": gen_line[order],
        "gen_col": gen_col[order],
        "source": source[order],
        "orig_line": orig_line[order],
        "orig_col": orig_col[order],
        "name": name[order],
    }


def _out_of_range_detail(
    problem: str,
    row: int,
    source: np.ndarray,
    name: np.ndarray,
    source_count: int,
    name_count: int,
) -> str:
    if problem.startswith("source"):
        return f"{problem}: {int(source[row])} (the map has {source_count} sources)"
    if problem.startswith("name"):
        return f"{problem}: {int(name[row])} (the map has {name_count} names)"
    return problem


def _codes_of(text: str) -> np.ndarray:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as error:
        raise FormatError(
            TITLE,
            _segment_where(text, error.start),
            f"not a base64 VLQ character: {text[error.start]!r}",
        ) from None
    return _CODES[np.frombuffer(raw, np.uint8)]


def _decode_numbers(text: str, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every VLQ value in `text` (whose `codes` are given) and the position of its first digit."""
    invalid = np.flatnonzero(codes == INVALID)
    if len(invalid):
        position = int(invalid[0])
        raise FormatError(
            TITLE,
            _segment_where(text, position),
            f"not a base64 VLQ character: {text[position]!r}",
        )
    digit_positions = np.flatnonzero(codes < COMMA)
    digits = codes[digit_positions]
    continued = (digits & 32) != 0
    # A digit with the continuation bit must be followed directly by another digit.
    next_position = digit_positions + 1
    is_digit = np.append(codes < COMMA, False)
    open_ended = np.flatnonzero(continued & ~is_digit[next_position])
    if len(open_ended):
        position = int(digit_positions[open_ended[0]])
        raise FormatError(
            TITLE, _segment_where(text, position), "a VLQ value ends with a continuation digit"
        )
    starts_mask = np.ones(len(digits), bool)
    starts_mask[1:] = ~continued[:-1]
    number_first = np.flatnonzero(starts_mask)
    length = np.diff(np.append(number_first, len(digits)))
    too_long = np.flatnonzero(length > MAX_VLQ_DIGITS)
    if len(too_long):
        position = int(digit_positions[number_first[too_long[0]] + MAX_VLQ_DIGITS])
        raise FormatError(
            TITLE,
            _segment_where(text, position),
            f"a VLQ value longer than {MAX_VLQ_DIGITS} digits",
        )
    # Add the digits place by place: most values have one or two.
    payload = digits & 31
    raw = payload[number_first].astype(np.int64)
    longer = np.flatnonzero(length > 1)
    for place in range(1, MAX_VLQ_DIGITS):
        if not len(longer):
            break
        raw[longer] += payload[number_first[longer] + place].astype(np.int64) << (5 * place)
        longer = longer[length[longer] > place + 1]
    values = raw >> 1
    np.negative(values, out=values, where=(raw & 1).astype(bool))
    return values, digit_positions[number_first]


def _segment_where(mappings: str, position: int) -> str:
    line_start = mappings.rfind(";", 0, position) + 1
    segment_start = max(line_start, mappings.rfind(",", 0, position) + 1)
    ends = [i for i in (mappings.find(",", position), mappings.find(";", position)) if i >= 0]
    segment_end = min(ends) if ends else len(mappings)
    line = mappings.count(";", 0, position) + 1
    segment = mappings.count(",", line_start, position) + 1
    text = shorten(mappings[segment_start:segment_end], 40)
    return f"mappings, generated line {line}, segment {segment} ({text})"


def _string_list(document: dict, key: str, *, required: bool) -> list[str]:
    value = document.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise FormatError(TITLE, key, f"expected a list of strings, got {_kind(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            if item is None and key == "sources":
                value[index] = ""
                continue
            raise FormatError(TITLE, f"{key}[{index}]", f"expected a string, got {_kind(item)}")
    return value


def _optional_string(document: dict, key: str) -> str | None:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise FormatError(TITLE, key, f"expected a string, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )


def _ints(size: int) -> np.ndarray:
    return np.zeros(size, np.int64)

"""Reading big JSON documents without building them whole as Python objects.

Two ways, both exact and both falling back (by returning None or False) to
the importer's plain `orjson` reading, which gives the precise errors:

- `ListPieces` reads a document's big lists a piece at a time (below);
- `decode_typed_json` decodes with msgspec into typed structs that name only
  the fields an importer uses, so the rest is skipped without being built.

Reading lists in pieces:

Read whole by orjson, a list of a million numbers becomes a million Python
numbers and a list of rows a million lists more: several times the size of
the text, all alive at once, when an importer wants a few NumPy columns.
`ListPieces` reads such lists in pieces instead and the rest of the document
whole:

1. The importer finds where a list starts, usually with a regular expression
   for its key (``"samples"\\s*:\\s*\\[``), and hands the offset after the
   ``[`` to `ListPieces.read_items` or `ListPieces.read_numbers`. That is only
   a guess: the key might sit inside a string or in another object.
2. The inside of the list is cut at commas into pieces of about
   `PIECE_BYTES`, and each piece is read by orjson on its own as
   ``[piece]``. A cut is only tried where the next item seems to start (after
   ``},`` before ``{"first key"`` for objects, after ``],`` before ``[`` for
   rows, at any comma for numbers); a cut that falls inside an item makes a
   piece that is not JSON, and a later one is tried. The importer turns each
   piece's items into columns and lets the Python objects go. The list ends
   where orjson, reading ``[`` and the text after the last cut, finds it
   closed.
3. `ListPieces.skeleton` reads the rest: the document with the inside of
   every list read in pieces replaced by a marker, a number whose digits
   occur nowhere in the document. The importer then takes what it needs from
   the skeleton and, where the skeleton holds ``[marker]``, what
   `ListPieces.result` kept for that list. A list may sit anywhere (say at
   ``threads[0].samples.data``): the importer walks the skeleton as it would
   walk the whole document and asks `result` about each list it uses.

Why the result is exact: the text replaced by a marker is a run of pieces
joined by single commas, each of which reads as a non-empty run of list
items, so it is itself a valid run of items. Where the skeleton reads as JSON
and holds a marker as the only item of a list, that marker's digits (which
occur once) are that list's whole inside, so putting the pieces back gives
the document again: it is valid JSON and reads as the skeleton with that list
holding the items of the pieces. A marker found anywhere else, or not found,
means the guess was wrong; the importer does not use that list. Whenever a
check fails (a piece or the skeleton is not JSON, a list does not close, a
marker is not where the importer expects it, items the importer does not
take), the importer reads the whole document instead, which also gives its
precise error messages for bad input.
"""

from __future__ import annotations

import bisect
import codecs
import re
from collections.abc import Callable

import msgspec
import numpy as np
import orjson

PIECE_BYTES = 64 * 1024
"""About the size of one piece (orjson's working memory for a piece is several times its size)."""

_SPACE = rb"[ \t\r\n]*"
_SPACE_BYTES = b" \t\r\n"
_FIRST_TOKEN = re.compile(_SPACE + rb"(\{" + _SPACE + rb'("(?:[^"\\]|\\.)*")?|.)', re.DOTALL)
_INTEGER_TEXT = b"0123456789-, \t\r\n"
_FIRST_REACH = 1024
_MARKER_STEM = 731_694_205_836
_MAX_MARKER_DIGITS = 6  # digits after the stem: markers stay below 2**63


def absent_number(data: bytes, start: int = 0) -> int:
    """A number whose digits occur nowhere in ``data[start:]``: a marker for a skeleton."""
    number = _MARKER_STEM
    while data.find(b"%d" % number, start) >= 0:
        number += 1
    return number


def list_opener(key: str) -> re.Pattern[bytes]:
    """A pattern for ``"key": [`` (any white space); a match ends where the list's inside starts."""
    return re.compile(rb'"' + re.escape(key.encode()) + rb'"' + _SPACE + rb":" + _SPACE + rb"\[")


class ListPieces:
    """The lists of one JSON document read in pieces, and then the rest of it (the skeleton).

    Find lists with `find`, read them with `read_items` or `read_numbers`
    (each returns None when a list cannot be read in pieces, and the caller
    reads the whole document instead), then call `skeleton` once and look up
    what was kept for a list with `result`.
    """

    def __init__(self, data: bytes, piece_bytes: int = PIECE_BYTES) -> None:
        self._data: bytes | None = data
        self._piece_bytes = piece_bytes
        self._spans: list[tuple[int, int, object]] = []  # (inside start, index of `]`, result)
        self._starts: list[int] = []  # of the spans, in order, and their ends
        self._ends: list[int] = []
        self._results: dict[int, object] = {}

    def find(self, pattern: re.Pattern[bytes], position: int = 0) -> re.Match[bytes] | None:
        """The first match of `pattern` from `position` on that is neither inside nor the
        opening of a list read so far."""
        data = self._require_data()
        while (found := pattern.search(data, position)) is not None:
            at = bisect.bisect_right(self._starts, found.end()) - 1  # the last list before
            if at < 0 or self._ends[at] <= found.start():
                return found
            position = self._ends[at]
        return None

    def read_items(
        self, start: int, add_items: Callable[[list], bool], result: object = None
    ) -> int | None:
        """Read the list whose inside starts at `start`; the index of its ``]``, or None.

        Each piece's items go to `add_items`, which returns False to refuse
        them (then the reading stops with None). `result` is what `result`
        returns for this list once the skeleton is read.
        """
        data = self._require_data()
        first = _FIRST_TOKEN.match(data, start)
        if first is None:
            return None
        token = first.group(1)
        if token == b"]":
            return self._add_span(start, first.start(1), result)
        if token.startswith(b"{"):
            key = re.escape(first.group(2)) if first.group(2) else b""
            cut = re.compile(rb"\}" + _SPACE + rb",(?=" + _SPACE + rb"\{" + _SPACE + key + rb")")
        elif token == b"[":
            cut = re.compile(rb"\]" + _SPACE + rb",(?=" + _SPACE + rb"\[)")
        else:
            cut = re.compile(rb",")
        position = start
        reach = min(self._piece_bytes, _FIRST_REACH)  # small: many lists are short
        while True:
            window_end = min(position + 2 * reach, len(data))
            found = cut.search(data, position + reach, window_end)
            if found is not None:
                items = _read_piece(data, position, found.end() - 1)
                if items:
                    if not add_items(items):
                        return None
                    position, reach = found.end(), self._piece_bytes
                    continue
            close = _list_close(data, position, window_end)
            if close is not None:
                items = _read_piece(data, position, close)
                if not items or not add_items(items):
                    return None
                return self._add_span(start, close, result)
            if window_end == len(data):
                return None
            reach *= 2

    def read_numbers(self, start: int, integers: bool) -> np.ndarray | None:
        """The numbers of the list whose inside starts at `start`, or None.

        None unless every item is a JSON integer (`integers`) or number, not
        a boolean. Integers are kept as int32 while they fit, then int64, and
        numbers become float64 from the first one with a fraction or an
        exponent on (NumPy converts the integers before it as Python does).
        None too for integers beyond 64 bits.
        """
        data = self._require_data()
        end = data.find(b"]", start)
        if end < 0:
            return None
        result = np.zeros(0, np.int32)
        if _FIRST_TOKEN.match(data, start).start(1) < end:  # not just spaces up to the `]`
            result = self._read_numbers(data, start, end, integers)
            if result is None:
                return None
        self._add_span(start, end, result)
        return result

    def _read_numbers(self, data: bytes, start: int, end: int, integers: bool) -> np.ndarray | None:
        result = np.empty(data.count(b",", start, end) + 1, np.int32)
        done = 0
        position = start
        while position <= end:
            cut = data.find(b",", min(position + self._piece_bytes, end), end)
            cut = end if cut < 0 else cut
            values = _read_piece(data, position, cut)
            if not values or done + len(values) > len(result):
                return None
            array = _number_array(values, data[position:cut], integers)
            if array is None:
                return None
            if array.dtype == np.float64:
                if result.dtype != np.float64:
                    result = result.astype(np.float64)
            elif result.dtype == np.int32 and (array.min() < -(2**31) or array.max() >= 2**31):
                result = result.astype(np.int64)
            result[done : done + len(array)] = array
            done += len(array)
            position = cut + 1
        return result[:done]

    def skeleton(self) -> object:
        """The document with every list read in pieces holding a marker alone; None if that is not JSON.

        Lets go of the document's text (call it once, after the lists are read).
        """
        data = self._require_data()
        self._data = None
        count = len(self._spans)
        digits = len(str(max(count - 1, 0)))
        if digits > _MAX_MARKER_DIGITS:
            return None
        stem = absent_number(data)
        view = memoryview(data)
        parts = []
        done = 0
        for index, (start, end, result) in enumerate(sorted(self._spans, key=lambda s: s[0])):
            if start < done:
                return None  # overlapping lists
            marker = stem * 10**digits + index  # its digits occur nowhere: the stem's do not
            self._results[marker] = result
            parts += [view[done:start], b"%d" % marker]
            done = end
        parts.append(view[done:])
        try:
            return orjson.loads(b"".join(parts))
        except orjson.JSONDecodeError:
            return None
        finally:
            view.release()

    def result(self, value: object) -> object:
        """What was kept for the list read in pieces that `value` (from the skeleton) stands for, else None."""
        if type(value) is list and len(value) == 1 and type(value[0]) is int:
            return self._results.get(value[0])
        return None

    def _require_data(self) -> bytes:
        if self._data is None:
            raise RuntimeError("the skeleton has been read: the document's text is gone")
        return self._data

    def _add_span(self, start: int, end: int, result: object) -> int:
        self._spans.append((start, end, result))
        at = bisect.bisect(self._starts, start)
        self._starts.insert(at, start)
        self._ends.insert(at, end)
        return end


def _read_piece(data: bytes, start: int, end: int) -> list | None:
    """``data[start:end]`` read as the items of a list, or None if they are not valid JSON."""
    with memoryview(data) as view:
        text = b"".join((b"[", view[start:end], b"]"))
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _list_close(data: bytes, start: int, end: int) -> int | None:
    """The index of the ``]`` that closes a list whose items continue at `start`, if it is before `end`.

    orjson reads ``[`` and ``data[start:end]``: where the list closes and
    more text follows, it stops at that text; that a valid run of items is
    before the ``]`` is for the caller to check.
    """
    window = b"[" + data[start:end]
    try:
        orjson.loads(window)
        stop = len(window)  # the window is the rest of the list, closed at its end
    except orjson.JSONDecodeError as error:
        # `pos` counts characters; the window's prefix up to it is whole UTF-8
        stop = len(window.decode("utf-8", "replace")[: error.pos].encode())
        if stop >= len(window):
            return None  # the window ends before the list does
    close = window.rfind(b"]", 0, stop)
    if close > 0 and not window[close + 1 : stop].strip(_SPACE_BYTES):
        return start + close - 1
    return None


def _number_array(values: list, text: bytes, integers: bool) -> np.ndarray | None:
    """`values` (read from `text`) as int64 or float64, or None if one is not a number of that kind."""
    try:
        if not text.translate(None, _INTEGER_TEXT):  # integers only: no need to look at each
            return np.fromiter(values, np.int64, len(values))
        kinds = set(map(type, values))
        if kinds <= {int}:
            return np.fromiter(values, np.int64, len(values))
        if integers or not kinds <= {int, float}:
            return None
        return np.array(values, np.float64)
    except OverflowError:
        return None


_UTF8_CHECK_BYTES = 1 << 20


def decode_typed_json(data: bytes, kind: type) -> object | None:
    """`data` decoded by msgspec as `kind` (skipping what `kind` does not name), or None.

    None for JSON that msgspec refuses or that does not fit `kind`, and for
    text that is not UTF-8 (which msgspec does not check in what it skips):
    the caller then reads the document whole and reports what is wrong.
    """
    if not data.isascii():
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            for start in range(0, len(data), _UTF8_CHECK_BYTES):
                decoder.decode(data[start : start + _UTF8_CHECK_BYTES])
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return None
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.DecodeError, RecursionError):  # ValidationError included; deep nesting
        return None

"""The one error type importers raise for input they cannot read."""

from __future__ import annotations

import orjson


class FormatError(ValueError):
    """Bad or unsupported input: names the format, the place and the problem.

    ``str(error)`` reads like "collapsed stacks, line 12: expected 'stack;frames
    count', got 'abc'", which the command line prints as it is.
    """

    def __init__(self, format_title: str, where: str, problem: str) -> None:
        self.format_title = format_title
        self.where = where
        self.problem = problem
        super().__init__(f"{format_title}, {where}: {problem}")


def shorten(text: str | bytes, limit: int = 60) -> str:
    """A quotable excerpt of offending input for an error message."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def load_json(data: bytes, format_title: str) -> object:
    """The JSON document `data` holds; a `FormatError` naming the line and column if it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise FormatError(format_title, where, f"not valid JSON ({error.msg})") from None

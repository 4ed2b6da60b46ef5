"""The one error type importers raise for input they cannot read."""

from __future__ import annotations


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

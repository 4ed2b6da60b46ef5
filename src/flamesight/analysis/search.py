"""Finding functions by name or file."""

from __future__ import annotations

import re

from flamesight.analysis.top import FunctionWeight, function_weights
from flamesight.model import Profile


def search_frames(
    profile: Profile,
    pattern: str,
    regex: bool = False,
    start: float | None = None,
    end: float | None = None,
) -> list[FunctionWeight]:
    """Functions whose name or file contains `pattern` (case-insensitive), heaviest total first.

    With `regex`, `pattern` is a regular expression searched in the name and
    the file; a bad expression raises ValueError saying what is wrong.
    """
    if regex:
        try:
            matcher = re.compile(pattern, re.IGNORECASE)
        except re.error as error:
            raise ValueError(f"bad regular expression {pattern!r}: {error}") from None
        matches = matcher.search
    else:
        needle = pattern.lower()

        def matches(text: str) -> bool:
            return needle in text.lower()

    selected = profile.slice(start, end) if start is not None or end is not None else profile
    found = [
        f for f in function_weights(selected) if matches(f.name) or (f.file and matches(f.file))
    ]
    found.sort(key=lambda f: (-f.total, -f.self, f.name))
    return found

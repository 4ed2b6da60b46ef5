"""Size caps that keep a hostile or accidental input from exhausting the machine.

The caps are read from a context variable so that `flamesight.formats.load`
(or a server request) can tighten them for one load without threading them
through every parser.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Limits:
    """Caps applied while a profile is read."""

    max_decompressed_bytes: int = 4 * 1024**3
    max_samples: int = 200_000_000
    max_frames: int = 20_000_000

    def check_samples(self, count: int) -> None:
        """Raise `ProfileTooLarge` when `count` samples cross `max_samples`."""
        if count > self.max_samples:
            raise ProfileTooLarge(
                f"more than {self.max_samples:,} samples (raise max_samples to load it)"
            )


class ProfileTooLarge(ValueError):
    """Raised when an input crosses one of the `Limits`."""


_DEFAULT = Limits()
_current: ContextVar[Limits] = ContextVar("flamesight_limits")


def current_limits() -> Limits:
    """The limits in force for the load running in this context."""
    return _current.get(_DEFAULT)


@contextlib.contextmanager
def limits_in_force(limits: Limits | None = None, **overrides: int) -> Iterator[Limits]:
    """Apply `limits` (or the current ones with `overrides`) inside the block."""
    chosen = replace(limits or _current.get(_DEFAULT), **overrides)
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)

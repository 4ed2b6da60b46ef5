"""Secrets that never show: a wrapper with a redacted repr, and scrubbing of text.

Every credential (API key, OAuth client secret, access token) is held in a
`Secret` from the moment it is read. Its `repr` and `str` print `***`, it
refuses to be pickled (so it cannot travel to a job queue or a cache), and
the value is reached only through `reveal()`, which the code calls at the
last moment, when a request header is built.

`scrub` is the second line of defence: any message built from text that
came from outside (an SDK exception, a server's error body) passes through
it before it reaches a person. It replaces the value of every `Secret`
alive in the process, whichever request it belongs to.
"""

from __future__ import annotations

import base64
import threading
import weakref
from collections.abc import Iterable

REDACTED = "***"
_SHORTEST_SCRUBBED = 4

_live_secrets: weakref.WeakSet[Secret] = weakref.WeakSet()
_live_lock = threading.Lock()


class Secret:
    """A credential whose value is never printed, logged or pickled."""

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a secret is a string")
        self._value = value
        with _live_lock:
            _live_secrets.add(self)

    def reveal(self) -> str:
        """The value itself, for the one place that sends it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled: credentials stay in memory")


def basic_auth_value(user: str, secret: Secret) -> str:
    """The base64 form that HTTP Basic auth puts on the wire, for scrubbing."""
    return base64.b64encode(f"{user}:{secret.reveal()}".encode()).decode()


def scrub(text: str, extra: Iterable[Secret | str] = ()) -> str:
    """`text` with the value of every live `Secret`, and of each of `extra`, replaced by `***`."""
    with _live_lock:
        values = {secret.reveal() for secret in _live_secrets}
    values.update(s.reveal() if isinstance(s, Secret) else s for s in extra)
    # Longest first, so a secret containing another is replaced whole.
    usable = (v for v in values if len(v) >= _SHORTEST_SCRUBBED)
    for value in sorted(usable, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text

"""Units of profile weights and the formatters that print them for people."""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum


class Unit(StrEnum):
    """The unit of a profile's time axis and sample weights."""

    NANOSECONDS = "nanoseconds"
    MICROSECONDS = "microseconds"
    MILLISECONDS = "milliseconds"
    SECONDS = "seconds"
    BYTES = "bytes"
    NONE = "none"

    @property
    def is_time(self) -> bool:
        """True for the four time units."""
        return self in _SECONDS_PER_UNIT

    def to_seconds(self, value: float) -> float:
        """Convert a value in this (time) unit to seconds."""
        return value * _SECONDS_PER_UNIT[self]

    def from_seconds(self, seconds: float) -> float:
        """Convert seconds to this (time) unit."""
        return seconds / _SECONDS_PER_UNIT[self]


_SECONDS_PER_UNIT = {
    Unit.NANOSECONDS: 1e-9,
    Unit.MICROSECONDS: 1e-6,
    Unit.MILLISECONDS: 1e-3,
    Unit.SECONDS: 1.0,
}
_DECIMAL_EXPONENT = {
    Unit.NANOSECONDS: -9,
    Unit.MICROSECONDS: -6,
    Unit.MILLISECONDS: -3,
    Unit.SECONDS: 0,
}

_UNIT_ALIASES = {
    "ns": Unit.NANOSECONDS,
    "nanoseconds": Unit.NANOSECONDS,
    "us": Unit.MICROSECONDS,
    "µs": Unit.MICROSECONDS,
    "microseconds": Unit.MICROSECONDS,
    "ms": Unit.MILLISECONDS,
    "milliseconds": Unit.MILLISECONDS,
    "s": Unit.SECONDS,
    "seconds": Unit.SECONDS,
    "b": Unit.BYTES,
    "bytes": Unit.BYTES,
    "none": Unit.NONE,
    "": Unit.NONE,
}


def parse_unit(text: str) -> Unit:
    """Return the unit named by `text` ("ms", "milliseconds", "bytes", ...)."""
    try:
        return _UNIT_ALIASES[text.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown unit {text!r}") from None


def format_value(value: float, unit: Unit) -> str:
    """Format a weight for people: "1.23 ms", "45.6 MB", "1,234 samples"."""
    if unit.is_time:
        return _format_seconds(unit.to_seconds(value))
    if unit is Unit.BYTES:
        return _format_bytes(value)
    if float(value).is_integer():
        return f"{int(value):,} samples"
    return f"{value:,.2f} samples"


def _format_seconds(seconds: float) -> str:
    if seconds == 0:
        return "0 s"
    magnitude = _rounded_magnitude(seconds)
    for scale, suffix in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if magnitude >= scale:
            return f"{_three_digits(seconds / scale)} {suffix}"
    return f"{_three_digits(seconds / 1e-9)} ns"


def _format_bytes(count: float) -> str:
    magnitude = _rounded_magnitude(count)
    for scale, suffix in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if magnitude >= scale:
            return f"{_three_digits(count / scale)} {suffix}"
    return f"{round(count):,} B"


def _rounded_magnitude(number: float) -> float:
    """|number| rounded to three significant digits, so 999.96 picks the next unit up."""
    return abs(float(f"{number:.3g}"))


def _three_digits(number: float) -> str:
    """Three significant digits, no scientific notation: 1.23, 45.6, 789."""
    magnitude = _rounded_magnitude(number)
    if magnitude >= 100:
        return f"{number:,.0f}"
    if magnitude >= 10:
        return f"{number:.1f}"
    return f"{number:.2f}"


_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Zµ]*)\s*$")


def parse_quantity(text: str, unit: Unit) -> float:
    """Parse "1.5s", "200ms", "30us", "10ns" or a bare number into `unit`.

    A bare number is already in `unit`. A time suffix on a profile whose unit
    is not a time is an error, and so is a byte suffix on a time profile.
    """
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"cannot read {text!r} as a time or a quantity (try 1.5s, 200ms, 30us)")
    number = Decimal(match.group(1))
    suffix = match.group(2)
    if not suffix:
        return float(number)
    given = _UNIT_ALIASES.get(suffix.lower())
    if given is None:
        raise ValueError(f"unknown unit {suffix!r} in {text!r} (use s, ms, us or ns)")
    if given.is_time and unit.is_time:
        return float(number.scaleb(_DECIMAL_EXPONENT[given] - _DECIMAL_EXPONENT[unit]))
    if given is unit:
        return float(number)
    raise ValueError(f"{text!r} is in {given.value}, but this profile is in {unit.value}")

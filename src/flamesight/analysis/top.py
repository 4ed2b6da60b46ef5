"""Top functions by self and total weight over a time range."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from flamesight.model import Profile

RankBy = Literal["self", "total"]


@dataclass(frozen=True)
class FunctionWeight:
    """One function (keyed by name and file) and its weights in a range."""

    name: str
    file: str | None
    line: int | None
    self: float
    total: float
    self_pct: float
    total_pct: float


@dataclass(frozen=True)
class TopFunctions:
    """The heaviest functions of a range, with the range and its total weight."""

    profile: str
    unit: str
    total: float
    start: float
    end: float
    functions: list[FunctionWeight]

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data."""
        return asdict(self)


def function_weights(profile: Profile) -> list[FunctionWeight]:
    """Self and total weight of every function (frames merged by name and file)."""
    key_of_frame, keys = profile.frames.function_keys()
    self_weight, total_weight = profile.frame_weights(key_of_frame)
    lines = _first_known_line(profile, key_of_frame, len(keys))
    range_total = profile.total_weight
    scale = 100.0 / range_total if range_total > 0 else 0.0
    return [
        FunctionWeight(
            name=name,
            file=file,
            line=lines[index],
            self=float(self_weight[index]),
            total=float(total_weight[index]),
            self_pct=float(self_weight[index]) * scale,
            total_pct=float(total_weight[index]) * scale,
        )
        for index, (name, file) in enumerate(keys)
    ]


def top_functions(
    profile: Profile,
    by: RankBy = "self",
    n: int | None = 20,
    start: float | None = None,
    end: float | None = None,
) -> TopFunctions:
    """The `n` heaviest functions of `profile` in [start, end), ranked `by` self or total weight."""
    if by not in ("self", "total"):
        raise ValueError(f"rank by 'self' or 'total', not {by!r}")
    selected = profile.slice(start, end) if start is not None or end is not None else profile
    weights = function_weights(selected)
    other = "total" if by == "self" else "self"
    weights.sort(key=lambda f: (-getattr(f, by), -getattr(f, other), f.name))
    ranked = [f for f in weights if f.self > 0 or f.total > 0]
    return TopFunctions(
        profile=profile.name,
        unit=profile.unit.value,
        total=selected.total_weight,
        start=profile.start if start is None else start,
        end=profile.end if end is None else end,
        functions=ranked if n is None else ranked[:n],
    )


def _first_known_line(profile: Profile, key_of_frame: np.ndarray, count: int) -> list[int | None]:
    lines: list[int | None] = [None] * count
    for frame, key in enumerate(key_of_frame.tolist()):
        line = int(profile.frames.line[frame])
        if line >= 0 and (lines[key] is None or line < lines[key]):
            lines[key] = line
    return lines

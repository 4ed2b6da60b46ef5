"""Comparing two profiles, or two time ranges of one, function by function."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from flamesight.analysis.top import RankBy, function_weights
from flamesight.model import Profile

Status = Literal["new", "gone", "changed", "same"]

# Totals closer than this (relative) are compared as they are, not normalised.
NORMALISE_THRESHOLD = 0.01


@dataclass(frozen=True)
class FunctionChange:
    """One function's weight before and after, and how it changed.

    `after` is scaled to the before-total when the diff is normalised, so a
    function that kept its share of the work shows no change.
    """

    name: str
    file: str | None
    before: float
    after: float
    delta: float
    relative: float | None
    before_pct: float
    after_pct: float
    status: Status


@dataclass(frozen=True)
class ProfileDiff:
    """The function-by-function comparison of two profiles or ranges."""

    before: str
    after: str
    unit: str
    by: RankBy
    before_total: float
    after_total: float
    normalised: bool
    functions: list[FunctionChange]

    @property
    def new(self) -> list[FunctionChange]:
        """Functions only in the after side."""
        return [f for f in self.functions if f.status == "new"]

    @property
    def gone(self) -> list[FunctionChange]:
        """Functions only in the before side."""
        return [f for f in self.functions if f.status == "gone"]

    def to_dict(self, limit: int | None = None) -> dict[str, object]:
        """JSON-ready data, the `limit` largest changes only when given."""
        data = asdict(self)
        data["functions"] = data["functions"][:limit]
        data["new"] = [f.name for f in self.new]
        data["gone"] = [f.name for f in self.gone]
        return data


def diff_profiles(
    before: Profile,
    after: Profile,
    by: RankBy = "self",
    normalise: bool | None = None,
) -> ProfileDiff:
    """Compare `after` with `before` by self or total weight per function (name, file).

    `normalise` scales the after side to the before total; by default it is on
    when the two totals differ by more than 1 %.
    """
    if before.unit != after.unit:
        raise ValueError(
            f"cannot compare a profile in {before.unit.value} with one in {after.unit.value}"
        )
    before_total, after_total = before.total_weight, after.total_weight
    if normalise is None:
        larger = max(before_total, after_total)
        normalise = larger > 0 and abs(before_total - after_total) / larger > NORMALISE_THRESHOLD
    scale = before_total / after_total if normalise and after_total > 0 else 1.0
    old = {(f.name, f.file): getattr(f, by) for f in function_weights(before)}
    new = {(f.name, f.file): getattr(f, by) for f in function_weights(after)}
    changes = []
    for key in old.keys() | new.keys():
        was = old.get(key, 0.0)
        now = new.get(key, 0.0) * scale
        if was == 0 and now == 0:
            continue
        status: Status
        if key not in old or was == 0:
            status = "new"
        elif key not in new or now == 0:
            status = "gone"
        else:
            status = "same" if was == now else "changed"
        changes.append(
            FunctionChange(
                name=key[0],
                file=key[1],
                before=was,
                after=now,
                delta=now - was,
                relative=(now - was) / was if was else None,
                before_pct=_pct(was, before_total),
                after_pct=_pct(now, before_total if normalise else after_total),
                status=status,
            )
        )
    changes.sort(key=lambda c: (-abs(c.delta), c.name))
    return ProfileDiff(
        before=before.name,
        after=after.name,
        unit=before.unit.value,
        by=by,
        before_total=before_total,
        after_total=after_total,
        normalised=bool(normalise),
        functions=changes,
    )


def diff_ranges(
    profile: Profile,
    before: tuple[float, float],
    after: tuple[float, float],
    by: RankBy = "self",
    normalise: bool | None = None,
) -> ProfileDiff:
    """Compare two time ranges of one profile."""
    first = profile.slice(*before)
    second = profile.slice(*after)
    unit = profile.format_value
    first.name = f"{profile.name} [{unit(before[0])}, {unit(before[1])})"
    second.name = f"{profile.name} [{unit(after[0])}, {unit(after[1])})"
    return diff_profiles(first, second, by, normalise)


def _pct(value: float, total: float) -> float:
    return 100.0 * value / total if total > 0 else 0.0

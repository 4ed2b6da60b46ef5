"""How the work of a profile group splits over its profiles (threads, processes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from flamesight.analysis.top import top_functions
from flamesight.model import ProfileGroup


@dataclass(frozen=True)
class ProfileShare:
    """One profile of a group: its weight and share of the group's work."""

    index: int
    name: str
    unit: str
    total: float
    samples: int
    share_pct: float | None
    top_function: str | None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready data."""
        return asdict(self)


def profile_breakdown(group: ProfileGroup) -> list[ProfileShare]:
    """Per profile: total weight, sample count, share of the group and heaviest function.

    Shares are of the summed weight of the profiles in the active profile's
    unit; profiles in another unit (say, bytes next to time) get no share.
    """
    unit = group.active.unit
    comparable = sum(p.total_weight for p in group.profiles if p.unit == unit)
    shares = []
    for index, profile in enumerate(group.profiles):
        top = top_functions(profile, n=1).functions
        share = None
        if profile.unit == unit and comparable > 0:
            share = 100.0 * profile.total_weight / comparable
        shares.append(
            ProfileShare(
                index=index,
                name=profile.name,
                unit=profile.unit.value,
                total=profile.total_weight,
                samples=len(profile.samples),
                share_pct=share,
                top_function=top[0].name if top else None,
            )
        )
    return shares

"""The profile data model: frames, stacks, samples, units, profile groups."""

from flamesight.model.limits import Limits, ProfileTooLarge, current_limits, limits_in_force
from flamesight.model.profile import (
    Frame,
    FrameTable,
    Profile,
    ProfileBuilder,
    ProfileGroup,
    Samples,
    StackTable,
    merge_profiles,
)
from flamesight.model.units import Unit, format_value, parse_quantity, parse_unit

__all__ = [
    "Frame",
    "FrameTable",
    "Limits",
    "Profile",
    "ProfileBuilder",
    "ProfileGroup",
    "ProfileTooLarge",
    "Samples",
    "StackTable",
    "Unit",
    "current_limits",
    "format_value",
    "limits_in_force",
    "merge_profiles",
    "parse_quantity",
    "parse_unit",
]

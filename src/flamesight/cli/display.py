"""How the command line prints a profile group and a top-functions result for people."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flamesight.analysis import TopFunctions
from flamesight.model import Profile, ProfileGroup, Unit, format_value

SHORT_PATH_PARTS = 2
"""How many trailing components of a path outside the working directory a table shows."""


def print_info(console: Console, file: str, group: ProfileGroup, format_title: str) -> None:
    """The file's format and one row per profile, the active one marked with '*'."""
    console.print(Text.assemble(("File    ", "bold"), file))
    console.print(Text.assemble(("Format  ", "bold"), f"{format_title} ({group.format})"))
    console.print(Text.assemble(("Name    ", "bold"), group.name))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("profile")
    table.add_column("unit")
    table.add_column("total", justify="right")
    table.add_column("samples", justify="right")
    table.add_column("frames", justify="right")
    table.add_column("start", justify="right")
    table.add_column("end", justify="right")
    for index, profile in enumerate(group.profiles):
        marker = "*" if index == group.active_index else " "
        table.add_row(
            f"{marker}{index}",
            Text(profile.name),
            profile.unit.value,
            profile.format_value(profile.total_weight),
            f"{len(profile.samples):,}",
            f"{len(profile.frames):,}",
            profile.format_value(profile.start),
            profile.format_value(profile.end),
        )
    console.print(table)
    console.print("* the active profile (shown first; `top` uses it unless told otherwise)")


def print_top(
    console: Console, file: str, format_title: str, profile: Profile, result: TopFunctions, by: str
) -> None:
    """A header naming the profile and range, then the ranked functions of `result` as a table."""
    unit = Unit(result.unit)
    console.print(Text.assemble(("Profile  ", "bold"), result.profile))
    console.print(Text.assemble(("File     ", "bold"), f"{file} ({format_title})"))
    console.print(
        Text.assemble(
            ("Range    ", "bold"),
            f"{format_value(result.start, unit)} to {format_value(result.end, unit)}, "
            f"total {format_value(result.total, unit)}; "
            f"top {len(result.functions)} by {by} weight",
        )
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("function", overflow="fold")
    table.add_column("file:line", no_wrap=True, overflow="ellipsis")
    table.add_column("self", justify="right", no_wrap=True)
    table.add_column("self %", justify="right", no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True)
    table.add_column("total %", justify="right", no_wrap=True)
    for function in result.functions:
        table.add_row(
            Text(function.name),
            Text(location(function.file, function.line), style="dim"),
            format_value(function.self, unit),
            f"{function.self_pct:.1f}%",
            format_value(function.total, unit),
            f"{function.total_pct:.1f}%",
        )
    console.print(table)
    if not result.functions:
        console.print(
            f"No samples in this range: {profile.name} runs from "
            f"{profile.format_value(profile.start)} to {profile.format_value(profile.end)}."
        )


def location(file: str | None, line: int | None) -> str:
    """ "file:line" for a table cell, kept short: the file relative to the working directory
    when inside it, else its last two path components (`--json` keeps the full path)."""
    if not file:
        return ""
    shown = file
    path = Path(file)
    if path.is_absolute():
        try:
            shown = str(path.relative_to(Path.cwd()))
        except ValueError:
            if len(path.parts) > SHORT_PATH_PARTS + 1:
                shown = str(Path("…", *path.parts[-SHORT_PATH_PARTS:]))
    return shown if line is None else f"{shown}:{line}"

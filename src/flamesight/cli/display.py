"""How the command line prints a profile group and a top-functions result for people."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flamesight.analysis import CallNode, CallTree, ProfileDiff, TopFunctions
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


TREE_TITLES = {
    "top-down": "top-down call tree",
    "callers": "callers of {function} (inverted: each row calls the row above it)",
    "callees": "callees of {function} (each row is called by the row above it)",
}


def print_tree(
    console: Console,
    file: str,
    format_title: str,
    tree: CallTree,
    start: float,
    end: float,
    min_pct: float,
) -> None:
    """A header naming the profile, range and direction, then the tree as an indented table."""
    unit = Unit(tree.unit)
    console.print(Text.assemble(("Profile  ", "bold"), tree.profile))
    console.print(Text.assemble(("File     ", "bold"), f"{file} ({format_title})"))
    console.print(
        Text.assemble(
            ("Range    ", "bold"),
            f"{format_value(start, unit)} to {format_value(end, unit)}, "
            f"total {format_value(tree.total, unit)}",
        )
    )
    title = TREE_TITLES[tree.direction].format(function=tree.function)
    hidden = f"; nodes of {min_pct:g}% or less left out" if min_pct > 0 else ""
    console.print(Text.assemble(("Showing  ", "bold"), title + hidden))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("total", justify="right", no_wrap=True)
    table.add_column("total %", justify="right", no_wrap=True)
    table.add_column("self", justify="right", no_wrap=True)
    table.add_column("self %", justify="right", no_wrap=True)
    table.add_column("function", overflow="fold")
    table.add_column("file", no_wrap=True, overflow="ellipsis")
    scale = 100.0 / tree.total if tree.total > 0 else 0.0
    pending: list[tuple[CallNode, int]] = [(root, 0) for root in reversed(tree.roots)]
    while pending:
        node, level = pending.pop()
        # Below the function, a callers tree's "self" is where stacks begin, not self time.
        own = level == 0 or tree.direction != "callers"
        table.add_row(
            format_value(node.total, unit),
            f"{node.total * scale:.1f}%",
            format_value(node.self, unit) if own else "",
            f"{node.self * scale:.1f}%" if own else "",
            Text.assemble(("  " * level, ""), node.name),
            Text(location(node.file, None), style="dim"),
        )
        pending.extend((child, level + 1) for child in reversed(node.children))
    console.print(table)
    if not tree.roots:
        console.print("No samples in this range.")


LISTED_NAMES = 12
"""How many new or gone functions the diff table's footer names before "and N more"."""


def print_diff(
    console: Console, files: tuple[str, str], diff: ProfileDiff, limit: int | None
) -> None:
    """Both sides and their totals, then the largest changes per function as a table."""
    unit = Unit(diff.unit)
    for label, file, name, total in (
        ("Before  ", files[0], diff.before, diff.before_total),
        ("After   ", files[1], diff.after, diff.after_total),
    ):
        side = file if name == Path(file).name else f"{name} ({file})"
        console.print(Text.assemble((label, "bold"), f"{side}, total {format_value(total, unit)}"))
    note = (
        "after scaled to the before total (the totals differ)"
        if diff.normalised
        else "weights as measured"
    )
    console.print(Text.assemble(("Compared ", "bold"), f"{diff.by} weight per function; {note}"))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("function", overflow="fold")
    table.add_column("file", no_wrap=True, overflow="ellipsis")
    table.add_column("before", justify="right", no_wrap=True)
    table.add_column("after", justify="right", no_wrap=True)
    table.add_column("change", justify="right", no_wrap=True)
    table.add_column("change %", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    changed = [change for change in diff.functions if change.status != "same"]
    shown = changed[:limit]
    for change in shown:
        sign = "+" if change.delta > 0 else "-" if change.delta < 0 else ""
        relative = "" if change.relative is None else f"{100.0 * change.relative:+.1f}%"
        table.add_row(
            Text(change.name),
            Text(location(change.file, None), style="dim"),
            format_value(change.before, unit),
            format_value(change.after, unit),
            sign + format_value(abs(change.delta), unit),
            relative,
            change.status,
        )
    if changed:
        console.print(table)
    notes = []
    if len(shown) < len(changed):
        notes.append(f"{len(changed) - len(shown)} smaller changes not shown (-n 0 shows all)")
    if len(changed) < len(diff.functions):
        notes.append(f"{len(diff.functions) - len(changed)} functions unchanged")
    if not changed:
        notes.insert(0, "No function changed")
    if notes:
        console.print("; ".join(notes) + ".")
    for label, functions in (("New", diff.new), ("Gone", diff.gone)):
        if functions:
            listed = functions if limit is None else functions[: max(limit, LISTED_NAMES)]
            names = ", ".join(f.name for f in listed)
            if len(listed) < len(functions):
                names += f" and {len(functions) - len(listed)} more"
            console.print(Text.assemble((f"{label} ({len(functions)}): ", "bold"), names))

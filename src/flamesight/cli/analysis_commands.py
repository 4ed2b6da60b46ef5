"""The analysis commands: `summary`, `tree`, `diff` and `render`.

They register on the `main` group of `flamesight.cli.commands` and reuse its
helpers (loading, choosing a profile, reading times, printing JSON), so they
behave like `info` and `top`: bad input is reported on stderr with exit
status 2 and no traceback, and times take units ("1.5s", "200ms").
"""

from __future__ import annotations

from pathlib import Path

import click

from flamesight.analysis import (
    CallNode,
    CallTree,
    call_tree,
    callees,
    callers,
    diff_profiles,
    diff_ranges,
    search_frames,
    summary,
)
from flamesight.analysis.summary import MIN_BUDGET
from flamesight.cli.commands import (
    InputError,
    OutputError,
    choose_profile,
    format_title,
    input_file,
    load_group,
    main,
    parse_range,
    parse_time,
    print_json,
    profile_options,
    range_options,
    source_map_option,
    stdout_console,
)
from flamesight.cli.display import print_diff, print_tree
from flamesight.model import Profile, ProfileGroup
from flamesight.render import COLOR_BY, IMAGE_FORMATS, MAX_SIDE, MIN_WIDTH, THEMES, VIEWS
from flamesight.render import render_flamegraph as draw

SUGGESTIONS = 5
"""How many similar function names an unknown --function is answered with."""


def unknown_function(profile: Profile, function: str, error: LookupError) -> InputError:
    """The error for a --function the profile does not have, naming functions like it."""
    message = str(error)
    if "did you mean" not in message:
        similar = [f.name for f in search_frames(profile, function)]
        similar = list(dict.fromkeys(similar))[:SUGGESTIONS]
        if similar:
            message += f"; did you mean {', '.join(repr(name) for name in similar)}?"
    return InputError(f"{message} (`flamesight top FILE -n 0` lists every function)")


# --- summary -----------------------------------------------------------------


@main.command("summary", no_args_is_help=True)
@input_file
@range_options
@click.option(
    "--budget",
    type=click.IntRange(min=MIN_BUDGET),
    metavar="N",
    default=2000,
    show_default=True,
    help="Most tokens the summary may take (estimated offline, pessimistically).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["markdown", "json"]),
    default="markdown",
    show_default=True,
    help="Print the Markdown rendering or the JSON document.",
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@profile_options
@source_map_option
def summary_command(
    file: str,
    start: str | None,
    end: str | None,
    budget: int,
    output_format: str,
    as_json: bool,
    selector: str | None,
    merge: bool,
    source_maps: tuple[str, ...],
) -> None:
    """Print the summary of FILE that a language model reads, within a token budget.

    It names the range, the top functions by self and total weight, the
    heaviest call paths, a timeline, the threads and notable patterns (idle
    time, garbage collection, deep recursion, one dominating function).
    Rows are left out, least important first, until it fits --budget.
    JSON is printed compact, as the budget counts it.
    """
    as_json = as_json or output_format == "json"
    group = load_group(file, show_progress=not as_json, source_maps=source_maps)
    profile = choose_profile(group, selector, merge)
    start_value, end_value = parse_range(profile, start, end)
    if merge:
        source = ProfileGroup(group.name, [profile], 0, group.format)
        index = 0
    else:
        source = group
        index = next(i for i, p in enumerate(group.profiles) if p is profile)
    try:
        result = summary(source, start_value, end_value, budget, profile=index)
    except ValueError as error:
        raise InputError(str(error)) from None
    if as_json:
        click.echo(result.json())
    else:
        click.echo(result.markdown, nl=False)


# --- tree --------------------------------------------------------------------


@main.command(no_args_is_help=True)
@input_file
@click.option(
    "-f",
    "--function",
    metavar="NAME",
    help='Show the callers or callees of this function ("name" or "name (file)").',
)
@click.option(
    "--callers",
    "direction",
    flag_value="callers",
    help="With --function: who calls it (the inverted tree above it).",
)
@click.option(
    "--callees",
    "direction",
    flag_value="callees",
    help="With --function: what it calls (the tree below it; the default).",
)
@click.option(
    "--depth",
    type=click.IntRange(min=1),
    metavar="N",
    help="Show at most N levels (default: all).",
)
@click.option(
    "--min-pct",
    type=click.FloatRange(min=0, max=100),
    metavar="P",
    default=0.5,
    show_default=True,
    help="Leave out nodes that carry P percent of the range or less (0 keeps all).",
)
@range_options
@profile_options
@source_map_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a tree.")
def tree(
    file: str,
    function: str | None,
    direction: str | None,
    depth: int | None,
    min_pct: float,
    start: str | None,
    end: str | None,
    selector: str | None,
    merge: bool,
    source_maps: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show the call tree of FILE, or the callers or callees of one function.

    Without --function: the top-down tree, merged by function. With it: the
    tree below the function (--callees, the default) or the inverted tree
    of its callers (--callers), all its call sites merged, recursion counted
    once per stack.
    """
    if direction is not None and function is None:
        raise click.UsageError(f"--{direction} needs --function NAME")
    group = load_group(file, show_progress=not as_json, source_maps=source_maps)
    profile = choose_profile(group, selector, merge)
    start_value, end_value = parse_range(profile, start, end)
    if function is None:
        result = call_tree(profile, depth, start_value, end_value, min_pct)
    else:
        build = callers if direction == "callers" else callees
        try:
            result = build(profile, function, depth, start_value, end_value)
        except LookupError as error:
            raise unknown_function(profile, function, error) from None
        prune(result, min_pct)
    lo = profile.start if start_value is None else start_value
    hi = profile.end if end_value is None else end_value
    if as_json:
        print_json(
            {"format": group.format, "start": lo, "end": hi, "min_pct": min_pct, **result.to_dict()}
        )
    else:
        print_tree(stdout_console(), file, format_title(group), result, lo, hi, min_pct)


def prune(tree: CallTree, min_pct: float) -> None:
    """Drop the nodes below the roots that carry `min_pct` percent of the range or less."""
    if min_pct <= 0:
        return
    floor = tree.total * min_pct / 100.0
    pending: list[CallNode] = list(tree.roots)
    while pending:
        node = pending.pop()
        node.children = [child for child in node.children if child.total > floor]
        pending.extend(node.children)


# --- diff --------------------------------------------------------------------


def parse_span(text: str, profile: Profile) -> tuple[float, float]:
    """A --range value "START:END" in the profile's unit; an empty side is the profile's edge."""
    if text.count(":") != 1:
        raise click.BadParameter(
            f"{text!r} is not START:END (for example 0:1s or 200ms:1.5s)", param_hint="'--range'"
        )
    left, right = (side.strip() for side in text.split(":"))
    start = parse_time(left, profile, "--range") if left else profile.start
    end = parse_time(right, profile, "--range") if right else profile.end
    assert start is not None and end is not None
    if end <= start:
        raise click.BadParameter(
            f"in {text!r} the end is not after the start", param_hint="'--range'"
        )
    return start, end


@main.command(no_args_is_help=True)
@click.argument(
    "files",
    nargs=-1,
    required=True,
    metavar="A [B]",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=str),
)
@click.option(
    "--range",
    "ranges",
    metavar="START:END",
    multiple=True,
    help="A time range of one FILE, such as 0:1s; give it twice to compare the two ranges.",
)
@click.option(
    "--by",
    type=click.Choice(["self", "total"]),
    default="self",
    show_default=True,
    help="Compare self weight (time in the function itself) or total (including callees).",
)
@click.option(
    "--normalise/--no-normalise",
    default=None,
    help="Scale the after side to the before total "
    "(default: when the totals differ by more than 1%).",
)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=0),
    metavar="N",
    default=20,
    show_default=True,
    help="How many of the largest changes to show (0 for all).",
)
@profile_options
@source_map_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def diff(
    files: tuple[str, ...],
    ranges: tuple[str, ...],
    by: str,
    normalise: bool | None,
    limit: int,
    selector: str | None,
    merge: bool,
    source_maps: tuple[str, ...],
    as_json: bool,
) -> None:
    """Compare two profiles (A B), or two time ranges of one (FILE --range 0:1s --range 2s:3s).

    Function by function: the weight before and after, the change, the
    relative change, and the functions that are new or gone. When the two
    totals differ, the after side is scaled to the before total, so a
    function that kept its share shows no change.
    """
    if ranges:
        if len(ranges) != 2 or len(files) != 1:
            raise click.UsageError("compare two ranges of one file: FILE --range A:B --range C:D")
        group = load_group(files[0], show_progress=not as_json, source_maps=source_maps)
        profile = choose_profile(group, selector, merge)
        before_range, after_range = (parse_span(text, profile) for text in ranges)
        result = diff_ranges(profile, before_range, after_range, by, normalise)
        labels = (files[0], files[0])
    else:
        if len(files) != 2:
            raise click.UsageError(
                "give two files (A B), or one file and two --range options to compare"
            )
        before_group, after_group = (
            load_group(f, show_progress=not as_json, source_maps=source_maps) for f in files
        )
        before = choose_profile(before_group, selector, merge)
        after = choose_profile(after_group, selector, merge)
        try:
            result = diff_profiles(before, after, by, normalise)
        except ValueError as error:
            raise InputError(str(error)) from None
        labels = (files[0], files[1])
    if as_json:
        print_json(
            {"before_file": labels[0], "after_file": labels[1], **result.to_dict(limit or None)}
        )
    else:
        print_diff(stdout_console(), labels, result, limit or None)


# --- render ------------------------------------------------------------------


@main.command(no_args_is_help=True)
@input_file
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="The image to write: a .png or .svg file name.",
)
@click.option(
    "--view",
    type=click.Choice(VIEWS),
    help="flamegraph (merged, heaviest left), flamechart (time order) or sandwich "
    "(callers above --function, callees below). Default: sandwich with --function, "
    "else flamegraph.",
)
@click.option(
    "-f",
    "--function",
    metavar="NAME",
    help='The function of the sandwich view ("name" or "name (file)").',
)
@click.option(
    "--width",
    type=click.IntRange(MIN_WIDTH, MAX_SIDE),
    default=1200,
    show_default=True,
    help="Image width in pixels.",
)
@click.option(
    "--height",
    type=click.IntRange(1, MAX_SIDE),
    help="Image height in pixels; deeper rows are cut (default: as deep as the stacks, capped).",
)
@range_options
@click.option(
    "--start-depth",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Hide the N shallowest rows (flame graph and flame chart).",
)
@click.option(
    "--theme", type=click.Choice(list(THEMES)), default="light", show_default=True, help="Colours."
)
@click.option(
    "--color-by",
    type=click.Choice(COLOR_BY),
    default="name",
    show_default=True,
    help="Colour frames by a stable hash of their name, file or package (the file's folder).",
)
@click.option("--title", help="The title above the frames (default: profile, view and extent).")
@profile_options
@source_map_option
def render(
    file: str,
    output: str,
    view: str | None,
    function: str | None,
    width: int,
    height: int | None,
    start: str | None,
    end: str | None,
    start_depth: int,
    theme: str,
    color_by: str,
    title: str | None,
    selector: str | None,
    merge: bool,
    source_maps: tuple[str, ...],
) -> None:
    """Draw FILE as a flame graph, flame chart or sandwich, to a PNG or SVG image."""
    image_format = Path(output).suffix.lower().lstrip(".")
    if image_format not in IMAGE_FORMATS:
        raise click.BadParameter(
            f"cannot tell the image format of {output!r}: use a .png or .svg name",
            param_hint="'-o'",
        )
    chosen_view = view or ("sandwich" if function is not None else "flamegraph")
    if chosen_view == "sandwich" and function is None:
        raise click.UsageError("the sandwich view needs --function NAME")
    if function is not None and chosen_view != "sandwich":
        raise click.UsageError(f"--function is shown by the sandwich view, not the {chosen_view}")
    group = load_group(file, show_progress=True, source_maps=source_maps)
    profile = choose_profile(group, selector, merge)
    start_value, end_value = parse_range(profile, start, end)
    try:
        image = draw(
            profile,
            image_format,
            view=chosen_view,  # type: ignore[arg-type]
            function=function,
            width=width,
            height=height,
            start=start_value,
            end=end_value,
            start_depth=start_depth,
            theme=theme,
            color_by=color_by,  # type: ignore[arg-type]
            title=title,
        )
    except LookupError as error:
        raise unknown_function(profile, function or "", error) from None
    except ValueError as error:
        raise InputError(str(error)) from None
    try:
        Path(output).write_bytes(image)
    except OSError as error:
        raise OutputError(f"cannot write {output}: {error.strerror or error}") from None
    shown = {"flamegraph": "flame graph", "flamechart": "flame chart"}.get(
        chosen_view, f"sandwich of {function}"
    )
    click.echo(
        f"Wrote {output}: {shown}, profile {profile.name}, {width} px wide "
        f"({image_format.upper()}, {len(image):,} bytes)"
    )

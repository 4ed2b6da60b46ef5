"""The `flamesight` command: `info`, `top` and `convert`.

The commands only read flags, call `flamesight.formats`, `flamesight.model`
and `flamesight.analysis`, and print. Bad input (a file flamesight cannot read,
an unknown profile, a time it cannot parse) is reported on stderr with exit
status 2 and no traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import click
import orjson
from rich.console import Console

from flamesight import __version__
from flamesight.analysis import top_functions
from flamesight.cli.display import print_info, print_top
from flamesight.cli.progress import LoadProgress
from flamesight.formats import FormatError, format_modules, load
from flamesight.model import Profile, ProfileGroup, merge_profiles, parse_quantity

PIPE_WIDTH = 160
"""Table width when stdout is not a terminal (and COLUMNS is not set)."""


class InputError(click.ClickException):
    """Input flamesight cannot use: printed as 'Error: ...', exit status 2."""

    exit_code = 2


class OutputError(click.ClickException):
    """The result could not be written: printed as 'Error: ...', exit status 1."""

    exit_code = 1


def stdout_console() -> Console:
    """A console for results on stdout: terminal width on a terminal, wide otherwise."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=PIPE_WIDTH)
    return console


def load_group(file: str, *, show_progress: bool, source_maps: Sequence[str] = ()) -> ProfileGroup:
    """Load `file`, with a progress bar on stderr when asked and stderr is a terminal.

    Each of `source_maps` (JavaScript `.map` files) then remaps the frames of
    the script it was made for.
    """
    try:
        if show_progress and sys.stderr.isatty():
            with LoadProgress(Console(stderr=True)) as progress:
                group = load(file, progress=progress)
        else:
            group = load(file)
    except FormatError as error:
        raise InputError(f"cannot read {file}: {error}") from None
    return apply_source_maps(group, source_maps)


def apply_source_maps(group: ProfileGroup, source_maps: Sequence[str]) -> ProfileGroup:
    """`group` with each of the `source_maps` files applied in turn."""
    from flamesight.formats.source_map import apply_source_map

    for map_file in source_maps:
        try:
            data = Path(map_file).read_bytes()
        except OSError as error:
            raise InputError(f"cannot read {map_file}: {error.strerror or error}") from None
        try:
            group = apply_source_map(group, data, map_name=Path(map_file).name)
        except (FormatError, ValueError) as error:
            raise InputError(f"cannot use source map {map_file}: {error}") from None
    return group


def format_title(group: ProfileGroup) -> str:
    """What people call the format the group was read from."""
    for module in format_modules():
        if group.format == module.NAME:
            return module.TITLE
    return group.format


def choose_profile(group: ProfileGroup, selector: str | None, merge: bool) -> Profile:
    """The profile a command uses: the active one, one named or numbered, or all merged."""
    if merge and selector is not None:
        raise click.UsageError("use either --profile or --merge, not both")
    if merge:
        try:
            return merge_profiles(
                group.profiles, name=f"{group.name} (all {len(group.profiles)} profiles)"
            )
        except ValueError as error:
            raise InputError(f"cannot merge the profiles of this file: {error}") from None
    if selector is None:
        return group.active
    for profile in group.profiles:
        if profile.name == selector:
            return profile
    if selector.isdigit() and int(selector) < len(group.profiles):
        return group.profiles[int(selector)]
    choices = "; ".join(f"{index}: {p.name!r}" for index, p in enumerate(group.profiles))
    raise click.BadParameter(
        f"no profile named or numbered {selector!r}; this file has {choices}",
        param_hint="'--profile'",
    )


def parse_time(text: str | None, profile: Profile, option: str) -> float | None:
    """A --start/--end value in the profile's unit ("1.5s", "200ms", or a bare number)."""
    if text is None:
        return None
    try:
        return parse_quantity(text, profile.unit)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=f"'{option}'") from None


def range_options(command: click.Command) -> click.Command:
    """Add --start and --end (a time range of the profile) to `command`."""
    command = click.option(
        "--end", metavar="T", help="End of the range (exclusive), same forms as --start."
    )(command)
    return click.option(
        "--start",
        metavar="T",
        help="Start of the range: 1.5s, 200ms, 30us, 10ns, or a number in the profile's unit.",
    )(command)


def profile_options(command: click.Command) -> click.Command:
    """Add --profile and --merge (which profile of the file to use) to `command`."""
    command = click.option(
        "--merge",
        is_flag=True,
        help="Merge all profiles of the file (threads, processes) into one.",
    )(command)
    return click.option(
        "--profile",
        "selector",
        metavar="NAME|INDEX",
        help="The profile to use, by name or by its number in `flamesight info` "
        "(default: the active one).",
    )(command)


def source_map_option(command: click.Command) -> click.Command:
    """Add --source-map (repeatable: JavaScript source maps to remap frames with) to `command`."""
    return click.option(
        "--source-map",
        "source_maps",
        multiple=True,
        metavar="FILE",
        type=click.Path(exists=True, dir_okay=False, readable=True, path_type=str),
        help="A JavaScript source map (.map) of a bundle in the profile: frames of that "
        "bundle get their original names, files and lines. Repeatable.",
    )(command)


def parse_range(
    profile: Profile, start: str | None, end: str | None
) -> tuple[float | None, float | None]:
    """--start and --end in the profile's unit; the end must come after the start."""
    start_value = parse_time(start, profile, "--start")
    end_value = parse_time(end, profile, "--end")
    if start_value is not None and end_value is not None and end_value <= start_value:
        raise click.BadParameter(f"{end!r} is not after --start {start!r}", param_hint="'--end'")
    return start_value, end_value


def print_json(document: object) -> None:
    """One JSON document on stdout."""
    click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


input_file = click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=str)
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="flamesight")
def main() -> None:
    """flamesight: read a performance profile and show where the time goes."""


@main.command(no_args_is_help=True)
@input_file
@source_map_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def info(file: str, source_maps: tuple[str, ...], as_json: bool) -> None:
    """Show the detected format and every profile in FILE."""
    group = load_group(file, show_progress=not as_json, source_maps=source_maps)
    title = format_title(group)
    if not as_json:
        print_info(stdout_console(), file, group, title)
        return
    print_json(
        {
            "file": file,
            "format": group.format,
            "format_title": title,
            "name": group.name,
            "active_index": group.active_index,
            "profiles": [
                {
                    "index": index,
                    "name": profile.name,
                    "active": index == group.active_index,
                    "unit": profile.unit.value,
                    "sampled": profile.sampled,
                    "total": profile.total_weight,
                    "samples": len(profile.samples),
                    "frames": len(profile.frames),
                    "start": profile.start,
                    "end": profile.end,
                }
                for index, profile in enumerate(group.profiles)
            ],
        }
    )


@main.command(no_args_is_help=True)
@input_file
@click.option(
    "--by",
    type=click.Choice(["self", "total"]),
    default="self",
    show_default=True,
    help="Rank by self weight (time in the function itself) or total (including callees).",
)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=0),
    metavar="N",
    default=20,
    show_default=True,
    help="How many functions to show (0 for all).",
)
@range_options
@profile_options
@source_map_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def top(
    file: str,
    by: str,
    limit: int,
    start: str | None,
    end: str | None,
    selector: str | None,
    merge: bool,
    source_maps: tuple[str, ...],
    as_json: bool,
) -> None:
    """List the heaviest functions in FILE by self or total weight.

    The active profile is used unless --profile or --merge says otherwise;
    --start and --end narrow it to a time range.
    """
    group = load_group(file, show_progress=not as_json, source_maps=source_maps)
    profile = choose_profile(group, selector, merge)
    start_value, end_value = parse_range(profile, start, end)
    result = top_functions(profile, by, limit or None, start_value, end_value)
    if as_json:
        print_json({"format": group.format, **result.to_dict()})
    else:
        print_top(stdout_console(), file, format_title(group), profile, result, by)


@main.command(no_args_is_help=True)
@input_file
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="Where to write the speedscope JSON file ('-' for stdout).",
)
@source_map_option
def convert(file: str, output: str, source_maps: tuple[str, ...]) -> None:
    """Convert FILE to speedscope JSON.

    The result opens in speedscope (https://www.speedscope.app) and loads back
    into flamesight with the same numbers.
    """
    from flamesight.formats.speedscope import export

    group = load_group(file, show_progress=True, source_maps=source_maps)
    document = export(group)
    if output == "-":
        sys.stdout.buffer.write(document)
        sys.stdout.buffer.flush()
        return
    try:
        Path(output).write_bytes(document)
    except OSError as error:
        raise OutputError(f"cannot write {output}: {error.strerror or error}") from None
    count = len(group.profiles)
    click.echo(
        f"Wrote {output}: {count} profile{'s' if count != 1 else ''} as speedscope JSON "
        f"({len(document):,} bytes)"
    )

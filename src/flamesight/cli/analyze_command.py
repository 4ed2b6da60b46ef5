"""`flamesight analyze`: ask a language model about a time range of one or more profiles.

The command reads flags, then hands everything to `flamesight.llm`: endpoint
settings (`load_settings`), credentials (`resolve_auth`), the prompt
(`resolve_prompt`), the one-shot analysis (`analyze`) and the Markdown report
(`render_report`). It adds only what a terminal needs: the answer streamed as
it arrives (rendered Markdown on a terminal, plain text otherwise), one report
file per input file, `--json`, and exit statuses a CI pipeline can act on.

Credentials are never printed: the API key or client secret lives in the
`Secret` wrappers of `flamesight.llm`, every message from that package is
already scrubbed of them, and what this command writes (the answer, the
report, the JSON) is scrubbed once more.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import click
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.rule import Rule

from flamesight.cli.commands import (
    OutputError,
    choose_profile,
    load_group,
    main,
    parse_range,
    print_json,
    profile_options,
    range_options,
    source_map_option,
    stdout_console,
)
from flamesight.cli.llm_options import endpoint_options
from flamesight.llm import (
    PAYLOADS,
    PRESETS,
    AnalysisResult,
    Auth,
    EndpointOptions,
    Failure,
    LLMError,
    Prompt,
    Settings,
    analyze,
    load_settings,
    render_report,
    resolve_auth,
    resolve_prompt,
    scrub,
)
from flamesight.model import ProfileGroup

REPORT_SUFFIX = ".analysis.md"
"""Appended to an input file's name to name its report: `app.json` -> `app.json.analysis.md`."""

EXIT_FAILED = 1
"""The model endpoint or the token endpoint failed, or a report could not be written."""
EXIT_INPUT = 2
"""Bad input: a file flamesight cannot read, a bad range, flags or settings that do not work."""

INPUT_FAILURES = frozenset({Failure.CONFIG, Failure.RANGE, Failure.PAYLOAD})
"""Failures of `flamesight.llm` that are the input's or the settings' fault (exit status 2)."""

ENDPOINT_FAILURES = frozenset(
    {
        Failure.CONFIG,
        Failure.CONNECT,
        Failure.UNAUTHORIZED,
        Failure.FORBIDDEN,
        Failure.NOT_FOUND,
        Failure.TOKEN_ENDPOINT,
    }
)
"""Failures that would repeat for every file: a batch stops at the first one."""

_PRESET_HELP = "; ".join(f"{p.number} {p.name}: {p.text}" for p in PRESETS)


@dataclass(frozen=True)
class Job:
    """One input file and where its report goes."""

    file: str
    report: Path


@dataclass(frozen=True)
class Outcome:
    """What became of one file: its result, or the message and exit status of its failure."""

    job: Job
    result: AnalysisResult | None = None
    error: str | None = None
    failure: str | None = None
    exit_code: int = 0


class StopBatch(Exception):
    """A failure that every remaining file would meet too."""


# showing the answer


class PlainAnswer:
    """The answer as plain text on stdout, each piece written as it arrives."""

    def __init__(self, auth: Auth) -> None:
        self._auth = auth
        self._last = "\n"

    def heading(self, file: str) -> None:
        """The separator before a file's answer in batch mode, as `head` prints it."""
        click.echo(f"==> {file} <==")

    def __enter__(self) -> PlainAnswer:
        self._last = "\n"
        return self

    def __call__(self, piece: str) -> None:
        text = scrub(piece, self._auth.secrets())
        if text:
            click.echo(text, nl=False)
            self._last = text[-1]

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._last != "\n":
            click.echo()


class MarkdownAnswer:
    """The answer rendered as Markdown on a terminal while it streams.

    Finished blocks (paragraphs, lists, code blocks: text up to a blank line
    outside a code fence) are printed once, for good; only the block still
    arriving is redrawn live, so answers taller than the screen scroll
    normally instead of being redrawn in full.
    """

    def __init__(self, console: Console, auth: Auth) -> None:
        self._console = console
        self._auth = auth
        self._pending = ""
        self._live: Live | None = None

    def heading(self, file: str) -> None:
        """A rule naming the file before its answer in batch mode."""
        self._console.print(Rule(file))

    def __enter__(self) -> MarkdownAnswer:
        self._pending = ""
        self._live = Live(
            console=self._console,
            refresh_per_second=10,
            transient=True,
            vertical_overflow="visible",
        )
        self._live.start()
        return self

    def __call__(self, piece: str) -> None:
        self._pending += piece
        done, self._pending = split_finished_blocks(self._pending)
        assert self._live is not None
        if done.strip():
            self._live.console.print(self._markdown(done))
        self._live.update(self._markdown(self._pending))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._pending.strip():
            self._console.print(self._markdown(self._pending))
        self._pending = ""

    def _markdown(self, text: str) -> Markdown:
        return Markdown(scrub(text, self._auth.secrets()))


def split_finished_blocks(text: str) -> tuple[str, str]:
    """`text` split after its last blank line outside a code fence: (finished, still arriving)."""
    in_fence = False
    boundary = 0
    position = 0
    seen_content = False
    for line in text.splitlines(keepends=True):
        position += len(line)
        if not line.endswith("\n"):
            break
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
        if stripped:
            seen_content = True
        elif not in_fence and seen_content:
            boundary = position
    return text[:boundary], text[boundary:]


# choosing where reports go


def plan_jobs(files: Sequence[str], output: str | None) -> list[Job]:
    """Each file with its report path (see the command's help); clashing paths are refused."""
    if output is None:
        jobs = [Job(file, Path(file + REPORT_SUFFIX)) for file in files]
    else:
        target = Path(output)
        names_directory = output.endswith(("/", os.sep)) or target.is_dir()
        if len(files) == 1 and not names_directory:
            jobs = [Job(files[0], target)]
        else:
            if target.exists() and not target.is_dir():
                raise click.BadParameter(
                    f"{output} is a file; with several input files --output names a directory "
                    f"that gets one <file>{REPORT_SUFFIX} report per input file",
                    param_hint="'--output'",
                )
            jobs = [Job(file, target / (Path(file).name + REPORT_SUFFIX)) for file in files]
    claimed: dict[Path, str] = {}
    for job in jobs:
        key = job.report.resolve()
        if key in claimed:
            raise click.BadParameter(
                f"{claimed[key]} and {job.file} would both write {job.report}; "
                "give each file once, or analyse files of the same name in separate runs",
                param_hint="'FILE...'",
            )
        if key == Path(job.file).resolve():
            raise click.BadParameter(
                f"the report would overwrite the input file {job.file}", param_hint="'--output'"
            )
        claimed[key] = job.file
    return jobs


# the command


@main.command("analyze", no_args_is_help=True)
@click.argument(
    "files",
    metavar="FILE...",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=str),
)
@range_options
@click.option(
    "--preset",
    metavar="N|NAME",
    help=f"One of the six sample prompts, by number or name, or a template of the config file "
    f"(default: 1). {_PRESET_HELP}.",
)
@click.option("--prompt", "prompt_text", metavar="TEXT", help="Ask this instead of a preset.")
@endpoint_options
@click.option(
    "--payload",
    type=click.Choice(PAYLOADS),
    default="summary",
    show_default=True,
    help="The data sent: flamesight's budgeted summary of the range, or the range itself "
    "as speedscope JSON (refused when it would not fit).",
)
@click.option(
    "--budget",
    metavar="N",
    type=click.IntRange(min=1),
    help="Tokens the profile data may take (default: from the model's context, else 6000).",
)
@click.option("--no-stream", is_flag=True, help="Ask for the whole answer at once.")
@click.option(
    "-o",
    "--output",
    metavar="PATH",
    help=f"Where the report goes. One FILE: this file (or, for a directory, "
    f"DIR/<file name>{REPORT_SUFFIX}). Several: a directory (created when missing) that gets "
    f"one <file name>{REPORT_SUFFIX} each. Default: <FILE>{REPORT_SUFFIX} beside each FILE.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object (answer, model, usage, range, report path) instead of the "
    'streamed answer; several files give {"analyses": [...]}.',
)
@profile_options
@source_map_option
@click.pass_context
def analyze_command(
    ctx: click.Context,
    files: tuple[str, ...],
    start: str | None,
    end: str | None,
    preset: str | None,
    prompt_text: str | None,
    url: str | None,
    model: str | None,
    provider: str | None,
    endpoint: str | None,
    api_key_env: str | None,
    api_key: str | None,
    oauth_file: Path | None,
    oauth_token_url: str | None,
    client_id: str | None,
    client_secret_env: str | None,
    oauth_scope: str | None,
    no_auth: bool,
    payload: str,
    budget: int | None,
    max_tokens: int | None,
    temperature: float | None,
    timeout: float | None,
    max_retries: int | None,
    no_stream: bool,
    config_path: Path | None,
    output: str | None,
    as_json: bool,
    selector: str | None,
    merge: bool,
    source_maps: tuple[str, ...],
) -> None:
    """Ask a language model about a time range of each FILE and write a report for each.

    The answer streams to the terminal as it arrives (rendered Markdown on a
    terminal, plain text when piped). The report is Markdown: a header with
    the file, the range with its units, the model, the prompt, the time taken
    and the tokens used (when the endpoint reports them), then the answer.

    Several files are analysed one after another, each with its own report
    (by default FILE.analysis.md beside each FILE; see --output). A failing
    file does not stop the others, except for failures every file would
    meet (settings, credentials, an unreachable endpoint), which stop the
    batch.

    Credentials come from environment variables, an OAuth file or a prompt;
    they are never printed or written into a report. Exit status: 0 when
    every report was written, 1 when the model or token endpoint failed or a
    report could not be written, 2 for bad input, flags or settings.
    """
    if merge and selector is not None:
        raise click.UsageError("use either --profile or --merge, not both")
    if preset is not None and prompt_text is not None:
        raise click.UsageError("use either --preset or --prompt, not both")
    jobs = plan_jobs(files, output)
    options = EndpointOptions(
        endpoint=endpoint,
        url=url,
        provider=provider,
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
        timeout=timeout,
        max_retries=max_retries,
        payload_budget=budget,
        stream=False if no_stream else None,
        api_key=api_key,
        api_key_env=api_key_env,
        oauth_file=oauth_file,
        oauth_token_url=oauth_token_url,
        client_id=client_id,
        client_secret_env=client_secret_env,
        oauth_scope=oauth_scope,
        no_auth=no_auth,
        config_path=config_path,
    )
    try:
        settings = load_settings(options)
        prompt = resolve_prompt(preset, prompt_text, settings.templates)
        auth = resolve_auth(
            settings,
            options,
            ask_secret=getpass.getpass if sys.stdin.isatty() else None,
            warn=lambda message: click.echo(f"Warning: {message}", err=True),
        )
    except LLMError as error:
        click.echo(f"Error: {error}", err=True)
        ctx.exit(_exit_code(error.failure))
        return

    console = stdout_console()
    display = MarkdownAnswer(console, auth) if console.is_terminal else PlainAnswer(auth)
    batch = len(jobs) > 1
    outcomes: list[Outcome] = []
    for position, job in enumerate(jobs):
        try:
            outcome = _run_job(
                job, settings, auth, prompt, payload, start, end, selector, merge,
                None if as_json else display, batch, source_maps=source_maps,
            )  # fmt: skip
        except StopBatch as stop:
            outcomes.append(stop.args[0])
            skipped = [later.file for later in jobs[position + 1 :]]
            if skipped:
                click.echo(f"Skipped {', '.join(skipped)}: that failure stops the batch.", err=True)
            break
        outcomes.append(outcome)

    if as_json:
        documents = [_json_of(outcome, auth) for outcome in outcomes]
        if not batch:
            if documents[0].get("error") is None:
                print_json(documents[0])
        else:
            print_json({"analyses": documents})
    # Files skipped after a batch-stopping failure add nothing: that failure decides.
    failed = [outcome.exit_code for outcome in outcomes if outcome.exit_code]
    if failed:
        ctx.exit(EXIT_FAILED if EXIT_FAILED in failed else EXIT_INPUT)


def _run_job(
    job: Job,
    settings: Settings,
    auth: Auth,
    prompt: Prompt,
    payload: str,
    start: str | None,
    end: str | None,
    selector: str | None,
    merge: bool,
    display: PlainAnswer | MarkdownAnswer | None,
    batch: bool,
    source_maps: tuple[str, ...] = (),
) -> Outcome:
    """Analyse one file and write its report; failures become an `Outcome` (or `StopBatch`)."""
    prefix = f"{job.file}: " if batch else ""
    try:
        group = load_group(job.file, show_progress=display is not None, source_maps=source_maps)
        profile = choose_profile(group, selector, merge)
        if merge:
            group, index = ProfileGroup(group.name, [profile], 0, group.format), 0
        else:
            index = next(i for i, candidate in enumerate(group.profiles) if candidate is profile)
        start_value, end_value = parse_range(profile, start, end)
    except click.ClickException as error:
        click.echo(f"Error: {prefix}{error.format_message()}", err=True)
        return Outcome(job, error=error.format_message(), failure="input", exit_code=EXIT_INPUT)

    if display is not None:
        if batch:
            display.heading(job.file)
        click.echo(
            f"Asking {settings.model} at {settings.display_url} about {job.file} "
            f"({profile.name}; {prompt.label}) ...",
            err=True,
        )
    try:
        with display if display is not None else nullcontext():
            result = analyze(
                settings,
                auth,
                group,
                start_value,
                end_value,
                prompt,
                payload,
                display,
                profile_index=index,
                source=job.file,
            )
    except LLMError as error:
        message = scrub(str(error), auth.secrets())
        click.echo(f"Error: {prefix}{message}", err=True)
        outcome = Outcome(
            job, error=message, failure=error.failure.value, exit_code=_exit_code(error.failure)
        )
        if error.failure in ENDPOINT_FAILURES:
            raise StopBatch(outcome) from None
        return outcome

    try:
        job.report.parent.mkdir(parents=True, exist_ok=True)
        job.report.write_text(scrub(render_report(result), auth.secrets()), encoding="utf-8")
    except OSError as error:
        problem = OutputError(f"cannot write {job.report}: {error.strerror or error}")
        click.echo(f"Error: {prefix}{problem.format_message()}", err=True)
        return Outcome(
            job, result, error=problem.format_message(), failure="output", exit_code=EXIT_FAILED
        )
    if display is not None:
        if result.truncated:
            click.echo(
                "Warning: the answer was cut off at the max_tokens limit "
                f"({settings.max_tokens:,}); raise --max-tokens for a complete one.",
                err=True,
            )
        click.echo(f"Wrote {job.report} ({_cost(result)})", err=True)
    return Outcome(job, result)


def _exit_code(failure: Failure) -> int:
    return EXIT_INPUT if failure in INPUT_FAILURES else EXIT_FAILED


def _cost(result: AnalysisResult) -> str:
    """ "1,248 tokens, 2.31 s" for the status line."""
    usage = result.usage
    tokens = (
        f"{usage.total_tokens:,} tokens, "
        if usage is not None and usage.total_tokens is not None
        else ""
    )
    return f"{result.model}, {tokens}{result.duration_seconds:.2f} s"


def _json_of(outcome: Outcome, auth: Auth) -> dict[str, object]:
    document: dict[str, object] = {"file": outcome.job.file}
    if outcome.result is not None:
        document.update(outcome.result.to_dict())
        document["answer"] = scrub(str(document["answer"]), auth.secrets())
        document["report"] = str(outcome.job.report) if outcome.error is None else None
    if outcome.error is not None:
        document["error"] = outcome.error
        document["failure"] = outcome.failure
    return document


__all__ = ["analyze_command", "plan_jobs", "split_finished_blocks"]

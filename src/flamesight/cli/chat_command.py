"""`flamesight chat`: talk with the analysis agent about a profile, in the terminal.

The answer streams to stdout as it arrives; each tool call gets a status
line on stderr, and every flame graph the agent draws is saved under
``./flamesight-snapshots/`` (or ``--snapshots DIR``) with its path printed.
``--once "question"`` answers one question and exits (scripts, CI);
``--save transcript.md`` keeps the conversation as Markdown, rewritten after
every turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flamesight.cli.commands import (
    InputError,
    OutputError,
    choose_profile,
    load_group,
    main,
    source_map_option,
)
from flamesight.cli.llm_options import endpoint_options, endpoint_options_of, resolve_endpoint
from flamesight.llm import Auth, Failure, LLMError, Settings, scrub

if TYPE_CHECKING:  # the agent (LangGraph, LangChain) is imported when a chat starts
    from langchain_core.messages import BaseMessage

    from flamesight.agent import ChatAgent

SNAPSHOT_DIRECTORY = "flamesight-snapshots"
"""Where rendered flame graphs go by default, under the current directory."""
QUIT_WORDS = frozenset({"exit", "quit", "/exit", "/quit", ":q"})

EXIT_FAILED = 1
EXIT_INPUT = 2


@dataclass
class TurnRecord:
    """One question and what happened: tool lines, snapshots, the answer, an error."""

    question: str
    tools: list[str] = field(default_factory=list)
    answer: str = ""
    error: str | None = None


@dataclass
class Transcript:
    """The conversation as Markdown, for --save."""

    file: str
    settings: Settings
    turns: list[TurnRecord] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))

    def markdown(self) -> str:
        """The whole transcript as Markdown."""
        lines = [
            f"# flamesight chat: {self.file}",
            "",
            f"- model: {self.settings.model} at {self.settings.display_url}",
            f"- started: {self.started}",
            "",
        ]
        for turn in self.turns:
            lines += ["## You", "", turn.question, "", "## flamesight", ""]
            if turn.tools:
                lines += [*turn.tools, ""]
            if turn.answer:
                lines += [turn.answer.strip(), ""]
            if turn.error:
                lines += [f"**Error:** {turn.error}", ""]
        return "\n".join(lines)


class ChatSession:
    """A conversation with the agent: history kept between turns, events shown as they come."""

    def __init__(self, agent: ChatAgent, auth: Auth, transcript: Transcript) -> None:
        self.agent = agent
        self.auth = auth
        self.transcript = transcript
        self.history: list[BaseMessage] = []

    def ask(self, question: str) -> bool:
        """Run one turn, printing as it goes; False when it ended with an error."""
        from flamesight.agent import (
            ErrorEvent,
            ModelChunkAppend,
            ModelChunkEnd,
            ToolEnd,
            ToolError,
            ToolStart,
        )

        record = TurnRecord(question)
        self.transcript.turns.append(record)
        turn = self.agent.run(self.history, question)
        answer: list[str] = []
        ok = True
        printed = "\n"
        for event in turn:
            if isinstance(event, ModelChunkAppend):
                text = self._clean(event.text)
                answer.append(text)
                click.echo(text, nl=False)
                printed = text[-1:] or printed
            elif isinstance(event, ModelChunkEnd):
                if printed != "\n":
                    click.echo()
                    printed = "\n"
                answer.append("\n\n")
            elif isinstance(event, ToolStart):
                arguments = json.dumps(event.args, ensure_ascii=False)
                click.echo(click.style(f"> {event.tool} {arguments}", dim=True), err=True)
                record.tools.append(f"- `{event.tool} {arguments}`")
            elif isinstance(event, ToolEnd):
                status = f"  {event.summary}"
                record.tools[-1] += f": {event.summary}"
                if event.image is not None:
                    status += f"\n  saved {event.image}"
                    record.tools[-1] += f"\n\n  ![{event.tool}]({Path(event.image).as_posix()})"
                click.echo(click.style(status, dim=True), err=True)
            elif isinstance(event, ToolError):
                message = self._clean(event.message)
                click.echo(click.style(f"  tool error: {message}", fg="yellow"), err=True)
                record.tools[-1] += f": error: {message}"
            elif isinstance(event, ErrorEvent):
                ok = False
                record.error = self._clean(event.message)
                if printed != "\n":
                    click.echo()
                click.echo(f"Error: {record.error}", err=True)
        record.answer = "".join(answer)
        self.history = turn.history
        return ok

    def _clean(self, text: str) -> str:
        return scrub(text, self.auth.secrets())


def _save(path: Path | None, transcript: Transcript, auth: Auth) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(scrub(transcript.markdown(), auth.secrets()), encoding="utf-8")
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None


@main.command("chat", no_args_is_help=True)
@click.argument(
    "files",
    metavar="FILE [OTHER]",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=str),
)
@endpoint_options
@click.option("--once", "question", metavar="QUESTION", help="Answer this one question and exit.")
@click.option(
    "--save",
    "save_path",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the conversation to this Markdown file (rewritten after every turn).",
)
@click.option(
    "--snapshots",
    "snapshot_dir",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=SNAPSHOT_DIRECTORY,
    show_default=True,
    help="Where the flame graphs the agent draws are saved.",
)
@click.option(
    "--max-iterations",
    metavar="N",
    type=click.IntRange(1, 50),
    help="Rounds of tool calls per question before the model is asked to conclude (default 8).",
)
@click.option(
    "--profile",
    "selector",
    metavar="NAME|INDEX",
    help="The profile to talk about, by name or by its number in `flamesight info` "
    "(default: the active one).",
)
@source_map_option
@click.pass_context
def chat_command(
    ctx: click.Context,
    files: tuple[str, ...],
    question: str | None,
    save_path: Path | None,
    snapshot_dir: Path,
    max_iterations: int | None,
    selector: str | None,
    source_maps: tuple[str, ...],
    **flags: Any,
) -> None:
    """Chat with an agent that analyses FILE with tools and looks at its flame graphs.

    The agent calls analysis tools (top functions, call trees, hot paths,
    range summaries, searches, comparisons) and draws flame graphs, which it
    sees as images; each call is shown on stderr, and each image is saved
    under --snapshots. With a second file OTHER, the agent can also compare
    the two (OTHER as the after side).

    Type a question at the prompt; an empty line, "exit" or Ctrl-D ends the
    chat. With --once, the question is answered and the command exits:
    status 0 when the model answered, 1 when the endpoint failed, 2 for bad
    input, flags or settings. Endpoint and credential flags work as in
    `flamesight analyze`.
    """
    if len(files) > 2:
        raise click.UsageError("give one profile file, or two to compare")
    from flamesight.agent import (
        DEFAULT_MAX_ITERATIONS,
        ChatAgent,
        DirectorySnapshots,
        LoadedProfiles,
    )

    groups = [
        load_group(file, show_progress=question is None, source_maps=source_maps) for file in files
    ]
    if selector is not None:
        profile = choose_profile(groups[0], selector, merge=False)
        groups[0].active_index = groups[0].profiles.index(profile)
    profiles = LoadedProfiles(
        groups[0],
        groups[1] if len(groups) > 1 else None,
        name=Path(files[0]).name,
        other_name=Path(files[1]).name if len(files) > 1 else None,
    )
    try:
        settings, auth = resolve_endpoint(endpoint_options_of(flags))
        agent = ChatAgent(
            profiles,
            settings,
            auth,
            snapshots=DirectorySnapshots(snapshot_dir),
            max_iterations=max_iterations or DEFAULT_MAX_ITERATIONS,
            source=files[0],
        )
    except LLMError as error:
        click.echo(f"Error: {error}", err=True)
        ctx.exit(EXIT_INPUT if error.failure is Failure.CONFIG else EXIT_FAILED)
        return
    except ValueError as error:
        raise InputError(str(error)) from None

    transcript = Transcript(files[0], settings)
    session = ChatSession(agent, auth, transcript)
    if question is not None:
        ok = session.ask(question)
        _save(save_path, transcript, auth)
        if not ok:
            ctx.exit(EXIT_FAILED)
        return

    click.echo(
        f"Chatting with {settings.model} at {settings.display_url} about {files[0]}. "
        "Ask a question; an empty line or Ctrl-D ends the chat.",
        err=True,
    )
    while True:
        try:
            text = click.prompt("you", prompt_suffix="> ", default="", show_default=False)
        except (EOFError, click.Abort):
            click.echo(err=True)
            break
        text = text.strip()
        if not text or text.lower() in QUIT_WORDS:
            break
        try:
            session.ask(text)
        except KeyboardInterrupt:
            click.echo("\n(interrupted)", err=True)
        _save(save_path, transcript, auth)
    _save(save_path, transcript, auth)
    if save_path is not None:
        click.echo(f"Saved the conversation to {save_path}", err=True)


__all__ = ["chat_command"]

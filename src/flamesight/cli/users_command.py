"""`flamesight users add|list|remove` and `flamesight upload`.

`users` works directly on the server's database (the same --data-dir and
--database-url as `flamesight serve`, migrated first), so the first account
can be made before the server ever runs. A password is asked twice with
getpass, or read from the first line of standard input with
`--password-stdin` (for scripts; it never appears in the command line).

`upload` sends a profile to a running server through the API, with a
personal API token read from an environment variable, and prints the URL of
the new trace.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import click

from flamesight.cli.commands import InputError, OutputError, main
from flamesight.cli.serve_command import data_location_options
from flamesight.server.settings import Settings

if TYPE_CHECKING:
    from flamesight.server.accounts import Sessions

DEFAULT_TOKEN_ENV = "FLAMESIGHT_TOKEN"
UPLOAD_CHUNK_BYTES = 1024 * 1024
UPLOAD_TIMEOUT_SECONDS = 600.0


def location_settings(
    data_dir: Path | None, database_url: str | None, storage_dir: Path | None
) -> Settings:
    """The server settings for these options (then the environment, then the defaults)."""
    return Settings.from_environment(
        data_dir=data_dir, database_url=database_url, storage_dir=storage_dir
    )


@asynccontextmanager
async def database_sessions(settings: Settings) -> AsyncIterator[Sessions]:
    """A session factory on the settings' database, migrated to the newest schema."""
    from flamesight.server.database import create_engine, migrate, session_factory

    engine = create_engine(settings.resolved_database_url)
    try:
        await migrate(engine)
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def accounts_exist(settings: Settings) -> bool:
    """Whether the settings' database has a user who can log in (a missing SQLite file has none)."""
    from flamesight.server.accounts import has_accounts

    if settings.database_url is None and not (settings.data_dir / "flamesight.db").exists():
        return False
    async with database_sessions(settings) as sessions:
        return await has_accounts(sessions)


def read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or typed twice without echo."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != first:
        raise InputError("the two passwords differ")
    return first


@main.group("users")
def users_group() -> None:
    """Manage the server's user accounts (once one exists, the server requires login)."""


@users_group.command("add")
@click.argument("name")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@data_location_options
def add_user(
    name: str,
    password_stdin: bool,
    data_dir: Path | None,
    database_url: str | None,
    storage_dir: Path | None,
) -> None:
    """Create the user NAME, asking for a password.

    Giving "local" (the single-user owner) a password makes it an account
    that keeps the traces uploaded in single-user mode.
    """
    from flamesight.server.accounts import AccountError, add_account

    settings = location_settings(data_dir, database_url, storage_dir)
    password = read_password(password_stdin)

    async def add() -> None:
        async with database_sessions(settings) as sessions:
            await add_account(sessions, name, password)

    try:
        anyio.run(add)
    except AccountError as error:
        raise InputError(str(error)) from None
    click.echo(f"added user {name}")


@users_group.command("list")
@data_location_options
def list_users(data_dir: Path | None, database_url: str | None, storage_dir: Path | None) -> None:
    """List the users who can log in."""
    from flamesight.server.accounts import AccountRecord, list_accounts

    settings = location_settings(data_dir, database_url, storage_dir)

    async def names() -> list[AccountRecord]:
        async with database_sessions(settings) as sessions:
            return await list_accounts(sessions)

    for account in anyio.run(names):
        click.echo(f"{account.name}\t{account.created_at:%Y-%m-%d %H:%M} UTC")


@users_group.command("remove")
@click.argument("name")
@data_location_options
def remove_user(
    name: str, data_dir: Path | None, database_url: str | None, storage_dir: Path | None
) -> None:
    """Delete the user NAME with all their traces, tokens, sessions and share links."""
    from flamesight.server.accounts import AccountError, remove_account
    from flamesight.server.storage import open_storage

    settings = location_settings(data_dir, database_url, storage_dir)

    async def remove() -> int:
        async with database_sessions(settings) as sessions:
            keys = await remove_account(sessions, name)
        storage = open_storage(settings)
        for key in keys:
            await storage.delete(key)
        return sum("/traces/" in key for key in keys)

    try:
        traces = anyio.run(remove)
    except AccountError as error:
        raise InputError(str(error)) from None
    click.echo(f"removed user {name} and {traces} trace(s)")


def read_chunks(path: Path) -> Iterator[bytes]:
    """The file's bytes, a chunk at a time (so large uploads are never held in memory)."""
    with path.open("rb") as handle:
        while chunk := handle.read(UPLOAD_CHUNK_BYTES):
            yield chunk


@main.command("upload", no_args_is_help=True)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--server", "server_url", required=True, metavar="URL", help="The server's URL.")
@click.option(
    "--token-env",
    metavar="VAR",
    help=f"Environment variable holding a personal API token (default: {DEFAULT_TOKEN_ENV}, "
    "when set; a single-user server needs none).",
)
@click.option("--name", help="Name of the trace (default: the file's name).")
def upload_command(file: Path, server_url: str, token_env: str | None, name: str | None) -> None:
    """Upload FILE to a flamesight server and print the URL of the new trace."""
    import httpx2

    variable = token_env or DEFAULT_TOKEN_ENV
    token = os.environ.get(variable, "").strip()
    if token_env is not None and not token:
        raise InputError(f"the environment variable {token_env} holds no API token")
    quoted = file.name.replace('"', "'")
    headers = {"content-disposition": f'attachment; filename="{quoted}"'}
    if token:
        headers["authorization"] = f"Bearer {token}"
    base = server_url.rstrip("/")
    try:
        response = httpx2.post(
            f"{base}/api/traces",
            content=read_chunks(file),
            headers=headers,
            params={"name": name} if name else None,
            timeout=UPLOAD_TIMEOUT_SECONDS,
        )
    except httpx2.HTTPError as error:
        raise OutputError(f"cannot reach {base}: {error}") from None
    if response.status_code != 201:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise OutputError(f"the server refused the upload ({response.status_code}): {message}")
    click.echo(f"{base}{response.json()['url']}")

"""`flamesight serve`: the web server (REST API) on uvicorn.

Bound to a loopback address with no accounts, the server runs in
single-user mode: no login, one implicit owner of every trace. Once an
account exists (`flamesight users add NAME`), every request must log in or
carry an API token, and the server may listen on any address; without one,
a non-loopback address is refused, since that would put an unauthenticated
server on a network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from flamesight.cli.commands import InputError, main

if TYPE_CHECKING:
    from flamesight.server import Settings

LOOPBACK_NAMES = ("localhost",)

F = TypeVar("F", bound=Callable[..., Any])


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1) or "localhost"."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def base_url(host: str, port: int) -> str:
    """The http URL of the server on `host`:`port` (IPv6 addresses in brackets)."""
    bare = host.strip("[]")
    shown = f"[{bare}]" if ":" in bare else bare
    return f"http://{shown}:{port}"


STORAGE_URL_HELP = (
    "Where uploaded files are kept, as a URL: file:///path (the same as --storage-dir) or "
    "s3://bucket/prefix (S3-compatible storage; endpoint, region and credentials from "
    "AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, ...) (default: $FLAMESIGHT_STORAGE_URL)."
)


SECRET_KEY_FILE_HELP = (
    "Fleet mode: a file whose first line is the secret key (32+ characters) that web processes "
    "and workers share to hand client-given model endpoints to workers encrypted "
    "(default: $FLAMESIGHT_SECRET_KEY_FILE, else the key in $FLAMESIGHT_SECRET_KEY; none: "
    "such endpoints are refused)."
)


def check_storage_url(url: str | None, storage_dir: Path | None) -> None:
    """Refuse --storage-url with --storage-dir, or a URL that names no storage we have."""
    from flamesight.server.settings import storage_location

    if url is None:
        return
    if storage_dir is not None:
        raise click.UsageError("give --storage-dir or --storage-url, not both")
    try:
        storage_location(url)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--storage-url") from None


def server_settings(storage_dir: Path | None, storage_url: str | None, **options: Any) -> Settings:
    """The settings of `serve` or `worker` from their options (then the environment); a
    usage error for a bad storage URL or a bad value."""
    from flamesight.server import Settings

    check_storage_url(storage_url, storage_dir)
    try:
        return Settings.from_environment(
            storage_dir=storage_dir, storage_url=storage_url, **options
        )
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def data_location_options(command: F) -> F:
    """The --data-dir, --database-url and --storage-dir options of serve and users."""
    for option in reversed(
        [
            click.option(
                "--data-dir",
                type=click.Path(file_okay=False, path_type=Path),
                help="Where the database and uploaded files live "
                "(default: $FLAMESIGHT_DATA_DIR or ~/.local/share/flamesight).",
            ),
            click.option(
                "--database-url",
                metavar="URL",
                help="SQLAlchemy URL, e.g. postgresql+asyncpg://user@host/db "
                "(default: $FLAMESIGHT_DATABASE_URL or SQLite in the data dir).",
            ),
            click.option(
                "--storage-dir",
                type=click.Path(file_okay=False, path_type=Path),
                help="Where uploaded files are kept "
                "(default: $FLAMESIGHT_STORAGE_DIR or DATA_DIR/blobs).",
            ),
        ]
    ):
        command = option(command)
    return command


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port."
)
@data_location_options
@click.option(
    "--max-upload",
    metavar="SIZE",
    help="Largest upload, e.g. 500MB (default: $FLAMESIGHT_MAX_UPLOAD or 2GiB).",
)
@click.option(
    "--cache-size",
    metavar="SIZE",
    help="Memory for parsed profiles, e.g. 4GiB (default: $FLAMESIGHT_CACHE_SIZE or 2GiB).",
)
@click.option(
    "--redis-url",
    metavar="URL",
    help="Fleet mode: chat turns run on `flamesight worker`s sharing this Redis "
    "(default: $FLAMESIGHT_REDIS_URL; none: in this process).",
)
@click.option(
    "--storage-url",
    metavar="URL",
    help=STORAGE_URL_HELP,
)
@click.option(
    "--secret-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=SECRET_KEY_FILE_HELP,
)
@click.option(
    "--open",
    "open_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Upload this profile at start and print its URL.",
)
def serve_command(
    host: str,
    port: int,
    data_dir: Path | None,
    database_url: str | None,
    storage_dir: Path | None,
    max_upload: str | None,
    cache_size: str | None,
    redis_url: str | None,
    storage_url: str | None,
    secret_key_file: Path | None,
    open_file: Path | None,
) -> None:
    """Run the flamesight web server (REST API, docs at /docs).

    On a loopback address with no accounts it runs in single-user mode: no
    login, every trace owned by one implicit user. With accounts (`flamesight
    users add NAME`) every request logs in or carries an API token, and any
    address may be used.
    """
    import uvicorn

    from flamesight.cli.users_command import accounts_exist
    from flamesight.server import create_app
    from flamesight.server.errors import ApiError
    from flamesight.server.state import ServerState
    from flamesight.server.uploads import file_chunks, store_trace

    settings = server_settings(
        storage_dir,
        storage_url,
        data_dir=data_dir,
        database_url=database_url,
        max_upload=max_upload,
        cache_size=cache_size,
        redis_url=redis_url,
        secret_key_file=secret_key_file,
    )
    loopback = is_loopback(host)
    settings = dataclasses.replace(settings, bound_to_loopback=loopback)
    with_accounts = asyncio.run(accounts_exist(settings))
    if not loopback and not with_accounts:
        raise InputError(
            f"refusing to listen on {host}: there are no user accounts yet, so anyone who can "
            "reach that address could use the server. Create one first with `flamesight users "
            "add NAME` (same --data-dir/--database-url), or listen on a loopback address "
            "(127.0.0.1, ::1, localhost) for single-user mode."
        )
    if with_accounts and open_file is not None:
        raise InputError(
            "--open uploads as the single-user owner, and this server has accounts: "
            "upload with `flamesight upload FILE --server URL --token-env VAR` instead"
        )
    url = base_url(host, port)

    async def open_at_start(state: ServerState) -> None:
        if open_file is None:
            return
        try:
            trace = await store_trace(
                state, state.local_owner_id, file_chunks(open_file), open_file.name
            )
        except ApiError as error:
            click.echo(f"Error: cannot open {open_file}: {error.message}", err=True)
            return
        click.echo(f"{open_file.name}: {url}/api/traces/{trace.id}")

    mode = "accounts (log in or use an API token)" if with_accounts else "single-user mode"
    click.echo(f"flamesight: {mode} on {url} (API docs at {url}/docs)")
    uvicorn.run(create_app(settings, open_at_start), host=host.strip("[]"), port=port)

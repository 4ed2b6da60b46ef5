"""`flamesight worker`: runs the chat turns and analyses of fleet mode (arq on Redis).

Start it with the same database, blob storage, Redis and secret key as
`flamesight serve --redis-url ...`; any number of workers and web processes
may share one Redis. Jobs use the worker's own model endpoint settings
(``FLAMESIGHT_LLM_*``, the config file) unless the client named one, which
reaches the worker sealed with the shared secret key. See docs/fleet.md.

The worker runs on uvloop where it is installed (a dependency everywhere but
Windows), as uvicorn runs `flamesight serve`: streaming a model's answer
costs about a fifth less CPU per chunk than on asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from flamesight.cli.commands import InputError, main
from flamesight.cli.serve_command import (
    SECRET_KEY_FILE_HELP,
    STORAGE_URL_HELP,
    data_location_options,
    server_settings,
)


@main.command("worker")
@click.option(
    "--redis-url",
    metavar="URL",
    help="The Redis the web processes enqueue on, e.g. redis://host:6379/0 "
    "(default: $FLAMESIGHT_REDIS_URL).",
)
@data_location_options
@click.option("--storage-url", metavar="URL", help=STORAGE_URL_HELP)
@click.option(
    "--cache-size",
    metavar="SIZE",
    help="Memory for parsed profiles, e.g. 4GiB (default: $FLAMESIGHT_CACHE_SIZE or 2GiB).",
)
@click.option(
    "--secret-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=SECRET_KEY_FILE_HELP,
)
@click.option(
    "--max-jobs",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="Jobs (chat turns, analyses) this worker runs at once from the shared queue, and "
    "again from its own queue (jobs for the traces it has in memory).",
)
def worker_command(
    redis_url: str | None,
    data_dir: Path | None,
    database_url: str | None,
    storage_dir: Path | None,
    storage_url: str | None,
    cache_size: str | None,
    secret_key_file: Path | None,
    max_jobs: int,
) -> None:
    """Run chat turns and analyses for `flamesight serve --redis-url` (fleet mode) until stopped."""
    from flamesight.server.fleet_jobs import run_worker

    settings = server_settings(
        storage_dir,
        storage_url,
        data_dir=data_dir,
        database_url=database_url,
        cache_size=cache_size,
        redis_url=redis_url,
        secret_key_file=secret_key_file,
    )
    if not settings.redis_url:
        raise InputError("a worker needs a Redis: give --redis-url or set FLAMESIGHT_REDIS_URL")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    click.echo(
        f"flamesight worker: {max_jobs} jobs at a time from the shared queue and {max_jobs} "
        f"from its own, on {_shown(settings.redis_url)}"
    )
    try:
        import uvloop
    except ImportError:  # not installed on Windows
        asyncio.run(run_worker(settings, max_jobs))
    else:
        uvloop.run(run_worker(settings, max_jobs))


def _shown(url: str) -> str:
    """The URL without a password."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"
    return url

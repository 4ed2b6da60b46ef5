"""The `flamesight` command line (`flamesight info`, `top`, `convert`)."""

from flamesight.cli.commands import main

__all__ = ["main"]

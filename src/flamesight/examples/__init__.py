"""A bundled example profile, so flamesight can be tried without one of your own.

`log_report.speedscope.json` is a real py-spy profile of `log_report.py`, a
small log-report job in this folder; that file's docstring has the command
that regenerates it.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLE_PROFILE = "log_report.speedscope.json"


def path(name: str = EXAMPLE_PROFILE) -> Path:
    """The file system path of a bundled example profile (the py-spy one by default)."""
    location = Path(__file__).with_name(name)
    if not location.is_file():
        raise FileNotFoundError(f"no bundled example named {name!r}")
    return location

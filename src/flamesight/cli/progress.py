"""A progress bar for profile loads that take long enough to need one."""

from __future__ import annotations

import threading
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

SHOW_AFTER_SECONDS = 0.5
"""Loads that finish sooner never draw anything."""


class LoadProgress:
    """A `load(..., progress=...)` callback that draws a rich progress bar on `console`.

    Nothing is drawn until the load has run for `delay` seconds, so quick loads
    leave no trace; the bar is removed when the load ends. Use it as a context
    manager around the load.
    """

    def __init__(self, console: Console, delay: float = SHOW_AFTER_SECONDS) -> None:
        self._console = console
        self._delay = delay
        self._lock = threading.Lock()
        self._stage = "reading"
        self._done = 0
        self._total = 0
        self._finished = False
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._timer: threading.Timer | None = None

    def __enter__(self) -> LoadProgress:
        self._timer = threading.Timer(self._delay, self._show)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._finished = True
            if self._bar is not None:
                self._bar.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Record the load's progress: `done` of `total` units of `stage` (total 0: unknown)."""
        with self._lock:
            self._stage, self._done, self._total = stage, done, total
            self._redraw()

    @property
    def shown(self) -> bool:
        """Whether the bar has been drawn (the load outlasted the delay)."""
        return self._bar is not None

    def _show(self) -> None:
        with self._lock:
            if self._finished:
                return
            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._task = self._bar.add_task(self._stage)
            self._redraw()
            self._bar.start()

    def _redraw(self) -> None:
        if self._bar is None or self._task is None:
            return
        self._bar.update(
            self._task,
            description=self._stage,
            completed=self._done,
            total=self._total or None,
        )

"""Where rendered flame graphs go: a snapshot sink (a directory for the CLI, storage later)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol


class SnapshotSink(Protocol):
    """Keeps a rendered PNG and says where it is (a path or a URL)."""

    def save(self, png: bytes, name: str) -> str:
        """Store `png` under a name derived from `name`; return its location."""
        ...


class DirectorySnapshots:
    """Snapshots as numbered PNG files in a directory, created when the first one is saved."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.saved: list[Path] = []

    def save(self, png: bytes, name: str) -> str:
        """Write `png` as NNN-name.png (never over an existing file); return the path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "snapshot"
        number = len(self.saved) + 1
        while True:
            path = self.directory / f"{number:03d}-{stem}.png"
            try:
                with path.open("xb") as file:
                    file.write(png)
                break
            except FileExistsError:
                number += 1
        self.saved.append(path)
        return str(path)


class MemorySnapshots:
    """Snapshots kept in memory, located as ``snapshot:N`` (for servers that store them later)."""

    def __init__(self) -> None:
        self.images: list[tuple[str, bytes]] = []

    def save(self, png: bytes, name: str) -> str:
        """Keep `png`; return ``snapshot:N``."""
        self.images.append((name, png))
        return f"snapshot:{len(self.images)}"

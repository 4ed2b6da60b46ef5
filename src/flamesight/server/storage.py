"""Blob storage: uploaded profiles (and, later, rendered snapshots) by key.

`BlobStorage` is the interface; `LocalDirectoryStorage` keeps each blob as a
file under one folder, `s3_storage.S3BlobStorage` as an object of an
S3-compatible bucket (`open_storage` picks by the settings). Keys are slash-separated and start with the owner's id
(`trace_blob_key`), so every blob belongs to a user. Writes stream: chunks go
to a temporary file beside the final one and are renamed into place only when
complete, so a failed or refused upload leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import AsyncIterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

import anyio.to_thread

if TYPE_CHECKING:
    from flamesight.server.settings import Settings

WRITE_BATCH_BYTES = 1024 * 1024
"""Chunks are gathered up to this size before one write in a worker thread."""

_KEY_PART = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


class BlobTooLarge(ValueError):
    """A blob grew past the size allowed for it; nothing was stored."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        super().__init__(f"larger than the limit of {max_bytes:,} bytes")


def check_key(key: str) -> None:
    """ValueError unless `key` is slash-separated safe parts (no "..", no empty part)."""
    parts = key.split("/")
    if not parts or not all(_KEY_PART.match(part) for part in parts):
        raise ValueError(f"bad blob key {key!r}")


def open_storage(settings: Settings) -> BlobStorage:
    """The blob storage the settings name: an S3 bucket (`storage_url`) or a local folder."""
    if settings.storage_url:
        from flamesight.server.s3_storage import S3BlobStorage

        return S3BlobStorage.from_url(settings.storage_url)
    return LocalDirectoryStorage(settings.resolved_storage_dir)


def trace_blob_key(owner_id: str, trace_id: str) -> str:
    """The key of an uploaded trace file: under its owner's id."""
    return f"{owner_id}/traces/{trace_id}"


class BlobStorage(Protocol):
    """Where blobs live: a local folder or S3-compatible storage."""

    async def write(
        self, key: str, chunks: AsyncIterable[bytes], max_bytes: int | None = None
    ) -> int:
        """Store the chunks as `key` and return the byte count; all or nothing.

        Raises BlobTooLarge past `max_bytes`; any error (the chunks' own too)
        leaves no blob behind.
        """
        ...

    def local_path(self, key: str) -> contextlib.AbstractContextManager[Path]:
        """A local file with the blob's bytes, for as long as the block runs (blocking)."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether `key` is stored."""
        ...

    async def delete(self, key: str) -> None:
        """Remove `key`; no error when it is not there."""
        ...


class LocalDirectoryStorage:
    """Blobs as files under `root`, one file per key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        """The file of `key`; ValueError for a key that could leave the folder."""
        check_key(key)
        return self.root.joinpath(*key.split("/"))

    async def write(
        self, key: str, chunks: AsyncIterable[bytes], max_bytes: int | None = None
    ) -> int:
        """Stream the chunks to a temporary file, then rename it to `key`'s file."""
        final = self.path_of(key)
        await anyio.to_thread.run_sync(lambda: final.parent.mkdir(parents=True, exist_ok=True))
        partial = final.with_name(f".{final.name}.{secrets.token_hex(6)}.partial")
        handle: BinaryIO = await anyio.to_thread.run_sync(partial.open, "wb")
        size = 0
        try:
            pending: list[bytes] = []
            pending_size = 0
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(max_bytes)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= WRITE_BATCH_BYTES:
                    await anyio.to_thread.run_sync(handle.write, b"".join(pending))
                    pending, pending_size = [], 0
            if pending:
                await anyio.to_thread.run_sync(handle.write, b"".join(pending))
            await anyio.to_thread.run_sync(handle.close)
            await anyio.to_thread.run_sync(os.replace, partial, final)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_discard, handle, partial)
            raise
        return size

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """The blob's own file (no copy needed for a local folder)."""
        path = self.path_of(key)
        if not path.is_file():
            raise FileNotFoundError(f"no blob {key!r}")
        yield path

    async def exists(self, key: str) -> bool:
        """Whether the blob's file is there."""
        return await anyio.to_thread.run_sync(self.path_of(key).is_file)

    async def delete(self, key: str) -> None:
        """Remove the blob's file, if there is one."""
        path = self.path_of(key)
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))


def _discard(handle: BinaryIO, partial: Path) -> None:
    handle.close()
    partial.unlink(missing_ok=True)

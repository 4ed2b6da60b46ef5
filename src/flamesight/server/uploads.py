"""Taking in a profile file: stream it to storage, parse it once, record it.

The body of `POST /api/traces` is either the raw file or a multipart form
with the file in one part; either way the file's bytes are streamed to blob
storage as they arrive (never gathered in memory), counted against the
upload limit, then parsed in a worker thread. A file that cannot be read
removes its blob again, so a refused upload leaves no row and no blob.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from python_multipart.multipart import MultipartParser, parse_options_header

from flamesight.formats import FormatError, load
from flamesight.model import ProfileGroup
from flamesight.server.errors import ApiError
from flamesight.server.repository import TraceRecord, new_id
from flamesight.server.state import ServerState
from flamesight.server.storage import BlobStorage, BlobTooLarge, trace_blob_key

FILE_READ_BYTES = 1024 * 1024
MULTIPART_OVERHEAD_BYTES = 1024 * 1024
"""How much larger than the file a multipart body may be (boundaries, headers, small fields)."""
MAX_NAME_LENGTH = 500


def describe_profiles(group: ProfileGroup) -> list[dict[str, Any]]:
    """Per profile of `group`: index, name, unit, samples, frames, start, end and total weight."""
    return [
        {
            "index": index,
            "name": profile.name,
            "unit": profile.unit.value,
            "samples": len(profile.samples),
            "frames": len(profile.frames),
            "start": profile.start,
            "end": profile.end,
            "total": profile.total_weight,
        }
        for index, profile in enumerate(group.profiles)
    ]


def parse_blob(storage: BlobStorage, key: str, name: str) -> ProfileGroup:
    """Read the stored file `key` into a profile group (blocking: run it in a thread)."""
    with storage.local_path(key) as path:
        return load(path, name)


async def open_trace(state: ServerState, trace: TraceRecord) -> ProfileGroup:
    """The parsed profiles of a stored trace, from the cache or parsed once into it."""
    return await state.cache.get(
        trace.blob_key, lambda: parse_blob(state.storage, trace.blob_key, trace.name)
    )


async def store_trace(
    state: ServerState,
    user_id: str,
    chunks: AsyncIterable[bytes],
    name: str | Callable[[], str],
) -> TraceRecord:
    """Stream `chunks` to storage as a new trace of `user_id`, parse it, and record it.

    `name` may be a function, asked once the upload is complete (a multipart
    file name is known only then). 413 past the upload limit, 422 with the
    importer's message for a file that cannot be read; in both cases nothing
    is left behind.
    """
    trace_id = new_id()
    key = trace_blob_key(user_id, trace_id)
    limit = state.settings.max_upload_bytes
    try:
        size = await state.storage.write(key, chunks, limit)
    except BlobTooLarge:
        raise too_large(limit) from None
    name = name() if callable(name) else name
    name = (name.strip() or "profile")[:MAX_NAME_LENGTH]
    try:
        group = await state.cache.parse(lambda: parse_blob(state.storage, key, name))
        record = await state.repository(user_id).add_trace(
            trace_id=trace_id,
            name=name,
            format=group.format,
            size=size,
            blob_key=key,
            active_profile=group.active_index,
            profiles=describe_profiles(group),
        )
    except BaseException as error:
        with anyio.CancelScope(shield=True):
            await state.storage.delete(key)
        if isinstance(error, FormatError):
            raise ApiError(422, "unreadable_profile", str(error)) from None
        raise
    state.cache.put(key, group)
    return record


def too_large(limit: int) -> ApiError:
    """The 413 answer for a body over `limit` bytes."""
    return ApiError(413, "too_large", f"the upload is larger than the limit of {limit:,} bytes")


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A local file's bytes in chunks, read in a worker thread."""
    handle = await anyio.to_thread.run_sync(path.open, "rb")
    try:
        while chunk := await anyio.to_thread.run_sync(handle.read, FILE_READ_BYTES):
            yield chunk
    finally:
        await anyio.to_thread.run_sync(handle.close)


def header_filename(content_disposition: str | None) -> str | None:
    """The file name in a Content-Disposition header (its last path part), if any."""
    if not content_disposition:
        return None
    _, options = parse_options_header(content_disposition)
    filename = options.get(b"filename")
    return Path(filename.decode("utf-8", "replace")).name if filename else None


def multipart_boundary(content_type: str) -> bytes | None:
    """The boundary of a multipart/form-data content type, None for any other type."""
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        return None
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_request", "multipart/form-data without a boundary")
    return boundary


class MultipartFileReader:
    """Pulls the file part out of a multipart body fed to it chunk by chunk.

    The file is the part named "file", or else the first part with a file
    name; other parts are skipped.
    """

    def __init__(self, boundary: bytes) -> None:
        self.filename: str | None = None
        self.found = False
        self._in_file = False
        self._headers: dict[bytes, bytes] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._output: list[bytes] = []
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def feed(self, chunk: bytes) -> list[bytes]:
        """Parse `chunk` of the body; the file bytes it contained."""
        try:
            self._parser.write(chunk)
        except Exception as error:
            raise ApiError(400, "bad_request", f"malformed multipart body: {error}") from None
        output, self._output = self._output, []
        return output

    def finish(self) -> None:
        """Check the body held a file part."""
        self._parser.finalize()
        if not self.found:
            raise ApiError(
                400,
                "bad_request",
                "the multipart body has no file (send it in a part named 'file')",
            )

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        filename = options.get(b"filename")
        if not self.found and (options.get(b"name") == b"file" or filename is not None):
            self._in_file = True
            if filename:
                self.filename = Path(filename.decode("utf-8", "replace")).name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._output.append(bytes(data[start:end]))

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.found = True


async def multipart_file_chunks(
    body: AsyncIterable[bytes], reader: MultipartFileReader
) -> AsyncIterator[bytes]:
    """The file part's bytes of a multipart `body`, as the body arrives."""
    async for chunk in body:
        for piece in reader.feed(chunk):
            yield piece
    reader.finish()


async def body_chunks(
    body: AsyncIterable[bytes], content_type: str, on_filename: Callable[[str], None]
) -> AsyncIterator[bytes]:
    """The uploaded file's bytes: the whole raw body, or the file part of a multipart one."""
    boundary = multipart_boundary(content_type)
    if boundary is None:
        async for chunk in body:
            yield chunk
        return
    reader = MultipartFileReader(boundary)
    async for piece in multipart_file_chunks(body, reader):
        if reader.filename is not None:
            on_filename(reader.filename)
        yield piece

"""Profile importers: content sniffing, decompression and dispatch.

Every format is one module with

- ``NAME``: a short identifier ("collapsed", "pprof"),
- ``TITLE``: what people call it ("collapsed stacks"),
- ``sniff(head: bytes) -> bool``: whether the first bytes look like this format,
- ``parse(data: bytes, name: str) -> ProfileGroup``: the profiles in the file,
  raising `FormatError` for input it cannot read.

`load` reads a path or bytes, undoes gzip and zstd (with a cap on the
decompressed size), asks each module in `FORMAT_MODULES` order whether it
recognises the content (never the file name) and hands the data to the first
that does.
"""

from __future__ import annotations

import importlib
import io
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from flamesight.formats.errors import FormatError
from flamesight.model import Limits, ProfileGroup, ProfileTooLarge, limits_in_force

__all__ = ["FORMAT_MODULES", "FormatError", "decompress", "detect", "format_modules", "load"]

# Most specific first: JSON shapes with a telling key, binary formats with a
# magic, then text formats, and the permissive collapsed-stacks format last.
FORMAT_MODULES = (
    "speedscope",
    "chrome_cpuprofile",
    "chrome_trace",
    "chrome_heapprofile",
    "firefox",
    "safari",
    "v8_prof",
    "cprofile",
    "stackprof",
    "ghc_prof",
    "pyinstrument",
    "jfr",
    "pprof",
    "instruments",
    "callgrind",
    "pmcstat",
    "perf_script",
    "papyrus",
    "austin",
    "collapsed",
)

SNIFF_BYTES = 64 * 1024

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)`` while a file is read."""


def format_modules() -> list[ModuleType]:
    """The importer modules, in sniffing order."""
    return [importlib.import_module(f"flamesight.formats.{name}") for name in FORMAT_MODULES]


def decompress(data: bytes, max_bytes: int) -> bytes:
    """Undo gzip and zstd layers (nested ones too), refusing output over `max_bytes`.

    Each layer's output is written a piece at a time into one growing buffer
    (`io.BytesIO`, whose `getvalue` hands over that buffer without a copy), so
    the output exists once: joining a list of pieces would hold it twice.
    """
    while True:
        if data.startswith(GZIP_MAGIC):
            output = _gunzip(data, max_bytes)
        elif data.startswith(ZSTD_MAGIC):
            output = _unzstd(data, max_bytes)
        else:
            return data
        del data
        data = output.getvalue()
        del output


def _too_big(kind: str, max_bytes: int) -> FormatError:
    return FormatError(
        kind,
        "whole file",
        f"decompresses to more than {max_bytes:,} bytes (raise the decompressed-size cap to load it)",
    )


_INFLATE_CHUNK = 4 << 20
"""Bytes inflated per call: zlib joins a call's output blocks into one copy, so calls stay small."""


def _gunzip(data: bytes, max_bytes: int) -> io.BytesIO:
    output = io.BytesIO()
    size = 0
    rest = data
    while rest.startswith(GZIP_MAGIC):
        inflater = zlib.decompressobj(wbits=31)
        pending = rest
        try:
            while True:
                limit = min(_INFLATE_CHUNK, max_bytes + 1 - size)
                chunk = inflater.decompress(pending, limit)
                size += output.write(chunk)
                if size > max_bytes:
                    raise _too_big("gzip", max_bytes)
                pending = inflater.unconsumed_tail
                if inflater.eof or (not pending and len(chunk) < limit):
                    break
        except zlib.error as error:
            raise FormatError(
                "gzip", f"byte {len(data) - len(rest)}", f"corrupt data ({error})"
            ) from None
        if not inflater.eof:
            raise FormatError(
                "gzip", f"byte {len(data)}", "the file ends in the middle of the stream"
            )
        rest = inflater.unused_data
    return output


def _unzstd(data: bytes, max_bytes: int) -> io.BytesIO:
    import zstandard

    output = io.BytesIO()
    size = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as reader:
            while chunk := reader.read(1 << 20):
                size += output.write(chunk)
                if size > max_bytes:
                    raise _too_big("zstd", max_bytes)
    except zstandard.ZstdError as error:
        raise FormatError("zstd", "stream", f"corrupt data ({error})") from None
    return output


def detect(data: bytes) -> ModuleType:
    """The importer module whose `sniff` accepts the (decompressed) data."""
    head = data[:SNIFF_BYTES]
    for module in format_modules():
        if module.sniff(head):
            return module
    titles = ", ".join(module.TITLE for module in format_modules())
    raise FormatError(
        "unknown format",
        "start of file",
        f"not a profile flamesight can read (it reads {titles}); the file starts with {head[:40]!r}",
    )


def load(
    source: str | os.PathLike[str] | bytes,
    name: str | None = None,
    *,
    limits: Limits | None = None,
    progress: ProgressCallback | None = None,
) -> ProfileGroup:
    """Load a profile file (path or bytes) of any supported format into a `ProfileGroup`."""
    with limits_in_force(limits) as caps:
        if isinstance(source, bytes):
            data = source
            name = name or "profile"
        else:
            path = Path(source)
            name = name or path.name
            data = _read(path, caps.max_decompressed_bytes, progress)
        if len(data) > caps.max_decompressed_bytes:
            raise _too_big("input", caps.max_decompressed_bytes)
        # `decompress` and then the importer are each handed the only reference to
        # data `load` read itself (a list popped in the call, so no variable here
        # keeps it): the compressed bytes go before their pieces are joined, and
        # an importer done with the text can free it before building the profile.
        handed_over = [data]
        del data
        data = decompress(handed_over.pop(), caps.max_decompressed_bytes)
        module = detect(data)
        if progress:
            progress(f"parsing {module.TITLE}", 0, 0)
        handed_over = [data]
        del data
        try:
            group = module.parse(handed_over.pop(), name)
        except ProfileTooLarge as error:
            raise FormatError(module.TITLE, "whole file", str(error)) from None
        group.format = module.NAME
        return group


def _read(path: Path, max_bytes: int, progress: ProgressCallback | None) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_big("input", max_bytes)
        with path.open("rb") as handle:
            if progress is None:
                return handle.read()
            buffer = bytearray(size)
            view = memoryview(buffer)
            done = 0
            while done < size:
                count = handle.readinto(view[done : done + (8 << 20)])
                if not count:
                    break
                done += count
                progress("reading", done, size)
            return bytes(view[:done])
    except OSError as error:
        raise FormatError("input", str(path), error.strerror or str(error)) from None

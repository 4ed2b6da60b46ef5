"""Blobs in S3-compatible object storage: `--storage-url s3://bucket/prefix`.

`S3BlobStorage` implements `storage.BlobStorage` with boto3 (botocore), its
blocking calls run in worker threads. Keys live under the URL's prefix with
the same owner-first layout as the local folder
(`<prefix>/<owner>/traces/<trace>`).

- Where and who: the endpoint comes from `AWS_ENDPOINT_URL_S3` or
  `AWS_ENDPOINT_URL` (none: AWS itself), the region from `AWS_REGION` or
  `AWS_DEFAULT_REGION`, the credentials from boto3's usual chain
  (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, a profile, an instance role).
  A custom endpoint is addressed path-style (MinIO, Ceph, moto).
- Writes stream: chunks are gathered into parts of `part_bytes` (8 MiB by
  default; S3's minimum is 5 MiB) and sent as a multipart upload, so at most
  one part is held in memory. A blob smaller than one part is a single
  `PutObject`. Crossing the size cap, an error in the chunks or a
  cancellation aborts the multipart upload: nothing is stored and no
  pending upload is left behind (all or nothing, as the interface asks).
- Parsing: `local_path` downloads the object to a temporary file that is
  removed when the block ends.
- Downloads are proxied: the server reads the blob and sends it itself, so
  the access rules (`Repository` scoping, share links) decide who gets it.
  No presigned URL is handed out: one would outlive a revoked share link or
  a deleted trace.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread

from flamesight.server.storage import BlobTooLarge, check_key

DEFAULT_PART_BYTES = 8 * 1024 * 1024
MIN_PART_BYTES = 5 * 1024 * 1024
"""S3 refuses parts below this size (the last part excepted)."""

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")


def parse_s3_url(url: str) -> tuple[str, str]:
    """The bucket and key prefix (no slashes around it, may be "") of s3://bucket/prefix."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3" or not parts.netloc:
        raise ValueError(f"{url!r}: give s3://bucket or s3://bucket/prefix")
    prefix = parts.path.strip("/")
    if prefix:
        check_key(prefix)
    return parts.netloc, prefix


def s3_client_from_environment() -> Any:
    """A boto3 S3 client configured by the usual AWS environment variables."""
    import boto3
    from botocore.config import Config

    endpoint = next((os.environ[name] for name in ENDPOINT_VARIABLES if os.environ.get(name)), None)
    region = next((os.environ[name] for name in REGION_VARIABLES if os.environ.get(name)), None)
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        s3={"addressing_style": "path"} if endpoint else {},
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region, config=config
    )


class S3BlobStorage:
    """Blobs as objects of one bucket, under a key prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client: Any = None,
        part_bytes: int = DEFAULT_PART_BYTES,
    ) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"parts must be at least {MIN_PART_BYTES:,} bytes")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client if client is not None else s3_client_from_environment()
        self.part_bytes = part_bytes

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3BlobStorage:
        """The storage an s3://bucket/prefix URL names, its client from the environment."""
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, **options)

    def object_key(self, key: str) -> str:
        """The object key of blob `key`: under the prefix; ValueError for a bad key."""
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def write(
        self, key: str, chunks: AsyncIterable[bytes], max_bytes: int | None = None
    ) -> int:
        """Stream the chunks as a multipart upload (one PutObject when small); all or nothing."""
        name = self.object_key(key)
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        pending: list[bytes] = []
        pending_size = 0
        size = 0
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(max_bytes)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= self.part_bytes:
                    if upload_id is None:
                        created = await self._call(
                            "create_multipart_upload", Bucket=self.bucket, Key=name
                        )
                        upload_id = created["UploadId"]
                    await self._upload_part(name, upload_id, parts, b"".join(pending))
                    pending, pending_size = [], 0
            if upload_id is None:
                await self._call("put_object", Bucket=self.bucket, Key=name, Body=b"".join(pending))
                return size
            if pending:
                await self._upload_part(name, upload_id, parts, b"".join(pending))
            await self._call(
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            if upload_id is not None:
                with anyio.CancelScope(shield=True):
                    with contextlib.suppress(Exception):
                        await self._call(
                            "abort_multipart_upload",
                            Bucket=self.bucket,
                            Key=name,
                            UploadId=upload_id,
                        )
            raise
        return size

    async def _upload_part(
        self, name: str, upload_id: str, parts: list[dict[str, Any]], body: bytes
    ) -> None:
        number = len(parts) + 1
        answer = await self._call(
            "upload_part",
            Bucket=self.bucket,
            Key=name,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def _call(self, operation: str, **arguments: Any) -> Any:
        method = getattr(self.client, operation)
        return await anyio.to_thread.run_sync(lambda: method(**arguments))

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """The object downloaded to a temporary file, removed when the block ends (blocking)."""
        name = self.object_key(key)
        with tempfile.TemporaryDirectory(prefix="flamesight-blob-") as folder:
            path = Path(folder) / key.rsplit("/", 1)[-1]
            try:
                self.client.download_file(self.bucket, name, str(path))
            except Exception as error:
                if _is_missing(error):
                    raise FileNotFoundError(f"no blob {key!r}") from None
                raise
            yield path

    async def exists(self, key: str) -> bool:
        """Whether the object is there (HeadObject)."""
        try:
            await self._call("head_object", Bucket=self.bucket, Key=self.object_key(key))
        except Exception as error:
            if _is_missing(error):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        """Remove the object; S3 answers the same when it is not there."""
        await self._call("delete_object", Bucket=self.bucket, Key=self.object_key(key))


def _is_missing(error: Exception) -> bool:
    """Whether a botocore error says the object (or key) does not exist."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")

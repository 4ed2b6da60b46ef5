"""S3 blob storage against a real S3 HTTP endpoint: moto's standalone server on loopback.

The server (`moto.server.ThreadedMotoServer`) runs on a free 127.0.0.1 port
for the module; each test gets its own bucket, reached through the usual AWS
environment variables (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, ...).
Skipped with a message when moto is not installed.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flamesight import examples
from flamesight.analysis import summary, top_functions
from flamesight.formats import load
from flamesight.server import Settings, create_app
from flamesight.server.s3_storage import MIN_PART_BYTES, S3BlobStorage, parse_s3_url
from flamesight.server.settings import storage_location
from flamesight.server.storage import BlobTooLarge, open_storage, trace_blob_key
from tests.test_server_serve import FLAMESIGHT, START_TIMEOUT, free_port, stop, wait_for_line

pytestmark = pytest.mark.anyio

EXAMPLE = examples.path()
PREFIX = "fleet/blobs"


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio."""
    return "asyncio"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """The URL of moto's S3 server on a loopback port, for the module's tests."""
    moto_server = pytest.importorskip(
        "moto.server", reason="moto[server] is not installed (pip install 'moto[server]')"
    )
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


AWS_VARIABLES = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture
def aws_environment(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AWS variables pointing at the moto server (also set in this process)."""
    for name in ["AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"]:
        monkeypatch.delenv(name, raising=False)
    variables = {**AWS_VARIABLES, "AWS_ENDPOINT_URL": s3_endpoint}
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables


@pytest.fixture
def bucket(aws_environment: dict[str, str]) -> str:
    """A new, empty bucket."""
    name = f"flamesight-{secrets.token_hex(6)}"
    client().create_bucket(Bucket=name)
    return name


def client() -> Any:
    """A plain boto3 client on the moto server (from the environment)."""
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def stored_keys(bucket: str) -> list[str]:
    """Every object key in `bucket`."""
    listing = client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def pending_uploads(bucket: str) -> list[dict[str, Any]]:
    """Multipart uploads started in `bucket` and neither completed nor aborted."""
    return client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """`data` in pieces, as a request body arrives."""
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


# --- URLs --------------------------------------------------------------------


def test_storage_urls_are_read() -> None:
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert storage_location("s3://bucket/prefix") == "s3://bucket/prefix"
    assert storage_location("file:///srv/blobs") == Path("/srv/blobs")
    for bad in ["s3:///prefix", "https://example.com/x", "file://host/share"]:
        with pytest.raises(ValueError):
            storage_location(bad)
    with pytest.raises(ValueError, match="bad blob key"):
        parse_s3_url("s3://bucket/../up")


def test_settings_take_the_storage_url_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLAMESIGHT_STORAGE_DIR", raising=False)
    monkeypatch.setenv("FLAMESIGHT_STORAGE_URL", "s3://bucket/prefix")
    settings = Settings.from_environment(data_dir=tmp_path)
    assert settings.storage_url == "s3://bucket/prefix"
    local = Settings.from_environment(data_dir=tmp_path, storage_url=(tmp_path / "b").as_uri())
    assert (local.storage_url, local.resolved_storage_dir) == (None, tmp_path / "b")
    flag = Settings.from_environment(data_dir=tmp_path, storage_dir=tmp_path / "d")
    assert (flag.storage_url, flag.resolved_storage_dir) == (None, tmp_path / "d")


# --- the storage -------------------------------------------------------------


async def test_write_read_and_delete_small_and_multipart(bucket: str) -> None:
    storage = open_storage(Settings(storage_url=f"s3://{bucket}/{PREFIX}"))
    assert isinstance(storage, S3BlobStorage)
    storage = S3BlobStorage.from_url(f"s3://{bucket}/{PREFIX}", part_bytes=MIN_PART_BYTES)
    small_key = trace_blob_key("owner1", "small")
    big_key = trace_blob_key("owner1", "big")
    small = b"a small blob"
    big = os.urandom(2 * MIN_PART_BYTES + 12345)  # three parts
    assert await storage.write(small_key, chunks_of(small)) == len(small)
    assert await storage.write(big_key, chunks_of(big, 1024 * 1024)) == len(big)
    assert stored_keys(bucket) == [f"{PREFIX}/owner1/traces/big", f"{PREFIX}/owner1/traces/small"]
    assert pending_uploads(bucket) == []
    assert await storage.exists(big_key)
    with storage.local_path(big_key) as path:
        assert path.read_bytes() == big
        assert path.name == "big"
    assert not path.exists()
    with storage.local_path(small_key) as path:
        assert path.read_bytes() == small

    await storage.delete(big_key)
    assert not await storage.exists(big_key)
    await storage.delete(big_key)  # not there: no error
    with pytest.raises(FileNotFoundError), storage.local_path(big_key):
        pass
    assert stored_keys(bucket) == [f"{PREFIX}/owner1/traces/small"]
    with pytest.raises(ValueError, match="bad blob key"):
        await storage.write("owner1/../x", chunks_of(small))


async def test_the_size_cap_aborts_the_multipart_upload(bucket: str) -> None:
    storage = S3BlobStorage(bucket, PREFIX, part_bytes=MIN_PART_BYTES)
    key = trace_blob_key("owner1", "huge")
    data = os.urandom(3 * MIN_PART_BYTES)
    with pytest.raises(BlobTooLarge):
        # the first part is uploaded before the cap is crossed
        await storage.write(key, chunks_of(data, 1024 * 1024), max_bytes=MIN_PART_BYTES + 100)
    assert stored_keys(bucket) == []
    assert pending_uploads(bucket) == []
    assert not await storage.exists(key)


async def test_a_failing_stream_leaves_nothing(bucket: str) -> None:
    storage = S3BlobStorage(bucket, PREFIX, part_bytes=MIN_PART_BYTES)

    async def broken() -> AsyncIterator[bytes]:
        async for chunk in chunks_of(os.urandom(MIN_PART_BYTES + 1000), 1024 * 1024):
            yield chunk
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await storage.write(trace_blob_key("owner1", "broken"), broken())
    assert stored_keys(bucket) == []
    assert pending_uploads(bucket) == []


# --- through the API ---------------------------------------------------------


async def test_api_uploads_to_s3_refuses_corrupt_files_and_deletes(
    bucket: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", storage_url=f"s3://{bucket}/{PREFIX}")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert isinstance(app.state.flamesight.storage, S3BlobStorage)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as api:
            response = await api.post(
                "/api/traces", content=b"\x00\x01 this is not a profile \xff" * 10
            )
            assert response.status_code == 422, response.text
            assert response.json()["error"]["code"] == "unreadable_profile"
            assert stored_keys(bucket) == []
            assert pending_uploads(bucket) == []

            response = await api.post(
                "/api/traces",
                content=EXAMPLE.read_bytes(),
                headers={"content-disposition": f'attachment; filename="{EXAMPLE.name}"'},
            )
            assert response.status_code == 201, response.text
            trace = response.json()
            owner = app.state.flamesight.local_owner_id
            assert stored_keys(bucket) == [f"{PREFIX}/{owner}/traces/{trace['id']}"]

    # a restarted server has an empty cache: it reads the trace back from the bucket
    group = load(EXAMPLE)
    base = f"/api/traces/{trace['id']}"
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as api:
            top = await api.get(f"{base}/top", params={"n": "0"})
            assert top.status_code == 200, top.text
            assert top.json() == top_functions(group.active, n=None).to_dict()
            summarized = await api.get(f"{base}/summary")
            assert summarized.status_code == 200, summarized.text
            assert summarized.json()["markdown"] == summary(group).markdown
            assert app.state.flamesight.cache.stats.parses == 1

            assert (await api.delete(base)).status_code in (200, 204)
            assert stored_keys(bucket) == []


# --- flamesight serve as a process -------------------------------------------


def test_serve_with_an_s3_url_uploads_into_the_bucket(
    bucket: str, aws_environment: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    environment = {**os.environ, **aws_environment, "PYTHONUNBUFFERED": "1"}
    for name in ["FLAMESIGHT_DATABASE_URL", "FLAMESIGHT_STORAGE_DIR", "FLAMESIGHT_REDIS_URL"]:
        environment.pop(name, None)
    process = subprocess.Popen(
        [
            str(FLAMESIGHT),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            "--storage-url",
            f"s3://{bucket}/{PREFIX}",
            "--open",
            str(EXAMPLE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    try:
        line = wait_for_line(process, "/api/traces/")
        trace_id = line.rsplit("/", 1)[1].strip()
        keys = stored_keys(bucket)
        assert len(keys) == 1
        assert keys[0].startswith(f"{PREFIX}/")
        assert keys[0].endswith(f"/traces/{trace_id}")
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/traces/{trace_id}/top")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start listening"
                assert process.poll() is None, "the server exited"
                time.sleep(0.2)
        assert response.status_code == 200, response.text
        assert response.json() == top_functions(load(EXAMPLE).active).to_dict()
        assert not list((tmp_path / "data").glob("blobs/**/*.json"))
    finally:
        stop(process)

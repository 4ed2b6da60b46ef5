"""The server's REST API and repository, on real SQLite and real PostgreSQL.

Every test that touches a database runs twice: on a SQLite file in a
temporary folder and on a freshly created database of the PostgreSQL server
at 127.0.0.1:5432 (dropped afterwards), skipped with a message when that
server does not answer. Requests go through httpx's ASGI transport to the
real app, with its lifespan (migrations, storage, cache) run as uvicorn
would.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from PIL import Image

from flamesight import examples
from flamesight.analysis import call_tree, summary, top_functions
from flamesight.formats import load
from flamesight.server import Settings, create_app
from flamesight.server.repository import NotFound, ensure_user
from flamesight.server.state import ServerState
from tests.conftest import CONFORMANCE

pytestmark = pytest.mark.anyio

POSTGRES_ADMIN_DSN = os.environ.get(
    "FLAMESIGHT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
"""A database on the test PostgreSQL server to connect to while creating one per test."""

CONFORMANCE_FILES = [
    "Chrome/65/simple.cpuprofile",
    "pprof/simple.prof",
    "stackcollapse/simple.txt",
    "linux-perf/forks.linux-perf.txt",
    "trace-event/multiprocess.json",
]

EXAMPLE = examples.path()


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio (the loop uvicorn uses)."""
    return "asyncio"


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """The async URL of a new, empty PostgreSQL database, dropped on exit; a skip without a server."""
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_DSN}: {error}")
    name = f"flamesight_test_{secrets.token_hex(6)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield f"{dsn}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
        return
    async with fresh_postgres_database() as url:
        yield url


class Server:
    """A started app, a client for it and its state."""

    def __init__(self, client: httpx.AsyncClient, state: ServerState) -> None:
        self.client = client
        self.state = state

    async def upload(self, path: Path, **params: str) -> dict[str, Any]:
        """Upload `path` as a raw body named by a Content-Disposition header; the new trace."""
        response = await self.client.post(
            "/api/traces",
            content=path.read_bytes(),
            params=params,
            headers={"content-disposition": f'attachment; filename="{path.name}"'},
        )
        assert response.status_code == 201, response.text
        return response.json()

    def blob_files(self) -> list[Path]:
        """Every file in the blob folder, temporary ones included."""
        root = self.state.settings.resolved_storage_dir
        return [path for path in root.rglob("*") if path.is_file()]


ServerFactory = Callable[..., AbstractAsyncContextManager[Server]]


@pytest.fixture
def start_server(database_url: str, tmp_path: Path) -> ServerFactory:
    """Start the app on the test database with some settings changed."""

    @asynccontextmanager
    async def started(**overrides: Any) -> AsyncIterator[Server]:
        settings = Settings(data_dir=tmp_path / "data", database_url=database_url, **overrides)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield Server(client, app.state.flamesight)

    return started


@pytest.fixture
async def server(start_server: ServerFactory) -> AsyncIterator[Server]:
    """The app with default settings on the test database."""
    async with start_server() as started:
        yield started


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> str:
    """Check the status and the error shape; the message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error["message"]


# --- uploads -----------------------------------------------------------------


async def test_upload_the_example_and_read_it_back(server: Server) -> None:
    trace = await server.upload(EXAMPLE)
    group = load(EXAMPLE)
    assert trace["name"] == EXAMPLE.name
    assert trace["format"] == "speedscope"
    assert trace["size"] == EXAMPLE.stat().st_size
    assert [p["name"] for p in trace["profiles"]] == [p.name for p in group.profiles]
    assert trace["profiles"][0]["samples"] == len(group.active.samples)
    fetched = (await server.client.get(f"/api/traces/{trace['id']}")).json()
    assert fetched == trace
    assert len(trace["id"]) >= 16


@pytest.mark.parametrize("relative", CONFORMANCE_FILES)
async def test_upload_conformance_files_and_top_matches_the_library(
    server: Server, relative: str, conformance_dir: Path
) -> None:
    path = CONFORMANCE / "profiles" / relative
    trace = await server.upload(path)
    group = load(path)
    assert trace["format"] == group.format
    assert len(trace["profiles"]) == len(group.profiles)
    for index, profile in enumerate(group.profiles):
        response = await server.client.get(
            f"/api/traces/{trace['id']}/top", params={"profile": str(index), "n": "0"}
        )
        assert response.status_code == 200, response.text
        expected = top_functions(profile, n=None).to_dict()
        assert response.json() == expected


async def test_multipart_upload_takes_the_file_name(server: Server) -> None:
    files = {"file": ("my-profile.json", EXAMPLE.read_bytes(), "application/json")}
    response = await server.client.post("/api/traces", files=files)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "my-profile.json"
    named = await server.upload(EXAMPLE, name="chosen name")
    assert named["name"] == "chosen name"


async def test_multipart_without_a_file_is_refused(server: Server) -> None:
    response = await server.client.post("/api/traces", data={"other": "x"}, files={})
    # httpx sends an urlencoded form without files: not multipart, so it is an unreadable file
    assert response.status_code in (400, 422)
    boundary = "XyZ"
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n--{boundary}--\r\n'
    response = await server.client.post(
        "/api/traces",
        content=body.encode(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "no file" in assert_error(response, 400, "bad_request")
    assert server.blob_files() == []


async def test_corrupt_upload_is_422_and_leaves_nothing(server: Server) -> None:
    await server.upload(EXAMPLE)
    before = (await server.client.get("/api/traces")).json()
    blobs_before = server.blob_files()
    response = await server.client.post(
        "/api/traces", content=b"\x00\x01 this is not a profile \xff" * 10, params={"name": "bad"}
    )
    message = assert_error(response, 422, "unreadable_profile")
    assert "not a profile" in message or "cannot" in message or "format" in message
    truncated = EXAMPLE.read_bytes()[:5000]
    response = await server.client.post("/api/traces", content=truncated)
    assert_error(response, 422, "unreadable_profile")
    assert (await server.client.get("/api/traces")).json() == before
    assert server.blob_files() == blobs_before


async def test_upload_over_the_limit_is_413_and_leaves_nothing(
    start_server: ServerFactory,
) -> None:
    async with start_server(max_upload_bytes=10_000) as server:
        data = EXAMPLE.read_bytes()
        assert len(data) > 10_000

        async def stream() -> AsyncIterator[bytes]:
            # No Content-Length: the limit is enforced while the body streams in.
            for offset in range(0, len(data), 4096):
                yield data[offset : offset + 4096]

        response = await server.client.post("/api/traces", content=stream())
        assert_error(response, 413, "too_large")
        response = await server.client.post("/api/traces", content=data)
        assert_error(response, 413, "too_large")
        files = {"file": ("big.json", data, "application/json")}
        response = await server.client.post("/api/traces", files=files)
        assert_error(response, 413, "too_large")
        assert (await server.client.get("/api/traces")).json()["total"] == 0
        assert server.blob_files() == []


# --- listing, fetching, deleting ---------------------------------------------


async def test_list_is_newest_first_and_paginated(server: Server) -> None:
    ids = [(await server.upload(EXAMPLE, name=f"trace {n}"))["id"] for n in range(5)]
    newest_first = list(reversed(ids))
    first = (await server.client.get("/api/traces", params={"limit": 2})).json()
    assert [t["id"] for t in first["traces"]] == newest_first[:2]
    assert (first["total"], first["next_offset"]) == (5, 2)
    second = (await server.client.get("/api/traces", params={"limit": 2, "offset": 2})).json()
    assert [t["id"] for t in second["traces"]] == newest_first[2:4]
    last = (await server.client.get("/api/traces", params={"limit": 2, "offset": 4})).json()
    assert [t["id"] for t in last["traces"]] == newest_first[4:]
    assert last["next_offset"] is None
    assert_error(await server.client.get("/api/traces", params={"limit": 0}), 422)


async def test_delete_removes_row_blob_and_cache(server: Server) -> None:
    trace = await server.upload(EXAMPLE)
    assert len(server.blob_files()) == 1
    response = await server.client.delete(f"/api/traces/{trace['id']}")
    assert response.status_code == 204
    assert server.blob_files() == []
    assert len(server.state.cache) == 0
    assert_error(await server.client.get(f"/api/traces/{trace['id']}"), 404, "not_found")
    assert_error(await server.client.delete(f"/api/traces/{trace['id']}"), 404, "not_found")


async def test_unknown_ids_are_404_on_every_endpoint(server: Server) -> None:
    for suffix in ["", "/profiles", "/top", "/summary", "/tree", "/search?q=x", "/render"]:
        response = await server.client.get(f"/api/traces/no-such-trace{suffix}")
        assert_error(response, 404, "not_found")
    assert_error(await server.client.delete("/api/traces/no-such-trace"), 404, "not_found")
    assert_error(await server.client.get("/api/nothing-here"), 404)


# --- analysis ----------------------------------------------------------------


async def test_summary_and_tree_equal_the_library(server: Server) -> None:
    trace = await server.upload(EXAMPLE)
    group = load(EXAMPLE)
    profile = group.active
    middle = (profile.start + profile.end) / 2
    base = f"/api/traces/{trace['id']}"

    response = await server.client.get(f"{base}/summary", params={"budget": 1500, "end": middle})
    assert response.status_code == 200, response.text
    expected = summary(group, None, middle, 1500)
    assert response.json()["data"] == expected.data
    assert response.json()["markdown"] == expected.markdown
    markdown = await server.client.get(f"{base}/summary", params={"format": "markdown"})
    assert markdown.text == summary(group).markdown

    tree = (await server.client.get(f"{base}/tree", params={"depth": 4, "min_pct": 1})).json()
    assert tree == call_tree(profile, depth=4, min_pct=1).to_dict()

    top = (await server.client.get(f"{base}/top", params={"by": "total", "start": "1s"})).json()
    assert top == top_functions(profile, "total", 20, start=1.0).to_dict()


async def test_profiles_search_tree_of_a_function_and_diff(server: Server) -> None:
    trace = await server.upload(EXAMPLE)
    base = f"/api/traces/{trace['id']}"
    profiles = (await server.client.get(f"{base}/profiles")).json()
    assert profiles["active_profile"] == 0
    assert profiles["profiles"][0]["share_pct"] == pytest.approx(100.0)

    found = (await server.client.get(f"{base}/search", params={"q": "strptime"})).json()
    assert found["functions"] and all(
        "strptime" in f["name"].lower() or "strptime" in (f["file"] or "").lower()
        for f in found["functions"]
    )
    name = found["functions"][0]["name"]
    callers_tree = (
        await server.client.get(f"{base}/tree", params={"function": name, "direction": "callers"})
    ).json()
    assert callers_tree["direction"] == "callers"
    assert callers_tree["roots"][0]["name"] == name

    diff = await server.client.get(
        f"{base}/diff",
        params={"before_start": 0, "before_end": "2s", "after_start": "2s", "after_end": "4s"},
    )
    assert diff.status_code == 200, diff.text
    assert diff.json()["functions"]
    other = await server.upload(EXAMPLE)
    same = (await server.client.get(f"{base}/diff", params={"other": other["id"]})).json()
    assert all(change["status"] == "same" for change in same["functions"])


async def test_bad_parameters_are_400_in_the_error_shape(server: Server) -> None:
    trace = await server.upload(EXAMPLE)
    base = f"/api/traces/{trace['id']}"
    assert "no profile" in assert_error(
        await server.client.get(f"{base}/top", params={"profile": "nope"}), 400, "bad_parameter"
    )
    assert_error(await server.client.get(f"{base}/top", params={"start": "soon"}), 400)
    assert_error(await server.client.get(f"{base}/top", params={"start": "2s", "end": "1s"}), 400)
    assert_error(await server.client.get(f"{base}/tree", params={"function": "no_such_fn"}), 400)
    assert_error(await server.client.get(f"{base}/diff"), 400, "bad_parameter")
    assert_error(await server.client.get(f"{base}/render", params={"view": "spiral"}), 400)
    assert_error(await server.client.get(f"{base}/top", params={"by": "weird"}), 422)


# --- rendering ---------------------------------------------------------------


async def test_render_png_and_svg_of_a_stored_trace(server: Server) -> None:
    trace = await server.upload(EXAMPLE)
    response = await server.client.get(
        f"/api/traces/{trace['id']}/render",
        params={"width": 640, "view": "flamechart", "end": "2s", "theme": "dark"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    assert image.width == 640
    svg = await server.client.get(
        f"/api/traces/{trace['id']}/render", params={"format": "svg", "width": 500}
    )
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.lstrip().startswith(("<?xml", "<svg"))


async def test_post_render_is_compatible_with_flamechart_server(server: Server) -> None:
    response = await server.client.post(
        "/render",
        content=EXAMPLE.read_bytes(),
        headers={"content-type": "text/plain"},
        params={
            "width": 800,
            "height": 300,
            "startTimeMs": 100,
            "endTimeMs": 2000,
            "startDepth": 2,
            "mode": "dark",
            "flamegraphThemeName": "fire",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert (image.width, image.height) == (800, 300)
    assert (await server.client.get("/api/traces")).json()["total"] == 0
    bad = await server.client.post("/render", content=b"garbage\x00\x01")
    assert_error(bad, 422, "unreadable_profile")
    assert_error(await server.client.post("/render?mode=purple", content=b"x"), 400)


# --- the cache ---------------------------------------------------------------


async def test_profiles_are_parsed_once(server: Server) -> None:
    trace = await server.upload(EXAMPLE)
    assert server.state.cache.stats.parses == 1
    base = f"/api/traces/{trace['id']}"
    for suffix in ["/top", "/summary", "/tree", "/profiles", "/search?q=main", "/render"]:
        assert (await server.client.get(base + suffix)).status_code == 200
    assert server.state.cache.stats.parses == 1


async def test_a_restarted_server_parses_once_then_serves_from_memory(
    start_server: ServerFactory,
) -> None:
    async with start_server() as first:
        trace = await first.upload(EXAMPLE)
    async with start_server() as second:
        assert second.state.cache.stats.parses == 0
        for _ in range(3):
            response = await second.client.get(f"/api/traces/{trace['id']}/top")
            assert response.status_code == 200
        assert second.state.cache.stats.parses == 1
        assert second.state.cache.stats.hits == 2


async def test_a_cache_too_small_for_a_profile_parses_it_every_time(
    start_server: ServerFactory,
) -> None:
    async with start_server(cache_bytes=1000) as server:
        trace = await server.upload(EXAMPLE)
        await server.client.get(f"/api/traces/{trace['id']}/top")
        await server.client.get(f"/api/traces/{trace['id']}/top")
        assert server.state.cache.stats.parses == 3
        assert server.state.cache.bytes_used == 0


# --- access ------------------------------------------------------------------


async def test_another_owners_trace_is_not_found(server: Server) -> None:
    trace = await server.upload(EXAMPLE)
    sessions = server.state.sessions
    owner = server.state.repository(server.state.local_owner_id)
    stranger_id = await ensure_user(sessions, "stranger")
    assert stranger_id != server.state.local_owner_id
    assert await ensure_user(sessions, "stranger") == stranger_id
    stranger = server.state.repository(stranger_id)

    with pytest.raises(NotFound):
        await stranger.get_trace(trace["id"])
    with pytest.raises(NotFound):
        await stranger.delete_trace(trace["id"])
    page = await stranger.list_traces(50)
    assert (page.traces, page.total) == ([], 0)
    assert (await owner.get_trace(trace["id"])).id == trace["id"]

    theirs = await stranger.add_trace(
        trace_id="theirs-0001",
        name="theirs",
        format="collapsed",
        size=1,
        blob_key=f"{stranger_id}/traces/theirs-0001",
        active_profile=0,
        profiles=[],
    )
    with pytest.raises(NotFound):
        await owner.get_trace(theirs.id)
    assert [t.id for t in (await owner.list_traces(50)).traces] == [trace["id"]]
    # Through the API (the caller is the local owner), their trace does not exist.
    for suffix in ["", "/top", "/render"]:
        assert_error(await server.client.get(f"/api/traces/{theirs.id}{suffix}"), 404)
    assert_error(await server.client.delete(f"/api/traces/{theirs.id}"), 404)
    assert (await stranger.get_trace(theirs.id)).name == "theirs"


async def test_openapi_docs_are_served(server: Server) -> None:
    assert (await server.client.get("/docs")).status_code == 200
    schema = (await server.client.get("/openapi.json")).json()
    assert "/api/traces" in schema["paths"]
    assert "/render" in schema["paths"]

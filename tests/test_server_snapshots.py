"""Snapshots the chat draws: read through a share link of their trace, deleted with it.

A real chat turn (uvicorn on loopback, the scripted model asking for a
flame graph) stores a snapshot; a share link of the trace serves it (and
the viewer's data and layout) read only, a link of another trace does not;
deleting the trace removes the snapshot's blob with the trace's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from flamesight.server import Settings
from tests.live_server import LiveServer
from tests.llm_servers import LoopbackServer, openai_stream, openai_tool_calls
from tests.test_server_analyze import upload
from tests.test_server_api import anyio_backend, database_url  # noqa: F401 (fixtures)
from tests.test_server_chat import send, start, until_turn_ends

pytestmark = pytest.mark.anyio


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:  # noqa: F811
    """The app on uvicorn on a loopback port, on the test database."""
    with LiveServer(Settings(data_dir=tmp_path / "data", database_url=database_url)) as server:
        yield server


def blob_files(live: LiveServer) -> set[str]:
    """The blob keys stored (temporary files included)."""
    root = live.settings.resolved_storage_dir
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


async def test_share_links_serve_snapshots_and_deleting_the_trace_removes_them(
    live: LiveServer,
) -> None:
    model = LoopbackServer(openai_stream(["Drawn."]))
    model.script(openai_tool_calls([("render_flamegraph", {"width": 400, "height": 200})]))
    with model:
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
            trace_id = await upload(client)
            other_id = await upload(client)
            async with connect(live.ws_url) as socket:
                await start(socket, trace_id, model.url)
                await send(socket, type="user_prompt", prompt="Draw it.")
                events = await until_turn_ends(socket)
            image_url = next(e["imageUrl"] for e in events if e["type"] == "tool_end")
            snapshot_id = image_url.rsplit("/", 1)[1]
            keys = blob_files(live)
            snapshot_keys = {key for key in keys if "/snapshots/" in key}
            assert len(snapshot_keys) == 1 and snapshot_id in next(iter(snapshot_keys))

            share = (await client.post(f"/api/traces/{trace_id}/share")).json()
            other_share = (await client.post(f"/api/traces/{other_id}/share")).json()
            own = await client.get(image_url)
            async with httpx.AsyncClient(base_url=live.url, timeout=60) as anonymous:
                shared = await anonymous.get(f"{share['url']}/snapshots/{snapshot_id}")
                assert shared.status_code == 200, shared.text
                assert shared.headers["content-type"] == "image/png"
                assert shared.content == own.content and shared.content.startswith(b"\x89PNG")
                # A link to another trace, or an unknown snapshot: nothing.
                elsewhere = await anonymous.get(f"{other_share['url']}/snapshots/{snapshot_id}")
                assert elsewhere.status_code == 404
                unknown = await anonymous.get(f"{share['url']}/snapshots/nope")
                assert unknown.status_code == 404
                # The viewer's data and layout, the same as the owner's.
                for suffix in ["viewer", "layout?width=300"]:
                    through_link = await anonymous.get(f"{share['url']}/{suffix}")
                    assert through_link.status_code == 200, (suffix, through_link.text)
                    direct = await client.get(f"/api/traces/{trace_id}/{suffix}")
                    assert through_link.content == direct.content

                deleted = await client.delete(f"/api/traces/{trace_id}")
                assert deleted.status_code == 204
                assert (await client.get(image_url)).status_code == 404
                gone = await anonymous.get(f"{share['url']}/snapshots/{snapshot_id}")
                assert gone.status_code == 404
    left = blob_files(live)
    assert not left & snapshot_keys
    assert not [key for key in left if trace_id in key]
    assert [key for key in left if key.endswith(f"/traces/{other_id}")]

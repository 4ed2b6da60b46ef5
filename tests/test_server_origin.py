"""Pages of other websites cannot change anything on the server, in single-user mode included.

A browser visiting another site may be made to POST, DELETE or open a
WebSocket to the local server; it then sends `Origin` (and `Sec-Fetch-Site`)
naming that site, and the server refuses with 403. Same-origin requests
and scripts (no `Origin`) work as before.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from flamesight.server import Settings
from tests.live_server import LiveServer
from tests.test_server_api import (  # noqa: F401 (fixtures)
    EXAMPLE,
    Server,
    anyio_backend,
    assert_error,
    database_url,
    server,
    start_server,
)

pytestmark = pytest.mark.anyio

ELSEWHERE = {"origin": "https://attacker.example"}


def upload_request(headers: dict[str, str]) -> dict[str, object]:
    """Keyword arguments of a raw-body upload of the example with extra headers."""
    return {
        "content": EXAMPLE.read_bytes(),
        "headers": {"content-disposition": f'attachment; filename="{EXAMPLE.name}"', **headers},
    }


async def test_cross_site_writes_are_refused_and_same_site_ones_work(server: Server) -> None:  # noqa: F811
    client = server.client
    for refused in [
        ELSEWHERE,
        {"origin": "null"},
        {"origin": "http://test:8080"},
        {"sec-fetch-site": "cross-site"},
        {"origin": "http://test", "sec-fetch-site": "cross-site"},
    ]:
        response = await client.post("/api/traces", **upload_request(refused))
        assert_error(response, 403, "cross_site")
    assert (await client.get("/api/traces")).json()["total"] == 0
    assert server.blob_files() == []

    # The server's own origin, and a script that sends no Origin at all.
    same = await client.post(
        "/api/traces", **upload_request({"origin": "http://test", "sec-fetch-site": "same-origin"})
    )
    assert same.status_code == 201, same.text
    script = await client.post("/api/traces", **upload_request({}))
    assert script.status_code == 201, script.text

    trace_url = f"/api/traces/{same.json()['id']}"
    assert_error(await client.delete(trace_url, headers=ELSEWHERE), 403, "cross_site")
    assert_error(
        await client.delete(trace_url, headers={"sec-fetch-site": "cross-site"}), 403, "cross_site"
    )
    assert_error(await client.post(f"{trace_url}/share", headers=ELSEWHERE), 403, "cross_site")
    assert_error(await client.post("/render", content=b"main 1\n", headers=ELSEWHERE), 403)
    # Reading is not refused (another site cannot read the answer without CORS).
    assert (await client.get(trace_url, headers=ELSEWHERE)).status_code == 200
    assert (await client.delete(trace_url, headers={"origin": "http://test"})).status_code == 204
    assert (await client.delete(f"/api/traces/{script.json()['id']}")).status_code == 204


async def test_a_websocket_from_another_site_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with LiveServer(settings) as live:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(live.ws_url, origin="https://attacker.example"):
                pass
        assert refused.value.response.status_code == 403
        async with connect(live.ws_url, origin=live.url) as socket:  # the server's own page
            await socket.send('{"type": "resume", "sessionId": "nope", "afterSeq": 0}')
            assert "no chat session" in await socket.recv()
        async with connect(live.ws_url) as socket:  # a script: no Origin
            await socket.send('{"type": "resume", "sessionId": "nope", "afterSeq": 0}')
            assert "no chat session" in await socket.recv()
        async with httpx.AsyncClient(base_url=live.url) as client:
            response = await client.post("/api/traces", **upload_request(ELSEWHERE))
            assert_error(response, 403, "cross_site")

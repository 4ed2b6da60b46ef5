"""Send to LLM over server-sent events, on a real uvicorn, SQLite and PostgreSQL.

The model and OAuth token endpoints are real HTTP servers on loopback
(`tests.llm_servers`); the server runs on uvicorn on a free loopback port
(`tests.live_server`). Refused URLs are refused before any request leaves,
and no credential is left in a table, a blob or a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from flamesight.server import Settings
from tests.live_server import LiveServer, example_bytes, secrets_left
from tests.llm_servers import (
    LoopbackServer,
    Reply,
    TokenIssuer,
    openai_error,
    openai_stream,
    require,
)
from tests.test_server_api import anyio_backend, database_url  # noqa: F401 (fixtures)

pytestmark = pytest.mark.anyio

API_KEY = "sk-test-analyze-key-1b9f0c2e"
CLIENT_SECRET = "oauth-client-secret-77d1e4"
PIECES = ["The hottest ", "function is ", "`parse`."]
METADATA = "http://169.254.169.254/latest/meta-data/"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:  # noqa: F811
    """Server settings on the test database, data in a temporary folder."""
    return Settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveServer]:
    """The app on uvicorn on a loopback port."""
    with LiveServer(settings) as server:
        yield server


def bearer_is(key: str) -> Any:
    """A check that a request carries `key` as its Bearer token."""
    return lambda request: request.headers.get("authorization") == f"Bearer {key}"


def redirect_to(location: str) -> Reply:
    """A 307 to `location`."""
    return lambda exchange: exchange.send(307, "text/plain", b"", {"Location": location})


async def upload(client: httpx.AsyncClient) -> str:
    """Upload the example profile; its trace id."""
    name, data = example_bytes()
    response = await client.post(
        "/api/traces",
        content=data,
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def analyze(
    client: httpx.AsyncClient, trace_id: str, body: dict[str, Any]
) -> tuple[httpx.Response, list[tuple[str, Any]]]:
    """POST analyze; the response and its server-sent events as (event, data) pairs."""
    events: list[tuple[str, Any]] = []
    async with client.stream("POST", f"/api/traces/{trace_id}/analyze", json=body) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            name = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, orjson.loads(line[6:])))
        else:
            await response.aread()
    return response, events


async def test_analyze_streams_the_answer_and_keeps_it(
    live: LiveServer, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reply = require(bearer_is(API_KEY), openai_stream(PIECES), openai_error(401, "bad key"))
    with LoopbackServer(reply) as model:
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
            trace_id = await upload(client)
            body = {
                "preset": 2,
                "url": model.url + "/v1",
                "model": "gpt-4o",
                "auth": {"apiKey": API_KEY},
            }
            response, events = await analyze(client, trace_id, body)
            assert response.status_code == 200
            texts = [data["text"] for name, data in events if name == "text"]
            assert texts == PIECES
            name, done = events[-1]
            assert name == "done"
            assert done["answer"] == "".join(PIECES)
            assert done["prompt"] == "Find the most time-consuming functions"
            assert done["usage"]["total_tokens"] == 1248
            assert done["duration_seconds"] >= 0
            listing = (await client.get(f"/api/traces/{trace_id}/analyses")).json()
            assert [item["id"] for item in listing["analyses"]] == [done["id"]]
            markdown = await client.get(done["markdown_url"])
            assert markdown.status_code == 200
            assert markdown.headers["content-type"].startswith("text/markdown")
            assert "".join(PIECES) in markdown.text and "Time taken" in markdown.text
            single = (await client.get(done["url"])).json()
            assert single["answer"] == done["answer"]
            missing = await client.get("/api/analyses/nope.md")
            assert missing.status_code == 404
    request = model.requests[0].json()
    assert request["model"] == "gpt-4o" and request["stream"] is True
    live.stop()
    assert await secrets_left(settings, [API_KEY]) == []
    assert not [r for r in caplog.records if API_KEY in r.getMessage()]


async def test_analyze_with_oauth_client_credentials(
    live: LiveServer, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    issuer = TokenIssuer("flamesight-web", CLIENT_SECRET)
    with (
        LoopbackServer(issuer) as tokens,
        LoopbackServer(
            require(issuer.bearer_is_valid, openai_stream(PIECES), openai_error(401, "no"))
        ) as model,
    ):
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
            trace_id = await upload(client)
            block = f"{tokens.url}/oauth2/token\nflamesight-web\n{CLIENT_SECRET}\n"
            body = {"prompt": "Why is it slow?", "url": model.url, "auth": {"oauth": block}}
            response, events = await analyze(client, trace_id, body)
    assert response.status_code == 200
    assert events[-1][0] == "done" and events[-1][1]["answer"] == "".join(PIECES)
    assert issuer.issued and len(model.requests) == 1
    live.stop()
    secrets = [CLIENT_SECRET, *issuer.issued]
    assert await secrets_left(settings, secrets) == []
    assert not [r for r in caplog.records if any(s in r.getMessage() for s in secrets)]


@pytest.mark.parametrize(
    ("url", "oauth_url", "said"),
    [
        (METADATA, None, "169.254.169.254"),
        ("file:///etc/passwd", None, "http:// or https://"),
        ("http://[fe80::1]:8080/v1", None, "fe80::1"),
        ("http://[fd00:ec2::254]/v1", None, "metadata"),
        ("MODEL", "http://169.254.169.254/token", "token URL"),
        ("MODEL", "file:///etc/shadow", "token URL"),
    ],
)
async def test_refused_urls_are_400_before_anything_is_sent(
    live: LiveServer, url: str, oauth_url: str | None, said: str
) -> None:
    with LoopbackServer(openai_stream(PIECES)) as model:
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
            trace_id = await upload(client)
            body: dict[str, Any] = {"url": model.url if url == "MODEL" else url}
            if oauth_url is not None:
                body["auth"] = {"oauth": f"{oauth_url}\nid\n{CLIENT_SECRET}"}
            response, events = await analyze(client, trace_id, body)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] in ("url_refused", "bad_request")
            assert said in error["message"]
            assert CLIENT_SECRET not in response.text
            assert events == []
            listing = (await client.get(f"/api/traces/{trace_id}/analyses")).json()
            assert listing["analyses"] == []
    assert model.requests == []


async def test_a_redirect_to_a_metadata_address_is_not_followed(live: LiveServer) -> None:
    with LoopbackServer(redirect_to(METADATA)) as model:
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
            trace_id = await upload(client)
            body = {"url": model.url + "/v1", "auth": {"apiKey": API_KEY}}
            response, _ = await analyze(client, trace_id, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "url_refused"
    assert "169.254.169.254" in error["message"] and API_KEY not in response.text
    assert model.requests and all(r.path == "/v1/chat/completions" for r in model.requests)


async def test_a_failing_model_is_502_and_nothing_is_kept(live: LiveServer) -> None:
    with LoopbackServer(openai_error(500, "the model fell over")) as model:
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
            trace_id = await upload(client)
            body = {"url": model.url, "auth": {"apiKey": API_KEY}}
            response, _ = await analyze(client, trace_id, body)
            assert response.status_code == 502
            assert response.json()["error"]["code"] == "model_failed"
            assert "HTTP 500" in response.json()["error"]["message"]
            listing = (await client.get(f"/api/traces/{trace_id}/analyses")).json()
            assert listing["analyses"] == []
            unknown = await client.post("/api/traces/nope/analyze", json=body)
            assert unknown.status_code == 404

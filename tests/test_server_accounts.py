"""Accounts, sessions, CSRF, API tokens, share links and access, on SQLite and PostgreSQL.

Users are created by the real `flamesight users` command (a subprocess) or
the same account function it calls; requests go through httpx's ASGI
transport to the real app, and `flamesight upload` talks to a real uvicorn
on a loopback port.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from flamesight import examples
from flamesight.cli import main as cli_main
from flamesight.server import Settings, create_app
from flamesight.server.accounts import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    add_account,
    token_digest,
)
from flamesight.server.state import ServerState
from flamesight.server.tables import Base
from tests.test_server_api import (  # noqa: F401  (fixtures)
    anyio_backend,
    assert_error,
    database_url,
)
from tests.test_server_serve import free_port, stop, wait_for_line

pytestmark = pytest.mark.anyio

FLAMESIGHT = Path(sys.executable).with_name("flamesight")
EXAMPLE = examples.path()
ALICE_PASSWORD = "alice-correct-horse-battery-staple"
BOB_PASSWORD = "bob-tr0ub4dor-and-3"


class App:
    """A started app on the test database, and clients made for it."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    def client(self, base_url: str = "http://test") -> httpx.AsyncClient:
        """A new client with its own cookie jar."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=base_url)

    async def add_user(self, name: str, password: str) -> str:
        """Create an account (the function `flamesight users add` calls); its id."""
        return await add_account(self.state.sessions, name, password)

    @asynccontextmanager
    async def logged_in(self, name: str, password: str) -> AsyncIterator[httpx.AsyncClient]:
        """A client logged in as `name`, sending its CSRF header on every request."""
        async with self.client() as client:
            response = await client.post("/api/login", json={"name": name, "password": password})
            assert response.status_code == 200, response.text
            client.headers[CSRF_HEADER] = response.json()["csrf_token"]
            yield client

    async def with_token(self, name: str, password: str) -> tuple[httpx.AsyncClient, str]:
        """A cookie-less client using a new API token of `name`, and the token."""
        async with self.logged_in(name, password) as browser:
            created = await browser.post("/api/tokens", json={"name": "script"})
        assert created.status_code == 201, created.text
        token = created.json()["token"]
        client = self.client()
        client.headers["authorization"] = f"Bearer {token}"
        return client, token


AppFactory = Callable[..., AbstractAsyncContextManager[App]]


@pytest.fixture
def start_app(database_url: str, tmp_path: Path) -> AppFactory:  # noqa: F811
    """Start the app on the test database with some settings changed."""

    @asynccontextmanager
    async def started(**overrides: Any) -> AsyncIterator[App]:
        settings = Settings(data_dir=tmp_path / "data", database_url=database_url, **overrides)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            yield App(app, app.state.flamesight)

    return started


@pytest.fixture
async def app(start_app: AppFactory) -> AsyncIterator[App]:
    """The app with alice and bob as accounts."""
    async with start_app() as started:
        await started.add_user("alice", ALICE_PASSWORD)
        await started.add_user("bob", BOB_PASSWORD)
        yield started


async def upload(client: httpx.AsyncClient) -> dict[str, Any]:
    """Upload the example as `client`; the new trace."""
    response = await client.post(
        "/api/traces", content=EXAMPLE.read_bytes(), params={"name": EXAMPLE.name}
    )
    assert response.status_code == 201, response.text
    return response.json()


def flamesight(*arguments: str, stdin: str = "", env: dict[str, str] | None = None) -> Any:
    """Run the `flamesight` command; its completed process (text output)."""
    return subprocess.run(
        [str(FLAMESIGHT), *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        env=env or os.environ.copy(),
        timeout=120,
    )


# --- the users command --------------------------------------------------------


async def test_users_command_adds_lists_and_removes(
    database_url: str,  # noqa: F811
    tmp_path: Path,
    start_app: AppFactory,
) -> None:
    where = ["--data-dir", str(tmp_path / "data"), "--database-url", database_url]
    # The real command once, as a process; the rest in this process (a worker thread, which
    # runs the command's own event loop), since each start of the CLI costs seconds.
    added = flamesight("users", "add", "alice", "--password-stdin", *where, stdin=ALICE_PASSWORD)
    assert added.returncode == 0, added.stderr
    assert "alice" in added.stdout and ALICE_PASSWORD not in added.stdout + added.stderr

    async def users(*arguments: str, stdin: str = "") -> Any:
        runner = CliRunner()
        return await anyio.to_thread.run_sync(
            lambda: runner.invoke(cli_main, ["users", *arguments, *where], input=stdin)
        )

    again = await users("add", "alice", "--password-stdin", stdin="another-one")
    assert again.exit_code == 2 and "already" in again.output
    short = await users("add", "carol", "--password-stdin", stdin="short")
    assert short.exit_code == 2 and "at least" in short.output
    bob = await users("add", "bob", "--password-stdin", stdin=BOB_PASSWORD + "\n")
    assert bob.exit_code == 0, bob.output
    listed = await users("list")
    assert [line.split("\t")[0] for line in listed.output.splitlines()] == ["alice", "bob"]

    async with start_app() as started:
        async with started.client() as anonymous:
            assert_error(await anonymous.get("/api/traces"), 401, "unauthenticated")
        async with started.logged_in("bob", BOB_PASSWORD):
            pass  # the trailing newline of stdin is not part of the password
        async with started.logged_in("alice", ALICE_PASSWORD) as alice:
            await upload(alice)
        blobs = started.state.settings.resolved_storage_dir
        assert len([p for p in blobs.rglob("*") if p.is_file()]) == 1

    removed = await users("remove", "alice")
    assert removed.exit_code == 0 and "1 trace" in removed.output
    assert [p for p in blobs.rglob("*") if p.is_file()] == []
    assert (await users("list")).output.split("\t")[0] == "bob"
    assert (await users("remove", "alice")).exit_code == 2


# --- modes --------------------------------------------------------------------


async def test_single_user_mode_on_loopback_needs_no_login(start_app: AppFactory) -> None:
    async with start_app() as started, started.client() as client:
        me = (await client.get("/api/me")).json()
        assert (me["name"], me["via"], me["single_user"]) == ("local", "local", True)
        trace = await upload(client)
        assert (await client.get(f"/api/traces/{trace['id']}/top")).status_code == 200
        assert (await client.delete(f"/api/traces/{trace['id']}")).status_code == 204
    async with start_app(bound_to_loopback=False) as started, started.client() as client:
        # Not on loopback and no account: nobody may use it (serve refuses to start so).
        assert_error(await client.get("/api/traces"), 401, "unauthenticated")


async def test_the_first_account_ends_single_user_mode(start_app: AppFactory) -> None:
    async with start_app() as started, started.client() as client:
        assert (await client.get("/api/traces")).status_code == 200
        await started.add_user("alice", ALICE_PASSWORD)
        assert_error(await client.get("/api/traces"), 401, "unauthenticated")
        assert_error(await client.post("/render", content=EXAMPLE.read_bytes()), 401)


# --- sessions and CSRF --------------------------------------------------------


async def test_login_cookies_me_and_logout(app: App) -> None:
    async with app.client() as client:
        assert_error(await client.get("/api/me"), 401, "unauthenticated")
        wrong = await client.post("/api/login", json={"name": "alice", "password": "nope-nope"})
        assert_error(wrong, 401, "invalid_credentials")
        nobody = await client.post("/api/login", json={"name": "zed", "password": ALICE_PASSWORD})
        assert_error(nobody, 401, "invalid_credentials")
        assert not client.cookies

        response = await client.post(
            "/api/login", json={"name": "alice", "password": ALICE_PASSWORD}
        )
        assert response.status_code == 200, response.text
        cookies = {
            header.split("=", 1)[0]: header.lower()
            for header in response.headers.get_list("set-cookie")
        }
        session, csrf = cookies[SESSION_COOKIE], cookies[CSRF_COOKIE]
        assert "httponly" in session and "samesite=lax" in session and "path=/" in session
        assert "max-age=" in session and "secure" not in session
        assert "httponly" not in csrf and "samesite=lax" in csrf
        assert client.cookies[CSRF_COOKIE] == response.json()["csrf_token"]
        me = (await client.get("/api/me")).json()
        assert (me["name"], me["via"], me["single_user"]) == ("alice", "session", False)

        assert_error(await client.post("/api/logout"), 403, "csrf_failed")
        logout = await client.post(
            "/api/logout", headers={CSRF_HEADER: client.cookies[CSRF_COOKIE]}
        )
        assert logout.status_code == 204
        assert_error(await client.get("/api/me"), 401)

    async with app.client(base_url="https://flamesight.example") as secure:
        response = await secure.post("/api/login", json={"name": "bob", "password": BOB_PASSWORD})
        for header in response.headers.get_list("set-cookie"):
            assert "secure" in header.lower()


async def test_state_changing_requests_with_the_cookie_need_the_csrf_token(app: App) -> None:
    async with app.logged_in("alice", ALICE_PASSWORD) as alice:
        token = alice.headers.pop(CSRF_HEADER)
        body = EXAMPLE.read_bytes()
        assert_error(await alice.post("/api/traces", content=body), 403, "csrf_failed")
        wrong = {CSRF_HEADER: "not-the-token"}
        assert_error(await alice.post("/api/traces", content=body, headers=wrong), 403)
        # The header must equal the cookie and belong to this session: a forged pair fails.
        alice.cookies.set(CSRF_COOKIE, "forged")
        forged = {CSRF_HEADER: "forged"}
        assert_error(await alice.post("/api/traces", content=body, headers=forged), 403)
        alice.cookies.set(CSRF_COOKIE, token)
        alice.headers[CSRF_HEADER] = token
        trace = await upload(alice)
        del alice.headers[CSRF_HEADER]
        assert (await alice.get(f"/api/traces/{trace['id']}")).status_code == 200
        assert_error(await alice.delete(f"/api/traces/{trace['id']}"), 403, "csrf_failed")
        assert_error(await alice.post("/api/tokens", json={}), 403, "csrf_failed")
        deleted = await alice.delete(f"/api/traces/{trace['id']}", headers={CSRF_HEADER: token})
        assert deleted.status_code == 204


# --- API tokens ---------------------------------------------------------------


async def test_api_tokens_create_use_list_and_revoke(app: App) -> None:
    script, token = await app.with_token("alice", ALICE_PASSWORD)
    async with script, app.logged_in("alice", ALICE_PASSWORD) as browser:
        assert token.startswith("fsk_") and len(token) > 40
        trace = await upload(script)  # a POST with no CSRF header: tokens need none
        assert (await script.get("/api/me")).json()["via"] == "token"
        listed = (await browser.get("/api/traces")).json()["traces"]
        assert [t["id"] for t in listed] == [trace["id"]]
        tokens = (await browser.get("/api/tokens")).json()["tokens"]
        assert [t["name"] for t in tokens] == ["script"]
        assert tokens[0]["last_used_at"] is not None and "token" not in tokens[0]

        async with app.client() as bad:
            bad.headers["authorization"] = f"Bearer {token}x"
            assert_error(await bad.get("/api/traces"), 401, "unauthenticated")
            bad.headers["authorization"] = f"Basic {token}"
            assert_error(await bad.get("/api/traces"), 401, "unauthenticated")
        bob, _ = await app.with_token("bob", BOB_PASSWORD)
        async with bob:
            assert_error(await bob.delete(f"/api/tokens/{tokens[0]['id']}"), 404, "not_found")
        assert (await script.get("/api/traces")).status_code == 200

        assert (await browser.delete(f"/api/tokens/{tokens[0]['id']}")).status_code == 204
        assert_error(await script.get("/api/traces"), 401, "unauthenticated")
        assert (await browser.get("/api/tokens")).json()["tokens"] == []
        assert_error(await browser.delete(f"/api/tokens/{tokens[0]['id']}"), 404)


# --- access -------------------------------------------------------------------


def example_of(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A minimal value valid for a JSON schema (required fields only)."""
    if "$ref" in schema:
        return example_of(components[schema["$ref"].rsplit("/", 1)[1]], components)
    for combined in ("anyOf", "oneOf", "allOf"):
        if combined in schema:
            return example_of(schema[combined][0], components)
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type", "object")
    if kind == "object":
        properties = schema.get("properties", {})
        return {
            name: example_of(properties[name], components) for name in schema.get("required", [])
        }
    minimum = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    return {
        "string": "x" * max(1, schema.get("minLength", 1)),
        "integer": int(minimum) + 1,
        "number": float(minimum) + 1,
        "boolean": False,
        "array": [],
        "null": None,
    }.get(kind)


def requests_for_every_route(app: Any, ids: dict[str, str], fallback: str) -> list[dict[str, Any]]:
    """One request per operation of every /api route with a path parameter, filled with `ids`.

    The routes are the app's OpenAPI operations (every route the app
    documents, so endpoints added later are covered). A parameter not in
    `ids` gets `fallback`; required query parameters and JSON bodies get
    minimal valid values from the schema, so the request reaches the
    endpoint rather than failing validation.
    """
    schema = app.openapi()
    components = schema.get("components", {}).get("schemas", {})
    requests = []
    for route, operations in schema["paths"].items():
        names = re.findall(r"{(\w+)}", route)
        if not route.startswith("/api/") or not names or route.startswith("/api/shared/"):
            continue  # (a share link is access for its holder, by design)
        path = route
        for name in names:
            path = path.replace(f"{{{name}}}", ids.get(name, fallback))
        for method, operation in operations.items():
            params = {
                parameter["name"]: example_of(parameter.get("schema", {}), components)
                for parameter in operation.get("parameters", [])
                if parameter["in"] == "query" and parameter.get("required")
            }
            content = operation.get("requestBody", {}).get("content", {})
            body = None
            if "application/json" in content:
                body = example_of(content["application/json"].get("schema", {}), components)
            requests.append({"method": method.upper(), "url": path, "params": params, "json": body})
    return requests


async def test_another_user_gets_404_on_every_endpoint(app: App) -> None:
    alice, _ = await app.with_token("alice", ALICE_PASSWORD)
    async with alice, app.logged_in("bob", BOB_PASSWORD) as bob_browser:
        trace = await upload(alice)
        share = (await alice.post(f"/api/traces/{trace['id']}/share")).json()
        alice_tokens = (await alice.get("/api/tokens")).json()["tokens"]
        ids = {
            "trace_id": trace["id"],
            "share_id": share["id"],
            "token_id": alice_tokens[0]["id"],
        }
        requests = requests_for_every_route(app.app, ids, trace["id"])
        paths = {request["url"] for request in requests}
        assert {f"/api/traces/{trace['id']}{suffix}" for suffix in ["", "/top", "/share"]} <= paths
        bob_script, _ = await app.with_token("bob", BOB_PASSWORD)
        async with bob_script:
            for bob in (bob_browser, bob_script):
                for request in requests:
                    response = await bob.request(**request)
                    assert response.status_code == 404, (request, response.text)
                    assert trace["name"] not in response.text
                    await response.aread()
            diff = await bob_script.get(
                "/api/traces/x/diff", params={"other": trace["id"], "before_start": 0}
            )
            assert diff.status_code == 404
        # Nothing of alice's was touched.
        assert (await alice.get(f"/api/traces/{trace['id']}")).status_code == 200
        assert len((await alice.get("/api/tokens")).json()["tokens"]) == 1
        async with app.client() as anonymous:
            assert (await anonymous.get(share["url"])).status_code == 200


# --- share links --------------------------------------------------------------


async def test_share_link_is_read_only_for_one_trace_and_revocable(app: App) -> None:
    alice, _ = await app.with_token("alice", ALICE_PASSWORD)
    async with alice, app.client() as anonymous:
        trace = await upload(alice)
        other = await upload(alice)
        created = await alice.post(f"/api/traces/{trace['id']}/share")
        assert created.status_code == 201, created.text
        share = created.json()
        url = share["url"]
        assert url == f"/api/shared/{share['token']}"

        metadata = (await anonymous.get(url)).json()
        assert (metadata["id"], metadata["name"], metadata["url"]) == (
            trace["id"],
            EXAMPLE.name,
            url,
        )
        for suffix, kind in [
            ("/profiles", "application/json"),
            ("/top?n=5", "application/json"),
            ("/summary?format=markdown", "text/markdown"),
            ("/tree?depth=3", "application/json"),
            ("/render?format=svg&width=400", "image/svg+xml"),
        ]:
            response = await anonymous.get(url + suffix)
            assert response.status_code == 200, (suffix, response.text)
            assert response.headers["content-type"].startswith(kind)
            own = await alice.get(f"/api/traces/{trace['id']}{suffix}")
            assert response.content == own.content
        assert (await anonymous.get(url + "/top")).json() == (
            await alice.get(f"/api/traces/{trace['id']}/top")
        ).json()

        # Nothing else: not the trace's own endpoints, not other traces, no writes.
        assert_error(await anonymous.get(f"/api/traces/{trace['id']}"), 401)
        assert_error(await anonymous.get(f"/api/traces/{other['id']}"), 401)
        assert (await anonymous.get(url + "/search?q=main")).status_code == 404
        assert (await anonymous.get(url + "/diff?other=" + other["id"])).status_code == 404
        assert (await anonymous.delete(url)).status_code == 405
        assert (await anonymous.post(url + "/top")).status_code == 405
        assert (await alice.get(f"/api/traces/{trace['id']}")).status_code == 200

        links = (await alice.get(f"/api/traces/{trace['id']}/share")).json()["links"]
        assert [link["id"] for link in links] == [share["id"]] and "token" not in links[0]
        revoked = await alice.delete(f"/api/traces/{trace['id']}/share/{share['id']}")
        assert revoked.status_code == 204
        for suffix in ["", "/profiles", "/top", "/summary", "/tree", "/render"]:
            assert_error(await anonymous.get(url + suffix), 404, "not_found")
        assert_error(await alice.delete(f"/api/traces/{trace['id']}/share/{share['id']}"), 404)

        # Deleting the trace takes its links with it.
        second = (await alice.post(f"/api/traces/{other['id']}/share")).json()
        assert (await anonymous.get(second["url"])).status_code == 200
        assert (await alice.delete(f"/api/traces/{other['id']}")).status_code == 204
        assert_error(await anonymous.get(second["url"]), 404)


# --- secrets ------------------------------------------------------------------


async def test_passwords_and_tokens_appear_in_no_row_blob_or_log_line(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets_seen: list[str] = [ALICE_PASSWORD, BOB_PASSWORD]
    alice, token = await app.with_token("alice", ALICE_PASSWORD)
    secrets_seen.append(token)
    async with alice, app.logged_in("bob", BOB_PASSWORD) as bob:
        secrets_seen.append(bob.cookies[SESSION_COOKIE])
        trace = await upload(alice)
        await alice.post(f"/api/traces/{trace['id']}/share")
        await alice.get(f"/api/traces/{trace['id']}/top")
        wrong = await bob.post("/api/login", json={"name": "alice", "password": BOB_PASSWORD})
        assert wrong.status_code == 401
        await bob.post("/api/login", json={"name": "bob", "password": ""})

    async with app.state.sessions() as session:
        rows = [
            repr(list(row))
            for table in Base.metadata.sorted_tables
            for row in (await session.execute(select(table))).all()
        ]
    assert any(token_digest(token) in row for row in rows)  # the scan sees the token rows
    blobs = [
        path.read_bytes().decode("utf-8", "replace")
        for path in app.state.settings.resolved_storage_dir.rglob("*")
        if path.is_file()
    ]
    logged = caplog.text
    assert "api/login" in logged  # the log is there to be checked (httpx logs each request)
    for secret in secrets_seen:
        assert not any(secret in row for row in rows)
        assert not any(secret in blob for blob in blobs)
        assert secret not in logged


# --- flamesight upload against a real server ----------------------------------


def test_upload_command_against_a_real_server(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environment.pop("FLAMESIGHT_DATABASE_URL", None)
    added = flamesight(
        "users", "add", "alice", "--password-stdin", *data, stdin=ALICE_PASSWORD, env=environment
    )
    assert added.returncode == 0, added.stderr
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(FLAMESIGHT), "serve", "--port", str(port), *data],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    server_output = ""
    try:
        server_output = wait_for_line(process, url)
        assert "accounts" in server_output
        with httpx.Client(base_url=url, timeout=10) as browser:
            for _ in range(200):
                try:
                    assert_error(browser.get("/api/traces"), 401)
                    break
                except httpx.TransportError:
                    assert process.poll() is None
                    time.sleep(0.1)
            login = browser.post("/api/login", json={"name": "alice", "password": ALICE_PASSWORD})
            assert login.status_code == 200, login.text
            created = browser.post(
                "/api/tokens",
                json={"name": "upload"},
                headers={CSRF_HEADER: login.json()["csrf_token"]},
            )
            token = created.json()["token"]

            # The refusals in this process; the upload itself as a real process below.
            upload_in_process = ["upload", str(EXAMPLE), "--server", url]
            refused = CliRunner().invoke(cli_main, upload_in_process, env={"FLAMESIGHT_TOKEN": ""})
            assert refused.exit_code == 1 and "401" in refused.output
            unset = CliRunner().invoke(cli_main, [*upload_in_process, "--token-env", "NO_SUCH_VAR"])
            assert unset.exit_code == 2 and "NO_SUCH_VAR" in unset.output

            uploaded = flamesight(
                "upload",
                str(EXAMPLE),
                "--server",
                url + "/",
                "--token-env",
                "MY_FLAMESIGHT_TOKEN",
                env={**environment, "MY_FLAMESIGHT_TOKEN": token},
            )
            assert uploaded.returncode == 0, uploaded.stderr
            trace_url = uploaded.stdout.strip()
            assert trace_url.startswith(f"{url}/api/traces/")
            trace = httpx.get(trace_url, headers={"authorization": f"Bearer {token}"}).json()
            assert trace["name"] == EXAMPLE.name
            assert trace["size"] == EXAMPLE.stat().st_size
            assert browser.get("/api/traces").json()["traces"][0]["id"] == trace["id"]
    finally:
        stop(process)
    assert process.stdout is not None
    server_output += process.stdout.read()
    assert "POST /api/traces" in server_output  # the access log is there to be checked
    assert token not in server_output and ALICE_PASSWORD not in server_output

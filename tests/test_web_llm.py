"""Send to LLM, the chat and the login page in a real Chromium against a real `flamesight serve`.

The model and the OAuth token endpoint are real HTTP servers on loopback
(`tests.llm_servers`) named in the page's own URL fields (a server on
loopback may talk to loopback model URLs). Accounts are made with the real
`flamesight users add` on the server's data dir. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flamesight import examples
from tests import test_web
from tests.llm_servers import (
    LoopbackServer,
    TokenIssuer,
    openai_error,
    openai_stream,
    openai_tool_calls,
    require,
    slow,
)
from tests.test_web import (
    FLAMESIGHT,
    range_text,
    running_server,
    screenshot,
    settle,
    wait_for_viewer,
)

# The browser, its pages and the shared server are test_web's fixtures.
browser = test_web.browser
page = test_web.page
server = test_web.server

API_KEY = "sk-web-test-key-5c1d"
CLIENT_SECRET = "web-oauth-secret-9e2a"
ANSWER_PIECES = [
    "## Hot spots\n\n",
    "The hottest function is `parse` ",
    "(**61%** of the range).\n\n",
    "- read less\n- cache more\n\n",
    '<script>window.__injected = 1</script><img src=x onerror="window.__injected = 2">',
]
ANSWER = "".join(ANSWER_PIECES)
PASSWORD = "correct horse battery"


def bearer_is(key: str) -> Any:
    return lambda request: request.headers.get("authorization") == f"Bearer {key}"


def upload(server: str, name: str) -> str:
    created = httpx.post(
        f"{server}/api/traces",
        content=examples.path().read_bytes(),
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    return created.json()["id"]


def open_trace(page: Any, server: str, trace_id: str) -> None:
    page.goto(f"{server}/#/traces/{trace_id}")
    wait_for_viewer(page)


def open_dialog(page: Any, url: str) -> None:
    page.click("#send-to-llm")
    page.wait_for_selector("#llm-dialog[open]")
    page.wait_for_selector("#llm-presets input[value='6']")
    page.fill("#llm-endpoint .endpoint-url", url)
    page.fill("#llm-endpoint .endpoint-model", "gpt-4o")


def send_and_wait(page: Any, state: str = "done") -> None:
    page.click("#llm-send")
    page.wait_for_selector(f"#llm-dialog[data-state={state}]", timeout=60_000)


def stored_anywhere(page: Any, secret: str) -> bool:
    """Whether `secret` is in the page's localStorage, sessionStorage, cookies or URL."""
    return page.evaluate(
        """(secret) => [JSON.stringify(localStorage), JSON.stringify(sessionStorage),
                         document.cookie, location.href].some(s => s.includes(secret))""",
        secret,
    )


@pytest.fixture
def trace(server: str) -> str:
    return upload(server, "llm.speedscope.json")


def test_send_to_llm_with_an_api_key(page: Any, server: str, trace: str) -> None:
    reply = require(bearer_is(API_KEY), openai_stream(ANSWER_PIECES), openai_error(401, "bad key"))
    with LoopbackServer(reply) as model:
        open_trace(page, server, trace)
        page.keyboard.press("+")
        settle(page)
        selected = range_text(page)
        open_dialog(page, model.url + "/v1")
        # The dialog shows the selected range as the toolbar does, and the six presets.
        assert page.text_content("#llm-range") == selected
        presets = page.eval_on_selector_all(
            "#llm-presets label", "labels => labels.map(l => l.textContent.trim())"
        )
        assert presets == [
            "Identify performance bottlenecks in this profile data",
            "Find the most time-consuming functions",
            "Analyze the call stack patterns and suggest optimizations",
            "Identify potential memory leaks or inefficient algorithms",
            "Compare this profile with typical performance patterns",
            "Suggest specific code improvements based on the profiling data",
        ]
        page.check("#llm-endpoint .auth-apiKey")
        page.fill("#llm-endpoint .endpoint-api-key", API_KEY)
        page.check("#llm-presets input[value='2']")
        send_and_wait(page)

        # The answer, rendered as Markdown, with nothing of its HTML interpreted.
        answer = page.locator("#llm-answer")
        assert answer.locator("h2").text_content() == "Hot spots"
        assert answer.locator("code").first.text_content() == "parse"
        assert answer.locator("strong").text_content() == "61%"
        assert answer.locator("li").all_text_contents() == ["read less", "cache more"]
        assert answer.locator("script, img").count() == 0
        assert "<script>window.__injected = 1</script>" in (answer.text_content() or "")
        assert page.evaluate("window.__injected") is None
        assert "gpt-4o" in (page.text_content("#llm-status") or "")
        screenshot(page, "send-to-llm-answer")

        # What the model was sent: the preset, the range's data, the key as a bearer token.
        sent = model.requests[-1]
        assert sent.headers["authorization"] == f"Bearer {API_KEY}"
        body = sent.json()
        assert body["model"] == "gpt-4o" and body["stream"] is True
        assert "Find the most time-consuming functions" in body["messages"][-1]["content"]

        # Save as Markdown downloads the stored report.
        with page.expect_download() as download_info:
            page.click("#llm-save")
        saved = Path(download_info.value.path()).read_text()
        assert "Hot spots" in saved and "Find the most time-consuming functions" in saved

        # The key never left the dialog; the URL and model are remembered.
        assert not stored_anywhere(page, API_KEY)
        assert page.evaluate("localStorage.getItem('flamesight.llm.url')") == model.url + "/v1"
        page.click("#llm-close")
        page.wait_for_selector("#llm-dialog:not([open])", state="attached")
        assert (
            page.evaluate("document.querySelector('#llm-endpoint .endpoint-api-key').value") == ""
        )

        # Reopened: the earlier analysis is one click away.
        page.click("#send-to-llm")
        page.wait_for_selector("#llm-dialog[open]")
        assert page.input_value("#llm-endpoint .endpoint-url") == model.url + "/v1"
        assert page.input_value("#llm-endpoint .endpoint-api-key") == ""
        page.wait_for_selector("#llm-history-list button")
        page.evaluate("document.querySelector('#llm-answer').replaceChildren()")
        page.click("#llm-history-list button >> nth=0")
        assert page.locator("#llm-answer h2").text_content() == "Hot spots"
        page.click("#llm-close")


def test_send_to_llm_with_an_oauth_block(page: Any, server: str, trace: str) -> None:
    issuer = TokenIssuer("flamesight-web", CLIENT_SECRET)
    with (
        LoopbackServer(issuer) as tokens,
        LoopbackServer(
            require(
                issuer.bearer_is_valid,
                slow(0.3, openai_stream(["Mostly ", "**parsing**", "."])),
                openai_error(401, "no token"),
            )
        ) as model,
    ):
        open_trace(page, server, trace)
        open_dialog(page, model.url)
        page.check("#llm-endpoint .auth-oauth")
        assert page.is_hidden("#llm-endpoint .endpoint-api-key")
        explained = page.text_content("#llm-endpoint .oauth-format") or ""
        assert (
            "token URL" in explained and "CLIENT_ID" in explained and "CLIENT_SECRET" in explained
        )
        block = f"{tokens.url}/oauth2/token\nflamesight-web\n{CLIENT_SECRET}"
        page.fill("#llm-endpoint .endpoint-oauth", block)
        page.fill("#llm-custom", "Why is it slow?")
        assert page.is_checked("#llm-custom-choice")
        page.click("#llm-send")
        page.wait_for_selector("#llm-dialog[data-state=streaming]")
        screenshot(page, "send-to-llm-streaming")
        page.wait_for_selector("#llm-dialog[data-state=done]", timeout=60_000)
        assert (page.text_content("#llm-answer") or "").strip() == "Mostly parsing."
        assert page.locator("#llm-answer strong").text_content() == "parsing"
        assert issuer.issued and bearer_is(issuer.issued[-1])(model.requests[-1])
        assert "Why is it slow?" in model.requests[-1].json()["messages"][-1]["content"]
        assert not stored_anywhere(page, CLIENT_SECRET)
        page.keyboard.press("Escape")
        page.wait_for_selector("#llm-dialog:not([open])", state="attached")
        assert page.evaluate("document.querySelector('#llm-endpoint .endpoint-oauth').value") == ""


def test_send_to_llm_shows_the_servers_error(page: Any, server: str, trace: str) -> None:
    with LoopbackServer(openai_error(401, "Incorrect API key provided: sk-wr***")) as model:
        body = {"preset": 1, "url": model.url, "auth": {"apiKey": "sk-wrong"}}
        said = httpx.post(f"{server}/api/traces/{trace}/analyze", json=body, timeout=60)
        assert said.status_code == 502
        expected = said.json()["error"]["message"]
        open_trace(page, server, trace)
        open_dialog(page, model.url)
        page.fill("#llm-endpoint .endpoint-api-key", "sk-wrong")
        send_and_wait(page, "failed")
        assert page.text_content("#llm-error") == expected
        screenshot(page, "send-to-llm-error")

    # A URL the server refuses: its reason, not a generic failure.
    metadata = "http://169.254.169.254/v1"
    refused = httpx.post(
        f"{server}/api/traces/{trace}/analyze", json={"preset": 1, "url": metadata}, timeout=60
    ).json()["error"]
    assert refused["code"] == "url_refused"
    page.fill("#llm-endpoint .endpoint-url", metadata)
    send_and_wait(page, "failed")
    assert page.text_content("#llm-error") == refused["message"]
    # A malformed OAuth block is caught before anything is sent.
    page.check("#llm-endpoint .auth-oauth")
    page.fill("#llm-endpoint .endpoint-oauth", "only one line")
    page.click("#llm-send")
    assert "three lines" in (page.text_content("#llm-error") or "")


def chat_bubbles(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "#chat-messages .chat-message .bubble", "nodes => nodes.map(n => n.textContent.trim())"
    )


def test_a_chat_turn_with_a_snapshot_its_history_and_resume(
    page: Any, server: str, trace: str
) -> None:
    reply = require(bearer_is(API_KEY), openai_stream(["All ", "done."]), openai_error(401, "key"))
    with LoopbackServer(reply) as model:
        model.script(
            openai_tool_calls(
                [("top_functions", {"n": 3}), ("render_flamegraph", {"width": 400, "height": 200})]
            )
        )
        open_trace(page, server, trace)
        assert page.is_visible("#chat-button")
        page.click("#chat-button")
        page.wait_for_selector("#chat-window[data-session]")
        page.click("#chat-settings summary")
        page.fill("#chat-endpoint .endpoint-url", model.url + "/v1")
        page.fill("#chat-endpoint .endpoint-api-key", API_KEY)
        page.fill("#chat-input", "What is slow here?")
        page.keyboard.press("Enter")
        page.wait_for_selector("#chat-window[data-busy=true]")
        page.wait_for_selector("#chat-window[data-busy=false]", timeout=60_000)
        chips = page.eval_on_selector_all(
            ".tool-chip", "chips => chips.map(c => [c.dataset.tool, c.dataset.state])"
        )
        assert chips == [["top_functions", "done"], ["render_flamegraph", "done"]]
        image = page.locator(".snapshot img")
        image.wait_for()
        page.wait_for_function(
            "document.querySelector('.snapshot img').complete"
            " && document.querySelector('.snapshot img').naturalWidth > 0"
        )
        assert image.get_attribute("src").startswith("/api/snapshots/")
        assert chat_bubbles(page) == ["What is slow here?", "All done."]
        assert not stored_anywhere(page, API_KEY)
        screenshot(page, "chat-turn")

        # Reloaded, the trace's conversation comes back: question, chips, snapshot, answer.
        page.reload()
        wait_for_viewer(page)
        page.click("#chat-button")
        page.wait_for_selector(".snapshot img")
        page.wait_for_function("document.querySelectorAll('#chat-messages .bubble').length === 2")
        assert chat_bubbles(page) == ["What is slow here?", "All done."]
        assert page.locator(".tool-chip.done").count() == 2
        assert page.input_value("#chat-endpoint .endpoint-api-key") == ""

        # A dropped socket during a turn: it reconnects, resumes, loses and repeats nothing.
        model.script(slow(1.0, openai_stream(["Resumed ", "fine."])))
        page.click("#chat-settings summary")
        page.fill("#chat-endpoint .endpoint-api-key", API_KEY)
        page.fill("#chat-input", "And now?")
        page.click("#chat-send")
        page.wait_for_selector("#chat-messages .thinking")  # the server has the question
        page.evaluate("window.__flamesightChat.socket.close()")
        page.wait_for_selector("#chat-window[data-busy=false]", timeout=60_000)
        assert chat_bubbles(page) == [
            "What is slow here?",
            "All done.",
            "And now?",
            "Resumed fine.",
        ]
        seq = int(page.get_attribute("#chat-window", "data-seq") or 0)
        assert seq > 10
        screenshot(page, "chat-resumed")
        page.click("#chat-close")
        assert (
            page.evaluate("document.querySelector('#chat-endpoint .endpoint-api-key').value") == ""
        )


def add_user(data_dir: Path, name: str) -> None:
    done = subprocess.run(
        [str(FLAMESIGHT), "users", "add", name, "--password-stdin", "--data-dir", str(data_dir)],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def log_in(page: Any, name: str, password: str = PASSWORD) -> None:
    page.wait_for_selector("#login-page:not([hidden])")
    page.fill("#login-name", name)
    page.fill("#login-password", password)
    page.click("#login-submit")


@pytest.fixture
def accounts_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path / "data"
    with running_server(data_dir) as url:
        yield url, data_dir


def test_login_logout_and_another_users_trace(page: Any, accounts_server: tuple[str, Path]) -> None:
    url, data_dir = accounts_server
    add_user(data_dir, "alice")
    add_user(data_dir, "bob")
    page.goto(f"{url}/")
    page.wait_for_selector("#login-page:not([hidden])")
    assert page.is_hidden("#traces-page")
    screenshot(page, "login")

    log_in(page, "alice", "not the password")
    page.wait_for_selector("#login-error:not([hidden])")
    assert page.text_content("#login-error") == "wrong user name or password"

    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#traces-page:not([hidden])")
    assert page.text_content("#account-slot .account-name") == "alice"
    # An upload changes state: it goes through with the CSRF header from the cookie.
    page.set_input_files("#file-input", str(examples.path()))
    wait_for_viewer(page)
    trace_id = page.evaluate("window.__flamesightViewer.traceId")
    page.click("#logout")
    page.wait_for_selector("#login-page:not([hidden])")
    assert page.is_hidden("#viewer-page")

    log_in(page, "bob")
    page.wait_for_selector("#account-slot .account-name")
    page.goto(f"{url}/#/traces/{trace_id}")
    page.wait_for_selector("#viewer-page[data-failed=true]")
    status = page.text_content("#viewer-status") or ""
    assert status.startswith("Not found")
    assert page.is_hidden("#chat-button")
    screenshot(page, "other-users-trace")
    page.goto(f"{url}/#/")
    page.wait_for_selector("#traces-page:not([hidden])")
    page.wait_for_selector("#trace-empty:not([hidden])")

"""Share links in a real Chromium against a real `flamesight serve`.

The owner creates a link from the trace list, a fresh browser context (no
cookies) opens it and sees the viewer read only, the owner revokes it and
the link stops working. With accounts, a logged-out visitor can open a
share link but not the trace itself. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flamesight import examples
from tests import test_web
from tests.test_web import (
    AXIS_HEIGHT,
    ROW_HEIGHT,
    chart_box,
    painted,
    range_text,
    screenshot,
    settle,
    wait_for_viewer,
)
from tests.test_web_llm import accounts_server, add_user, log_in

# The browser, its pages and the shared server are test_web's fixtures.
browser = test_web.browser
page = test_web.page
server = test_web.server
accounts = accounts_server

NOT_VALID = "This link is not valid"


@pytest.fixture
def visitor(browser: Any) -> Iterator[Any]:
    """A second page in its own browser context: no cookies, no session."""
    with test_web.fresh_page(browser) as opened:
        yield opened


def create_link(page: Any, trace_id: str) -> str:
    """Open the trace's share panel in the list, create a link; the URL shown."""
    row = f"#trace-table tr[data-id='{trace_id}']"
    page.wait_for_selector(row)
    page.click(f"{row} button.share")
    panel = f"#trace-table tr.share-row[data-trace='{trace_id}']"
    page.wait_for_selector(f"{panel}[data-links='0']")
    page.click(f"{panel} .share-create")
    page.wait_for_selector(f"{panel} .share-new:not([hidden])")
    page.wait_for_selector(f"{panel}[data-links='1']")
    url = page.input_value(f"{panel} .share-url")
    assert "#/shared/" in url
    page.click(f"{panel} .share-copy")
    page.wait_for_selector(f"{panel} .share-note:text('Copied.')")
    return url


def see_shared_viewer(visitor: Any, url: str) -> None:
    """The share link opens the viewer, painted, read only."""
    visitor.goto(url)
    wait_for_viewer(visitor)
    width = chart_box(visitor)["width"]
    assert painted(visitor, "chart", 0, AXIS_HEIGHT, width, ROW_HEIGHT - 2) > 0.9
    assert painted(visitor, "chart", 0, AXIS_HEIGHT, width, 10 * ROW_HEIGHT) > 0.3
    assert " of " in range_text(visitor)
    assert visitor.text_content("#trace-name") == "shared.speedscope.json"
    assert visitor.is_hidden("#send-to-llm")
    assert visitor.is_hidden("#chat-button")
    assert visitor.is_hidden("#traces-page")
    assert visitor.is_hidden("#viewer-page .back")
    assert visitor.evaluate("document.body.dataset.mode") == "shared"


def see_not_valid(visitor: Any, url: str) -> None:
    visitor.goto("about:blank")
    visitor.goto(url)
    visitor.wait_for_selector("#viewer-page[data-failed=true]")
    assert visitor.text_content("#viewer-status") == NOT_VALID
    assert visitor.is_hidden("#send-to-llm")
    assert visitor.is_hidden("#chat-button")


def test_create_open_and_revoke_a_share_link(page: Any, visitor: Any, server: str) -> None:
    created = httpx.post(
        f"{server}/api/traces",
        content=examples.path().read_bytes(),
        headers={"Content-Disposition": 'attachment; filename="shared.speedscope.json"'},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    trace_id = created.json()["id"]
    page.goto(f"{server}/")
    url = create_link(page, trace_id)
    screenshot(page, "share-panel")

    see_shared_viewer(visitor, url)
    before = range_text(visitor)
    visitor.keyboard.press("+")
    visitor.wait_for_function(
        "(before) => document.querySelector('#range-text').textContent !== before",
        arg=before,
    )
    screenshot(visitor, "shared-viewer")

    # A profile too large to ship whole: the server lays it out, through the link too.
    visitor.goto(f"{url}?max_samples=0")
    wait_for_viewer(visitor)
    assert visitor.is_visible("#mode-note")
    visitor.wait_for_function("window.__flamesightViewer.remoteChart !== null")
    settle(visitor)
    width = chart_box(visitor)["width"]
    assert painted(visitor, "chart", 0, AXIS_HEIGHT, width, ROW_HEIGHT - 2) > 0.9
    assert visitor.is_hidden("#send-to-llm")

    # The owner's viewer keeps its controls.
    page.goto(f"{server}/#/traces/{trace_id}")
    wait_for_viewer(page)
    assert page.is_visible("#send-to-llm")
    assert page.is_visible("#chat-button")

    page.goto(f"{server}/#/")
    page.click(f"#trace-table tr[data-id='{trace_id}'] button.share")
    panel = f"#trace-table tr.share-row[data-trace='{trace_id}']"
    page.wait_for_selector(f"{panel}[data-links='1']")
    page.click(f"{panel} .share-revoke")
    page.wait_for_selector(f"{panel}[data-links='0']")

    see_not_valid(visitor, url)
    screenshot(visitor, "shared-link-not-valid")
    see_not_valid(visitor, f"{server}/#/shared/not-a-token")


def test_a_logged_out_visitor_opens_a_share_link_but_not_the_trace(
    page: Any, visitor: Any, accounts: tuple[str, Any]
) -> None:
    url, data_dir = accounts
    add_user(data_dir, "alice")
    page.goto(f"{url}/")
    log_in(page, "alice")
    page.wait_for_selector("#traces-page:not([hidden])")
    page.set_input_files(
        "#file-input",
        files=[
            {
                "name": "shared.speedscope.json",
                "mimeType": "application/json",
                "buffer": examples.path().read_bytes(),
            }
        ],
    )
    wait_for_viewer(page)
    trace_id = page.evaluate("window.__flamesightViewer.traceId")
    page.goto(f"{url}/#/")
    link = create_link(page, trace_id)

    see_shared_viewer(visitor, link)
    assert visitor.text_content("#account-slot") == ""

    visitor.goto(f"{url}/#/traces/{trace_id}")
    visitor.wait_for_selector("#login-page:not([hidden])")
    assert visitor.is_hidden("#viewer-page")
    assert httpx.get(f"{url}/api/traces/{trace_id}", timeout=10).status_code == 401

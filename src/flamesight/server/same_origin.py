"""Refuse state-changing requests and WebSocket handshakes that another website makes.

In single-user loopback mode nobody logs in, so without this a page on any
website could make the visitor's browser POST to the local server (upload,
delete, start chats). `SameOriginMiddleware` is the one check, in front of
every route (login, `/render` and the accounts' routes included):

- a request whose method changes something (anything but GET, HEAD,
  OPTIONS) and every WebSocket handshake are refused (403, error code
  `cross_site`; a WebSocket is closed before it is accepted) when
- its `Origin` header names another origin than the server's own (the
  `Host` the request was sent to; `Origin: null` too), or its
  `Sec-Fetch-Site` header says `cross-site`.

A request without those headers (a script, curl, the CLI) passes: browsers
always send `Origin` on cross-origin POSTs and WebSocket handshakes.
Reading (GET) is not refused: without CORS headers another site's page
cannot read the answers.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CROSS_SITE_MESSAGE = "refused: this request comes from a page of another website"


def cross_site(scope: Scope) -> bool:
    """Whether `scope` is a state-changing request or WebSocket handshake from another site."""
    if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
        return False
    headers = Headers(scope=scope)
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    host = headers.get("host", "").lower()
    parts = urlsplit(origin.strip().lower())
    return parts.scheme not in ("http", "https") or not host or parts.netloc != host


class SameOriginMiddleware:
    """ASGI middleware: 403 for what `cross_site` refuses, everything else passes through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not cross_site(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": CROSS_SITE_MESSAGE})
            return
        body = orjson.dumps({"error": {"code": "cross_site", "message": CROSS_SITE_MESSAGE}})
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

"""Real HTTP servers on loopback for the LLM tests: a model endpoint and an OAuth token endpoint.

Each server runs the standard library's HTTP server in a thread, records
every request it receives (method, path, query, headers, body), and answers
with a scripted reply: the next one queued with `script`, or its default.
Replies speak the real wire formats:

- OpenAI chat completions, streamed as server-sent events (``data: {chunk}``
  lines, a usage chunk when ``stream_options.include_usage`` is asked for,
  ``data: [DONE]``) or as one JSON object;
- Anthropic Messages, streamed as named events (``message_start``,
  ``content_block_delta``, ``message_delta``, ``message_stop``) or as JSON;
- OAuth 2.0 client credentials (RFC 6749 section 4.4), with client
  authentication in the form body or by HTTP Basic.

Failures are replies too: HTTP errors with the providers' error bodies, a
429 with Retry-After, a slow answer, a connection dropped in the middle of a
stream, a stream that ends without finishing, and bodies that are not JSON.
"""

from __future__ import annotations

import base64
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    received_at: float
    client_port: int
    """The port the request came from: the same for requests on one kept-alive connection."""

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """The body parsed as application/x-www-form-urlencoded."""
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


class Exchange:
    """The reply side of one request: helpers that write HTTP answers."""

    def __init__(
        self, handler: BaseHTTPRequestHandler, request: RecordedRequest, stopping: threading.Event
    ) -> None:
        self.handler = handler
        self.request = request
        self._stopping = stopping

    def send(
        self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """A complete answer with a Content-Length."""
        self.handler.send_response(status)
        self.handler.send_header("Content-Type", content_type)
        self.handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.handler.send_header(name, value)
        self.handler.end_headers()
        self.handler.wfile.write(body)
        self.handler.wfile.flush()

    def send_json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        """A JSON answer."""
        self.send(status, "application/json", json.dumps(document).encode(), headers)

    def start_chunks(
        self, content_type: str = "text/event-stream", headers: dict[str, str] | None = None
    ) -> None:
        """Start a 200 answer sent with chunked transfer encoding."""
        self.handler.send_response(200)
        self.handler.send_header("Content-Type", content_type)
        self.handler.send_header("Cache-Control", "no-cache")
        self.handler.send_header("Transfer-Encoding", "chunked")
        for name, value in (headers or {}).items():
            self.handler.send_header(name, value)
        self.handler.end_headers()
        self.handler.wfile.flush()

    def chunk(self, data: bytes) -> None:
        """One chunk of a chunked answer, flushed at once."""
        self.handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.handler.wfile.flush()

    def end_chunks(self) -> None:
        """The last chunk: the answer is complete."""
        self.handler.wfile.write(b"0\r\n\r\n")
        self.handler.wfile.flush()

    def drop(self) -> None:
        """Close the connection at once, whatever was being sent."""
        self.handler.wfile.flush()
        self.handler.close_connection = True
        self.handler.connection.shutdown(socket.SHUT_RDWR)

    def wait(self, seconds: float) -> None:
        """Sleep, but wake when the server stops."""
        self._stopping.wait(seconds)


Reply = Callable[[Exchange], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client drops a kept-alive connection; report anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LoopbackServer:
    """An HTTP server on 127.0.0.1 that records requests and plays scripted replies."""

    def __init__(self, default: Reply) -> None:
        self.default = default
        self.requests: list[RecordedRequest] = []
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                server._handle(self)

            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the tests read `requests` instead."""

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order; the default answers after them."""
        with self._lock:
            self._script.extend(replies)

    def start(self) -> LoopbackServer:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and wake any reply that is waiting."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        request = RecordedRequest(
            method=handler.command,
            path=unquote(parts.path),
            query=dict(parse_qsl(parts.query)),
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=body,
            received_at=time.monotonic(),
            client_port=handler.client_address[1],
        )
        with self._lock:
            self.requests.append(request)
            reply = self._script.pop(0) if self._script else self.default
        try:
            reply(Exchange(handler, request, self._stopping))
        except (BrokenPipeError, ConnectionResetError, OSError):
            handler.close_connection = True


# OpenAI chat completions

CHAT_MODEL = "gpt-4o-2024-08-06"


def _chat_chunk(
    model: str, delta: dict[str, Any], finish: str | None, with_usage: bool
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": "fp_test",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if with_usage:
        chunk["usage"] = None
    return chunk


def _sse(document: Any) -> bytes:
    return f"data: {json.dumps(document)}\n\n".encode()


def openai_stream(
    pieces: Iterable[str],
    *,
    model: str = CHAT_MODEL,
    usage: tuple[int, int] = (1200, 48),
    finish: str = "stop",
) -> Reply:
    """A streamed chat completion: role chunk, one chunk per piece, finish, usage, [DONE]."""

    def reply(exchange: Exchange) -> None:
        request = exchange.request.json()
        with_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        exchange.start_chunks()
        exchange.chunk(
            _sse(_chat_chunk(model, {"role": "assistant", "content": ""}, None, with_usage))
        )
        for piece in pieces:
            exchange.chunk(_sse(_chat_chunk(model, {"content": piece}, None, with_usage)))
        exchange.chunk(_sse(_chat_chunk(model, {}, finish, with_usage)))
        if with_usage:
            exchange.chunk(
                _sse(
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion.chunk",
                        "created": 1_700_000_000,
                        "model": model,
                        "choices": [],
                        "usage": {
                            "prompt_tokens": usage[0],
                            "completion_tokens": usage[1],
                            "total_tokens": usage[0] + usage[1],
                        },
                    }
                )
            )
        exchange.chunk(b"data: [DONE]\n\n")
        exchange.end_chunks()

    return reply


def openai_tool_calls(
    calls: Iterable[tuple[str, dict[str, Any]]],
    *,
    text: str = "",
    model: str = CHAT_MODEL,
    pieces: int = 3,
    call_prefix: str = "call",
) -> Reply:
    """A streamed assistant message that calls tools, in OpenAI's wire format.

    The role chunk, then `text` (if any) as content, then for each call a
    first ``tool_calls`` delta with its index, id, type and name and empty
    arguments, followed by the JSON arguments cut into `pieces` deltas that
    carry only the index; then ``finish_reason: "tool_calls"``, the usage
    chunk when asked for, and ``[DONE]``. Ids are ``{call_prefix}_{index}``:
    give each reply its own prefix to keep ids unique in a conversation.
    """
    calls = list(calls)

    def reply(exchange: Exchange) -> None:
        request = exchange.request.json()
        with_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        exchange.start_chunks()
        exchange.chunk(
            _sse(_chat_chunk(model, {"role": "assistant", "content": None}, None, with_usage))
        )
        if text:
            exchange.chunk(_sse(_chat_chunk(model, {"content": text}, None, with_usage)))
        for index, (name, arguments) in enumerate(calls):
            first = {
                "index": index,
                "id": f"{call_prefix}_{index}",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            exchange.chunk(_sse(_chat_chunk(model, {"tool_calls": [first]}, None, with_usage)))
            encoded = json.dumps(arguments)
            size = max(1, -(-len(encoded) // pieces))
            for offset in range(0, len(encoded), size):
                delta = {
                    "tool_calls": [
                        {"index": index, "function": {"arguments": encoded[offset : offset + size]}}
                    ]
                }
                exchange.chunk(_sse(_chat_chunk(model, delta, None, with_usage)))
        exchange.chunk(_sse(_chat_chunk(model, {}, "tool_calls", with_usage)))
        if with_usage:
            exchange.chunk(
                _sse(
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion.chunk",
                        "created": 1_700_000_000,
                        "model": model,
                        "choices": [],
                        "usage": {
                            "prompt_tokens": 900,
                            "completion_tokens": 20,
                            "total_tokens": 920,
                        },
                    }
                )
            )
        exchange.chunk(b"data: [DONE]\n\n")
        exchange.end_chunks()

    return reply


def tools_switched_off(request: RecordedRequest) -> bool:
    """Whether a chat request asks the model not to call tools (``tool_choice: "none"``)."""
    return request.json().get("tool_choice") == "none"


def openai_json(
    text: str, *, model: str = CHAT_MODEL, usage: tuple[int, int] = (1200, 48), finish: str = "stop"
) -> Reply:
    """A chat completion as one JSON object (a server that does not stream)."""

    def reply(exchange: Exchange) -> None:
        exchange.send_json(
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": usage[0],
                    "completion_tokens": usage[1],
                    "total_tokens": usage[0] + usage[1],
                },
            },
        )

    return reply


def openai_error(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """An error in OpenAI's format: {"error": {"message", "type", "param", "code"}}."""

    def reply(exchange: Exchange) -> None:
        exchange.send_json(
            status,
            {"error": {"message": message, "type": kind, "param": None, "code": code}},
            headers,
        )

    return reply


def openai_stream_dropped(pieces: Iterable[str], model: str = CHAT_MODEL) -> Reply:
    """A stream that sends some pieces, then loses its connection mid-answer."""

    def reply(exchange: Exchange) -> None:
        exchange.start_chunks()
        exchange.chunk(_sse(_chat_chunk(model, {"role": "assistant", "content": ""}, None, False)))
        for piece in pieces:
            exchange.chunk(_sse(_chat_chunk(model, {"content": piece}, None, False)))
        exchange.drop()

    return reply


def openai_stream_unfinished(pieces: Iterable[str], model: str = CHAT_MODEL) -> Reply:
    """A stream that ends cleanly at the HTTP level but before the model finished."""

    def reply(exchange: Exchange) -> None:
        exchange.start_chunks()
        for piece in pieces:
            exchange.chunk(_sse(_chat_chunk(model, {"content": piece}, None, False)))
        exchange.end_chunks()

    return reply


def slow(seconds: float, then: Reply) -> Reply:
    """Wait `seconds` before answering with `then`."""

    def reply(exchange: Exchange) -> None:
        exchange.wait(seconds)
        then(exchange)

    return reply


def raw(status: int, content_type: str, body: bytes) -> Reply:
    """Any body with any content type (HTML error pages, cut-off JSON)."""

    def reply(exchange: Exchange) -> None:
        exchange.send(status, content_type, body)

    return reply


# Anthropic Messages

ANTHROPIC_MODEL = "claude-test-model"


def _named_event(name: str, document: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(document)}\n\n".encode()


def anthropic_stream(
    pieces: Iterable[str],
    *,
    model: str = ANTHROPIC_MODEL,
    usage: tuple[int, int] = (900, 35),
    stop_reason: str = "end_turn",
) -> Reply:
    """A streamed Messages answer in Anthropic's event format."""

    def reply(exchange: Exchange) -> None:
        exchange.start_chunks()
        exchange.chunk(
            _named_event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_test",
                        "type": "message",
                        "role": "assistant",
                        "content": [],
                        "model": model,
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": usage[0], "output_tokens": 1},
                    },
                },
            )
        )
        exchange.chunk(
            _named_event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        )
        exchange.chunk(_named_event("ping", {"type": "ping"}))
        for piece in pieces:
            exchange.chunk(
                _named_event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
            )
        exchange.chunk(
            _named_event("content_block_stop", {"type": "content_block_stop", "index": 0})
        )
        exchange.chunk(
            _named_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": usage[1]},
                },
            )
        )
        exchange.chunk(_named_event("message_stop", {"type": "message_stop"}))
        exchange.end_chunks()

    return reply


def anthropic_json(
    text: str, *, model: str = ANTHROPIC_MODEL, usage: tuple[int, int] = (900, 35)
) -> Reply:
    """A Messages answer as one JSON object."""

    def reply(exchange: Exchange) -> None:
        exchange.send_json(
            200,
            {
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
            },
        )

    return reply


def anthropic_error(status: int, kind: str, message: str) -> Reply:
    """An error in Anthropic's format: {"type": "error", "error": {"type", "message"}}."""

    def reply(exchange: Exchange) -> None:
        exchange.send_json(status, {"type": "error", "error": {"type": kind, "message": message}})

    return reply


# OAuth 2.0 token endpoint


@dataclass
class TokenIssuer:
    """A client-credentials token endpoint (RFC 6749 section 4.4) as a server reply.

    Accepts the client by form fields (``client_secret_post``) and/or by HTTP
    Basic (``client_secret_basic``), as `methods` says; anything else is 401
    ``invalid_client``. Tokens are numbered so tests can tell them apart.
    """

    client_id: str
    client_secret: str
    expires_in: int | None = 3600
    methods: tuple[str, ...] = ("post", "basic")
    token_prefix: str = "issued-access-token"
    issued: list[str] = field(default_factory=list)
    methods_seen: list[str] = field(default_factory=list)

    def __call__(self, exchange: Exchange) -> None:
        request = exchange.request
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            exchange.send_json(400, {"error": "unsupported_grant_type"})
            return
        method, client_id, secret = self._client_of(request, form)
        self.methods_seen.append(method)
        if (
            method not in self.methods
            or client_id != self.client_id
            or secret != self.client_secret
        ):
            exchange.send_json(
                401,
                {"error": "invalid_client", "error_description": "client authentication failed"},
                {"WWW-Authenticate": 'Basic realm="token"'},
            )
            return
        token = f"{self.token_prefix}-{len(self.issued) + 1}"
        self.issued.append(token)
        answer: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        exchange.send_json(200, answer, {"Cache-Control": "no-store"})

    @staticmethod
    def _client_of(
        request: RecordedRequest, form: dict[str, str]
    ) -> tuple[str, str | None, str | None]:
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            return "basic", client_id, secret
        return "post", form.get("client_id"), form.get("client_secret")

    def bearer_is_valid(self, request: RecordedRequest) -> bool:
        """Whether `request` carries a token this issuer issued."""
        authorization = request.headers.get("authorization", "")
        return authorization.startswith("Bearer ") and authorization[7:] in self.issued


def require(check: Callable[[RecordedRequest], bool], then: Reply, refuse: Reply) -> Reply:
    """Answer with `then` when `check` accepts the request, else with `refuse`."""

    def reply(exchange: Exchange) -> None:
        (then if check(exchange.request) else refuse)(exchange)

    return reply


def openai_stream_stalled(pieces: Iterable[str], seconds: float, model: str = CHAT_MODEL) -> Reply:
    """A stream that sends some pieces, then waits `seconds` before it finishes."""

    def reply(exchange: Exchange) -> None:
        exchange.start_chunks()
        exchange.chunk(_sse(_chat_chunk(model, {"role": "assistant", "content": ""}, None, False)))
        for piece in pieces:
            exchange.chunk(_sse(_chat_chunk(model, {"content": piece}, None, False)))
        exchange.wait(seconds)
        exchange.chunk(_sse(_chat_chunk(model, {}, "stop", False)))
        exchange.chunk(b"data: [DONE]\n\n")
        exchange.end_chunks()

    return reply

"""Streamed chat completions with tools, for the chat agent.

The request is the `openai` SDK's (`async_openai_client`, its ``post``:
retries, status errors, auth, Azure's deployment URLs); the answer's
server-sent events are read here, a network read at a time. Each read gives
the text of all the events it completed as one piece: a model streaming
slowly gives a piece per token, and a busy process that reads late gets
several tokens in one piece, so the cost downstream (an event stored,
published and sent per piece) shrinks as load grows. Tool-call deltas are
put together by their index; the answer (`ChatAnswer`) holds the text, the
tool calls and the finish reason.

Failures are the SDK's: a status error before the stream, `APIError` for an
``error`` object in the stream, `APITimeoutError` when the stream stalls past
the read timeout and `APIConnectionError` when the connection breaks. A
server that answers with plain JSON instead of a stream is read as one piece.
A stream is read to its end after ``[DONE]``, so that a client kept across
requests sends the next one on the same connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import openai
import orjson

from flamesight.llm.errors import Failure, LLMError

END_WAIT_S = 1.0
"""How long a stream may go on after ``[DONE]`` before its connection is closed."""


@dataclass
class ToolCall:
    """One tool call of an answer: its arguments as the JSON text the model sent."""

    id: str
    name: str
    arguments: str


@dataclass
class ChatAnswer:
    """What a streamed answer has said so far."""

    text_parts: list[str] = field(default_factory=list)
    tool_calls: dict[int, ToolCall] = field(default_factory=dict)
    finish_reason: str | None = None
    events: int = 0
    """How many chunks (or whole messages) arrived."""
    done: bool = False
    """Whether the stream said ``[DONE]``."""

    @property
    def text(self) -> str:
        """The answer's text."""
        return "".join(self.text_parts)

    def calls(self) -> list[tuple[int, ToolCall]]:
        """The tool calls by their index."""
        return sorted(self.tool_calls.items())

    def add(self, delta: dict[str, Any]) -> str:
        """Take in one choice's delta (or a whole message); return its text."""
        self.events += 1
        text = delta.get("content")
        if isinstance(text, str) and text:
            self.text_parts.append(text)
        else:
            text = ""
        for position, piece in enumerate(delta.get("tool_calls") or ()):
            if not isinstance(piece, dict):
                continue
            index = piece.get("index")
            if not isinstance(index, int):
                index = len(self.tool_calls) + position
            call = self.tool_calls.setdefault(index, ToolCall("", "", ""))
            call.id = call.id or str(piece.get("id") or "")
            function = piece.get("function") or {}
            name = function.get("name")
            if isinstance(name, str) and name != call.name:
                call.name += name
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                call.arguments += arguments
        return text


async def stream_chat(
    client: openai.AsyncOpenAI,
    body: dict[str, Any],
    answer: ChatAnswer,
    where: str,
    headers: dict[str, Any] | None = None,
) -> AsyncIterator[str]:
    """Send the streaming chat request `body` (JSON-ready: it is sent as it is, without the
    SDK's per-field conversion of typed parameters, which cost more than the rest of the
    request); yield the text each network read brought (pieces with none are skipped)
    while `answer` fills in. `where` names the endpoint in errors; `headers` are sent
    with the request."""
    try:
        async for text in _stream(client, body, answer, where, headers or {}):
            yield text
    except openai.APITimeoutError as error:
        if _timed_out(error):
            raise
        raise openai.APIConnectionError(request=error.request) from error


async def _stream(
    client: openai.AsyncOpenAI,
    body: dict[str, Any],
    answer: ChatAnswer,
    where: str,
    headers: dict[str, Any],
) -> AsyncIterator[str]:
    stream = await client.post(
        "/chat/completions",
        cast_to=object,
        body=body,
        options={"headers": headers},
        stream=True,
        stream_cls=openai.AsyncStream[object],
    )
    response = stream.response
    try:
        if "text/event-stream" not in response.headers.get("content-type", ""):
            document = _json(await response.aread(), where)
            choice = _first_choice(document, where, response.request)
            if choice is not None:
                text = answer.add(choice.get("message") or {})
                answer.finish_reason = choice.get("finish_reason") or answer.finish_reason
                answer.done = True
                if text:
                    yield text
            return
        events = _EventReader()
        chunks = response.aiter_bytes()
        async for data in chunks:
            pieces = []
            failure: Exception | None = None
            for event in events.feed(data):
                if event.startswith(b"[DONE]"):
                    answer.done = True
                    break
                try:
                    choice = _first_choice(_json(event, where), where, response.request)
                except (LLMError, openai.APIError) as error:
                    failure = error  # after the text that came before it
                    break
                if choice is not None:
                    if text := answer.add(choice.get("delta") or {}):
                        pieces.append(text)
                    answer.finish_reason = choice.get("finish_reason") or answer.finish_reason
            if pieces:
                yield "".join(pieces)
            if failure is not None:
                raise failure
            if answer.done:
                await _read_to_end(chunks)
                return
    except httpx2.TimeoutException as error:
        raise openai.APITimeoutError(request=response.request) from error
    except httpx2.RequestError as error:
        raise openai.APIConnectionError(request=response.request) from error
    finally:
        await stream.close()


async def _read_to_end(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows ``[DONE]``: normally only the end of the body, there at once. A
    response read to its end gives its connection back to the client's pool for the next
    request; one closed before is closed with its connection. A server that keeps sending
    is given `END_WAIT_S`, then its connection is closed."""
    with anyio.move_on_after(END_WAIT_S):
        async for _ in chunks:
            pass


def _timed_out(error: BaseException) -> bool:
    """Whether a timeout error was a timeout: the aiohttp transport reports every failed
    connection (refused, reset) as a connect timeout, so look for a real one in its causes."""
    while error is not None:
        if isinstance(error, TimeoutError):
            return True
        error = error.__cause__ or error.__context__
    return False


class _EventReader:
    """Server-sent events from bytes as they arrive: the data of each complete event."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The data fields of the events that `data` completes (joined by newlines)."""
        text = self._pending + data
        if b"\r" in text:
            # CRLF or CR line ends; a CR at the end may be the first half of a CRLF.
            held = b"\r" if text.endswith(b"\r") else b""
            text = text[: len(text) - len(held)].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            text += held
        end = text.rfind(b"\n\n")
        if end < 0:
            self._pending = text
            return []
        self._pending = text[end + 2 :]
        found = []
        for block in text[:end].split(b"\n\n"):
            lines = [line[5:] for line in block.split(b"\n") if line.startswith(b"data:")]
            if lines:
                found.append(b"\n".join(line[1:] if line[:1] == b" " else line for line in lines))
        return found


def _json(data: bytes, where: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise LLMError(
            Failure.BAD_ANSWER,
            f"{where} sent something that is not JSON: {data[:120].decode(errors='replace')!r}",
        ) from None


def _first_choice(document: Any, where: str, request: httpx2.Request) -> dict[str, Any] | None:
    """The first choice of a chunk or completion; an ``error`` object raises the SDK's
    APIError (as its own stream reader does)."""
    if not isinstance(document, dict):
        raise LLMError(Failure.BAD_ANSWER, f"{where} sent a chunk that is not a JSON object")
    error = document.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else None
        if not isinstance(message, str) or not message:
            message = "An error occurred during streaming"
        raise openai.APIError(message, request, body=error)
    choices = document.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None

"""The chat over a WebSocket (`/ws/chat`) and the snapshots it draws (`/api/snapshots/{id}`).

Messages are JSON objects with a ``type``, as DESIGN.md's "Server
protocol" lists them. Client to server:

- ``start_analysis {traceId}``: checks the caller may see the trace, binds
  the socket to the trace's latest chat session (a new one when there is
  none, or with ``"newSession": true``; ``"sessionId"`` picks one), and
  answers ``connection_ack {sessionId, traceId, seq, history}``. It may
  carry a model endpoint, ``url``, ``model``, ``provider`` and ``auth``
  (``{"apiKey"}`` or ``{"oauth"}``), checked like "Send to LLM"'s and held
  in memory for that session only (in fleet mode sealed for the workers,
  until this socket closes); without one the server's settings are used.
- ``user_prompt {prompt}``: stores the question, publishes
  ``waiting_for_model`` and enqueues the turn; the turn's events follow:
  ``model_chunk_start``, ``model_chunk_append {text}``, ``model_chunk_end``,
  ``tool_start {tool, args}``, ``tool_end {tool, summary, imageUrl?}``,
  ``tool_error {tool, message}``, and ``model_response_end`` or
  ``error {message}``.
- ``resume {sessionId, afterSeq}``: binds the socket to that session and
  sends ``connection_ack {sessionId, traceId, seq: afterSeq, resumed}``
  followed by every event numbered above ``afterSeq``, then the live ones:
  none lost, none twice.

Every event of a session has the next ``seq`` and is stored, so any socket
(and one opened after a restart) can catch up. Answers to one socket only
(``connection_ack``, an ``error`` about a message it sent) are not events:
their ``seq`` is the last one the socket has been sent, not a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Response, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from flamesight.llm import LLMError
from flamesight.server.chat_store import ChatRepository, SessionRecord, SnapshotRecord
from flamesight.server.dependencies import State, UserId
from flamesight.server.model_endpoints import ENDPOINT_FIELDS, ClientEndpoint, resolve_endpoint
from flamesight.server.repository import NotFound
from flamesight.server.state import ServerState
from flamesight.server.url_policy import RefusedUrl

router = APIRouter(tags=["chat"])


class ProtocolError(Exception):
    """A client message the server cannot act on; the socket is told why and stays open."""


def history_document(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stored history as the browser shows it: role, text, the tool calls asked for."""
    shown: list[dict[str, Any]] = []
    for message in messages:
        kind = message.get("type")
        data = message.get("data") or {}
        content = data.get("content")
        text = content if isinstance(content, str) else ""
        if kind == "human":
            shown.append({"role": "user", "content": text})
        elif kind == "ai":
            calls = [
                {"tool": call.get("name"), "args": call.get("args")}
                for call in data.get("tool_calls") or []
            ]
            shown.append({"role": "assistant", "content": text, "toolCalls": calls})
        elif kind == "tool":
            shown.append({"role": "tool", "content": text})
    return shown


class ChatSocket:
    """One WebSocket's conversation: which session it is bound to and what it was sent."""

    def __init__(self, websocket: WebSocket, state: ServerState, user_id: str) -> None:
        self.websocket = websocket
        self.state = state
        self.store = ChatRepository(state.sessions, user_id)
        self.user_id = user_id
        self.session: SessionRecord | None = None
        self.delivered = 0
        self.relay: asyncio.Task[None] | None = None
        self.sealed_endpoints: dict[str, bytes] = {}
        """The endpoints this socket sealed (fleet mode), by session: dropped when it closes."""
        self._send_lock = asyncio.Lock()

    async def send(self, document: dict[str, Any]) -> None:
        """Send one JSON message (one at a time)."""
        async with self._send_lock:
            await self.websocket.send_text(orjson.dumps(document).decode())

    async def reply_error(self, message: str) -> None:
        """Tell this socket (only) what was wrong with its message."""
        await self.send({"type": "error", "message": message, "seq": self.delivered})

    async def serve(self) -> None:
        """Read the client's messages until it goes away."""
        try:
            while True:
                text = await self.websocket.receive_text()
                try:
                    await self.handle(_parse(text))
                except ProtocolError as error:
                    await self.reply_error(str(error))
        except WebSocketDisconnect:
            pass
        finally:
            await self.unbind()
            for session_id, sealed in self.sealed_endpoints.items():
                await self.state.chat.forget_endpoint(session_id, sealed)

    async def handle(self, message: dict[str, Any]) -> None:
        """Act on one client message."""
        kind = message.get("type")
        if kind == "start_analysis":
            await self.start_analysis(message)
        elif kind == "user_prompt":
            await self.user_prompt(message)
        elif kind == "resume":
            await self.resume(message)
        else:
            raise ProtocolError(
                f"unknown message type {kind!r}: send start_analysis, user_prompt or resume"
            )

    async def start_analysis(self, message: dict[str, Any]) -> None:
        """Check the trace, pick or create the session, remember its endpoint, bind."""
        trace_id = _text(message, "traceId")
        try:
            trace = await self.state.repository(self.user_id).get_trace(trace_id)
        except NotFound:
            raise ProtocolError(f"no trace {trace_id!r}") from None
        given = None
        if any(message.get(name) is not None for name in ENDPOINT_FIELDS):
            refused = self.state.chat.client_endpoints_refused
            if refused is not None:
                raise ProtocolError(refused)
            given = await self.client_endpoint(message)
        session = await self.choose_session(trace.id, message)
        if given is not None:
            sealed = await self.state.chat.remember_endpoint(session.id, *given)
            if sealed is not None:
                self.sealed_endpoints[session.id] = sealed
        await self.bind(session, None)

    async def client_endpoint(self, message: dict[str, Any]) -> tuple[ClientEndpoint, Any]:
        """The endpoint fields of `message`, checked like "Send to LLM"'s, and resolved."""
        try:
            chosen = ClientEndpoint.model_validate(
                {name: message.get(name) for name in ENDPOINT_FIELDS}
            )
        except ValidationError:
            raise ProtocolError(
                "url, model and provider must be strings and auth {apiKey} or {oauth}"
            ) from None
        policy = self.state.settings.url_policy
        try:
            return chosen, await anyio.to_thread.run_sync(resolve_endpoint, policy, chosen)
        except (RefusedUrl, LLMError) as error:
            raise ProtocolError(str(error)) from None

    async def choose_session(self, trace_id: str, message: dict[str, Any]) -> SessionRecord:
        """The session `message` asks for: a given one, a new one, or the trace's latest."""
        if message.get("sessionId"):
            session = await self._owned_session(_text(message, "sessionId"))
            if session.trace_id != trace_id:
                raise ProtocolError(f"the chat session is not about trace {trace_id!r}")
            return session
        if not message.get("newSession"):
            latest = await self.store.latest_session(trace_id)
            if latest is not None:
                return latest
        return await self.store.create_session(trace_id)

    async def user_prompt(self, message: dict[str, Any]) -> None:
        """Store the question and enqueue its turn; the events come through the relay."""
        if self.session is None:
            raise ProtocolError("send start_analysis (or resume) before user_prompt")
        prompt = _text(message, "prompt").strip()
        if not prompt:
            raise ProtocolError("the prompt is empty")
        busy = await self.state.chat.start_turn(self.session, prompt)
        if busy:
            raise ProtocolError(busy)

    async def resume(self, message: dict[str, Any]) -> None:
        """Bind to the session and send what came after `afterSeq`, then what comes next."""
        session = await self._owned_session(_text(message, "sessionId"))
        after = message.get("afterSeq", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise ProtocolError("afterSeq must be a whole number, 0 or more")
        await self.bind(session, after)

    async def _owned_session(self, session_id: str) -> SessionRecord:
        try:
            return await self.store.get_session(session_id)
        except NotFound:
            raise ProtocolError(f"no chat session {session_id!r}") from None

    async def bind(self, session: SessionRecord, after_seq: int | None) -> None:
        """Relay `session`'s events to this socket, starting with its `connection_ack`.

        `after_seq` None: a fresh start, acknowledged with the history and the
        newest seq; a number: a resume, followed by the kept events after it.
        A turn of the session running when it binds is watched from this process too,
        and one cut off is ended (`ChatService.watch_turn`).
        """
        await self.unbind()
        self.session = session
        ready = asyncio.Event()
        self.relay = asyncio.create_task(self._relay(session, after_seq, ready))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({self.relay, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if self.relay.done():
            self.relay.result()
        await self.state.chat.watch_turn(session)

    async def unbind(self) -> None:
        """Stop relaying the bound session's events."""
        if self.relay is not None:
            self.relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await self.relay
            self.relay = None

    async def _relay(
        self, session: SessionRecord, after_seq: int | None, ready: asyncio.Event
    ) -> None:
        bus = self.state.chat.bus
        async with bus.subscribe(session.id) as queue:
            ack: dict[str, Any] = {
                "type": "connection_ack",
                "sessionId": session.id,
                "traceId": session.trace_id,
            }
            if after_seq is None:
                self.delivered = await self.store.last_seq(session.id)
                history = history_document(await self.store.messages(session.id))
                await self.send({**ack, "seq": self.delivered, "history": history})
            else:
                self.delivered = after_seq
                await self.send({**ack, "seq": after_seq, "resumed": True})
                for event in await bus.replay(session, after_seq):
                    await self._deliver(event)
            ready.set()
            while True:
                await self._deliver(await queue.get())

    async def _deliver(self, event: dict[str, Any]) -> None:
        if event["seq"] <= self.delivered:
            return
        await self.send(event)
        self.delivered = event["seq"]


def _parse(text: str) -> dict[str, Any]:
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError("messages are JSON objects with a type") from None
    if not isinstance(message, dict):
        raise ProtocolError("messages are JSON objects with a type")
    return message


def _text(message: dict[str, Any], name: str) -> str:
    value = message.get(name)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{message.get('type')} needs {name} (a string)")
    return value


@router.websocket("/ws/chat")
async def chat_socket(websocket: WebSocket, state: State, user_id: UserId) -> None:
    """The chat: start_analysis, user_prompt and resume in; the session's events out."""
    await websocket.accept()
    await ChatSocket(websocket, state, user_id).serve()


@router.get("/api/snapshots/{snapshot_id}", response_class=Response)
async def get_snapshot(snapshot_id: str, state: State, user_id: UserId) -> Response:
    """A flame graph PNG the chat drew, to its owner."""
    snapshot = await ChatRepository(state.sessions, user_id).get_snapshot(snapshot_id)
    return await snapshot_response(state, snapshot)


async def snapshot_response(state: ServerState, snapshot: SnapshotRecord) -> Response:
    """The PNG of a snapshot the caller may see (404 when its blob is gone)."""

    def read() -> bytes:
        with state.storage.local_path(snapshot.blob_key) as path:
            return path.read_bytes()

    try:
        png = await anyio.to_thread.run_sync(read)
    except FileNotFoundError:
        raise NotFound(f"no snapshot {snapshot.id!r}") from None
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

"""Send to LLM from the browser: `POST /api/traces/{id}/analyze`, and the analysis history.

The answer streams back as server-sent events:

- ``event: text`` ``{"text": piece}`` for each piece of the answer as it arrives;
- ``event: done`` with the stored analysis (the document of
  ``GET /api/analyses/{id}``);
- ``event: error`` ``{"error": {"code", "message"}}`` when the model fails
  after the answer started.

A failure before the first piece (a refused URL, a bad range or prompt, an
endpoint that cannot be reached or refuses the credentials) is an ordinary
error answer instead: 400 for what the request got wrong (``url_refused``
for a model, token or redirect URL the server will not talk to), 502
``model_failed`` for the endpoint. The credentials live in that request's
memory only. A successful analysis is stored (prompt, range, model,
answer, duration, token usage; never a credential), even when the client
went away before the end:
``GET /api/traces/{id}/analyses`` lists them, newest first;
``GET /api/analyses/{id}`` is one, ``GET /api/analyses/{id}.md`` its
Markdown report.

One process runs `perform_analysis` as a task of its own; fleet mode
(`ChatService.analyses`) queues it for a worker, which runs the same
function and sends its pieces back through Redis (see `fleet`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import anyio.to_thread
import orjson
from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse
from pydantic import Field

from flamesight.llm import Failure, LLMError, analyze, render_report, resolve_prompt
from flamesight.server.chat_store import AnalysisRecord, ChatRepository
from flamesight.server.dependencies import State, UserId, UserRepository
from flamesight.server.errors import ApiError
from flamesight.server.model_endpoints import (
    ClientEndpoint,
    ModelEndpoint,
    endpoint_given,
    resolve_endpoint,
)
from flamesight.server.repository import NotFound, TraceRecord
from flamesight.server.state import ServerState
from flamesight.server.trace_routes import json_response, select
from flamesight.server.url_policy import RefusedUrl, UrlPolicy

router = APIRouter(tags=["analyses"])

REQUEST_FAILURES = {Failure.CONFIG, Failure.RANGE, Failure.PAYLOAD}
"""LLM failures that are the request's fault (400); the others are the endpoint's (502)."""


class AnalyzeBody(ClientEndpoint):
    """What to ask about which range, and of which model."""

    start: float | str | None = Field(default=None, description="Range start, as for /summary.")
    end: float | str | None = Field(default=None, description="Range end, as for /summary.")
    profile: str | None = Field(default=None, description="Profile name or number.")
    preset: str | int | None = Field(default=None, description="1..6 or a preset's short name.")
    prompt: str | None = Field(default=None, description="A question of your own.")


def analysis_document(record: AnalysisRecord) -> dict[str, Any]:
    """The JSON form of a stored analysis."""
    return {
        "id": record.id,
        "trace": record.trace_id,
        "created_at": record.created_at.isoformat(),
        **record.data,
        "url": f"/api/analyses/{record.id}",
        "markdown_url": f"/api/analyses/{record.id}.md",
    }


def refused(error: RefusedUrl | str) -> ApiError:
    """The 400 for a URL the server will not send a request to."""
    return ApiError(400, "url_refused", str(error))


def model_error(error: LLMError, endpoint: ModelEndpoint | None = None) -> ApiError:
    """The answer for a failure of `flamesight.llm` (a refused redirect is `url_refused`)."""
    if endpoint is not None and endpoint.guard is not None and endpoint.guard.refused:
        return refused(endpoint.guard.refused)
    if error.failure in REQUEST_FAILURES:
        return ApiError(400, "bad_request", error.message)
    return ApiError(502, "model_failed", error.message)


async def open_endpoint(
    state: ServerState, chosen: ClientEndpoint, policy: UrlPolicy | None = None
) -> ModelEndpoint:
    """The endpoint a client names, checked (by `policy`, else the server's) before anything
    is sent (400 when refused)."""
    policy = policy or state.settings.url_policy
    try:
        return await anyio.to_thread.run_sync(resolve_endpoint, policy, chosen)
    except RefusedUrl as error:
        raise refused(error) from None
    except LLMError as error:
        raise model_error(error) from None


def sse(event: str, document: Any) -> bytes:
    """One server-sent event."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(document) + b"\n\n"


Piece = tuple[str, Any]
"""What an analysis reports: ("text", str)..., then ("done", document) or ("error", ApiError)."""


async def perform_analysis(
    state: ServerState,
    user_id: str,
    trace_id: str,
    body: AnalyzeBody,
    endpoint_of: Callable[[], Awaitable[ModelEndpoint]],
    pieces: asyncio.Queue[Piece],
) -> None:
    """Run one analysis, putting its pieces on `pieces` and storing its answer.

    Every way it ends puts a last piece, ``done`` or ``error`` (a failure
    before the first piece too: a trace, range, prompt or endpoint the
    request got wrong). `endpoint_of` opens the endpoint once the request
    is known to be good.
    """
    start = None if body.start is None else str(body.start)
    end = None if body.end is None else str(body.end)
    try:
        try:
            chosen = await select(
                state, state.repository(user_id), trace_id, body.profile, start, end
            )
            prompt = resolve_prompt(body.preset, body.prompt)
        except LLMError as error:
            raise model_error(error) from None
        except NotFound as error:
            raise ApiError(404, "not_found", str(error)) from None
        endpoint = await endpoint_of()
    except ApiError as error:
        pieces.put_nowait(("error", error))
        return
    except Exception:
        pieces.put_nowait(("error", ApiError(500, "internal_error", "the analysis failed")))
        raise
    loop = asyncio.get_running_loop()

    def on_text(piece: str) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, ("text", piece))

    def ask() -> Any:
        return analyze(
            endpoint.settings,
            endpoint.auth,
            chosen.group,
            chosen.start,
            chosen.end,
            prompt,
            on_text=on_text,
            profile_index=chosen.index,
            source=chosen.trace.name,
        )

    try:
        result = await anyio.to_thread.run_sync(ask)
    except LLMError as error:
        pieces.put_nowait(("error", model_error(error, endpoint)))
        return
    except RefusedUrl as error:  # a redirect the model client was not allowed to follow
        pieces.put_nowait(("error", refused(error)))
        return
    except Exception:
        pieces.put_nowait(("error", ApiError(500, "internal_error", "the analysis failed")))
        raise
    store = ChatRepository(state.sessions, user_id)
    analysis_id = await store.add_analysis(chosen.trace.id, result.to_dict(), render_report(result))
    record = await store.get_analysis(analysis_id)
    pieces.put_nowait(("done", analysis_document(record)))


class AnalysisQueue(Protocol):
    """Where analyses run when not in this process (fleet mode: workers)."""

    async def start(
        self, user_id: str, trace: TraceRecord, body: AnalyzeBody
    ) -> AsyncGenerator[Piece, None]:
        """Queue the analysis; its pieces as they come."""
        ...


async def queued_pieces(pieces: asyncio.Queue[Piece]) -> AsyncGenerator[Piece, None]:
    """The pieces of an analysis running in this process, up to its last."""
    while True:
        kind, item = await pieces.get()
        yield kind, item
        if kind != "text":
            return


@router.post("/api/traces/{trace_id}/analyze")
async def analyze_trace(
    trace_id: str, body: AnalyzeBody, state: State, user_id: UserId, repository: UserRepository
) -> Response:
    """Ask a model about a range of the trace; the answer streams as server-sent events."""
    remote = state.chat.analyses
    if remote is None:
        pieces: asyncio.Queue[Piece] = asyncio.Queue()
        # A task of its own: the analysis is stored even when the client goes away.
        run = perform_analysis(
            state, user_id, trace_id, body, lambda: open_endpoint(state, body), pieces
        )
        state.chat.keep(asyncio.create_task(run))
        source = queued_pieces(pieces)
    else:
        trace = await repository.get_trace(trace_id)
        if endpoint_given(body):
            await open_endpoint(state, body)
        source = await remote.start(user_id, trace, body)
    kind, first = await anext(source)
    if kind == "error":
        await source.aclose()
        raise first

    async def stream() -> AsyncIterator[bytes]:
        kind, item = "text", first
        try:
            while True:
                if kind == "text":
                    yield sse("text", {"text": item})
                elif kind == "done":
                    yield sse("done", item)
                    return
                else:
                    yield sse("error", {"error": {"code": item.code, "message": item.message}})
                    return
                kind, item = await anext(source)
        finally:
            await source.aclose()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@router.get("/api/traces/{trace_id}/analyses")
async def list_analyses(
    trace_id: str, state: State, user_id: UserId, repository: UserRepository
) -> Response:
    """The trace's stored analyses, newest first."""
    trace = await repository.get_trace(trace_id)
    records = await ChatRepository(state.sessions, user_id).analyses(trace.id)
    return json_response(
        {"trace": trace.id, "analyses": [analysis_document(record) for record in records]}
    )


@router.get("/api/analyses/{analysis_id}.md")
async def analysis_markdown(analysis_id: str, state: State, user_id: UserId) -> Response:
    """The Markdown report of a stored analysis, as a download."""
    record = await ChatRepository(state.sessions, user_id).get_analysis(analysis_id)
    return Response(
        record.report,
        media_type="text/markdown; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="analysis-{record.id}.md"'},
    )


@router.get("/api/analyses/{analysis_id}")
async def get_analysis(analysis_id: str, state: State, user_id: UserId) -> Response:
    """One stored analysis."""
    record = await ChatRepository(state.sessions, user_id).get_analysis(analysis_id)
    return json_response(analysis_document(record))

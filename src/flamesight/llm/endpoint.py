"""One chat turn with a model endpoint: streamed, with a non-streaming fallback.

OpenAI-compatible endpoints (OpenAI, Ollama, vLLM, llama.cpp server, LM
Studio, gateways) and Azure OpenAI go through the `openai` SDK, Anthropic's
Messages API through the `anthropic` SDK. The SDKs retry 429, 5xx and
timeouts with exponential backoff, honouring ``Retry-After``, up to
``settings.max_retries`` times. On top of that:

- a streamed request that the server refuses because of ``stream`` is sent
  again without streaming, and a server that answers a streamed request with
  plain JSON is read as such;
- a server that wants ``max_completion_tokens`` instead of ``max_tokens``
  gets the request again with that field;
- an OAuth access token that the endpoint refuses with 401 is dropped and
  fetched once more;
- every failure becomes an `LLMError` with a specific message, scrubbed of
  every credential in play.

``temperature`` goes to OpenAI-compatible endpoints only: the Messages API
of the `anthropic` SDK in use takes none.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anthropic
import anyio.to_thread
import httpx2
import openai
import orjson

from flamesight.llm.auth import ApiKey, Auth, ClientCredentials, NoAuth, connection_problem
from flamesight.llm.errors import Failure, LLMError
from flamesight.llm.redaction import scrub
from flamesight.llm.settings import Settings

log = logging.getLogger(__name__)

TextCallback = Callable[[str], None]
_Client = TypeVar("_Client", openai.OpenAI, openai.AsyncOpenAI)
_SERVER_TEXT_LIMIT = 300
_STATUS_ERRORS = (openai.APIStatusError, anthropic.APIStatusError)
_TIMEOUT_ERRORS = (openai.APITimeoutError, anthropic.APITimeoutError, httpx2.TimeoutException)
_CONNECTION_ERRORS = (
    openai.APIConnectionError,
    anthropic.APIConnectionError,
    httpx2.TransportError,
)
_API_ERRORS = (openai.APIError, anthropic.APIError)


@dataclass(frozen=True)
class Usage:
    """Tokens the endpoint reports for one turn (None where it reports nothing)."""

    prompt_tokens: int | None
    completion_tokens: int | None

    @property
    def total_tokens(self) -> int | None:
        """Prompt plus completion tokens, when both are known."""
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    """The model's answer to one turn."""

    text: str
    model: str
    usage: Usage | None
    finish_reason: str | None
    streamed: bool


@dataclass
class RequestFallbacks:
    """What a request asks for that a fallback may change once the endpoint refused it, each
    fallback at most once: a new OAuth token (HTTP 401), no streaming (the endpoint says it
    cannot stream), ``max_completion_tokens`` instead of ``max_tokens`` (newer OpenAI models).
    One-shot turns (`complete`) and the chat agent both ask through it."""

    stream: bool
    tokens_field: str = "max_tokens"
    token_renewed: bool = False

    def apply(self, settings: Settings, auth: Auth, error: Any) -> bool:
        """Change what the next request asks for to suit `error` (an SDK's status error), if
        a fallback not used yet fits it; whether one did (ask again) or not (it stands)."""
        status = error.status_code
        if status == 401 and isinstance(auth, ClientCredentials) and not self.token_renewed:
            log.info("the endpoint refused the OAuth token; fetching a new one")
            auth.invalidate()
            self.token_renewed = True
            return True
        message = _server_message(error)
        if status in (400, 422, 501) and self.stream and re.search(r"\bstream", message, re.I):
            log.info("the endpoint refused streaming (HTTP %s); asking without it", status)
            self.stream = False
            return True
        if (
            settings.provider != "anthropic"
            and self.tokens_field == "max_tokens"
            and _wants_max_completion_tokens(error)
        ):
            log.info("the endpoint wants max_completion_tokens; asking again with it")
            self.tokens_field = "max_completion_tokens"
            return True
        return False


@dataclass(frozen=True)
class _Turn:
    """What to send, and the choices the fallbacks may change."""

    system: str
    user: str
    asked: RequestFallbacks


class _StreamFailure(Exception):
    """A failure after the answer started arriving (the connection or the data broke)."""

    def __init__(self, cause: BaseException, received: int) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.received = received


def complete(
    settings: Settings,
    auth: Auth,
    system: str,
    user: str,
    on_text: TextCallback | None = None,
) -> Completion:
    """Send one system + user turn and return the answer; `on_text` gets each piece as it arrives.

    Raises `LLMError` with a message naming what failed and what to do.
    """
    turn = _Turn(system, user, RequestFallbacks(settings.stream))
    while True:
        try:
            return _send(settings, auth, turn, on_text)
        except _STATUS_ERRORS as error:
            if not turn.asked.apply(settings, auth, error):
                raise describe_failure(settings, auth, error) from None
        except (LLMError, _StreamFailure, *_CONNECTION_ERRORS, *_API_ERRORS) as error:
            raise describe_failure(settings, auth, error) from None


def _send(settings: Settings, auth: Auth, turn: _Turn, on_text: TextCallback | None) -> Completion:
    if settings.provider == "anthropic":
        return _send_anthropic(settings, auth, turn, on_text)
    return _send_openai(settings, auth, turn, on_text)


# OpenAI-compatible and Azure


def _credentials(auth: Auth) -> str:
    """The key or access token to send (fetching a token when needed); a placeholder for none."""
    if isinstance(auth, ClientCredentials):
        return auth.access_token().reveal()
    if isinstance(auth, ApiKey):
        return auth.key.reveal()
    return "none"


def checked_http_client(settings: Settings) -> httpx2.Client:
    """A sync HTTP client that runs `settings.url_check`, if any, on every request, redirects included.

    Always one of ours, on the TLS context made once per process: an SDK
    left to make its own client loads the CA certificates again each time
    (about 25 ms of CPU; a burst of chat turns starting at once pays it per turn).
    """
    check = settings.url_check
    hooks: dict[str, list[Callable[[httpx2.Request], Any]]] = {}
    if check is not None:

        def before_sending(request: httpx2.Request) -> None:
            check(str(request.url))

        hooks["request"] = [before_sending]
    return httpx2.Client(follow_redirects=True, event_hooks=hooks, verify=_tls_context())


def turn_http_client(settings: Settings) -> httpx2.AsyncClient:
    """An async HTTP client for one chat turn (its owner closes it when the turn ends).

    It runs `settings.url_check`, if any, on every request, redirects included
    (in a worker thread: a check may resolve host names). Its transport is
    aiohttp (the SDK's `DefaultAioHttpClient`): a streamed answer costs a
    read per token, and aiohttp's reads take about half the CPU of httpx's
    (`benchmarks/fleet_bench.py`), which is what a worker streaming a hundred
    answers at once spends most of its time on.
    """
    check = settings.url_check
    hooks: dict[str, list[Callable[[httpx2.Request], Any]]] = {}
    if check is not None:

        async def before_sending(request: httpx2.Request) -> None:
            await anyio.to_thread.run_sync(check, str(request.url))

        hooks["request"] = [before_sending]
    return openai.DefaultAioHttpClient(
        follow_redirects=True, event_hooks=hooks, verify=_tls_context()
    )


_TLS_LOCK = threading.Lock()


def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, made once per process (under a lock: a burst of turns
    starting at once, each building its client in a thread, would otherwise all miss the
    cache and each load the CA certificates, ~25 ms)."""
    with _TLS_LOCK:
        return _new_tls_context()


@functools.cache
def _new_tls_context() -> ssl.SSLContext:
    return httpx2.create_ssl_context()


def _openai_client(settings: Settings, auth: Auth) -> openai.OpenAI:
    return _sdk_client(
        openai.OpenAI, openai.AzureOpenAI, settings, auth, checked_http_client(settings)
    )


def async_openai_client(
    settings: Settings, auth: Auth, http_client: httpx2.AsyncClient
) -> openai.AsyncOpenAI:
    """An async OpenAI (or Azure OpenAI) client for `settings` on `http_client`
    (`turn_http_client`), with the API key or a valid OAuth token (fetched when needed:
    call it in a worker thread)."""
    return _sdk_client(openai.AsyncOpenAI, openai.AsyncAzureOpenAI, settings, auth, http_client)


def _sdk_client(
    plain: Callable[..., _Client],
    azure: Callable[..., _Client],
    settings: Settings,
    auth: Auth,
    http_client: Any,
) -> _Client:
    """The SDK client (`plain`, or `azure` for Azure OpenAI) for `settings` and `auth`:
    Azure takes an OAuth token as ``azure_ad_token``, every other credential as the key."""
    options: dict[str, Any] = {
        "base_url": settings.base_url,
        "timeout": settings.timeout,
        "max_retries": settings.max_retries,
        "default_headers": dict(settings.headers) or None,
        "default_query": dict(settings.query) or None,
        "http_client": http_client,
    }
    secret = _credentials(auth)
    if settings.provider != "azure":
        return plain(api_key=secret, **options)
    credential = "azure_ad_token" if isinstance(auth, ClientCredentials) else "api_key"
    return azure(**{credential: secret}, api_version=settings.api_version, **options)


def warm_up() -> None:
    """Make the TLS context and import the SDK's chat client now (~0.1 s of CPU), so
    that a server's first burst of chat turns does not pay for it while others stream."""
    _tls_context()
    client = openai.AsyncOpenAI(api_key="none", base_url="http://127.0.0.1", max_retries=0)
    client.chat.completions  # noqa: B018 (the resource and its modules load on first use)


def omitted_auth_header(settings: Settings, auth: Auth) -> dict[str, Any]:
    """Extra request headers that drop the SDK's placeholder credential when there is no auth."""
    if not isinstance(auth, NoAuth):
        return {}
    return {"api-key" if settings.provider == "azure" else "Authorization": openai.Omit()}


def _send_openai(
    settings: Settings, auth: Auth, turn: _Turn, on_text: TextCallback | None
) -> Completion:
    client = _openai_client(settings, auth)
    body: dict[str, Any] = {
        "model": settings.model,
        "messages": [
            {"role": "system", "content": turn.system},
            {"role": "user", "content": turn.user},
        ],
        turn.asked.tokens_field: settings.max_tokens,
        "temperature": settings.temperature,
        "stream": turn.asked.stream,
    }
    if turn.asked.stream:
        body["stream_options"] = {"include_usage": True}
    if omitted := omitted_auth_header(settings, auth):
        body["extra_headers"] = omitted
    with client, client.chat.completions.with_streaming_response.create(**body) as response:
        content_type = response.headers.get("content-type", "")
        if turn.asked.stream and "text/event-stream" in content_type:
            return _read_openai_stream(settings, response.parse(), on_text)
        return _read_openai_json(settings, _read_body(response), content_type, on_text)


def _read_openai_stream(
    settings: Settings, chunks: Iterator[Any], on_text: TextCallback | None
) -> Completion:
    parts: list[str] = []
    model = settings.model
    usage: Usage | None = None
    finish_reason: str | None = None
    with _receiving(parts):
        for chunk in chunks:
            model = getattr(chunk, "model", None) or model
            reported = getattr(chunk, "usage", None)
            if reported is not None:
                usage = Usage(
                    getattr(reported, "prompt_tokens", None),
                    getattr(reported, "completion_tokens", None),
                )
            for choice in getattr(chunk, "choices", None) or []:
                delta = getattr(choice, "delta", None)
                text = getattr(delta, "content", None) if delta is not None else None
                if isinstance(text, str) and text:
                    parts.append(text)
                    if on_text is not None:
                        on_text(text)
                finish_reason = getattr(choice, "finish_reason", None) or finish_reason
    if finish_reason is None:
        raise truncated_answer(settings, parts, "it sent no finish_reason")
    return Completion("".join(parts), model, usage, finish_reason, streamed=True)


def _read_openai_json(
    settings: Settings, raw: bytes, content_type: str, on_text: TextCallback | None
) -> Completion:
    data = _json_answer(settings, raw, content_type)
    if "error" in data and "choices" not in data:
        error = data["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise LLMError(
            Failure.REJECTED, f"{settings.display_url} answered with an error: {message}"
        )
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"]
        finish_reason = choice.get("finish_reason")
    except (KeyError, IndexError, TypeError):
        raise LLMError(
            Failure.BAD_ANSWER,
            f"the answer from {settings.display_url} has no choices[0].message.content; "
            "is it a chat-completions endpoint?",
        ) from None
    if not isinstance(text, str):
        raise LLMError(Failure.BAD_ANSWER, f"the answer from {settings.display_url} holds no text")
    reported = data.get("usage") if isinstance(data.get("usage"), dict) else None
    usage = (
        Usage(
            _int_or_none(reported.get("prompt_tokens")),
            _int_or_none(reported.get("completion_tokens")),
        )
        if reported
        else None
    )
    if on_text is not None and text:
        on_text(text)
    model = data.get("model") if isinstance(data.get("model"), str) else settings.model
    return Completion(text, model or settings.model, usage, finish_reason, streamed=False)


# Anthropic


def _send_anthropic(
    settings: Settings, auth: Auth, turn: _Turn, on_text: TextCallback | None
) -> Completion:
    secret = _credentials(auth)
    kind = "auth_token" if isinstance(auth, ClientCredentials) else "api_key"
    client = anthropic.Anthropic(
        base_url=settings.base_url,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        default_headers=dict(settings.headers) or None,
        default_query=dict(settings.query) or None,
        http_client=checked_http_client(settings),
        **{kind: secret},
    )
    body: dict[str, Any] = {
        "model": settings.model,
        "system": turn.system,
        "messages": [{"role": "user", "content": turn.user}],
        "max_tokens": settings.max_tokens,
        "stream": turn.asked.stream,
    }
    if isinstance(auth, NoAuth):
        body["extra_headers"] = {"Authorization": anthropic.Omit()}
    with client, client.messages.with_streaming_response.create(**body) as response:
        content_type = response.headers.get("content-type", "")
        if turn.asked.stream and "text/event-stream" in content_type:
            return _read_anthropic_stream(settings, response.parse(), on_text)
        return _read_anthropic_json(settings, _read_body(response), content_type, on_text)


def _read_anthropic_stream(
    settings: Settings, events: Iterator[Any], on_text: TextCallback | None
) -> Completion:
    parts: list[str] = []
    model = settings.model
    input_tokens: int | None = None
    output_tokens: int | None = None
    stop_reason: str | None = None
    stopped = False
    with _receiving(parts):
        for event in events:
            kind = getattr(event, "type", None)
            if kind == "message_start":
                message = event.message
                model = getattr(message, "model", None) or model
                usage = getattr(message, "usage", None)
                input_tokens = getattr(usage, "input_tokens", None)
                output_tokens = getattr(usage, "output_tokens", None)
            elif kind == "content_block_delta":
                text = getattr(event.delta, "text", None)
                if isinstance(text, str) and text:
                    parts.append(text)
                    if on_text is not None:
                        on_text(text)
            elif kind == "message_delta":
                stop_reason = getattr(event.delta, "stop_reason", None) or stop_reason
                usage = getattr(event, "usage", None)
                output_tokens = getattr(usage, "output_tokens", None) or output_tokens
            elif kind == "message_stop":
                stopped = True
    if not stopped:
        raise truncated_answer(settings, parts, "it sent no message_stop")
    usage_seen = input_tokens is not None or output_tokens is not None
    return Completion(
        "".join(parts),
        model,
        Usage(input_tokens, output_tokens) if usage_seen else None,
        _finish_reason(stop_reason),
        streamed=True,
    )


def _read_anthropic_json(
    settings: Settings, raw: bytes, content_type: str, on_text: TextCallback | None
) -> Completion:
    data = _json_answer(settings, raw, content_type)
    blocks = data.get("content")
    if not isinstance(blocks, list):
        raise LLMError(
            Failure.BAD_ANSWER,
            f"the answer from {settings.display_url} has no content blocks; "
            "is it an Anthropic Messages endpoint?",
        )
    text = "".join(
        block["text"]
        for block in blocks
        if isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )
    reported = data.get("usage") if isinstance(data.get("usage"), dict) else None
    usage = (
        Usage(
            _int_or_none(reported.get("input_tokens")), _int_or_none(reported.get("output_tokens"))
        )
        if reported
        else None
    )
    if on_text is not None and text:
        on_text(text)
    model = data.get("model") if isinstance(data.get("model"), str) else None
    return Completion(
        text,
        model or settings.model,
        usage,
        _finish_reason(data.get("stop_reason")),
        streamed=False,
    )


def _finish_reason(stop_reason: object) -> str | None:
    """Anthropic's stop reason in the OpenAI vocabulary ("stop", "length")."""
    if stop_reason == "max_tokens":
        return "length"
    if stop_reason in ("end_turn", "stop_sequence"):
        return "stop"
    return stop_reason if isinstance(stop_reason, str) else None


# reading answers


@contextmanager
def _receiving(parts: list[str]) -> Iterator[None]:
    """Turn a failure while a stream is read into a `_StreamFailure` that knows what arrived."""
    try:
        yield
    except LLMError:
        raise
    except (*_CONNECTION_ERRORS, *_API_ERRORS, json.JSONDecodeError) as error:
        raise _StreamFailure(error, sum(len(p) for p in parts)) from None


def _read_body(response: Any) -> bytes:
    try:
        return response.read()
    except (*_CONNECTION_ERRORS, *_API_ERRORS) as error:
        raise _StreamFailure(error, 0) from None


def _json_answer(settings: Settings, raw: bytes, content_type: str) -> dict[str, Any]:
    kind = content_type.split(";")[0].strip() or "no content type"
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if "json" in kind:
            raise LLMError(
                Failure.BAD_ANSWER,
                f"the JSON answer from {settings.display_url} is cut off or malformed "
                f"({len(raw):,} bytes received); try again",
            ) from None
        start = raw[:80].decode("utf-8", "replace").strip().replace("\n", " ")
        raise LLMError(
            Failure.BAD_ANSWER,
            f"{settings.display_url} answered with {kind}, not JSON ({start!r}...); "
            "is the URL a chat-completions endpoint?",
        ) from None
    if not isinstance(data, dict):
        raise LLMError(
            Failure.BAD_ANSWER, f"the answer from {settings.display_url} is JSON but not an object"
        )
    return data


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# errors


def _fail(auth: Auth, failure: Failure, message: str, status: int | None = None) -> LLMError:
    return LLMError(failure, scrub(message, auth.secrets()), status)


def truncated_answer(settings: Settings, parts: list[str], why: str) -> LLMError:
    """An answer that ended before the model finished (`why`), after the text `parts`: one
    wording for one-shot turns and the chat agent."""
    received = sum(len(p) for p in parts)
    return LLMError(
        Failure.BAD_ANSWER,
        f"the answer from {settings.display_url} stopped before the model finished ({why}; "
        f"{received:,} characters received): the answer is truncated; try again",
    )


def describe_failure(
    settings: Settings, auth: Auth, error: BaseException, received: int | None = None
) -> LLMError:
    """A failed request to the endpoint of `settings` as the `LLMError` a person reads: what
    happened, where, and what to do about it, scrubbed of every credential of `auth`.
    `received` is how many characters of the answer had arrived when it broke off (None:
    it failed before the answer started). One-shot turns and the chat agent both say it so."""
    where = settings.display_url
    if isinstance(error, _StreamFailure):
        return describe_failure(settings, auth, error.cause, error.received)
    if isinstance(error, LLMError):
        # Messages quoting the server (bodies, error fields) may echo a credential.
        return _fail(auth, error.failure, error.message, error.status)
    if received is not None:  # (an SDK may raise an error event in a stream as a status error)
        return _stream_error(settings, auth, error, received)
    if isinstance(error, _STATUS_ERRORS):
        return _status_error(settings, auth, error)
    if isinstance(error, _TIMEOUT_ERRORS):
        return _fail(
            auth,
            Failure.TIMEOUT,
            f"no answer from {where} within {settings.timeout:g} s{_attempts(error)}; "
            "raise the timeout or try again later",
        )
    if isinstance(error, _CONNECTION_ERRORS):
        return _fail(
            auth, Failure.CONNECT, f"cannot connect to {where}: {connection_problem(error)}"
        )
    if isinstance(error, _API_ERRORS):
        return _fail(
            auth, Failure.BAD_ANSWER, f"{where} reported an error: {_server_message(error)}"
        )
    return _fail(
        auth, Failure.BAD_ANSWER, f"talking to {where} failed: {type(error).__name__}: {error}"
    )


def _stream_error(settings: Settings, auth: Auth, cause: BaseException, count: int) -> LLMError:
    """A failure after `count` characters of the answer arrived."""
    received = f"{count:,} characters received"
    if isinstance(cause, _TIMEOUT_ERRORS):
        return _fail(
            auth,
            Failure.TIMEOUT,
            f"{settings.display_url} stopped sending in the middle of the answer (nothing for "
            f"{settings.timeout:g} s, {received}): the answer is incomplete; try again",
        )
    if isinstance(cause, _CONNECTION_ERRORS):
        return _fail(
            auth,
            Failure.BAD_ANSWER,
            f"the connection to {settings.display_url} was closed in the middle of the answer "
            f"({received}): the answer is incomplete; try again",
        )
    if isinstance(cause, json.JSONDecodeError):
        return _fail(
            auth,
            Failure.BAD_ANSWER,
            f"{settings.display_url} sent a streamed chunk that is not valid JSON "
            f"({received}); is the URL a chat-completions endpoint?",
        )
    return _fail(
        auth,
        Failure.SERVER,
        f"{settings.display_url} reported an error in the middle of the answer "
        f"({received}): {_server_message(cause)}",
    )


def _server_message(error: BaseException) -> str:
    """The endpoint's own words about an error, shortened."""
    body = getattr(error, "body", None)
    text: object = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            text = inner.get("message") or inner.get("detail") or inner.get("type")
        elif isinstance(inner, str):
            text = inner
        text = text or body.get("message") or body.get("detail")
    elif isinstance(body, str) and body.strip():
        text = body
    if not text:
        response = getattr(error, "response", None)
        reason = getattr(response, "reason_phrase", "") if response is not None else ""
        text = reason or getattr(error, "message", "") or type(error).__name__
    flat = " ".join(str(text).split())
    return flat if len(flat) <= _SERVER_TEXT_LIMIT else flat[: _SERVER_TEXT_LIMIT - 1] + "…"


def _wants_max_completion_tokens(error: openai.APIStatusError | anthropic.APIStatusError) -> bool:
    """Whether the endpoint refused ``max_tokens`` and asks for ``max_completion_tokens``."""
    return error.status_code in (400, 422) and "max_completion_tokens" in _server_message(error)


def _attempts(error: BaseException) -> str:
    """ " (after N attempts)" from the retry count the SDK put on its last request."""
    try:
        request = error.request  # type: ignore[attr-defined]
        retries = int(request.headers.get("x-stainless-retry-count", "0"))
    except (AttributeError, RuntimeError, TypeError, ValueError):
        retries = 0
    return f" (after {retries + 1} attempts)" if retries else ""


def _status_error(settings: Settings, auth: Auth, error: Any) -> LLMError:
    status: int = error.status_code
    said = _server_message(error)
    where = settings.display_url
    attempts = _attempts(error)
    if status == 401:
        if isinstance(auth, ClientCredentials):
            advice = (
                f"the OAuth token from {auth.token_url.split('?')[0]} was issued but is not "
                "accepted here: check the client's scope or audience for this endpoint"
            )
        elif isinstance(auth, ApiKey):
            advice = (
                f"check the API key from {auth.source}: it is wrong, expired or for another service"
            )
        else:
            advice = "this endpoint needs credentials: set FLAMESIGHT_LLM_API_KEY or use --api-key-env / --oauth-file"
        return _fail(
            auth,
            Failure.UNAUTHORIZED,
            f"{where} refused the credentials (HTTP 401: {said}); {advice}",
            status,
        )
    if status == 403:
        scope = " or the OAuth token's scope" if isinstance(auth, ClientCredentials) else ""
        return _fail(
            auth,
            Failure.FORBIDDEN,
            f"{where} denied access (HTTP 403: {said}): the credentials were recognised but may "
            f"not use model {settings.model!r} here; check their permissions{scope}",
            status,
        )
    if status == 404:
        if settings.provider == "azure":
            advice = f"check the resource URL and that the deployment {settings.model!r} exists"
        elif settings.provider == "anthropic":
            advice = f"check the URL (https://api.anthropic.com or a .../v1/messages URL) and the model name {settings.model!r}"
        else:
            advice = (
                "check the URL (a base URL such as https://HOST/v1, or the full "
                f".../chat/completions URL) and that the model {settings.model!r} exists there"
            )
        return _fail(
            auth, Failure.NOT_FOUND, f"{where} answered HTTP 404 ({said}): {advice}", status
        )
    if status == 429:
        wait = error.response.headers.get("retry-after")
        asks = f"; it asks to wait {wait} s" if wait else ""
        return _fail(
            auth,
            Failure.RATE_LIMITED,
            f"{where} is rate limiting the requests (HTTP 429: {said}){attempts}{asks}: "
            "wait and try again, or check the quota of the key",
            status,
        )
    if status >= 500:
        return _fail(
            auth,
            Failure.SERVER,
            f"{where} failed with HTTP {status} ({said}){attempts}: the server has a problem; "
            "try again later",
            status,
        )
    hint = ""
    if re.search(r"context|too long|too many tokens|maximum.*tokens|length", said, re.I):
        hint = (
            "; the request may be too long for the model: choose a shorter range or set "
            "context_tokens to the model's context size"
        )
    return _fail(
        auth,
        Failure.REJECTED,
        f"{where} rejected the request with HTTP {status}: {said}{hint}",
        status,
    )

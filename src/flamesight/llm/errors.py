"""The one exception of `flamesight.llm`: a message a person can act on."""

from __future__ import annotations

from enum import StrEnum


class Failure(StrEnum):
    """What went wrong, for callers that map failures to exit or HTTP codes."""

    CONFIG = "config"
    """Settings, the config file or the way credentials were given."""
    CONNECT = "connect"
    """The model endpoint could not be reached (DNS, refused, TLS)."""
    TIMEOUT = "timeout"
    """The model endpoint did not answer in time."""
    UNAUTHORIZED = "unauthorized"
    """HTTP 401 from the model endpoint."""
    FORBIDDEN = "forbidden"
    """HTTP 403 from the model endpoint."""
    NOT_FOUND = "not_found"
    """HTTP 404: wrong URL or model."""
    RATE_LIMITED = "rate_limited"
    """HTTP 429, still there after the retries."""
    SERVER = "server"
    """HTTP 5xx, still there after the retries."""
    REJECTED = "rejected"
    """Any other HTTP error (400, 413, 422, ...)."""
    BAD_ANSWER = "bad_answer"
    """A 2xx answer that is not JSON, has no text, or stopped in the middle."""
    TOKEN_ENDPOINT = "token_endpoint"
    """The OAuth token endpoint failed or answered without a token."""
    RANGE = "range"
    """The time range is empty or holds no samples."""
    PAYLOAD = "payload"
    """The profile data does not fit in the request."""


class LLMError(Exception):
    """A failure talking to a model or a token endpoint, with a specific message.

    The message never holds a credential: it is built from our own text and
    from server text that went through `redaction.scrub`.
    """

    def __init__(self, failure: Failure, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message

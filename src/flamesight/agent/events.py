"""The events a chat turn yields, named as the server's WebSocket carries them.

A turn streams `ModelChunkStart`, `ModelChunkAppend` pieces and
`ModelChunkEnd` around each stretch of model text, `ToolStart` and then
`ToolEnd` or `ToolError` around each tool call, and ends with
`ModelResponseEnd`, or with `ErrorEvent` when the endpoint failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class ModelChunkStart:
    """The model started a stretch of text."""

    type: ClassVar[str] = "model_chunk_start"

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data, with its type."""
        return {"type": self.type}


@dataclass(frozen=True)
class ModelChunkAppend:
    """A piece of model text, as it arrived."""

    text: str
    type: ClassVar[str] = "model_chunk_append"

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data, with its type."""
        return {"type": self.type, "text": self.text}


@dataclass(frozen=True)
class ModelChunkEnd:
    """The stretch of text is complete."""

    type: ClassVar[str] = "model_chunk_end"

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data, with its type."""
        return {"type": self.type}


@dataclass(frozen=True)
class ToolStart:
    """A tool is about to run with these arguments."""

    tool: str
    args: dict[str, Any]
    type: ClassVar[str] = "tool_start"

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data, with its type."""
        return {"type": self.type, "tool": self.tool, "args": self.args}


@dataclass(frozen=True)
class ToolEnd:
    """A tool finished: a one-line summary, and where its image went (if it drew one)."""

    tool: str
    summary: str
    image: str | None = None
    type: ClassVar[str] = "tool_end"

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data, with its type (no image key when there is none)."""
        data: dict[str, Any] = {"type": self.type, "tool": self.tool, "summary": self.summary}
        if self.image is not None:
            data["image"] = self.image
        return data


@dataclass(frozen=True)
class ToolError:
    """A tool failed; the model reads the same message and carries on."""

    tool: str
    message: str
    type: ClassVar[str] = "tool_error"

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data, with its type."""
        return {"type": self.type, "tool": self.tool, "message": self.message}


@dataclass(frozen=True)
class ErrorEvent:
    """The turn failed (the endpoint could not be reached or broke off); it ends here."""

    message: str
    type: ClassVar[str] = "error"

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data, with its type."""
        return {"type": self.type, "message": self.message}


@dataclass(frozen=True)
class ModelResponseEnd:
    """The model answered; the turn is over."""

    type: ClassVar[str] = "model_response_end"

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data, with its type."""
        return {"type": self.type}


Event = (
    ModelChunkStart
    | ModelChunkAppend
    | ModelChunkEnd
    | ToolStart
    | ToolEnd
    | ToolError
    | ErrorEvent
    | ModelResponseEnd
)
"""Any event of a chat turn."""

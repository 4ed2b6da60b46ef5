"""One-shot analysis: a range of a profile, a prompt, a model, an answer and its report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from flamesight.llm.auth import Auth
from flamesight.llm.endpoint import TextCallback, Usage, complete
from flamesight.llm.prompts import Prompt, resolve_prompt
from flamesight.llm.request import AnalysisRequest, build_request
from flamesight.llm.settings import Settings
from flamesight.model import ProfileGroup


@dataclass(frozen=True)
class AnalysisResult:
    """A model's answer about a range, with everything its report shows. No credential."""

    answer: str
    model: str
    requested_model: str
    provider: str
    endpoint: str
    request: AnalysisRequest
    usage: Usage | None
    duration_seconds: float
    finish_reason: str | None
    streamed: bool

    @property
    def truncated(self) -> bool:
        """True when the model stopped at max_tokens."""
        return self.finish_reason == "length"

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data (for ``--json`` and the server's analysis history)."""
        request = self.request
        return {
            "source": request.source,
            "profile": request.profile_name,
            "unit": request.unit.value,
            "start": request.start,
            "end": request.end,
            "range": request.range_text,
            "prompt": request.prompt,
            "prompt_label": request.prompt_label,
            "payload": request.payload,
            "payload_tokens": request.payload_tokens,
            "provider": self.provider,
            "endpoint": self.endpoint,
            "model": self.model,
            "requested_model": self.requested_model,
            "answer": self.answer,
            "finish_reason": self.finish_reason,
            "streamed": self.streamed,
            "duration_seconds": round(self.duration_seconds, 3),
            "usage": None
            if self.usage is None
            else {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "total_tokens": self.usage.total_tokens,
            },
        }


def analyze(
    settings: Settings,
    auth: Auth,
    group: ProfileGroup,
    start: float | None = None,
    end: float | None = None,
    prompt: Prompt | str | None = None,
    payload: str = "summary",
    on_text: TextCallback | None = None,
    *,
    profile_index: int | None = None,
    source: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AnalysisResult:
    """Ask the model about [start, end) of `group`'s profile and return its answer.

    `prompt` is a `Prompt` (see `resolve_prompt`), a plain text, or None for
    the first preset. `on_text` receives the answer piece by piece as it
    streams. `source` names the file in the report (default: the group's
    name). Raises `LLMError` with a specific message on any failure.
    """
    if prompt is None or isinstance(prompt, str):
        prompt = resolve_prompt(text=prompt) if prompt else resolve_prompt()
    request = build_request(
        settings,
        group,
        start,
        end,
        prompt,
        payload,
        profile_index=profile_index,
        source=source,
    )
    began = clock()
    completion = complete(settings, auth, request.system, request.user, on_text)
    return AnalysisResult(
        answer=completion.text,
        model=completion.model,
        requested_model=settings.model,
        provider=settings.provider,
        endpoint=settings.display_url,
        request=request,
        usage=completion.usage,
        duration_seconds=clock() - began,
        finish_reason=completion.finish_reason,
        streamed=completion.streamed,
    )

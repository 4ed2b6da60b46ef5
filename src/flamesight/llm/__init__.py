"""Talking to language models: settings, credentials, prompts and one-shot analysis.

This package is the only place in flamesight that talks to a model endpoint
or an OAuth token endpoint; the CLI, the chat agent and the server all go
through it. A one-shot analysis::

    settings = load_settings(EndpointOptions(url=..., model=...))
    auth = resolve_auth(settings, options)
    result = analyze(settings, auth, group, start, end, resolve_prompt("bottlenecks"),
                     on_text=print_piece)
    Path("report.md").write_text(render_report(result))

Credentials never leave memory: they are held in `Secret` wrappers, and
every error message is scrubbed of them.
"""

from flamesight.llm.analyze import AnalysisResult, analyze
from flamesight.llm.auth import (
    API_KEY_FLAG_WARNING,
    ApiKey,
    Auth,
    ClientCredentials,
    NoAuth,
    parse_oauth_block,
    resolve_auth,
)
from flamesight.llm.endpoint import Completion, Usage, complete
from flamesight.llm.errors import Failure, LLMError
from flamesight.llm.prompts import PLACEHOLDERS, PRESETS, Preset, Prompt, resolve_prompt
from flamesight.llm.redaction import Secret, scrub
from flamesight.llm.report import render_report
from flamesight.llm.request import PAYLOADS, AnalysisRequest, build_request
from flamesight.llm.settings import EndpointOptions, Settings, load_settings, read_config

__all__ = [
    "API_KEY_FLAG_WARNING",
    "PAYLOADS",
    "PLACEHOLDERS",
    "PRESETS",
    "AnalysisRequest",
    "AnalysisResult",
    "ApiKey",
    "Auth",
    "ClientCredentials",
    "Completion",
    "EndpointOptions",
    "Failure",
    "LLMError",
    "NoAuth",
    "Preset",
    "Prompt",
    "Secret",
    "Settings",
    "Usage",
    "analyze",
    "build_request",
    "complete",
    "load_settings",
    "parse_oauth_block",
    "read_config",
    "render_report",
    "resolve_auth",
    "resolve_prompt",
    "scrub",
]

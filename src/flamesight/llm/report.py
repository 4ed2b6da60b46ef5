"""The Markdown report of an analysis: a header saying what was asked of whom, then the answer."""

from __future__ import annotations

from flamesight.llm.analyze import AnalysisResult


def render_report(result: AnalysisResult) -> str:
    """The report: file, profile, range with units, model, prompt, time taken, tokens; the answer."""
    request = result.request
    rows = [
        ("File", request.source),
        ("Profile", request.profile_name),
        ("Range", request.range_text),
        ("Model", _model(result)),
        ("Prompt", f"{request.prompt} ({request.prompt_label})"),
        ("Data sent", f"{request.payload}, about {request.payload_tokens:,} tokens"),
        ("Time taken", _seconds(result.duration_seconds)),
        ("Tokens used", _tokens(result)),
    ]
    lines = [
        f"# flamesight analysis: {_inline(request.source)}",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {_cell(value)} |" for name, value in rows),
        "",
        "## Answer",
        "",
        result.answer.strip() or "(the model gave an empty answer)",
    ]
    if result.truncated:
        lines += [
            "",
            "> The answer was cut off at the max_tokens limit; raise max_tokens for a complete one.",
        ]
    return "\n".join(lines) + "\n"


def _model(result: AnalysisResult) -> str:
    asked = (
        "" if result.model == result.requested_model else f", asked for {result.requested_model}"
    )
    return f"{result.model} ({result.provider} at {result.endpoint}{asked})"


def _tokens(result: AnalysisResult) -> str:
    usage = result.usage
    if usage is None:
        return "not reported by the endpoint"
    parts = []
    if usage.prompt_tokens is not None:
        parts.append(f"{usage.prompt_tokens:,} prompt")
    if usage.completion_tokens is not None:
        parts.append(f"{usage.completion_tokens:,} completion")
    text = " + ".join(parts) or "not reported by the endpoint"
    if usage.total_tokens is not None:
        text += f" = {usage.total_tokens:,}"
    return text


def _seconds(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def _cell(text: str) -> str:
    return _inline(text).replace("|", "\\|")


def _inline(text: str) -> str:
    return " ".join(text.split())

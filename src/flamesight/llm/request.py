"""The request a model reads: the system message, the prompt and the profile data of a range.

The profile data is, by default, the budgeted summary of `flamesight.analysis`
(``payload="summary"``), whose budget follows the model's context. With
``payload="speedscope"`` the range itself goes out as speedscope JSON, and
is refused when it would not fit that same budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from flamesight.analysis import estimate_tokens, summary
from flamesight.llm.errors import Failure, LLMError
from flamesight.llm.prompts import Prompt
from flamesight.llm.settings import Settings
from flamesight.model import Profile, ProfileGroup, Unit

PAYLOADS = ("summary", "speedscope")
# Above this many characters per token of budget, a speedscope export is
# measured on a sample instead of in full (it cannot fit anyway).
_FULL_COUNT_CHARS_PER_TOKEN = 16
_SAMPLE_CHARS = 256 * 1024


@dataclass(frozen=True)
class AnalysisRequest:
    """The two messages to send, and what they were made from."""

    system: str
    user: str
    prompt: str
    prompt_label: str
    payload: str
    payload_tokens: int
    source: str
    profile_name: str
    unit: Unit
    start: float
    end: float
    range_text: str


def build_request(
    settings: Settings,
    group: ProfileGroup,
    start: float | None,
    end: float | None,
    prompt: Prompt,
    payload: str = "summary",
    *,
    profile_index: int | None = None,
    source: str | None = None,
) -> AnalysisRequest:
    """The messages for `prompt` about [start, end) of a group's profile (the active one by default).

    Raises `LLMError` for an empty range, a range without samples, an
    unknown payload, or speedscope data that does not fit.
    """
    if payload not in PAYLOADS:
        raise LLMError(
            Failure.CONFIG, f"unknown payload {payload!r}: choose {' or '.join(PAYLOADS)}"
        )
    index = group.active_index if profile_index is None else profile_index
    if not 0 <= index < len(group.profiles):
        raise LLMError(
            Failure.CONFIG,
            f"no profile number {index}: {group.name!r} has {len(group.profiles)} profile(s)",
        )
    profile = group.profiles[index]
    source = source or group.name
    lo, hi, selected = _checked_range(profile, start, end)
    fmt = profile.format_value
    range_text = f"{fmt(lo)} to {fmt(hi)} ({fmt(hi - lo)})"
    budget = settings.data_budget()
    if payload == "summary":
        try:
            document = summary(group, lo, hi, budget_tokens=budget, profile=index)
        except ValueError as error:
            raise LLMError(Failure.PAYLOAD, f"cannot summarise the range: {error}") from None
        data = document.json()
        data_tokens = document.json_tokens
    else:
        data = _speedscope_json(group, index, lo, hi)
        data_tokens = _count_tokens(data, budget)
        if data_tokens > budget:
            raise LLMError(
                Failure.PAYLOAD,
                f"the speedscope JSON of {range_text} is about {data_tokens:,} tokens, more than "
                f"the {budget:,} tokens of profile data a request to {settings.model} may carry; "
                "choose a shorter range, use --payload summary, or raise context_tokens "
                "(or payload_budget) if the model takes more",
            )
    prompt_text = prompt.fill(f"{range_text} of {profile.name}", selected)
    share = 100.0 * selected.total_weight / profile.total_weight if profile.total_weight else 0.0
    system = _system_message(group, profile, source, range_text, share, payload)
    user = (
        f"{prompt_text}\n\n"
        f"Profile data ({_PAYLOAD_NAMES[payload]}) for {range_text} of {profile.name}:\n\n"
        f"```json\n{data}\n```\n"
    )
    return AnalysisRequest(
        system=system,
        user=user,
        prompt=prompt_text,
        prompt_label=prompt.label,
        payload=payload,
        payload_tokens=data_tokens,
        source=source,
        profile_name=profile.name,
        unit=profile.unit,
        start=lo,
        end=hi,
        range_text=range_text,
    )


def _checked_range(
    profile: Profile, start: float | None, end: float | None
) -> tuple[float, float, Profile]:
    fmt = profile.format_value
    if not len(profile.samples):
        raise LLMError(Failure.RANGE, f"the profile {profile.name!r} has no samples")
    lo = profile.start if start is None else float(start)
    hi = profile.end if end is None else float(end)
    if hi <= lo:
        raise LLMError(
            Failure.RANGE,
            f"the range is empty: its end ({fmt(hi)}) is not after its start ({fmt(lo)})",
        )
    selected = profile.slice(lo, hi)
    if not len(selected.samples) or selected.total_weight <= 0:
        raise LLMError(
            Failure.RANGE,
            f"no samples between {fmt(lo)} and {fmt(hi)}: the profile {profile.name!r} covers "
            f"{fmt(profile.start)} to {fmt(profile.end)}",
        )
    return lo, hi, selected


def _speedscope_json(group: ProfileGroup, index: int, lo: float, hi: float) -> str:
    """The range of every profile of the group that has samples in it, as speedscope JSON."""
    from flamesight.formats.speedscope import export

    chosen = group.profiles[index]
    sliced = [chosen.slice(lo, hi)]
    sliced += [
        part
        for other in group.profiles
        if other is not chosen and len((part := other.slice(lo, hi)).samples)
    ]
    exported = export(ProfileGroup(group.name, sliced, 0, group.format))
    return exported.decode() if isinstance(exported, bytes) else exported


def _count_tokens(text: str, budget: int) -> int:
    """`estimate_tokens(text)`, extrapolated from a sample when the text is far over `budget`."""
    if len(text) <= budget * _FULL_COUNT_CHARS_PER_TOKEN:
        return estimate_tokens(text)
    sample = estimate_tokens(text[:_SAMPLE_CHARS])
    return int(sample * len(text) / _SAMPLE_CHARS)


_PAYLOAD_NAMES = {
    "summary": "flamesight's summary, JSON",
    "speedscope": "speedscope JSON",
}

_PAYLOAD_DESCRIPTIONS = {
    "summary": (
        "The data is a summary that flamesight computed for this range: the profile's "
        "metadata, top functions by self and by total weight with percentages, the heaviest "
        "call paths (long chains folded), a coarse timeline, per-thread shares and notable "
        "patterns. Self weight is spent in the function itself; total weight includes its "
        "callees, counted once per stack when it recurses."
    ),
    "speedscope": (
        "The data is the range itself in speedscope's JSON file format "
        "(https://www.speedscope.app/file-format-schema.json): a shared frame table and, per "
        "profile, either sampled stacks (frame indices, root first) with their weights, or "
        "open/close events at times on the profile's axis."
    ),
}


def _system_message(
    group: ProfileGroup,
    profile: Profile,
    source: str,
    range_text: str,
    share: float,
    payload: str,
) -> str:
    if profile.sampled:
        kind = (
            "a sampling profiler: each sample is a snapshot of the call stack, so the numbers "
            "are statistical estimates and very short calls may be missed"
        )
    else:
        kind = (
            "an instrumenting profiler or tracer (begin/end events): durations are measured "
            "for every traced call, and include the tracing overhead"
        )
    if profile.unit.is_time:
        unit = f"time, in {profile.unit.value}"
    elif profile.unit is Unit.BYTES:
        unit = "bytes (a memory profile: weights are allocation sizes, not time)"
    else:
        unit = "sample counts (no time unit: the axis is samples laid end to end)"
    threads = (
        f" The file holds {len(group.profiles)} profiles (threads or processes); "
        f"this is {profile.name!r}."
        if len(group.profiles) > 1
        else ""
    )
    return (
        "You are an expert in software performance analysis. You read profiles the way an "
        "experienced performance engineer does and give advice a developer can act on.\n\n"
        f"The data comes from {kind}. File: {source} "
        f"({group.format or 'format unknown'}); profile: {profile.name}; weights are {unit}."
        f"{threads} The selected range is {range_text}, {share:.1f}% of the profile's "
        f"weight.\n{_PAYLOAD_DESCRIPTIONS[payload]}\n\n"
        "Answer in Markdown:\n"
        "- Lead with the findings that matter most, ranked by their impact.\n"
        "- Back every finding with numbers from the data: function names, files and lines, "
        "self and total weight, percentages.\n"
        "- Give concrete, code-level suggestions: what to change, where, and why it helps; "
        "estimate the gain where the numbers allow.\n"
        "- Say plainly when the data cannot support a conclusion, and what to measure next."
    )

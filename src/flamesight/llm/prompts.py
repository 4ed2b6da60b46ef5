"""What to ask: the six preset prompts, custom prompts and user templates.

The presets are the sample prompts of the design, word for word, chosen by
number (1..6) or short name. A template from the config file may use two
placeholders, filled from the profile when the request is built:

- ``{range}``: the chosen range with units, e.g. "12.0 ms to 48.0 ms (36.0 ms) of main";
- ``{top_functions}``: the five heaviest functions by self weight in that range,
  with their shares.

Literal braces in a template are written ``{{`` and ``}}``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from flamesight.analysis import top_functions
from flamesight.llm.errors import Failure, LLMError
from flamesight.model import Profile


@dataclass(frozen=True)
class Preset:
    """One of the six sample prompts."""

    number: int
    name: str
    text: str


PRESETS: tuple[Preset, ...] = (
    Preset(1, "bottlenecks", "Identify performance bottlenecks in this profile data"),
    Preset(2, "hot-functions", "Find the most time-consuming functions"),
    Preset(3, "call-patterns", "Analyze the call stack patterns and suggest optimizations"),
    Preset(4, "memory", "Identify potential memory leaks or inefficient algorithms"),
    Preset(5, "compare", "Compare this profile with typical performance patterns"),
    Preset(6, "improvements", "Suggest specific code improvements based on the profiling data"),
)

PLACEHOLDERS = ("range", "top_functions")
TOP_FUNCTIONS_IN_TEMPLATE = 5


@dataclass(frozen=True)
class Prompt:
    """The question to send, and how it was chosen (for the report).

    `text` of a template still holds its placeholders; `fill` replaces them.
    """

    text: str
    label: str
    is_template: bool = False

    def fill(self, range_text: str, profile: Profile) -> str:
        """The prompt as sent: placeholders of a template filled for `profile` (already sliced)."""
        if not self.is_template:
            return self.text
        values = {"range": range_text, "top_functions": _top_functions_text(profile)}
        return self.text.format_map(values)


def check_template(name: str, text: str) -> None:
    """Raise `LLMError` when template `name` uses an unknown placeholder or stray braces."""
    known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
    except ValueError as error:
        raise LLMError(
            Failure.CONFIG,
            f"template {name!r}: {error} (write literal braces as {{{{ and }}}}; "
            f"the placeholders are {known})",
        ) from None
    for field in fields:
        if field not in PLACEHOLDERS:
            raise LLMError(
                Failure.CONFIG,
                f"template {name!r} uses {{{field}}}, which flamesight does not fill; "
                f"the placeholders are {known}",
            )


def resolve_prompt(
    preset: str | int | None = None,
    text: str | None = None,
    templates: Mapping[str, str] | None = None,
) -> Prompt:
    """The prompt chosen by a preset (1..6, a short name, or a template name) or a custom text.

    With neither, the first preset. Both at once is an error.
    """
    templates = templates or {}
    if preset is not None and text is not None:
        raise LLMError(Failure.CONFIG, "give either a preset or a prompt text, not both")
    if text is not None:
        if not text.strip():
            raise LLMError(Failure.CONFIG, "the prompt is empty")
        return Prompt(text.strip(), "custom prompt")
    if preset is None:
        return _preset_prompt(PRESETS[0])
    key = str(preset).strip()
    for candidate in PRESETS:
        if key in (str(candidate.number), candidate.name):
            return _preset_prompt(candidate)
    if key in templates:
        check_template(key, templates[key])
        return Prompt(templates[key], f"template {key}", is_template=True)
    choices = ", ".join(f"{p.number} or {p.name}" for p in PRESETS)
    extra = f"; templates from the config file: {', '.join(sorted(templates))}" if templates else ""
    raise LLMError(Failure.CONFIG, f"unknown preset {key!r}: choose {choices}{extra}")


def _preset_prompt(preset: Preset) -> Prompt:
    return Prompt(preset.text, f"preset {preset.number}: {preset.name}")


def _top_functions_text(profile: Profile) -> str:
    ranked = [
        f
        for f in top_functions(profile, by="self", n=TOP_FUNCTIONS_IN_TEMPLATE).functions
        if f.self > 0
    ]
    if not ranked:
        return "(no functions in this range)"
    return ", ".join(
        f"{f.name} ({profile.format_value(f.self)}, {f.self_pct:.1f}% self)" for f in ranked
    )

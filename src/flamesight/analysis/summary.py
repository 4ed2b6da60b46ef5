"""The budgeted summary of a profile range that a language model reads.

`summary` returns a JSON document (and its Markdown rendering) that fits a
token budget, whatever the size of the profile: metadata and units, the
selected interval, top functions by self and by total weight with
percentages, the heaviest call paths with long chains folded, a coarse
timeline, per-thread shares and notable patterns.

Fitting the budget: the document is built in full, then rows are dropped in
a fixed order of importance (the timeline and the tail of the by-total list
go first, the first rows of the by-self list last) until both the JSON and
the Markdown fit. The number of rows dropped is found by binary search, so a
summary costs a few renders whatever the budget.

Tokens are estimated offline with `estimate_tokens`, a deliberately
pessimistic count (ASCII words split into 4-character pieces, numbers into
3-digit pieces, runs of ASCII punctuation into 2-character pieces, every
other character one token, every line break one token): the BPE tokenizers
of the GPT and Llama families produce fewer tokens for the same text.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from flamesight.analysis.breakdown import profile_breakdown
from flamesight.analysis.calltree import FunctionView
from flamesight.analysis.paths import hot_paths
from flamesight.analysis.top import FunctionWeight, function_weights
from flamesight.model import Profile, ProfileGroup

MIN_BUDGET = 300
NAME_LIMIT = 100
FILE_LIMIT = 60
TIMELINE_BUCKETS = 10

_PIECES = re.compile(r"[A-Za-z]+|[0-9]+|[!-/:-@\[-`{-~]+|[^\s]")
_IDLE = re.compile(r"^\((idle|program|root)\)$|^idle$|\bcpu_idle\b|\bswapper\b", re.IGNORECASE)
_GC = re.compile(r"garbage|(^|[^a-z])gc([^a-z]|$)|^runtime\.gc|\bGC\b|\bgc_collect", re.IGNORECASE)


def estimate_tokens(text: str) -> int:
    """A pessimistic token count for `text`, computed offline."""
    count = 0
    for piece in _PIECES.findall(text):
        first = piece[0]
        if first.isascii() and first.isalpha():
            count += math.ceil(len(piece) / 4)
        elif first.isascii() and first.isdigit():
            count += math.ceil(len(piece) / 3)
        elif first.isascii():
            count += math.ceil(len(piece) / 2)
        else:
            count += 1
    return count + text.count("\n")


@dataclass(frozen=True)
class Summary:
    """A summary document, its Markdown rendering and their estimated token counts."""

    data: dict[str, Any]
    markdown: str
    json_tokens: int
    markdown_tokens: int

    def json(self) -> str:
        """The document as compact JSON text."""
        return orjson.dumps(self.data).decode()


def summary(
    source: Profile | ProfileGroup,
    start: float | None = None,
    end: float | None = None,
    budget_tokens: int = 2000,
    profile: int | None = None,
) -> Summary:
    """Summarise [start, end) of a profile (or of a group's chosen profile) within `budget_tokens`."""
    if budget_tokens < MIN_BUDGET:
        raise ValueError(
            f"a summary needs a budget of at least {MIN_BUDGET} tokens, not {budget_tokens}"
        )
    group = source if isinstance(source, ProfileGroup) else None
    chosen = (
        source
        if isinstance(source, Profile)
        else source.profiles[source.active_index if profile is None else profile]
    )
    full = _full_document(chosen, group, start, end)
    steps = _trim_steps(full)
    low, high = 0, len(steps)
    best = None
    while low <= high:
        middle = (low + high) // 2
        candidate = _render(full, steps[:middle])
        if max(candidate.json_tokens, candidate.markdown_tokens) <= budget_tokens:
            best = candidate
            high = middle - 1
        else:
            low = middle + 1
    if best is None:
        raise ValueError(
            f"the smallest summary of this profile does not fit in {budget_tokens} tokens"
        )
    return best


# building the full document


def _full_document(
    profile: Profile, group: ProfileGroup | None, start: float | None, end: float | None
) -> dict[str, Any]:
    selected = profile.slice(start, end) if start is not None or end is not None else profile
    lo = profile.start if start is None else start
    hi = profile.end if end is None else end
    total = selected.total_weight
    fmt = profile.format_value
    weights = function_weights(selected)
    by_self = sorted((f for f in weights if f.self > 0), key=lambda f: (-f.self, f.name))
    by_total = sorted((f for f in weights if f.total > 0), key=lambda f: (-f.total, f.name))
    document: dict[str, Any] = {
        "profile": {
            "name": _cut(profile.name, NAME_LIMIT),
            "format": group.format if group else "",
            "unit": profile.unit.value,
            "kind": "sampling" if profile.sampled else "instrumentation (begin/end events)",
            "samples": len(profile.samples),
            "distinct_frames": len(profile.frames),
            "total": fmt(profile.total_weight),
        },
        "range": {
            "start": fmt(lo) if profile.unit.is_time else lo,
            "end": fmt(hi) if profile.unit.is_time else hi,
            "duration": fmt(max(hi - lo, 0.0)),
            "weight": fmt(total),
            "share_of_profile_pct": _pct(total, profile.total_weight),
            "samples": len(selected.samples),
        },
        "top_self": [_row(f, fmt, "self") for f in by_self[:40]],
        "top_total": [_row(f, fmt, "total") for f in by_total[:40]],
        "hot_paths": [
            {"path": _cut(p.text, 400), "self": fmt(p.weight), "pct": round(p.pct, 1)}
            for p in hot_paths(selected, n=10)
        ],
        "timeline": _timeline(selected, lo, hi, fmt),
        "threads": [],
        "patterns": _patterns(selected, group, by_self, weights),
    }
    if group is not None and len(group.profiles) > 1:
        document["threads"] = [
            {
                "name": _cut(share.name, NAME_LIMIT),
                "share_pct": None if share.share_pct is None else round(share.share_pct, 1),
                "top_function": share.top_function and _cut(share.top_function, NAME_LIMIT),
            }
            for share in profile_breakdown(group)
        ]
    return document


def _row(function: FunctionWeight, fmt: Any, by: str) -> dict[str, Any]:
    row: dict[str, Any] = {"name": _cut(function.name, NAME_LIMIT)}
    if function.file:
        location = _cut_left(function.file, FILE_LIMIT)
        row["file"] = f"{location}:{function.line}" if function.line is not None else location
    if by == "self":
        row["self"] = fmt(function.self)
    else:
        row["total"] = fmt(function.total)
    row["self_pct"] = round(function.self_pct, 1)
    row["total_pct"] = round(function.total_pct, 1)
    return row


def _timeline(profile: Profile, lo: float, hi: float, fmt: Any) -> list[dict[str, Any]]:
    """Top function by self weight in each of a few equal slices of the range."""
    if hi <= lo or not len(profile.samples):
        return []
    key_of_frame, keys = profile.frames.function_keys()
    key_of_node = profile.stacks.node_keys(key_of_frame)
    edges = np.linspace(lo, hi, TIMELINE_BUCKETS + 1)
    buckets = []
    for left, right in itertools.pairwise(edges):
        part = profile.slice(float(left), float(right)).samples
        weight = float(part.weight.sum())
        if weight <= 0:
            continue
        entry: dict[str, Any] = {"from": fmt(float(left)), "weight": fmt(weight)}
        on_stack = part.stack >= 0
        if on_stack.any():
            per_function = np.bincount(
                key_of_node[part.stack[on_stack]],
                weights=part.weight[on_stack],
                minlength=len(keys),
            )
            heaviest = int(per_function.argmax())
            entry["top"] = _cut(keys[heaviest][0], NAME_LIMIT)
            entry["top_pct"] = round(100.0 * float(per_function[heaviest]) / weight, 1)
        buckets.append(entry)
    return buckets


def _patterns(
    profile: Profile,
    group: ProfileGroup | None,
    by_self: list[FunctionWeight],
    weights: list[FunctionWeight],
) -> list[dict[str, Any]]:
    """Named patterns worth a model's attention, most telling first."""
    total = profile.total_weight
    found: list[dict[str, Any]] = []
    if total <= 0:
        return found
    if by_self and by_self[0].self_pct > 50:
        found.append(
            _pattern(
                "dominant_function",
                f"{_cut(by_self[0].name, NAME_LIMIT)} has "
                f"{by_self[0].self_pct:.1f}% of all self time",
            )
        )
    idle = sum(f.self for f in weights if _IDLE.search(f.name))
    idle += float(profile.samples.weight[profile.samples.stack < 0].sum())
    if idle / total > 0.05:
        found.append(
            _pattern(
                "idle",
                f"{_pct(idle, total):.1f}% of the range is idle or outside "
                "profiled code ((idle), (program) or no stack)",
            )
        )
    gc = max((f.total for f in weights if _GC.search(f.name)), default=0.0)
    if gc / total > 0.02:
        found.append(
            _pattern("garbage_collection", f"garbage collection takes {_pct(gc, total):.1f}%")
        )
    recursion = _deepest_recursion(profile)
    if recursion and recursion[1] >= 8:
        found.append(
            _pattern(
                "deep_recursion",
                f"{_cut(recursion[0], NAME_LIMIT)} recurses {recursion[1]} levels deep",
            )
        )
    tiny = [f for f in by_self if f.self_pct < 1.0]
    tail = sum(f.self for f in tiny)
    if len(tiny) >= 20 and tail / total > 0.5:
        found.append(
            _pattern(
                "long_tail",
                f"{len(tiny)} functions under 1% each make up "
                f"{_pct(tail, total):.1f}% of self time: no single hot spot",
            )
        )
    if group is not None and len(group.profiles) > 1:
        shares = [s for s in profile_breakdown(group) if s.share_pct is not None]
        busiest = max(shares, key=lambda s: s.share_pct or 0.0, default=None)
        if busiest is not None and (busiest.share_pct or 0) >= 90:
            found.append(
                _pattern(
                    "one_thread",
                    f"{_cut(busiest.name, NAME_LIMIT)} does "
                    f"{busiest.share_pct:.1f}% of the work of {len(group.profiles)} threads",
                )
            )
    return found


def _deepest_recursion(profile: Profile, paths: int = 200) -> tuple[str, int] | None:
    """The function repeated most often on one of the heaviest stacks, and how often."""
    view = FunctionView.of(profile)
    if not len(view.table):
        return None
    best: tuple[str, int] | None = None
    for leaf in np.argsort(-view.subtree, kind="stable")[:paths].tolist():
        counts: dict[int, int] = {}
        node = leaf
        while node >= 0:
            key = int(view.table.frame[node])
            counts[key] = counts.get(key, 0) + 1
            node = int(view.table.parent[node])
        key, times = max(counts.items(), key=lambda item: item[1])
        if best is None or times > best[1]:
            best = (view.keys[key][0], times)
    return best


def _pattern(kind: str, message: str) -> dict[str, Any]:
    return {"kind": kind, "message": message}


# trimming to the budget

_MINIMUM_ROWS = {"top_self": 1}
# Least important first: each section is trimmed to its minimum in this order.
_TRIM_ORDER = ("timeline", "threads", "top_total", "hot_paths", "top_self", "patterns")


def _trim_steps(document: dict[str, Any]) -> list[tuple[str, int]]:
    """Row removals, least important first, as (section, rows kept after the step)."""
    steps = []
    for section in _TRIM_ORDER:
        rows = len(document[section])
        floor = _MINIMUM_ROWS.get(section, 0)
        steps.extend((section, kept) for kept in range(rows - 1, floor - 1, -1))
    return steps


def _render(document: dict[str, Any], steps: list[tuple[str, int]]) -> Summary:
    kept = {section: len(document[section]) for section in _TRIM_ORDER}
    for section, rows in steps:
        kept[section] = rows
    data = dict(document)
    for section, rows in kept.items():
        data[section] = document[section][:rows]
    dropped = {
        section: len(document[section]) - rows
        for section, rows in kept.items()
        if len(document[section]) > rows
    }
    if dropped:
        data["omitted_rows"] = dropped
    markdown = render_markdown(data)
    return Summary(
        data, markdown, estimate_tokens(orjson.dumps(data).decode()), estimate_tokens(markdown)
    )


def render_markdown(data: dict[str, Any]) -> str:
    """The summary document as Markdown for people and models."""
    profile, selected = data["profile"], data["range"]
    lines = [
        f"# Profile: {profile['name']}",
        "",
        f"{profile['kind'].capitalize()} profile, {profile['format'] or 'unknown format'}, unit "
        f"{profile['unit']}, {profile['samples']:,} samples, total {profile['total']}.",
        f"Range {selected['start']} to {selected['end']} ({selected['duration']}): "
        f"{selected['weight']}, {selected['share_of_profile_pct']:.1f}% of the profile.",
    ]
    if data["patterns"]:
        lines += ["", "## Patterns", ""] + [f"- {p['message']}" for p in data["patterns"]]
    for section, title, column in (
        ("top_self", "Top functions by self time", "self"),
        ("top_total", "Top functions by total time", "total"),
    ):
        if data[section]:
            lines += [
                "",
                f"## {title}",
                "",
                f"| function | location | {column} | self % | total % |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {_cell(r['name'])} | {_cell(r.get('file', ''))} | {r[column]} | "
                f"{r['self_pct']} | {r['total_pct']} |"
                for r in data[section]
            ]
    if data["hot_paths"]:
        lines += ["", "## Heaviest call paths", ""]
        lines += [f"- {p['pct']}% ({p['self']}): {p['path']}" for p in data["hot_paths"]]
    if data["timeline"]:
        lines += ["", "## Timeline", ""]
        lines += [
            f"- from {b['from']}: {b['weight']}"
            + (f", mostly {b['top']} ({b['top_pct']}%)" if "top" in b else "")
            for b in data["timeline"]
        ]
    if data["threads"]:
        lines += ["", "## Threads", ""]
        lines += [
            f"- {t['name']}: {'n/a' if t['share_pct'] is None else str(t['share_pct']) + '%'}"
            + (f", top {t['top_function']}" if t["top_function"] else "")
            for t in data["threads"]
        ]
    if data.get("omitted_rows"):
        omitted = ", ".join(f"{rows} {section}" for section, rows in data["omitted_rows"].items())
        lines += ["", f"(Left out to fit the budget: {omitted} rows.)"]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cut_left(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def _pct(value: float, total: float) -> float:
    return round(100.0 * value / total, 1) if total > 0 else 0.0

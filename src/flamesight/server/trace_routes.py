"""`/api/traces`: upload, list, fetch and delete traces, and analyse or render one.

Every analysis endpoint takes `profile` (a name or a number from
`/profiles`; the active profile by default) and `start`/`end` (a time range
in the profile's unit, or with a unit: "1.5s", "200ms"). Parsed profiles
come from the cache; analysis and rendering run in worker threads so the
event loop never waits on NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
import orjson
from fastapi import APIRouter, Query, Request, Response

from flamesight.analysis import (
    call_tree,
    callees,
    callers,
    diff_profiles,
    diff_ranges,
    profile_breakdown,
    search_frames,
    summary,
    top_functions,
)
from flamesight.analysis.summary import MIN_BUDGET
from flamesight.model import Profile, ProfileGroup, parse_quantity
from flamesight.render import COLOR_BY, MAX_SIDE, MIN_WIDTH, THEMES, VIEWS, render_flamegraph
from flamesight.server.dependencies import State, UserId, UserRepository
from flamesight.server.errors import bad_parameter
from flamesight.server.repository import Repository, TraceRecord
from flamesight.server.uploads import (
    MULTIPART_OVERHEAD_BYTES,
    body_chunks,
    header_filename,
    open_trace,
    store_trace,
    too_large,
)

router = APIRouter(prefix="/api/traces", tags=["traces"])

T = TypeVar("T")

MAX_PAGE = 200
IMAGE_TYPES = {"png": "image/png", "svg": "image/svg+xml"}

ProfileParam = Annotated[
    str | None,
    Query(description="Profile name or number (see /profiles); the active profile by default."),
]
StartParam = Annotated[
    str | None,
    Query(description='Range start: a number in the profile\'s unit, or "1.5s", "200ms".'),
]
EndParam = Annotated[str | None, Query(description="Range end (exclusive), same forms as start.")]
RankParam = Annotated[Literal["self", "total"], Query(description="Rank by self or total weight.")]


def json_response(document: Any, status: int = 200) -> Response:
    """A JSON answer encoded by orjson (fast for large trees; NaN becomes null)."""
    return Response(
        orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


def trace_document(trace: TraceRecord) -> dict[str, Any]:
    """The JSON form of a trace."""
    return {
        "id": trace.id,
        "name": trace.name,
        "format": trace.format,
        "size": trace.size,
        "created_at": trace.created_at.isoformat(),
        "active_profile": trace.active_profile,
        "profiles": trace.profiles,
        "url": f"/api/traces/{trace.id}",
    }


async def in_thread(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a blocking analysis in a worker thread; its ValueError becomes a 400."""
    try:
        return await anyio.to_thread.run_sync(lambda: function(*args, **kwargs))
    except ValueError as error:
        raise bad_parameter(str(error)) from None


def choose_profile(group: ProfileGroup, selector: str | None) -> tuple[int, Profile]:
    """The profile named or numbered `selector`, or the active one; 400 when there is none."""
    if selector is None:
        return group.active_index, group.active
    for index, profile in enumerate(group.profiles):
        if profile.name == selector:
            return index, profile
    if selector.isdigit() and int(selector) < len(group.profiles):
        return int(selector), group.profiles[int(selector)]
    choices = "; ".join(f"{index}: {p.name!r}" for index, p in enumerate(group.profiles))
    raise bad_parameter(f"no profile named or numbered {selector!r}; this trace has {choices}")


def parse_time(text: str | None, profile: Profile, parameter: str) -> float | None:
    """A start/end parameter in the profile's unit; 400 when it cannot be read."""
    if text is None or text == "":
        return None
    try:
        return parse_quantity(text, profile.unit)
    except ValueError as error:
        raise bad_parameter(f"{parameter}: {error}") from None


def parse_range(
    profile: Profile, start: str | None, end: str | None, names: tuple[str, str] = ("start", "end")
) -> tuple[float | None, float | None]:
    """start and end in the profile's unit; the end must come after the start."""
    start_value = parse_time(start, profile, names[0])
    end_value = parse_time(end, profile, names[1])
    if start_value is not None and end_value is not None and end_value <= start_value:
        raise bad_parameter(f"{names[1]} {end!r} is not after {names[0]} {start!r}")
    return start_value, end_value


@dataclass(frozen=True)
class Selection:
    """A stored trace's profile chosen by a request, and the requested range of it."""

    trace: TraceRecord
    group: ProfileGroup
    index: int
    profile: Profile
    start: float | None
    end: float | None


async def select(
    state: State,
    repository: Repository,
    trace_id: str,
    selector: str | None,
    start: str | None,
    end: str | None,
) -> Selection:
    """Find the caller's trace (404 otherwise), its parsed profiles, the profile and range asked."""
    trace = await repository.get_trace(trace_id)
    group = await open_trace(state, trace)
    index, profile = choose_profile(group, selector)
    start_value, end_value = parse_range(profile, start, end)
    return Selection(trace, group, index, profile, start_value, end_value)


# --- traces ------------------------------------------------------------------

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The profile file: the raw body, or a multipart form with a 'file' part.",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


@router.post("", status_code=201, openapi_extra=UPLOAD_BODY)
async def upload_trace(
    request: Request,
    state: State,
    user_id: UserId,
    name: Annotated[
        str | None, Query(description="Name of the trace (default: the uploaded file's name).")
    ] = None,
) -> Response:
    """Upload a profile file of any supported format; 201 with the new trace.

    The trace is named by `name`, else the file name of a multipart part or
    of a Content-Disposition header on a raw body.

    The body is streamed to storage, refused with 413 past the size limit, and
    parsed once; a file that cannot be read answers 422 with the reason and
    leaves nothing behind.
    """
    limit = state.settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit + MULTIPART_OVERHEAD_BYTES:
        raise too_large(limit)
    names = {"given": name, "file": header_filename(request.headers.get("content-disposition"))}

    def remember(filename: str) -> None:
        names["file"] = filename

    chunks = body_chunks(request.stream(), request.headers.get("content-type", ""), remember)
    trace = await store_trace(
        state, user_id, chunks, lambda: names["given"] or names["file"] or "profile"
    )
    return json_response(trace_document(trace), status=201)


@router.get("")
async def list_traces(
    repository: UserRepository,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Traces per page.")] = 50,
    offset: Annotated[int, Query(ge=0, description="Traces to skip.")] = 0,
) -> Response:
    """The caller's traces, newest first, a page at a time."""
    page = await repository.list_traces(limit, offset)
    following = offset + len(page.traces)
    return json_response(
        {
            "traces": [trace_document(trace) for trace in page.traces],
            "total": page.total,
            "limit": limit,
            "offset": offset,
            "next_offset": following if following < page.total else None,
        }
    )


@router.get("/{trace_id}")
async def get_trace(trace_id: str, repository: UserRepository) -> Response:
    """One of the caller's traces."""
    return json_response(trace_document(await repository.get_trace(trace_id)))


@router.delete("/{trace_id}", status_code=204)
async def delete_trace(trace_id: str, state: State, repository: UserRepository) -> Response:
    """Delete one of the caller's traces: its rows, its blobs (snapshots too), its cached profiles."""
    deleted = await repository.delete_trace(trace_id)
    state.cache.discard(deleted.trace.blob_key)
    for key in deleted.blob_keys:
        await state.storage.delete(key)
    return Response(status_code=204)


# --- analysis ----------------------------------------------------------------


@router.get("/{trace_id}/profiles")
async def trace_profiles(trace_id: str, state: State, repository: UserRepository) -> Response:
    """The profiles of a trace (threads, processes) and their shares of the work."""
    trace = await repository.get_trace(trace_id)
    group = await open_trace(state, trace)
    shares = await in_thread(profile_breakdown, group)
    profiles = [
        {**described, **asdict(share)}
        for described, share in zip(trace.profiles, shares, strict=True)
    ]
    return json_response(
        {"trace": trace.id, "active_profile": group.active_index, "profiles": profiles}
    )


@router.get("/{trace_id}/top")
async def trace_top(
    trace_id: str,
    state: State,
    repository: UserRepository,
    profile: ProfileParam = None,
    start: StartParam = None,
    end: EndParam = None,
    by: RankParam = "self",
    n: Annotated[int, Query(ge=0, description="How many functions; 0 for all.")] = 20,
) -> Response:
    """The heaviest functions of a range, by self or total weight."""
    chosen = await select(state, repository, trace_id, profile, start, end)
    result = await in_thread(top_functions, chosen.profile, by, n or None, chosen.start, chosen.end)
    return json_response(result.to_dict())


@router.get("/{trace_id}/summary")
async def trace_summary(
    trace_id: str,
    state: State,
    repository: UserRepository,
    profile: ProfileParam = None,
    start: StartParam = None,
    end: EndParam = None,
    budget: Annotated[
        int, Query(ge=MIN_BUDGET, description="Most tokens the summary may take.")
    ] = 2000,
    format: Annotated[
        Literal["json", "markdown"],
        Query(description="json: the document and its Markdown; markdown: the Markdown only."),
    ] = "json",
) -> Response:
    """The summary a language model reads, within a token budget."""
    chosen = await select(state, repository, trace_id, profile, start, end)
    result = await in_thread(
        summary, chosen.group, chosen.start, chosen.end, budget, profile=chosen.index
    )
    if format == "markdown":
        return Response(result.markdown, media_type="text/markdown; charset=utf-8")
    return json_response(
        {
            "data": result.data,
            "markdown": result.markdown,
            "json_tokens": result.json_tokens,
            "markdown_tokens": result.markdown_tokens,
        }
    )


@router.get("/{trace_id}/tree")
async def trace_tree(
    trace_id: str,
    state: State,
    repository: UserRepository,
    profile: ProfileParam = None,
    start: StartParam = None,
    end: EndParam = None,
    function: Annotated[
        str | None, Query(description="Show who calls / what is called by this function.")
    ] = None,
    direction: Annotated[
        Literal["callers", "callees"], Query(description="With function: callers or callees.")
    ] = "callees",
    depth: Annotated[
        int | None, Query(ge=1, description="Levels to show (all by default).")
    ] = None,
    min_pct: Annotated[
        float,
        Query(ge=0, le=100, description="Top-down tree: hide nodes under this % of the range."),
    ] = 0.5,
) -> Response:
    """The top-down call tree, or the callers or callees of one function."""
    chosen = await select(state, repository, trace_id, profile, start, end)
    try:
        if function is None:
            tree = await in_thread(
                call_tree, chosen.profile, depth, chosen.start, chosen.end, min_pct
            )
        else:
            walk = callers if direction == "callers" else callees
            tree = await in_thread(walk, chosen.profile, function, depth, chosen.start, chosen.end)
    except LookupError as error:
        raise bad_parameter(str(error)) from None
    return json_response(tree.to_dict())


@router.get("/{trace_id}/diff")
async def trace_diff(
    trace_id: str,
    state: State,
    repository: UserRepository,
    profile: ProfileParam = None,
    start: StartParam = None,
    end: EndParam = None,
    other: Annotated[
        str | None, Query(description="Compare with this trace (the 'after' side).")
    ] = None,
    other_profile: Annotated[str | None, Query(description="Profile of the other trace.")] = None,
    other_start: Annotated[str | None, Query(description="Range start in the other trace.")] = None,
    other_end: Annotated[str | None, Query(description="Range end in the other trace.")] = None,
    before_start: Annotated[
        str | None, Query(description="Without other: first range start.")
    ] = None,
    before_end: Annotated[str | None, Query(description="Without other: first range end.")] = None,
    after_start: Annotated[
        str | None, Query(description="Without other: second range start.")
    ] = None,
    after_end: Annotated[str | None, Query(description="Without other: second range end.")] = None,
    by: RankParam = "self",
    limit: Annotated[int, Query(ge=1, description="Largest changes to list.")] = 50,
) -> Response:
    """What changed per function: between two traces, or between two ranges of one trace.

    With `other`, the range start..end of this trace is compared with
    other_start..other_end of the other one; without it, the ranges
    before_start..before_end and after_start..after_end of this trace.
    """
    chosen = await select(state, repository, trace_id, profile, start, end)
    if other is not None:
        after = await select(state, repository, other, other_profile, other_start, other_end)
        before_profile = chosen.profile.slice(chosen.start, chosen.end)
        after_profile = after.profile.slice(after.start, after.end)
        result = await in_thread(diff_profiles, before_profile, after_profile, by)
    else:
        ranges = [before_start, before_end, after_start, after_end]
        if any(value is None for value in ranges):
            raise bad_parameter(
                "give other (a trace id), or all of before_start, before_end, after_start, after_end"
            )
        first = parse_range(
            chosen.profile, before_start, before_end, ("before_start", "before_end")
        )
        second = parse_range(chosen.profile, after_start, after_end, ("after_start", "after_end"))
        result = await in_thread(diff_ranges, chosen.profile, first, second, by)
    return json_response(result.to_dict(limit))


@router.get("/{trace_id}/search")
async def trace_search(
    trace_id: str,
    state: State,
    repository: UserRepository,
    q: Annotated[str, Query(min_length=1, description="Text to find in function names and files.")],
    profile: ProfileParam = None,
    start: StartParam = None,
    end: EndParam = None,
    regex: Annotated[bool, Query(description="q is a regular expression.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most matches to list.")] = 50,
) -> Response:
    """Functions whose name or file matches, heaviest total first."""
    chosen = await select(state, repository, trace_id, profile, start, end)
    found = await in_thread(search_frames, chosen.profile, q, regex, chosen.start, chosen.end)
    return json_response(
        {
            "profile": chosen.profile.name,
            "unit": chosen.profile.unit.value,
            "query": q,
            "total_matches": len(found),
            "functions": [asdict(function) for function in found[:limit]],
        }
    )


@router.get("/{trace_id}/render")
async def trace_render(
    trace_id: str,
    state: State,
    repository: UserRepository,
    profile: ProfileParam = None,
    start: StartParam = None,
    end: EndParam = None,
    format: Annotated[Literal["png", "svg"], Query(description="Image format.")] = "png",
    view: Annotated[str, Query(description=f"One of {', '.join(VIEWS)}.")] = "flamegraph",
    function: Annotated[str | None, Query(description="The sandwich view's function.")] = None,
    width: Annotated[int, Query(ge=MIN_WIDTH, le=MAX_SIDE, description="Pixels.")] = 1200,
    height: Annotated[
        int | None, Query(ge=1, le=MAX_SIDE, description="Pixels (default: as deep as the stacks).")
    ] = None,
    start_depth: Annotated[int, Query(ge=0, description="Rows to skip at the top.")] = 0,
    theme: Annotated[str, Query(description=f"One of {', '.join(THEMES)}.")] = "light",
    color_by: Annotated[str, Query(description=f"One of {', '.join(COLOR_BY)}.")] = "name",
) -> Response:
    """A flame graph, flame chart or sandwich image of a range, PNG or SVG."""
    chosen = await select(state, repository, trace_id, profile, start, end)
    try:
        image = await in_thread(
            render_flamegraph,
            chosen.profile,
            format,
            view=view,
            function=function,
            width=width,
            height=height,
            start=chosen.start,
            end=chosen.end,
            start_depth=start_depth,
            theme=theme,
            color_by=color_by,
        )
    except LookupError as error:
        raise bad_parameter(str(error)) from None
    return Response(image, media_type=IMAGE_TYPES[format])

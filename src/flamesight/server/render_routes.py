"""`POST /render`: the flamechart-server API, for clients written against it.

The body is the raw profile (any format flamesight reads, gzip or zstd
too); the answer is a PNG. Query parameters, as flamechart-server names them:
`width` (default 1200), `height`, `startTimeMs`/`endTimeMs` (milliseconds
from the start of the profile; `startTime`/`endTime` are accepted as the
same), `startDepth`, `mode` ("light" or "dark"). `theme` is taken as the
mode when `mode` is not given, and `flamegraphThemeName` is accepted and
ignored (one colour scheme). Nothing is stored.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response

from flamesight.formats import FormatError, load
from flamesight.model import Profile, ProfileGroup, parse_quantity
from flamesight.render import MAX_SIDE, MIN_WIDTH, THEMES, VIEWS, render_flamegraph
from flamesight.server.dependencies import State, UserId
from flamesight.server.errors import ApiError, bad_parameter
from flamesight.server.uploads import too_large

router = APIRouter(tags=["render"])

RAW_BODY = {
    "requestBody": {
        "required": True,
        "description": "The raw profile file.",
        "content": {"text/plain": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def offset_from_start(profile: Profile, milliseconds: float | None) -> float | None:
    """A time given in milliseconds from the profile's start, on the profile's own axis.

    Profiles that do not measure time (bytes, sample counts) take the number
    in their own unit.
    """
    if milliseconds is None:
        return None
    factor = parse_quantity("1ms", profile.unit) if profile.unit.is_time else 1.0
    return profile.start + milliseconds * factor


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, refused with 413 past `limit` bytes."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)


@router.post("/render", openapi_extra=RAW_BODY, response_class=Response)
async def render_posted_profile(
    request: Request,
    state: State,
    _user_id: UserId,
    width: Annotated[int, Query(ge=MIN_WIDTH, le=MAX_SIDE)] = 1200,
    height: Annotated[int | None, Query(ge=1, le=MAX_SIDE)] = None,
    start_time_ms: Annotated[float | None, Query(alias="startTimeMs")] = None,
    end_time_ms: Annotated[float | None, Query(alias="endTimeMs")] = None,
    start_time: Annotated[float | None, Query(alias="startTime")] = None,
    end_time: Annotated[float | None, Query(alias="endTime")] = None,
    start_depth: Annotated[int, Query(alias="startDepth", ge=0)] = 0,
    mode: Annotated[str | None, Query(description="light or dark")] = None,
    theme: Annotated[str | None, Query(description="light or dark, when mode is not given")] = None,
    flamegraph_theme_name: Annotated[
        str | None, Query(alias="flamegraphThemeName", description="accepted, not used")
    ] = None,
    view: Annotated[str, Query(description=f"One of {', '.join(VIEWS)}.")] = "flamegraph",
) -> Response:
    """Render the posted profile as a PNG flame graph (flamechart-server compatible)."""
    chosen_theme = mode or theme or "light"
    if chosen_theme not in THEMES:
        raise bad_parameter(f"mode must be one of {', '.join(THEMES)}, not {chosen_theme!r}")
    data = await read_body(request, state.settings.max_upload_bytes)
    try:
        group: ProfileGroup = await anyio.to_thread.run_sync(load, data, "profile")
    except FormatError as error:
        raise ApiError(422, "unreadable_profile", str(error)) from None
    profile = group.active
    start = offset_from_start(profile, start_time_ms if start_time_ms is not None else start_time)
    end = offset_from_start(profile, end_time_ms if end_time_ms is not None else end_time)
    if start is not None and end is not None and end <= start:
        raise bad_parameter("the end time is not after the start time")
    try:
        image = await anyio.to_thread.run_sync(
            lambda: render_flamegraph(
                profile,
                "png",
                view=view,  # type: ignore[arg-type]
                width=width,
                height=height,
                start=start,
                end=end,
                start_depth=start_depth,
                theme=chosen_theme,
            )
        )
    except ValueError as error:
        raise bad_parameter(str(error)) from None
    return Response(image, media_type="image/png")

"""The browser viewer: its data endpoints and the static app itself.

- `GET /` is the app's page; its ES modules and CSS are served by
  `StaticFiles` from the package folder `flamesight/web` under `/assets`
  (no build step, nothing from a CDN). The page is not mounted at `/`, so
  routers added to the app later are never shadowed by the static files.
- `GET /api/traces/{id}/viewer?profile=` is one profile's columnar model in
  one binary answer (`application/x-flamesight-viewer`), laid out so the
  browser reads the columns as typed arrays without copying:

      bytes 0-3   b"FSV1"
      bytes 4-7   header length H (uint32, little-endian)
      bytes 8-..  the header: UTF-8 JSON, padded with spaces so that
                  8 + H is a multiple of 8
      then        the arrays, little-endian, each at an offset (from the end
                  of the header) that is a multiple of 8

  The header holds the profile's description (`profile`: name, unit,
  start, end, total, counts; `profiles`: every profile of the trace),
  `mode`, the frame table's strings (`frames.names`, `frames.files`, null
  where unknown) and `arrays`: name -> {dtype ("int32" or "float64"),
  offset, length}. The arrays are `frame_line`, `stack_parent`,
  `stack_frame` (int32), `sample_stack` (int32, -1 for no stack),
  `sample_time` and `sample_weight` (float64, the profile's unit).

  A profile with more samples than the threshold (`max_samples`, default
  `FLAMESIGHT_VIEWER_MAX_SAMPLES` or 2,000,000) is not shipped whole: the
  header says `mode: "layout"` and the sample, stack and frame arrays are
  left out, and the browser asks for each viewport instead:
- `GET /api/traces/{id}/layout?view=&start=&end=&width=&start_depth=&levels=`
  lays out one viewport (a time range, a depth range and a pixel width)
  with `flamesight.render`'s layout functions, which merge frames narrower
  than a pixel, and answers the rectangles as JSON columns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import APIRouter, FastAPI, Query, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from flamesight.model import Profile
from flamesight.render import (
    MAX_SIDE,
    MIN_WIDTH,
    FlameLayout,
    layout_flamechart,
    layout_flamegraph,
    layout_sandwich,
)
from flamesight.server.dependencies import State, UserRepository
from flamesight.server.errors import bad_parameter
from flamesight.server.trace_routes import (
    EndParam,
    ProfileParam,
    StartParam,
    in_thread,
    json_response,
    select,
)

router = APIRouter(tags=["viewer"])

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
VIEWER_MEDIA_TYPE = "application/x-flamesight-viewer"
MAGIC = b"FSV1"
ENV_VIEWER_MAX_SAMPLES = "FLAMESIGHT_VIEWER_MAX_SAMPLES"
DEFAULT_VIEWER_MAX_SAMPLES = 2_000_000
ALIGN = 8


def viewer_max_samples() -> int:
    """Most samples shipped whole to the browser: $FLAMESIGHT_VIEWER_MAX_SAMPLES or 2,000,000."""
    text = os.environ.get(ENV_VIEWER_MAX_SAMPLES, "").replace("_", "").replace(",", "")
    return int(text) if text.isdigit() else DEFAULT_VIEWER_MAX_SAMPLES


def encode_viewer(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """The binary viewer document: magic, header length, padded JSON header, aligned arrays."""
    blobs: list[bytes] = []
    described: dict[str, dict[str, Any]] = {}
    offset = 0
    for name, array in arrays.items():
        dtype = "float64" if array.dtype.kind == "f" else "int32"
        data = np.ascontiguousarray(array, dtype="<f8" if dtype == "float64" else "<i4").tobytes()
        described[name] = {"dtype": dtype, "offset": offset, "length": len(array)}
        padding = -len(data) % ALIGN
        blobs.append(data + b"\0" * padding)
        offset += len(data) + padding
    text = orjson.dumps({**header, "arrays": described})
    text += b" " * (-(len(MAGIC) + 4 + len(text)) % ALIGN)
    return b"".join([MAGIC, len(text).to_bytes(4, "little"), text, *blobs])


def profile_description(index: int, profile: Profile) -> dict[str, Any]:
    """What the viewer shows about a profile before drawing it."""
    depth = profile.stacks.depth
    return {
        "index": index,
        "name": profile.name,
        "unit": profile.unit.value,
        "start": profile.start,
        "end": profile.end,
        "total": profile.total_weight,
        "samples": len(profile.samples),
        "frames": len(profile.frames),
        "stacks": len(profile.stacks),
        "max_depth": int(depth.max()) + 1 if len(depth) else 0,
        "sampled": profile.sampled,
    }


def viewer_document(
    profiles: list[Profile], index: int, max_samples: int
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of the viewer document of `profiles[index]`."""
    profile = profiles[index]
    whole = len(profile.samples) <= max_samples
    header: dict[str, Any] = {
        "version": 1,
        "mode": "samples" if whole else "layout",
        "max_samples": max_samples,
        "profile": profile_description(index, profile),
        "profiles": [
            {"index": i, "name": p.name, "samples": len(p.samples), "unit": p.unit.value}
            for i, p in enumerate(profiles)
        ],
    }
    if not whole:
        return header, {}
    frames = profile.frames
    header["frames"] = {"names": frames.name.tolist(), "files": frames.file.tolist()}
    samples = profile.samples
    return header, {
        "frame_line": frames.line,
        "stack_parent": profile.stacks.parent,
        "stack_frame": profile.stacks.frame,
        "sample_stack": samples.stack,
        "sample_time": samples.time,
        "sample_weight": samples.weight,
    }


@router.get("/api/traces/{trace_id}/viewer", response_class=Response)
async def trace_viewer(
    trace_id: str,
    state: State,
    repository: UserRepository,
    profile: ProfileParam = None,
    max_samples: Annotated[
        int | None,
        Query(ge=0, description="Ship the samples only up to this many (else: layout mode)."),
    ] = None,
) -> Response:
    """One profile's columnar model for the browser viewer (binary, see the module docstring)."""
    chosen = await select(state, repository, trace_id, profile, None, None)
    limit = viewer_max_samples() if max_samples is None else max_samples
    header, arrays = await in_thread(viewer_document, chosen.group.profiles, chosen.index, limit)
    header["trace"] = chosen.trace.id
    body = await in_thread(encode_viewer, header, arrays)
    return Response(body, media_type=VIEWER_MEDIA_TYPE)


def layout_document(layout: FlameLayout) -> dict[str, Any]:
    """A layout as JSON columns: rectangles in axis units, and the functions they name."""
    used = np.unique(layout.function[layout.function >= 0])
    return {
        "view": layout.view,
        "unit": layout.unit.value,
        "width": layout.width,
        "axis_start": layout.axis_start,
        "axis_end": layout.axis_end,
        "range_total": layout.range_total,
        "top_depth": layout.top_depth,
        "rows": layout.rows,
        "focus": layout.focus,
        "x": layout.x,
        "span": layout.span,
        "depth": layout.depth,
        "function": layout.function,
        "merged": layout.merged,
        "self": layout.self_weight,
        "total": layout.total_weight,
        # Only the functions the rectangles show, by id.
        "functions": {
            str(function): {
                "name": layout.function_names[function],
                "file": layout.function_files[function],
                "line": int(layout.function_lines[function]),
            }
            for function in used.tolist()
        },
    }


@router.get("/api/traces/{trace_id}/layout")
async def trace_layout(
    trace_id: str,
    state: State,
    repository: UserRepository,
    profile: ProfileParam = None,
    start: StartParam = None,
    end: EndParam = None,
    view: Annotated[
        Literal["flamechart", "flamegraph", "sandwich"], Query(description="Which view.")
    ] = "flamechart",
    width: Annotated[int, Query(ge=MIN_WIDTH, le=MAX_SIDE, description="Pixels.")] = 1200,
    start_depth: Annotated[int, Query(ge=0, description="First row (stack depth).")] = 0,
    levels: Annotated[int | None, Query(ge=1, le=10_000, description="Rows to lay out.")] = None,
    function: Annotated[str | None, Query(description="The sandwich view's function.")] = None,
) -> Response:
    """The rectangles of one viewport; frames narrower than a pixel are merged."""
    chosen = await select(state, repository, trace_id, profile, start, end)
    if view == "sandwich":
        if function is None:
            raise bad_parameter("the sandwich view needs a function")
        try:
            layout = await in_thread(
                layout_sandwich,
                chosen.profile,
                function,
                width=width,
                start=chosen.start,
                end=chosen.end,
                levels=levels,
            )
        except LookupError as error:
            raise bad_parameter(str(error)) from None
    else:
        lay_out = layout_flamechart if view == "flamechart" else layout_flamegraph
        layout = await in_thread(
            lay_out,
            chosen.profile,
            width=width,
            start=chosen.start,
            end=chosen.end,
            start_depth=start_depth,
            levels=levels,
        )
    return json_response(layout_document(layout))


@router.get("/", include_in_schema=False)
async def web_app() -> FileResponse:
    """The browser app's page."""
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def install_viewer(app: FastAPI) -> None:
    """Add the viewer's endpoints, the page at `/` and its assets under `/assets`, to `app`."""
    app.include_router(router)
    app.mount("/assets", StaticFiles(directory=WEB_DIR), name="assets")

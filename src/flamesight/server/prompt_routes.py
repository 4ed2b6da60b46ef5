"""The six sample prompts for the browser's Send to LLM dialog: `GET /api/prompts`.

Served from `flamesight.llm.prompts.PRESETS`, so the page shows them word
for word as the CLI and the analyze endpoint know them (``preset`` 1..6).
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from flamesight.llm.prompts import PRESETS
from flamesight.server.trace_routes import json_response

router = APIRouter(tags=["analyses"])


@router.get("/api/prompts")
async def list_prompts() -> Response:
    """The sample prompts: number (the analyze endpoint's `preset`), short name and text."""
    return json_response(
        {
            "prompts": [
                {"number": preset.number, "name": preset.name, "text": preset.text}
                for preset in PRESETS
            ]
        }
    )

"""Shared fixtures: where the conformance corpus is, and skipping cleanly without it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CONFORMANCE = SHARED / "conformance"


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """The conformance corpus folder, or a skip when ../shared is not beside the repo."""
    if not (CONFORMANCE / "expected.json").is_file():
        pytest.skip(f"conformance corpus not found at {CONFORMANCE}")
    return CONFORMANCE

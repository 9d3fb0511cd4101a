"""Shared fixtures: paths to the shipped workflows and to the recorded ComfyUI data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.e2e_world"]  # the `start` fixture of the end-to-end tests

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
SHARED = ROOT.parent / "shared"
TRANSCRIPTS = SHARED / "comfyui-transcripts"


@pytest.fixture(scope="session")
def object_info() -> dict[str, Any]:
    """The full /object_info recorded from ComfyUI 0.3.64 (no models installed), as the fake serves it."""
    with gzip.open(ROOT / "tests" / "fakes" / "object_info.json.gz") as f:
        return json.load(f)

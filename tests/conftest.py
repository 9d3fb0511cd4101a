"""Shared fixtures: paths to the shipped workflows and to the recorded ComfyUI data."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.comfyui import FakeComfyUI

pytest_plugins = ["tests.e2e_world"]  # the `start` fixture of the end-to-end tests

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
SHARED = ROOT.parent / "shared"
TRANSCRIPTS = SHARED / "comfyui-transcripts"
MODELS = {"checkpoints": ["v1-5-pruned-emaonly-fp16.safetensors", "ace_step_v1_3.5b.safetensors"]}


@pytest.fixture(scope="session")
def object_info() -> dict[str, Any]:
    """The full /object_info recorded from ComfyUI 0.3.64 (no models installed), as the fake serves it."""
    with gzip.open(ROOT / "tests" / "fakes" / "object_info.json.gz") as f:
        return json.load(f)


@pytest.fixture
async def comfy() -> AsyncIterator[FakeComfyUI]:
    """A running fake ComfyUI that has both shipped workflows' checkpoints."""
    fake = FakeComfyUI(models=MODELS)
    await fake.start()
    yield fake
    await fake.stop()


def write_blur_workflow(folder: Path) -> Path:
    """A model-free workflow with an image option: LoadImage -> ImageBlur -> SaveImage, bound as /blur."""
    folder.mkdir(exist_ok=True)
    (folder / "blur.json").write_text(
        '{"1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},'
        ' "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3, "sigma": 1.0}},'
        ' "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "blur"}}}'
    )
    (folder / "blur.toml").write_text(
        '[command]\nname = "blur"\ndescription = "Blur a picture"\n'
        '[params.picture]\ntype = "image"\nrequired = true\ntarget = "1.image"\n'
    )
    return folder

"""Shared fixtures: paths to the shipped workflows, the recorded ComfyUI data and the fake ComfyUI's profiles."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.comfyui import PROFILES, FakeComfyUI
from tests.mini_comfy import MiniComfy

pytest_plugins = ["tests.e2e_world"]  # the `start` fixture of the end-to-end tests

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
SHARED = ROOT.parent / "shared"
TRANSCRIPTS = SHARED / "comfyui-transcripts"
MODELS = {"checkpoints": ["v1-5-pruned-emaonly-fp16.safetensors", "ace_step_v1_3.5b.safetensors"]}
# The Wan 2.1 files of workflows/video.json (the e2e world leaves them out, so /video is not registered there)
VIDEO_MODELS = {
    "diffusion_models": ["wan2.1_t2v_1.3B_fp16.safetensors"],
    "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
    "vae": ["wan_2.1_vae.safetensors"],
}


def shared_path(*parts: str) -> Path:
    """A file or folder of ../shared (steering material beside a checkout); skips the test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/{'/'.join(parts)} is not beside this checkout (a fresh clone has no ../shared)")
    return path


DEFAULT_PROFILE = "0.3.64"
BOTH_PROFILES_MARKERS = ("e2e", "recovery")  # these suites run once per fake ComfyUI profile


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every e2e and recovery test against each fake ComfyUI profile (ids [0.3.64] and [current])."""
    if "comfy_profile" not in metafunc.fixturenames:
        return
    if not any(metafunc.definition.get_closest_marker(name) for name in BOTH_PROFILES_MARKERS):
        return
    if any("comfy_profile" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")):
        return  # the test chose its profiles itself
    metafunc.parametrize("comfy_profile", [pytest.param(name, id=name) for name in PROFILES], indirect=True)


@pytest.fixture
def comfy_profile(request: pytest.FixtureRequest) -> str:
    """The fake ComfyUI's profile: both for e2e and recovery tests, 0.3.64 elsewhere unless a test parametrizes it."""
    return getattr(request, "param", DEFAULT_PROFILE)


@pytest.fixture(scope="session")
def object_info() -> dict[str, Any]:
    """The full /object_info recorded from ComfyUI 0.3.64 (no models installed), as the fake serves it."""
    with gzip.open(ROOT / "tests" / "fakes" / "object_info.json.gz") as f:
        return json.load(f)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One HTTP session for a test's engine or clients, closed after it (as the bot owns one per process)."""
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def comfy(comfy_profile: str) -> AsyncIterator[FakeComfyUI]:
    """A running fake ComfyUI that has every shipped workflow's models."""
    fake = FakeComfyUI(models=MODELS | VIDEO_MODELS, profile=comfy_profile)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def fakes() -> AsyncIterator[list[FakeComfyUI]]:
    """Three fake servers: [0] without models, [1] and [2] with every shipped workflow's models."""
    servers = [FakeComfyUI(), FakeComfyUI(models=MODELS | VIDEO_MODELS), FakeComfyUI(models=MODELS | VIDEO_MODELS)]
    for fake in servers:
        await fake.start()
    yield servers
    for fake in servers:
        await fake.stop()


@pytest.fixture
async def mini() -> AsyncIterator[MiniComfy]:
    """A scripted ComfyUI on a real port (tests.mini_comfy)."""
    server = MiniComfy()
    await server.start()
    yield server
    await server.stop()


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Record the cases a property test generated on its report, which pytest-xdist carries to the summary."""
    generated = getattr(getattr(item, "module", None), "GENERATED", None)  # a module's count of generated cases
    before = dict(generated or {})
    try:
        return (yield)
    finally:
        if generated is not None:
            item.user_properties.append(("generated", {k: v - before.get(k, 0) for k, v in generated.items()}))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print how much of the abuse suite ran: its tests and the cases its property tests generated."""
    reports = [r for r in terminalreporter.stats.get("passed", []) if "abuse" in r.keywords and r.when == "call"]
    failed = [r for r in terminalreporter.stats.get("failed", []) if "abuse" in r.keywords and r.when == "call"]
    if not reports and not failed:
        return
    generated: Counter[str] = Counter()
    for report in reports + failed:
        for name, value in report.user_properties:
            if name == "generated":
                generated.update(value)
    counts = [f"{len(reports)} passed", f"{len(failed)} failed"]
    counts += [f"{value} {kind}" for kind, value in generated.items() if value]
    terminalreporter.write_line("abuse suite: " + ", ".join(counts))

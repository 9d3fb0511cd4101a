"""Outputs over the caps (issue 11 item 4): named with their size in the result, never downloaded or decoded."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

import cli
import tests.fakes.comfyui as fake_comfyui
from core.config import load_settings
from core.jobs.store import JobState
from core.media import human_size
from tests.conftest import WORKFLOWS
from tests.e2e_world import Start, finished
from tests.fakes.comfyui import FakeComfyUI
from tests.test_recovery import wait_state

pytestmark = [pytest.mark.abuse, pytest.mark.e2e]


def batch_workflows(folder: Path, batch_size: int) -> Path:
    """The shipped /image, saving `batch_size` pictures per job."""
    folder.mkdir()
    graph = json.loads((WORKFLOWS / "image.json").read_text())
    graph["5"]["inputs"]["batch_size"] = batch_size
    (folder / "image.json").write_text(json.dumps(graph))
    shutil.copy(WORKFLOWS / "image.toml", folder / "image.toml")
    return folder


def views(comfy: FakeComfyUI) -> int:
    """How many files the bot downloaded from ComfyUI."""
    return sum(1 for r in comfy.requests if r.path == "/view")


async def test_outputs_over_max_outputs_per_job_are_named_not_downloaded(start: Start, tmp_path: Path) -> None:
    world = await start(
        workflows=batch_workflows(tmp_path / "workflows", 14), settings_env={"MAX_OUTPUTS_PER_JOB": "2"}
    )
    it = await world.discord.invoke_slash("image", {"prompt": "fourteen cats"})
    message = await finished(world, it)
    assert [a["filename"] for a in message["attachments"]] == ["ComfyUI_00001_.png", "ComfyUI_00002_.png"]
    over = "not downloaded, the job made more than 2 files (MAX_OUTPUTS_PER_JOB)"
    assert message["content"].splitlines()[-11:] == [
        *(f"ComfyUI_{n:05}_.png: {over}" for n in range(3, 13)),
        "…and 2 more file(s) not downloaded.",
    ]
    assert views(world.comfy) == 2
    assert len([r for r in world.discord.requests if r.method == "POST" and r.files]) == 0  # one message, edited


def png_claiming(width: int, height: int, total: int) -> bytes:
    """A PNG of exactly `total` bytes whose header claims `width`×`height` pixels; it holds no picture to decode."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    tail = chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    return head + chunk(b"zzZz", b"\0" * (total - len(head) - len(tail) - 12)) + tail


async def test_a_144_megapixel_png_is_named_with_its_size_and_the_rest_is_delivered(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await start(workflows=batch_workflows(tmp_path / "workflows", 2), attachment_size_limit=400_000)
    huge = png_claiming(12000, 12000, 500 * 1024)  # over the upload limit, so the bot would have to shrink it
    made: list[int] = []
    real_png = fake_comfyui.make_png

    def first_is_huge(width: int, height: int, *args: Any, **kwargs: Any) -> bytes:
        made.append(1)
        return huge if len(made) == 1 else real_png(width, height, *args, **kwargs)

    monkeypatch.setattr(fake_comfyui, "make_png", first_is_huge)
    it = await world.discord.invoke_slash("image", {"prompt": "a very large cat"})
    message = await finished(world, it)
    assert [a["filename"] for a in message["attachments"]] == ["ComfyUI_00002_.png"]
    assert message["content"].splitlines()[-1] == (
        "ComfyUI_00001_.png is 12000×12000 pixels (144 MP, 500 KB), more than the 100 MP the bot decodes to "
        "shrink a file, so it was not attached."
    )
    assert not [r for r in world.discord.requests if r.status == 413]


@pytest.mark.recovery
async def test_max_image_pixels_applies_to_a_result_delivered_after_a_restart(start: Start) -> None:
    world = await start(attachment_size_limit=200_000, settings_env={"MAX_IMAGE_PIXELS": "1000000"})
    world.comfy.output_padding = 300_000  # over the upload limit: the picture would be decoded to shrink it
    world.comfy.node_delay = 0.1
    it = await world.discord.invoke_slash("image", {"prompt": "a wide cat", "width": 1024, "height": 1024})
    await world.comfy.wait_for(lambda: bool(world.comfy.queue_snapshot()[0]))
    world.comfy.pause()
    await world.stop_bot()
    world.comfy.node_delay = 0.0
    world.comfy.resume()
    await world.start_bot()  # delivered by recovery, through deliver_to_channel
    await world.discord.wait_for(lambda: " · " in ((it.original or {}).get("content") or ""), timeout=15)
    assert it.original is not None
    size = human_size(len(world.comfy.files[("output", "", "ComfyUI_00001_.png")]))
    assert it.original["content"].splitlines()[-1] == (
        f"ComfyUI_00001_.png is 1024×1024 pixels (1 MP, {size}), more than the 1 MP the bot decodes to "
        "shrink a file, so it was not attached."
    )
    assert it.original["attachments"] == []
    await wait_state(world, world.prompts()[0]["prompt_id"], JobState.DONE)


async def test_cli_prints_each_output_over_the_caps(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = batch_workflows(tmp_path / "workflows", 3)
    env = {"COMFYUI_URL": comfy.url, "WORKFLOWS_DIR": str(folder), "MAX_OUTPUTS_PER_JOB": "1"}
    out = tmp_path / "out"
    code = await cli.run_jobs(load_settings(env, require_token=False), "image", ["prompt=three cats"], out, 1)
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert [Path(line).name for line in stdout.splitlines()] == [f"{p.name}" for p in sorted(out.iterdir())]
    assert len(stdout.splitlines()) == 1
    assert [line for line in stderr.splitlines() if "skipped" in line or "done" in line] == [
        "[1/1] skipped: ComfyUI_00002_.png: not downloaded, the job made more than 1 files (MAX_OUTPUTS_PER_JOB)",
        "[1/1] skipped: ComfyUI_00003_.png: not downloaded, the job made more than 1 files (MAX_OUTPUTS_PER_JOB)",
        "[1/1] done: 1 file(s) saved.",
    ]

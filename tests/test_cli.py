"""`python bot.py run` and `python bot.py check` as an admin runs them, against the fake ComfyUI."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.conftest import ROOT, SHARED, WORKFLOWS, write_blur_workflow
from tests.fakes.comfyui import FakeComfyUI, make_png


async def bot_py(*args: str, url: str, cwd: Path, workflows: Path = WORKFLOWS) -> tuple[int, str, str]:
    """Run bot.py in a subprocess while the fake keeps serving on this event loop."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "DEV_GUILD_ID")}
    env.update(COMFYUI_URL=url, WORKFLOWS_DIR=str(workflows))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bot.py"),
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_run_image_saves_real_files(comfy: FakeComfyUI, tmp_path: Path) -> None:
    code, out, err = await bot_py(
        "run", "image", "prompt=a cat", "seed=11", "--out", "pics", url=comfy.url, cwd=tmp_path
    )
    assert code == 0, err
    assert out.splitlines() == ["pics/image_11_ComfyUI_00001_.png"]
    saved = (tmp_path / "pics" / "image_11_ComfyUI_00001_.png").read_bytes()
    assert saved == comfy.files[("output", "", "ComfyUI_00001_.png")] and saved.startswith(b"\x89PNG")


async def test_run_music_batch_with_lyrics_from_a_file(comfy: FakeComfyUI, tmp_path: Path) -> None:
    (tmp_path / "lyrics.txt").write_text("[verse]\nnight drive\n[chorus]\nneon\n")
    code, out, err = await bot_py(
        "run",
        "music",
        "tags=city pop",
        "lyrics=@lyrics.txt",
        "--count",
        "2",
        "--out",
        "songs",
        url=comfy.url,
        cwd=tmp_path,
    )
    assert code == 0, err
    paths = out.splitlines()
    assert len(paths) == 2 and all(p.endswith(".mp3") for p in paths)
    assert len({p.split("_")[1] for p in paths}) == 2  # two different random seeds
    for path in paths:
        assert (tmp_path / path).read_bytes().startswith(b"ID3")
    prompts = [r.json["prompt"] for r in comfy.requests if r.method == "POST" and r.path == "/prompt"]
    assert {p["74:14"]["inputs"]["lyrics"] for p in prompts} == {"[verse]\nnight drive\n[chorus]\nneon"}
    assert "2 of 2 jobs succeeded." in err


async def test_run_refuses_bad_input_before_submitting(comfy: FakeComfyUI, tmp_path: Path) -> None:
    code, out, err = await bot_py("run", "image", "prompt=   ", url=comfy.url, cwd=tmp_path)
    assert (code, out, err) == (2, "", "prompt must not be empty.\n")
    code, _, err = await bot_py("run", "video", "prompt=x", url=comfy.url, cwd=tmp_path)
    assert (code, err) == (2, "There is no workflow 'video'. Available: image, music.\n")
    assert not [r for r in comfy.requests if r.path == "/prompt"]


async def test_run_reports_a_rejected_workflow(comfy: FakeComfyUI, tmp_path: Path) -> None:
    comfy.models = {"checkpoints": []}
    code, out, err = await bot_py("run", "image", "prompt=a cat", url=comfy.url, cwd=tmp_path)
    assert code == 1 and out == ""
    assert err == (
        "[1/1] failed: ComfyUI refused the workflow:\n• “Load Checkpoint” (CheckpointLoaderSimple, node 4): "
        "input ckpt_name: 'v1-5-pruned-emaonly-fp16.safetensors' is not available on the server. "
        "The server has none installed.\n"
    )


async def test_check_names_both_missing_checkpoints(comfy: FakeComfyUI, tmp_path: Path) -> None:
    comfy.models = {"checkpoints": []}
    code, out, _ = await bot_py("check", url=comfy.url, cwd=tmp_path)
    assert code == 1
    assert out.splitlines() == [
        "Workflows in " + str(WORKFLOWS) + "/: 2 command(s) (/image, /music)",
        f"Server {comfy.url}: reachable (ComfyUI 0.3.64, 496 node classes)",
        "  /image (image.json): 1 problem(s)",
        "    - “Load Checkpoint” (CheckpointLoaderSimple, node 4): input ckpt_name: "
        "'v1-5-pruned-emaonly-fp16.safetensors' is not available on the server (it has none).",
        "  /music (music.json): 1 problem(s)",
        "    - “Load Checkpoint” (CheckpointLoaderSimple, node 74:40): input ckpt_name: "
        "'ace_step_v1_3.5b.safetensors' is not available on the server (it has none).",
        "2 problem(s) found.",
    ]


async def test_check_passes_when_the_server_has_everything(comfy: FakeComfyUI, tmp_path: Path) -> None:
    code, out, _ = await bot_py("check", url=comfy.url, cwd=tmp_path)
    assert code == 0
    assert out.splitlines()[-3:] == ["  /image (image.json): OK", "  /music (music.json): OK", "All good."]


async def test_check_reports_an_unreachable_server(tmp_path: Path, unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}"
    code, out, _ = await bot_py("check", url=url, cwd=tmp_path)
    assert code == 1
    assert out.splitlines()[1].startswith(f"Server {url}: NOT reachable (GET /system_stats: ClientConnectorError")
    assert out.splitlines()[-1] == "1 problem(s) found."


async def test_run_uploads_an_image_file(comfy: FakeComfyUI, tmp_path: Path) -> None:
    folder = write_blur_workflow(tmp_path / "workflows")
    picture = make_png(8, 8)
    (tmp_path / "holiday.png").write_bytes(picture)
    code, out, err = await bot_py("run", "blur", "picture=holiday.png", url=comfy.url, cwd=tmp_path, workflows=folder)
    assert code == 0, err
    assert out.splitlines()[0].startswith("out/blur_") and out.strip().endswith("_blur_00001_.png")
    assert comfy.files[("input", "discord-bot", "holiday.png")] == picture


async def test_check_prints_the_options_it_detected(comfy: FakeComfyUI, tmp_path: Path) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "portrait.json").write_text((WORKFLOWS / "image.json").read_text())
    (folder / "ui.json").write_text((SHARED / "workflow-samples" / "12_ui_sd15_default_template.json").read_text())
    code, out, _ = await bot_py("check", url=comfy.url, cwd=tmp_path, workflows=folder)
    lines = out.splitlines()
    assert code == 1  # the UI-format file is a problem
    assert lines[1] == (
        "  - ui.json: this is the editor (UI) format. In ComfyUI open the workflow and use Workflow > Export (API), "
        "then save that file here instead."
    )
    assert lines[2:4] == [
        "  /portrait: portrait.json has no binding file; detected options, which you can",
        "  save as portrait.toml and adjust:",
    ]
    assert '      target = "6.text"' in lines and '      target = "7.text"' in lines
    assert "  /portrait (portrait.json): OK" in lines

"""Opt-in: the protocol path against a real ComfyUI (`COMFYUI_URL=http://host:8188 pytest -m live`).

It uses a model-free workflow (EmptyImage -> SaveImage), so any ComfyUI server can run it.
"""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest

from core.errors import PromptRejected
from core.jobs.engine import Engine
from core.workflows import load_workflow

URL = os.environ.get("COMFYUI_URL")
pytestmark = [pytest.mark.live, pytest.mark.skipif(not URL, reason="set COMFYUI_URL to a ComfyUI server")]

GRAPH = """{
  "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 16744448}},
  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "discord-bot-live"}}
}"""
BINDING = '[params.color]\ntype = "int"\nmin = 0\nmax = 16777215\ntarget = "1.color"\n'


async def test_live_server_runs_a_model_free_workflow(tmp_path: Path) -> None:
    (tmp_path / "live.json").write_text(GRAPH)
    (tmp_path / "live.toml").write_text(BINDING)
    workflow = load_workflow(tmp_path / "live.toml")
    async with aiohttp.ClientSession() as session:
        engine = Engine(session, (str(URL),), job_timeout=120, max_output_bytes=2**24)
        engine.start()
        try:
            result = await engine.run(workflow, workflow.resolve({"color": 255}))
            [file] = result.files
            assert file.read().startswith(b"\x89PNG") and file.filename.startswith("discord-bot-live_")
            bad = workflow.render({"color": 255})
            bad["1"]["inputs"]["width"] = 0
            with pytest.raises(PromptRejected):
                await engine.servers[0].client.submit(bad, client_id="live-test", prompt_id=result.job_id + "x")
        finally:
            await engine.close()

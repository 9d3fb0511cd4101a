"""The benchmark's floor client: its websocket bookkeeping, and one job through the fakes (nothing timed)."""

from __future__ import annotations

import asyncio

from bench.floor import Outputs, running_floor
from tests.conftest import MODELS
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.discord_fake import FakeDiscord

IMAGE = {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}


def executed(prompt_id: str, output: object) -> dict[str, object]:
    return {"type": "executed", "data": {"node": "9", "display_node": "9", "output": output, "prompt_id": prompt_id}}


def finished(prompt_id: str) -> dict[str, object]:
    return {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}


def test_outputs_gives_a_prompts_files_once_it_has_finished() -> None:
    outputs = Outputs()
    # Newer ComfyUI describes the file further; /view wants only where it is.
    assert outputs.feed(executed("a", {"images": [IMAGE | {"kind": "image", "width": 512}]})) is None
    assert outputs.feed({"type": "executing", "data": {"node": "9", "prompt_id": "a"}}) is None
    assert outputs.feed(finished("a")) == ("a", [IMAGE])
    assert outputs.files == {}  # nothing kept of a finished prompt


def test_outputs_keeps_prompts_apart_and_skips_what_is_not_a_file() -> None:
    outputs = Outputs()
    other = IMAGE | {"filename": "other.png", "subfolder": "x"}
    outputs.feed(executed("a", {"images": [IMAGE], "text": ["not a file"], "animated": [False]}))
    outputs.feed(executed("b", {"images": [other]}))
    outputs.feed(executed("a", {"gifs": [{"filename": "a.gif"}]}))  # no subfolder or type: ComfyUI's defaults
    assert outputs.feed(finished("b")) == ("b", [other])
    assert outputs.feed(finished("a")) == ("a", [IMAGE, {"filename": "a.gif", "subfolder": "", "type": "output"}])
    assert outputs.feed(finished("c")) == ("c", [])  # a prompt without outputs finishes too


def test_outputs_ignores_messages_of_no_prompt() -> None:
    outputs = Outputs()
    for message in (
        {"type": "status", "data": {"status": {}, "sid": "x"}},
        {"type": "executing", "data": {"node": None}},  # ComfyUI before prompt ids in messages
        {"type": "executed", "data": "not an object"},
        ["not", "an", "object"],
    ):
        assert outputs.feed(message) is None
    assert outputs.files == {}


async def test_floor_client_delivers_the_workflows_file_to_the_interaction() -> None:
    discord_fake = FakeDiscord()
    comfy = FakeComfyUI(models=MODELS, output_padding=10_000, sampler_steps=1, profile="current")
    await asyncio.gather(discord_fake.start(), comfy.start())
    try:
        info = {"comfy_urls": [comfy.url], "guild_id": discord_fake.guild_id, "token": discord_fake.token}
        async with running_floor(info) as client:
            it = await discord_fake.invoke_slash("image", {"prompt": "a red fox"})
            await discord_fake.wait_for(lambda: client.delivered == 1, timeout=10)
        [submitted] = [r.json for r in comfy.requests if r.method == "POST" and r.path.endswith("/prompt")]
        assert submitted["prompt"]["6"]["inputs"]["text"] == "a red fox"
        [(_, entry)] = comfy.history.items()
        [saved] = entry["outputs"]["9"]["images"]
        [edit] = [r for r in it.requests if r.method == "PATCH"]
        [sent] = edit.files
        assert (sent.filename, sent.data) == (saved["filename"], comfy.files[("output", "", saved["filename"])])
    finally:
        await asyncio.gather(discord_fake.stop(), comfy.stop())

"""Live previews: the server's preview frames reach the job's status message, paced, and go with the result."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from core.comfyui.listener import PREVIEWED, ComfyListener
from core.config import load_settings
from core.errors import ConfigError, WorkflowError
from core.jobs.engine import Engine
from core.workflows.loader import load_workflow
from discord_ui.status import StatusScheduler
from tests.conftest import WORKFLOWS
from tests.e2e_world import Start, World, finished
from tests.fakes.comfyui import _preview_jpeg, make_png
from tests.fakes.discord_fake import Interaction, Request
from tests.test_discord_ui import VirtualTime

PREVIEW_SECONDS = 0.5


def preview_edits(it: Interaction) -> list[Request]:
    """The status edits that attached a preview image."""
    return [r for r in it.requests if r.method == "PATCH" and [f.filename for f in r.files] == ["preview.jpg"]]


async def previewing_world(start: Start, **options: Any) -> World:
    """The e2e world with a server started with --preview-method: 50 sampler previews within 2 s."""
    options.setdefault("settings_env", {"PREVIEW_SECONDS": str(PREVIEW_SECONDS)})
    world = await start(**options)
    world.comfy.preview_method = "auto"
    world.comfy.sampler_steps = 50
    world.comfy.sampler_delay = 2.0
    # The nodes after the sampler take longer than PREVIEW_SECONDS, so the newest frame is due before the result.
    world.comfy.node_delay = 0.4
    return world


# -- end to end ---------------------------------------------------------------------------------------------


@pytest.mark.e2e
async def test_fifty_previews_in_two_seconds_make_a_few_paced_edits_and_the_last_is_the_newest(start: Start) -> None:
    world = await previewing_world(start)
    it = await world.discord.invoke_slash("image", {"prompt": "a cat forming slowly"})
    message = await finished(world, it, timeout=20)

    [prompt_id] = {p for p, _ in world.comfy.previews_sent}
    frames = [image for _, image in world.comfy.previews_sent]
    assert len(frames) == 50
    edits = preview_edits(it)
    assert 2 <= len(edits) <= 2.0 / PREVIEW_SECONDS + 2  # not one edit per frame
    gaps = [b.at - a.at for a, b in itertools.pairwise(edits)]
    assert all(gap >= PREVIEW_SECONDS - 0.05 for gap in gaps), gaps
    shown = [edit.files[0].data for edit in edits]
    assert all(image in frames for image in shown)
    assert shown[-1] == frames[-1]  # the newest frame is the one left before the result
    assert edits[-1].json["content"].startswith(f"**/image** for <@{it.user['id']}>\nRunning ")
    # The result replaces the preview
    assert [a["filename"] for a in message["attachments"]] == ["ComfyUI_00001_.png"]
    assert world.prompts()[0]["prompt_id"] == prompt_id


@pytest.mark.e2e
async def test_previews_of_another_clients_prompt_are_ignored(start: Start) -> None:
    world = await previewing_world(start)
    world.comfy.sampler_delay, world.comfy.node_delay = 1.0, 0.05  # two prompts in a row: no pacing is asserted
    graph = json.loads((WORKFLOWS / "image.json").read_text(encoding="utf-8"))
    # Another client's prompt without a client_id: ComfyUI broadcasts its (legacy, type 1) previews to every socket
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{world.comfy.url}/prompt", json={"prompt": graph}) as answer,
    ):
        foreign = (await answer.json())["prompt_id"]
    await world.discord.wait_for(lambda: bool(world.comfy.previews_sent), timeout=10)
    it = await world.discord.invoke_slash("image", {"prompt": "a cat after someone else's dog"})
    await finished(world, it, timeout=30)

    ours = {p for p, _ in world.comfy.previews_sent} - {foreign}
    theirs = [image for p, image in world.comfy.previews_sent if p == foreign]
    assert len(ours) == 1 and len(theirs) == 50
    shown = [edit.files[0].data for edit in preview_edits(it)]
    assert shown and not set(shown) & set(theirs)


@pytest.mark.e2e
@pytest.mark.parametrize("off_by", ["binding", "setting"])
async def test_previews_turned_off_show_none(start: Start, tmp_path: Path, off_by: str) -> None:
    folder = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, folder)
    binding = folder / "image.toml"
    if off_by == "binding":
        binding.write_text(binding.read_text(encoding="utf-8").replace("[command]\n", "[command]\npreviews = false\n"))
    env = {"PREVIEW_SECONDS": "0" if off_by == "setting" else str(PREVIEW_SECONDS)}
    world = await previewing_world(start, workflows=folder, settings_env=env)
    # Nothing is shown whatever the pace: the 50 frames and the nodes after them may come quickly
    world.comfy.sampler_delay, world.comfy.node_delay = 0.5, 0.05
    it = await world.discord.invoke_slash("image", {"prompt": "a cat in the dark"})
    await finished(world, it, timeout=20)

    assert len(world.comfy.previews_sent) == 50  # the server sent them; the bot showed none
    assert [r for r in it.requests if r.method == "PATCH" and r.files][-1:] == it.requests[-1:]  # only the result
    assert preview_edits(it) == []


@pytest.mark.e2e
@pytest.mark.parametrize("ending", ["cancelled", "failed"])
async def test_a_preview_is_removed_when_the_job_is_cancelled_or_fails(start: Start, ending: str) -> None:
    world = await previewing_world(start)
    world.comfy.sampler_delay = 4.0 if ending == "cancelled" else 1.5  # cancelled while sampling, or failed after it
    if ending == "failed":
        world.comfy.fail_nodes = {"VAEDecode": ("RuntimeError", "out of memory")}
    it = await world.discord.invoke_slash("image", {"prompt": "a cat that never comes"})
    await world.discord.wait_for(lambda: bool(it.original and it.original["attachments"]), timeout=10)
    assert [a["filename"] for a in (it.original or {})["attachments"]] == ["preview.jpg"]
    if ending == "cancelled":
        [[cancel]] = [row["components"] for row in (it.original or {})["components"]]
        await world.discord.click(it.original_id or 0, cancel["custom_id"])
        expected = f"**/image** for <@{it.user['id']}>\n🚫 Cancelled."
    else:
        expected = f"❌ /image did not finish; the reason was sent to <@{it.user['id']}> privately."
    await world.discord.wait_for(lambda: bool(it.original and it.original["content"] == expected), timeout=15)
    await asyncio.sleep(0.2)  # no late preview edit may bring it back
    assert it.original is not None and it.original["attachments"] == []


# -- the listener: which frames are a job's previews --------------------------------------------------------


def frame(image: bytes, prompt_id: str | None = None, node: str = "3") -> bytes:
    """A binary websocket frame: type 4 with metadata when `prompt_id` is given, else the legacy type 1 (JPEG)."""
    if prompt_id is None:
        return struct.pack(">II", 1, 1) + image
    meta = json.dumps({"node_id": node, "prompt_id": prompt_id, "image_type": "image/jpeg"}).encode()
    return struct.pack(">II", 4, len(meta)) + meta + image


def listening() -> tuple[ComfyListener, Any]:
    client: Any = SimpleNamespace(name="gpu1")
    listener = ComfyListener(client)
    prompt = {"3": {"class_type": "KSampler", "inputs": {}}, "9": {"class_type": "SaveImageWebsocket", "inputs": {}}}
    watch = listener.watch("ours", prompt)
    watch.previews = True
    return listener, watch


async def test_only_the_newest_preview_of_our_prompt_is_kept_with_one_event() -> None:
    listener, watch = listening()
    listener._on_message("feature_flags", {})
    first, second, third = (_preview_jpeg(n) for n in range(3))
    listener._on_binary(frame(first, "someone else's"))
    assert watch.preview is None and watch.events.empty()
    for image in (first, second, third):
        listener._on_binary(frame(image, "ours"))
    assert watch.events.qsize() == 1 and watch.events.get_nowait() is PREVIEWED
    assert watch.take_preview() == third and watch.take_preview() is None
    listener._on_binary(frame(first))  # a legacy frame on a server that sends metadata: another client's prompt
    listener._on_binary(frame(b"GIF89a....", "ours"))  # not a JPEG or PNG
    listener._on_binary(frame(b"\xff\xd8\xff" + bytes(3 * 2**20), "ours"))  # larger than any preview
    assert watch.preview is None and watch.events.empty()
    png = make_png(8, 8)
    listener._on_binary(frame(png, "ours", node="9"))  # SaveImageWebsocket's output is no preview
    assert watch.preview is None and watch.ws_images == [("9", png)]


async def test_without_metadata_a_preview_is_ours_only_while_our_prompt_runs() -> None:
    listener, watch = listening()
    image = _preview_jpeg(7)
    listener._on_binary(frame(image))  # nothing of ours runs: another client's
    assert watch.preview is None
    listener._on_message("executing", {"node": "3", "prompt_id": "ours"})
    listener._on_binary(frame(image))
    assert watch.take_preview() == image
    listener._on_message("executing", {"node": None, "prompt_id": "ours"})
    listener._on_binary(frame(_preview_jpeg(8)))
    assert watch.preview is None
    await listener.close()


async def test_a_watch_nobody_shows_previews_for_keeps_none() -> None:
    listener, watch = listening()
    watch.previews = False
    listener._on_binary(frame(_preview_jpeg(1), "ours"))
    assert watch.preview is None and watch.events.empty()


# -- the scheduler: one edit loop paces texts and previews ----------------------------------------------------


async def test_previews_share_the_status_edit_loop_at_most_one_per_preview_interval() -> None:
    time = VirtualTime()
    paced = {"interval": 0.25, "first_delay": 1.0, "preview_interval": 1.0}
    scheduler = StatusScheduler(**paced, clock=time.clock, sleep=time.sleep)
    edits: list[tuple[float, str, bytes | None]] = []

    async def edit(text: str, preview: bytes | None = None) -> None:
        edits.append((time.now, text, preview))

    for step in range(1, 41):  # 40 frames, one every 0.125 s, the text changing each time
        scheduler.show("job", f"step {step}", edit, preview=b"frame %d" % step)
        await time.advance(0.125)
    scheduler.show("job", "Running VAEDecode…", edit)  # no new frame: the last one is still due
    await time.advance(2.0)
    await scheduler.close()

    with_preview = [(at, image) for at, _, image in edits if image is not None]
    assert [at for at, _ in with_preview] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [image for _, image in with_preview] == [b"frame 8", b"frame 16", b"frame 24", b"frame 32", b"frame 40"]
    assert len(edits) > len(with_preview)  # texts in between, which leave the image shown as it is
    assert all(b[0] - a[0] >= 0.25 for a, b in itertools.pairwise(edits))


# -- settings and bindings ----------------------------------------------------------------------------------


def test_preview_seconds_is_read_and_zero_turns_previews_off() -> None:
    env = {"COMFYUI_URL": "http://127.0.0.1:8188"}
    assert load_settings(env, require_token=False).preview_seconds == 3.0
    off = load_settings({**env, "PREVIEW_SECONDS": "0"}, require_token=False)
    session: Any = None
    assert off.preview_seconds == 0.0 and Engine.from_settings(session, off).previews is False
    with pytest.raises(ConfigError) as caught:
        load_settings({**env, "PREVIEW_SECONDS": "-1"}, require_token=False)
    assert caught.value.problems == [
        "PREVIEW_SECONDS must be a number of seconds from 0 to 3,600, written like 90 or 2.5 (default 3); got '-1'."
    ]


def test_a_binding_turns_previews_off_and_a_wrong_value_is_named(tmp_path: Path) -> None:
    shutil.copy(WORKFLOWS / "image.json", tmp_path / "image.json")
    binding = tmp_path / "image.toml"
    original = (WORKFLOWS / "image.toml").read_text(encoding="utf-8")
    assert load_workflow(WORKFLOWS / "image.toml").previews is True
    binding.write_text(original.replace("[command]\n", "[command]\npreviews = false\n"), encoding="utf-8")
    assert load_workflow(binding).previews is False
    binding.write_text(original.replace("[command]\n", '[command]\npreviews = "no"\n'), encoding="utf-8")
    with pytest.raises(WorkflowError) as caught:
        load_workflow(binding)
    assert caught.value.user_message == "image.toml: [command] previews must be true or false (got 'no')."

"""Workflows as commands, end to end: /reload, /workflows, server-backed choices, attached images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import WORKFLOWS, write_blur_workflow
from tests.e2e_world import BUILT_IN_COMMANDS, Start, World, finished
from tests.fakes.comfyui import make_png

pytestmark = pytest.mark.e2e
FIXTURES = Path(__file__).parent / "fixtures" / "workflows"


def workflows_dir(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir()
    for name in names:
        for suffix in (".json", ".toml"):
            shutil.copy(WORKFLOWS / f"{name}{suffix}", folder / f"{name}{suffix}")
    return folder


async def private_text(world: World, it) -> str:
    await world.discord.wait_for(lambda: bool(world.private_replies(it)))
    return "\n".join(world.private_replies(it))


async def test_reload_adds_a_command_that_then_runs(start: Start, tmp_path: Path) -> None:
    folder = workflows_dir(tmp_path, "image", "upscale")
    world = await start(workflows=folder)
    guild = world.discord.guild_id
    assert [c["name"] for c in world.discord.commands[guild]] == ["image", "upscale", *BUILT_IN_COMMANDS]

    for name in ("music", "music_extend"):  # /music's Extend button runs /music_extend
        for suffix in (".json", ".toml"):
            shutil.copy(WORKFLOWS / f"{name}{suffix}", folder / f"{name}{suffix}")
    shutil.copy(WORKFLOWS / "image.json", folder / "portrait.json")  # no binding: options are detected
    reload = await world.discord.invoke_slash("reload")
    assert await private_text(world, reload) == "Added: /music, /music_extend, /portrait\n5 command(s) active."
    names = sorted(c["name"] for c in world.discord.commands[guild])
    assert names == [
        "access", "cancel", "help", "history", "image", "music", "music_extend", "portrait", "preset", "queue",
        "quota", "reload", "servers", "upscale", "workflows",
    ]  # fmt: skip

    it = await world.discord.invoke_slash("music", {"tags": "lofi", "lyrics": "[instrumental]"})
    message = await finished(world, it)
    assert [a["filename"] for a in message["attachments"]] == [world.audio_name()]
    it = await world.discord.invoke_slash("portrait", {"prompt": "a detected cat", "width": 640})
    message = await finished(world, it)
    assert [a["filename"] for a in message["attachments"]] == ["ComfyUI_00001_.png"]
    prompt = world.prompts()[-1]["prompt"]
    assert (prompt["6"]["inputs"]["text"], prompt["5"]["inputs"]["width"]) == ("a detected cat", 640)


async def test_reload_reports_what_it_skipped_and_why(start: Start, tmp_path: Path) -> None:
    folder = workflows_dir(tmp_path, "image", "music", "music_extend", "upscale")
    world = await start(workflows=folder)
    shutil.copy(FIXTURES / "ui_export_e2e.json", folder)  # saved from the editor instead of exported (API)
    world.comfy.models = {"checkpoints": ["v1-5-pruned-emaonly-fp16.safetensors"]}  # the music model is gone
    reload = await world.discord.invoke_slash("reload")
    assert await private_text(world, reload) == (
        "Removed: /music, /music_extend\n"
        "2 command(s) active.\n"
        "Skipped: ui_export_e2e.json: this is the editor (UI) format. In ComfyUI open the workflow "
        "and use Workflow > Export (API), then save that file here instead.\n"
        "Skipped: music.json: /music skipped: “Load Checkpoint” (CheckpointLoaderSimple, node 74:40): input "
        "ckpt_name: 'ace_step_v1_3.5b.safetensors' is not available on the server (it has: "
        "v1-5-pruned-emaonly-fp16.safetensors).\n"
        "Skipped: music_extend.json: /music_extend skipped: “Load Checkpoint” (CheckpointLoaderSimple, node 1): "
        "input ckpt_name: 'ace_step_v1_3.5b.safetensors' is not available on the server (it has: "
        "v1-5-pruned-emaonly-fp16.safetensors)."
    )


async def test_admin_commands_refuse_other_members(start: Start) -> None:
    world = await start()
    member = world.discord.make_user(name="member")
    it = await world.discord.invoke_slash("reload", user=member)
    assert await private_text(world, it) == "Only the bot's owner and members with the admin role can use /reload."


async def test_admin_role_may_list_the_workflows(start: Start) -> None:
    role_id = 424242424242424242
    moderator = {"id": "515151515151515151", "username": "moderator", "roles": [role_id]}
    world = await start(admin_role_id=role_id, members=(moderator,))
    it = await world.discord.invoke_slash("workflows", user=world.discord._users[int(moderator["id"])])
    listing = await private_text(world, it)
    assert listing.splitlines()[:3] == [
        "**/image** (image.json, image.toml): Generate an image from a text prompt (Stable Diffusion 1.5)",
        "• `prompt` (text; required; ≤ 1000 chars) → 6.text",
        "• `negative` (text; default 'text, watermark'; ≤ 1000 chars) → 7.text",
    ]
    assert "• `duration` (float; default 60; 5–240) → 74:17.seconds" in listing


async def test_server_backed_choices_autocomplete_and_are_checked(start: Start, tmp_path: Path) -> None:
    folder = workflows_dir(tmp_path, "image", "upscale")
    (folder / "image.toml").write_text(
        (folder / "image.toml").read_text() + '\n[params.model]\ntype = "choice"\ndescription = "Checkpoint"\n'
        'choices_from = "CheckpointLoaderSimple.ckpt_name"\ntarget = "4.ckpt_name"\n'
    )
    models = [f"model_{i:02d}.safetensors" for i in range(40)] + ["v1-5-pruned-emaonly-fp16.safetensors"]
    world = await start(workflows=folder)
    world.comfy.models = {"checkpoints": models}

    choices = await world.discord.autocomplete("image", {"prompt": "a cat", "model": "model_3"}, focused="model")
    assert [c["value"] for c in choices] == [f"model_{i}.safetensors" for i in range(30, 40)]
    everything = await world.discord.autocomplete("image", {"prompt": "a cat", "model": ""}, focused="model")
    assert len(everything) == 25  # Discord's cap, from a list of 41

    it = await world.discord.invoke_slash("image", {"prompt": "a cat", "model": "model_07.safetensors"})
    await finished(world, it)
    assert world.prompts()[-1]["prompt"]["4"]["inputs"]["ckpt_name"] == "model_07.safetensors"

    bad = await world.discord.invoke_slash("image", {"prompt": "a cat", "model": "nope.ckpt"})
    assert await private_text(world, bad) == (
        "model: 'nope.ckpt' is not available on the server. It has: model_00.safetensors, model_01.safetensors, "
        "model_02.safetensors, model_03.safetensors, model_04.safetensors, model_05.safetensors, "
        "model_06.safetensors, model_07.safetensors and 33 more."
    )
    assert len(world.prompts()) == 1


async def test_a_server_backed_choice_is_sent_as_the_server_spells_it(start: Start, tmp_path: Path) -> None:
    folder = workflows_dir(tmp_path, "image", "upscale")
    (folder / "image.toml").write_text(
        (folder / "image.toml").read_text() + '\n[params.model]\ntype = "choice"\ndescription = "Checkpoint"\n'
        'choices_from = "CheckpointLoaderSimple.ckpt_name"\ntarget = "4.ckpt_name"\n'
    )
    world = await start(workflows=folder)
    world.comfy.models = {"checkpoints": ["v1-5-pruned-emaonly-fp16.safetensors", "SD1.5/dreamy.safetensors"]}
    it = await world.discord.invoke_slash("image", {"prompt": "a cat", "model": "SD1.5\\dreamy.safetensors"})
    await finished(world, it)
    assert world.prompts()[-1]["prompt"]["4"]["inputs"]["ckpt_name"] == "SD1.5/dreamy.safetensors"


async def test_an_attached_image_is_uploaded_to_the_server_that_runs_the_job(start: Start, tmp_path: Path) -> None:
    folder = write_blur_workflow(tmp_path / "workflows")
    world = await start(workflows=folder)
    picture = make_png(32, 16, (200, 10, 10))
    it = await world.discord.invoke_slash("blur", attachments={"picture": ("holiday.png", picture)})
    message = await finished(world, it)

    [upload] = [r for r in world.comfy.requests if r.path == "/upload/image"]
    assert upload.method == "POST"
    assert world.comfy.files[("input", "discord-bot", "holiday.png")] == picture
    assert world.prompts()[0]["prompt"]["1"]["inputs"]["image"] == "discord-bot/holiday.png"
    assert [a["filename"] for a in message["attachments"]] == ["blur_00001_.png"]
    assert "**picture:** holiday.png" in message["content"]

    wrong = await world.discord.invoke_slash("blur", attachments={"picture": ("notes.txt", b"hello")})
    assert await private_text(world, wrong) == (
        "picture must be an image file (png, jpg, jpeg, webp, gif, bmp); got 'notes.txt'."
    )


async def test_an_attached_video_is_uploaded_and_the_made_video_posted(start: Start, tmp_path: Path) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    graph = json.loads((FIXTURES / "video.json").read_text())
    del graph["3"], graph["4"]  # no upscaling: the fake server has no upscale model
    graph["5"]["inputs"]["images"] = ["2", 0]
    (folder / "clip.json").write_text(json.dumps(graph))  # no binding: the LoadVideo becomes a `video` option
    world = await start(workflows=folder)
    clip = b"\x00\x00\x00\x18ftypmp42" + bytes(64)
    it = await world.discord.invoke_slash("clip", attachments={"video": ("clip.mp4", clip)})
    message = await finished(world, it)

    assert world.comfy.files[("input", "discord-bot", "clip.mp4")] == clip
    assert world.prompts()[0]["prompt"]["1"]["inputs"]["file"] == "discord-bot/clip.mp4"
    assert [a["filename"] for a in message["attachments"]] == ["up_00001_.mp4"]
    assert "**video:** clip.mp4" in message["content"]


async def test_checks_name_the_server_version_and_renamed_commands(
    start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = write_blur_workflow(tmp_path / "workflows")
    long_name = "An evening portrait, softly lit, in oil colours"
    shutil.copy(WORKFLOWS / "image.json", folder / f"{long_name}.json")
    world = await start(workflows=folder)
    note = (
        f"{long_name}.json: the command is /an-evening-portrait-softly-lit (names are at most 32 characters); "
        f"a binding file {long_name}.toml can choose another name."
    )
    assert f"workflow note: {note}" in caplog.messages  # the startup log

    (folder / "blur.json").write_text((folder / "blur.json").read_text().replace("ImageBlur", "ImageBlurPlus"))
    reload = await world.discord.invoke_slash("reload")
    assert await private_text(world, reload) == (
        "Removed: /blur\n"
        "1 command(s) active.\n"
        "Skipped: blur.json: /blur skipped: Node 2 uses ImageBlurPlus, which this server does not have: a custom "
        f"node, or a core node of a newer ComfyUI than this server's {world.comfy.profile.version}.\n"
        f"Note: {note}"
    )
    assert f"workflow skipped: {world.bot.catalog.problems[0]}" in caplog.messages

"""The result as one gallery message (Components v2), its classic fallback, uploads in a form, and the app
installed to a member's account: the real bot against the fake Discord, whose checks of Components v2 are
tested here too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.config import load_settings
from core.errors import ConfigError
from tests.conftest import WORKFLOWS, write_blur_workflow
from tests.e2e_world import Start, World, finished
from tests.fakes.comfyui import make_png

pytestmark = pytest.mark.e2e

COMPONENTS_V2 = 1 << 15
CONTAINER, MEDIA_GALLERY, TEXT_DISPLAY, ACTION_ROW, LABEL, FILE_UPLOAD = 17, 12, 10, 1, 18, 19
GALLERY = {"RESULT_VIEW": "gallery"}


def image_workflows(tmp_path: Path, batch: int = 4, *, nsfw: bool = False) -> Path:
    """/image as shipped (with the /upscale its U buttons run), making `batch` pictures a job."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    for name in ("upscale.json", "upscale.toml"):
        shutil.copy(WORKFLOWS / name, folder)
    graph = json.loads((WORKFLOWS / "image.json").read_text())
    graph["5"]["inputs"]["batch_size"] = batch
    (folder / "image.json").write_text(json.dumps(graph))
    binding = (WORKFLOWS / "image.toml").read_text()
    (folder / "image.toml").write_text(
        binding.replace('name = "image"', 'name = "image"\nnsfw = true') if nsfw else binding
    )
    return folder


async def gallery_message(world: World, it: Any) -> dict[str, Any]:
    await world.discord.wait_for(lambda: bool(it.original and it.original["flags"] & COMPONENTS_V2))
    assert it.original is not None
    return it.original


def types(components: list[dict[str, Any]]) -> list[int]:
    return [c["type"] for c in components]


async def test_a_batch_of_pictures_is_one_gallery_message_with_the_text_and_the_buttons(
    start: Start, tmp_path: Path
) -> None:
    world = await start(workflows=image_workflows(tmp_path), settings_env=GALLERY)
    it = await world.discord.invoke_slash("image", {"prompt": "a cat", "seed": 7})
    message = await gallery_message(world, it)

    assert message["content"] == "" and message["embeds"] == []
    [container] = message["components"]
    assert container["type"] == CONTAINER
    # the result's buttons, then its follow-ups (the binding's U and V rows), below the text
    assert types(container["components"]) == [MEDIA_GALLERY, TEXT_DISPLAY, ACTION_ROW, ACTION_ROW, ACTION_ROW]
    gallery, text, row, upscale, variation = container["components"]
    names = [a["filename"] for a in message["attachments"]]
    assert names == [f"ComfyUI_{n:05}_.png" for n in range(1, 5)]
    # every picture is shown from the message's own attachments, in order
    assert [item["media"]["url"] for item in gallery["items"]] == [f"attachment://{name}" for name in names]
    user = world.discord.default_user["id"]
    header, *options = text["content"].splitlines()
    assert header.startswith(f"**/image** for <@{user}> · ") and header.endswith(" s")
    assert options[0] == "**prompt:** a cat" and "**seed:** 7" in options
    _, [job] = await world.bot.store.jobs_of(int(user), limit=1)
    assert [(b["label"], b["custom_id"]) for b in row["components"]] == [
        ("Re-roll", f"job:reroll:{job.id}"),
        ("Details", f"job:details:{job.id}"),
        ("Delete", f"job:delete:{job.id}"),
    ]
    assert [b["label"] for b in upscale["components"]] == ["U1", "U2", "U3", "U4"]
    assert [b["label"] for b in variation["components"]] == ["V1", "V2", "V3", "V4"]

    # the buttons inside the container work like the classic ones
    assert it.original_id is not None
    await world.discord.click(it.original_id, f"job:delete:{job.id}")
    await world.discord.wait_for(lambda: it.original_id not in world.discord.messages)


@pytest.mark.recovery
async def test_after_a_restart_the_status_message_with_its_text_becomes_the_gallery(
    start: Start, tmp_path: Path
) -> None:
    world = await start(workflows=image_workflows(tmp_path, batch=2), settings_env=GALLERY)
    world.comfy.pause()  # the job waits in ComfyUI's queue while the bot restarts
    it = await world.discord.invoke_slash("image", {"prompt": "a queued cat"})
    await world.discord.wait_for(lambda: "Queued" in ((it.original or {}).get("content") or ""))
    await world.stop_bot()
    world.comfy.resume()
    await world.start_bot()

    message = await gallery_message(world, it)  # edited with the bot's token: its text set to null, as Discord wants
    assert message["content"] == ""
    [container] = message["components"]
    gallery, text, *_ = container["components"]
    assert len(gallery["items"]) == 2 and "**prompt:** a queued cat" in text["content"]


async def test_a_gallery_discord_refuses_is_posted_as_classic_attachments(
    start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = await start(workflows=image_workflows(tmp_path, batch=2), settings_env=GALLERY)
    # The result is the first edit of the deferred answer (a job done within a second has no status edit).
    world.discord.inject_error(
        "PATCH", r"/webhooks/\d+/[^/]+/messages/@original", status=400, code=50035, message="Invalid Form Body"
    )
    it = await world.discord.invoke_slash("image", {"prompt": "a cat"})
    message = await finished(world, it)

    assert not message["flags"] & COMPONENTS_V2
    assert [a["filename"] for a in message["attachments"]] == ["ComfyUI_00001_.png", "ComfyUI_00002_.png"]
    assert types(message["components"]) == [ACTION_ROW] * 3  # the result's buttons, U1-U2, V1-V2
    refused = [r.message for r in caplog.records if r.message.startswith("Discord refused the gallery")]
    assert len(refused) == 1 and "posting it as attachments" in refused[0]


@pytest.mark.parametrize(
    ("command", "options", "result_view"),
    [("image", {"prompt": "a cat"}, "classic"), ("music", {"tags": "lofi", "lyrics": "[inst]"}, "gallery")],
    ids=["RESULT_VIEW=classic", "audio-output"],
)
async def test_classic_results_where_no_gallery_is_wanted_or_fits(
    start: Start, command: str, options: dict[str, Any], result_view: str
) -> None:
    world = await start(settings_env={"RESULT_VIEW": result_view})
    it = await world.discord.invoke_slash(command, options)
    message = await finished(world, it)
    assert not message["flags"] & COMPONENTS_V2
    assert message["content"].startswith(f"**/{command}** for <@{world.discord.default_user['id']}> · ")
    rows = 3 if command == "image" else 2  # /image offers U1 and V1 under its one picture, /music Extend
    assert len(message["attachments"]) == 1 and types(message["components"]) == [ACTION_ROW] * rows


async def test_a_picture_uploaded_in_the_form_runs_the_job(start: Start, tmp_path: Path) -> None:
    world = await start(workflows=write_blur_workflow(tmp_path / "workflows"))
    [blur] = [c for c in world.discord.commands[world.discord.guild_id] if c["name"] == "blur"]
    [picture_option] = [o for o in blur["options"] if o["name"] == "picture"]
    assert picture_option["required"] is False  # the form asks for it when left out

    it = await world.discord.invoke_slash("blur")
    await world.discord.wait_for(lambda: it.modal is not None)
    assert it.modal is not None
    [label] = it.modal["components"]
    assert (label["type"], label["label"], label["component"]["type"]) == (LABEL, "picture", FILE_UPLOAD)
    picture = make_png(32, 16, (200, 10, 10))
    submitted = await world.discord.submit_modal(it, {"picture": ("holiday.png", picture)})
    message = await finished(world, submitted)

    assert world.comfy.files[("input", "discord-bot", "holiday.png")] == picture
    assert world.prompts()[0]["prompt"]["1"]["inputs"]["image"] == "discord-bot/holiday.png"
    assert "**picture:** holiday.png" in message["content"]
    assert [a["filename"] for a in message["attachments"]] == ["blur_00001_.png"]


async def test_a_wrong_file_uploaded_in_the_form_is_refused_by_name(start: Start, tmp_path: Path) -> None:
    world = await start(workflows=write_blur_workflow(tmp_path / "workflows"))
    it = await world.discord.invoke_slash("blur")
    await world.discord.wait_for(lambda: it.modal is not None)
    submitted = await world.discord.submit_modal(it, {"picture": ("notes.txt", b"hello")})
    await world.discord.wait_for(lambda: bool(world.private_replies(submitted)))
    assert world.private_replies(submitted) == [
        "picture must be an image file (png, jpg, jpeg, webp, gif, bmp); got 'notes.txt'."
    ]
    assert world.prompts() == []


async def test_workflow_commands_install_to_members_and_run_in_direct_messages(start: Start, tmp_path: Path) -> None:
    folder = image_workflows(tmp_path, batch=1)
    shutil.copy(folder / "image.json", folder / "lewd.json")
    (folder / "lewd.toml").write_text(
        (folder / "image.toml").read_text().replace('name = "image"', 'name = "lewd"\nnsfw = true')
    )
    world = await start(workflows=folder, settings_env={"DEV_GUILD_ID": ""})
    synced = {c["name"]: c for c in world.discord.commands[None]}
    for name in ("image", "lewd"):
        assert synced[name]["integration_types"] == [0, 1]  # guild install, user install
        assert synced[name]["contexts"] == [0, 1, 2]  # guild, the bot's DM, private channels

    it = await world.discord.invoke_slash("image", {"prompt": "a cat"}, guild=False)
    message = await finished(world, it)
    assert [a["filename"] for a in message["attachments"]] == ["ComfyUI_00001_.png"]

    refused = await world.discord.invoke_slash("lewd", {"prompt": "a cat"}, guild=False)
    await world.discord.wait_for(lambda: bool(world.private_replies(refused)))
    assert world.private_replies(refused) == [
        "/lewd is age-restricted: it can be used only in a server channel marked age-restricted, "
        "not in direct messages."
    ]
    assert len(world.prompts()) == 1


def test_result_view_setting_is_checked() -> None:
    env = {"WORKFLOWS_DIR": str(WORKFLOWS)}
    assert load_settings(env, require_token=False).result_view == "gallery"
    assert load_settings({**env, "RESULT_VIEW": "Classic"}, require_token=False).result_view == "classic"
    with pytest.raises(ConfigError) as caught:
        load_settings({**env, "RESULT_VIEW": "grid"}, require_token=False)
    assert caught.value.problems == ["RESULT_VIEW must be gallery or classic (default gallery); got 'grid'."]


# The fake Discord's checks of Components v2, which the gallery tests above rely on: each must refuse.

TEXT = {"type": TEXT_DISPLAY, "content": "hello"}


def gallery_of(count: int) -> dict[str, Any]:
    return {"type": MEDIA_GALLERY, "items": [{"media": {"url": f"https://example.com/{n}.png"}} for n in range(count)]}


REFUSED = {
    "gallery-of-11": ({"flags": COMPONENTS_V2, "components": [gallery_of(11)]}, "BASE_TYPE_BAD_LENGTH"),
    "empty-gallery": ({"flags": COMPONENTS_V2, "components": [gallery_of(0)]}, "BASE_TYPE_BAD_LENGTH"),
    "41-components": (
        {"flags": COMPONENTS_V2, "components": [{"type": CONTAINER, "components": [TEXT] * 40}]},
        "COMPONENT_MAX_TOTAL_COMPONENTS_EXCEEDED",
    ),
    "4001-characters": (
        {"flags": COMPONENTS_V2, "components": [{**TEXT, "content": "a" * 2000}, {**TEXT, "content": "b" * 2001}]},
        "COMPONENT_MAX_TOTAL_TEXT_EXCEEDED",
    ),
    "content-with-the-flag": (
        {"flags": COMPONENTS_V2, "content": "hi", "components": [TEXT]},
        "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
    ),
    "v2-without-the-flag": ({"components": [{"type": ACTION_ROW, "components": [TEXT]}]}, "COMPONENT_TYPE_INVALID"),
}


async def rest(world: World, method: str, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
    auth = {"Authorization": f"Bot {world.discord.token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{world.discord.url}/api/v10{path}", json=payload, headers=auth) as response,
    ):
        return response.status, await response.json(content_type=None)


def error_codes(body: Any) -> list[str]:
    found: list[str] = []
    if isinstance(body, dict):
        found += [e["code"] for e in body.get("_errors", [])]
        for value in body.values():
            found += error_codes(value)
    return found


@pytest.mark.parametrize("case", REFUSED)
async def test_the_fake_discord_refuses_what_discord_refuses_in_components_v2(start: Start, case: str) -> None:
    world = await start()
    payload, code = REFUSED[case]
    status, body = await rest(world, "POST", f"/channels/{world.discord.channel_id}/messages", payload)
    assert (status, body["code"]) == (400, 50035)
    assert error_codes(body["errors"]) == [code]


async def test_a_components_v2_message_keeps_its_flag_and_gets_no_content(start: Start) -> None:
    world = await start()
    channel = world.discord.channel_id
    status, message = await rest(
        world, "POST", f"/channels/{channel}/messages", {"flags": COMPONENTS_V2, "components": [gallery_of(10), TEXT]}
    )
    assert status == 200
    edit = f"/channels/{channel}/messages/{message['id']}"
    status, body = await rest(world, "PATCH", edit, {"content": "back to text", "flags": 0})
    assert status == 400 and error_codes(body["errors"]) == ["MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2"]
    status, edited = await rest(world, "PATCH", edit, {"flags": 0, "components": [TEXT]})
    assert status == 200 and edited["flags"] & COMPONENTS_V2


async def test_an_upgrade_to_components_v2_must_clear_the_content(start: Start) -> None:
    world = await start()
    channel = world.discord.channel_id
    status, message = await rest(world, "POST", f"/channels/{channel}/messages", {"content": "Submitting…"})
    assert status == 200
    edit = f"/channels/{channel}/messages/{message['id']}"
    for content in ({}, {"content": "still text"}):  # left out or kept: both refused
        status, body = await rest(world, "PATCH", edit, {**content, "flags": COMPONENTS_V2, "components": [TEXT]})
        assert status == 400
        assert error_codes(body["errors"]) == ["MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2"]
    status, edited = await rest(world, "PATCH", edit, {"content": None, "flags": COMPONENTS_V2, "components": [TEXT]})
    assert status == 200 and edited["content"] == "" and edited["flags"] & COMPONENTS_V2

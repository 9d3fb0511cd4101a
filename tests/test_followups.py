"""Follow-ups on results: the [followups] binding table, the kept files, and U1..U4 / V1..V4 / Extend end to end.

The e2e tests run the real bot against the fake Discord and the fake ComfyUI; what ran is read at the fake
ComfyUI's POST /prompt and what was uploaded at its POST /upload/image.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from core.errors import WorkflowError
from core.jobs.engine import OutputFile
from core.jobs.kept import PRUNE_EVERY, KeptFiles
from core.workflows import InputFile, load_catalog, load_workflow
from core.workflows.model import Followups, ParamType
from tests.conftest import WORKFLOWS
from tests.e2e_world import Start, World, finished
from tests.fakes.discord_fake import Interaction

PENDING_REFUSAL = (
    "You already have 2 job(s) waiting or running; the limit is 2. Please wait for one to finish, "
    "or cancel one with /cancel."
)
NOT_KEPT = "The files of this result are no longer kept (the bot keeps them for 24 hours); run the command again."
NOT_YOURS = "Only the member who asked for this result (or an admin) can use this button."
DEFERRED = 5  # the interaction callback type of an accepted job


# The binding table


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the shipped workflows, to add bindings to."""
    for path in WORKFLOWS.iterdir():
        shutil.copy(path, tmp_path)
    return tmp_path


def test_the_shipped_image_and_music_commands_offer_their_follow_ups() -> None:
    catalog = load_catalog(WORKFLOWS)
    assert catalog.problems == []
    assert catalog.workflows["image"].followups == Followups(upscale="upscale", variation=True)
    assert catalog.workflows["music"].followups == Followups(extend="music_extend")
    assert catalog.workflows["music_extend"].file_param(ParamType.AUDIO) == catalog.workflows["music_extend"].params[0]
    upscale = catalog.workflows["upscale"]
    assert [(p.name, p.type.value, p.required) for p in upscale.params] == [
        ("image", "image", True),
        ("scale", "float", False),
    ]


@pytest.mark.parametrize(
    ("table", "note"),
    [
        ('upscale = "enlarge"', "image.toml: [followups] upscale = /enlarge, which is not loaded "
         "(commands: image, music, music_extend, upscale, video); the button is left out."),
        ('upscale = "music"', "image.toml: [followups] upscale = /music, which has no image option to take the "
         "chosen output; the button is left out."),
        ('extend = "image"', "image.toml: [followups] extend = /image, which has no audio option to take the "
         "chosen output; the button is left out."),
    ],
)  # fmt: skip
def test_a_follow_up_naming_a_missing_or_unfit_command_is_left_out(folder: Path, table: str, note: str) -> None:
    text = (folder / "image.toml").read_text(encoding="utf-8").split("[followups]")[0]
    write(folder, "image.toml", f"{text}[followups]\nvariation = true\n{table}\n")
    catalog = load_catalog(folder)
    assert catalog.problems == []
    assert catalog.notes == [note]
    assert catalog.workflows["image"].followups == Followups(variation=True)  # the command and its other buttons stay


def test_image_alone_still_loads_without_its_upscale(tmp_path: Path) -> None:
    for name in ("image.json", "image.toml"):
        shutil.copy(WORKFLOWS / name, tmp_path)
    catalog = load_catalog(tmp_path)
    assert sorted(catalog.workflows) == ["image"]
    assert catalog.workflows["image"].followups == Followups(variation=True)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("upscale = 3", "upscale.toml: [followups] upscale must be the name of a command, e.g. upscale = \"upscale\" "
         "(got 3)."),
        ('variation = "yes"', "upscale.toml: [followups] variation must be true or false (got 'yes')."),
        ("redo = true", "upscale.toml: [followups]: unknown key 'redo' (use upscale, variation or extend)."),
    ],
)  # fmt: skip
def test_a_malformed_followups_table_is_refused_with_the_fix(folder: Path, table: str, problem: str) -> None:
    write(folder, "upscale.toml", (folder / "upscale.toml").read_text(encoding="utf-8") + f"\n[followups]\n{table}\n")
    with pytest.raises(WorkflowError) as caught:
        load_workflow(folder / "upscale.toml")
    assert caught.value.user_message == problem


def test_variation_needs_a_seed_or_an_image_to_vary(folder: Path) -> None:
    write(folder, "upscale.toml", (folder / "upscale.toml").read_text(encoding="utf-8").replace(
        'type = "image"', 'type = "text"').replace('target = "1.image"', 'target = "3.filename_prefix"')
        + "[followups]\nvariation = true\n")  # fmt: skip
    with pytest.raises(WorkflowError) as caught:
        load_workflow(folder / "upscale.toml")
    assert caught.value.user_message == (
        "upscale.toml: [followups] variation = true needs a seed or an image option to vary; there is neither."
    )


# The kept files


async def test_kept_files_are_found_until_they_expire_and_then_pruned(tmp_path: Path) -> None:
    now = [1000.0]
    kept = KeptFiles(tmp_path / "followups", 1, clock=lambda: now[0])
    source = tmp_path / "out.png"
    source.write_bytes(b"png bytes")
    job = "0" * 32
    outputs = {2: OutputFile("ComfyUI_00003_.png", source, 9, "9"), 0: OutputFile("a.png", None, 3, "9", data=b"abc")}
    await kept.keep(job, {"photo": InputFile("holiday.png", b"mine")}, outputs)
    assert await kept.kept_output(job, 2) == InputFile("ComfyUI_00003_.png", b"png bytes")
    assert (await kept.kept_output(job, 0)) == InputFile("a.png", b"abc")
    assert await kept.kept_output(job, 1) is None  # not chosen, not kept
    assert await kept.kept_input(job, "photo") == InputFile("holiday.png", b"mine")
    assert await kept.kept_input("../etc", "photo") is None
    now[0] += 3599
    assert await kept.prune() == 0
    now[0] += 2  # past one hour
    assert await kept.kept_output(job, 2) is None  # expired even before the folder is pruned
    assert await kept.prune() == 1
    assert list((tmp_path / "followups").iterdir()) == []


async def test_expired_folders_are_looked_for_once_in_a_while_not_before_every_keep(tmp_path: Path) -> None:
    now = [1000.0]
    kept = KeptFiles(tmp_path / "followups", 1, clock=lambda: now[0])
    first, second = "1" * 32, "2" * 32
    await kept.keep(first, {"photo": InputFile("a.png", b"a")}, {})
    assert await kept.prune_if_due() == 0  # a look: nothing has expired yet
    now[0] = 1500.0
    await kept.keep(second, {"photo": InputFile("b.png", b"b")}, {})
    now[0] = 4650.0  # the first has expired
    assert await kept.prune_if_due() == 1
    now[0] = 4650.0 + PRUNE_EVERY - 1  # the second has expired too, but the last look is recent
    assert await kept.prune_if_due() == 0
    assert [f.name for f in (tmp_path / "followups").iterdir()] == [second]
    now[0] = 4650.0 + PRUNE_EVERY
    assert await kept.prune_if_due() == 1


# End to end


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """Label -> custom_id of a message's buttons."""
    return {c["label"]: c["custom_id"] for row in message.get("components", []) for c in row.get("components", [])}


def uploads(world: World) -> list[tuple[str, bytes]]:
    """(file name, bytes) of the files the bot put in the fake ComfyUI's input/discord-bot/ folder."""
    return [
        (name, data) for (kind, sub, name), data in world.comfy.files.items() if (kind, sub) == ("input", "discord-bot")
    ]


def upload_requests(world: World) -> int:
    return sum(1 for r in world.comfy.requests if r.method == "POST" and r.path == "/upload/image")


@pytest.fixture
def batch_of_four(folder: Path) -> Path:
    """The shipped workflows, /image making four pictures a job."""
    graph = json.loads((folder / "image.json").read_text(encoding="utf-8"))
    graph["5"]["inputs"]["batch_size"] = 4
    (folder / "image.json").write_text(json.dumps(graph), encoding="utf-8")
    return folder


async def four_cats(world: World, user: dict[str, Any] | None = None) -> dict[str, Any]:
    it = await world.discord.invoke_slash("image", {"prompt": "four cats", "steps": 7, "seed": 5}, user=user)
    message = await finished(world, it)
    await world.discord.wait_for(lambda: not world.bot.active_jobs)
    return message


async def clicked(world: World, message: dict[str, Any], label: str, user: dict[str, Any] | None = None) -> Interaction:
    return await world.discord.click(int(message["id"]), buttons(message)[label], user=user)


async def test_u2_on_four_images_runs_upscale_on_the_second_output(start: Start, batch_of_four: Path) -> None:
    world = await start(workflows=batch_of_four)
    message = await four_cats(world)
    [job_id] = [p["prompt_id"] for p in world.prompts()]
    labels = buttons(message)
    assert list(labels) == ["Re-roll", "Details", "Delete", "U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"]
    assert labels["U2"] == f"fu:upscale:{job_id}:1"
    assert [[c["label"] for c in row["components"]] for row in message["components"]] == [
        ["Re-roll", "Details", "Delete"], ["U1", "U2", "U3", "U4"], ["V1", "V2", "V3", "V4"]
    ]  # fmt: skip
    it = await clicked(world, message, "U2")
    upscaled = await finished(world, it)
    second = world.prompts()[1]
    assert second["prompt"]["2"]["class_type"] == "ImageScaleBy"
    assert second["prompt"]["1"]["inputs"]["image"] == "discord-bot/ComfyUI_00002_.png"
    assert uploads(world) == [("ComfyUI_00002_.png", world.comfy.files[("output", "", "ComfyUI_00002_.png")])]
    assert upscaled["content"].splitlines()[1] == "**image:** ComfyUI\\_00002\\_.png"  # as Markdown shows it
    assert "U1" not in buttons(upscaled)  # /upscale declares no follow-ups


async def test_v1_keeps_the_options_and_draws_a_new_seed(start: Start, batch_of_four: Path) -> None:
    world = await start(workflows=batch_of_four)
    message = await four_cats(world)
    await finished(world, await clicked(world, message, "V1"))
    first, second = (p["prompt"] for p in world.prompts())
    assert second["6"]["inputs"]["text"] == first["6"]["inputs"]["text"] == "four cats"
    assert second["3"]["inputs"]["steps"] == first["3"]["inputs"]["steps"] == 7
    assert first["3"]["inputs"]["seed"] == 5 and second["3"]["inputs"]["seed"] != 5
    assert uploads(world) == []  # /image has no image option: a variation is a new seed only


async def test_follow_up_buttons_work_after_a_restart(start: Start) -> None:
    world = await start()
    message = await four_cats(world)
    assert [label for label in buttons(message) if label[0] in "UV"] == ["U1", "V1"]  # one picture, one of each
    await world.restart_bot()
    await finished(world, await clicked(world, message, "U1"))
    assert [p["prompt"]["1"]["inputs"]["image"] for p in world.prompts()[1:]] == ["discord-bot/ComfyUI_00001_.png"]


async def test_a_click_after_the_files_expired_says_so(start: Start) -> None:
    world = await start()
    message = await four_cats(world)
    [manifest] = Path(world.settings.jobs_db).parent.glob("followups/*/kept.json")
    names = json.loads(manifest.read_text(encoding="utf-8"))
    manifest.write_text(json.dumps({**names, "kept_at": time.time() - 25 * 3600}), encoding="utf-8")  # a day later
    it = await clicked(world, message, "U1")
    await world.discord.wait_for(lambda: bool(world.private_replies(it)))
    assert world.private_replies(it) == [NOT_KEPT]
    assert len(world.prompts()) == 1


async def test_only_the_requester_or_an_admin_may_use_follow_ups(start: Start) -> None:
    admin_role = 998877665544332211
    world = await start(admin_role_id=admin_role, members=({"id": 5555, "username": "mod", "roles": [admin_role]},))
    message = await four_cats(world)
    stranger = world.discord.make_user(name="stranger")
    refused = await clicked(world, message, "V1", user=stranger)
    await world.discord.wait_for(lambda: bool(world.private_replies(refused)))
    assert world.private_replies(refused) == [NOT_YOURS]
    mod = world.discord._users[5555]
    await finished(world, await clicked(world, message, "V1", user=mod))
    assert len(world.prompts()) == 2


@pytest.mark.abuse
async def test_concurrent_follow_up_clicks_respect_the_members_limit(start: Start, batch_of_four: Path) -> None:
    world = await start(workflows=batch_of_four, settings_env={"MAX_PENDING_PER_MEMBER": "2"})
    member = world.discord.make_user(name="eager")
    message = await four_cats(world, member)
    world.comfy.pause()
    clicks = [
        await clicked(world, message, f"{letter}{n}", member) for _ in range(2) for letter in "UV" for n in range(1, 5)
    ]
    await world.discord.wait_for(lambda: all(it.acknowledged for it in clicks), timeout=15)
    accepted = [it for it in clicks if it.callback is not None and it.callback.json["type"] == DEFERRED]
    refusals = [reply for it in clicks if it not in accepted for reply in world.private_replies(it)]
    assert len(accepted) == 2
    assert refusals == [PENDING_REFUSAL] * 14
    world.comfy.resume()
    for it in accepted:
        await finished(world, it, timeout=15)
    assert len(world.prompts()) == 3


async def test_reroll_reuses_the_kept_attachment_without_downloading_it_again(start: Start) -> None:
    world = await start()
    photo = ("holiday.png", world.comfy.files[("input", "", "example.png")])
    it = await world.discord.invoke_slash("upscale", {"image": photo})
    message = await finished(world, it)
    await world.discord.wait_for(lambda: not world.bot.active_jobs)
    downloads = [r for r in world.discord.requests if "/attachments/" in r.path and r.method == "GET"]
    assert len(downloads) == 1
    await world.restart_bot()
    await finished(world, await clicked(world, message, "Re-roll"))
    assert [r for r in world.discord.requests if "/attachments/" in r.path and r.method == "GET"] == downloads
    assert uploads(world) == [photo] and upload_requests(world) == 2  # the same bytes keep their name
    stranger = world.discord.make_user(name="stranger")
    refused = await clicked(world, message, "Re-roll", user=stranger)  # a member's own file runs only for them
    await world.discord.wait_for(lambda: bool(world.private_replies(refused)))
    assert world.private_replies(refused) == [NOT_YOURS]


@pytest.mark.e2e
async def test_extend_continues_the_song_with_the_shipped_music_extend(start: Start) -> None:
    world = await start()
    it = await world.discord.invoke_slash("music", {"tags": "lofi, jazz", "lyrics": "[verse]\nrain", "seed": 3})
    message = await finished(world, it)
    await world.discord.wait_for(lambda: not world.bot.active_jobs)
    assert [label for label in buttons(message) if label.startswith("Extend")] == ["Extend"]
    extended = await finished(world, await clicked(world, message, "Extend"))
    song = world.audio_name()
    assert [a["filename"] for a in extended["attachments"]] == [world.audio_name(counter=2)]
    assert uploads(world) == [(song, world.comfy.files[("output", "audio", song)])]
    second = world.prompts()[1]["prompt"]
    assert second["2"]["class_type"] == "LoadAudio"
    assert second["2"]["inputs"]["audio"] == f"discord-bot/{song}"  # the first song is what gets continued
    assert second["24"]["inputs"]["audio1"] == ["2", 0]  # ... and kept as it is, the new part after it
    encoded = second["16"]["inputs"]
    assert (encoded["tags"], encoded["lyrics"]) == ("lofi, jazz", "[verse]\nrain")  # the job's own options
    added = [second["7"]["inputs"]["seconds"], second["10"]["inputs"]["width"], second["23"]["inputs"]["duration"]]
    assert added == [30, 30, 30]  # music_extend's default, not /music's duration of 60
    assert second["21"]["inputs"]["seed"] != 3  # a follow-up draws its own seed
    assert [label for label in buttons(extended) if label.startswith("Extend")] == ["Extend"]  # and again


async def test_delete_removes_every_message_of_a_result_split_over_several(start: Start, folder: Path) -> None:
    graph = json.loads((folder / "image.json").read_text(encoding="utf-8"))
    graph["5"]["inputs"]["batch_size"] = 12  # ten files a message: the result takes two
    (folder / "image.json").write_text(json.dumps(graph), encoding="utf-8")
    world = await start(workflows=folder)
    message = await four_cats(world)
    await world.restart_bot()  # the further message's id is in the job store
    [more] = [m for m in world.discord.messages.values() if m["attachments"] and m["id"] != message["id"]]
    assert [len(message["attachments"]), len(more["attachments"])] == [10, 2]
    stranger = world.discord.make_user(name="stranger")
    refused = await clicked(world, message, "Delete", user=stranger)
    await world.discord.wait_for(lambda: bool(world.private_replies(refused)))
    assert int(more["id"]) in world.discord.messages
    deleted = await clicked(world, message, "Delete")
    await world.discord.wait_for(lambda: not {int(message["id"]), int(more["id"])} & set(world.discord.messages))
    assert world.private_replies(deleted) == ["Deleted."]


async def test_a_variation_of_an_image_to_image_command_takes_the_chosen_output_as_its_image(
    start: Start, folder: Path
) -> None:
    write(
        folder,
        "upscale.toml",
        (folder / "upscale.toml").read_text(encoding="utf-8") + "[followups]\nvariation = true\n",
    )
    world = await start(workflows=folder)
    photo = ("holiday.png", world.comfy.files[("input", "", "example.png")])
    message = await finished(world, await world.discord.invoke_slash("upscale", {"image": photo, "scale": 3.0}))
    await world.discord.wait_for(lambda: not world.bot.active_jobs)
    await finished(world, await clicked(world, message, "V1"))
    first, second = (p["prompt"] for p in world.prompts())
    assert first["1"]["inputs"]["image"] == "discord-bot/holiday.png"
    assert second["1"]["inputs"]["image"] == "discord-bot/upscaled_00001_.png"  # the output, not the member's file
    assert second["2"]["inputs"]["scale_by"] == 3.0  # the options are kept


async def test_a_result_delivered_after_a_restart_has_working_follow_ups_and_delete(start: Start, folder: Path) -> None:
    graph = json.loads((folder / "image.json").read_text(encoding="utf-8"))
    graph["5"]["inputs"]["batch_size"] = 12  # ten files a message: the result takes two
    (folder / "image.json").write_text(json.dumps(graph), encoding="utf-8")
    world = await start(workflows=folder)
    world.comfy.node_delay = 0.1
    it = await world.discord.invoke_slash("image", {"prompt": "twelve cats"})
    await world.comfy.wait_for(lambda: bool(world.comfy.queue_snapshot()[0]))  # running on ComfyUI
    world.comfy.pause()
    world.comfy.node_delay = 0.0
    [job_id] = [p["prompt_id"] for p in world.prompts()]
    await world.stop_bot()
    world.comfy.resume()
    await world.comfy.wait_for(lambda: job_id in world.comfy.history)  # the job ends while the bot is down
    await world.start_bot()
    await world.discord.wait_for(lambda: not world.bot.active_jobs and len(attached(world)) == 2, timeout=15)
    message = world.discord.messages[it.original_id]  # the status message became the result
    [more] = [m for m in attached(world) if m is not message]
    assert [len(message["attachments"]), len(more["attachments"])] == [10, 2]
    labels = buttons(message)
    assert list(labels) == ["Re-roll", "Details", "Delete", "U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"]
    assert labels["U2"] == f"fu:upscale:{job_id}:1"
    upscaled = await finished(world, await clicked(world, message, "U2"))
    assert world.prompts()[1]["prompt"]["1"]["inputs"]["image"] == "discord-bot/ComfyUI_00002_.png"
    assert upscaled["content"].splitlines()[1] == "**image:** ComfyUI\\_00002\\_.png"
    deleted = await clicked(world, message, "Delete")
    await world.discord.wait_for(lambda: not {int(message["id"]), int(more["id"])} & set(world.discord.messages))
    assert world.private_replies(deleted) == ["Deleted."]


def attached(world: World) -> list[dict[str, Any]]:
    """The messages carrying files."""
    return [m for m in world.discord.messages.values() if m["attachments"]]

"""Attachment jobs across restarts (issue 11 item 5), through the real bot: a job runs on the member's own file
after ComfyUI or the bot restarted, or fails with a clear message; never on another file of the same name."""

from __future__ import annotations

import shutil
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from core.i18n import localize
from core.jobs.inputs import InputGone
from core.jobs.store import JobState, JobStore
from tests.conftest import write_blur_workflow
from tests.e2e_world import Start, World, finished
from tests.fakes.comfyui import make_png
from tests.fakes.discord_fake import Interaction
from tests.test_recovery import wait_state

pytestmark = [pytest.mark.abuse, pytest.mark.recovery, pytest.mark.e2e]

HOLIDAY = make_png(32, 16, (200, 10, 10))  # the member's picture; the fake's blur keeps its size
DECOY = make_png(48, 48, (10, 200, 10))  # someone else's picture that takes its name on the server
UPLOADED = ("input", "discord-bot", "holiday.png")


def png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


def uploads(world: World) -> int:
    """How many files the bot uploaded to ComfyUI."""
    return sum(1 for r in world.comfy.requests if r.path == "/upload/image")


def images(world: World) -> list[str]:
    """The picture each submitted prompt loads."""
    return [p["prompt"]["1"]["inputs"]["image"] for p in world.prompts()]


async def blur_running(
    world: World, filename: str = "holiday.png", picture: bytes = HOLIDAY
) -> tuple[Interaction, str]:
    """Start /blur with an attachment and hold the fake ComfyUI between two of its nodes."""
    world.comfy.node_delay = 0.1
    it = await world.discord.invoke_slash("blur", attachments={"picture": (filename, picture)})
    await world.comfy.wait_for(lambda: bool(world.comfy.queue_snapshot()[0]))
    world.comfy.pause()
    world.comfy.node_delay = 0.0
    return it, world.prompts()[-1]["prompt_id"]


def result_size(world: World, message: dict[str, Any]) -> tuple[int, int]:
    """The size of the picture delivered in `message`, as ComfyUI saved it."""
    [attachment] = message["attachments"]
    return png_size(world.comfy.files[("output", "", attachment["filename"])])


@pytest.fixture
def blur(tmp_path: Path) -> Path:
    return write_blur_workflow(tmp_path / "workflows")


async def test_a_restarted_server_with_an_empty_input_folder_gets_the_kept_copy(start: Start, blur: Path) -> None:
    world = await start(workflows=blur)
    it, job_id = await blur_running(world)
    record = await world.bot.store.get(job_id)
    assert record is not None and record.inputs == {"picture": "discord-bot/holiday.png"}
    assert await world.bot.store.kept_input(job_id, "picture") == HOLIDAY
    del world.comfy.files[UPLOADED]  # the admin cleaned ComfyUI's input folder
    await world.comfy.restart(downtime=0.2)
    world.comfy.resume()
    message = await finished(world, it)
    assert images(world) == ["discord-bot/holiday.png", "discord-bot/holiday.png"]
    assert uploads(world) == 2  # uploaded again from the copy
    assert world.comfy.files[UPLOADED] == HOLIDAY
    assert result_size(world, message) == (32, 16)
    await wait_state(world, job_id, JobState.DONE)
    assert await world.bot.store.kept_input(job_id, "picture") is None  # gone once the member has the result


async def test_a_file_that_took_the_name_is_never_used(start: Start, blur: Path) -> None:
    world = await start(workflows=blur)
    it, job_id = await blur_running(world)
    world.comfy.files[UPLOADED] = DECOY
    await world.comfy.restart(downtime=0.2)
    world.comfy.resume()
    message = await finished(world, it)
    assert images(world) == ["discord-bot/holiday.png", "discord-bot/holiday (1).png"]
    assert world.comfy.files[("input", "discord-bot", "holiday (1).png")] == HOLIDAY
    assert world.comfy.files[UPLOADED] == DECOY  # left alone
    assert result_size(world, message) == (32, 16)  # the member's picture, not the 48×48 decoy
    record = await world.bot.store.get(job_id)
    assert record is not None and record.inputs == {"picture": "discord-bot/holiday (1).png"}


async def test_without_a_copy_a_lost_file_fails_the_job_with_a_clear_message(start: Start, blur: Path) -> None:
    world = await start(workflows=blur)
    it, job_id = await blur_running(world)
    shutil.rmtree(world.bot.store.inputs_dir / job_id)  # as for a job kept by an older bot, or a lost disk
    del world.comfy.files[UPLOADED]
    await world.comfy.restart(downtime=0.2)
    world.comfy.resume()
    await world.discord.wait_for(lambda: bool(world.private_replies(it)), timeout=15)
    assert world.private_replies(it) == [
        "The file you attached (holiday.png) is no longer on the ComfyUI server and the bot has no copy of it; "
        "please run the command again with the attachment."
    ]
    assert it.original is not None
    assert it.original["content"] == f"❌ /blur did not finish; the reason was sent to <@{it.user['id']}> privately."
    assert images(world) == ["discord-bot/holiday.png"]  # never submitted again
    await wait_state(world, job_id, JobState.FAILED)


async def queued_behind_another(world: World) -> tuple[Interaction, str]:
    """A /blur job with holiday.png waiting in the bot's own queue (one slot, held by a running job)."""
    await blur_running(world, "first.png", make_png(8, 8))
    it = await world.discord.invoke_slash("blur", attachments={"picture": ("holiday.png", HOLIDAY)})
    await world.discord.wait_for(lambda: len(world.bot.active_jobs) == 2)
    job_id = next(job for job in world.bot.active_jobs if job not in {p["prompt_id"] for p in world.prompts()})
    await world.discord.wait_for(lambda: job_id in world.bot.engine.queue)
    return it, job_id


async def test_a_job_waiting_in_the_bots_queue_runs_on_the_kept_copy_after_a_restart(start: Start, blur: Path) -> None:
    world = await start(workflows=blur, settings_env={"MAX_JOBS_PER_SERVER": "1"})
    it, job_id = await queued_behind_another(world)
    await world.stop_bot()
    world.comfy.files[UPLOADED] = DECOY  # a file of the same name waits on the server
    world.comfy.resume()
    await world.start_bot()
    await world.discord.wait_for(lambda: " · " in ((it.original or {}).get("content") or ""), timeout=15)
    assert it.original is not None and "**picture:** holiday.png" in it.original["content"]
    assert images(world) == ["discord-bot/first.png", "discord-bot/holiday (1).png"]
    assert world.comfy.files[("input", "discord-bot", "holiday (1).png")] == HOLIDAY
    assert result_size(world, it.original) == (32, 16)
    await wait_state(world, job_id, JobState.DONE)


async def test_a_queued_job_whose_copy_is_gone_fails_clearly_after_a_restart(start: Start, blur: Path) -> None:
    world = await start(workflows=blur, settings_env={"MAX_JOBS_PER_SERVER": "1"})
    it, job_id = await queued_behind_another(world)
    await world.stop_bot()
    shutil.rmtree(world.bot.store.inputs_dir / job_id)
    world.comfy.files[UPLOADED] = DECOY
    world.comfy.resume()
    await world.start_bot()
    await world.discord.wait_for(lambda: "❌" in ((it.original or {}).get("content") or ""), timeout=15)
    assert it.original is not None
    assert it.original["content"] == (
        f"**/blur** for <@{it.user['id']}>\n❌ The bot restarted before the file you attached (holiday.png) reached "
        "the ComfyUI server, and the bot has no copy of it; please run the command again with the attachment."
    )
    assert images(world) == ["discord-bot/first.png"]  # the decoy was never used
    await wait_state(world, job_id, JobState.FAILED)


async def test_a_job_asked_for_before_a_long_downtime_still_gets_its_full_timeout(start: Start, blur: Path) -> None:
    world = await start(workflows=blur, settings_env={"MAX_JOBS_PER_SERVER": "1"})
    it, job_id = await queued_behind_another(world)
    await world.stop_bot()
    store = await JobStore(world.settings.jobs_db).open()
    record = await store.get(job_id)
    assert record is not None
    await store.update(record, created_at=time.time() - 2 * world.settings.job_timeout)  # the bot was down long
    await store.close()
    world.comfy.resume()
    await world.start_bot()
    await world.discord.wait_for(lambda: " · " in ((it.original or {}).get("content") or ""), timeout=15)
    assert it.original is not None and "**picture:** holiday.png" in it.original["content"]
    await wait_state(world, job_id, JobState.DONE)


def test_a_lost_attachment_is_explained_in_the_members_language() -> None:
    gone = InputGone("picture", "holiday.png").user_message
    assert localize(gone, "ja") == (
        "添付したファイル（holiday.png）は ComfyUI サーバーにもうなく、ボットもコピーを持っていません。"
        "ファイルを添付してもう一度コマンドを実行してください。"
    )
    never_sent = InputGone("picture", "x" * 300, uploaded=False).user_message
    assert localize(never_sent, "zh-CN") == (
        f"在你附加的文件（{'x' * 99}…）送达 ComfyUI 服务器之前机器人重启了，机器人也没有副本；请附上文件重新运行命令。"
    )

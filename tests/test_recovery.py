"""Faults a self-hosted bot lives through; every job must end delivered exactly once, or failed with a message
the member sees. The bot is restarted by stopping it like a crash (jobs left as they are in the store) and
starting a new one on the same job store, against the same fake Discord and fake ComfyUI."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import pytest

from core.jobs.store import JobState
from tests.conftest import ROOT, WORKFLOWS
from tests.e2e_world import Start, World, finished
from tests.fakes.discord_fake import Interaction

pytestmark = [pytest.mark.e2e, pytest.mark.recovery]


def results(world: World, text: str) -> list[dict[str, Any]]:
    """Messages that carry a result (files) for the job whose prompt contains `text`."""
    return [m for m in world.discord.messages.values() if m["attachments"] and f"**prompt:** {text}" in m["content"]]


async def delivered_once(world: World, text: str) -> dict[str, Any]:
    await world.discord.wait_for(lambda: bool(results(world, text)), timeout=15)
    [message] = results(world, text)
    return message


async def job_id_for(world: World, text: str) -> str:
    await world.discord.wait_for(
        lambda: any(p["prompt"]["6"]["inputs"]["text"] == text for p in world.prompts() if "6" in p["prompt"])
    )
    return next(
        p["prompt_id"] for p in world.prompts() if p["prompt"].get("6", {}).get("inputs", {}).get("text") == text
    )


async def state(world: World, job_id: str) -> JobState:
    record = await world.bot.store.get(job_id)
    assert record is not None
    return record.state


async def wait_state(world: World, job_id: str, wanted: JobState) -> None:
    for _ in range(500):
        if await state(world, job_id) is wanted:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {wanted}; it is {await state(world, job_id)}")


async def hold_running(world: World, text: str) -> tuple[Interaction, str]:
    """Start /image and hold the fake ComfyUI between two of its nodes."""
    world.comfy.node_delay = 0.1
    it = await world.discord.invoke_slash("image", {"prompt": text})
    job_id = await job_id_for(world, text)
    await world.comfy.wait_for(lambda: bool(world.comfy.queue_snapshot()[0]))
    world.comfy.pause()
    world.comfy.node_delay = 0.0
    return it, job_id


async def test_bot_restart_while_queued_on_comfyui(start: Start) -> None:
    world = await start()
    world.comfy.pause()  # nothing starts: the job waits in ComfyUI's queue
    it = await world.discord.invoke_slash("image", {"prompt": "queued cat"})
    job_id = await job_id_for(world, "queued cat")
    await wait_state(world, job_id, JobState.SUBMITTED)
    await world.stop_bot()
    world.comfy.resume()
    await world.start_bot()
    message = await delivered_once(world, "queued cat")
    assert int(message["id"]) == it.original_id  # the status message became the result
    assert [a["filename"] for a in message["attachments"]] == ["ComfyUI_00001_.png"]
    await wait_state(world, job_id, JobState.DONE)
    assert len(world.prompts()) == 1  # waited for, not submitted again


async def test_bot_restart_while_running(start: Start) -> None:
    world = await start()
    it, job_id = await hold_running(world, "running cat")
    await wait_state(world, job_id, JobState.RUNNING)
    await world.stop_bot()
    world.comfy.resume()
    await world.start_bot()
    message = await delivered_once(world, "running cat")
    assert int(message["id"]) == it.original_id
    await wait_state(world, job_id, JobState.DONE)


async def test_job_finished_while_the_bot_was_down_is_delivered_after_start(start: Start) -> None:
    world = await start()
    _, job_id = await hold_running(world, "finished cat")
    await world.stop_bot()
    world.comfy.resume()
    await world.comfy.wait_for(lambda: job_id in world.comfy.history)
    assert results(world, "finished cat") == []
    await world.start_bot()
    await delivered_once(world, "finished cat")
    await wait_state(world, job_id, JobState.DONE)


async def test_a_server_that_never_comes_back_fails_the_job_with_a_message(start: Start) -> None:
    world = await start(settings_env={"JOB_TIMEOUT": "2"})
    it, job_id = await hold_running(world, "stranded cat")
    await world.stop_bot()
    await world.comfy.stop()  # and it stays down
    await world.start_bot()
    await wait_state(world, job_id, JobState.FAILED)
    await world.discord.wait_for(lambda: "❌" in ((it.original or {}).get("content") or ""))
    assert it.original is not None
    assert it.original["content"] == (
        f"**/image** for <@{it.user['id']}>\n"
        f"❌ The ComfyUI server {world.comfy.url} went down with the job and no other server could take it "
        "within 1 minute(s), so the bot stopped waiting for it."
    )


async def test_restart_mid_delivery_does_not_post_twice(start: Start) -> None:
    world = await start()
    it = await world.discord.invoke_slash("image", {"prompt": "delivered cat"})
    await finished(world, it)
    job_id = await job_id_for(world, "delivered cat")
    await wait_state(world, job_id, JobState.DONE)
    record = await world.bot.store.get(job_id)
    assert record is not None
    await world.bot.store.update(record, state=JobState.DELIVERING)  # as if the bot died before recording DONE
    await world.restart_bot()
    await wait_state(world, job_id, JobState.DONE)
    message = await delivered_once(world, "delivered cat")
    assert int(message["id"]) == it.original_id
    edits = [
        r for r in world.discord.requests if r.method == "PATCH" and r.path.endswith(f"/messages/{it.original_id}")
    ]
    assert edits and edits[-1].headers["Authorization"].startswith("Bot ")  # re-delivered by editing, not posting


async def test_comfyui_restart_mid_run_resubmits_once_and_delivers(start: Start) -> None:
    world = await start()
    _, job_id = await hold_running(world, "restarted cat")
    await world.comfy.restart(downtime=0.2)
    world.comfy.resume()
    await delivered_once(world, "restarted cat")
    assert [p["prompt_id"] for p in world.prompts()] == [job_id, job_id]


async def test_cleared_comfyui_queue_resubmits_and_delivers(start: Start) -> None:
    world = await start()
    await hold_running(world, "first cat")
    await world.discord.invoke_slash("image", {"prompt": "second cat"})
    second = await job_id_for(world, "second cat")
    await world.comfy.wait_for(lambda: bool(world.comfy.queue_snapshot()[1]))
    async with world.bot.session.post(f"{world.comfy.url}/queue", json={"clear": True}) as resp:
        assert resp.status == 200
    world.comfy.resume()
    await delivered_once(world, "first cat")
    await delivered_once(world, "second cat")
    assert [p["prompt_id"] for p in world.prompts()].count(second) == 2


async def test_websocket_drop_mid_run_still_delivers(start: Start) -> None:
    world = await start()
    await hold_running(world, "dropped cat")
    await world.comfy.drop_websockets()
    world.comfy.resume()
    await delivered_once(world, "dropped cat")


async def test_discord_5xx_on_the_final_post_is_retried(start: Start) -> None:
    world = await start()
    world.discord.inject_error("PATCH", r"/messages/@original$", status=500, code=0, message="Internal", count=1)
    it = await world.discord.invoke_slash("image", {"prompt": "retried cat"})
    message = await delivered_once(world, "retried cat")
    assert int(message["id"]) == it.original_id
    assert 500 in [r.status for r in it.requests]


async def cancel_button(world: World, it: Interaction) -> str:
    def button() -> str | None:
        original = it.original or {}
        for row in original.get("components", []):
            for item in row.get("components", []):
                if item.get("custom_id", "").startswith("job:cancel:"):
                    return item["custom_id"]
        return None

    await world.discord.wait_for(lambda: button() is not None)
    custom_id = button()
    assert custom_id is not None
    return custom_id


def cancel_calls(world: World) -> list[tuple[str, Any]]:
    """(path, body) of each request by which the bot asked ComfyUI to stop a job."""
    return [
        (r.path, r.json)
        for r in world.comfy.requests
        if r.method == "POST" and (r.path in ("/interrupt", "/queue") or r.path.startswith("/api/jobs/"))
    ]


def atomic_cancel_paths(world: World, job_id: str) -> tuple[list[str], list[str]]:
    """(what the bot sent, what it should send) on a server with the jobs API: one cancel for that job."""
    return [path for path, _ in cancel_calls(world)], [f"/api/jobs/{job_id}/cancel"]


async def test_cancel_of_a_pending_job_removes_it_from_the_queue(start: Start) -> None:
    world = await start()
    await hold_running(world, "first cat")
    it = await world.discord.invoke_slash("image", {"prompt": "pending cat"})
    job_id = await job_id_for(world, "pending cat")
    click = await world.discord.click(it.original_id or 0, await cancel_button(world, it))
    await world.discord.wait_for(lambda: "Cancelled" in ((it.original or {}).get("content") or ""))
    assert world.private_replies(click) == ["Cancelling the job…"]
    assert it.original is not None and it.original["content"].endswith("🚫 Cancelled.")
    if world.comfy.profile.jobs_api:
        sent, wanted = atomic_cancel_paths(world, job_id)
        assert sent == wanted
    else:
        assert ("/queue", {"delete": [job_id]}) in cancel_calls(world)
    await wait_state(world, job_id, JobState.CANCELLED)
    world.comfy.resume()
    await delivered_once(world, "first cat")
    assert [p["prompt_id"] for p in world.prompts()].count(job_id) == 1  # not resubmitted


async def test_cancel_of_a_running_job_interrupts_only_it(start: Start) -> None:
    world = await start()
    it, job_id = await hold_running(world, "running cat")
    await world.discord.click(it.original_id or 0, await cancel_button(world, it))
    await world.comfy.wait_for(lambda: bool(cancel_calls(world)))
    world.comfy.resume()
    await world.discord.wait_for(lambda: "Cancelled" in ((it.original or {}).get("content") or ""))
    if world.comfy.profile.jobs_api:
        sent, wanted = atomic_cancel_paths(world, job_id)
        assert sent == wanted
    else:
        interrupts = [body for path, body in cancel_calls(world) if path == "/interrupt"]
        assert interrupts == [{"prompt_id": job_id}]  # never a bare interrupt
    await wait_state(world, job_id, JobState.CANCELLED)
    assert results(world, "running cat") == []


async def test_another_member_cannot_cancel_and_a_second_click_changes_nothing(start: Start) -> None:
    world = await start()
    it, job_id = await hold_running(world, "guarded cat")
    custom_id = await cancel_button(world, it)
    stranger = world.discord.make_user(name="stranger")
    refused = await world.discord.click(it.original_id or 0, custom_id, user=stranger)
    await world.discord.wait_for(lambda: bool(world.private_replies(refused)))
    assert world.private_replies(refused) == ["Only the member who started this job (or an admin) can cancel it."]
    first = await world.discord.click(it.original_id or 0, custom_id)
    again = await world.discord.click(it.original_id or 0, custom_id)
    await world.discord.wait_for(lambda: bool(world.private_replies(first) and world.private_replies(again)))
    assert world.private_replies(first) == ["Cancelling the job…"]
    assert world.private_replies(again) == ["This job is already being cancelled."]
    world.comfy.resume()
    await wait_state(world, job_id, JobState.CANCELLED)
    if world.comfy.profile.jobs_api:
        sent, wanted = atomic_cancel_paths(world, job_id)
        assert sent == wanted
    else:
        assert len([path for path, _ in cancel_calls(world) if path == "/interrupt"]) == 1


async def test_member_limit_refuses_a_third_job(start: Start) -> None:
    world = await start()
    world.comfy.pause()
    await world.discord.invoke_slash("image", {"prompt": "one"})
    await world.discord.invoke_slash("image", {"prompt": "two"})
    await world.discord.wait_for(lambda: len(world.prompts()) == 2)
    third = await world.discord.invoke_slash("image", {"prompt": "three"})
    await world.discord.wait_for(lambda: bool(world.private_replies(third)))
    assert world.private_replies(third) == [
        "You already have 2 job(s) waiting or running; the limit is 2. Please wait for one to finish, "
        "or cancel one with /cancel."
    ]
    world.comfy.resume()
    await delivered_once(world, "one")
    await delivered_once(world, "two")


async def test_kill_9_mid_job_then_restart_delivers_once(
    start: Start, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The bot as its own OS process, killed with SIGKILL while the job runs, then started again."""
    world = await start()
    await world.stop_bot()  # this test runs the bot as a separate process instead
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "COMFYUI_", "JOBS_"))},
        "DISCORD_TOKEN": world.discord.token,
        "COMFYUI_URL": world.comfy.url,
        "WORKFLOWS_DIR": str(WORKFLOWS),
        "DEV_GUILD_ID": str(world.discord.guild_id),
        "JOBS_DB": str(tmp_path_factory.mktemp("kill9") / "jobs.sqlite3"),
        "LOG_LEVEL": "INFO",
        "RESULT_VIEW": "classic",  # as the world's bot: the result is read from its content
    }

    async def spawn() -> asyncio.subprocess.Process:
        readies = len(world.discord.ready_at)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.fakes.bot_process", world.discord.url,
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        # Commands are answered from READY on: setup_hook (workflows, command sync) comes before it.
        await world.discord.wait_for(lambda: len(world.discord.ready_at) > readies, timeout=30)
        return process

    first = await spawn()
    world.comfy.node_delay = 0.1
    it = await world.discord.invoke_slash("image", {"prompt": "killed cat"})
    job_id = await job_id_for(world, "killed cat")
    await world.comfy.wait_for(lambda: bool(world.comfy.queue_snapshot()[0]), timeout=10)
    world.comfy.pause()
    first.send_signal(signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    world.comfy.resume()
    second = await spawn()
    try:
        message = await delivered_once(world, "killed cat")
    finally:
        second.terminate()
        await second.wait()
    assert int(message["id"]) == it.original_id
    assert [p["prompt_id"] for p in world.prompts()] == [job_id]


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """Label -> custom_id of a message's buttons."""
    return {c["label"]: c["custom_id"] for row in message.get("components", []) for c in row.get("components", [])}


async def test_result_buttons_work_after_a_restart(start: Start) -> None:
    world = await start()
    it = await world.discord.invoke_slash("image", {"prompt": "button cat", "seed": 11})
    message = await finished(world, it)
    job_id = await job_id_for(world, "button cat")
    assert buttons(message) == {
        "Re-roll": f"job:reroll:{job_id}",
        "Details": f"job:details:{job_id}",
        "Delete": f"job:delete:{job_id}",
        "U1": f"fu:upscale:{job_id}:0",
        "V1": f"fu:variation:{job_id}:0",
    }
    await wait_state(world, job_id, JobState.DONE)
    await world.restart_bot()  # the buttons are read back from their custom_id and the store

    details = await world.discord.click(int(message["id"]), buttons(message)["Details"])
    await world.discord.wait_for(lambda: bool(world.private_replies(details)))
    [text] = world.private_replies(details)
    assert text.splitlines()[0] == f"**/image** · job `{job_id}` · done"
    assert "**seed:** 11" in text and f"**server:** {world.comfy.url}" in text

    reroll = await world.discord.click(int(message["id"]), buttons(message)["Re-roll"])
    await world.discord.wait_for(lambda: len(results(world, "button cat")) == 2, timeout=10)
    first, second = world.prompts()[0]["prompt"], world.prompts()[1]["prompt"]
    assert second["6"]["inputs"]["text"] == first["6"]["inputs"]["text"] == "button cat"
    assert second["3"]["inputs"]["seed"] != 11
    assert reroll.original_id is not None and reroll.original_id != it.original_id  # a new message

    stranger = world.discord.make_user(name="stranger")
    refused = await world.discord.click(int(message["id"]), buttons(message)["Delete"], user=stranger)
    await world.discord.wait_for(lambda: bool(world.private_replies(refused)))
    assert world.private_replies(refused) == ["Only the member who asked for this result (or an admin) can delete it."]
    deleted = await world.discord.click(int(message["id"]), buttons(message)["Delete"])
    await world.discord.wait_for(lambda: int(message["id"]) not in world.discord.messages)
    assert world.private_replies(deleted) == ["Deleted."]


async def test_queue_lists_the_members_jobs_and_where_they_are(start: Start) -> None:
    world = await start(settings_env={"MAX_JOBS_PER_SERVER": "1"})
    first, first_id = await hold_running(world, "first cat")
    member = world.discord.make_user(name="member")
    await world.discord.invoke_slash("image", {"prompt": "second cat"}, user=member)
    await world.discord.wait_for(lambda: len(world.bot.active_jobs) == 2)
    second_id = next(job for job, user in world.bot.active_jobs.items() if user == int(member["id"]))
    await world.discord.wait_for(lambda: second_id in world.bot.engine.queue)

    mine = await world.discord.invoke_slash("queue", user=member)
    await world.discord.wait_for(lambda: bool(world.private_replies(mine)))
    assert world.private_replies(mine) == [
        f"• `{second_id[:8]}` /image: waiting for a free slot (position 1 in the bot's queue)"
    ]
    everything = await world.discord.invoke_slash("queue")  # the owner is an admin
    await world.discord.wait_for(lambda: bool(world.private_replies(everything)))
    assert world.private_replies(everything)[0].splitlines() == [
        f"• `{first_id[:8]}` /image for <@{first.user['id']}>: running on {world.comfy.url}",
        f"• `{second_id[:8]}` /image for <@{member['id']}>: waiting for a free slot (position 1 in the bot's queue)",
    ]
    world.comfy.resume()
    await delivered_once(world, "first cat")
    await delivered_once(world, "second cat")

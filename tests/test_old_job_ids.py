"""Jobs stored by earlier versions of the bot, whose ids (ComfyUI prompt ids) were 32 hex digits, keep working."""

from __future__ import annotations

from dataclasses import replace

import aiohttp
import pytest

from core.jobs.store import JobState, JobStore
from tests.e2e_world import Start, finished
from tests.test_recovery import buttons, delivered_once, job_id_for, wait_state

pytestmark = [pytest.mark.e2e, pytest.mark.recovery]
OLD_ID = "0123456789abcdef" * 2


# Only 0.3.64 ever took such an id: newer servers refuse anything but a canonical UUID.
@pytest.mark.parametrize("comfy_profile", ["0.3.64"], indirect=True)
async def test_an_old_job_submitted_before_the_upgrade_is_resumed_and_its_buttons_work(start: Start) -> None:
    world = await start()
    it = await world.discord.invoke_slash("image", {"prompt": "old cat", "seed": 5})
    await finished(world, it)
    job_id = await job_id_for(world, "old cat")
    await wait_state(world, job_id, JobState.DONE)
    await world.stop_bot()

    # The old bot had submitted a job under a 32-hex id and stopped before it ended.
    store = await JobStore(world.settings.jobs_db).open()
    record = await store.get(job_id)
    assert record is not None and record.prompt is not None
    old = replace(record, id=OLD_ID, state=JobState.SUBMITTED, reported=False, values={**record.values, "seed": 6})
    await store.add(old)
    await store.update(record, reported=True)
    await store.close()
    world.comfy.pause()
    async with aiohttp.ClientSession() as session:
        body = {"prompt": old.prompt, "client_id": "the-old-bot", "prompt_id": OLD_ID}
        async with session.post(f"{world.comfy.url}/prompt", json=body) as resp:
            assert resp.status == 200
    for message in world.discord.messages.values():
        message["attachments"] = []  # only the resumed job's delivery carries files now
    world.comfy.resume()

    await world.start_bot()
    message = await delivered_once(world, "old cat")
    assert int(message["id"]) == it.original_id  # its status message became its result
    assert buttons(message) == {
        "Re-roll": f"job:reroll:{OLD_ID}",
        "Details": f"job:details:{OLD_ID}",
        "Delete": f"job:delete:{OLD_ID}",
        "U1": f"fu:upscale:{OLD_ID}:0",  # /image's follow-ups, also for a job delivered after the restart
        "V1": f"fu:variation:{OLD_ID}:0",
    }
    await wait_state(world, OLD_ID, JobState.DONE)
    details = await world.discord.click(int(message["id"]), buttons(message)["Details"])
    await world.discord.wait_for(lambda: bool(world.private_replies(details)))
    [text] = world.private_replies(details)
    assert text.splitlines()[0] == f"**/image** · job `{OLD_ID}` · done"
    assert "**seed:** 6" in text
    # The bot never submitted the old job again (the second submission is the old bot's, above).
    assert [p["prompt_id"] for p in world.prompts()] == [job_id, OLD_ID]


# Newer servers take only the UUID form: an old job that still has to be submitted goes under that form of its id.
@pytest.mark.parametrize("comfy_profile", ["current"], indirect=True)
async def test_an_old_job_still_in_the_bots_queue_is_submitted_in_uuid_form_after_the_upgrade(start: Start) -> None:
    world = await start()
    it = await world.discord.invoke_slash("image", {"prompt": "queued old cat", "seed": 5})
    await finished(world, it)
    job_id = await job_id_for(world, "queued old cat")
    await wait_state(world, job_id, JobState.DONE)
    await world.stop_bot()

    store = await JobStore(world.settings.jobs_db).open()
    record = await store.get(job_id)
    assert record is not None
    old = replace(record, id=OLD_ID, state=JobState.QUEUED, prompt=None, server=None, reported=False, attempts=0)
    await store.add(old)
    await store.close()
    for message in world.discord.messages.values():
        message["attachments"] = []

    await world.start_bot()
    message = await delivered_once(world, "queued old cat")
    assert int(message["id"]) == it.original_id
    assert buttons(message)["Details"] == f"job:details:{OLD_ID}"
    assert [p["prompt_id"] for p in world.prompts()] == [job_id, "01234567-89ab-cdef-0123-456789abcdef"]
    await wait_state(world, OLD_ID, JobState.DONE)
    stored = await world.bot.store.get(OLD_ID)
    assert stored is not None and stored.prompt_id == "01234567-89ab-cdef-0123-456789abcdef"

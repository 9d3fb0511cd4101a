"""Issue 11 on the Discord side, through the real discord.py client and the fake Discord: mentions that never
ping, messages that are cut instead of lost, results that find their member when the status message is gone or
the interaction expired, command names in form and button failures, batches by bytes, no token in the logs."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from core.errors import InvalidInput
from core.jobs.engine import Engine
from core.jobs.store import JobRecord, JobState, JobStore
from core.workflows import Workflow
from tests.conftest import WORKFLOWS
from tests.e2e_world import Start, World, finished
from tests.fakes.discord_fake import Request

pytestmark = [pytest.mark.e2e, pytest.mark.abuse]

CALLBACK = re.compile(r"^/interactions/\d+/[^/]+/callback$")
MESSAGE_PATHS = re.compile(r"^/channels/\d+/messages(/\d+)?$|^/webhooks/\d+/[^/]+(/messages/(@original|\d+))?$")


def message_payload(request: Request) -> dict[str, Any] | None:
    """The message the bot sent or edited in `request` (a callback's data, a post, a followup, an edit)."""
    if request.method not in ("POST", "PATCH") or not isinstance(request.json, dict):
        return None
    if CALLBACK.match(request.path):
        return request.json.get("data") if request.json.get("type") in (4, 7) else None
    return request.json if MESSAGE_PATHS.match(request.path) else None


def assert_nobody_pinged(world: World, *, except_user: str | None = None) -> int:
    """Every message the bot sent allows no @everyone, no role and no user but `except_user`; returns how many."""
    payloads = [p for r in world.discord.requests if (p := message_payload(r)) is not None]
    for payload in payloads:
        allowed = payload.get("allowed_mentions")
        assert allowed is not None, payload
        assert allowed["parse"] == [], payload
        assert not allowed.get("roles"), payload
        assert {str(u) for u in allowed.get("users", [])} <= ({except_user} if except_user else set()), payload
    assert payloads
    return len(payloads)


def channel_posts(world: World) -> list[Request]:
    path = f"/channels/{world.discord.channel_id}/messages"
    return [r for r in world.discord.requests if r.method == "POST" and r.path == path and r.status == 200]


async def test_a_prompt_full_of_mentions_pings_nobody(start: Start) -> None:
    world = await start()
    world.bot.statuses.first_delay = 0.0  # the status edit too must ping nobody: send it however fast the job is
    prompt = "@everyone @here <@&123456789012345678> <@987654321098765432> a cat"
    it = await world.discord.invoke_slash("image", {"prompt": prompt})
    message = await finished(world, it)
    assert f"**prompt:** {prompt}" in message["content"].splitlines()
    refused = await world.discord.invoke_slash("image", {"prompt": "@everyone", "width": 300})
    await world.discord.wait_for(lambda: bool(world.private_replies(refused)))
    assert world.private_replies(refused) == ["width must be a multiple of 64 (got 300)."]
    assert assert_nobody_pinged(world, except_user=it.user["id"]) >= 3


async def test_a_refusal_longer_than_a_message_arrives_cut(start: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    # Core messages cap what they quote; this one stands for any refusal that still ends up too long.
    full = "@everyone " + "x" * 3000

    def refuse(self: Workflow, given: Any) -> Any:
        raise InvalidInput(full)

    monkeypatch.setattr(Workflow, "resolve", refuse)
    world = await start()
    it = await world.discord.invoke_slash("image", {"prompt": "a cat"})
    await world.discord.wait_for(lambda: bool(world.private_replies(it)))

    assert world.private_replies(it) == [full[:1999] + "…"]
    assert_nobody_pinged(world)
    assert world.prompts() == []


async def test_a_deleted_status_message_gets_the_result_in_a_new_message(start: Start) -> None:
    world = await start()
    world.bot.statuses.first_delay = 0.0  # a status message to delete while the job is short
    world.comfy.node_delay = 0.1
    it = await world.discord.invoke_slash("image", {"prompt": "a shy cat"})
    await world.discord.wait_for(lambda: "Running" in ((it.original or {}).get("content") or ""))
    assert it.original_id is not None
    world.discord.delete_message(it.original_id)

    await world.discord.wait_for(lambda: any(r.files for r in channel_posts(world)), timeout=10)
    [post] = [r for r in channel_posts(world) if r.files]
    assert post.json["content"].startswith(f"**/image** for <@{it.user['id']}> · ")
    assert "**prompt:** a shy cat" in post.json["content"]
    assert [f.filename for f in post.files] == ["ComfyUI_00001_.png"]
    assert post.json["allowed_mentions"] == {"parse": [], "users": [int(it.user["id"])]}  # the requester only
    assert_nobody_pinged(world, except_user=it.user["id"])


async def test_an_interaction_that_expired_before_the_first_answer_is_still_delivered(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    world = await start(interaction_deadline=0.0)  # every first answer comes too late: 404 10062
    it = await world.discord.invoke_slash("image", {"prompt": "a late cat"})
    await world.discord.wait_for(lambda: any(r.files for r in channel_posts(world)), timeout=10)

    assert it.callback is not None and it.callback.response["code"] == 10062
    status, result = channel_posts(world)
    assert status.json["content"] == f"**/image** for <@{it.user['id']}>\nSubmitting…"
    assert result.json["content"].startswith(f"**/image** for <@{it.user['id']}> · ")
    assert [f.filename for f in result.files] == ["ComfyUI_00001_.png"]
    await world.discord.wait_for(
        lambda: world.discord.messages[int(status.response["id"])]["content"].endswith(
            "Finished: the result is in the message below."
        )
    )
    warnings = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(("discord_ui", "discord.ui", "cogs"))
    ]
    assert [r.getMessage() for r in warnings] == [
        f"/image: interaction {it.id} expired before the bot's first answer; the job goes on in the channel"
    ]
    assert warnings[0].exc_info is None
    assert not any("Something went wrong" in (m["content"] or "") for m in world.discord.messages.values())


async def test_failures_in_forms_and_buttons_name_their_command(start: Start) -> None:
    world = await start()
    first = await world.discord.invoke_slash("image", {"prompt": "a cat"})
    result = await finished(world, first)
    await world.discord.wait_for(lambda: not world.bot.active_jobs)  # its place under the member limit is back
    world.comfy.fail_nodes = {
        "VAEDecode": ("RuntimeError", "out of memory"),
        "VAEDecodeAudio": ("RuntimeError", "no disk"),
    }

    click = await world.discord.click(int(result["id"]), next(
        c["custom_id"] for row in result["components"] for c in row["components"] if c["label"] == "Re-roll"
    ))  # fmt: skip
    form = await world.discord.invoke_slash("music", {"tags": "lofi"})
    await world.discord.wait_for(lambda: form.modal is not None)
    submitted = await world.discord.submit_modal(form, {"lyrics": "[verse]\nla la"})
    await world.discord.wait_for(lambda: bool(world.private_replies(click) and world.private_replies(submitted)))

    user = first.user["id"]
    assert click.original is not None and submitted.original is not None
    assert click.original["content"] == f"❌ /image did not finish; the reason was sent to <@{user}> privately."
    assert submitted.original["content"] == f"❌ /music did not finish; the reason was sent to <@{user}> privately."
    assert world.private_replies(click) == ["The job failed in “VAE Decode” (VAEDecode, node 8): out of memory"]
    assert world.private_replies(submitted)[0].startswith("The job failed in ")


async def test_big_outputs_are_split_by_bytes_and_none_gets_a_413(start: Start, tmp_path: Path) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    graph = json.loads((WORKFLOWS / "image.json").read_text())
    graph["5"]["inputs"]["batch_size"] = 4
    (folder / "image.json").write_text(json.dumps(graph))
    shutil.copy(WORKFLOWS / "image.toml", folder / "image.toml")
    world = await start(workflows=folder)
    world.comfy.output_padding = 7 * 2**20  # four 7 MB PNGs: 28 MB, more than one 25 MB request
    it = await world.discord.invoke_slash("image", {"prompt": "four big cats"})
    await finished(world, it)
    await world.discord.wait_for(lambda: len(it.followups) == 1)

    uploads = [r for r in it.requests if r.files]
    assert [[f.filename for f in r.files] for r in uploads] == [
        ["ComfyUI_00001_.png", "ComfyUI_00002_.png", "ComfyUI_00003_.png"],
        ["ComfyUI_00004_.png"],
    ]
    assert not [r for r in world.discord.requests if r.status == 413]


async def test_no_token_reaches_the_log_at_debug(start: Start, caplog: pytest.LogCaptureFixture) -> None:
    world = await start()
    caplog.set_level(logging.DEBUG)
    it = await world.discord.invoke_slash("image", {"prompt": "a quiet cat"})
    await finished(world, it)
    texts = [r.getMessage() for r in caplog.records]
    assert any(f"/interactions/{it.id}/[token]/callback" in t for t in texts)  # discord.py did log the request
    assert not [t for t in texts if it.token in t or world.discord.token in t]


async def test_recovery_tells_members_of_ended_jobs_and_one_failure_stops_nothing(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await start()
    it = await world.discord.invoke_slash("image", {"prompt": "a doomed cat"})
    await finished(world, it)
    await world.stop_bot()
    store = await JobStore(world.settings.jobs_db).open()
    [record] = await _all_records(store)
    # As if the bot had recorded the failure and died before telling anyone; a second one lives in a channel
    # that is gone, so telling its member fails.
    error = "The job failed in KSampler (node 3): out of memory"
    failed = await store.update(record, state=JobState.FAILED, error=error, reported=False)
    lost = JobRecord(**{**_fields(failed), "id": "0" * 32, "channel_id": 1, "created_at": record.created_at - 1})
    await store.add(lost)
    assert [r.id for r in await store.unfinished()] == [lost.id, record.id]
    await store.close()

    finishes: list[tuple[str, JobState, str | None]] = []
    original_finish = Engine.finish

    async def finish(self: Engine, job_id: str, state: JobState, error: str | None = None) -> None:
        finishes.append((job_id, state, error))
        await original_finish(self, job_id, state, error)

    monkeypatch.setattr(Engine, "finish", finish)
    await world.start_bot()
    await world.discord.wait_for(lambda: bool(finishes))

    assert it.original is not None
    assert it.original["content"] == f"**/image** for <@{it.user['id']}>\n❌ {error}"
    assert it.original["attachments"] == [] and it.original["components"] == []
    assert finishes == [(record.id, JobState.FAILED, error)]  # the unreachable one stays unreported
    assert len(world.prompts()) == 1  # nothing ran again


async def _all_records(store: JobStore) -> list[JobRecord]:
    return await store._run(store._select, "", ())  # a test-only read of every row


def _fields(record: JobRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in JobRecord.__dataclass_fields__}


async def test_delete_clicked_twice_at_once_deletes_once_and_troubles_nobody(start: Start) -> None:
    world = await start()
    it = await world.discord.invoke_slash("image", {"prompt": "a doubly deleted cat"})
    result = await finished(world, it)
    delete = next(c["custom_id"] for row in result["components"] for c in row["components"] if c["label"] == "Delete")
    first = await world.discord.click(int(result["id"]), delete)
    second = await world.discord.click(int(result["id"]), delete)
    await world.discord.wait_for(lambda: bool(world.private_replies(first) and world.private_replies(second)))
    path = f"/channels/{result['channel_id']}/messages/{result['id']}"
    deletes = lambda: [r for r in world.discord.requests if r.method == "DELETE" and r.path == path and r.status]  # noqa: E731
    await world.discord.wait_for(lambda: len(deletes()) == 2)
    await asyncio.sleep(0.1)  # the second click's handler sees its 404 and ends
    assert sorted(r.status for r in deletes()) == [204, 404]
    assert world.private_replies(first) == world.private_replies(second) == ["Deleted."]
    assert not any("Something went wrong" in (m["content"] or "") for m in world.discord.messages.values())

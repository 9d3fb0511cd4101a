"""A member who installed the app to their account: /image in a DM with the bot and in a group DM, end to end.

Where the bot is not a member (a group DM), only the interaction reaches the conversation: its token, for 15
minutes. Commands are synced globally here (no DEV_GUILD_ID), as Discord offers only global commands outside servers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e_world import BUILT_IN_COMMANDS, Start, World, finished
from tests.fakes.discord_fake import BOT_DM, GUILD, PRIVATE_CHANNEL, Interaction, NotOffered

pytestmark = pytest.mark.e2e

GLOBAL = {"DEV_GUILD_ID": ""}
ADMIN_COMMANDS = ["reload", "workflows", "servers", "access"]


async def with_user_install(start: Start, **options: Any) -> tuple[World, int]:
    """The bot with its commands synced globally; the default member installed it and has a group DM with a friend."""
    world = await start(settings_env={**GLOBAL, **options.pop("settings_env", {})}, **options)
    member = world.discord.default_user
    world.discord.install_for(member)
    return world, world.discord.add_private_channel(member, world.discord.make_user(name="friend"))


def bot_token_requests(world: World, channel_id: int) -> list[str]:
    """What the bot asked of `channel_id` with its own token (not through an interaction)."""
    return [f"{r.method} {r.path}" for r in world.discord.requests if r.path.startswith(f"/channels/{channel_id}/")]


async def test_image_runs_in_a_dm_and_a_group_dm_and_answers_through_the_interaction(start: Start) -> None:
    world, group = await with_user_install(start)
    in_dm = await world.discord.invoke_slash("image", {"prompt": "a cat"}, context=BOT_DM)
    in_group = await world.discord.invoke_slash("image", {"prompt": "a dog"}, context=PRIVATE_CHANNEL, channel_id=group)

    for it, channel in ((in_dm, in_dm.payload["channel_id"]), (in_group, str(group))):
        message = await finished(world, it)
        assert message["channel_id"] == channel
        assert len(message["attachments"]) == 1 and message["attachments"][0]["filename"].endswith(".png")
        assert message["content"].startswith(f"**/image** for <@{it.user['id']}>")
    assert in_group.payload["authorizing_integration_owners"] == {"1": world.discord.default_user["id"]}
    assert bot_token_requests(world, group) == []  # the bot is not in the group DM: only the interaction reaches it
    assert sorted(p["prompt"]["6"]["inputs"]["text"] for p in world.prompts()) == ["a cat", "a dog"]


async def test_admin_commands_are_offered_in_servers_only_and_members_commands_everywhere(start: Start) -> None:
    world, group = await with_user_install(start)
    synced = {c["name"]: c for c in world.discord.commands[None]}
    for name in ADMIN_COMMANDS:
        assert (synced[name]["contexts"], synced[name]["integration_types"]) == ([GUILD], [0]), name
    for name in ["image", *(n for n in BUILT_IN_COMMANDS if n not in ADMIN_COMMANDS)]:
        assert (synced[name]["contexts"], synced[name]["integration_types"]) == ([0, 1, 2], [0, 1]), name

    for name in ("servers", "reload", "workflows", "access show"):
        with pytest.raises(NotOffered, match="its contexts are \\[0\\]"):
            await world.discord.invoke_slash(name, context=BOT_DM)
        with pytest.raises(NotOffered, match="its contexts are \\[0\\]"):
            await world.discord.invoke_slash(name, context=PRIVATE_CHANNEL, channel_id=group)
    assert world.discord.interactions == []

    queue = await world.discord.invoke_slash("queue", context=PRIVATE_CHANNEL, channel_id=group)
    await world.discord.wait_for(lambda: bool(world.private_replies(queue)))
    assert world.private_replies(queue) == ["No job is waiting or running."]


async def test_a_members_limit_holds_across_a_server_and_a_dm_at_once(start: Start) -> None:
    world, group = await with_user_install(start, settings_env={"MAX_PENDING_PER_MEMBER": "1"})
    world.comfy.pause()
    # Both sent before the bot reads either: the limit is taken before the first await of each
    sent = [
        await world.discord.invoke_slash("image", {"prompt": "in the server"}, context=GUILD),
        await world.discord.invoke_slash("image", {"prompt": "in a group"}, context=PRIVATE_CHANNEL, channel_id=group),
        await world.discord.invoke_slash("image", {"prompt": "in the DM"}, context=BOT_DM),
    ]

    def answered(it: Interaction) -> bool:
        return bool(world.private_replies(it)) or bool(it.original and "Queued" in it.original["content"])

    await world.discord.wait_for(lambda: all(answered(it) for it in sent))
    refused = [world.private_replies(it) for it in sent if world.private_replies(it)]
    assert (
        refused
        == [
            [
                "You already have 1 job(s) waiting or running; the limit is 1. Please wait for one to finish, "
                "or cancel one with /cancel."
            ]
        ]
        * 2
    )
    await asyncio.sleep(0.2)
    world.comfy.resume()
    [running] = [it for it in sent if not world.private_replies(it)]
    await finished(world, running)
    assert len(world.prompts()) == 1


async def stored_state(world: World, user_id: int) -> tuple[str, str | None] | None:
    """The state and recorded reason of the member's one job."""
    _, [record] = await world.bot.store.jobs_of(user_id, limit=1)
    return (record.state, record.error) if record.state in ("done", "failed", "cancelled") else None


async def test_a_job_that_outlives_the_token_in_a_group_dm_is_stopped_and_says_why(
    start: Start, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("discord_ui.status.TOKEN_LIFETIME", 0.3)  # the bot's margin before the token's 0.6 s
    world, group = await with_user_install(start, token_ttl=0.6)
    world.comfy.node_delay = 0.3  # the job would take about two seconds
    it = await world.discord.invoke_slash("image", {"prompt": "a slow cat"}, context=PRIVATE_CHANNEL, channel_id=group)
    cut_off = (
        "This job was stopped: Discord lets the bot answer here for 15 minutes only. Run long jobs in a server with "
        "the bot or in a DM with the bot."
    )
    await world.discord.wait_for(lambda: it.original is not None and it.original["content"].endswith(cut_off))
    user_id = int(it.user["id"])
    for _ in range(100):
        if await stored_state(world, user_id) is not None:
            break
        await asyncio.sleep(0.05)

    assert await stored_state(world, user_id) == ("cancelled", cut_off)  # through the engine, with the reason
    [prompt_id] = [p["prompt_id"] for p in world.prompts()]
    stops = [r for r in world.comfy.requests if r.path.endswith("/cancel") or r.path == "/interrupt"]
    assert [r.path if r.path == "/interrupt" else "cancel" for r in stops] in (["/interrupt"], ["cancel"])
    assert prompt_id in stops[0].path or stops[0].json == {"prompt_id": prompt_id}  # this job, no other
    assert not [r for r in world.comfy.requests if r.path == "/view"]  # no result fetched only to be thrown away
    assert it.original is not None
    assert it.original["content"] == f"**/image** for <@{user_id}>\n{cut_off}"  # the last word: nothing replaced it
    assert it.original["components"] == []  # nothing left to cancel
    assert bot_token_requests(world, group) == []  # the bot's own token was never tried where it cannot reach
    assert [r.status for r in it.requests if r.status == 401] == []  # nor the dead interaction token
    assert any("cancelling it" in r.getMessage() for r in caplog.records)


async def test_a_job_still_waiting_at_the_cut_off_in_a_group_dm_leaves_the_queue(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("discord_ui.status.TOKEN_LIFETIME", 0.3)
    world, group = await with_user_install(start, token_ttl=0.6)
    world.comfy.pause()
    it = await world.discord.invoke_slash("image", {"prompt": "a slow cat"}, context=PRIVATE_CHANNEL, channel_id=group)
    await world.discord.wait_for(lambda: it.original is not None and "15 minutes only" in it.original["content"])
    user_id = int(it.user["id"])
    for _ in range(100):
        if await stored_state(world, user_id) is not None:
            break
        await asyncio.sleep(0.05)
    state = await stored_state(world, user_id)
    assert state is not None and state[0] == "cancelled"
    world.comfy.resume()
    await asyncio.sleep(0.3)
    assert not [r for r in world.comfy.requests if r.path == "/view"]  # it never ran
    assert bot_token_requests(world, group) == []


async def test_delete_removes_a_result_in_a_group_dm_through_the_click(start: Start) -> None:
    world, group = await with_user_install(start)
    it = await world.discord.invoke_slash("image", {"prompt": "a dog"}, context=PRIVATE_CHANNEL, channel_id=group)
    result = await finished(world, it)
    delete = next(c["custom_id"] for row in result["components"] for c in row["components"] if c["label"] == "Delete")
    click = await world.discord.click(int(result["id"]), delete)
    await world.discord.wait_for(lambda: bool(world.private_replies(click)))
    assert world.private_replies(click) == ["Deleted."]
    assert int(result["id"]) not in world.discord.messages
    assert bot_token_requests(world, group) == []  # through the click's token, the only one that reaches there

"""A community testing the limits: many commands, form submissions and Re-roll clicks sent at once.

The real discord.py client runs against the fake Discord and the fake ComfyUI; what ran is counted at the
fake ComfyUI's POST /prompt, and every refused interaction must have been answered with its reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e_world import Start, World, finished
from tests.fakes.discord_fake import Interaction

pytestmark = [pytest.mark.e2e, pytest.mark.abuse]

PENDING_REFUSAL = (
    "You already have 2 job(s) waiting or running; the limit is 2. Please wait for one to finish, "
    "or cancel one with /cancel."
)
DEFERRED = 5  # the interaction callback type of an accepted job (its status message follows)


async def answered(world: World, interactions: list[Interaction]) -> tuple[list[Interaction], list[str]]:
    """Wait until every interaction has its first answer; return the accepted ones and the refusals."""
    await world.discord.wait_for(lambda: all(it.acknowledged for it in interactions), timeout=15)
    accepted = [it for it in interactions if it.callback is not None and it.callback.json["type"] == DEFERRED]
    refusals = [reply for it in interactions if it not in accepted for reply in world.private_replies(it)]
    assert len(accepted) + len(refusals) == len(interactions)  # each refused one got exactly one private answer
    return accepted, refusals


def reroll_button(message: dict[str, Any]) -> str:
    [custom_id] = [
        c["custom_id"] for row in message["components"] for c in row["components"] if c["label"] == "Re-roll"
    ]
    return str(custom_id)


async def all_delivered(world: World, accepted: list[Interaction]) -> None:
    world.comfy.resume()
    for it in accepted:
        await finished(world, it, timeout=15)
    await world.discord.wait_for(lambda: not world.bot.active_jobs)  # every place was given back


async def test_twenty_concurrent_commands_from_one_member_run_exactly_two(start: Start) -> None:
    world = await start(settings_env={"MAX_PENDING_PER_MEMBER": "2"})
    world.comfy.pause()
    member = world.discord.make_user(name="eager")
    commands = [await world.discord.invoke_slash("image", {"prompt": f"cat {n}"}, user=member) for n in range(20)]
    accepted, refusals = await answered(world, commands)
    await world.discord.wait_for(lambda: len(world.prompts()) == 2)
    assert len(accepted) == 2
    assert refusals == [PENDING_REFUSAL] * 18
    await all_delivered(world, accepted)
    assert len(world.prompts()) == 2


async def test_twenty_concurrent_rerolls_from_one_member_run_exactly_two(start: Start) -> None:
    world = await start(settings_env={"MAX_PENDING_PER_MEMBER": "2"})
    member = world.discord.make_user(name="eager")
    first = await world.discord.invoke_slash("image", {"prompt": "reroll cat"}, user=member)
    message = await finished(world, first)
    await world.discord.wait_for(lambda: not world.bot.active_jobs)  # the first job no longer counts
    world.comfy.pause()
    button = reroll_button(message)
    clicks = [await world.discord.click(int(message["id"]), button, user=member) for _ in range(20)]
    accepted, refusals = await answered(world, clicks)
    await world.discord.wait_for(lambda: len(world.prompts()) == 3)
    assert len(accepted) == 2
    assert refusals == [PENDING_REFUSAL] * 18
    await all_delivered(world, accepted)
    assert [p["prompt"]["6"]["inputs"]["text"] for p in world.prompts()] == ["reroll cat"] * 3


async def test_forms_submitted_together_are_counted_when_the_jobs_start(start: Start) -> None:
    world = await start(settings_env={"MAX_PENDING_PER_MEMBER": "2"})
    world.comfy.pause()
    member = world.discord.make_user(name="singer")
    forms = [await world.discord.invoke_slash("music", {"tags": "lofi"}, user=member) for _ in range(3)]
    await world.discord.wait_for(lambda: all(it.modal is not None for it in forms))  # an open form holds no place
    submissions = [await world.discord.submit_modal(it, {"lyrics": "[verse]\nla la"}, user=member) for it in forms]
    accepted, refusals = await answered(world, submissions)
    await world.discord.wait_for(lambda: len(world.prompts()) == 2)
    assert len(accepted) == 2
    assert refusals == [PENDING_REFUSAL]
    await all_delivered(world, accepted)
    assert len(world.prompts()) == 2


async def test_cooldown_lets_the_first_of_twenty_commands_through(start: Start) -> None:
    world = await start(settings_env={"COOLDOWN_SECONDS": "60", "MAX_PENDING_PER_MEMBER": "5"})
    member = world.discord.make_user(name="eager")
    commands = [await world.discord.invoke_slash("image", {"prompt": f"cat {n}"}, user=member) for n in range(20)]
    accepted, refusals = await answered(world, commands)
    assert len(accepted) == 1
    assert refusals == ["Please wait 60 more second(s) before starting another job."] * 19
    await all_delivered(world, accepted)
    assert len(world.prompts()) == 1


async def test_a_full_queue_refuses_further_members_with_a_clear_message(start: Start) -> None:
    world = await start(settings_env={"MAX_JOBS_PER_SERVER": "1", "MAX_QUEUED_JOBS": "2"})
    world.comfy.pause()
    running = await world.discord.invoke_slash("image", {"prompt": "running cat"})
    await world.discord.wait_for(lambda: len(world.prompts()) == 1)  # it holds the only slot
    members = [world.discord.make_user(name=f"member{n}") for n in range(5)]
    commands = [
        await world.discord.invoke_slash("image", {"prompt": f"cat {n}"}, user=member)
        for n, member in enumerate(members)
    ]
    accepted, refusals = await answered(world, commands)
    assert len(accepted) == 2
    assert (
        refusals
        == ["The bot's queue is full (2 job(s) waiting for a ComfyUI server). Please try again in a few minutes."] * 3
    )
    await world.discord.wait_for(lambda: len(world.bot.engine.queue) == 2)
    await all_delivered(world, [running, *accepted])
    assert len(world.prompts()) == 3


async def test_jobs_recovered_after_a_restart_count_towards_the_members_limit(start: Start) -> None:
    world = await start(settings_env={"MAX_PENDING_PER_MEMBER": "2"})
    world.comfy.pause()
    member = world.discord.make_user(name="patient")
    for text in ("one", "two"):
        await world.discord.invoke_slash("image", {"prompt": text}, user=member)
    await world.discord.wait_for(lambda: len(world.prompts()) == 2)
    await world.restart_bot()
    await world.discord.wait_for(lambda: len(world.bot.active_jobs) == 2)  # picked up again
    third = await world.discord.invoke_slash("image", {"prompt": "three"}, user=member)
    _, refusals = await answered(world, [third])
    assert refusals == [PENDING_REFUSAL]
    world.comfy.resume()
    await world.discord.wait_for(lambda: not world.bot.active_jobs, timeout=15)
    assert len(world.prompts()) == 2

"""The 15-minute cut-off of a job where only the interaction reaches (a group DM): one clock, and the job stopped."""

from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from core.errors import ExecutionFailed, InvalidInput
from core.jobs.engine import BEING_SUBMITTED, CANCELLING_ALREADY
from discord_ui.status import CUT_OFF, JobMessage, StatusScheduler

OUT_OF_MEMORY = "KSampler ran out of memory."


class GroupDmInteraction:
    """Just what a JobMessage uses of an interaction from a group DM, where the bot's own token cannot post."""

    def __init__(self, *, answer_takes: float = 0.0) -> None:
        self.created_at = discord.utils.utcnow()
        self.answer_takes = answer_takes  # a slow moment of Discord's: the defer is answered this much later
        self.id, self.user, self.locale = 1, SimpleNamespace(id=42, mention="<@42>"), discord.Locale.american_english
        self.command, self.channel = None, None
        self.context = SimpleNamespace(dm_channel=False)
        self.response = SimpleNamespace(
            defer=self._defer,
            is_done=lambda: True,
            type=discord.InteractionResponseType.deferred_channel_message,
        )
        self.followup = SimpleNamespace(send=self._followup)
        self.said: list[str] = []  # the content of every edit and followup, in order

    def is_guild_integration(self) -> bool:
        return False

    def is_expired(self) -> bool:
        return False

    async def _defer(self, **_: Any) -> SimpleNamespace:
        await asyncio.sleep(self.answer_takes)
        return SimpleNamespace(message_id=5)

    async def edit_original_response(self, **fields: Any) -> None:
        self.said.append(fields.get("content") or "")

    async def _followup(self, content: str | None = None, **_: Any) -> SimpleNamespace:
        self.said.append(content or "")
        return SimpleNamespace(id=6)


class Cancels:
    """The engine's cancel: refuses with `refusals` first, then stops the job."""

    def __init__(self, *refusals: str) -> None:
        self.refusals = list(refusals)
        self.calls: list[str] = []

    async def __call__(self, job_id: str) -> None:
        self.calls.append(job_id)
        if self.refusals:
            raise InvalidInput(self.refusals.pop(0))


async def test_a_failure_after_a_slow_first_answer_is_not_lost_between_two_clocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The token's life counts from the interaction: an answer 0.2 s late must not move the cut-off 0.2 s later,
    # else a failure in between finds the token given up, and nobody said so.
    monkeypatch.setattr("discord_ui.status.TOKEN_LIFETIME", 0.3)
    interaction = GroupDmInteraction(answer_takes=0.2)
    cancel = Cancels()
    message = JobMessage(interaction, "image", StatusScheduler(), cancel=cancel)  # type: ignore[arg-type]
    await message.open()
    message.attach("job-1")
    await asyncio.sleep(0.35 - (discord.utils.utcnow() - interaction.created_at).total_seconds())
    await message.fail(ExecutionFailed(OUT_OF_MEMORY))

    assert interaction.said == [f"**/image** for <@42>\n{CUT_OFF}"]  # the member knows the job ended, and why
    assert cancel.calls == ["job-1"]


async def test_a_failure_before_the_cut_off_is_told_through_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("discord_ui.status.TOKEN_LIFETIME", 0.3)
    interaction = GroupDmInteraction()
    interaction.created_at -= dt.timedelta(seconds=0.2)
    cancel = Cancels()
    message = JobMessage(interaction, "image", StatusScheduler(), cancel=cancel)  # type: ignore[arg-type]
    await message.open()
    message.attach("job-1")
    await message.fail(ExecutionFailed(OUT_OF_MEMORY))
    await asyncio.sleep(0.2)  # past the cut-off: the job's end stopped its timer

    assert interaction.said[-1] == OUT_OF_MEMORY
    assert not [said for said in interaction.said if CUT_OFF in said]
    assert cancel.calls == []


async def test_the_cut_off_cancels_again_while_the_job_moves_to_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("discord_ui.status.TOKEN_LIFETIME", 0.0)
    monkeypatch.setattr("discord_ui.status.CANCEL_RETRY", 0.01)
    cancel = Cancels(BEING_SUBMITTED, BEING_SUBMITTED)
    message = JobMessage(GroupDmInteraction(), "image", StatusScheduler(), cancel=cancel)  # type: ignore[arg-type]
    await message.open()
    message.attach("job-1")
    for _ in range(100):
        if len(cancel.calls) == 3:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert cancel.calls == ["job-1"] * 3  # refused twice, then stopped; no more after that


async def test_the_cut_off_leaves_a_job_its_member_is_cancelling_already(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("discord_ui.status.TOKEN_LIFETIME", 0.0)
    monkeypatch.setattr("discord_ui.status.CANCEL_RETRY", 0.01)
    cancel = Cancels(CANCELLING_ALREADY)
    message = JobMessage(GroupDmInteraction(), "image", StatusScheduler(), cancel=cancel)  # type: ignore[arg-type]
    await message.open()
    message.attach("job-1")
    await asyncio.sleep(0.1)
    assert cancel.calls == ["job-1"]


async def test_a_job_that_ends_stops_the_cut_offs_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("discord_ui.status.TOKEN_LIFETIME", 0.0)
    monkeypatch.setattr("discord_ui.status.CANCEL_RETRY", 0.01)
    cancel = Cancels(*[BEING_SUBMITTED] * 1000)
    message = JobMessage(GroupDmInteraction(), "image", StatusScheduler(), cancel=cancel)  # type: ignore[arg-type]
    await message.open()
    message.attach("job-1")
    await asyncio.sleep(0.05)
    await message.stop()
    tried = len(cancel.calls)
    await asyncio.sleep(0.05)
    assert 1 <= tried == len(cancel.calls)

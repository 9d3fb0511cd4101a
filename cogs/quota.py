"""/quota (what a member used of the day's quota, and when it resets), and the quota check before a job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.access import is_admin, is_admin_member
from core.community.quotas import (
    QUOTA_EXEMPT,
    QUOTA_GPU,
    QUOTA_GPU_UNLIMITED,
    QUOTA_JOBS,
    QUOTA_JOBS_UNLIMITED,
    QUOTA_RESETS,
    QUOTA_TITLE_OTHER,
    QUOTA_TITLE_OWN,
    QuotaBook,
    QuotaExceeded,
    QuotaHold,
    QuotaView,
)
from core.errors import InvalidInput
from core.i18n import Lines, Text
from discord_ui.messages import respond

if TYPE_CHECKING:
    from bot import ComfyBot

OTHER_MEMBER_REFUSED = Text("Only admins can look at another member's quota.")


def role_ids(user: discord.User | discord.Member) -> list[int]:
    """The ids of the member's roles (none outside a server)."""
    return [role.id for role in user.roles] if isinstance(user, discord.Member) else []


async def _exempt(interaction: discord.Interaction[Any], quotas: QuotaBook) -> bool:
    """Tell whether the member is an admin and admins are not held to the quota."""
    return quotas.rules.admins_exempt and await is_admin(interaction)


async def check_quota(interaction: discord.Interaction[Any], quotas: QuotaBook) -> None:
    """Refuse with QuotaExceeded when the member has used up a daily quota (admins pass unless configured)."""
    try:
        quotas.check(interaction.user.id, role_ids(interaction.user))
    except QuotaExceeded:
        if not await _exempt(interaction, quotas):
            raise


async def hold_quota(interaction: discord.Interaction[Any], quotas: QuotaBook, job_id: str) -> QuotaHold:
    """Take the job's place in the member's count of the day; nothing is awaited unless the quota is used up."""
    user = interaction.user
    try:
        return quotas.reserve(user.id, role_ids(user), job_id)
    except QuotaExceeded:
        if not await _exempt(interaction, quotas):
            raise
        # An admin is counted too, never refused
        return quotas.reserve(user.id, role_ids(user), job_id, exempt=True)


def describe(view: QuotaView, member_id: int | None) -> str:
    """The /quota answer; `member_id` names the member when it is someone else's quota."""
    used, allowance = view.used, view.allowance
    seconds = round(used.gpu_seconds)
    lines = [QUOTA_TITLE_OWN if member_id is None else QUOTA_TITLE_OTHER.format(member=member_id)]
    if allowance.jobs_per_day and not view.exempt:
        left = max(0, allowance.jobs_per_day - used.jobs)
        lines.append(QUOTA_JOBS.format(used=used.jobs, limit=allowance.jobs_per_day, left=left))
    else:
        lines.append(QUOTA_JOBS_UNLIMITED.format(used=used.jobs))
    if allowance.gpu_seconds_per_day and not view.exempt:
        left = max(0, allowance.gpu_seconds_per_day - seconds)
        lines.append(QUOTA_GPU.format(used=seconds, limit=allowance.gpu_seconds_per_day, left=left))
    else:
        lines.append(QUOTA_GPU_UNLIMITED.format(used=seconds))
    if view.exempt:
        lines.append(QUOTA_EXEMPT)
    lines.append(QUOTA_RESETS.format(reset=int(view.resets_at)))
    return Lines(lines)


class Quota(commands.Cog):
    """Shows members their daily quota."""

    def __init__(self, bot: ComfyBot) -> None:
        self.bot = bot

    @app_commands.command(name="quota", description="Show how much of your daily quota is used and left")
    @app_commands.describe(member="Admins only: whose quota to show")
    async def quota(self, interaction: discord.Interaction[Any], member: discord.Member | None = None) -> None:
        admin = await is_admin(interaction)
        if member is not None and member.id != interaction.user.id:
            if not admin:
                raise InvalidInput(OTHER_MEMBER_REFUSED)
            view = self.bot.quotas.view(member.id, role_ids(member), admin=await is_admin_member(self.bot, member))
            await respond(interaction, describe(view, member.id))
            return
        view = self.bot.quotas.view(interaction.user.id, role_ids(interaction.user), admin=admin)
        await respond(interaction, describe(view, None))


async def setup(bot: ComfyBot) -> None:
    await bot.add_cog(Quota(bot))

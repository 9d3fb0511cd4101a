"""Who may do what: admins (the bot's owner, ADMIN_ROLE_ID, community.toml's admin_roles) and the access rules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import discord
from discord import app_commands

from core.community.access import refusal
from core.i18n import Text
from core.workflows import Workflow

if TYPE_CHECKING:
    from bot import ComfyBot


T = TypeVar("T")

ADMINS_ONLY = Text("Only the bot's owner and members with the admin role can use /{command}.")


class NotAdmin(app_commands.CheckFailure):
    """The member is neither the bot's owner nor holds an admin role."""

    def __init__(self, command: str) -> None:
        super().__init__(ADMINS_ONLY.format(command=command))


def servers_only(command: T) -> T:
    """Offer an admin command only in the servers the app is installed to: never in DMs or through a member's install.

    Explicitly off, not only left out: the bot's tree offers every other command everywhere (see bot.py).
    """
    command = app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)(command)
    return app_commands.allowed_installs(guilds=True, users=False)(command)


async def is_admin(interaction: discord.Interaction[Any]) -> bool:
    """True for the bot's owner and for members holding ADMIN_ROLE_ID or one of community.toml's admin_roles."""
    return await is_admin_member(interaction.client, interaction.user)  # type: ignore[arg-type]


async def is_admin_member(bot: ComfyBot, user: discord.User | discord.Member) -> bool:
    """`is_admin` for any member (the one a command is about, not only the one who typed it)."""
    if await bot.is_owner(user):
        return True
    admin_roles = set(bot.access.rules.admin_roles)
    if bot.settings.admin_role_id:
        admin_roles.add(bot.settings.admin_role_id)
    return isinstance(user, discord.Member) and any(r.id in admin_roles for r in user.roles)


async def admin_only(interaction: discord.Interaction[Any]) -> bool:
    """An app_commands check: admins pass, everyone else gets NotAdmin."""
    if await is_admin(interaction):
        return True
    raise NotAdmin(interaction.command.qualified_name if interaction.command else "this command")


async def access_refusal(bot: ComfyBot, interaction: discord.Interaction[Any], workflow: Workflow) -> str | None:
    """Why this member may not use `workflow`'s command here, or None; admins are never refused."""
    user = interaction.user
    roles = [r.id for r in user.roles] if isinstance(user, discord.Member) else None
    channel = interaction.channel
    parent = channel.parent_id if isinstance(channel, discord.Thread) else None
    reason = refusal(
        bot.access.rules,
        user_id=user.id,
        role_ids=roles,
        channel_id=interaction.channel_id,
        parent_channel_id=parent,
        command=workflow.name,
        binding=workflow.access,
    )
    if reason is not None and await is_admin(interaction):  # only asked when refused: it may cost a request
        return None
    return reason


async def may_use(interaction: discord.Interaction[Any], workflow: Workflow) -> bool:
    """Whether this member may use `workflow`'s command where the interaction comes from (for /help)."""
    return await access_refusal(interaction.client, interaction, workflow) is None  # type: ignore[arg-type]

"""Who may do what: the bot's owner and members with ADMIN_ROLE_ID are admins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

if TYPE_CHECKING:
    from bot import ComfyBot


class NotAdmin(app_commands.CheckFailure):
    """The member is neither the bot's owner nor holds the configured admin role."""

    def __init__(self, command: str) -> None:
        super().__init__(f"Only the bot's owner and members with the admin role can use /{command}.")


async def is_admin(interaction: discord.Interaction[Any]) -> bool:
    """True for the bot's owner and for members holding ADMIN_ROLE_ID."""
    bot: ComfyBot = interaction.client  # type: ignore[assignment]
    if await bot.is_owner(interaction.user):
        return True
    role_id = bot.settings.admin_role_id
    return bool(role_id and isinstance(interaction.user, discord.Member) and interaction.user.get_role(role_id))


async def admin_only(interaction: discord.Interaction[Any]) -> bool:
    """An app_commands check: admins pass, everyone else gets NotAdmin."""
    if await is_admin(interaction):
        return True
    raise NotAdmin(interaction.command.name if interaction.command else "this command")

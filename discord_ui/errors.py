"""The one error funnel: every failure of a command, form or button reaches the member privately."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import discord
from discord import app_commands

from core.errors import BotError
from core.i18n import Lines, Text
from discord_ui.messages import NOT_HERE, UNEXPECTED, command_name, is_unknown_interaction, send_private

log = logging.getLogger(__name__)

# discord.py's own words for these are meant for the bot's developer
OUT_OF_DATE = Text("This command changed since Discord last showed it to you. Please try again in a minute.")


async def report_error(interaction: discord.Interaction[Any], error: Exception, *, command: str | None = None) -> None:
    """Explain `error` to the member who caused it; `command` names the command of a form or button."""
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    name = command_name(interaction, command)
    if is_unknown_interaction(original):
        # Discord gave up on the interaction before the bot answered (a slow moment): nobody can be told
        # through it, and it is not the member's fault or a bug worth a traceback.
        log.warning("/%s: interaction %s expired before the bot's first answer", name, interaction.id)
        return
    if isinstance(original, BotError):
        first_line = original.user_message.splitlines()[0] if original.user_message else ""
        log.info("/%s failed for %s: %s | %s", name, interaction.user.id, first_line, original.detail or "")
        message = original.user_message
    elif isinstance(original, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        # A member's client still shows a command as it was before a /reload or a restart changed it
        log.info("/%s: %s", name, original)
        message = OUT_OF_DATE
    elif isinstance(original, app_commands.AppCommandError) and not isinstance(
        original, app_commands.CommandInvokeError
    ):
        # A check of the bot's (NotAdmin) says why as a Text, which str() would turn into plain English.
        said = original.args[0] if original.args else None
        message = said if isinstance(said, Text | Lines) else str(original) or NOT_HERE
    else:
        ref = secrets.token_hex(3)
        log.error("unexpected error in /%s (ref %s)", name, ref, exc_info=original)
        message = UNEXPECTED.format(ref=ref)
    await send_private(interaction, message, command=command)


class BotTree(app_commands.CommandTree):
    """The command tree whose errors all go through `report_error`."""

    async def on_error(self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        await report_error(interaction, error)

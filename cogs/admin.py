"""Admin commands: /reload (re-read and re-check workflows, re-sync commands), /workflows and /servers (what exists)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.access import admin_only, servers_only
from core.i18n import Lines, Text, localize
from core.jobs.server_view import servers_report
from core.workflows import Param, ParamType, Workflow
from core.workflows.model import num_text
from discord_ui.messages import MAX_CONTENT, NOTHING, cap, followup

if TYPE_CHECKING:
    from bot import ComfyBot

# What /workflows says (each is translated in locales/*.po)
NO_WORKFLOWS = Text("No workflow commands are active.")
SKIPPED = Text("Skipped: {problem}")
NOTE = Text("Note: {note}")
WORKFLOW_TITLE = Text("**/{command}** ({file}, {binding}): {description}")
DETECTED = Text("options detected automatically")
PARAM_LINE = Text("`{name}` ({facts}) → {targets}")
REQUIRED = Text("required")
DEFAULT = Text("default {value}")
RANDOM = Text("random")
RANGE = Text("{low}–{high}")
RANGE_STEP = Text("{low}–{high} step {step}")
MAX_CHARS = Text("≤ {count} chars")
ONE_OF = Text("one of {choices}")
ONE_OF_MORE = Text("one of {choices} …")
CHOICES_FROM = Text("choices from the server's {source}")


class Admin(commands.Cog):
    """Commands for whoever runs the bot."""

    def __init__(self, bot: ComfyBot) -> None:
        self.bot = bot

    @app_commands.command(name="reload", description="Re-read the workflows folder, check it and update the commands")
    @app_commands.default_permissions(manage_guild=True)
    @servers_only
    @app_commands.check(admin_only)
    async def reload(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await self.bot.reload_workflows()
        await send_chunks(interaction, report)

    @app_commands.command(name="workflows", description="List the workflow commands and their options")
    @app_commands.default_permissions(manage_guild=True)
    @servers_only
    @app_commands.check(admin_only)
    async def workflows(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        catalog = self.bot.catalog
        blocks: list[str] = [describe_workflow(w) for w in catalog.workflows.values()] or [NO_WORKFLOWS]
        blocks += [SKIPPED.format(problem=p) for p in catalog.problems]
        blocks += [NOTE.format(note=n) for n in catalog.notes]
        await send_chunks(interaction, Lines(blocks, "\n\n"))

    @app_commands.command(name="servers", description="Show each ComfyUI server's state, load and what it can run")
    @app_commands.default_permissions(manage_guild=True)
    @servers_only
    @app_commands.check(admin_only)
    async def servers(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        lines = servers_report(self.bot.engine)
        # Escaped once in the member's language: escaping a sentence of the bot first would drop its translation.
        await send_chunks(interaction, "\n".join(_escaped(localize(line, interaction.locale)) for line in lines))


def describe_workflow(workflow: Workflow) -> str:
    """One command as the listing shows it: name, files, and each option with its limits and targets."""
    binding = workflow.binding.name if workflow.binding else DETECTED
    title = WORKFLOW_TITLE.format(
        command=workflow.name, file=workflow.source.name, binding=binding, description=workflow.description
    )
    # Each option on a line of its own, behind a bullet
    return Lines([title, *(describe_param(workflow, p) for p in workflow.params)], "\n• ")


def describe_param(workflow: Workflow, param: Param) -> str:
    """One option as the listing shows it: its type, default, limits, choices and where it goes."""
    default = REQUIRED if param.required else DEFAULT.format(value=_default(workflow, param))
    facts: list[str] = [param.type.value, default]
    if param.min is not None or param.max is not None:
        low, high = num_text(param.min, "…"), num_text(param.max, "…")
        step = num_text(param.step) if param.step else None
        facts.append(RANGE_STEP.format(low=low, high=high, step=step) if step else RANGE.format(low=low, high=high))
    if param.max_length and param.type in (ParamType.TEXT, ParamType.MULTILINE):
        facts.append(MAX_CHARS.format(count=param.max_length))
    if param.choices:
        choices = ", ".join(param.choices[:10])
        facts.append((ONE_OF_MORE if len(param.choices) > 10 else ONE_OF).format(choices=choices))
    if param.choices_from:
        facts.append(CHOICES_FROM.format(source=param.choices_from))
    targets = ", ".join(str(t) for t in param.targets)
    return PARAM_LINE.format(name=param.name, facts=Lines(facts, "; "), targets=targets)


def _default(workflow: Workflow, param: Param) -> str:
    if param.type is ParamType.SEED and param.default is None:
        return RANDOM
    value = param.default if param.default is not None else workflow.current_value(param)
    text = cap(str(value).replace("\n", " / "), 40)
    return repr(text) if isinstance(value, str) else text


def _escaped(line: str) -> str:
    """A plain line as Discord shows it literally: markdown escaped, its indentation kept."""
    text = line.lstrip(" ")
    return line[: len(line) - len(text)] + discord.utils.escape_markdown(text)


async def send_chunks(interaction: discord.Interaction[Any], text: str) -> None:
    """Send a long private answer as several messages of at most 2000 characters, split at line breaks.

    The text is put in the member's language before it is split (a piece of a sentence has no translation).
    """
    chunks: list[str] = []
    for raw in localize(text, interaction.locale).splitlines():
        line = cap(raw)
        if chunks and len(chunks[-1]) + 1 + len(line) <= MAX_CONTENT:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line)
    for chunk in chunks or [NOTHING]:
        await followup(interaction, chunk, ephemeral=True)


async def setup(bot: ComfyBot) -> None:
    await bot.add_cog(Admin(bot))

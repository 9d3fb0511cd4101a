"""Admin commands: /reload (re-read and re-check workflows, re-sync commands), /workflows and /servers (what exists)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.access import admin_only
from core.jobs.server_view import servers_report
from core.workflows import Param, ParamType, Workflow
from core.workflows.model import num_text
from discord_ui.messages import MAX_CONTENT, NOTHING, cap, followup

if TYPE_CHECKING:
    from bot import ComfyBot


class Admin(commands.Cog):
    """Commands for whoever runs the bot."""

    def __init__(self, bot: ComfyBot) -> None:
        self.bot = bot

    @app_commands.command(name="reload", description="Re-read the workflows folder, check it and update the commands")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.check(admin_only)
    async def reload(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await self.bot.reload_workflows()
        await send_chunks(interaction, report)

    @app_commands.command(name="workflows", description="List the workflow commands and their options")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.check(admin_only)
    async def workflows(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        catalog = self.bot.catalog
        blocks = [describe_workflow(w) for w in catalog.workflows.values()] or ["No workflow commands are active."]
        blocks += [f"Skipped: {p}" for p in catalog.problems]
        blocks += [f"Note: {n}" for n in catalog.notes]
        await send_chunks(interaction, "\n\n".join(blocks))

    @app_commands.command(name="servers", description="Show each ComfyUI server's state, load and what it can run")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.check(admin_only)
    async def servers(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        lines = servers_report(self.bot.engine)
        await send_chunks(interaction, "\n".join(_escaped(line) for line in lines))


def describe_workflow(workflow: Workflow) -> str:
    """One command as the listing shows it: name, files, and each option with its limits and targets."""
    binding = workflow.binding.name if workflow.binding else "options detected automatically"
    lines = [f"**/{workflow.name}** ({workflow.source.name}, {binding}): {workflow.description}"]
    lines += [f"• {describe_param(workflow, p)}" for p in workflow.params]
    return "\n".join(lines)


def describe_param(workflow: Workflow, param: Param) -> str:
    facts = [param.type.value, "required" if param.required else f"default {_default(workflow, param)}"]
    if param.min is not None or param.max is not None:
        low, high = num_text(param.min, "…"), num_text(param.max, "…")
        facts.append(f"{low}–{high}" + (f" step {num_text(param.step)}" if param.step else ""))
    if param.max_length and param.type in (ParamType.TEXT, ParamType.MULTILINE):
        facts.append(f"≤ {param.max_length} chars")
    if param.choices:
        facts.append("one of " + ", ".join(param.choices[:10]) + (" …" if len(param.choices) > 10 else ""))
    if param.choices_from:
        facts.append(f"choices from the server's {param.choices_from}")
    targets = ", ".join(str(t) for t in param.targets)
    return f"`{param.name}` ({'; '.join(facts)}) → {targets}"


def _default(workflow: Workflow, param: Param) -> str:
    if param.type is ParamType.SEED and param.default is None:
        return "random"
    value = param.default if param.default is not None else workflow.current_value(param)
    text = cap(str(value).replace("\n", " / "), 40)
    return repr(text) if isinstance(value, str) else text


def _escaped(line: str) -> str:
    """A plain line as Discord shows it literally: markdown escaped, its indentation kept."""
    text = line.lstrip(" ")
    return line[: len(line) - len(text)] + discord.utils.escape_markdown(text)


async def send_chunks(interaction: discord.Interaction[Any], text: str) -> None:
    """Send a long private answer as several messages of at most 2000 characters, split at line breaks."""
    chunks: list[str] = []
    for raw in text.splitlines():
        line = cap(raw)
        if chunks and len(chunks[-1]) + 1 + len(line) <= MAX_CONTENT:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line)
    for chunk in chunks or [NOTHING]:
        await followup(interaction, chunk, ephemeral=True)


async def setup(bot: ComfyBot) -> None:
    await bot.add_cog(Admin(bot))

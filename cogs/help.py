"""/help: the commands a member may use here, each with its options; `/help command:` shows one in full."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.access import admin_only, is_admin, may_use
from cogs.admin import send_chunks
from core.errors import InvalidInput
from core.workflows import FILE_TYPES, Param, ParamType, Workflow
from core.workflows.model import num_text
from discord_ui.messages import cap, shown

if TYPE_CHECKING:
    from bot import ComfyBot

# Whether the member of an interaction may use a workflow's command where they are (the access rules decide).
Allowed = Callable[[discord.Interaction[Any], Workflow], Awaitable[bool]]

TITLE = "**Commands you can use here**"
OTHERS = "**Other commands**"
NONE_HERE = "No generating command is open to you here."
MORE = "`/help command:<name>` shows one in full, with an example."
NO_COMMAND = "There is no command /{name} you can use here. /help lists them."
PRESET_LINE = "• `preset` (one of your presets): options you give override it; `default` applies by itself"
EXAMPLE = "Example: `{example}`"
MAX_DESCRIPTION = 200  # a binding's description as shown
MAX_EXAMPLE_VALUE = 40
KINDS = {
    ParamType.TEXT: "text",
    ParamType.MULTILINE: "text of several lines",
    ParamType.INT: "whole number",
    ParamType.FLOAT: "number",
    ParamType.BOOL: "true or false",
    ParamType.SEED: "seed",
    ParamType.CHOICE: "choice",
    ParamType.IMAGE: "image file",
    ParamType.AUDIO: "audio file",
    ParamType.VIDEO: "video file",
}


class Help(commands.Cog):
    """Tells a member what they can run here and how."""

    def __init__(self, bot: ComfyBot, allowed: Allowed = may_use) -> None:
        self.bot = bot
        self.allowed = allowed  # the access rules (cogs.access)

    async def usable(self, interaction: discord.Interaction[Any]) -> list[Workflow]:
        """The workflow commands the member may use where they are."""
        return [w for w in self.bot.catalog.workflows.values() if await self.allowed(interaction, w)]

    @app_commands.command(name="help", description="List the commands you can use here, or show one in full")
    @app_commands.describe(command="A command to show in full, with an example")
    async def help(self, interaction: discord.Interaction[Any], command: str | None = None) -> None:
        usable = await self.usable(interaction)
        if command is None:
            text = "\n".join([*overview(usable), *await self.others(interaction), MORE])
        else:
            name = command.strip().lstrip("/")
            workflow = next((w for w in usable if w.name == name), None)
            if workflow is None:
                raise InvalidInput(NO_COMMAND.format(name=shown(name, 40)))
            text = in_full(workflow, with_preset=self.takes_preset(workflow))
        await interaction.response.defer(ephemeral=True, thinking=True)
        await send_chunks(interaction, text)

    @help.autocomplete("command")
    async def _complete(self, interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
        names = [w.name for w in await self.usable(interaction) if current.lower().lstrip("/") in w.name]
        return [app_commands.Choice(name=f"/{n}", value=n) for n in names][:25]

    async def others(self, interaction: discord.Interaction[Any]) -> list[str]:
        """The bot's own commands (admin ones for admins only), one line each."""
        admin = await is_admin(interaction)
        workflows = self.bot.catalog.workflows
        lines = [
            f"/{c.name} — {c.description}"
            for c in self.bot.tree.get_commands()
            if not isinstance(c, app_commands.ContextMenu)
            and c.name not in workflows
            and (admin or admin_only not in getattr(c, "checks", ()))
        ]
        return [OTHERS, *lines] if lines else []

    def takes_preset(self, workflow: Workflow) -> bool:
        """Whether the command got the preset option (a workflow's own `preset` option takes precedence)."""
        command = self.bot.tree.get_command(workflow.name)
        return (
            isinstance(command, app_commands.Command)
            and workflow.param("preset") is None
            and any(p.display_name == "preset" for p in command.parameters)
        )


def overview(workflows: list[Workflow]) -> list[str]:
    """Each command with its description and the names of its options."""
    if not workflows:
        return [NONE_HERE]
    lines = [TITLE]
    for workflow in workflows:
        options = ", ".join(p.name + (" (required)" if p.required else "") for p in workflow.params)
        lines.append(f"**/{workflow.name}** — {shown(workflow.description, MAX_DESCRIPTION)}")
        lines.append(f"  options: {shown(options, MAX_DESCRIPTION)}" if options else "  no options")
    return lines


def in_full(workflow: Workflow, *, with_preset: bool) -> str:
    """One command: its description, every option with its kind, limits and default, and an example."""
    lines = [f"**/{workflow.name}** — {shown(workflow.description, MAX_DESCRIPTION)}"]
    lines += [f"• {describe(workflow, p)}" for p in workflow.params]
    if with_preset:
        lines.append(PRESET_LINE)
    lines.append(EXAMPLE.format(example=example(workflow)))
    return "\n".join(lines)


def describe(workflow: Workflow, param: Param) -> str:
    """An option as a member needs it: kind, limits, default, and the binding's description."""
    facts = [KINDS[param.type], "required" if param.required else f"default {_default(workflow, param)}"]
    if param.min is not None or param.max is not None:
        facts.append(f"{num_text(param.min, '…')} to {num_text(param.max, '…')}")
    if param.step:
        facts.append(f"in steps of {num_text(param.step)}")
    if param.max_length and param.type in (ParamType.TEXT, ParamType.MULTILINE):
        facts.append(f"up to {param.max_length} characters")
    if param.choices:
        facts.append("one of " + ", ".join(param.choices[:10]) + (" …" if len(param.choices) > 10 else ""))
    if param.choices_from:
        facts.append("from the server's list")
    if param.type is ParamType.MULTILINE:
        facts.append(f"or a .txt file as {param.name}_file, or typed in a form")
    return f"`{param.name}` ({shown('; '.join(facts), MAX_DESCRIPTION)}): {shown(param.description, MAX_DESCRIPTION)}"


def example(workflow: Workflow) -> str:
    """An invocation to copy: the required options with sample values (or the first option when none is)."""
    params = [p for p in workflow.params if p.required] or [
        p for p in workflow.params if p.type is not ParamType.SEED and p.type not in FILE_TYPES
    ][:1]
    words = [f"/{workflow.name}"] + [f"{p.name}:{_sample(workflow, p)}" for p in params]
    return " ".join(words).replace("`", "'")


def _sample(workflow: Workflow, param: Param) -> str:
    if param.type in FILE_TYPES:
        return f"(attach a {param.type.value} file)"
    if param.choices:
        return param.choices[0]
    value = param.default if param.default is not None else workflow.current_value(param)
    if value is None or value == "":
        value = num_text(param.min) if param.min is not None else "…"
    return cap(str(value).replace("\n", " "), MAX_EXAMPLE_VALUE)


def _default(workflow: Workflow, param: Param) -> str:
    if param.type is ParamType.SEED and param.default is None:
        return "random"
    if param.type in FILE_TYPES:
        return "the workflow's own file"
    value = param.default if param.default is not None else workflow.current_value(param)
    return cap(str(value).replace("\n", " "), MAX_EXAMPLE_VALUE)


async def setup(bot: ComfyBot) -> None:
    await bot.add_cog(Help(bot))

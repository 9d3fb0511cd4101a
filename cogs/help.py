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
from core.i18n import Lines, Text, localize
from core.workflows import FILE_TYPES, Param, ParamType, Workflow
from core.workflows.model import num_text
from discord_ui.messages import cap, shown
from discord_ui.translator import CATALOGUES, workflow_option

if TYPE_CHECKING:
    from bot import ComfyBot

# Whether the member of an interaction may use a workflow's command where they are (the access rules decide).
Allowed = Callable[[discord.Interaction[Any], Workflow], Awaitable[bool]]

TITLE = Text("**Commands you can use here**")
OTHERS = Text("**Other commands**")
NONE_HERE = Text("No generating command is open to you here.")
MORE = Text("`/help command:<name>` shows one in full, with an example.")
NO_COMMAND = Text("There is no command /{name} you can use here. /help lists them.")
COMMAND = Text("**/{command}** — {description}")
BUILT_IN = Text("/{command} — {description}")
OPTIONS = Text("  options: {options}")
NO_OPTIONS = Text("  no options")
REQUIRED_OPTION = Text("{name} (required)")
OPTION = Text("• `{name}` ({facts}): {description}")
PRESET_LINE = Text("• `{name}` (one of your presets): options you give override it; `default` applies by itself")
EXAMPLE = Text("Example: `{example}`")
# Joints of a list, so that each language punctuates it its own way
AND_THEN = Text("{before}, {after}")
FACT_THEN = Text("{before}; {after}")
# What /help command: says of an option
REQUIRED = Text("required")
DEFAULT = Text("default {value}")
RANDOM = Text("random")
OWN_FILE = Text("the workflow's own file")
RANGE = Text("{min} to {max}")
STEPS = Text("in steps of {step}")
UP_TO = Text("up to {count} characters")
ONE_OF = Text("one of {choices}")
FROM_SERVER = Text("from the server's list")
OR_FILE = Text("or a .txt file as `{name}`, or typed in a form")
MAX_DESCRIPTION = 200  # a binding's description as shown
MAX_EXAMPLE_VALUE = 40
KINDS = {
    ParamType.TEXT: Text("text"),
    ParamType.MULTILINE: Text("text of several lines"),
    ParamType.INT: Text("whole number"),
    ParamType.FLOAT: Text("number"),
    ParamType.BOOL: Text("true or false"),
    ParamType.SEED: Text("seed"),
    ParamType.CHOICE: Text("choice"),
    ParamType.IMAGE: Text("image file"),
    ParamType.AUDIO: Text("audio file"),
    ParamType.VIDEO: Text("video file"),
}
ATTACH = {  # a file option's value in an example
    ParamType.IMAGE: Text("(attach an image file)"),
    ParamType.AUDIO: Text("(attach an audio file)"),
    ParamType.VIDEO: Text("(attach a video file)"),
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
        usable, locale = await self.usable(interaction), interaction.locale
        if command is None:
            text = Lines([*overview(usable, locale), *await self.others(interaction), MORE])
        else:
            name = command.strip().lstrip("/")
            workflow = next((w for w in usable if w.name == name), None)
            if workflow is None:
                raise InvalidInput(NO_COMMAND.format(name=shown(name, 40)))
            text = in_full(workflow, locale, with_preset=self.takes_preset(workflow))
        await interaction.response.defer(ephemeral=True, thinking=True)
        # send_chunks splits lines: it gets the text already in the member's language
        await send_chunks(interaction, localize(text, locale))

    @help.autocomplete("command")
    async def _complete(self, interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
        names = [w.name for w in await self.usable(interaction) if current.lower().lstrip("/") in w.name]
        return [app_commands.Choice(name=f"/{n}", value=n) for n in names][:25]

    async def others(self, interaction: discord.Interaction[Any]) -> list[str]:
        """The bot's own commands (admin ones for admins only), one line each."""
        admin = await is_admin(interaction)
        workflows = self.bot.catalog.workflows
        lines = [
            BUILT_IN.format(command=c.name, description=built_in_description(c, interaction.locale))
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


def overview(workflows: list[Workflow], locale: object) -> list[str]:
    """Each command with its description and the names of its options."""
    if not workflows:
        return [NONE_HERE]
    lines: list[str] = [TITLE]
    for workflow in workflows:
        names = [(shown(option_name(workflow, p.name, locale)), p.required) for p in workflow.params]
        options = [REQUIRED_OPTION.format(name=name) if required else name for name, required in names]
        lines.append(COMMAND.format(command=workflow.name, description=workflow_description(workflow, locale)))
        lines.append(OPTIONS.format(options=joined(options, AND_THEN)) if options else NO_OPTIONS)
    return lines


def in_full(workflow: Workflow, locale: object, *, with_preset: bool) -> Lines:
    """One command: its description, every option with its kind, limits and default, and an example."""
    lines: list[str] = [COMMAND.format(command=workflow.name, description=workflow_description(workflow, locale))]
    lines += [describe(workflow, p, locale) for p in workflow.params]
    if with_preset:
        lines.append(PRESET_LINE.format(name=option_name(workflow, "preset", locale)))
    lines.append(EXAMPLE.format(example=example(workflow, locale)))
    return Lines(lines)


def describe(workflow: Workflow, param: Param, locale: object) -> Text:
    """An option as a member needs it: kind, limits, default, and the binding's description."""
    facts: list[str] = [
        KINDS[param.type],
        REQUIRED if param.required else DEFAULT.format(value=_default(workflow, param)),
    ]
    if param.min is not None or param.max is not None:
        facts.append(RANGE.format(min=num_text(param.min, "…"), max=num_text(param.max, "…")))
    if param.step:
        facts.append(STEPS.format(step=num_text(param.step)))
    if param.max_length and param.type in (ParamType.TEXT, ParamType.MULTILINE):
        facts.append(UP_TO.format(count=param.max_length))
    if param.choices:
        labels = [param.choice_label(choice, locale) or choice for choice in param.choices[:10]]
        choices = ", ".join(labels) + (" …" if len(param.choices) > 10 else "")
        facts.append(ONE_OF.format(choices=shown(choices, MAX_DESCRIPTION)))
    if param.choices_from:
        facts.append(FROM_SERVER)
    if param.type is ParamType.MULTILINE:
        facts.append(OR_FILE.format(name=option_name(workflow, f"{param.name}_file", locale)))
    description = shown(param.description_for(locale), MAX_DESCRIPTION)
    return OPTION.format(
        name=option_name(workflow, param.name, locale), facts=joined(facts, FACT_THEN), description=description
    )


def joined(parts: list[str], joint: Text) -> str:
    """`parts` as one list, each pair joined with `joint` (its `before` and `after`) in the reader's language."""
    text = parts[0]
    for part in parts[1:]:
        text = joint.format(before=text, after=part)
    return text


def workflow_description(workflow: Workflow, locale: object) -> str:
    """A workflow command's description in the member's language when its binding gives one, as shown."""
    found = next((x.description for x in workflow.localized if x.locale == str(locale) and x.description), None)
    return shown(found or workflow.description, MAX_DESCRIPTION)


def option_name(workflow: Workflow, name: str, locale: object) -> str:
    """An option's name as the member's Discord shows it (its binding's, or the built-in `<name>_file`'s)."""
    found = workflow_option(workflow, name, str(locale))
    return found[0] if found and found[0] else name


def built_in_description(command: app_commands.Command[Any, ..., Any] | app_commands.Group, locale: object) -> str:
    """One of the bot's own commands' description in the member's language (discord_ui/translator.py's)."""
    catalogue = next((c for code, c in CATALOGUES.items() if str(code) == str(locale)), {})
    entry = catalogue.get(command.qualified_name)
    return entry[1] if entry else command.description


def example(workflow: Workflow, locale: object = None) -> Lines:
    """An invocation to copy: the required options with sample values (or the first option when none is)."""
    params = [p for p in workflow.params if p.required] or [
        p for p in workflow.params if p.type is not ParamType.SEED and p.type not in FILE_TYPES
    ][:1]
    words = [Lines((f"{option_name(workflow, p.name, locale)}:", _sample(workflow, p)), "")
             for p in params]  # fmt: skip
    return Lines([f"/{workflow.name}", *words], " ")


def _sample(workflow: Workflow, param: Param) -> str:
    if param.type in FILE_TYPES:
        return ATTACH[param.type]
    if param.choices:
        return _code_safe(param.choices[0])
    value = param.default if param.default is not None else workflow.current_value(param)
    if value is None or value == "":
        value = num_text(param.min) if param.min is not None else "…"
    return _code_safe(value)


def _default(workflow: Workflow, param: Param) -> str:
    if param.type is ParamType.SEED and param.default is None:
        return RANDOM
    if param.type in FILE_TYPES:
        return OWN_FILE
    value = param.default if param.default is not None else workflow.current_value(param)
    return shown(str(value).replace("\n", " "), MAX_EXAMPLE_VALUE)


def _code_safe(value: object) -> str:
    """A workflow's value inside the example's `code`: one line, no backtick, capped."""
    return cap(str(value).replace("\n", " ").replace("`", "'"), MAX_EXAMPLE_VALUE)


async def setup(bot: ComfyBot) -> None:
    await bot.add_cog(Help(bot))

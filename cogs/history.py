"""/history (a member's last jobs, with Re-run and Details) and /preset (saved option values per command)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.access import is_admin
from core.errors import InvalidInput
from core.i18n import Lines, Text
from core.jobs.presets import DEFAULT, Presets, checked_name, keepable, own_job, quoted_name
from discord_ui import history as pages
from discord_ui.messages import option_values, respond

if TYPE_CHECKING:
    from bot import ComfyBot

NOT_YOURS = Text("Only the bot's owner and members with the admin role can see another member's history.")
GONE = Text("/{command} is no longer available, so its options cannot be saved.")
SAVED = Text("Saved your preset {name} for /{command}: {values}.")
REPLACED = Text("Replaced your preset {name} for /{command}: {values}.")
SAVED_AND_HOW = Text("{saved} {how}")  # two sentences: a language without spaces between them drops it
APPLIES_ALWAYS = Text("It applies to every /{command} you run; options you give override it.")
USE_IT = Text("Use it with /{command} preset:{name}; options you give override it.")
NO_PRESETS = Text("You have no presets. Run a command, then /preset save name:<a name> keeps its options.")
YOUR_PRESETS = Text("**Your presets** ({count}):")
NO_PRESET = Text("You have no preset {name}. /preset list shows yours.")
WHICH_ONE = Text("You have presets named {name} for {commands}: say which one with command:.")
AND = Text("{some} and {last}")
DELETED_PRESET = Text("Deleted your preset {name} for /{command}.")
MAX_PRESET_VALUES = 300  # one preset's values as listed
MAX_PRESET_VALUE = 80  # one of them


class History(commands.Cog):
    """A member's past jobs and saved presets."""

    preset = app_commands.Group(name="preset", description="Save, list and delete your presets of command options")

    def __init__(self, bot: ComfyBot) -> None:
        self.bot = bot

    @property
    def presets(self) -> Presets:
        """The members' presets, in the job store."""
        return self.bot.presets

    async def cog_load(self) -> None:
        pages.install(self.bot, self.page)

    async def cog_unload(self) -> None:
        pages.uninstall(self.bot)

    @app_commands.command(name="history", description="Show your last jobs, with Re-run and Details (admins: anyone's)")
    @app_commands.describe(member="Whose jobs to show (admins only)")
    async def history(self, interaction: discord.Interaction[Any], member: discord.User | None = None) -> None:
        content, view = await self.page(interaction, member.id if member else interaction.user.id, 0)
        await respond(interaction, content, view=view)

    async def page(self, interaction: discord.Interaction[Any], owner: int, page: int) -> tuple[str, discord.ui.View]:
        """Build page `page` of `owner`'s history for the member asking; only admins see another's."""
        own = owner == interaction.user.id
        if not own and not await is_admin(interaction):
            raise InvalidInput(NOT_YOURS)
        total, records = await self.bot.store.jobs_of(owner, limit=pages.PAGE_SIZE, offset=page * pages.PAGE_SIZE)
        if not records and total:  # jobs went away since the page was shown: show the last page there is
            page = pages.pages(total) - 1
            total, records = await self.bot.store.jobs_of(owner, limit=pages.PAGE_SIZE, offset=page * pages.PAGE_SIZE)
        return pages.history_page(
            owner,
            records,
            page=page,
            total=total,
            own=own,
            locale=interaction.locale,
            workflows=self.bot.catalog.workflows,
        )

    @preset.command(name="save", description="Save the options of your last job (or of job:) under a name")
    @app_commands.describe(name="A name for the preset; 'default' applies by itself", job="A job id from /history")
    async def save(
        self, interaction: discord.Interaction[Any], name: app_commands.Range[str, 1, 100], job: str | None = None
    ) -> None:
        name = checked_name(name)
        record = await own_job(self.bot.store, interaction.user.id, job)
        workflow = self.bot.catalog.workflows.get(record.workflow)
        if workflow is None:
            raise InvalidInput(GONE.format(command=record.workflow))
        values = keepable(workflow, record)
        replaced = await self.presets.save(interaction.user.id, workflow.name, name, values)
        saved = (REPLACED if replaced else SAVED).format(
            name=quoted_name(name), command=workflow.name, values=self.values(values, workflow.name)
        )
        how = (APPLIES_ALWAYS if name == DEFAULT else USE_IT).format(command=workflow.name, name=name)
        await respond(interaction, SAVED_AND_HOW.format(saved=saved, how=how))

    def values(self, values: dict[str, Any], command: str) -> Lines:
        """A preset's values on one line, named as the member's Discord names the command's options."""
        workflow = self.bot.catalog.workflows.get(command)
        return option_values(values, workflow, each=MAX_PRESET_VALUE, total=MAX_PRESET_VALUES)

    @preset.command(name="list", description="List your presets")
    async def list_presets(self, interaction: discord.Interaction[Any]) -> None:
        presets = await self.presets.of(interaction.user.id)
        if not presets:
            await respond(interaction, NO_PRESETS)
            return
        lines = [YOUR_PRESETS.format(count=len(presets))]
        lines += [Lines((f"• /{p.command} {quoted_name(p.name)}", self.values(p.values, p.command)), ": ")
                  for p in presets]  # fmt: skip
        await respond(interaction, Lines(lines))  # the send helper caps the whole after localizing

    @preset.command(name="delete", description="Delete one of your presets")
    @app_commands.describe(name="The preset's name", command="Its command, when presets of several share the name")
    async def delete(
        self,
        interaction: discord.Interaction[Any],
        name: app_commands.Range[str, 1, 100],
        command: str | None = None,
    ) -> None:
        name, wanted = name.strip(), (command or "").strip().lstrip("/")
        found = [p for p in await self.presets.of(interaction.user.id) if p.name == name]
        if wanted:
            found = [p for p in found if p.command == wanted]
        if not found:
            raise InvalidInput(NO_PRESET.format(name=quoted_name(name)))
        if len(found) > 1:
            names = [f"/{p.command}" for p in found]
            commands = AND.format(some=", ".join(names[:-1]), last=names[-1])
            raise InvalidInput(WHICH_ONE.format(name=quoted_name(name), commands=commands))
        await self.presets.delete(interaction.user.id, found[0].command, name)
        await respond(interaction, DELETED_PRESET.format(name=quoted_name(name), command=found[0].command))

    @delete.autocomplete("name")
    async def _complete_name(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        names = sorted({p.name for p in await self.presets.of(interaction.user.id)})
        return [app_commands.Choice(name=n, value=n) for n in names if current.lower() in n.lower()][:25]


async def setup(bot: ComfyBot) -> None:
    await bot.add_cog(History(bot))

"""One slash command per loaded workflow (/image, /music, ...): options in, files out.

The cog only translates: Discord options -> core values -> Engine.run; what the member sees (status
message, result, buttons, forms, errors) is discord_ui's.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.access import access_refusal, is_admin
from core.errors import BotError, InvalidInput, JobCancelled
from core.jobs.engine import new_job_id, shown_values
from core.jobs.limits import Reservation
from core.jobs.store import JobRecord, JobState
from core.workflows import FILE_TYPES, InputFile, Param, ParamType, Workflow
from core.workflows.model import MAX_SEED, MAX_UPLOAD_BYTES
from discord_ui import buttons
from discord_ui.forms import Submit, TextForm
from discord_ui.messages import CANCELLING, NO_JOBS, NO_JOBS_AT_ALL, SUBMITTING, respond, shown
from discord_ui.status import JobMessage

if TYPE_CHECKING:
    from bot import ComfyBot

log = logging.getLogger(__name__)

MAX_CHOICES = 25  # Discord's limit for fixed choices and for autocomplete answers
MAX_LYRICS_FILE = 64 * 1024


class Generate(commands.Cog):
    """Registers a slash command for every workflow in the catalog (again after /reload)."""

    def __init__(self, bot: ComfyBot) -> None:
        self.bot = bot
        self.commands: list[app_commands.Command[Any, ..., None]] = []

    async def cog_load(self) -> None:
        buttons.install(self.bot, self)
        self.register()

    async def cog_unload(self) -> None:
        buttons.uninstall(self.bot)
        self.unregister()

    @app_commands.command(name="queue", description="Show your jobs that are waiting or running (admins see all)")
    async def queue(self, interaction: discord.Interaction[Any]) -> None:
        everyone = await is_admin(interaction)
        jobs = [(job, user) for job, user in self.bot.active_jobs.items() if everyone or user == interaction.user.id]
        lines = []
        for job_id, user in jobs:
            record = await self.bot.store.get(job_id)
            workflow = record.workflow if record else "?"
            who = f" for <@{user}>" if everyone else ""
            lines.append(f"• `{job_id[:8]}` /{workflow}{who}: {shown(self.bot.engine.whereabouts(job_id))}")
        if not lines:
            lines = [NO_JOBS_AT_ALL if everyone else NO_JOBS]
        await respond(interaction, "\n".join(lines))

    @app_commands.command(name="cancel", description="Cancel your newest job that is still waiting or running")
    async def cancel(self, interaction: discord.Interaction[Any]) -> None:
        mine = [job for job, user in self.bot.active_jobs.items() if user == interaction.user.id]
        if not mine:
            raise InvalidInput(NO_JOBS)
        await self.cancel_job(interaction, mine[-1])

    def register(self) -> None:
        """Add one command per workflow in the bot's current catalog to the tree (sync is the caller's)."""
        self.unregister()
        self.commands = [self.build_command(w) for w in self.bot.catalog.workflows.values()]
        for command in self.commands:
            self.bot.tree.add_command(command, override=True)

    def unregister(self) -> None:
        for command in self.commands:
            self.bot.tree.remove_command(command.name)
        self.commands = []

    def build_command(self, workflow: Workflow) -> app_commands.Command[Any, ..., None]:
        """Make `/name` with one option per parameter (plus a file option for multi-line text)."""
        # Python names are generated (p0, p1_file, ...) and renamed, so any Discord option name works.
        parameters = [inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        renames: dict[str, str] = {}
        descriptions: dict[str, str] = {}
        choices: dict[str, list[app_commands.Choice[str]]] = {}
        completers: dict[str, Any] = {}

        def add(key: str, name: str, annotation: Any, default: Any, description: str) -> None:
            kind = inspect.Parameter.KEYWORD_ONLY
            parameters.append(inspect.Parameter(key, kind, annotation=annotation, default=default))
            renames[key], descriptions[key] = name, description

        for index, param in enumerate(workflow.params):
            key = f"p{index}"
            default = inspect.Parameter.empty if param.required else None
            add(key, param.name, _annotation(param), default, _describe(param))
            if param.type is ParamType.MULTILINE:
                add(f"{key}_file", f"{param.name}_file", discord.Attachment, None,
                    f"A .txt file with the {param.name} (for several lines)")  # fmt: skip
            elif param.choices and len(param.choices) <= MAX_CHOICES:
                choices[key] = [app_commands.Choice(name=c[:100], value=c) for c in param.choices]
            elif param.type is ParamType.CHOICE:
                completers[key] = self._completer(param)

        async def callback(interaction: discord.Interaction[Any], **kwargs: Any) -> None:
            given = {p.name: kwargs.get(f"p{i}") for i, p in enumerate(workflow.params)}
            files = {p.name: kwargs.get(f"p{i}_file") for i, p in enumerate(workflow.params)}
            await self.invoke(interaction, workflow, given, files)

        callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        callback = app_commands.describe(**descriptions)(callback)
        if choices:
            callback = app_commands.choices(**choices)(callback)
        if completers:
            callback = app_commands.autocomplete(**completers)(callback)
        callback = app_commands.rename(**renames)(callback)
        return app_commands.Command(name=workflow.name, description=workflow.description, callback=callback)

    def _completer(self, param: Param) -> Any:
        """Autocomplete for a choice: the server's list (or a long fixed one) filtered by what was typed."""

        async def complete(interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
            if param.choices_from:
                values = await self.bot.engine.choices(param.choices_from, current)
            else:
                values = [c for c in param.choices if current.lower() in c.lower()]
            return [app_commands.Choice(name=v, value=v) for v in values if len(v) <= 100][:MAX_CHOICES]

        return complete

    async def invoke(
        self,
        interaction: discord.Interaction[Any],
        workflow: Workflow,
        given: dict[str, Any],
        files: dict[str, discord.Attachment | None],
    ) -> None:
        """Check access and the options, ask for missing multi-line text in a form, then run the job."""
        await self.check_access(interaction, workflow)  # before anything is read, uploaded or submitted
        # Only checked here, before the first await, so that a member over a limit hears it at once; the
        # place is reserved in start_job, when the job really starts (a form may stay open for 15 minutes
        # or be abandoned, so it holds no place).
        self.bot.engine.limits.check(interaction.user.id)
        for name, attachment in files.items():
            if attachment is not None:
                given[name] = await _read_text_attachment(name, attachment)
        given = {k: v for k, v in given.items() if v is not None}
        workflow.resolve(_without_downloads(given))  # refuse bad input now, before any form or job
        missing = [p for p in workflow.params if p.type is ParamType.MULTILINE and p.name not in given]
        if missing:
            await interaction.response.send_modal(TextForm(workflow, missing, self._submitter(workflow, given)))
            return
        await self.start_job(interaction, workflow, given)

    async def check_access(self, interaction: discord.Interaction[Any], workflow: Workflow) -> None:
        """Refuse a member whom the access rules keep from this command here, saying why and where."""
        if (reason := await access_refusal(self.bot, interaction, workflow)) is not None:
            raise InvalidInput(reason)

    def _submitter(self, workflow: Workflow, given: dict[str, Any]) -> Submit:
        async def submit(interaction: discord.Interaction[Any], typed: dict[str, str]) -> None:
            await self.start_job(interaction, workflow, {**given, **typed})

        return submit

    async def start_job(self, interaction: discord.Interaction[Any], workflow: Workflow, given: dict[str, Any]) -> None:
        """Reserve the member's place under every limit before the first await, run the job, give it back.

        Commands, form submissions and Re-roll clicks all come here, so concurrent ones from one member
        are counted atomically: only as many as the limits allow get past `reserve`.
        """
        reservation = self.bot.engine.limits.reserve(interaction.user.id, new_job_id())
        try:
            await self._run_job(interaction, workflow, given, reservation)
        finally:
            reservation.release()

    async def _run_job(
        self, interaction: discord.Interaction[Any], workflow: Workflow, given: dict[str, Any], reservation: Reservation
    ) -> None:
        """Answer at once, run the job, then show its result; its end is recorded once the member was told."""
        self.bot.track_job()
        message = JobMessage(
            interaction, workflow.name, self.bot.statuses, max_image_pixels=self.bot.settings.max_image_pixels
        )
        await message.open()
        try:
            values = workflow.resolve(await _download_attachments(given))
        except BotError as exc:
            await message.fail(exc)
            return
        record = JobRecord(
            id=reservation.job_id,
            workflow=workflow.name,
            values=shown_values(values),
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            message_id=message.message_id,
            upload_limit=interaction.filesize_limit,
            created_at=reservation.created_at,  # JOB_TIMEOUT counts the attachment download too
        )
        message.attach(record.id)
        message.show(SUBMITTING)
        try:
            result = await self.bot.engine.run(workflow, values, message.progress, record=record)
        except BotError as exc:  # the member is told first; then the end is recorded as reported
            if isinstance(exc, JobCancelled):
                await message.cancelled()
            else:
                await message.fail(exc)
            state = JobState.CANCELLED if isinstance(exc, JobCancelled) else JobState.FAILED
            await self.bot.engine.finish(record.id, state, exc.user_message)
            return
        finally:
            await message.stop()
        with result:  # its temporary files go once delivered, or once delivery fails
            await message.finish(result)
        await self.bot.engine.finish(record.id, JobState.DONE)

    # What job buttons need (discord_ui.buttons.JobActions)

    async def job(self, job_id: str) -> JobRecord | None:
        """Look up a job in the store."""
        return await self.bot.store.get(job_id)

    async def may_manage(self, interaction: discord.Interaction[Any], owner_id: int | None) -> bool:
        """Tell whether the clicking member owns the job or is an admin."""
        return owner_id == interaction.user.id or await is_admin(interaction)

    async def cancel_job(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """Cancel a job for its requester or an admin; anyone else is refused politely."""
        owner = self.bot.active_jobs.get(job_id)
        if owner is None:
            raise InvalidInput("This job has already finished.")
        if not await self.may_manage(interaction, owner):
            raise InvalidInput("Only the member who started this job (or an admin) can cancel it.")
        await self.bot.engine.cancel(job_id)
        await respond(interaction, CANCELLING)

    async def reroll(self, interaction: discord.Interaction[Any], record: JobRecord) -> None:
        """Run the same job again with a new seed."""
        workflow = self.bot.catalog.workflows.get(record.workflow)
        if workflow is None:
            raise InvalidInput(f"/{record.workflow} is no longer available.")
        if any(p.type in FILE_TYPES for p in workflow.params):
            raise InvalidInput("Re-roll is not available for jobs with attached files; run the command again.")
        await self.check_access(interaction, workflow)
        given = {
            p.name: record.values[p.name]
            for p in workflow.params
            if p.type is not ParamType.SEED and p.name in record.values
        }
        await self.start_job(interaction, workflow, given)


def _annotation(param: Param) -> Any:
    """The annotation discord.py turns into the option's type and limits."""
    match param.type:
        case ParamType.TEXT | ParamType.MULTILINE:
            return app_commands.Range[str, 1, param.max_length]
        case ParamType.BOOL:
            return bool
        case ParamType.SEED:
            return app_commands.Range[int, 0, MAX_SEED]
        case ParamType.CHOICE:
            return str
        case _ if param.type in FILE_TYPES:
            return discord.Attachment
        case _:
            kind = int if param.type is ParamType.INT else float
            if param.min is None and param.max is None:
                return kind
            return app_commands.Range[kind, param.min, param.max]


def _without_downloads(given: dict[str, Any]) -> dict[str, Any]:
    """The values with attachments stood in for by their names, to check them before downloading."""
    return {k: InputFile(v.filename, b"") if isinstance(v, discord.Attachment) else v for k, v in given.items()}


async def _download_attachments(given: dict[str, Any]) -> dict[str, Any]:
    """Fetch attached files (after the defer: a download may take longer than 3 s)."""
    ready = dict(given)
    for name, value in given.items():
        if isinstance(value, discord.Attachment):
            if value.size > MAX_UPLOAD_BYTES:
                raise InvalidInput(f"{name} is larger than {MAX_UPLOAD_BYTES // 2**20} MB.")
            ready[name] = InputFile(value.filename, await value.read())
    return ready


def _describe(param: Param) -> str:
    text = param.description
    if param.default is not None and param.type is not ParamType.MULTILINE:
        with_default = f"{text} (default {param.default})"
        if len(with_default) <= 100:
            return with_default
    return text[:100]


async def _read_text_attachment(name: str, attachment: discord.Attachment) -> str:
    if attachment.size > MAX_LYRICS_FILE:
        raise InvalidInput(f"{name}_file is too large ({attachment.size // 1024} KB); the limit is 64 KB.")
    try:
        return (await attachment.read()).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{name}_file must be a plain text (UTF-8) file.") from None


async def setup(bot: ComfyBot) -> None:
    await bot.add_cog(Generate(bot))

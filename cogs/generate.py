"""One slash command per loaded workflow (/image, /music, ...): options in, files out.

The cog only translates: Discord options -> core values -> Engine.run; what the member sees (status
message, result, buttons, forms, errors) is discord_ui's.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.access import access_refusal, is_admin
from cogs.quota import check_quota, hold_quota
from core.errors import BotError, InvalidInput, JobCancelled
from core.i18n import Lines, Text
from core.jobs.engine import new_job_id, shown_values
from core.jobs.kept import KeptFiles
from core.jobs.limits import Reservation
from core.jobs.presets import MAX_NAME as MAX_PRESET_NAME
from core.jobs.presets import NO_SUCH, Presets, applied, quoted_name
from core.jobs.store import JobRecord, JobState
from core.workflows import FILE_TYPES, InputFile, Param, ParamType, Workflow
from core.workflows.model import MAX_OPTIONS, MAX_SEED, MAX_UPLOAD_BYTES, num_text
from discord_ui import buttons
from discord_ui.delivery import age_restricted, screen_for
from discord_ui.forms import MODAL_ITEMS, Submit, TextForm
from discord_ui.messages import CANCELLING, NO_JOBS, NO_JOBS_AT_ALL, SUBMITTING, respond, shown
from discord_ui.status import CUT_OFF, JobMessage
from discord_ui.translator import WORKFLOW, workflow_choice

if TYPE_CHECKING:
    from bot import ComfyBot

log = logging.getLogger(__name__)

MAX_CHOICES = 25  # Discord's limit for fixed choices and for autocomplete answers
MAX_LYRICS_FILE = 64 * 1024
PRESET_OPTION = "preset"
PRESET_KEY = "preset_"  # the callback's parameter: generated names (p0, p1_file, ...) never end in "_"
PRESET_DESCRIPTION = "One of your presets (/preset save); options you give override it"
# What members read (each is translated in locales/*.po)
QUEUE_LINE = Text("• `{job}` /{command}: {where}")
QUEUE_LINE_FOR = Text("• `{job}` /{command} for {mention}: {where}")
ALREADY_FINISHED = Text("This job has already finished.")
NOT_YOURS_TO_CANCEL = Text("Only the member who started this job (or an admin) can cancel it.")
NO_LONGER_AVAILABLE = Text("/{command} is no longer available.")
FILES_NOT_KEPT = Text(
    "The files of this result are no longer kept (the bot keeps them for {hours} hours); run the command again."
)
NOT_YOURS_TO_USE = Text("Only the member who asked for this result (or an admin) can use this button.")
NOT_OFFERED_NOW = Text("/{command} no longer offers this button.")
ATTACHMENT_TOO_LARGE = Text("{name} is larger than {megabytes} MB.")
TEXT_FILE_TOO_LARGE = Text("{name}_file is too large ({kilobytes} KB); the limit is 64 KB.")
TEXT_FILE_NOT_UTF8 = Text("{name}_file must be a plain text (UTF-8) file.")


class Generate(commands.Cog):
    """Registers a slash command for every workflow in the catalog (again after /reload)."""

    def __init__(self, bot: ComfyBot) -> None:
        self.bot = bot
        self.commands: list[app_commands.Command[Any, ..., None]] = []

    @property
    def kept(self) -> KeptFiles:
        """The files kept for the buttons under results (the bot's: a job recovered after a restart keeps them too)."""
        return self.bot.kept

    @property
    def presets(self) -> Presets:
        """The members' presets, in the job store."""
        return self.bot.presets

    async def cog_load(self) -> None:
        buttons.install(self.bot, self)
        self.register()
        await self.kept.prune_if_due()

    async def cog_unload(self) -> None:
        buttons.uninstall(self.bot)
        self.unregister()

    @app_commands.command(name="queue", description="Show your jobs that are waiting or running (admins see all)")
    async def queue(self, interaction: discord.Interaction[Any]) -> None:
        everyone = await is_admin(interaction)
        jobs = [(job, user) for job, user in self.bot.active_jobs.items() if everyone or user == interaction.user.id]
        lines: list[str] = []
        for job_id, user in jobs:
            record = await self.bot.store.get(job_id)
            workflow = record.workflow if record else "?"
            where = self.bot.engine.whereabouts(job_id)
            where = where if isinstance(where, Text) else shown(where)  # a sentence of the bot keeps its translation
            line = QUEUE_LINE_FOR if everyone else QUEUE_LINE
            lines.append(line.format(job=job_id[:8], command=workflow, where=where, mention=f"<@{user}>"))
        await respond(interaction, Lines(lines or [NO_JOBS_AT_ALL if everyone else NO_JOBS]))

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

        uploadable = _uploadable(workflow)
        for index, param in enumerate(workflow.params):
            key = f"p{index}"
            # A required file the member leaves out is asked for in a form (an upload), so the option is optional
            asked_later = param.type in FILE_TYPES and uploadable
            default = inspect.Parameter.empty if param.required and not asked_later else None
            add(key, param.name, _annotation(param), default, _describe(param))
            if param.type is ParamType.MULTILINE:
                add(f"{key}_file", f"{param.name}_file", discord.Attachment, None,
                    f"A .txt file with the {param.name} (for several lines)")  # fmt: skip
            elif param.choices and len(param.choices) <= MAX_CHOICES:
                choices[key] = [workflow_choice(param, c) for c in param.choices]
            elif param.type is ParamType.CHOICE:
                completers[key] = self._completer(param)
        # A workflow's own option named preset, or one with no room left, keeps the command without presets
        if workflow.param(PRESET_OPTION) is None and len(parameters) - 1 < MAX_OPTIONS:
            add(PRESET_KEY, PRESET_OPTION, app_commands.Range[str, 1, MAX_PRESET_NAME], None, PRESET_DESCRIPTION)
            completers[PRESET_KEY] = self._preset_completer(workflow)

        async def callback(interaction: discord.Interaction[Any], **kwargs: Any) -> None:
            given = {p.name: kwargs.get(f"p{i}") for i, p in enumerate(workflow.params)}
            files = {p.name: kwargs.get(f"p{i}_file") for i, p in enumerate(workflow.params)}
            await self.invoke(interaction, workflow, given, files, preset=kwargs.get(PRESET_KEY))

        callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        callback = app_commands.describe(**descriptions)(callback)
        if choices:
            callback = app_commands.choices(**choices)(callback)
        if completers:
            callback = app_commands.autocomplete(**completers)(callback)
        callback = app_commands.rename(**renames)(callback)
        return app_commands.Command(
            name=workflow.name,
            description=workflow.description,
            callback=callback,
            nsfw=workflow.nsfw,
            extras={WORKFLOW: workflow},  # for discord_ui.translator; where it is offered: bot.py's tree
        )

    def _completer(self, param: Param) -> Any:
        """Autocomplete for a choice: the server's list (or a long fixed one) filtered by what was typed."""

        async def complete(interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
            if param.choices_from:
                values = await self.bot.engine.choices(param.choices_from, current)
            else:
                values = [c for c in param.choices if current.lower() in c.lower()]
            return [app_commands.Choice(name=v, value=v) for v in values if len(v) <= 100][:MAX_CHOICES]

        return complete

    def _preset_completer(self, workflow: Workflow) -> Any:
        """Autocomplete for the preset option: the member's presets for this command."""

        async def complete(interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
            names = [p.name for p in await self.presets.of(interaction.user.id, workflow.name)]
            return [app_commands.Choice(name=n, value=n) for n in names if current.lower() in n.lower()][:MAX_CHOICES]

        return complete

    async def with_preset(
        self, user_id: int, workflow: Workflow, given: dict[str, Any], name: str | None
    ) -> dict[str, Any]:
        """The options given, over the member's preset `name` (or their `default` one, when they have it)."""
        presets = self.presets
        preset = await (
            presets.default(user_id, workflow.name)
            if name is None
            else presets.get(user_id, workflow.name, name.strip())
        )
        if preset is None:
            if name is None:
                return given
            raise InvalidInput(NO_SUCH.format(name=quoted_name(name), command=workflow.name))
        return applied(workflow, preset, given)

    async def invoke(
        self,
        interaction: discord.Interaction[Any],
        workflow: Workflow,
        given: dict[str, Any],
        files: dict[str, discord.Attachment | None],
        *,
        preset: str | None = None,
    ) -> None:
        """Check access and the options (over the member's preset), ask for missing multi-line text in a form,
        then run the job."""
        await self.check_access(interaction, workflow)  # before anything is read, uploaded or submitted
        # Only checked here, before the first await, so that a member over a limit hears it at once; the
        # place is reserved in start_job, when the job really starts (a form may stay open for 15 minutes
        # or be abandoned, so it holds no place).
        self.bot.engine.limits.check(interaction.user.id)
        self.bot.safety.check_channel(
            workflow.name,
            nsfw=workflow.nsfw,
            in_dm=interaction.guild_id is None,
            age_restricted=age_restricted(interaction.channel),
        )
        await check_quota(interaction, self.bot.quotas)
        for name, attachment in files.items():
            if attachment is not None:
                given[name] = await _read_text_attachment(name, attachment)
        given = {k: v for k, v in given.items() if v is not None}
        given = await self.with_preset(interaction.user.id, workflow, given, preset)
        self._check_text(interaction, workflow, given)  # before a form opens: refuse what is already typed
        uploads = [p for p in workflow.params if p.type in FILE_TYPES and p.required and p.name not in given]
        uploads = uploads if _uploadable(workflow) else []
        # refuse bad input now, before any form or job; the files the form asks for are checked once uploaded
        workflow_without_uploads = dataclasses.replace(
            workflow,
            params=tuple(dataclasses.replace(p, required=False) if p in uploads else p for p in workflow.params),
        )
        workflow_without_uploads.resolve(_without_downloads(given))
        missing = [p for p in workflow.params if p.type is ParamType.MULTILINE and p.name not in given]
        if missing or uploads:
            form = TextForm(workflow, missing, self._submitter(workflow, given), uploads)
            await interaction.response.send_modal(form)
            return
        await self.start_job(interaction, workflow, given)

    async def check_access(self, interaction: discord.Interaction[Any], workflow: Workflow) -> None:
        """Refuse a member whom the access rules keep from this command here, saying why and where."""
        if (reason := await access_refusal(self.bot, interaction, workflow)) is not None:
            raise InvalidInput(reason)

    def _check_text(self, interaction: discord.Interaction[Any], workflow: Workflow, given: dict[str, Any]) -> None:
        """Refuse text options that hit the server's blocklist (community.toml [safety])."""
        texts = [
            (p.name, str(given[p.name]))
            for p in workflow.params
            if p.type in (ParamType.TEXT, ParamType.MULTILINE) and given.get(p.name) is not None
        ]
        self.bot.safety.check_text(interaction.guild_id, texts)

    def _submitter(self, workflow: Workflow, given: dict[str, Any]) -> Submit:
        async def submit(interaction: discord.Interaction[Any], typed: dict[str, str]) -> None:
            await self.start_job(interaction, workflow, {**given, **typed})

        return submit

    async def start_job(self, interaction: discord.Interaction[Any], workflow: Workflow, given: dict[str, Any]) -> None:
        """Reserve the member's place under every limit before the first await, run the job, give it back.

        Commands, form submissions and Re-roll clicks all come here, so concurrent ones from one member
        are counted atomically: only as many as the limits and the daily quota allow get past them.
        """
        self._check_text(interaction, workflow, given)  # what a form added, or a re-roll under today's rules
        job_id = new_job_id()
        hold = await hold_quota(interaction, self.bot.quotas, job_id)  # awaits nothing unless the quota is used up
        try:
            reservation = self.bot.engine.limits.reserve(interaction.user.id, job_id)
            try:
                await self._run_job(interaction, workflow, given, reservation)
            finally:
                reservation.release()
        finally:
            hold.release()  # a job that never reached ComfyUI does not count

    async def _run_job(
        self, interaction: discord.Interaction[Any], workflow: Workflow, given: dict[str, Any], reservation: Reservation
    ) -> None:
        """Answer at once, run the job, then show its result; its end is recorded once the member was told."""
        self.bot.track_job()
        settings = self.bot.settings
        message = JobMessage(
            interaction,
            workflow.name,
            self.bot.statuses,
            max_image_pixels=settings.max_image_pixels,
            previews=screen_for(self.bot.image_screen, interaction.channel) is None,  # previews skip the image check
            result_style=settings.result_view,
            workflow=workflow,
            cancel=self.bot.engine.cancel,  # where the result cannot be posted, a job is stopped at 14 minutes
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
            locale=str(interaction.locale),
            created_at=reservation.created_at,  # JOB_TIMEOUT counts the attachment download too
        )
        message.attach(record.id)
        message.show(SUBMITTING)
        try:
            result = await self.bot.engine.run(workflow, values, message.progress, record=record)
        except BotError as exc:  # the member is told first; then the end is recorded as reported
            cancelled = isinstance(exc, JobCancelled)
            if cancelled:
                await message.cancelled()
            else:
                await message.fail(exc)
            state = JobState.CANCELLED if cancelled else JobState.FAILED
            reason = CUT_OFF if cancelled and message.cut_off else exc.user_message  # why the bot cancelled it
            await self.bot.engine.finish(record.id, state, reason)
            return
        finally:
            await message.stop()
        with result:  # its temporary files go once delivered, or once delivery fails
            locale = message.interaction.locale
            followups = await buttons.keep_followups(self.kept, workflow, values, result, locale=locale)
            screen = screen_for(self.bot.image_screen, interaction.channel)
            more = await message.finish(result, screen=screen, followups=followups)
        await self.bot.engine.finish(record.id, JobState.DONE, more_messages=more)

    # What job buttons need (discord_ui.buttons.JobActions)

    async def job(self, job_id: str) -> JobRecord | None:
        """Look up a job in the store."""
        return await self.bot.store.get(job_id)

    def workflow(self, name: str) -> Workflow | None:
        """The loaded workflow of a command (None once it is gone)."""
        return self.bot.catalog.workflows.get(name)

    async def may_manage(self, interaction: discord.Interaction[Any], owner_id: int | None) -> bool:
        """Tell whether the clicking member owns the job or is an admin."""
        return owner_id == interaction.user.id or await is_admin(interaction)

    async def cancel_job(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """Cancel a job for its requester or an admin; anyone else is refused politely."""
        owner = self.bot.active_jobs.get(job_id)
        if owner is None:
            raise InvalidInput(ALREADY_FINISHED)
        if not await self.may_manage(interaction, owner):
            raise InvalidInput(NOT_YOURS_TO_CANCEL)
        await self.bot.engine.cancel(job_id)
        await respond(interaction, CANCELLING)

    async def reroll(self, interaction: discord.Interaction[Any], record: JobRecord) -> None:
        """Run the same job again with a new seed (and the attachments the bot kept)."""
        await self._again(interaction, record, new_seed=True)

    async def rerun(self, interaction: discord.Interaction[Any], record: JobRecord) -> None:
        """Run the same job again with the same options, its seed included (from /history)."""
        await self._again(interaction, record, new_seed=False)

    async def _again(self, interaction: discord.Interaction[Any], record: JobRecord, *, new_seed: bool) -> None:
        workflow = self._workflow(record.workflow)
        given = _carried(record, workflow, keep_seed=not new_seed)
        await self._with_kept_inputs(interaction, record, workflow, given)
        await self._run_followup(interaction, workflow, given)

    async def followup(self, interaction: discord.Interaction[Any], record: JobRecord, action: str, index: int) -> None:
        """Run a result's follow-up on its output number `index`: Upscale, Variation or Extend."""
        if not await self.may_manage(interaction, record.user_id):
            raise InvalidInput(NOT_YOURS_TO_USE)
        source = self._workflow(record.workflow)
        if action == "variation":
            if not source.followups.variation:
                raise InvalidInput(NOT_OFFERED_NOW.format(command=source.name))
            target, kind = source, ParamType.IMAGE
            given = _carried(record, source, keep_seed=False)  # a new seed
            await self._with_kept_inputs(interaction, record, source, given)
        else:
            name = getattr(source.followups, action)
            if name is None:
                raise InvalidInput(NOT_OFFERED_NOW.format(command=source.name))
            target = self._workflow(name)
            kind = ParamType.AUDIO if action == "extend" else ParamType.IMAGE
            given = _carried(record, target, keep_seed=False)  # e.g. the tags of the song it extends
        into = target.file_param(kind)
        if into is not None:  # a variation of a workflow without an image option only draws a new seed
            output = await self.kept.kept_output(record.id, index)
            if output is None:
                raise InvalidInput(FILES_NOT_KEPT.format(hours=num_text(self.kept.keep_hours)))
            given[into.name] = output
        await self._run_followup(interaction, target, given)

    def _workflow(self, name: str) -> Workflow:
        workflow = self.bot.catalog.workflows.get(name)
        if workflow is None:
            raise InvalidInput(NO_LONGER_AVAILABLE.format(command=name))
        return workflow

    async def _with_kept_inputs(
        self, interaction: discord.Interaction[Any], record: JobRecord, workflow: Workflow, given: dict[str, Any]
    ) -> None:
        """Put back the attachments the job had, from the copies the bot kept (never downloaded again)."""
        files = [p for p in workflow.params if p.type in FILE_TYPES and record.values.get(p.name) is not None]
        if files and not await self.may_manage(interaction, record.user_id):
            raise InvalidInput(NOT_YOURS_TO_USE)  # a member's own files run only for them
        for param in files:
            kept = await self.kept.kept_input(record.id, param.name)
            if kept is None:
                raise InvalidInput(FILES_NOT_KEPT.format(hours=num_text(self.kept.keep_hours)))
            given[param.name] = kept

    async def _run_followup(
        self, interaction: discord.Interaction[Any], workflow: Workflow, given: dict[str, Any]
    ) -> None:
        """Start a job from a button, under the same access and safety rules as the command itself."""
        await self.check_access(interaction, workflow)
        self.bot.safety.check_channel(
            workflow.name,
            nsfw=workflow.nsfw,
            in_dm=interaction.guild_id is None,
            age_restricted=age_restricted(interaction.channel),
        )
        await self.start_job(interaction, workflow, given)


def _carried(record: JobRecord, workflow: Workflow, *, keep_seed: bool) -> dict[str, Any]:
    """The job's option values that `workflow` has under the same name and that are neither files nor (unless
    `keep_seed`) seeds, to run it again or to hand them to a follow-up."""
    skipped = FILE_TYPES if keep_seed else FILE_TYPES | {ParamType.SEED}
    return {p.name: record.values[p.name] for p in workflow.params if p.name in record.values and p.type not in skipped}


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


def _uploadable(workflow: Workflow) -> bool:
    """Whether a form can ask for every file of `workflow` (a form holds MODAL_ITEMS fields)."""
    return sum(1 for p in workflow.params if p.type in FILE_TYPES) <= MODAL_ITEMS


def _without_downloads(given: dict[str, Any]) -> dict[str, Any]:
    """The values with attachments stood in for by their names, to check them before downloading."""
    return {k: InputFile(v.filename, b"") if isinstance(v, discord.Attachment) else v for k, v in given.items()}


async def _download_attachments(given: dict[str, Any]) -> dict[str, Any]:
    """Fetch attached files (after the defer: a download may take longer than 3 s)."""
    ready = dict(given)
    for name, value in given.items():
        if isinstance(value, discord.Attachment):
            if value.size > MAX_UPLOAD_BYTES:
                raise InvalidInput(ATTACHMENT_TOO_LARGE.format(name=name, megabytes=MAX_UPLOAD_BYTES // 2**20))
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
        raise InvalidInput(TEXT_FILE_TOO_LARGE.format(name=name, kilobytes=attachment.size // 1024))
    try:
        return (await attachment.read()).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(TEXT_FILE_NOT_UTF8.format(name=name)) from None


async def setup(bot: ComfyBot) -> None:
    await bot.add_cog(Generate(bot))

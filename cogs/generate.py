"""One slash command per loaded workflow (/image, /music, ...): options in, files out.

The cog only translates: Discord options -> core values -> Engine.run -> a status message and the files.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import logging
import re
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.access import is_admin
from core.errors import InvalidInput, JobCancelled
from core.jobs.engine import JobResult, OutputFile, new_job_id, shown_values
from core.jobs.limits import Reservation
from core.jobs.store import JobRecord, JobState
from core.media import fit_file, human_size
from core.workflows import InputFile, Param, ParamType, Workflow
from core.workflows.model import MAX_SEED, MAX_UPLOAD_BYTES

if TYPE_CHECKING:
    from bot import ComfyBot

log = logging.getLogger(__name__)

TOKEN_LIFETIME = 14 * 60  # interaction tokens die at 15 minutes; switch to the bot token before that
MAX_FILES = 10
MAX_CHOICES = 25  # Discord's limit for fixed choices and for autocomplete answers
DEFAULT_UPLOAD_LIMIT = 10 * 2**20  # Discord's per-file limit for servers without boosts
MAX_CONTENT = 2000
MAX_LYRICS_FILE = 64 * 1024
MODAL_TEXT_MAX = 4000
INVALID_WEBHOOK_TOKEN = 50027  # Discord's code for an expired interaction token

# Channels a slash command can come from, where the bot can post and edit its own messages.
ReplyChannel = (
    discord.TextChannel
    | discord.VoiceChannel
    | discord.StageChannel
    | discord.Thread
    | discord.DMChannel
    | discord.PartialMessageable
)


class Generate(commands.Cog):
    """Registers a slash command for every workflow in the catalog (again after /reload)."""

    def __init__(self, bot: ComfyBot) -> None:
        self.bot = bot
        self.commands: list[app_commands.Command[Any, ..., None]] = []

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(JobButton)
        self.register()

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(JobButton)
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
            lines.append(f"• `{job_id[:8]}` /{workflow}{who}: {self.bot.engine.whereabouts(job_id)}")
        if not lines:
            lines = ["No job is waiting or running." if everyone else "You have no job waiting or running."]
        await interaction.response.send_message(
            "\n".join(lines)[:MAX_CONTENT], ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @app_commands.command(name="cancel", description="Cancel your newest job that is still waiting or running")
    async def cancel(self, interaction: discord.Interaction[Any]) -> None:
        mine = [job for job, user in self.bot.active_jobs.items() if user == interaction.user.id]
        if not mine:
            raise InvalidInput("You have no job waiting or running.")
        await cancel_job(interaction, mine[-1])

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
        """Check the options, ask for missing multi-line text in a form, then run the job."""
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
            await interaction.response.send_modal(TextForm(self, workflow, given, missing))
            return
        await self.start_job(interaction, workflow, given)

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
        self.bot.track_job()
        await interaction.response.defer(thinking=True)
        values = workflow.resolve(await _download_attachments(given))
        original = await interaction.original_response()
        record = JobRecord(
            id=reservation.job_id,
            workflow=workflow.name,
            values=shown_values(values),
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            message_id=original.id,
            upload_limit=interaction.filesize_limit,
            created_at=reservation.created_at,  # JOB_TIMEOUT counts the attachment download too
        )
        header = f"**/{workflow.name}** for {interaction.user.mention}"
        message = JobMessage(interaction, header, self.bot.status_edit_interval, record.id)
        message.show("Submitting…")
        try:
            result = await self.bot.engine.run(workflow, values, lambda p: message.show(p.describe()), record=record)
        except JobCancelled:
            await message.stop()  # so that no pending progress edit lands after this one
            await message.edit_status("🚫 Cancelled.", view=None)
            return
        finally:
            await message.stop()
        await message.finish(result)
        await self.bot.engine.finish(record.id, JobState.DONE)


async def cancel_job(interaction: discord.Interaction[Any], job_id: str) -> None:
    """Cancel a job for its requester or an admin; anyone else is refused politely."""
    bot: ComfyBot = interaction.client  # type: ignore[assignment]
    owner = bot.active_jobs.get(job_id)
    if owner is None:
        raise InvalidInput("This job has already finished.")
    if owner != interaction.user.id and not await is_admin(interaction):
        raise InvalidInput("Only the member who started this job (or an admin) can cancel it.")
    await bot.engine.cancel(job_id)
    await interaction.response.send_message("Cancelling the job…", ephemeral=True)


# Job ids are UUIDs; jobs stored before they were (32 hex digits) keep their working buttons.
JOB_ID = r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|[0-9a-f]{32}"
JOB_BUTTON = rf"job:(?P<action>cancel|reroll|details|delete):(?P<job>{JOB_ID})"
ACTIONS = {
    "cancel": ("Cancel", discord.ButtonStyle.secondary),
    "reroll": ("Re-roll", discord.ButtonStyle.primary),
    "details": ("Details", discord.ButtonStyle.secondary),
    "delete": ("Delete", discord.ButtonStyle.danger),
}


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=JOB_BUTTON):
    """A button on a job's message (Cancel while it runs; Re-roll, Details, Delete on the result).

    Its custom_id carries the action and the job id and its state comes from the store, so it keeps
    working after a restart.
    """

    def __init__(self, action: str, job_id: str) -> None:
        label, style = ACTIONS[action]
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"job:{action}:{job_id}"))
        self.action, self.job_id = action, job_id

    @classmethod
    async def from_custom_id(  # type: ignore[override]
        cls, interaction: discord.Interaction[Any], item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> JobButton:
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:  # type: ignore[override]
        try:
            if self.action == "cancel":
                await cancel_job(interaction, self.job_id)
                return
            bot: ComfyBot = interaction.client  # type: ignore[assignment]
            record = await bot.store.get(self.job_id)
            if record is None:
                raise InvalidInput("This job is no longer known to the bot.")
            if self.action == "details":
                await interaction.response.send_message(job_details(record), ephemeral=True)
            elif self.action == "delete":
                await delete_result(interaction, record)
            else:
                await reroll(interaction, record)
        except Exception as exc:  # the tree's funnel explains it privately, as for commands
            await bot_tree(interaction).on_error(interaction, exc)  # type: ignore[arg-type]


def bot_tree(interaction: discord.Interaction[Any]) -> app_commands.CommandTree[Any]:
    return interaction.client.tree  # type: ignore[attr-defined]


def job_view(job_id: str, *actions: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(JobButton(action, job_id))
    return view


def result_view(job_id: str) -> discord.ui.View:
    return job_view(job_id, "reroll", "details", "delete")


def job_details(record: JobRecord) -> str:
    """Everything about a job, for its Details button."""
    lines = [f"**/{record.workflow}** · job `{record.id}` · {record.state.value}"]
    lines += [f"**{name}:** {discord.utils.escape_markdown(str(value))[:300]}" for name, value in record.values.items()]
    lines.append(f"**server:** {record.server or 'none yet'} · attempts {record.attempts}")
    lines.append(f"**started:** <t:{int(record.created_at)}:f> · last change <t:{int(record.updated_at)}:R>")
    if record.error:
        lines.append(f"**error:** {record.error}")
    return "\n".join(lines)[:MAX_CONTENT]


async def delete_result(interaction: discord.Interaction[Any], record: JobRecord) -> None:
    """Delete a result message for its requester or an admin."""
    if record.user_id != interaction.user.id and not await is_admin(interaction):
        raise InvalidInput("Only the member who asked for this result (or an admin) can delete it.")
    await interaction.response.send_message("Deleted.", ephemeral=True)
    if interaction.message is not None:
        await interaction.message.delete()


async def reroll(interaction: discord.Interaction[Any], record: JobRecord) -> None:
    """Run the same job again with a new seed."""
    bot: ComfyBot = interaction.client  # type: ignore[assignment]
    workflow = bot.catalog.workflows.get(record.workflow)
    if workflow is None:
        raise InvalidInput(f"/{record.workflow} is no longer available.")
    if any(p.type in (ParamType.IMAGE, ParamType.AUDIO) for p in workflow.params):
        raise InvalidInput("Re-roll is not available for jobs with attached files; run the command again.")
    given = {
        p.name: record.values[p.name]
        for p in workflow.params
        if p.type is not ParamType.SEED and p.name in record.values
    }
    cog = bot.get_cog("Generate")
    assert cog is not None
    await cog.start_job(interaction, workflow, given)  # type: ignore[attr-defined]


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
        case ParamType.IMAGE | ParamType.AUDIO:
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
    """Fetch attached images/audio (after the defer: a download may take longer than 3 s)."""
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


class TextForm(discord.ui.Modal):
    """Asks for the multi-line values a slash option cannot hold (lyrics and the like)."""

    def __init__(self, cog: Generate, workflow: Workflow, given: dict[str, Any], params: list[Param]) -> None:
        super().__init__(title=f"/{workflow.name}"[:45], timeout=15 * 60)
        self.cog, self.workflow, self.given = cog, workflow, given
        self.inputs: dict[str, discord.ui.TextInput[TextForm]] = {}
        for param in params[:5]:
            default = param.default if param.default is not None else workflow.current_value(param)
            field: discord.ui.TextInput[TextForm] = discord.ui.TextInput(
                label=param.name[:45],
                style=discord.TextStyle.paragraph,
                placeholder=param.description[:100],
                default=str(default or "")[:MODAL_TEXT_MAX],
                max_length=min(param.max_length or MODAL_TEXT_MAX, MODAL_TEXT_MAX),
                required=True,
            )
            self.inputs[param.name] = field
            self.add_item(field)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:  # type: ignore[override]
        given = {**self.given, **{name: field.value for name, field in self.inputs.items()}}
        await self.cog.start_job(interaction, self.workflow, given)

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception, /) -> None:  # type: ignore[override]
        await interaction.client.tree.on_error(interaction, error)  # type: ignore[attr-defined]


class JobMessage:
    """The one message a job owns: its progress while it runs, then its result.

    Edits go out at most every `interval` seconds. The interaction token dies after 15 minutes, so a
    long job switches to the bot token: the status message is edited through the channel and the result
    is posted as a new channel message that mentions the member.
    """

    def __init__(
        self, interaction: discord.Interaction[Any], header: str, interval: float, job_id: str | None = None
    ) -> None:
        self.interaction = interaction
        self.header = header
        self.interval = interval
        self.view = job_view(job_id, "cancel") if job_id else None
        self.message_id: int | None = None
        self.expired = False
        self._latest = ""
        self._shown = ""
        self._last_edit = 0.0
        self._task: asyncio.Task[None] | None = None

    def show(self, text: str) -> None:
        """Remember the newest state; an edit goes out now or as soon as the interval allows."""
        self._latest = text
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._latest != self._shown:  # states that arrive during an edit go out in the next round
            delay = self._last_edit + self.interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            text = self._shown = self._latest
            self._last_edit = time.monotonic()
            try:
                await self.edit_status(text, view=self.view)
            except discord.HTTPException as exc:
                log.info("status edit skipped: %s", exc)

    async def stop(self) -> None:
        """Drop a pending status edit (the result or an error message replaces it)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def finish(self, result: JobResult) -> None:
        """Turn the status message into the result: files (10 per message) and the parameters used."""
        await self.stop()
        mention, limit = self.interaction.user.mention, self.interaction.filesize_limit
        content, batches = await result_messages(result, mention, limit)
        first, *rest = batches
        view = result_view(result.job_id)
        if not await self._with_token(self._edit_original(content=content, attachments=_files(first), view=view)):
            # A new message notifies the member; the nonce makes a repeated send (after a restart) a no-op.
            await self._channel().send(content, files=_files(first), nonce=result.job_id[:25], view=view)
            await self.edit_status("Finished: the result is in the message below.", view=None)
        for batch in rest:
            if not await self._with_token(self.interaction.followup.send(files=_files(batch))):
                await self._channel().send(files=_files(batch))

    async def edit_status(self, text: str, *, view: discord.ui.View | None) -> None:
        """Show `text` under the header, with the bot token once the interaction's has expired."""
        content = f"{self.header}\n{text}"
        if not await self._with_token(self._edit_original(content=content, view=view)) and self.message_id:
            await self._channel().get_partial_message(self.message_id).edit(content=content, view=view)

    async def _edit_original(self, **fields: Any) -> None:
        message = await self.interaction.edit_original_response(**fields)
        if message is not None:
            self.message_id = message.id

    async def _with_token(self, call: Coroutine[Any, Any, Any]) -> bool:
        """Run `call` with the interaction token; False (and nothing sent) once that token has expired."""
        self.expired = self.expired or _token_expired(self.interaction)
        if self.expired:
            call.close()
            return False
        try:
            await call
        except discord.HTTPException as exc:
            if exc.code != INVALID_WEBHOOK_TOKEN:
                raise
            self.expired = True
            return False
        return True

    def _channel(self) -> ReplyChannel:
        channel = self.interaction.channel
        assert isinstance(channel, ReplyChannel), f"commands cannot run in {type(channel).__name__}"
        return channel


def _token_expired(interaction: discord.Interaction[Any]) -> bool:
    return (discord.utils.utcnow() - interaction.created_at).total_seconds() > TOKEN_LIFETIME


def _files(batch: list[OutputFile]) -> list[discord.File]:
    return [discord.File(io.BytesIO(f.data), filename=f.filename) for f in batch]


async def result_messages(result: JobResult, mention: str, limit: int) -> tuple[str, list[list[OutputFile]]]:
    """The result text (who asked, the options used, what was shrunk or left out) and the files, ten a batch.

    A file over the upload limit is re-encoded or scaled down to fit (in a thread: it is CPU work); one
    that cannot be made to fit is named with its size instead of failing the whole message.
    """
    lines = [f"**/{result.workflow}** for {mention} · {result.seconds:.1f} s"]
    for name, value in result.values.items():
        text = str(value)
        if "\n" in text or len(text) > 300:
            text = text.replace("\n", " / ")[:300] + ("…" if len(text) > 300 else "")
        lines.append(f"**{name}:** {discord.utils.escape_markdown(text)}")
    lines.extend(f"```\n{text[:500]}\n```" for text in result.texts)
    files: list[OutputFile] = []
    too_big: list[OutputFile] = []
    for file in result.files:
        fitted = await asyncio.to_thread(fit_file, file.filename, file.data, limit)
        if fitted is None:
            too_big.append(file)
            continue
        files.append(OutputFile(fitted.filename, fitted.data, file.node_id))
        if fitted.note:
            lines.append(f"{file.filename}: {fitted.note}.")
    if too_big:
        names = ", ".join(f"{f.filename} ({human_size(len(f.data))})" for f in too_big)
        lines.append(f"Too large for this server's {human_size(limit)} upload limit, so not attached: {names}")
    content = "\n".join(lines)
    if len(content) > MAX_CONTENT:
        content = content[: MAX_CONTENT - 1] + "…"
    return content, [files[i : i + MAX_FILES] for i in range(0, len(files), MAX_FILES)] or [[]]


async def deliver_to_channel(
    channel: discord.PartialMessageable, record: JobRecord, result: JobResult, mention: str
) -> None:
    """Deliver a job without its interaction (after a restart): turn its status message into the result.

    Editing is idempotent, so a delivery cut short by another restart is simply done again, never twice.
    """
    content, batches = await result_messages(result, mention, record.upload_limit or DEFAULT_UPLOAD_LIMIT)
    first, *rest = batches
    edited = False
    if record.message_id is not None:
        with contextlib.suppress(discord.NotFound):  # the status message may have been deleted meanwhile
            message = channel.get_partial_message(record.message_id)
            await message.edit(content=content, attachments=_files(first), view=result_view(record.id))
            edited = True
    if not edited:
        await channel.send(content, files=_files(first), nonce=record.id[:25], view=result_view(record.id))
    for index, batch in enumerate(rest, start=1):
        await channel.send(files=_files(batch), nonce=f"{record.id[:22]}-{index:02d}")


async def setup(bot: ComfyBot) -> None:
    await bot.add_cog(Generate(bot))

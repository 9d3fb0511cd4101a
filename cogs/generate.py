"""One slash command per loaded workflow (/image, /music, ...): options in, files out.

The cog only translates: Discord options -> core values -> Engine.run -> a status message and the files.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from core.errors import InvalidInput
from core.jobs.engine import JobResult, OutputFile
from core.workflows import Param, ParamType, Workflow
from core.workflows.model import MAX_SEED

if TYPE_CHECKING:
    from bot import ComfyBot

log = logging.getLogger(__name__)

TOKEN_LIFETIME = 14 * 60  # interaction tokens die at 15 minutes; switch to the bot token before that
MAX_FILES = 10
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
    """Registers a slash command for every workflow in the catalog."""

    def __init__(self, bot: ComfyBot) -> None:
        self.bot = bot
        self.commands = [self.build_command(w) for w in bot.catalog.workflows.values()]

    async def cog_load(self) -> None:
        for command in self.commands:
            self.bot.tree.add_command(command, override=True)

    async def cog_unload(self) -> None:
        for command in self.commands:
            self.bot.tree.remove_command(command.name)

    def build_command(self, workflow: Workflow) -> app_commands.Command[Any, ..., None]:
        """Make `/name` with one option per parameter (plus a file option for multi-line text)."""
        options = [_option(p) for p in workflow.params]
        # Python names are generated (p0, p1_file, ...) and renamed, so any Discord option name works.
        parameters = [inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        renames: dict[str, str] = {}
        descriptions: dict[str, str] = {}
        for index, (param, annotation, default) in enumerate(options):
            key = f"p{index}"
            parameters.append(
                inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
            )
            renames[key], descriptions[key] = param.name, _describe(param)
            if param.type is ParamType.MULTILINE:
                parameters.append(
                    inspect.Parameter(
                        f"{key}_file", inspect.Parameter.KEYWORD_ONLY, annotation=discord.Attachment, default=None
                    )
                )
                renames[f"{key}_file"] = f"{param.name}_file"
                descriptions[f"{key}_file"] = f"A .txt file with the {param.name} (for several lines)"

        async def callback(interaction: discord.Interaction[Any], **kwargs: Any) -> None:
            given = {p.name: kwargs.get(f"p{i}") for i, p in enumerate(workflow.params)}
            files = {p.name: kwargs.get(f"p{i}_file") for i, p in enumerate(workflow.params)}
            await self.invoke(interaction, workflow, given, files)

        callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        callback = app_commands.rename(**renames)(app_commands.describe(**descriptions)(callback))
        return app_commands.Command(name=workflow.name, description=workflow.description, callback=callback)

    async def invoke(
        self,
        interaction: discord.Interaction[Any],
        workflow: Workflow,
        given: dict[str, Any],
        files: dict[str, discord.Attachment | None],
    ) -> None:
        """Check the options, ask for missing multi-line text in a form, then run the job."""
        for name, attachment in files.items():
            if attachment is not None:
                given[name] = await _read_text_attachment(name, attachment)
        given = {k: v for k, v in given.items() if v is not None}
        workflow.resolve(given)  # refuse bad input now, before any form or job
        missing = [p for p in workflow.params if p.type is ParamType.MULTILINE and p.name not in given]
        if missing:
            await interaction.response.send_modal(TextForm(self, workflow, given, missing))
            return
        await self.start_job(interaction, workflow, given)

    async def start_job(self, interaction: discord.Interaction[Any], workflow: Workflow, given: dict[str, Any]) -> None:
        values = workflow.resolve(given)
        await interaction.response.defer(thinking=True)
        header = f"**/{workflow.name}** for {interaction.user.mention}"
        message = JobMessage(interaction, header, self.bot.status_edit_interval)
        message.show("Submitting…")
        try:
            result = await self.bot.engine.run(workflow, values, lambda p: message.show(p.describe()))
        finally:
            await message.stop()
        await message.finish(result)


def _option(param: Param) -> tuple[Param, Any, Any]:
    """The annotation discord.py turns into the option type and limits, and the default (None = optional)."""
    default = inspect.Parameter.empty if param.required else None
    if param.type in (ParamType.TEXT, ParamType.MULTILINE):
        return param, app_commands.Range[str, 1, param.max_length], default
    if param.type is ParamType.BOOL:
        return param, bool, default
    if param.type is ParamType.SEED:
        return param, app_commands.Range[int, 0, MAX_SEED], default
    kind = int if param.type is ParamType.INT else float
    if param.min is None and param.max is None:
        return param, kind, default
    return param, app_commands.Range[kind, param.min, param.max], default


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

    def __init__(self, interaction: discord.Interaction[Any], header: str, interval: float) -> None:
        self.interaction = interaction
        self.header = header
        self.interval = interval
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
                await self._edit_status(f"{self.header}\n{text}")
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
        content, batches = result_messages(result, self.interaction.user.mention, self.interaction.filesize_limit)
        first, *rest = batches
        if not await self._with_token(self._edit_original(content=content, attachments=_files(first))):
            await self._channel().send(content, files=_files(first))
            await self._edit_status(f"{self.header}\nFinished: the result is in the message below.")
        for batch in rest:
            if not await self._with_token(self.interaction.followup.send(files=_files(batch))):
                await self._channel().send(files=_files(batch))

    async def _edit_status(self, content: str) -> None:
        if not await self._with_token(self._edit_original(content=content)) and self.message_id is not None:
            await self._channel().get_partial_message(self.message_id).edit(content=content)

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


def result_messages(result: JobResult, mention: str, limit: int) -> tuple[str, list[list[OutputFile]]]:
    """The result text (who asked, the parameters used, what did not fit) and the files in batches of ten."""
    lines = [f"**/{result.workflow}** for {mention} · {result.seconds:.1f} s"]
    for name, value in result.values.items():
        text = str(value)
        if "\n" in text or len(text) > 300:
            text = text.replace("\n", " / ")[:300] + ("…" if len(text) > 300 else "")
        lines.append(f"**{name}:** {discord.utils.escape_markdown(text)}")
    lines.extend(f"```\n{text[:500]}\n```" for text in result.texts)
    too_big = [f for f in result.files if len(f.data) > limit]
    if too_big:
        names = ", ".join(f"{f.filename} ({_size(len(f.data))})" for f in too_big)
        lines.append(f"Too large for this server's {_size(limit)} upload limit, so not attached: {names}")
    content = "\n".join(lines)
    if len(content) > MAX_CONTENT:
        content = content[: MAX_CONTENT - 1] + "…"
    fitting = [f for f in result.files if len(f.data) <= limit]
    return content, [fitting[i : i + MAX_FILES] for i in range(0, len(fitting), MAX_FILES)] or [[]]


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{max(1, round(n / 1024))} KB"


async def setup(bot: ComfyBot) -> None:
    await bot.add_cog(Generate(bot))

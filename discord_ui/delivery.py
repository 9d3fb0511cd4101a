"""Delivering a job's result: the text, the files fitted to the upload limit, and batches Discord accepts.

A batch of pictures goes as one gallery message (Discord's Components v2: a container holding the pictures,
the text and the buttons) when RESULT_VIEW is `gallery`; anything else, or a gallery Discord refuses, goes
as classic attachments under the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import aiohttp.payload
import discord
from aiohttp.abc import AbstractStreamWriter

from core.community.safety import SPOILERED, WITHHELD, ImageAction, ImageScreen
from core.config import DEFAULT_MAX_IMAGE_PIXELS
from core.errors import OutputTooLarge
from core.i18n import Lines, Text, localize
from core.jobs.engine import JobResult, OutputFile
from core.jobs.store import JobRecord
from core.media import Fitted, fit_file, human_size
from core.workflows import Workflow
from discord_ui.buttons import FollowupButton, result_view
from discord_ui.messages import (
    MAX_FILES,
    MORE_NOT_DOWNLOADED,
    TOO_LARGE,
    cap,
    channel_send,
    edit_message,
    header,
    option_lines,
)

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 2**20  # Discord's per-file limit for servers without boosts
# Discord refuses a request over 25 MiB (413); keep room for the text and the multipart envelope.
REQUEST_LIMIT = 25 * 2**20 - 2**20
MAX_TEXT_OUTPUT = 500  # characters of a text output shown in a code block
MAX_SKIPPED_SHOWN = 10  # outputs over the caps named one per line; the rest are counted
MAX_LINE = 300  # characters of one line about one file
RESULT_HEADER = Text("{header} · {seconds:.1f} s")
SHRUNK = Text("{filename}: {note}.")


READ_WHOLE = 8 * 2**20  # output files up to this size are uploaded from memory, larger ones streamed

ResultView = Literal["gallery", "classic"]  # RESULT_VIEW
# Components v2 limits (https://discord.com/developers/docs/components/reference#media-gallery and "the
# combined length of all text across all components cannot exceed 4000 characters").
MAX_GALLERY_ITEMS = 10
MAX_V2_TEXT = 4000
BUTTONS_PER_ROW = 5
INVALID_FORM_BODY = 50035  # Discord's answer to a payload it refuses, components included
# Discord rewrites other characters of an uploaded file's name, and an attachment:// reference must name the
# file as Discord stores it: gallery uploads keep only these.
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
# What posts a result: (text or None, files, view); the callers wrap an interaction edit or a channel send.
Post = Callable[[str | None, list[discord.File], discord.ui.View | discord.ui.LayoutView], Awaitable[Any]]


def batches(files: list[OutputFile], limit: int) -> list[list[OutputFile]]:
    """Split files into messages of at most ten files and at most one request's worth of bytes each.

    Every file already fits the per-file `limit`, so each one fits a message of its own.
    """
    budget = max(limit, REQUEST_LIMIT)
    out: list[list[OutputFile]] = []
    size = 0
    for file in files:
        if not out or len(out[-1]) >= MAX_FILES or size + file.size > budget:
            out.append([])
            size = 0
        out[-1].append(file)
        size += file.size
    return out or [[]]


def as_files(batch: list[OutputFile]) -> list[discord.File]:
    """Wrap output files as attachments for one message.

    A file in memory goes as it is. A small one on disk is read whole (a batch is within one request's size,
    so memory stays bounded): streaming it would cost a thread hop per chunk read. A large one is read from
    its file as it is sent, in chunks.
    """
    return [discord.File(_upload_source(f), filename=f.filename) for f in batch]


def gallery_fits(batches_: list[list[OutputFile]]) -> bool:
    """Whether a result can be one gallery message: one batch of 1 to 10 pictures and nothing else."""
    if len(batches_) != 1:
        return False
    files = batches_[0]
    return 1 <= len(files) <= MAX_GALLERY_ITEMS and all(f.kind == "image" for f in files)


def gallery_files(batch: list[OutputFile]) -> list[discord.File]:
    """The batch as attachments whose names an attachment:// reference can name exactly (unique, plain ASCII)."""
    files = as_files(batch)
    seen: set[str] = set()
    for index, file in enumerate(files):
        name = _UNSAFE_NAME.sub("_", file.filename)
        if name.lower() in seen:
            name = f"{index}_{name}"
        seen.add(name.lower())
        file.filename = name  # a SPOILER_ prefix survives, and with it the picture's blur
    return files


def gallery_view(
    job_id: str,
    content: str,
    files: list[discord.File],
    *,
    locale: object,
    followups: Sequence[FollowupButton] = (),
) -> discord.ui.LayoutView:
    """One container: the pictures as a gallery, the result's text, then the result's buttons in rows.

    The buttons are result_view's (whatever it offers), moved into action rows: five a row, or the rows
    result_view gave them.
    """
    text = cap(localize(content, locale), MAX_V2_TEXT)
    container = discord.ui.Container[discord.ui.LayoutView](
        discord.ui.MediaGallery(*(discord.MediaGalleryItem(f) for f in files)),
        discord.ui.TextDisplay(text),
    )
    rows: dict[int, list[discord.ui.Item[Any]]] = {}
    for index, item in enumerate(result_view(job_id, locale=locale, followups=followups).children):
        rows.setdefault(item.row if item.row is not None else index // BUTTONS_PER_ROW, []).append(item)
    for _, items in sorted(rows.items()):
        for start in range(0, len(items), BUTTONS_PER_ROW):
            container.add_item(discord.ui.ActionRow(*items[start : start + BUTTONS_PER_ROW]))
    view = discord.ui.LayoutView(timeout=None)
    view.add_item(container)
    return view


async def post_result(
    post: Post,
    job_id: str,
    content: str,
    batches_: list[list[OutputFile]],
    *,
    locale: object,
    style: ResultView,
    followups: Sequence[FollowupButton] = (),
) -> None:
    """Post the result's first message with `post`: as a gallery where it fits, else (or if refused) classic.

    A refused gallery is Discord's 400 on the payload (a server or client without Components v2, a limit):
    the message is unchanged then, so the classic version is posted in its place. Other errors (the token
    expired, the message deleted) are the caller's, who posts elsewhere.
    """
    first = batches_[0]
    if style == "gallery" and gallery_fits(batches_):
        files = gallery_files(first)
        try:
            await post(None, files, gallery_view(job_id, content, files, locale=locale, followups=followups))
            return
        except discord.HTTPException as exc:
            if exc.status != 400:
                raise
            log.warning("Discord refused the gallery of job %s (%s %s); posting it as attachments",
                        job_id, exc.code, exc.text)  # fmt: skip
    await post(content, as_files(first), result_view(job_id, locale=locale, followups=followups))


def _upload_source(file: OutputFile) -> io.BytesIO | Path:
    if file.data is not None or file.size <= READ_WHOLE:
        return InMemory(file.read())
    assert file.path is not None
    return file.path


class InMemory(io.BytesIO):
    """An attachment's bytes, which aiohttp sends as they are (see _InMemoryPayload), freed once sent."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.data = data

    def __setattr__(self, name: str, value: Any) -> None:
        # discord.File stubs out `close` while it sends and then sets it back to this object's own bound
        # method: kept in the instance, that bound method is a reference cycle, which holds the bytes until
        # a full garbage collection (after 500 jobs in flight, ~500 MB). Dropping the stub does the same.
        if name == "close" and getattr(value, "__self__", None) is self:
            vars(self).pop("close", None)
            return
        super().__setattr__(name, value)


class _InMemoryPayload(aiohttp.payload.Payload):
    """Sends an InMemory in one write: aiohttp's own payload for a BytesIO copies it first (getbuffer) and
    then writes 64 KB per turn of the event loop, which made up a tenth of the bot's CPU time per job."""

    _autoclose = True  # nothing to close

    def __init__(self, value: InMemory, *args: Any, **kwargs: Any) -> None:
        super().__init__(value.data, *args, **kwargs)
        self._size = len(value.data)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self._value.decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await writer.write(self._value)


aiohttp.payload.register_payload(_InMemoryPayload, InMemory)


def age_restricted(channel: object) -> bool:
    """Whether `channel` is marked age-restricted: a thread as its parent; a DM or an unknown channel is not."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(callable(is_nsfw) and is_nsfw())


def screen_for(screen: ImageScreen | None, channel: object) -> ImageScreen | None:
    """The image check to apply to results posted in `channel`: none in age-restricted channels."""
    return None if screen is None or age_restricted(channel) else screen


async def screened(files: list[OutputFile], screen: ImageScreen, lines: list[str]) -> list[OutputFile]:
    """The files to upload once every image was checked: a flagged one spoilered or withheld (named in `lines`)."""
    kept = []
    for file in files:
        flagged = file.kind == "image" and await screen.flagged(file.filename, await asyncio.to_thread(file.read))
        if not flagged:
            kept.append(file)
        elif screen.action is ImageAction.WITHHOLD:
            lines.append(WITHHELD.format(filename=cap(file.filename, 100)))
        else:
            lines.append(SPOILERED.format(filename=cap(file.filename, 100)))
            # Discord shows an attachment named SPOILER_* blurred: what discord.File(spoiler=True) does.
            kept.append(dataclasses.replace(file, filename=f"SPOILER_{file.filename}"))
    return kept


async def result_messages(
    result: JobResult,
    user_id: int | None,
    limit: int,
    *,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    screen: ImageScreen | None = None,
    workflow: Workflow | None = None,
) -> tuple[str, list[list[OutputFile]]]:
    """The result text (who asked, the options used, what was shrunk or left out) and the files in batches.

    A file over the upload limit is re-encoded or scaled down to fit (in a thread: it is CPU work); one
    that cannot be made to fit, or a picture too large to decode (over `max_image_pixels`), is named with
    its size instead of failing the whole message. So are the outputs the engine did not download (over
    MAX_OUTPUTS_PER_JOB, MAX_JOB_OUTPUT_MB or MAX_OUTPUT_MB), at most MAX_SKIPPED_SHOWN of them. A shrunk
    version is a file beside its source, in the job's folder: it goes when the result is discarded. With a
    `screen`, the images that will be uploaded are checked first (see `screened`). `workflow` names the
    options as the reader's Discord does.
    """
    lines: list[str] = [RESULT_HEADER.format(header=header(result.workflow, user_id), seconds=result.seconds)]
    lines += option_lines(result.values, workflow)
    lines += [f"```\n{cap(text, MAX_TEXT_OUTPUT).replace('```', 'ʼʼʼ')}\n```" for text in result.texts]
    files: list[OutputFile] = []
    too_big: list[OutputFile] = []
    for index, file in enumerate(result.files):
        if file.size <= limit:
            files.append(file)
            continue
        try:
            fitted = await asyncio.to_thread(_fit, result, index, limit, max_image_pixels)
        except OutputTooLarge as exc:
            lines.append(_line(exc.user_message))
            continue
        if fitted is None:
            too_big.append(file)
            continue
        files.append(OutputFile(fitted.filename, fitted.path, fitted.size, file.node_id))
        if fitted.note:
            lines.append(SHRUNK.format(filename=cap(file.filename, 100), note=fitted.note))
    if too_big:
        names = ", ".join(f"{cap(f.filename, 100)} ({human_size(f.size)})" for f in too_big)
        lines.append(TOO_LARGE.format(limit=human_size(limit), names=names))
    if screen is not None:
        files = await screened(files, screen, lines)
    lines += [_line(line) for line in result.skipped[:MAX_SKIPPED_SHOWN]]
    if len(result.skipped) > MAX_SKIPPED_SHOWN:
        lines.append(MORE_NOT_DOWNLOADED.format(count=len(result.skipped) - MAX_SKIPPED_SHOWN))
    return Lines(lines), batches(files, limit)


def _line(text: str) -> str:
    """A line about one file, capped; a sentence of the bot is kept whole (capping would drop its translation)."""
    return text if isinstance(text, Text | Lines) else cap(text, MAX_LINE)


def _fit(result: JobResult, index: int, limit: int, max_image_pixels: int) -> Fitted | None:
    """Fit the result's file number `index` (see fit_file), first writing it to the job's folder if it is in memory."""
    file = result.files[index]
    source = file.path
    if source is None:  # fitting reads from disk
        assert file.data is not None and result.scratch is not None, "outputs in memory come with their scratch"
        source = result.scratch.folder() / f"in-memory-{index}"
        source.write_bytes(file.data)
    return fit_file(file.filename, source, limit, max_image_pixels=max_image_pixels)


async def deliver_to_channel(
    channel: discord.PartialMessageable,
    record: JobRecord,
    result: JobResult,
    *,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    screen: ImageScreen | None = None,
    style: ResultView = "gallery",
    workflow: Workflow | None = None,
    followups: Sequence[FollowupButton] = (),
) -> list[int]:
    """Deliver a job without its interaction (after a restart): turn its status message into the result.

    Editing is idempotent, so a delivery cut short by another restart is simply done again, never twice.
    A status message deleted meanwhile is replaced by a new message. Returns the ids of the further messages,
    when the files took more than one (as JobMessage.finish does).
    """
    limit = record.upload_limit or DEFAULT_UPLOAD_LIMIT
    content, parts = await result_messages(
        result, record.user_id, limit, max_image_pixels=max_image_pixels, screen=screen, workflow=workflow
    )
    ping = discord.Object(record.user_id) if record.user_id else None
    shown: dict[str, Any] = {"locale": record.locale, "style": style, "followups": followups}
    edited = False
    if record.message_id is not None:
        message = channel.get_partial_message(record.message_id)

        async def edit(text: str | None, files: list[discord.File], view: Any) -> None:
            await edit_message(message, text, ping=ping, locale=record.locale, attachments=files, view=view)

        with contextlib.suppress(discord.NotFound):  # the status message may have been deleted meanwhile
            await post_result(edit, record.id, content, parts, **shown)
            edited = True
    if not edited:

        async def send(text: str | None, files: list[discord.File], view: Any) -> None:
            await channel_send(
                channel, text, ping=ping, locale=record.locale, files=files, nonce=record.id[:25], view=view
            )

        await post_result(send, record.id, content, parts, **shown)
    more: list[int] = []
    for index, batch in enumerate(parts[1:], start=1):
        more.append((await channel_send(channel, files=as_files(batch), nonce=f"{record.id[:22]}-{index:02d}")).id)
    return more


async def tell_in_channel(channel: discord.PartialMessageable, record: JobRecord, text: str) -> None:
    """Show how a job ended without its interaction: on its status message, or a new one if that is gone."""
    content = Lines((header(record.workflow, record.user_id), text))
    if record.message_id is not None:
        try:
            message = channel.get_partial_message(record.message_id)
            await edit_message(message, content, locale=record.locale, view=None, attachments=[])
            return
        except discord.NotFound:
            log.info("status message of job %s is gone; telling the member in a new message", record.id)
    await channel_send(channel, content, locale=record.locale, nonce=record.id[:25])

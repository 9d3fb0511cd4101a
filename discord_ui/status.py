"""A job's status message and the one scheduler that paces every status edit of the bot."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import discord

from core.community.safety import ImageScreen
from core.config import DEFAULT_MAX_IMAGE_PIXELS
from core.errors import BotError, InvalidInput
from core.i18n import Lines, Text
from core.jobs.engine import BEING_SUBMITTED, JobResult, OutputFile, Progress
from core.workflows import Workflow
from discord_ui.buttons import FollowupButton, status_view
from discord_ui.delivery import InMemory, ResultView, as_files, post_result, result_messages
from discord_ui.errors import report_error
from discord_ui.messages import (
    CANCELLED,
    FAILED,
    INVALID_WEBHOOK_TOKEN,
    RESULT_BELOW,
    SUBMITTING,
    UNKNOWN_MESSAGE,
    ReplyChannel,
    bot_reaches,
    channel_send,
    edit_message,
    edit_original,
    followup,
    header,
    is_unknown_interaction,
)

log = logging.getLogger(__name__)

TOKEN_LIFETIME = 14 * 60  # interaction tokens die at 15 minutes; switch to the bot token before that
CANCEL_RETRY = 1.0  # a job moving from the bot's queue to a server's cannot be cancelled for that moment
DEFAULT_PREVIEW_SECONDS = 3.0
# Edits started in one turn of the event loop: the first step of each (building the message and its buttons,
# sending the request) runs in the next turn, and hundreds of first statuses falling due together held the
# loop for 100 ms at once; the others start in the turns after.
EDITS_PER_TURN = 16
# Where only the interaction reaches (a group DM, a server without the bot): said once, before its token dies,
# and recorded as why the job was cancelled
CUT_OFF = Text(
    "This job was stopped: Discord lets the bot answer here for 15 minutes only. Run long jobs in a server with "
    "the bot or in a DM with the bot."
)


class Edit(Protocol):
    """Edit a status message to `text`; with `preview`, that image replaces its attachments (else they stay)."""

    def __call__(self, text: str, preview: bytes | None = None, /) -> Awaitable[None]: ...


@dataclass(eq=False, slots=True)
class _Status:
    write: Edit
    latest: str
    queued: bool
    first_at: float  # the first edit waits until then: a job done sooner needs none
    shown: str | None = None
    last_edit: float = -math.inf
    in_flight: asyncio.Task[None] | None = None
    preview: bytes | None = field(default=None, repr=False)  # the newest preview image not shown yet
    last_preview: float = -math.inf  # when a preview image was last sent

    @property
    def waiting(self) -> bool:
        changed = self.latest != self.shown or self.preview is not None
        return changed and (self.in_flight is None or self.in_flight.done())

    def due(self, interval: float, preview_interval: float) -> float:
        """Tell when this message may be edited next: a new image alone waits for its own interval too."""
        due = max(self.first_at, self.last_edit + interval)
        if self.latest == self.shown:
            due = max(due, self.last_preview + preview_interval)
        return due


class StatusScheduler:
    """Paces status edits: each job's message at most once per `interval` seconds, newest state wins.

    A job's first status waits `first_delay` seconds. Discord already shows "<bot> is thinking…" from
    the deferred answer on, so a status replaced by the result within a second is one REST request for
    nothing: a job whose result, failure or cancel comes sooner never gets a status edit (the defer and
    the result, two requests). A longer job shows its newest state once `first_delay` has passed, so its
    Cancel button appears only then.

    Queue positions change for every waiting job whenever one job moves on, so with a long queue they
    would cost edits in proportion to its length squared. After a job's first status, position changes
    therefore share one budget of `queue_rate` edits per second for the whole bot: how many edits a job
    gets while waiting no longer depends on how many jobs wait. Progress of running jobs is not rationed.

    A preview image (a picture of the work in progress) goes with an edit at most once per
    `preview_interval` seconds per message; only the newest image waits, the ones it replaced are dropped.
    An edit of the text in between leaves the last image shown as it is.
    """

    def __init__(
        self,
        interval: float = 2.0,
        queue_rate: float = 2.0,
        *,
        first_delay: float = 1.0,
        preview_interval: float = DEFAULT_PREVIEW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.interval = interval
        self.queue_rate = queue_rate
        self.first_delay = first_delay
        self.preview_interval = preview_interval
        self._clock, self._sleep = clock, sleep
        self._statuses: dict[str, _Status] = {}
        self._tokens = self._burst = max(1.0, queue_rate)
        self._refilled = clock()
        self._wake = asyncio.Event()
        self._next_at = -math.inf  # when the edit loop wakes up by itself next
        self._runner: asyncio.Task[None] | None = None

    def show(self, key: str, text: str, edit: Edit, *, queued: bool = False, preview: bytes | None = None) -> None:
        """Remember the newest state of `key`'s message (and its newest preview image, if given); it goes out
        as soon as the pacing allows."""
        status = self._statuses.get(key)
        if status is None:
            status = self._statuses[key] = _Status(edit, text, queued, self._clock() + self.first_delay)
        else:
            status.write, status.latest, status.queued = edit, text, queued
        if preview is not None:
            status.preview = preview  # an older one not shown yet is dropped: only the newest matters
        # Progress comes many times a second per job: the loop looks at every message when woken, so it is
        # woken only when this one is due before it would wake anyway.
        if status.due(self.interval, self.preview_interval) < self._next_at:
            self._wake.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="status edits")

    async def drop(self, key: str) -> None:
        """Forget `key`: a pending edit is dropped and one in flight cancelled (the result replaces it)."""
        status = self._statuses.pop(key, None)
        if status is not None and status.in_flight is not None and not status.in_flight.done():
            status.in_flight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await status.in_flight

    async def close(self) -> None:
        """Drop every pending status edit and stop the edit loop."""
        for key in list(self._statuses):
            await self.drop(key)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    async def _run(self) -> None:
        while True:
            waiting = [s for s in self._statuses.values() if s.waiting]
            busy = any(s.in_flight is not None and not s.in_flight.done() for s in self._statuses.values())
            if not waiting and not busy:
                return
            now = self._clock()
            if math.isfinite(self.queue_rate):
                self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self.queue_rate)
            self._refilled = now
            next_at = math.inf
            rationed: list[_Status] = []
            started = 0
            for status in waiting:
                if (due := status.due(self.interval, self.preview_interval)) > now:
                    next_at = min(next_at, due)
                    continue
                if status.queued and status.shown is not None:
                    rationed.append(status)
                elif started < EDITS_PER_TURN:
                    self._start(status, now)
                    started += 1
                else:
                    next_at = now  # due as well: started in the next turn
            if rationed:
                # The longest-unchanged messages go first; the rest wait for the budget to refill (or for
                # the next turn, when this one's edits are used up: then the budget left makes next_at now).
                budget = min(self._tokens, len(rationed), EDITS_PER_TURN - started)
                chosen = heapq.nsmallest(int(budget), rationed, key=lambda s: s.last_edit)
                for status in chosen:
                    self._tokens -= 1
                    self._start(status, now)
                if len(chosen) < len(rationed):
                    next_at = min(next_at, now + max(1 - self._tokens, 0.0) / self.queue_rate)
            await self._nap(next_at - now)

    def _start(self, status: _Status, now: float) -> None:
        status.shown, status.last_edit = status.latest, now
        preview = None
        if status.preview is not None and now >= status.last_preview + self.preview_interval:
            preview, status.preview, status.last_preview = status.preview, None, now
        status.in_flight = asyncio.create_task(self._edit(status, status.latest, preview))

    async def _edit(self, status: _Status, text: str, preview: bytes | None) -> None:
        try:
            await (status.write(text) if preview is None else status.write(text, preview))
        except discord.HTTPException as exc:
            log.info("status edit skipped: %s", exc)
        finally:
            self._wake.set()

    async def _nap(self, seconds: float) -> None:
        """Sleep until `seconds` pass or something new is shown or an edit finishes."""
        self._next_at = self._clock() + seconds
        self._wake.clear()
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        sleeper = asyncio.ensure_future(self._sleep(seconds if math.isfinite(seconds) else 3600.0))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()


async def _noting_id(ids: list[int], send: Callable[[], Awaitable[discord.abc.Snowflake]]) -> None:
    """Send, and note the id of the message sent (`send` is called only when this runs: closed unsent, it sends
    nothing and leaves no coroutine never awaited)."""
    ids.append((await send()).id)


class JobMessage:
    """The one message a job owns: its progress while it runs, then its result or why it ended.

    It starts as the interaction's deferred answer. The interaction token dies after 15 minutes, so a
    long job switches to the bot token: the status message is edited through the channel and the result
    is posted as a new channel message that mentions the member. If Discord gave up on the interaction
    before the bot could answer it (10062), the status message is a channel message from the start.
    """

    def __init__(
        self,
        interaction: discord.Interaction[Any],
        command: str,
        scheduler: StatusScheduler,
        *,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        previews: bool = True,
        result_style: ResultView = "gallery",
        workflow: Workflow | None = None,
        cancel: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.interaction = interaction
        self.command = command
        self.scheduler = scheduler
        self.max_image_pixels = max_image_pixels  # MAX_IMAGE_PIXELS: larger pictures are named, not decoded
        self.result_style: ResultView = result_style  # RESULT_VIEW: pictures as a gallery, or classic
        self.workflow = workflow  # names the result's options as the member's Discord does
        self.header = header(command, interaction.user.id)
        self.job_id: str | None = None
        self.view: discord.ui.View | None = None  # its Cancel button, built for the first status edit
        self.message_id: int | None = None
        self.expired = False  # the interaction's token can no longer be used
        self.deleted = False  # someone deleted the status message
        # Show the server's preview images (not where results are screened: previews would skip the check)
        self.previews = previews
        self.previewed = False  # the status message carries a preview image, to be removed when the job ends
        # Cancels a job through the engine (as its Cancel button does): the cut-off stops a job it cannot deliver
        self._cancel = cancel
        self._give_up: asyncio.TimerHandle | None = None  # when the token is given up, before it dies
        self._cutting: asyncio.Task[None] | None = None
        self.cut_off = False  # the job was stopped because its result could not have been posted
        self._ended = False

    async def open(self) -> None:
        """Answer the interaction with "thinking…" (or a channel message if it expired); note the message id."""
        try:
            answer = await self.interaction.response.defer(thinking=True)
        except discord.NotFound as exc:
            if not is_unknown_interaction(exc):
                raise
            log.warning("/%s: interaction %s expired before the bot's first answer; the job goes on in the channel",
                        self.command, self.interaction.id)  # fmt: skip
            self.expired = True
            message = await channel_send(self._channel(), self.under_header(SUBMITTING), locale=self.interaction.locale)
            self.message_id = message.id
            return
        # Discord names the "thinking" message in its answer to the defer: no second request to learn its id.
        message_id = answer.message_id if answer is not None else None
        self.message_id = message_id or (await self.interaction.original_response()).id
        # Counted from the interaction, as Discord counts the token's life, not from this answer
        age = (discord.utils.utcnow() - self.interaction.created_at).total_seconds()
        self._give_up = asyncio.get_running_loop().call_later(max(0.0, TOKEN_LIFETIME - age), self._give_up_token)

    def attach(self, job_id: str) -> None:
        """Tie the message to its job: its Cancel button and its place in the scheduler."""
        self.job_id = job_id

    def show(self, text: str, *, queued: bool = False, preview: bytes | None = None) -> None:
        """Show `text` (and the preview image, if any) under the header as soon as the scheduler allows."""
        key = self.job_id or str(id(self))
        self.scheduler.show(key, text, self._edit_progress, queued=queued, preview=preview)

    def progress(self, progress: Progress) -> None:
        """Show the job's progress (queued or running) and its newest preview image on its status message."""
        queued = progress.waiting is not None or progress.position is not None
        self.show(progress.describe(), queued=queued, preview=progress.preview if self.previews else None)

    async def _edit_progress(self, text: str, preview: bytes | None = None) -> None:
        await self.edit_status(text, view=self._cancel_view(), preview=preview)

    def _cancel_view(self) -> discord.ui.View | None:
        if self.view is None and self.job_id is not None:
            # Not before: a job done within first_delay never shows it. Labelled for the requester, who sees it.
            self.view = status_view(self.job_id, locale=self.interaction.locale)
        return self.view

    async def stop(self) -> None:
        """Drop a pending status edit (the result or an error message replaces it)."""
        self._ended = True
        if self._give_up is not None:
            self._give_up.cancel()
        await self.scheduler.drop(self.job_id or str(id(self)))

    def _give_up_token(self) -> None:
        """Stop using the interaction token before it dies: the bot's own takes over, or the job is cut off.

        The only clock of the token's life: until now the token serves, also to tell a failure.
        """
        if self._reachable():
            self.expired = True
        else:
            self._cutting = asyncio.create_task(self._cut_off_job(), name=f"cut off {self.command}")

    async def _cut_off_job(self) -> None:
        """Say, while the token still works, that the job is stopped; then cancel it (the token is not used after)."""
        self.expired = self.cut_off = True  # first: a status edit on its way must not replace this one
        await self.scheduler.drop(self.job_id or str(id(self)))
        log.warning(
            "/%s for %s: still running after %d s where only the interaction reaches; cancelling it, as its result "
            "could not be posted",
            self.command,
            self.interaction.user.id,
            TOKEN_LIFETIME,
        )
        text = self.under_header(CUT_OFF)
        with contextlib.suppress(discord.HTTPException):
            await edit_original(self.interaction, text, view=None, **self._attachments(None, drop_preview=True))
        await self._cancel_job()

    async def _cancel_job(self) -> None:
        """Cancel the job through the engine; again while it moves from the bot's queue to a server's."""
        while self._cancel is not None and not self._ended:
            if self.job_id is not None:  # else its attachments are still being downloaded
                try:
                    await self._cancel(self.job_id)
                    return
                except InvalidInput as exc:
                    if exc.user_message != BEING_SUBMITTED:
                        return  # its member is cancelling it already
                except BotError as exc:  # the server is out of reach: the engine stops the job when it answers
                    log.warning("cut-off job %s not cancelled: %s", self.job_id, exc.detail or exc.user_message)
                    return
            await asyncio.sleep(CANCEL_RETRY)

    async def cancelled(self) -> None:
        """Drop a pending status edit and mark the status message as cancelled."""
        await self.stop()
        await self.edit_status(CANCELLED, view=None, drop_preview=True)

    async def fail(self, error: BotError) -> None:
        """Tell the member why the job ended: privately through the interaction, else on the status message."""
        await self.stop()
        if self.expired:
            log.info("/%s failed for %s: %s | %s", self.command, self.interaction.user.id,
                     error.user_message, error.detail or "")  # fmt: skip
            if not self._reachable():
                return  # CUT_OFF told the member
            text, locale = FAILED.format(reason=error.user_message), self.interaction.locale
            if not self.deleted and self.message_id is not None:
                with contextlib.suppress(discord.NotFound):
                    await edit_message(
                        self._partial(), self.under_header(text), locale=locale, view=None, attachments=[]
                    )
                    return
            await channel_send(self._channel(), self.under_header(text), ping=self.interaction.user, locale=locale)
            return
        await report_error(self.interaction, error, command=self.command)

    async def finish(
        self, result: JobResult, *, screen: ImageScreen | None = None, followups: Sequence[FollowupButton] = ()
    ) -> list[int]:
        """Turn the status message into the result: files in batches, the parameters used and its buttons.

        Returns the ids of the further messages, when the files took more than one.
        """
        await self.stop()
        user, limit, locale = self.interaction.user, self.interaction.filesize_limit, self.interaction.locale
        content, batches = await result_messages(
            result, user.id, limit, max_image_pixels=self.max_image_pixels, screen=screen, workflow=self.workflow
        )

        async def edit(text: str | None, files: list[discord.File], view: Any) -> None:
            await edit_original(self.interaction, text, ping=user, attachments=files, view=view)

        async def send(text: str | None, files: list[discord.File], view: Any) -> None:
            # A new message notifies the member; the nonce makes a repeated send (after a restart) a no-op.
            nonce = result.job_id[:25]
            await channel_send(self._channel(), text, ping=user, locale=locale, files=files, nonce=nonce, view=view)

        shown = {"locale": locale, "style": self.result_style, "followups": followups}
        if not await self._with_token(post_result(edit, result.job_id, content, batches, **shown)):
            if not self._reachable():
                log.warning("result of job %s not posted: Discord lets the bot answer only through the interaction "
                            "there, and its token has expired", result.job_id)  # fmt: skip
                return []
            await post_result(send, result.job_id, content, batches, **shown)
            await self.edit_status(RESULT_BELOW, view=None, drop_preview=True)
        more: list[int] = []
        for batch in batches[1:]:
            if not await self._with_token(_noting_id(more, functools.partial(self._followup, batch))):
                more.append((await channel_send(self._channel(), files=as_files(batch))).id)
        return more

    async def _followup(self, batch: list[OutputFile]) -> discord.WebhookMessage:
        return await followup(self.interaction, files=as_files(batch))

    async def edit_status(
        self, text: str, *, view: discord.ui.View | None, preview: bytes | None = None, drop_preview: bool = False
    ) -> None:
        """Show `text` under the header, with the bot token once the interaction's has expired.

        `preview` replaces the message's attachments with that image; `drop_preview` removes a preview shown.
        """
        content = self.under_header(text)
        if preview is not None:
            self.previewed = True  # already: an edit cancelled on its way (the job ended) may have reached Discord
        edit = edit_original(self.interaction, content, view=view, **self._attachments(preview, drop_preview))
        if await self._with_token(edit):
            self.previewed = self.previewed and not drop_preview
            return
        if self.message_id is not None and not self.deleted and self._reachable():
            try:
                extra = self._attachments(preview, drop_preview)  # a File is spent once sent: a new one
                await edit_message(self._partial(), content, locale=self.interaction.locale, view=view, **extra)
                self.previewed = self.previewed and not drop_preview
            except discord.NotFound:
                log.info("status message of /%s was deleted; no more status edits", self.command)
                self.deleted = True

    def _attachments(self, preview: bytes | None, drop_preview: bool) -> dict[str, Any]:
        """The attachments of a status edit: the preview image, none (a preview shown goes), or unchanged."""
        if preview is not None:
            return {"attachments": [discord.File(InMemory(preview), filename=preview_name(preview))]}
        if drop_preview and self.previewed:
            return {"attachments": []}
        return {}

    def under_header(self, text: str) -> Lines:
        return Lines((self.header, text))

    def _reachable(self) -> bool:
        """Whether the bot's own token can take over where the command ran, once the interaction's is gone."""
        return bot_reaches(self.interaction)

    async def _with_token(self, call: Coroutine[Any, Any, Any]) -> bool:
        """Run `call` with the interaction token; False (nothing sent) once that token or the message is gone."""
        if self.expired or self.deleted:
            call.close()
            return False
        try:
            await call
        except discord.HTTPException as exc:
            if exc.code == INVALID_WEBHOOK_TOKEN:
                self.expired = True
            elif exc.code == UNKNOWN_MESSAGE:
                log.info("status message of /%s was deleted; the result goes to a new message", self.command)
                self.deleted = True
            else:
                raise
            return False
        return True

    def _partial(self) -> discord.PartialMessage:
        assert self.message_id is not None
        return self._channel().get_partial_message(self.message_id)

    def _channel(self) -> ReplyChannel:
        channel = self.interaction.channel
        assert isinstance(channel, ReplyChannel), f"commands cannot run in {type(channel).__name__}"
        return channel


def preview_name(image: bytes) -> str:
    """The file name a preview image is attached under: ComfyUI sends JPEG (samplers) or PNG."""
    return "preview.jpg" if image.startswith(b"\xff\xd8") else "preview.png"

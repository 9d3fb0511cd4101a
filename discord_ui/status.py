"""A job's status message and the one scheduler that paces every status edit of the bot."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import discord

from core.community.safety import ImageScreen
from core.config import DEFAULT_MAX_IMAGE_PIXELS
from core.errors import BotError
from core.i18n import Lines
from core.jobs.engine import JobResult, Progress
from discord_ui.buttons import status_view
from discord_ui.delivery import ResultView, as_files, post_result, result_messages
from discord_ui.errors import report_error
from discord_ui.messages import (
    CANCELLED,
    FAILED,
    INVALID_WEBHOOK_TOKEN,
    RESULT_BELOW,
    SUBMITTING,
    UNKNOWN_MESSAGE,
    ReplyChannel,
    channel_send,
    edit_message,
    edit_original,
    followup,
    header,
    is_unknown_interaction,
)

log = logging.getLogger(__name__)

TOKEN_LIFETIME = 14 * 60  # interaction tokens die at 15 minutes; switch to the bot token before that

Edit = Callable[[str], Awaitable[None]]


@dataclass(eq=False, slots=True)
class _Status:
    write: Edit
    latest: str
    queued: bool
    first_at: float  # the first edit waits until then: a job done sooner needs none
    shown: str | None = None
    last_edit: float = -math.inf
    in_flight: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> bool:
        return self.latest != self.shown and (self.in_flight is None or self.in_flight.done())

    def due(self, interval: float) -> float:
        """Tell when this message may be edited next."""
        return max(self.first_at, self.last_edit + interval)


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
    """

    def __init__(
        self,
        interval: float = 2.0,
        queue_rate: float = 2.0,
        *,
        first_delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.interval = interval
        self.queue_rate = queue_rate
        self.first_delay = first_delay
        self._clock, self._sleep = clock, sleep
        self._statuses: dict[str, _Status] = {}
        self._tokens = self._burst = max(1.0, queue_rate)
        self._refilled = clock()
        self._wake = asyncio.Event()
        self._next_at = -math.inf  # when the edit loop wakes up by itself next
        self._runner: asyncio.Task[None] | None = None

    def show(self, key: str, text: str, edit: Edit, *, queued: bool = False) -> None:
        """Remember the newest state of `key`'s message; it goes out as soon as the pacing allows."""
        status = self._statuses.get(key)
        if status is None:
            status = self._statuses[key] = _Status(edit, text, queued, self._clock() + self.first_delay)
        else:
            status.write, status.latest, status.queued = edit, text, queued
        # Progress comes many times a second per job: the loop looks at every message when woken, so it is
        # woken only when this one is due before it would wake anyway.
        if status.due(self.interval) < self._next_at:
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
            for status in waiting:
                if (due := status.due(self.interval)) > now:
                    next_at = min(next_at, due)
                    continue
                if status.queued and status.shown is not None:
                    rationed.append(status)
                else:
                    self._start(status, now)
            if rationed:
                # The longest-unchanged messages go first; the rest wait for the budget to refill.
                chosen = heapq.nsmallest(int(min(self._tokens, len(rationed))), rationed, key=lambda s: s.last_edit)
                for status in chosen:
                    self._tokens -= 1
                    self._start(status, now)
                if len(chosen) < len(rationed):
                    next_at = min(next_at, now + max(1 - self._tokens, 0.0) / self.queue_rate)
            await self._nap(next_at - now)

    def _start(self, status: _Status, now: float) -> None:
        status.shown, status.last_edit = status.latest, now
        status.in_flight = asyncio.create_task(self._edit(status, status.latest))

    async def _edit(self, status: _Status, text: str) -> None:
        try:
            await status.write(text)
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
        result_style: ResultView = "gallery",
    ) -> None:
        self.interaction = interaction
        self.command = command
        self.scheduler = scheduler
        self.max_image_pixels = max_image_pixels  # MAX_IMAGE_PIXELS: larger pictures are named, not decoded
        self.result_style: ResultView = result_style  # RESULT_VIEW: pictures as a gallery, or classic
        self.header = header(command, interaction.user.id)
        self.job_id: str | None = None
        self.view: discord.ui.View | None = None  # its Cancel button, built for the first status edit
        self.message_id: int | None = None
        self.expired = False  # the interaction's token can no longer be used
        self.deleted = False  # someone deleted the status message

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

    def attach(self, job_id: str) -> None:
        """Tie the message to its job: its Cancel button and its place in the scheduler."""
        self.job_id = job_id

    def show(self, text: str, *, queued: bool = False) -> None:
        """Show `text` under the header as soon as the scheduler allows."""
        self.scheduler.show(self.job_id or str(id(self)), text, self._edit_progress, queued=queued)

    def progress(self, progress: Progress) -> None:
        """Show the job's progress (queued or running) on its status message."""
        queued = progress.waiting is not None or progress.position is not None
        self.show(progress.describe(), queued=queued)

    async def _edit_progress(self, text: str) -> None:
        if self.view is None and self.job_id is not None:
            # Not before: a job done within first_delay never shows it. Labelled for the requester, who sees it.
            self.view = status_view(self.job_id, locale=self.interaction.locale)
        await self.edit_status(text, view=self.view)

    async def stop(self) -> None:
        """Drop a pending status edit (the result or an error message replaces it)."""
        await self.scheduler.drop(self.job_id or str(id(self)))

    async def cancelled(self) -> None:
        """Drop a pending status edit and mark the status message as cancelled."""
        await self.stop()
        await self.edit_status(CANCELLED, view=None)

    async def fail(self, error: BotError) -> None:
        """Tell the member why the job ended: privately through the interaction, else on the status message."""
        await self.stop()
        if not self._token_usable():
            log.info("/%s failed for %s: %s | %s", self.command, self.interaction.user.id,
                     error.user_message, error.detail or "")  # fmt: skip
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

    async def finish(self, result: JobResult, *, screen: ImageScreen | None = None) -> None:
        """Turn the status message into the result: files in batches and the parameters used."""
        await self.stop()
        user, limit, locale = self.interaction.user, self.interaction.filesize_limit, self.interaction.locale
        content, batches = await result_messages(
            result, user.id, limit, max_image_pixels=self.max_image_pixels, screen=screen
        )

        async def edit(text: str | None, files: list[discord.File], view: Any) -> None:
            await edit_original(self.interaction, text, ping=user, attachments=files, view=view)

        async def send(text: str | None, files: list[discord.File], view: Any) -> None:
            # A new message notifies the member; the nonce makes a repeated send (after a restart) a no-op.
            nonce = result.job_id[:25]
            await channel_send(self._channel(), text, ping=user, locale=locale, files=files, nonce=nonce, view=view)

        style = self.result_style
        if not await self._with_token(post_result(edit, result.job_id, content, batches, locale=locale, style=style)):
            await post_result(send, result.job_id, content, batches, locale=locale, style=style)
            await self.edit_status(RESULT_BELOW, view=None)
        for batch in batches[1:]:
            if not await self._with_token(followup(self.interaction, files=as_files(batch))):
                await channel_send(self._channel(), files=as_files(batch))

    async def edit_status(self, text: str, *, view: discord.ui.View | None) -> None:
        """Show `text` under the header, with the bot token once the interaction's has expired."""
        content = self.under_header(text)
        if await self._with_token(edit_original(self.interaction, content, view=view)):
            return
        if self.message_id is not None and not self.deleted:
            try:
                await edit_message(self._partial(), content, locale=self.interaction.locale, view=view)
            except discord.NotFound:
                log.info("status message of /%s was deleted; no more status edits", self.command)
                self.deleted = True

    def under_header(self, text: str) -> Lines:
        return Lines((self.header, text))

    def _token_usable(self) -> bool:
        if not self.expired and (discord.utils.utcnow() - self.interaction.created_at).total_seconds() > TOKEN_LIFETIME:
            self.expired = True
        return not self.expired

    async def _with_token(self, call: Coroutine[Any, Any, Any]) -> bool:
        """Run `call` with the interaction token; False (nothing sent) once that token or the message is gone."""
        if not self._token_usable() or self.deleted:
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

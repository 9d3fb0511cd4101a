"""One websocket per ComfyUI server: routes its events to the jobs waiting on them.

Every connection uses a fresh clientId: reconnecting under the same id can leave the new socket
orphaned (ComfyUI bug #16010, still open), and a restarted bot could collide with its own dying socket.
ComfyUI sends a prompt's events only to the clientId that submitted it, so a prompt submitted under an
earlier id (before a reconnect or a restart) is followed by polling instead, every POLL_INTERVAL, until
it ends. All prompts are also reconciled after each reconnect and every `reconcile_interval`: finished
ones are picked up from history, and ones the server no longer knows are reported lost instead of being
waited on forever. A frame of the wrong shape is logged and skipped; it never drops the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from core.comfyui.client import ComfyClient, QueueState
from core.comfyui.types import (
    HistoryEntry,
    NodeOutput,
    Prompt,
    parse_binary_frame,
    parse_node_output,
    parse_ws_message,
    succeeded,
)
from core.errors import BotError, ComfyServerError, ComfyUnreachable, UnreadableAnswer

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0  # how often prompts whose events cannot reach us are checked
CONNECT_TIMEOUT = 10.0  # seconds for the websocket handshake
WEBSOCKET_OUTPUT_CLASSES = frozenset({"SaveImageWebsocket"})
# Asking for preview metadata makes binary frames carry their prompt and node id (type 4 instead of 1).
FEATURE_FLAGS = json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
# Messages after which our prompt has ended; its history says how. ComfyUI writes the history and then sends
# `executing` with node null, so the history is read then, or END_GRACE seconds after one of these should
# that signal not come (a server that no longer sends it). A success heard on the very connection the prompt
# was watched from needs no history: see Watch.ws_outputs.
END_MESSAGES = frozenset({"execution_success", "execution_error", "execution_interrupted"})
END_GRACE = 1.0
FINISHED_JOB_STATES = frozenset({"completed", "failed", "cancelled"})
# Sampler previews are at most 512 px JPEGs (--preview-size) of some 50 KB; a larger frame is no preview to show.
MAX_PREVIEW_BYTES = 2 * 1024 * 1024
PREVIEW_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG, PNG: what ComfyUI encodes previews as
Health = Literal["connecting", "up", "down"]


@dataclass(frozen=True, slots=True)
class Queued:
    """The prompt waits on the server; `position` 1 is next in line."""

    position: int


@dataclass(frozen=True, slots=True)
class Running:
    """The prompt runs; `node` is the node executing now, with its step progress when it reports one."""

    node: str | None
    value: int | None = None
    max: int | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """The prompt ended (success, error or interrupt); its history entry says how."""

    history: HistoryEntry


@dataclass(frozen=True, slots=True)
class Lost:
    """The server no longer knows the prompt: it restarted or its queue was cleared."""

    reason: str


@dataclass(frozen=True, slots=True)
class ServerDown:
    """The server stopped answering (its socket dropped and a reconnect failed); the prompt may be gone with it."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The server's answer about this prompt has a shape the bot cannot use: the job fails with it."""

    error: ComfyServerError


@dataclass(frozen=True, slots=True)
class Previewed:
    """A new preview image of the running prompt waits in Watch.preview (only the newest one is kept)."""


PREVIEWED = Previewed()

PromptEvent = Queued | Running | Finished | Lost | Unreadable | ServerDown | Previewed


@dataclass(eq=False, slots=True)
class Watch:
    """A prompt the listener routes events to."""

    prompt_id: str
    prompt: Prompt
    events: asyncio.Queue[PromptEvent] = field(default_factory=asyncio.Queue)
    ws_images: list[tuple[str, bytes]] = field(default_factory=list)  # (node id, PNG/JPEG bytes)
    ws_dropped: list[tuple[str, int]] = field(default_factory=list)  # (node id, size) of images over the caps
    max_images: int | None = None  # caps on ws_images, so that a flood of frames is not kept in memory
    max_image_bytes: int | None = None
    submitted_at: float | None = None
    client_id: str | None = None  # the clientId it was submitted under; None: by an earlier run of the bot
    # The connection (its clientId) that was up when the watch began, before the prompt was submitted.
    opened_on: str | None = None
    # The outputs `executed` messages announced on that connection (None: one was unreadable). ComfyUI sends
    # them in order before `execution_success`, to that connection only, cached nodes included, and never
    # sends anything to a connection again once it closed: a success heard on it means none was missed, so
    # they are the history's outputs without asking for them.
    ws_outputs: dict[str, NodeOutput] | None = field(default_factory=dict)
    last_position: int | None = None
    fetching: bool = False  # its history is being read
    ended: bool = False
    previews: bool = False  # keep the server's preview images (someone shows them)
    preview: bytes | None = field(default=None, repr=False)  # the newest preview not yet taken, JPEG or PNG

    def end(self, event: Finished | Lost | Unreadable) -> None:
        """Report how the prompt ended, once; later ends are ignored."""
        if not self.ended:
            self.ended = True
            self.events.put_nowait(event)

    def is_ws_output(self, node_id: str | None) -> bool:
        node = self.prompt.get(node_id or "", {})
        return node.get("class_type") in WEBSOCKET_OUTPUT_CLASSES

    def keep_image(self, node_id: str, image: bytes) -> None:
        """Keep a websocket image, or only note its size once the image caps are full."""
        kept = sum(len(data) for _, data in self.ws_images)
        if (self.max_images is not None and len(self.ws_images) >= self.max_images) or (
            self.max_image_bytes is not None and kept + len(image) > self.max_image_bytes
        ):
            self.ws_dropped.append((node_id, len(image)))
        else:
            self.ws_images.append((node_id, image))

    def keep_preview(self, image: bytes) -> None:
        """Keep the newest preview image in place of the last one; one event tells of any number of them."""
        if not self.previews or self.ended:
            return
        if len(image) > MAX_PREVIEW_BYTES or not image.startswith(PREVIEW_SIGNATURES):
            log.debug("preview of %s skipped: %d bytes, not a preview-sized JPEG or PNG", self.prompt_id, len(image))
            return
        waiting, self.preview = self.preview is not None, image
        if not waiting:
            self.events.put_nowait(PREVIEWED)

    def take_preview(self) -> bytes | None:
        """The newest preview image, which is then no longer kept (None: none came since the last take)."""
        image, self.preview = self.preview, None
        return image


class ComfyListener:
    """Keeps the websocket to one server open and turns its frames into PromptEvents."""

    def __init__(
        self,
        client: ComfyClient,
        *,
        reconcile_interval: float = 15.0,
        max_frame_bytes: int = 256 * 1024 * 1024,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.client = client
        self.client_id = uuid.uuid4().hex  # replaced on every connection
        self.connected = asyncio.Event()
        self.last_failure = 0.0  # monotonic time of the last failed connection attempt
        # Health, for routing, failover and the admin view. "down": the socket is closed and a connection
        # attempt has failed since (a dropped socket that reconnects at once is not an outage).
        self.state: Health = "connecting"
        self.state_since = time.monotonic()
        self.last_error: str | None = None  # why the last connection attempt failed (no secret in it)
        self.queue_remaining: int | None = None  # the server's own queue (every client's prompts), from `status`
        self.on_change: Callable[[], None] | None = None  # called (soon after) each change of `state`
        self.down = asyncio.Event()  # set while `state` is "down"
        self.reconcile_interval = reconcile_interval
        self.poll_interval = poll_interval
        self.max_frame_bytes = max_frame_bytes
        self.watches: dict[str, Watch] = {}
        self._flags_acknowledged = False
        self._running: tuple[str, str | None] | None = None  # (prompt id, node id) of our running prompt
        self._reconcile_wanted = asyncio.Event()
        self._answered = asyncio.Event()  # a poll reached the server: a socket that is down may reconnect now
        self._woke_socket = False  # the socket was asked to reconnect since it was last up
        self._tasks: list[asyncio.Task[None]] = []
        self._finishing: set[asyncio.Task[None]] = set()  # strong refs so these tasks are not collected

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._connect_forever(), name=f"ws {self.client.name}"),
                asyncio.create_task(self._reconcile_forever(), name=f"reconcile {self.client.name}"),
            ]

    async def close(self) -> None:
        # Emptied first: a history read scheduled after an end message (END_GRACE) then never starts.
        tasks, self._tasks = [*self._tasks, *self._finishing], []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected.clear()

    # -- watches -----------------------------------------------------------------------------------

    def watch(self, prompt_id: str, prompt: Prompt) -> Watch:
        """Start routing events for `prompt_id`; call before submitting so that none is missed."""
        watch = Watch(prompt_id, prompt, opened_on=self.client_id if self.connected.is_set() else None)
        self.watches[prompt_id] = watch
        return watch

    def submitted(self, watch: Watch, client_id: str | None) -> None:
        """Mark the prompt as accepted under `client_id` (None: by an earlier run) and ask for its position."""
        watch.submitted_at = time.monotonic()
        watch.client_id = client_id
        self._reconcile_wanted.set()

    def request_reconcile(self) -> None:
        """Compare the watched prompts with the server's queue and history soon (e.g. after a cancel)."""
        self._reconcile_wanted.set()

    def unwatch(self, prompt_id: str) -> None:
        self.watches.pop(prompt_id, None)

    def _deaf(self, watch: Watch) -> bool:
        """True when the prompt's events cannot reach us, so that it must be polled."""
        return not self.connected.is_set() or watch.client_id != self.client_id

    # -- websocket ---------------------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        delay = 0.5
        while True:
            self.client_id = uuid.uuid4().hex
            try:
                # Only the query string: no Origin or Sec-Fetch-* header, which newer servers refuse (403).
                # A server that accepts the connection but never answers (a frozen process) must not hold the
                # handshake for the session's default five minutes.
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    ws = await self.client.session.ws_connect(
                        self.client.ws_url,
                        params=self.client.params({"clientId": self.client_id}),
                        headers=self.client.headers,  # a proxy may check them on the upgrade too
                        ssl=self.client.ssl,
                        heartbeat=20,
                        max_msg_size=self.max_frame_bytes,
                    )
                async with ws:
                    self._flags_acknowledged = False  # the server may have been upgraded meanwhile
                    await ws.send_str(FEATURE_FLAGS)
                    await self._probe()
                    self._set_state("up", None)
                    self.connected.set()
                    self._woke_socket = False
                    self._reconcile_wanted.set()  # events may have been missed while we were away
                    delay = 0.5
                    await self._read(ws)
                self._set_state("connecting", f"websocket closed (code {ws.close_code})")
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self._failed(self.client.connection_problem(exc))
            except Exception as exc:
                log.debug("websocket to %s: unexpected error", self.client.name, exc_info=True)
                self._failed(self.client.scrub(f"unexpected error: {type(exc).__name__}: {exc}"))
            finally:
                self.connected.clear()
                self._running = None
                self.queue_remaining = None  # heard again on the next connection; it may have restarted empty
            # Back off, but reconnect at once when a poll finds the server answering HTTP again.
            self._answered.clear()
            try:
                async with asyncio.timeout(delay * random.uniform(0.8, 1.2)):
                    await self._answered.wait()
                delay = 0.5
            except TimeoutError:
                delay = min(delay * 2, 30.0)

    def _failed(self, problem: str) -> None:
        """Note a failed connection attempt: the server is down now, logged once per outage."""
        self.last_failure = time.monotonic()
        if self.state == "down":
            log.debug("%s still down: %s", self.client.name, problem)
            self.last_error = problem
            return
        self._set_state("down", problem)
        for watch in self.watches.values():
            if watch.submitted_at is not None and not watch.ended:
                watch.events.put_nowait(ServerDown(problem))

    def _set_state(self, state: Health, problem: str | None) -> None:
        """Change the server's health and log the change, once."""
        now = time.monotonic()
        was, lasted = self.state, now - self.state_since
        self.state, self.state_since = state, now
        if state == "down":
            self.down.set()
        else:
            self.down.clear()
        if problem is not None:
            self.last_error = problem
        if self.on_change is not None:  # soon: `connected` is set or cleared just after the state changes
            asyncio.get_running_loop().call_soon(self.on_change)
        if state == "down":
            log.warning("ComfyUI server %s is down: %s", self.client.name, problem)
        elif state == "up" and was == "down":
            log.warning("ComfyUI server %s is back up after %.0f s down", self.client.name, lasted)
        elif state == "up":
            log.info("connected to ComfyUI server %s", self.client.name)
        else:
            log.info("%s: %s; reconnecting", self.client.name, problem)

    async def _probe(self) -> None:
        """Re-read the server's version and routes (it may have been upgraded); keep the old ones if it fails."""
        try:
            await self.client.probe()
        except BotError as exc:
            log.warning("cannot read the version of %s: %s", self.client.name, exc.detail)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            try:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    message = parse_ws_message(msg.data, self.client.name)
                    self._on_message(message["type"], message["data"])
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    self._on_binary(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    log.warning("websocket error from %s: %s", self.client.name, ws.exception())
                    return
            except ComfyServerError as exc:
                log.warning("skipped a websocket frame: %s", exc.detail)

    def _on_message(self, kind: str, data: dict) -> None:
        if kind == "status":
            status = data.get("status")
            info = status.get("exec_info") if isinstance(status, dict) else None
            remaining = info.get("queue_remaining") if isinstance(info, dict) else None
            if isinstance(remaining, int) and not isinstance(remaining, bool) and remaining >= 0:
                self.queue_remaining = remaining  # a shape it does not know leaves the last figure
            if any(w.last_position != 0 for w in self.watches.values()):
                self._reconcile_wanted.set()  # the queue moved: refresh positions
            return
        if kind == "feature_flags":
            self._flags_acknowledged = True
            return
        watch = self.watches.get(str(data.get("prompt_id")))
        if watch is None:
            return
        heard_whole = watch.opened_on == self.client_id and watch.ws_outputs is not None
        if kind == "executed" and heard_whole:
            self._note_output(watch, data)
        elif kind == "execution_success" and heard_whole and watch.ws_outputs:
            # (with none heard, the history has the last word: "no output" is worth a second opinion)
            watch.end(Finished(succeeded(watch.ws_outputs)))
        elif kind in END_MESSAGES:
            asyncio.get_running_loop().call_later(END_GRACE, self._start_finish, watch)
        elif kind == "executing" and data["node"] is None:
            self._running = None
            self._start_finish(watch)
        elif kind == "executing":
            self._running = (watch.prompt_id, data["node"])
            self._progress(watch, Running(data["node"]))
        elif kind == "execution_start":
            self._running = (watch.prompt_id, None)
            self._progress(watch, Running(None))
        elif kind == "progress":
            self._progress(watch, Running(data["node"], data["value"], data["max"]))

    def _note_output(self, watch: Watch, data: dict[str, Any]) -> None:
        """Keep the files and texts an `executed` message announces (a cached node without any sends null)."""
        assert watch.ws_outputs is not None
        if data.get("output") is None:
            return
        try:
            node = data["node"]
            if node is None:
                raise UnreadableAnswer(self.client.name, "websocket message", "executed.node: missing")
            watch.ws_outputs[node] = parse_node_output(data["output"], node, self.client.name)
        except ComfyServerError:
            watch.ws_outputs = None  # the history tells them then
            raise

    def _progress(self, watch: Watch, event: Running) -> None:
        if not watch.ended:
            watch.last_position = 0
            watch.events.put_nowait(event)

    def _on_binary(self, frame: bytes) -> None:
        preview = parse_binary_frame(frame, self.client.name)
        if preview is None:
            return  # progress text and other kinds
        if preview.with_metadata:
            watch = self.watches.get(str(preview.prompt_id))
            node = preview.node_id
        elif not self._flags_acknowledged and self._running:
            # A server without preview metadata: the frame belongs to whatever of ours runs now.
            prompt_id, node = self._running
            watch = self.watches.get(prompt_id)
        else:
            return  # sampler previews of other clients
        if watch is None or node is None:
            return
        if watch.is_ws_output(node):
            watch.keep_image(node, preview.image)
        else:
            watch.keep_preview(preview.image)  # a sampler's (or another node's) picture of the work in progress

    # -- completion and reconciliation ---------------------------------------------------------------

    def _start_finish(self, watch: Watch) -> None:
        """Read the history of a prompt that ended, once: not again while a read is under way or after it ended."""
        if watch.ended or watch.fetching or not self._tasks or self.watches.get(watch.prompt_id) is not watch:
            return  # also when the listener was closed meanwhile
        watch.fetching = True
        task = asyncio.create_task(self._finish(watch))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(self, watch: Watch) -> None:
        """Fetch the history entry of a prompt that just ended (reconcile again if it is not there yet)."""
        try:
            entry = await self.client.history(watch.prompt_id)
        except UnreadableAnswer as exc:
            watch.end(Unreadable(exc))
            return
        except BotError as exc:
            log.warning("history of %s not readable yet: %s", watch.prompt_id, exc.detail)
            self._reconcile_wanted.set()
            return
        finally:
            watch.fetching = False
        if entry is None:
            self._reconcile_wanted.set()
        else:
            watch.end(Finished(entry))

    async def _reconcile_forever(self) -> None:
        while True:
            deaf = any(self._deaf(w) for w in self.watches.values() if w.submitted_at and not w.ended)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval if deaf else self.reconcile_interval):
                    await self._reconcile_wanted.wait()
            self._reconcile_wanted.clear()
            if self.watches:
                try:
                    await self.reconcile()
                except BotError as exc:
                    log.log(
                        logging.INFO if self.connected.is_set() else logging.DEBUG,
                        "reconcile with %s postponed: %s",
                        self.client.name,
                        exc.detail,
                    )
                except Exception:
                    log.exception("reconcile with %s failed", self.client.name)
            await asyncio.sleep(0.25)  # coalesce bursts of status broadcasts

    async def reconcile(self) -> None:
        """Compare every submitted prompt with the server; one prompt's bad answer never stops the others."""
        asked_at = time.monotonic()
        try:
            queue: QueueState | None = await self.client.queue()
        except UnreadableAnswer as exc:
            log.warning("%s: queue unreadable, checking each job instead: %s", self.client.name, exc.detail)
            queue = None
        if not self.connected.is_set() and not self._woke_socket:
            # It answers again while the socket is down: reconnect now and reconcile once connected, so that
            # what the server lost meanwhile is noticed after it is seen back. Should that fail, polling goes on.
            self._woke_socket = True
            self._answered.set()
            return
        for watch in list(self.watches.values()):
            if watch.ended or watch.submitted_at is None or watch.submitted_at > asked_at:
                continue  # not on the server yet when the queue was read
            try:
                await self._check(watch, queue)
            except UnreadableAnswer as exc:
                log.warning("job %s fails: %s", watch.prompt_id, exc.detail)
                watch.end(Unreadable(exc))
            except ComfyUnreachable:
                raise  # the server is down: the other prompts cannot be checked either
            except BotError as exc:
                log.info("job %s not checked on %s: %s", watch.prompt_id, self.client.name, exc.detail)

    async def _check(self, watch: Watch, queue: QueueState | None) -> None:
        """Report a prompt's place in line, or end it when it finished or the server forgot it."""
        position = queue.position(watch.prompt_id) if queue is not None else None
        if position is not None:
            if position != watch.last_position:
                watch.last_position = position
                watch.events.put_nowait(Running(None) if position == 0 else Queued(position))
            return
        # Not in the queue: finished (history is written first) or lost. The jobs API tells them apart.
        jobs_api = self.client.info.jobs_api
        state = await self.client.job_status(watch.prompt_id) if jobs_api else None
        if state is not None and state not in FINISHED_JOB_STATES:
            return  # pending or running after all (it moved between the reads), or a state newer than the bot
        entry = await self.client.history(watch.prompt_id)
        if entry is not None:
            watch.end(Finished(entry))
        elif jobs_api or queue is not None:  # without either, "not in the history" proves nothing
            reason = "unknown to GET /api/jobs" if jobs_api and state is None else "not in the queue nor in the history"
            log.warning("%s no longer knows prompt %s (%s)", self.client.name, watch.prompt_id, reason)
            watch.end(Lost(reason))

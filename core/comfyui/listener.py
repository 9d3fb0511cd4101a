"""One websocket per ComfyUI server: routes its events to the jobs waiting on them.

The socket uses one clientId for the life of the process (a second socket with the same id would
silence both, see the protocol doc §4.1), so it is only reopened after the old one has closed. Events
can still be missed (drops, restarts), so every unfinished prompt is reconciled through /queue and
/history after each reconnect and periodically: finished prompts are picked up from history and
prompts the server no longer knows are reported lost instead of being waited on forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import struct
import time
import uuid
from dataclasses import dataclass, field

import aiohttp

from core.comfyui.client import ComfyClient
from core.comfyui.types import HistoryEntry, Prompt
from core.errors import BotError

log = logging.getLogger(__name__)

# Binary frame event types (protocol doc §4.3).
PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
WEBSOCKET_OUTPUT_CLASSES = frozenset({"SaveImageWebsocket"})
# Asking for preview metadata makes binary frames carry their prompt and node id (type 4 instead of 1).
FEATURE_FLAGS = json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})


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


PromptEvent = Queued | Running | Finished | Lost


@dataclass(eq=False, slots=True)
class Watch:
    """A prompt the listener routes events to."""

    prompt_id: str
    prompt: Prompt
    events: asyncio.Queue[PromptEvent] = field(default_factory=asyncio.Queue)
    ws_images: list[tuple[str, bytes]] = field(default_factory=list)  # (node id, PNG/JPEG bytes)
    submitted_at: float | None = None
    last_position: int | None = None
    ended: bool = False

    def end(self, event: Finished | Lost) -> None:
        if not self.ended:
            self.ended = True
            self.events.put_nowait(event)

    def is_ws_output(self, node_id: str | None) -> bool:
        node = self.prompt.get(node_id or "", {})
        return node.get("class_type") in WEBSOCKET_OUTPUT_CLASSES


class ComfyListener:
    """Keeps the websocket to one server open and turns its frames into PromptEvents."""

    def __init__(
        self,
        client: ComfyClient,
        *,
        reconcile_interval: float = 15.0,
        max_frame_bytes: int = 256 * 1024 * 1024,
        client_id: str | None = None,
    ) -> None:
        self.client = client
        self.client_id = client_id or uuid.uuid4().hex
        self.connected = asyncio.Event()
        self.last_failure = 0.0  # monotonic time of the last failed connection attempt
        self.reconcile_interval = reconcile_interval
        self.max_frame_bytes = max_frame_bytes
        self.watches: dict[str, Watch] = {}
        self._flags_acknowledged = False
        self._running: tuple[str, str | None] | None = None  # (prompt id, node id) of our running prompt
        self._reconcile_wanted = asyncio.Event()
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
        for task in [*self._tasks, *self._finishing]:
            task.cancel()
        for task in [*self._tasks, *self._finishing]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.connected.clear()

    # -- watches -----------------------------------------------------------------------------------

    def watch(self, prompt_id: str, prompt: Prompt) -> Watch:
        """Start routing events for `prompt_id`; call before submitting so that none is missed."""
        watch = Watch(prompt_id, prompt)
        self.watches[prompt_id] = watch
        return watch

    def submitted(self, watch: Watch) -> None:
        """Mark the prompt as accepted by the server and ask for its queue position."""
        watch.submitted_at = time.monotonic()
        self._reconcile_wanted.set()

    def request_reconcile(self) -> None:
        """Compare the watched prompts with the server's queue and history soon (e.g. after a cancel)."""
        self._reconcile_wanted.set()

    def unwatch(self, prompt_id: str) -> None:
        self.watches.pop(prompt_id, None)

    # -- websocket ---------------------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self.client.session.ws_connect(
                    self.client.ws_url,
                    params={"clientId": self.client_id},
                    heartbeat=20,
                    max_msg_size=self.max_frame_bytes,
                ) as ws:
                    self._flags_acknowledged = False  # the server may have been upgraded meanwhile
                    await ws.send_str(FEATURE_FLAGS)
                    log.info("connected to %s websocket", self.client.name)
                    self.connected.set()
                    self._reconcile_wanted.set()  # events may have been missed while we were away
                    delay = 0.5
                    await self._read(ws)
                log.warning("websocket to %s closed (code %s)", self.client.name, ws.close_code)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("websocket to %s failed: %s: %s", self.client.name, type(exc).__name__, exc)
                self.last_failure = time.monotonic()
            except Exception:
                log.exception("websocket to %s: unexpected error", self.client.name)
                self.last_failure = time.monotonic()
            finally:
                self.connected.clear()
                self._running = None
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 30.0)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    log.debug("ignoring non-JSON text frame from %s", self.client.name)
                    continue
                if isinstance(data, dict):
                    self._on_message(str(data.get("type")), data.get("data") or {})
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self._on_binary(msg.data)
            elif msg.type == aiohttp.WSMsgType.ERROR:
                log.warning("websocket error from %s: %s", self.client.name, ws.exception())
                return

    def _on_message(self, kind: str, data: dict) -> None:
        if kind == "status":
            if any(w.last_position != 0 for w in self.watches.values()):
                self._reconcile_wanted.set()  # the queue moved: refresh positions
            return
        if kind == "feature_flags":
            self._flags_acknowledged = True
            return
        watch = self.watches.get(str(data.get("prompt_id")))
        if watch is None:
            return
        if kind == "executing":
            node = data.get("node")
            if node is None:
                self._running = None
                task = asyncio.create_task(self._finish(watch))
                self._finishing.add(task)
                task.add_done_callback(self._finishing.discard)
            else:
                self._running = (watch.prompt_id, str(node))
                self._progress(watch, Running(str(node)))
        elif kind == "execution_start":
            self._running = (watch.prompt_id, None)
            self._progress(watch, Running(None))
        elif kind == "progress":
            node = data.get("node")
            self._progress(watch, Running(str(node) if node is not None else None, data.get("value"), data.get("max")))

    def _progress(self, watch: Watch, event: Running) -> None:
        if not watch.ended:
            watch.last_position = 0
            watch.events.put_nowait(event)

    def _on_binary(self, frame: bytes) -> None:
        if len(frame) < 8:
            return
        (event_type,) = struct.unpack(">I", frame[:4])
        if event_type == PREVIEW_IMAGE_WITH_METADATA:
            (meta_len,) = struct.unpack(">I", frame[4:8])
            try:
                meta = json.loads(frame[8 : 8 + meta_len])
            except ValueError:
                return
            watch = self.watches.get(str(meta.get("prompt_id")))
            node = meta.get("node_id")
            image = frame[8 + meta_len :]
        elif event_type == PREVIEW_IMAGE and not self._flags_acknowledged and self._running:
            # A server without preview metadata: the frame belongs to whatever of ours runs now.
            prompt_id, node = self._running
            watch = self.watches.get(prompt_id)
            image = frame[8:]
        else:
            return  # sampler previews of other clients, text frames
        if watch is not None and watch.is_ws_output(node):
            watch.ws_images.append((str(node), bytes(image)))

    # -- completion and reconciliation ---------------------------------------------------------------

    async def _finish(self, watch: Watch) -> None:
        """Fetch the history entry of a prompt that just ended (it is written before the signal)."""
        try:
            entry = await self.client.history(watch.prompt_id)
        except BotError as exc:
            log.warning("history of %s not readable yet: %s", watch.prompt_id, exc.detail)
            self._reconcile_wanted.set()
            return
        if entry is None:
            self._reconcile_wanted.set()
        else:
            watch.end(Finished(entry))

    async def _reconcile_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.reconcile_interval):
                    await self._reconcile_wanted.wait()
            self._reconcile_wanted.clear()
            if self.watches:
                try:
                    await self.reconcile()
                except BotError as exc:
                    log.info("reconcile with %s postponed: %s", self.client.name, exc.detail)
                except Exception:
                    log.exception("reconcile with %s failed", self.client.name)
            await asyncio.sleep(0.25)  # coalesce bursts of status broadcasts

    async def reconcile(self) -> None:
        """Compare every submitted prompt with the server's queue and history."""
        asked_at = time.monotonic()
        queue = await self.client.queue()
        for watch in list(self.watches.values()):
            if watch.ended or watch.submitted_at is None or watch.submitted_at > asked_at:
                continue  # not on the server yet when the queue was read
            position = queue.position(watch.prompt_id)
            if position is None:
                # Gone from the queue: finished (history is written first) or lost.
                entry = await self.client.history(watch.prompt_id)
                if entry is not None:
                    watch.end(Finished(entry))
                else:
                    log.warning("%s no longer knows prompt %s", self.client.name, watch.prompt_id)
                    watch.end(Lost("not in the queue nor in the history"))
            elif position != watch.last_position:
                watch.last_position = position
                watch.events.put_nowait(Running(None) if position == 0 else Queued(position))

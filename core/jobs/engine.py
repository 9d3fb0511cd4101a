"""Run one job on a ComfyUI server: submit, follow its progress, collect its files."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol

import aiohttp

from core.comfyui.client import ComfyClient, TooLarge
from core.comfyui.listener import (
    ComfyListener,
    Finished,
    Health,
    Lost,
    Previewed,
    Queued,
    Running,
    ServerDown,
    Unreadable,
    Watch,
)
from core.comfyui.node_errors import node_label, running_label
from core.comfyui.types import FILE_KEYS, HistoryEntry, Prompt
from core.config import (
    DEFAULT_MAX_JOB_OUTPUT_MB,
    DEFAULT_MAX_OUTPUTS_PER_JOB,
    DEFAULT_MAX_QUEUED_JOBS,
    MB,
    Settings,
)
from core.errors import (
    BotError,
    ComfyUnreachable,
    ExecutionFailed,
    InvalidInput,
    JobCancelled,
    JobInterrupted,
    JobLost,
    JobLostTooOften,
    JobTimeout,
)
from core.i18n import Text, localize
from core.jobs.inputs import Copies, ensure_inputs, held_copies, keep_inputs, stored_copies
from core.jobs.limits import Limits
from core.jobs.routing import refusal, verdict
from core.jobs.scheduler import Scheduler, Waiter, Waiting
from core.jobs.store import JobRecord, JobState, JobStore
from core.media import MediaKind, human_size, kind_of
from core.servers import ServerConfig
from core.spool import DEFAULT_ROOT, Scratch, Spool
from core.text import cap
from core.workflows import Workflow, validate_workflow
from core.workflows.model import InputFile

log = logging.getLogger(__name__)

CONNECT_WAIT = 5.0  # how long a new job waits for a server's websocket before giving up
OPTIONS_TTL = 30.0  # model lists change when an admin adds files; re-read them this often
UPLOAD_SUBFOLDER = "discord-bot"  # where members' attachments go in ComfyUI's input folder
MAX_ATTEMPTS = 2  # a job lost while it ran (a restart, a crash) is submitted once more, then reported
FAILOVER_CHECK = 1.0  # while a job's server is down, how often another server that could take it is looked for
MAX_ERROR_TEXT = 600
MAX_NAME_SHOWN = 100

# Where a job stands, on its status message
RESUBMITTED = Text("The server lost the job (it restarted or its queue was cleared); submitting it again.")
RESTARTED_ON = Text("The ComfyUI server running the job went down; it starts again on {server}.")
MOVED_TO = Text("The ComfyUI server the job was queued on went down; it moved to {server}.")
SERVERS_DOWN = Text("Every ComfyUI server that can run this is down right now; the job starts when one is back.")
WAITING = Text("Waiting for a free slot: position {position} in the bot's queue")
QUEUED = Text("Queued: position {position} in line")
RUNNING = Text("Running…")
RUNNING_NODE = Text("Running {node}…")
RUNNING_STEP = Text("Running {node}: step {step}/{steps} ({percent}%)")
# Where a job stands, in /queue
WAITING_FOR_SLOT = Text("waiting for a free slot (position {position} in the bot's queue)")
RUNNING_ON = Text("running on {server}")
QUEUED_ON = Text("queued on {server} (position {position})")
SUBMITTED_TO = Text("submitted to {server}")
PREPARING = Text("being prepared or delivered")
# Refusals and failures
CANCELLING_ALREADY = Text("This job is already being cancelled.")
BEING_SUBMITTED = Text("This job is just being submitted; try again in a moment.")
NO_OUTPUT = Text(
    "The workflow finished but saved no output: it must end in a Save node (SaveImage, SaveAudio, …), "
    "not only a Preview node."
)
FAILED_IN = Text("The job failed in {node}: {message}")
FAILED_SILENTLY = Text("The job failed on the ComfyUI server without saying why.")
NO_MESSAGE = Text("no message")  # in place of ComfyUI's own words (never translated), when it gave none
# Outputs that were not downloaded
NOT_DOWNLOADED = Text("{name}: not downloaded, {reason}")
NOT_DOWNLOADED_SIZE = Text("{name} ({size}): not downloaded, {reason}")
MORE_THAN = Text("more than {size}")
TOO_MANY_FILES = Text("the job made more than {count} files (MAX_OUTPUTS_PER_JOB)")
TOO_MUCH_IN_ALL = Text("the job's files would pass {size} (MAX_JOB_OUTPUT_MB)")
TOO_LARGE_FILE = Text("larger than {size} (MAX_OUTPUT_MB)")


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a job stands, for status messages."""

    position: int | None = None  # place in line while queued (1 = next)
    node: str | None = None  # the running node, named for people
    step: int | None = None
    steps: int | None = None
    waiting: int | None = None  # place in the bot's own queue, before any server has a free slot
    resubmitted: bool = False  # the server lost the job (restart, cleared queue); it is submitted again
    moved_to: str | None = None  # its server went down: the job went to this one
    restarted: bool = False  # with moved_to: it was running, so it starts over there
    servers_down: bool = False  # waiting in the bot's queue while no server that can run it is up
    # A new preview image of the running job (JPEG or PNG, from ComfyUI's --preview-method), else None. Only
    # the newest one is passed on, with the job's last state; a front that shows it keeps it until replaced.
    preview: bytes | None = field(default=None, repr=False)

    def describe(self) -> str:
        """One line for the job's status message."""
        if self.resubmitted:
            return RESUBMITTED
        if self.moved_to is not None and self.restarted:
            return RESTARTED_ON.format(server=self.moved_to)
        if self.moved_to is not None:
            return MOVED_TO.format(server=self.moved_to)
        if self.servers_down:
            return SERVERS_DOWN
        if self.waiting:
            return WAITING.format(position=self.waiting)
        if self.position:
            return QUEUED.format(position=self.position)
        if self.node is None:
            return RUNNING
        if self.step is not None and self.steps:
            percent = 100 * self.step // self.steps
            return RUNNING_STEP.format(node=self.node, step=self.step, steps=self.steps, percent=percent)
        return RUNNING_NODE.format(node=self.node)


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One file a job produced: in memory (`data`) or in a temporary file (`path`); see core.spool."""

    filename: str  # as ComfyUI named it
    path: Path | None  # None when the file is in `data`
    size: int
    node_id: str
    data: bytes | None = None

    @property
    def kind(self) -> MediaKind:
        return kind_of(self.filename)

    def read(self) -> bytes:
        """The whole file in memory, for small files only (delivery streams large ones from `path`)."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    def copy_to(self, out: BinaryIO) -> None:
        """Write the file to `out`, from disk in chunks: an output of any size passes through little memory."""
        if self.data is not None:
            out.write(self.data)
            return
        assert self.path is not None
        with self.path.open("rb") as data:
            shutil.copyfileobj(data, out)


@dataclass(frozen=True, slots=True)
class JobResult:
    """A finished job: what was asked, where it ran and what came out."""

    job_id: str
    workflow: str
    values: dict[str, Any]
    server: str
    files: tuple[OutputFile, ...]
    texts: tuple[str, ...]
    seconds: float
    skipped: tuple[str, ...] = ()  # one line per output over a cap: its name, size and which cap
    # Where the files wait, with the versions made to fit Discord. Whoever receives the result owns it and
    # frees it once the files are delivered, however that ends: `with result:` (or `discard()`).
    scratch: Scratch | None = None

    def discard(self) -> None:
        """Remove the job's temporary files and free the memory its outputs held."""
        if self.scratch is not None:
            self.scratch.discard()

    def __enter__(self) -> JobResult:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()


OnProgress = Callable[[Progress], Awaitable[None] | None]


class Usage(Protocol):
    """What daily quotas hear from the engine (core.community.quotas.QuotaBook is one)."""

    def submitted(self, record: JobRecord) -> None:
        """The job reached ComfyUI for the first time: it counts as one of its member's jobs."""

    def ran(self, record: JobRecord, seconds: float) -> None:
        """The job ran `seconds` on ComfyUI in this process (one attempt or several)."""


@dataclass(slots=True)
class _GpuClock:
    """The seconds a job runs on ComfyUI, from its first sign of running to its end, summed over its attempts.

    Measured by the bot, not read from the history: a success heard on the websocket has no history to read.
    """

    total: float = 0.0
    since: float | None = None

    def start(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def stop(self) -> None:
        if self.since is not None:
            self.total += time.monotonic() - self.since
            self.since = None


class _Moving(Exception):
    """The job's server is down and `target` (its slot already taken) runs the job instead."""

    def __init__(self, target: ComfyServer, started: bool) -> None:
        super().__init__(target.client.name)
        self.target = target
        self.started = started  # it was running: it starts over


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """One server's health, load and capabilities, for `/servers` and `bot.py servers` (never a secret)."""

    name: str
    state: Health  # "up", "down" or "connecting"
    for_seconds: float  # how long it has been in that state
    version: str | None
    queue: int | None  # the server's own queue (every client's prompts, running included); None: not heard yet
    jobs: int  # this bot's jobs placed on it and not finished
    max_jobs: int | None  # its own max_jobs from servers.toml; None: MAX_JOBS_PER_SERVER
    runs: tuple[str, ...]  # the commands it can run
    lacks: tuple[tuple[str, str], ...]  # (command, the first thing it lacks) for those it cannot run
    known: bool  # its /object_info has been read: without it, runs and lacks are empty
    tags: dict[str, str]
    last_error: str | None  # why the last connection attempt failed


@dataclass(eq=False, slots=True)
class ComfyServer:
    """A configured ComfyUI server: its HTTP client, its websocket listener and a short cache of its lists.

    It also keeps its /object_info, read again on every websocket reconnect and on /reload, and from it
    which workflows it can run (`runs`, and `problems_with` for why not).
    """

    client: ComfyClient
    listener: ComfyListener
    _options: dict[str, tuple[float, list[str]]] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)  # jobs given to this server and not finished yet
    object_info: dict[str, Any] | None = None
    # workflow name -> the workflow as checked, and why this server cannot run it (empty: it can)
    _checked: dict[str, tuple[Workflow, list[str]]] = field(default_factory=dict)
    # The listener's client id when object_info was read: a new one means a reconnect (maybe a restart
    # with other models or nodes), so the capabilities are read again before the next job is placed.
    known_connection: str | None = None
    _reading: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def load(self) -> int:
        """The bot's own jobs on this server, plus what other clients have queued there."""
        ours = len(self.active)
        queued = self.listener.queue_remaining
        if queued is None:
            return ours
        # The server's count holds our submitted prompts too; only the rest is someone else's.
        submitted = sum(1 for w in self.listener.watches.values() if w.submitted_at is not None and not w.ended)
        return ours + max(0, queued - submitted)

    def status(self) -> ServerStatus:
        """This server as the admin view shows it."""
        listener = self.listener
        lacking = tuple((name, problems[0]) for name, (_, problems) in sorted(self._checked.items()) if problems)
        return ServerStatus(
            name=self.client.name,
            state=listener.state,
            for_seconds=time.monotonic() - listener.state_since,
            version=self.client.info.version,
            queue=listener.queue_remaining,
            jobs=len(self.active),
            max_jobs=self.client.config.max_jobs,
            runs=tuple(sorted(self.runs)),
            lacks=lacking,
            known=self.object_info is not None,
            tags=dict(self.client.config.tags),
            last_error=listener.last_error,
        )

    @property
    def runs(self) -> frozenset[str]:
        """The names of the known workflows this server can run."""
        return frozenset(name for name, (_, found) in self._checked.items() if not found)

    @property
    def stale(self) -> bool:
        """Connected on a connection its capabilities were not read on."""
        return self.listener.connected.is_set() and self.listener.client_id != self.known_connection

    async def options(self, source: str) -> list[str]:
        """The server's values for "Class.input" (model files and the like), refreshed every OPTIONS_TTL s."""
        cached = self._options.get(source)
        if cached is None or time.monotonic() - cached[0] > OPTIONS_TTL:
            class_type, input_name = source.rsplit(".", 1)
            cached = (time.monotonic(), await self.client.input_options(class_type, input_name))
            self._options[source] = cached
        return cached[1]

    async def refresh(self, workflows: Mapping[str, Workflow]) -> dict[str, Any]:
        """Read /object_info (and the version) again and re-check `workflows` against it; BotError if it fails."""
        async with self._reading:
            info = await self.client.object_info()
            # The connection open or being opened now (read after the answer, so a first connect that began
            # meanwhile does not read it all again; a server restarting in that moment fails the read instead)
            connection = self.listener.client_id
            if self.client.info.version is None:  # read when the listener connected; asked now if not yet
                await self.client.probe()
            self.object_info, self.known_connection = info, connection
            self._options.clear()  # model lists may have changed with it
            self.learn(workflows)
            return info

    def learn(self, workflows: Mapping[str, Workflow]) -> None:
        """Re-check `workflows` against the /object_info read last (nothing is known before the first read)."""
        self._checked = {}
        for workflow in workflows.values():
            self.problems_with(workflow)

    def problems_with(self, workflow: Workflow) -> list[str] | None:
        """Why this server cannot run `workflow` (empty: it can); None while its /object_info is unknown."""
        if self.object_info is None:
            return None
        checked = self._checked.get(workflow.name)
        if checked is None or (checked[0] is not workflow and checked[0] != workflow):
            checked = (workflow, validate_workflow(workflow, self.object_info, self.client.info.version))
            self._checked[workflow.name] = checked
        return checked[1]


class Engine:
    """Runs jobs on the configured ComfyUI servers; the one place that knows a job's path."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        servers: Sequence[ServerConfig | str],  # a bare URL is the COMFYUI_URL shortcut
        *,
        job_timeout: float,
        max_output_bytes: int,
        max_outputs_per_job: int = DEFAULT_MAX_OUTPUTS_PER_JOB,
        max_job_output_bytes: int = DEFAULT_MAX_JOB_OUTPUT_MB * MB,
        reconcile_interval: float = 15.0,
        store: JobStore | None = None,
        max_jobs_per_server: int = 0,
        max_pending_per_member: int = 0,
        cooldown_seconds: float = 0.0,
        max_queued_jobs: int = DEFAULT_MAX_QUEUED_JOBS,
        spool: Spool | None = None,
        previews: bool = True,
    ) -> None:
        self.servers = [
            ComfyServer(
                client := ComfyClient(session, server),
                ComfyListener(client, reconcile_interval=reconcile_interval, max_frame_bytes=max_output_bytes),
            )
            for server in servers
        ]
        self.job_timeout = job_timeout
        self.max_output_bytes = max_output_bytes
        self.max_outputs_per_job = max_outputs_per_job
        self.max_job_output_bytes = max_job_output_bytes
        self.store = store
        # Downloaded outputs wait on disk for delivery: beside the job store (a disk, not a tmpfs in RAM) if any
        self.spool = spool or Spool(store.path.parent / "tmp" if store is not None else DEFAULT_ROOT)
        self.max_jobs_per_server = max_jobs_per_server  # 0: no limit
        # Fronts reserve a job's place here before their first await; the engine frees its queue place.
        self.limits = Limits(
            max_pending_per_member=max_pending_per_member,
            cooldown_seconds=cooldown_seconds,
            max_queued_jobs=max_queued_jobs,
        )
        self.workflows: dict[str, Workflow] = {}  # the commands in use, whose capabilities each server keeps
        self._cancelled: set[str] = set()
        self.queue: Scheduler[ComfyServer] = Scheduler(self._placement_round, self._release)
        self._refreshing: dict[ComfyServer, asyncio.Task[None]] = {}  # capabilities read after a reconnect
        for server in self.servers:
            server.listener.on_change = functools.partial(self._server_changed, server)
        self._cleanups: set[asyncio.Task[None]] = set()  # cancels of moved jobs, waiting for their old server
        self.usage: Usage | None = None  # told when a job first reaches ComfyUI and how long it ran there
        self.previews = previews  # pass the servers' preview images on (PREVIEW_SECONDS 0: False)

    @classmethod
    def from_settings(cls, session: aiohttp.ClientSession, settings: Settings, store: JobStore | None = None) -> Engine:
        """The engine every front runs: the configured servers, limits and caps."""
        return cls(
            session,
            settings.servers,
            job_timeout=settings.job_timeout,
            max_output_bytes=settings.max_output_bytes,
            max_outputs_per_job=settings.max_outputs_per_job,
            max_job_output_bytes=settings.max_job_output_bytes,
            store=store,
            max_jobs_per_server=settings.max_jobs_per_server,
            max_pending_per_member=settings.max_pending_per_member,
            cooldown_seconds=settings.cooldown_seconds,
            max_queued_jobs=settings.max_queued_jobs,
            previews=settings.preview_seconds > 0,
        )

    def start(self) -> None:
        """Remove temporary files a crashed run left; open every server's websocket (before the first submit)."""
        self.spool.open()
        for server in self.servers:
            server.listener.start()

    async def close(self) -> None:
        tasks = [*self._cleanups, *self._refreshing.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.queue.close()
        await asyncio.gather(*(s.listener.close() for s in self.servers))
        self.spool.close()

    async def run(
        self,
        workflow: Workflow,
        values: Mapping[str, Any],
        on_progress: OnProgress | None = None,
        *,
        record: JobRecord | None = None,
        since: float | None = None,
    ) -> JobResult:
        """Run `workflow` with resolved `values` and return its files; BotError says what went wrong.

        With a store, `record` (made by the caller with its Discord ids) is written before anything is
        submitted and kept up to date, so that a restarted bot can pick the job up again. JOB_TIMEOUT
        counts from `since` (a time.time()), by default the record's creation: the bot's own queue and the
        upload of attachments are part of it.
        """
        record = record or JobRecord(id=new_job_id(), workflow=workflow.name, values=shown_values(values))
        started = time.monotonic() - max(0.0, time.time() - (since or record.created_at))
        await self._save(record)
        server: ComfyServer | None = None
        try:
            if self.store is not None:  # kept before the queue: a restart may have to start the job from them
                await keep_inputs(self.store, record.id, values)
            async with self._deadline(started):
                server = await self._pick_server(record.id, workflow, on_progress)
                while True:
                    try:
                        ready = await self._server_values(server, workflow, values)
                        break
                    except ComfyUnreachable as exc:
                        old, server = server, await self._try_again(server, record, workflow, exc)
                        if server is not old and on_progress is not None:
                            await _call(on_progress, Progress(moved_to=server.client.name))
                prompt = workflow.render(ready)
            # The names the attachments got on the server, stored with the prompt that uses them
            uploaded = {name: str(ready[name]) for name, value in values.items() if isinstance(value, InputFile)}
            record = await self._save(
                record, server=server.client.name, prompt=prompt, inputs={**record.inputs, **uploaded}
            )
        except BaseException as exc:
            if server is not None:  # whatever went wrong, the slot goes back before anything else is awaited
                self._release(server, record.id)
            if isinstance(exc, BotError):
                await self._end(record, exc)
            raise
        log.info("job %s: /%s on %s", record.id, workflow.name, server.client.name)
        copies = stored_copies(self.store, record.id) if self.store is not None else held_copies(values)
        return await self._execute(
            server, record, workflow=workflow, copies=copies, on_progress=on_progress, started=started, submit=True
        )

    async def resume(self, record: JobRecord, on_progress: OnProgress | None = None) -> JobResult:
        """Pick up a job a previous run of the bot submitted: wait for it, fetch it, or resubmit it once."""
        server = next((s for s in self.servers if s.client.name == record.server), None)
        if server is None or record.prompt is None:
            error = JobLost(detail=f"server {record.server!r} is no longer configured")
            await self._end(record, error)
            raise error
        await self._wait_connected(server)
        server.active.add(record.id)
        workflow = self.workflows.get(record.workflow)  # None: no longer a command; it may still move anywhere
        copies = stored_copies(self.store, record.id) if self.store is not None else held_copies({})
        return await self._execute(
            server,
            record,
            workflow=workflow,
            copies=copies,
            on_progress=on_progress,
            started=time.monotonic(),
            submit=False,
        )

    def whereabouts(self, job_id: str) -> str:
        """Where a job of this process is now, in words for /queue."""
        position = self.queue.position(job_id)
        if position is not None:
            return WAITING_FOR_SLOT.format(position=position)
        for server in self.servers:
            watch = _watch_of(server, job_id)
            if watch is not None:
                if watch.last_position == 0:
                    return RUNNING_ON.format(server=server.client.name)
                if watch.last_position:
                    return QUEUED_ON.format(server=server.client.name, position=watch.last_position)
                return SUBMITTED_TO.format(server=server.client.name)
        return PREPARING

    async def cancel(self, job_id: str) -> None:
        """Stop a job of this process: removed if pending, interrupted if running (never anyone else's)."""
        if job_id in self._cancelled:
            raise InvalidInput(CANCELLING_ALREADY)
        if self.queue.cancel(job_id):
            return
        found = next(((s, w) for s in self.servers if (w := _watch_of(s, job_id)) is not None), None)
        if found is None:
            raise InvalidInput(BEING_SUBMITTED)
        server, watch = found
        self._cancelled.add(job_id)
        await server.client.cancel(watch.prompt_id)
        server.listener.request_reconcile()

    async def _execute(
        self,
        server: ComfyServer,
        record: JobRecord,
        *,
        workflow: Workflow | None,
        copies: Copies,
        on_progress: OnProgress | None,
        started: float,
        submit: bool,
    ) -> JobResult:
        """Submit the job to `server` (or follow it there) until it ends; move it when the server goes down."""
        assert record.prompt is not None
        prompt = record.prompt
        prompt_id = record.prompt_id or record.id
        counted = True  # this submission counts toward MAX_ATTEMPTS (a job moved before it started does not)
        gpu = _GpuClock()
        placed = True  # its attachments are on `server` (run() uploaded them there)
        try:
            async with asyncio.timeout(max(0.0, started + self.job_timeout - time.monotonic())):
                while True:
                    client_id = None  # submitted by an earlier run of the bot: its events go to an old clientId
                    if submit:
                        prompt_id = uuid_form(record.id)
                        try:
                            if not placed and record.inputs:
                                # Its attachments may be gone from the server, another file may have their name,
                                # or the job is on a new server: put them there again, from the copies.
                                again = await ensure_inputs(server.client, record, copies)
                                if again is not record:
                                    record = await self._save(record, inputs=again.inputs, prompt=again.prompt)
                                assert record.prompt is not None
                                prompt = record.prompt
                            placed = True
                            watch = server.listener.watch(prompt_id, prompt)  # before submitting: no event missed
                            client_id = server.listener.client_id
                            await server.client.submit(prompt, client_id=client_id, prompt_id=prompt_id)
                        except ComfyUnreachable as exc:
                            server.listener.unwatch(prompt_id)
                            old, server = server, await self._try_again(server, record, workflow, exc)
                            placed = False
                            if server is not old and on_progress is not None:
                                await _call(on_progress, Progress(moved_to=server.client.name))
                            continue
                        first = record.attempts == 0
                        record = await self._save(
                            record,
                            state=JobState.SUBMITTED,
                            server=server.client.name,
                            attempts=record.attempts + counted,
                            prompt_id=None if prompt_id == record.id else prompt_id,
                        )
                        if first and record.attempts and self.usage is not None:
                            self.usage.submitted(record)
                    else:
                        watch = server.listener.watch(prompt_id, prompt)
                    watch.max_images, watch.max_image_bytes = self.max_outputs_per_job, self.max_job_output_bytes
                    watch.previews = self._wants_previews(workflow, on_progress)
                    server.listener.submitted(watch, client_id)
                    try:
                        progress = self._noting_start(record, on_progress, gpu)
                        try:
                            entry = await self._follow(server, watch, record, workflow, progress)
                        finally:
                            gpu.stop()  # this attempt ended on ComfyUI, or the bot stopped following it
                        break
                    except JobLost as exc:
                        if record.id in self._cancelled:
                            raise JobCancelled() from None
                        # Only a loss while it ran counts: a job that may bring the server down is not retried
                        # forever, but one forgotten in a queue (a restart, a cleared queue) never ran at all.
                        counted = watch.last_position == 0 or record.state is JobState.RUNNING
                        if counted and record.attempts >= MAX_ATTEMPTS:
                            raise JobLostTooOften(record.attempts, detail=exc.detail) from None
                        server.listener.unwatch(prompt_id)
                        log.warning("job %s vanished from %s; submitting it again", record.id, server.client.name)
                        if on_progress is not None:
                            await _call(on_progress, Progress(resubmitted=True))
                    except _Moving as move:
                        # The server went down with the job; another one that can run it has a free slot.
                        server.listener.unwatch(prompt_id)
                        self._cancel_when_back(server, prompt_id)  # it may have been cut off, not restarted
                        self._moved(server, move.target, record, restarted=move.started)
                        server, counted = move.target, move.started
                        if on_progress is not None:
                            await _call(on_progress, Progress(moved_to=server.client.name, restarted=counted))
                    placed, submit = False, True
                if record.id in self._cancelled:
                    raise JobCancelled()
                _raise_if_failed(entry, prompt)
                while True:
                    try:
                        scratch, files, texts, skipped = await self._collect(server.client, entry, watch)
                        break
                    except ComfyUnreachable as exc:
                        # Its files stay on the server's disk, also across a restart: wait for it to answer.
                        log.warning(
                            "job %s: files not downloaded from %s yet: %s", record.id, server.client.name, exc.detail
                        )
                        await asyncio.sleep(FAILOVER_CHECK)
                        await server.listener.connected.wait()
        except TimeoutError:
            await _best_effort(server.client.cancel(prompt_id))
            down = server.listener.state == "down"
            error: BotError = JobTimeout(self.job_timeout, down_server=server.client.name if down else None)
            await self._end(record, error, gpu.total)
            raise error from None
        except BotError as exc:
            await self._end(record, exc, gpu.total)
            raise
        finally:
            server.listener.unwatch(prompt_id)
            self._cancelled.discard(record.id)
            self._release(server, record.id)
            if gpu.total and self.usage is not None:
                self.usage.ran(record, gpu.total)
        try:
            await self._save(record, state=JobState.DELIVERING, gpu_seconds=record.gpu_seconds + gpu.total)
        except BaseException:
            scratch.discard()  # no result to own the files: they go now
            raise
        seconds = time.monotonic() - started
        log.info("job %s: done in %.1fs with %d file(s)", record.id, seconds, len(files))
        return JobResult(
            record.id, record.workflow, dict(record.values), server.client.name, files, texts, seconds, skipped, scratch
        )

    def _failover_target(
        self, server: ComfyServer, record: JobRecord, workflow: Workflow | None, started: bool
    ) -> ComfyServer | None:
        """The least loaded other server that is up, can run the job and has a free slot; None: stay and wait.

        A job that was running moves only while it has attempts left: it is resubmitted once, not bounced
        from server to server. The slot is taken here, before anything is awaited.
        """
        if started and record.attempts >= MAX_ATTEMPTS:
            return None
        candidates = [
            s
            for s in self.servers
            if s is not server
            and s.listener.connected.is_set()
            and not s.stale  # back from a restart, perhaps with other models: read first (see _refresh)
            and (not self.slots(s) or len(s.active) < self.slots(s))
            and (workflow is None or s.problems_with(workflow) in ([], None))
        ]
        if not candidates:
            return None
        target = min(candidates, key=lambda s: s.load)
        target.active.add(record.id)
        return target

    async def _try_again(
        self, server: ComfyServer, record: JobRecord, workflow: Workflow | None, problem: BotError
    ) -> ComfyServer:
        """`server` did not take the job: the server to try next, once it answers again or another can take it.

        Returns `server` itself, or another whose slot is taken, the slot on `server` given back: the caller
        must hold the result before it awaits anything else.
        """
        log.warning("job %s: %s did not take it: %s", record.id, server.client.name, problem.detail)
        while True:
            await asyncio.sleep(FAILOVER_CHECK)
            if server.listener.connected.is_set():
                return server  # it answers its socket: a passing error, or it is back
            target = self._failover_target(server, record, workflow, started=False)
            if target is not None:
                self._moved(server, target, record, restarted=False)
                return target

    def _moved(self, old: ComfyServer, new: ComfyServer, record: JobRecord, *, restarted: bool) -> None:
        """Give back the job's slot on the server it leaves (its slot on `new` is already taken)."""
        self._release(old, record.id)
        what = "starts again on" if restarted else "moved to"
        log.warning("job %s: %s is down; %s %s", record.id, old.client.name, what, new.client.name)

    def _cancel_when_back(self, server: ComfyServer, prompt_id: str) -> None:
        """Cancel a moved job on the server it left once that server answers again (within the job timeout)."""

        async def cancel() -> None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.job_timeout):
                    await server.listener.connected.wait()
                    await _best_effort(server.client.cancel(prompt_id))

        task = asyncio.create_task(cancel(), name=f"cancel moved {prompt_id}")
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def _wants_previews(self, workflow: Workflow | None, on_progress: OnProgress | None) -> bool:
        """Whether the job's preview images are kept: previews on, someone to show them, and not off in its binding."""
        return self.previews and on_progress is not None and (workflow is None or workflow.previews)

    def _noting_start(self, record: JobRecord, on_progress: OnProgress | None, gpu: _GpuClock) -> OnProgress:
        """Pass progress on, and record the moment ComfyUI starts running the job (its GPU time starts)."""
        noted = False

        async def forward(progress: Progress) -> None:
            nonlocal noted
            if not noted and progress.position is None and progress.waiting is None:
                noted = True
                gpu.start()
                await self._save(record, state=JobState.RUNNING)
            if on_progress is not None:
                await _call(on_progress, progress)

        return forward

    async def finish(
        self, job_id: str, state: JobState, error: str | None = None, *, more_messages: Sequence[int] = ()
    ) -> None:
        """Record how a job ended once the member has its result (or its error): it is reported now.

        `more_messages` are the ids of a result's further messages, for its Delete button.
        """
        if self.store is not None and (record := await self.store.get(job_id)) is not None:
            stored = localize(error, record.locale) if error is not None else None
            more = {"more_messages": list(more_messages)} if more_messages else {}
            await self.store.update(record, state=state, error=stored, reported=True, **more)

    async def _end(self, record: JobRecord, error: BotError, gpu_seconds: float = 0.0) -> None:
        """Record a job that ends with `error` after running `gpu_seconds`: cancelled when asked for, else failed."""
        state = JobState.CANCELLED if isinstance(error, JobCancelled) else JobState.FAILED
        # Not reported yet: if the bot dies before the front tells the member, recovery tells them.
        await self._save(
            record,
            state=state,
            error=localize(error.user_message, record.locale),  # as its member reads it, also after a restart
            reported=False,
            gpu_seconds=record.gpu_seconds + gpu_seconds,
        )

    async def _save(self, record: JobRecord, **changes: Any) -> JobRecord:
        if self.store is None:
            return replace(record, **changes)
        if not changes:
            await self.store.add(record)
            return record
        return await self.store.update(record, **changes)

    async def _wait_connected(self, server: ComfyServer) -> None:
        try:
            async with asyncio.timeout(CONNECT_WAIT):
                await server.listener.connected.wait()
        except TimeoutError:
            pass  # reconciliation retries once the socket is back; the job timeout still applies

    @contextlib.asynccontextmanager
    async def _deadline(self, started: float) -> AsyncIterator[None]:
        """Raise JobTimeout once JOB_TIMEOUT has passed since `started` (a time.monotonic() value)."""
        window = asyncio.timeout(max(0.0, started + self.job_timeout - time.monotonic()))
        try:
            async with window:
                yield
        except TimeoutError:
            if not window.expired():
                raise  # someone else's timeout, not the job's
            raise JobTimeout(self.job_timeout) from None

    async def _pick_server(self, job_id: str, workflow: Workflow, on_progress: OnProgress | None) -> ComfyServer:
        """Wait in the bot's queue for a free slot on a server that can run `workflow` (see _placement_round)."""

        async def on_waiting(waiting: Waiting) -> None:
            if on_progress is not None:
                shown = Progress(servers_down=True) if waiting.servers_down else Progress(waiting=waiting.position)
                await _call(on_progress, shown)

        # Only the commands in use are routed by capability; another (a one-off `cli.py run`) goes to any
        # server, whose own refusal then says what is wrong.
        routed = self.workflows.get(workflow.name) == workflow
        try:
            return await self.queue.wait(job_id, (workflow, routed), on_waiting, CONNECT_WAIT)
        finally:
            self.limits.left_queue(job_id)

    def _placement_round(self) -> Callable[[Waiter[ComfyServer]], ComfyServer | BotError | None]:
        """Decide for each waiting job: the least loaded server up that can run it and has a free slot.

        A job arriving while a socket (re)connects waits briefly, but not once every server has just failed a
        connection attempt: then the member hears at once that ComfyUI is unreachable, or, when servers are
        up but none of them can run the workflow, what each one lacks. A job that arrived while a server could
        run it is never dropped for an outage: it waits (within JOB_TIMEOUT) for one to be back.
        """
        now = time.monotonic()
        connected = [s for s in self.servers if s.listener.connected.is_set()]
        for server in connected:
            if server.stale:
                self._refresh(server)
        fresh = [s for s in connected if not s.stale]  # a stale one may have restarted with other models
        capable_cache: dict[tuple[str, bool], list[ComfyServer]] = {}

        def capable(workflow: Workflow, routed: bool) -> list[ComfyServer]:
            key = (workflow.name, routed)
            found = capable_cache.get(key)
            if found is None:
                if not routed:
                    found = connected
                else:
                    # A server whose /object_info could not be read (a broken custom node) is still tried when
                    # none is known to fit: its own refusal then says what is wrong, as without routing.
                    found = [s for s in fresh if s.problems_with(workflow) == []] or [
                        s for s in fresh if s.problems_with(workflow) is None
                    ]
                capable_cache[key] = found
            return found

        full: set[tuple[str, bool]] = set()  # jobs of these found every capable server full in this round

        def decide(waiter: Waiter[ComfyServer]) -> ComfyServer | BotError | None:
            workflow, routed = waiter.subject
            if (workflow.name, routed) in full:  # as full for this one as for the one before it: no need to look
                return None
            servers = capable(workflow, routed)
            if servers:
                waiter.accepted, waiter.down = True, False
                free = [s for s in servers if not self.slots(s) or len(s.active) < self.slots(s)]
                if not free:
                    full.add((workflow.name, routed))
                    return None
                server = min(free, key=lambda s: s.load)
                server.active.add(waiter.job_id)
                return server
            if waiter.accepted:
                waiter.down = True
                return None
            # A server still connecting may be the one that can run it: wait for it as for any.
            all_failed = all(s.listener.last_failure > waiter.asked for s in self.servers if s not in fresh)
            if not all_failed and now - waiter.asked < CONNECT_WAIT:
                return None
            if not connected:
                return ComfyUnreachable(", ".join(s.client.name for s in self.servers), "websocket not connected")
            return self._refusal(workflow)

        return decide

    def _server_changed(self, server: ComfyServer) -> None:
        """A server went up or down: jobs may go to it now (once its capabilities are read), or wait."""
        if server.stale:
            self._refresh(server)
        self.queue.dispatch()

    def _refresh(self, server: ComfyServer) -> None:
        """Read the capabilities of a server that reconnected (it may have restarted), then place jobs again."""
        if server in self._refreshing:
            return

        async def refresh() -> None:
            try:
                await server.refresh(self.workflows)
            except BotError as exc:
                log.warning("cannot read the capabilities of %s: %s", server.client.name, exc.detail)
                server.known_connection = server.listener.client_id  # used with what was known before
            finally:
                del self._refreshing[server]
            self.queue.dispatch()

        self._refreshing[server] = asyncio.create_task(refresh(), name=f"capabilities of {server.client.name}")

    def _refusal(self, workflow: Workflow) -> BotError:
        """Why no connected server can run `workflow`, server by server, in the configured order."""
        verdicts = [
            verdict(s.client.name, s.problems_with(workflow), connected=s.listener.connected.is_set())
            for s in self.servers
        ]
        error = refusal(workflow.name, verdicts)
        log.warning("job for /%s refused: %s", workflow.name, error.user_message)
        return error

    def capabilities(self, workflows: Mapping[str, Workflow]) -> None:
        """Use `workflows` as the commands in use: each server checks them against its last /object_info."""
        self.workflows = dict(workflows)
        for server in self.servers:
            server.learn(self.workflows)
        self.queue.dispatch()

    def server_status(self) -> list[ServerStatus]:
        """Every configured server's health, load and capabilities, in the configured order."""
        return [server.status() for server in self.servers]

    def slots(self, server: ComfyServer) -> int:
        """Jobs `server` may hold at once: its own max_jobs from servers.toml, else MAX_JOBS_PER_SERVER; 0: any."""
        return server.client.config.max_jobs or self.max_jobs_per_server

    def _release(self, server: ComfyServer, job_id: str) -> None:
        """Free a job's slot and hand it on (synchronous, so safe in `finally`)."""
        server.active.discard(job_id)
        self.queue.dispatch()

    async def object_infos(self) -> tuple[list[dict[str, Any]], list[str | None]]:
        """Read every server's /object_info again, all at once (kept for routing); return those that answered.

        With each its version: the one the listener read when it connected; a server not connected yet is asked.
        """
        results = await asyncio.gather(*(s.refresh(self.workflows) for s in self.servers), return_exceptions=True)
        infos: list[dict[str, Any]] = []
        versions: list[str | None] = []
        for server, result in zip(self.servers, results, strict=True):
            if isinstance(result, BotError):
                log.warning("cannot check workflows against %s: %s", server.client.name, result.detail)
            elif isinstance(result, BaseException):
                raise result
            else:
                infos.append(result)
                versions.append(server.client.info.version)
        return infos, versions

    async def choices(self, source: str, typed: str = "") -> list[str]:
        """Values the servers offer for "Class.input" that contain `typed` (for autocomplete)."""
        found: list[str] = []
        for server in self.servers:
            try:
                found += [v for v in await server.options(source) if v not in found]
            except BotError as exc:
                log.info("choices for %s unavailable from %s: %s", source, server.client.name, exc.detail)
        typed = typed.lower()
        return [v for v in found if typed in v.lower()]

    async def _server_values(
        self, server: ComfyServer, workflow: Workflow, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Check server-backed choices on the server that runs the job, and upload attached files to it."""
        ready = dict(values)
        for param in workflow.params:
            value = ready.get(param.name)
            if param.choices_from and value is not None:
                value = ready[param.name] = param.offered_value(value, await server.options(param.choices_from))
            if isinstance(value, InputFile):
                ready[param.name] = await server.client.upload(value.filename, value.data, subfolder=UPLOAD_SUBFOLDER)
        return ready

    async def _follow(
        self,
        server: ComfyServer,
        watch: Watch,
        record: JobRecord,
        workflow: Workflow | None,
        on_progress: OnProgress | None,
    ) -> HistoryEntry:
        """Pass the job's progress on until it ends; raise _Moving when its server is down and another can take it."""
        assert record.prompt is not None
        last = Progress()  # the state a preview is shown with
        while True:
            down = server.listener.state == "down"
            try:
                # While the server is down, look for another one every FAILOVER_CHECK seconds.
                event = await asyncio.wait_for(watch.events.get(), FAILOVER_CHECK if down else None)
            except TimeoutError:
                event = None
            if event is None or isinstance(event, ServerDown):
                started = watch.last_position == 0
                if server.listener.state == "down":
                    target = self._failover_target(server, record, workflow, started)
                    if target is not None:
                        raise _Moving(target, started)
                continue
            if isinstance(event, Finished):
                return event.history
            if isinstance(event, Lost):
                raise JobLost(detail=event.reason)
            if isinstance(event, Unreadable):
                raise event.error
            if on_progress is None:
                continue
            if isinstance(event, Previewed):
                image = watch.take_preview()
                if image is None:
                    continue
                progress = replace(last, preview=image)
            elif isinstance(event, Queued):
                progress = last = Progress(position=event.position)
            else:
                assert isinstance(event, Running)
                label = running_label(record.prompt, event.node) if event.node else None
                progress = last = Progress(node=label, step=event.value, steps=event.max)
            await _call(on_progress, progress)

    async def _collect(
        self, client: ComfyClient, entry: HistoryEntry, watch: Watch
    ) -> tuple[Scratch, tuple[OutputFile, ...], tuple[str, ...], tuple[str, ...]]:
        """Download the job's output files into a new scratch; return it with the files, texts and skips.

        The scratch is discarded again if anything fails, cancels included: then the caller owns no file.
        """
        scratch = self.spool.scratch(watch.prompt_id)
        try:
            return scratch, *await self._download(client, entry, watch, scratch)
        except BaseException:
            scratch.discard()
            raise

    async def _download(
        self, client: ComfyClient, entry: HistoryEntry, watch: Watch, scratch: Scratch
    ) -> tuple[tuple[OutputFile, ...], tuple[str, ...], tuple[str, ...]]:
        """Download the job's output files within the caps into `scratch`; name the ones over them instead."""
        files: list[OutputFile] = []
        texts: list[str] = []
        skipped: list[str] = []
        total = 0
        count_cap = TOO_MANY_FILES.format(count=self.max_outputs_per_job)
        total_cap = TOO_MUCH_IN_ALL.format(size=human_size(self.max_job_output_bytes))
        file_cap = TOO_LARGE_FILE.format(size=human_size(self.max_output_bytes))
        for node_id, output in entry["outputs"].items():
            for key in FILE_KEYS:
                for ref in output["files"][key]:
                    if ref["type"] != "output":
                        continue  # previews in the temp folder
                    if len(files) >= self.max_outputs_per_job:
                        skipped.append(_skipped(ref["filename"], None, count_cap))
                        continue
                    room = self.max_job_output_bytes - total
                    if room <= 0:  # nothing more fits: not even asked for
                        skipped.append(_skipped(ref["filename"], None, total_cap))
                        continue
                    limit = min(self.max_output_bytes, room)
                    sink = scratch.sink(_local_name(len(files), ref["filename"]))
                    try:
                        size = await client.download(ref, sink, max_bytes=limit)
                    except TooLarge as exc:
                        over_file = limit == self.max_output_bytes or (exc.size or 0) > self.max_output_bytes
                        skipped.append(
                            _skipped(ref["filename"], exc.size or -limit, file_cap if over_file else total_cap)
                        )
                        continue
                    total += size
                    files.append(OutputFile(ref["filename"], sink.path, size, node_id, sink.data))
            texts.extend(output["text"])
        for index, (node_id, data) in enumerate(watch.ws_images, start=1):
            extension = "jpg" if data[:2] == b"\xff\xd8" else "png"
            name = f"{watch.prompt_id[:8]}_{index:02d}.{extension}"
            if len(files) >= self.max_outputs_per_job:
                skipped.append(_skipped(name, len(data), count_cap))
            elif total + len(data) > self.max_job_output_bytes:
                skipped.append(_skipped(name, len(data), total_cap))
            else:
                total += len(data)
                if scratch.keep_in_memory(len(data)):
                    files.append(OutputFile(name, None, len(data), node_id, data))
                else:
                    path = scratch.folder() / _local_name(len(files), name)
                    _write(path, data)
                    files.append(OutputFile(name, path, len(data), node_id))
        first_dropped = len(watch.ws_images) + 1
        for index, (_node_id, size) in enumerate(watch.ws_dropped, start=first_dropped):
            reason = count_cap if first_dropped > self.max_outputs_per_job else total_cap
            skipped.append(_skipped(f"{watch.prompt_id[:8]}_{index:02d}", size, reason))
        if not files and not texts and not skipped:
            raise BotError(NO_OUTPUT, detail=f"outputs: {entry['outputs']}")
        return tuple(files), tuple(texts), tuple(skipped)


def _local_name(index: int, filename: str) -> str:
    """The name of an output's temporary file: its place in the job, and its extension when that is plain."""
    suffix = PurePosixPath(filename).suffix.lower()
    return f"{index:03d}{suffix if suffix[1:].isascii() and suffix[1:].isalnum() and len(suffix) <= 9 else ''}"


def _write(path: Path, data: bytes) -> None:
    """Put a small output received in memory (a websocket image) into its temporary file."""
    path.write_bytes(data)


def shown_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Option values as they are stored and shown: an attached file by its name."""
    return {k: str(v) if isinstance(v, InputFile) else v for k, v in values.items()}


def new_job_id() -> str:
    """A job id, also ComfyUI's prompt_id and part of button custom_ids.

    Canonical lowercase hyphenated UUID: newer ComfyUI refuses any other prompt_id, 0.3.64 takes it as is.
    Jobs stored by earlier versions keep their 32-hex ids; nothing parses an id, so both keep working.
    """
    return str(uuid.uuid4())


def _skipped(filename: str, size: int | None, reason: str) -> str:
    """One line naming an output that was not downloaded; a negative size means "more than -size"."""
    name = cap(filename, MAX_NAME_SHOWN)
    if size is None:
        return NOT_DOWNLOADED.format(name=name, reason=reason)
    shown = MORE_THAN.format(size=human_size(-size)) if size < 0 else human_size(size)
    return NOT_DOWNLOADED_SIZE.format(name=name, size=shown, reason=reason)


def _watch_of(server: ComfyServer, job_id: str) -> Watch | None:
    """The watch of a job on `server`, under its job id or the UUID form an old 32-hex job is resubmitted in."""
    watches = server.listener.watches
    return watches.get(job_id) or watches.get(uuid_form(job_id))


def uuid_form(job_id: str) -> str:
    """The prompt_id a job is submitted under: its id, a 32-hex one (older jobs) written as servers now require."""
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        return job_id


def _raise_if_failed(entry: HistoryEntry, prompt: Prompt) -> None:
    """Turn an unsuccessful history entry into the error that explains it."""
    status = entry["status"]
    for kind, data in status["messages"]:
        if kind == "execution_error":
            label = node_label(prompt, str(data["node_id"]), data["node_type"])
            said = data["exception_message"].strip()
            message = cap(said, MAX_ERROR_TEXT) if said else NO_MESSAGE
            raise ExecutionFailed(
                FAILED_IN.format(node=label, message=message),
                detail=f"{data.get('exception_type')}: {data.get('exception_message')}\n" + "".join(data["traceback"]),
            )
        if kind == "execution_interrupted":
            raise JobInterrupted(detail=f"interrupted at node {data.get('node_id')}")
    if status["status_str"] == "error":
        raise ExecutionFailed(FAILED_SILENTLY, detail=str(status))


async def _call(on_progress: OnProgress, progress: Progress) -> None:
    result = on_progress(progress)
    if result is not None:
        await result


async def _best_effort(call: Awaitable[Any]) -> None:
    try:
        await call
    except BotError as exc:
        log.debug("best-effort call failed: %s", exc.detail)

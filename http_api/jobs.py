"""The HTTP API's jobs: each runs in a task on the shared engine, its live state kept here, its files on disk.

A token is a member for the queue: its jobs count under the engine's limits (pending jobs, cooldown) with
a member id derived from the token's name. Outputs are saved under `<output dir>/<job id>/` and kept for
`keep_hours`; the store keeps the job itself, so that `GET /jobs?mine=1` lists it after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import shutil
import sqlite3
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from core.errors import BotError, InvalidInput, JobCancelled
from core.jobs.engine import Engine, JobResult, OutputFile, Progress, new_job_id, shown_values
from core.jobs.limits import Reservation
from core.jobs.store import SAFE_NAME, JobRecord, JobState, JobStore, StoreError
from core.media import content_type
from core.servers import redact_url
from core.workflows import Workflow
from http_api.webhooks import WebhookResolver, signed_headers, webhook_problem, webhook_session

log = logging.getLogger(__name__)

CLEAN_EVERY = 3600.0  # seconds between two sweeps of old output folders
WEBHOOK_TRIES = 4  # the first call and 3 retries
WEBHOOK_BACKOFF = 2.0  # seconds before the first retry, doubling after each
WEBHOOK_TIMEOUT = 10.0  # seconds one webhook call may take
RESTARTED = "The service restarted before this job finished; submit it again."
_UNSAFE_FILE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_FILE_NAME = 100  # characters of a file name of ours
MAX_EXTENSION = 10  # characters after the last dot that a shortened name keeps
# How the store's states read in the API: a job on a server's queue is still queued for the client.
API_STATES = {
    JobState.QUEUED: "queued",
    JobState.SUBMITTED: "queued",
    JobState.RUNNING: "running",
    JobState.DELIVERING: "running",
    JobState.DONE: "done",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
}


def api_user_id(token_name: str) -> int:
    """The member id of an API token: stable, negative (Discord ids are positive, so they never collide)."""
    digest = hashlib.sha256(f"http-api:{token_name}".encode()).digest()
    return -(int.from_bytes(digest[:7], "big") + 1)  # fits SQLite's 64-bit integers


@dataclass(slots=True)
class ApiJob:
    """One API job as it runs (mutable: its task updates it as the engine reports progress)."""

    id: str
    workflow: str
    owner: str  # the token's name
    state: str = "queued"
    position: int | None = None
    progress: float | None = None  # 0 to 1 while a node reports steps
    node: str | None = None
    server: str | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    webhook: str | None = field(default=None, repr=False)  # called once when the job ends
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class SavedOutput:
    """A file of a finished job, on disk."""

    name: str
    path: Path
    size: int
    content_type: str


class ApiJobs:
    """Runs the API's jobs on the engine and answers for them: live ones from memory, older ones from the store."""

    def __init__(
        self,
        engine: Engine,
        store: JobStore,
        session: aiohttp.ClientSession,
        output_dir: Path,
        *,
        keep_hours: float = 24.0,
        webhook_backoff: float = WEBHOOK_BACKOFF,
        webhook_secret: str | None = None,
        allow_private: bool = False,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.session = session  # for webhooks when they may reach private addresses (no check to make)
        # Without it: webhooks only to public addresses, checked at submit and on each connection (see webhooks)
        self.guard = None if allow_private else WebhookResolver(resolver)
        self._webhooks: aiohttp.ClientSession | None = None  # the guarded session, made when first needed
        self.webhook_secret = webhook_secret
        self.output_dir = output_dir
        self.keep_seconds = keep_hours * 3600
        self.webhook_backoff = webhook_backoff
        self.live: dict[str, ApiJob] = {}  # jobs of this process, until they end and a while after
        self._tasks: set[asyncio.Task[Any]] = set()  # the sweeper, jobs and webhook calls
        self._keys = asyncio.Lock()  # idempotent submits one at a time: a key's lookup and its job are one step

    async def start(self) -> None:
        """End the API jobs a previous run left unfinished; sweep old outputs now and every hour."""
        for record in await self.store.unfinished():
            if record.user_id is not None and record.user_id < 0:  # an API job (see api_user_id)
                state = record.state if record.state.finished else JobState.FAILED
                await self.engine.finish(record.id, state, record.error if record.state.finished else RESTARTED)
        self._spawn(self._clean_regularly(), "api outputs cleaner")

    async def close(self) -> None:
        """Stop the sweeper, the jobs' tasks and webhook calls (the jobs stay in the store as they are)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._webhooks is not None:
            await self._webhooks.close()  # closes the guard's resolver too

    async def webhook_problem(self, url: str) -> str | None:
        """Why `url` cannot be a webhook here (the client's message), or None."""
        return await webhook_problem(url, self.guard)

    def _spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def submit_once(
        self,
        owner: str,
        key: str,
        workflow: Workflow,
        values: Mapping[str, Any],
        *,
        webhook: str | None = None,
        reservation: Reservation | None = None,
    ) -> tuple[ApiJob | JobRecord, bool]:
        """The job `owner` submitted with Idempotency-Key `key` (also in an earlier run), or a new one.

        Returns the job and whether it is new (only a new one takes `reservation` over).
        """
        async with self._keys:
            job_id = await self.store.call(_job_of_key, api_user_id(owner), key)
            if job_id is not None:
                found = self.live.get(job_id) or await self.record(owner, job_id)
                if found is not None:
                    return found, False
            job = self.submit(owner, workflow, values, webhook=webhook, reservation=reservation)
            await self.store.call(_remember_key, api_user_id(owner), key, job.id)
            return job, True

    def reserve(self, owner: str) -> Reservation:
        """The token's place for a new job under the limits; InvalidInput says which limit refuses it."""
        return self.engine.limits.reserve(api_user_id(owner), new_job_id())

    def submit(
        self,
        owner: str,
        workflow: Workflow,
        values: Mapping[str, Any],
        *,
        webhook: str | None = None,
        reservation: Reservation | None = None,
    ) -> ApiJob:
        """Start the job in its reserved place, reserved now if not given (no await: concurrent submits count).

        The job's task releases the place when it ends.
        """
        reservation = reservation or self.reserve(owner)
        job = ApiJob(reservation.job_id, workflow.name, owner, created_at=reservation.created_at, webhook=webhook)
        self.live[job.id] = job
        record = JobRecord(
            id=job.id,
            workflow=workflow.name,
            values=shown_values(values),
            user_id=api_user_id(owner),
            created_at=reservation.created_at,
        )

        async def run() -> None:
            try:
                await self._run(job, workflow, values, record, reservation)
            finally:
                reservation.release()

        job.task = self._spawn(run(), f"api job {job.id}")
        return job

    async def _run(
        self, job: ApiJob, workflow: Workflow, values: Mapping[str, Any], record: JobRecord, place: Reservation
    ) -> None:
        def progress(update: Progress) -> None:
            job.position = update.waiting or update.position
            waiting = update.servers_down or update.moved_to is not None  # still not started anywhere
            if job.position is None and job.state == "queued" and not waiting:
                job.state, job.started_at = "running", time.time()
            if update.node is not None:
                job.node = update.node
            job.progress = update.step / update.steps if update.step is not None and update.steps else None
            if update.moved_to is not None:
                job.server = update.moved_to

        try:
            with await self.engine.run(workflow, values, progress, record=record) as result:
                job.server = result.server
                await asyncio.to_thread(save_outputs, result, self.output_dir / job.id)
        except BotError as exc:
            self._end(job, place, "cancelled" if isinstance(exc, JobCancelled) else "failed", exc.user_message)
            await self.engine.finish(job.id, JobState(job.state), exc.user_message)
            return
        except OSError as exc:  # the disk: the job ran, but its files could not be kept
            log.error("api job %s: cannot save its outputs: %s", job.id, exc)
            message = "The job ran, but its files could not be saved on the bot's disk."
            self._end(job, place, "failed", message)
            await self.engine.finish(job.id, JobState.FAILED, message)
            return
        self._end(job, place, "done", None)
        await self.engine.finish(job.id, JobState.DONE)

    def _end(self, job: ApiJob, place: Reservation, state: str, error: str | None) -> None:
        place.release()  # first: a client that reads the job as ended may submit the next one at once
        job.state, job.error, job.finished_at = state, error, time.time()
        job.position = job.progress = None
        if job.webhook is not None:
            self._spawn(self._call_webhook(job.webhook, self.describe(job)), f"webhook of api job {job.id}")

    async def _call_webhook(self, url: str, body: dict[str, Any]) -> None:
        """POST the ended job to its webhook, signed; retried with backoff, and a last failure logged."""
        shown = redact_url(url)
        data = json.dumps(body).encode()
        session = self.session
        if self.guard is not None:  # never the shared session: it would connect anywhere
            self._webhooks = self._webhooks or webhook_session(self.guard)
            session = self._webhooks
        # Checked again in full now: aiohttp connects to what it takes for an IP literal (2130706433 too) without
        # asking the guard, which checks the addresses of the names it is asked about on each connection
        problem = await webhook_problem(url, self.guard)
        if problem is not None:
            log.warning("webhook of api job %s to %s not called: %s", body["id"], shown, problem)
            return
        for attempt in range(1, WEBHOOK_TRIES + 1):
            try:
                async with session.post(
                    url,
                    data=data,
                    headers=signed_headers(self.webhook_secret, data),
                    timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT),
                    allow_redirects=False,  # a redirect could lead to an internal address
                ) as response:
                    if response.status < 300:
                        return
                    reason = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = type(exc).__name__
            if attempt == WEBHOOK_TRIES:
                log.warning(
                    "webhook of api job %s to %s failed %d times (last: %s)", body["id"], shown, attempt, reason
                )
                return
            log.info("webhook of api job %s to %s failed (%s); retrying", body["id"], shown, reason)
            await asyncio.sleep(self.webhook_backoff * 2 ** (attempt - 1))

    def describe(self, job: ApiJob | JobRecord) -> dict[str, Any]:
        """A job as the API shows it, from its live state or, for one of an earlier run, from the store."""
        shown: dict[str, Any] = {"id": job.id, "workflow": job.workflow}
        if isinstance(job, ApiJob):
            shown |= {
                "state": job.state,
                "position": job.position,
                "progress": job.progress,
                "node": job.node,
                "server": job.server,
                "error": job.error,
                "created_at": job.created_at,
                "started_at": job.started_at,
                "finished_at": job.finished_at,
            }
        else:
            finished = job.state.finished
            shown |= {
                "state": API_STATES[job.state] if finished else "failed",  # not live: its process stopped
                "position": None,
                "progress": None,
                "node": None,
                "server": job.server,
                "error": job.error if finished else RESTARTED,
                "created_at": job.created_at,
                "started_at": None,
                "finished_at": job.updated_at if finished else None,
            }
        outputs = self.outputs(job.id) if shown["state"] == "done" else []
        shown["outputs"] = [
            {"name": o.name, "content_type": o.content_type, "size": o.size, "url": f"/jobs/{job.id}/outputs/{n}"}
            for n, o in enumerate(outputs)
        ]
        return shown

    async def cancel(self, owner: str, job_id: str) -> None:
        """Cancel `owner`'s job (found by the caller); InvalidInput says why it cannot be."""
        job = self.live.get(job_id)
        if job is None or job.owner != owner or job.finished:  # not live: it ended, here or in an earlier run
            raise InvalidInput("This job has already finished.")
        await self.engine.cancel(job_id)

    async def record(self, owner: str, job_id: str) -> JobRecord | None:
        """`owner`'s job as stored, or None when there is none (or it is someone else's)."""
        if not SAFE_NAME.fullmatch(job_id):
            return None
        record = await self.store.get(job_id)
        if record is None or record.user_id != api_user_id(owner):
            return None
        return record

    def outputs(self, job_id: str) -> list[SavedOutput]:
        """The saved files of a job, in the order the workflow produced them (none when they were cleaned up)."""
        folder = self.output_dir / job_id
        if not SAFE_NAME.fullmatch(job_id) or not folder.is_dir():
            return []
        found = []
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            name = path.name.partition("_")[2]
            found.append(SavedOutput(name, path, path.stat().st_size, content_type(name)))
        return found

    async def _clean_regularly(self) -> None:
        while True:
            try:
                removed = await asyncio.to_thread(clean_outputs, self.output_dir, self.keep_seconds)
                await self.store.call(_forget_keys, time.time() - self.keep_seconds)
            except (OSError, StoreError) as exc:
                log.warning("cannot clean the API outputs in %s: %s", self.output_dir, exc)
            else:
                if removed:
                    log.info("removed the outputs of %d API job(s) older than the keep time", removed)
            self._forget_old()
            await asyncio.sleep(CLEAN_EVERY)

    def _forget_old(self) -> None:
        """Drop ended jobs from memory after the keep time (the store still has them)."""
        now = time.time()
        for job_id in [j.id for j in self.live.values() if j.finished_at and now - j.finished_at > self.keep_seconds]:
            del self.live[job_id]


def _job_of_key(db: sqlite3.Connection, user_id: int, key: str) -> str | None:
    row = db.execute("SELECT job_id FROM api_idempotency WHERE user_id = ? AND key = ?", (user_id, key)).fetchone()
    return row[0] if row else None


def _remember_key(db: sqlite3.Connection, user_id: int, key: str, job_id: str) -> None:
    db.execute(
        "INSERT OR REPLACE INTO api_idempotency (user_id, key, job_id, created_at) VALUES (?, ?, ?, ?)",
        (user_id, key, job_id, time.time()),
    )


def _forget_keys(db: sqlite3.Connection, before: float) -> None:
    """Forget the keys of jobs older than the keep time: their outputs are gone too."""
    db.execute("DELETE FROM api_idempotency WHERE created_at < ?", (before,))


def save_outputs(result: JobResult, folder: Path) -> None:
    """Write a job's files and text outputs into its folder, numbered in the order the workflow made them."""
    folder.mkdir(parents=True, exist_ok=True)
    number = 0
    for number, file in enumerate(result.files, start=1):
        _write(folder / f"{number:03d}_{safe_file(file.filename)}", file)
    for index, text in enumerate(result.texts, start=1):
        (folder / f"{number + index:03d}_text_{index}.txt").write_text(text, encoding="utf-8")


def _write(path: Path, file: OutputFile) -> None:
    partial = path.with_name(f".{path.name}.partial")  # listed only once whole
    with partial.open("wb") as out:
        file.copy_to(out)
    partial.replace(path)


def safe_file(name: str) -> str:
    """Reduce a file name from a server or a client to a plain one of ours, keeping its extension."""
    # No folders, no characters a shell or a URL would read, no leading dot (".." or a hidden file)
    plain = _UNSAFE_FILE.sub("_", Path(name).name).lstrip(".")
    stem, dot, extension = plain.rpartition(".")
    if len(plain) > MAX_FILE_NAME and dot and len(extension) <= MAX_EXTENSION:  # the type is read from it
        plain = f"{stem[: MAX_FILE_NAME - len(extension) - 1]}.{extension}"
    return plain[:MAX_FILE_NAME] or "output"


def clean_outputs(root: Path, keep_seconds: float, now: float | None = None) -> int:
    """Remove the job folders under `root` not changed for `keep_seconds`; return how many went."""
    if not root.is_dir():
        return 0
    limit = (now if now is not None else time.time()) - keep_seconds
    removed = 0
    for folder in root.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if folder.is_dir() and folder.stat().st_mtime < limit:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    return removed

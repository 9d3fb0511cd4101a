"""The HTTP API's jobs: each runs in a task on the shared engine, its live state kept here, its files on disk.

A token is a member for the queue: its jobs count under the engine's limits (pending jobs, cooldown) with
a member id derived from the token's name. Outputs are saved under `<output dir>/<job id>/` and kept for
`keep_hours`; the store keeps the job itself, so that `GET /jobs?mine=1` lists it after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import mimetypes
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import BotError, InvalidInput, JobCancelled
from core.jobs.engine import Engine, JobResult, OutputFile, Progress, new_job_id, shown_values
from core.jobs.store import SAFE_NAME, JobRecord, JobState, JobStore
from core.workflows import Workflow

log = logging.getLogger(__name__)

CLEAN_EVERY = 3600.0  # seconds between two sweeps of old output folders
_UNSAFE_FILE = re.compile(r"[^A-Za-z0-9._-]+")
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
        output_dir: Path,
        *,
        keep_hours: float = 24.0,
    ) -> None:
        self.engine = engine
        self.store = store
        self.output_dir = output_dir
        self.keep_seconds = keep_hours * 3600
        self.live: dict[str, ApiJob] = {}  # jobs of this process, until they end and a while after
        self._cleaner: asyncio.Task[None] | None = None
        self.on_finished: Callable[[ApiJob], Any] | None = None  # told once when a job ends (webhooks)

    def start(self) -> None:
        """Sweep old output folders now and every hour."""
        self._cleaner = asyncio.create_task(self._clean_regularly(), name="api outputs cleaner")

    async def close(self) -> None:
        """Stop the sweeper and the jobs' tasks (their jobs stay in the store as they are)."""
        tasks = [job.task for job in self.live.values() if job.task is not None and not job.task.done()]
        if self._cleaner is not None:
            tasks.append(self._cleaner)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def submit(self, owner: str, workflow: Workflow, values: Mapping[str, Any]) -> ApiJob:
        """Reserve the token's place under the limits and start the job (no await: concurrent submits count)."""
        reservation = self.engine.limits.reserve(api_user_id(owner), new_job_id())
        job = ApiJob(reservation.job_id, workflow.name, owner, created_at=reservation.created_at)
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
                await self._run(job, workflow, values, record)
            finally:
                reservation.release()

        job.task = asyncio.create_task(run(), name=f"api job {job.id}")
        return job

    async def _run(self, job: ApiJob, workflow: Workflow, values: Mapping[str, Any], record: JobRecord) -> None:
        def progress(update: Progress) -> None:
            job.position = update.waiting or update.position
            if job.position is None and job.state == "queued":
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
            self._end(job, "cancelled" if isinstance(exc, JobCancelled) else "failed", exc.user_message)
            await self.engine.finish(job.id, JobState(job.state), exc.user_message)
            return
        except OSError as exc:  # the disk: the job ran, but its files could not be kept
            log.error("api job %s: cannot save its outputs: %s", job.id, exc)
            message = "The job ran, but its files could not be saved on the bot's disk."
            self._end(job, "failed", message)
            await self.engine.finish(job.id, JobState.FAILED, message)
            return
        self._end(job, "done", None)
        await self.engine.finish(job.id, JobState.DONE)

    def _end(self, job: ApiJob, state: str, error: str | None) -> None:
        job.state, job.error, job.finished_at = state, error, time.time()
        job.position = job.progress = None
        if self.on_finished is not None:
            self.on_finished(job)

    async def cancel(self, owner: str, job_id: str) -> None:
        """Cancel `owner`'s job; InvalidInput says why not (unknown jobs are LookupError)."""
        job = self.live.get(job_id)
        if job is None or job.owner != owner:
            record = await self.record(owner, job_id)
            if record is None:
                raise LookupError(job_id)
            raise InvalidInput("This job has already finished.")
        if job.finished:
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
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            found.append(SavedOutput(name, path, path.stat().st_size, kind))
        return found

    async def _clean_regularly(self) -> None:
        while True:
            try:
                removed = await asyncio.to_thread(clean_outputs, self.output_dir, self.keep_seconds)
            except OSError as exc:
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


def save_outputs(result: JobResult, folder: Path) -> None:
    """Write a job's files and text outputs into its folder, numbered in the order the workflow made them."""
    folder.mkdir(parents=True, exist_ok=True)
    number = 0
    for number, file in enumerate(result.files, start=1):
        _write(folder / f"{number:03d}_{_safe_file(file.filename)}", file)
    for index, text in enumerate(result.texts, start=1):
        (folder / f"{number + index:03d}_text_{index}.txt").write_text(text, encoding="utf-8")


def _write(path: Path, file: OutputFile) -> None:
    partial = path.with_name(f".{path.name}.partial")  # listed only once whole
    with partial.open("wb") as out:
        if file.data is not None:
            out.write(file.data)
        else:
            assert file.path is not None
            with file.path.open("rb") as data:
                shutil.copyfileobj(data, out)  # in chunks: a large output never sits in memory
    partial.replace(path)


def _safe_file(name: str) -> str:
    """A server's file name, as a plain file name of ours (no folders, no control characters)."""
    return _UNSAFE_FILE.sub("_", Path(name).name)[:100] or "output"


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

"""The job store: every job is written before it is submitted, and each state change as it happens.

SQLite in WAL mode, used from one worker thread so that no database call blocks the event loop. One process
at a time: `open()` takes a lock on `<JOBS_DB>.lock` that the operating system releases when the process
ends, however it ends.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import fcntl
import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from core.errors import BotError

T = TypeVar("T")
# Job ids and parameter names become folder and file names of the kept inputs: never let one climb out.
SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)


class StoreError(BotError):
    """The job store cannot be used: the message names JOBS_DB and what the admin can do."""


class StoreLocked(StoreError):
    """Another process holds the job store."""

    def __init__(self, path: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"The job store JOBS_DB={path} is in use by {holder}: another copy of the bot is running on it. "
            "Stop that copy first, or give this one its own JOBS_DB (two bots on one store would run and "
            "deliver the same jobs twice)."
        )
        self.pid = pid


class JobState(enum.StrEnum):
    QUEUED = "queued"  # accepted by the bot, waiting for a server slot
    SUBMITTED = "submitted"  # on a ComfyUI server, waiting in its queue
    RUNNING = "running"  # ComfyUI has started it
    DELIVERING = "delivering"  # finished on ComfyUI, files on their way to Discord
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job as stored: what was asked, by whom, where it runs and how far it got."""

    id: str  # also the ComfyUI prompt_id
    workflow: str
    values: dict[str, Any]  # resolved option values, as shown to the member
    state: JobState = JobState.QUEUED
    user_id: int | None = None
    guild_id: int | None = None
    channel_id: int | None = None
    message_id: int | None = None  # the status message that becomes the result
    upload_limit: int | None = None  # the guild's per-file limit when the job was asked for
    server: str | None = None
    prompt: dict[str, Any] | None = None  # the rendered prompt as submitted (resubmitted after a server restart)
    # The prompt_id ComfyUI knows it by, when not the job id: jobs of the 32-hex era are resubmitted under the
    # UUID form of their id, the only form newer servers accept.
    prompt_id: str | None = None
    attempts: int = 0
    error: str | None = None  # the member-facing reason of a failure
    reported: bool = False  # the member was told how the job ended (result delivered, or failure shown)
    inputs: dict[str, str] = field(default_factory=dict)  # parameter name -> uploaded name on the server
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


# Each entry upgrades the schema by one version (PRAGMA user_version); never edit an entry once released.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        state TEXT NOT NULL,
        data TEXT NOT NULL,
        user_id INTEGER,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX jobs_state ON jobs (state);
    CREATE INDEX jobs_user ON jobs (user_id, state);
    """,
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    # Jobs that ended before `reported` existed were handled by the old code: do not tell their members again.
    """
    ALTER TABLE jobs ADD COLUMN reported INTEGER NOT NULL DEFAULT 0;
    UPDATE jobs SET reported = 1 WHERE state IN ('done', 'failed', 'cancelled');
    CREATE INDEX jobs_unreported ON jobs (created_at) WHERE reported = 0;
    """,
)


class JobStore:
    """Async access to the jobs table; one thread owns the connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.inputs_dir = path.parent / "inputs"  # kept copies of attachments: <inputs_dir>/<job id>/<param>
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-store")
        self._db: sqlite3.Connection | None = None
        self._lock: int | None = None  # file descriptor holding the flock on <JOBS_DB>.lock

    async def open(self) -> JobStore:
        """Lock the store for this process and open it; StoreError says what is wrong and what to do."""
        try:
            await self._run(self._connect)
        except BaseException:
            await self._run(self._release)
            self._executor.shutdown(wait=False)
            raise
        return self

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        await self._run(self._release)
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connect(self) -> None:
        try:
            if self.path.is_dir():
                fix = f"Set JOBS_DB to a file in it, e.g. {self.path / 'jobs.sqlite3'}."
                raise self._unusable("it is a folder", fix)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._acquire()
            db = sqlite3.connect(self.path, isolation_level=None)  # autocommit; migrations use explicit transactions
        except (FileExistsError, NotADirectoryError) as exc:
            raise self._unusable(
                f"{self.path.parent} is not a folder (part of that path is a file)",
                "Set JOBS_DB to a path inside a folder, e.g. data/jobs.sqlite3.",
            ) from exc
        except OSError as exc:
            raise self._unwritable(exc.strerror or str(exc)) from exc
        except sqlite3.Error as exc:
            raise self._sqlite_problem(exc) from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives a process kill; only power loss may lose the tail
            db.execute("PRAGMA synchronous=NORMAL")
            # A damaged file often opens fine and fails on the first read of a bad page: find out now, not mid-job
            damage = db.execute("PRAGMA quick_check").fetchone()[0]
            if damage != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed ({damage})")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
        except sqlite3.Error as exc:
            db.close()
            raise self._sqlite_problem(exc) from exc
        self._db = db

    def _acquire(self) -> None:
        """Hold an exclusive flock on <JOBS_DB>.lock with our pid in it, for as long as this process lives."""
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise StoreLocked(self.path, int(holder) if holder.isdecimal() else None) from exc
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = fd

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the last descriptor drops the flock
            self._lock = None

    def _unusable(self, reason: str, fix: str) -> StoreError:
        return StoreError(f"The job store JOBS_DB={self.path} cannot be used: {reason}. {fix}")

    def _unwritable(self, reason: str) -> StoreError:
        return self._unusable(
            f"the bot cannot write there ({reason})",
            f"Let the user running the bot write to {self.path.parent}, or set JOBS_DB to a writable place.",
        )

    def _sqlite_problem(self, exc: sqlite3.Error) -> StoreError:
        message = str(exc)
        if "readonly" in message or "unable to open" in message:
            return self._unwritable(message)
        if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in message or "malformed" in message):
            return self._unusable(
                f"it is not a SQLite database or it is damaged ({message})",
                "Move the file away (the bot then starts an empty store) or restore it from a backup.",
            )
        return self._unusable(message, "Check the file, or set JOBS_DB to a new path.")

    async def add(self, record: JobRecord) -> None:
        await self._run(self._write, record)

    async def update(self, record: JobRecord, **changes: Any) -> JobRecord:
        """Store `record` with `changes` applied and return the new version.

        Once a job is reported its kept inputs are deleted: nothing will run it again.
        """
        new = replace(record, **changes, updated_at=time.time())
        await self._run(self._write, new)
        if new.reported:
            await self._run(shutil.rmtree, self._input_folder(new.id), True)
        return new

    def _write(self, record: JobRecord) -> None:
        assert self._db is not None
        data = json.dumps(asdict(record), default=str)
        self._db.execute(
            "INSERT INTO jobs (id, workflow, state, data, user_id, created_at, updated_at, reported)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET state = excluded.state, data = excluded.data,"
            " updated_at = excluded.updated_at, reported = excluded.reported",
            (
                record.id,
                record.workflow,
                record.state.value,
                data,
                record.user_id,
                record.created_at,
                record.updated_at,
                record.reported,
            ),
        )

    async def keep_input(self, job_id: str, param: str, data: bytes) -> None:
        """Keep a copy of an attachment, so that a resubmission can upload it again if the server lost it."""
        await self._run(self._keep_input, job_id, param, data)

    def _keep_input(self, job_id: str, param: str, data: bytes) -> None:
        folder = self._input_folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{_safe(param)}.partial"
        partial.write_bytes(data)
        partial.replace(folder / _safe(param))  # a crash mid-write never leaves a truncated copy under the real name

    async def kept_input(self, job_id: str, param: str) -> bytes | None:
        """The kept copy of an attachment, or None when there is none."""
        path = self._input_folder(job_id) / _safe(param)
        try:
            return await self._run(path.read_bytes)
        except FileNotFoundError:
            return None

    def _input_folder(self, job_id: str) -> Path:
        return self.inputs_dir / _safe(job_id)

    async def get(self, job_id: str) -> JobRecord | None:
        rows = await self._run(self._select, "SELECT data, reported FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    async def unfinished(self) -> list[JobRecord]:
        """Return the jobs a restart must pick up again, oldest first."""
        # Those not ended, and those that ended (done, failed, cancelled) without their member being told
        ended = tuple(s.value for s in JobState if s.finished)
        return await self._run(
            self._select,
            "SELECT data, reported FROM jobs WHERE state NOT IN (?, ?, ?) OR reported = 0 ORDER BY created_at",
            ended,
        )

    def _select(self, sql: str, params: tuple[Any, ...]) -> list[JobRecord]:
        assert self._db is not None
        return [_record(json.loads(data), reported) for data, reported in self._db.execute(sql, params)]


def _safe(name: str) -> str:
    if not SAFE_NAME.fullmatch(name):
        raise ValueError(f"not a safe file name: {name!r}")
    return name


def _record(data: dict[str, Any], reported: int) -> JobRecord:
    data["state"] = JobState(data["state"])
    data["reported"] = bool(reported)  # rows written before the column existed have no "reported" in data
    return JobRecord(**data)

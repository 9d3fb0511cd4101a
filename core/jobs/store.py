"""The job store: every job is written before it is submitted, and each state change as it happens.

SQLite in WAL mode, one column per field of a job. One thread owns the connection and takes its work from a
queue, so that no database call blocks the event loop: what is queued during one turn of the event loop
reaches that thread in one hand-off, the writes waiting when it comes round are committed in one transaction
(several jobs' changes at once under load), and their awaits return together, once that transaction is on
disk. An update writes only the fields that differ from what the store last wrote for the job, which it
remembers for the jobs in flight (their reads need no database call). One process at a time: `open()` takes a
lock on `<JOBS_DB>.lock` that the operating system releases when the process ends, however it ends.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import errno
import fcntl
import functools
import json
import logging
import os
import queue
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from core.errors import BotError

log = logging.getLogger(__name__)

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
    # Seconds ComfyUI spent running the job (every attempt; a failed one counts what it used), for daily quotas
    gpu_seconds: float = 0.0
    locale: str | None = None  # the requester's Discord locale: the language of the job's messages
    # The result's further messages when its files did not fit one (Delete removes them with the first)
    more_messages: list[int] = field(default_factory=list)


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
    # One column per field, so that an update writes only what changed instead of the whole job as JSON
    """
    CREATE TABLE jobs_by_field (
        id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        "values" TEXT NOT NULL,
        state TEXT NOT NULL,
        user_id INTEGER,
        guild_id INTEGER,
        channel_id INTEGER,
        message_id INTEGER,
        upload_limit INTEGER,
        server TEXT,
        prompt TEXT,
        prompt_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        reported INTEGER NOT NULL DEFAULT 0,
        inputs TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    INSERT INTO jobs_by_field
    SELECT id, workflow, coalesce(json_extract(data, '$.values'), '{}'), state, user_id,
        json_extract(data, '$.guild_id'), json_extract(data, '$.channel_id'), json_extract(data, '$.message_id'),
        json_extract(data, '$.upload_limit'), json_extract(data, '$.server'), json_extract(data, '$.prompt'),
        json_extract(data, '$.prompt_id'), coalesce(json_extract(data, '$.attempts'), 0),
        json_extract(data, '$.error'), reported, coalesce(json_extract(data, '$.inputs'), '{}'), created_at,
        updated_at
    FROM jobs;
    DROP TABLE jobs;
    ALTER TABLE jobs_by_field RENAME TO jobs;
    CREATE INDEX jobs_state ON jobs (state);
    CREATE INDEX jobs_user ON jobs (user_id, state);
    CREATE INDEX jobs_unreported ON jobs (created_at) WHERE reported = 0;
    """,
    # A member's saved option values per command (/preset), and their jobs newest first (/history, quotas)
    """
    CREATE TABLE presets (
        user_id INTEGER NOT NULL,
        command TEXT NOT NULL,
        name TEXT NOT NULL,
        "values" TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (user_id, command, name)
    );
    CREATE INDEX jobs_user_time ON jobs (user_id, created_at);
    """,
    # Daily quotas: GPU time per job
    """
    ALTER TABLE jobs ADD COLUMN gpu_seconds REAL NOT NULL DEFAULT 0;
    """,
    # Changes made with /access, on top of community.toml (core.community.access)
    """
    CREATE TABLE access_commands (
        command TEXT PRIMARY KEY, channels TEXT, roles TEXT, changed_by INTEGER, changed_at REAL
    );
    CREATE TABLE access_bans (
        kind TEXT NOT NULL, target INTEGER NOT NULL, banned INTEGER NOT NULL, changed_by INTEGER, changed_at REAL,
        PRIMARY KEY (kind, target)
    );
    """,
    # The language of a job's messages (core.i18n), also after a restart
    """
    ALTER TABLE jobs ADD COLUMN locale TEXT;
    """,
    # The HTTP API's Idempotency-Key of a submit -> its job, so that a retried submit finds it after a restart
    """
    CREATE TABLE api_idempotency (
        user_id INTEGER NOT NULL, key TEXT NOT NULL, job_id TEXT NOT NULL, created_at REAL NOT NULL,
        PRIMARY KEY (user_id, key)
    );
    CREATE INDEX api_idempotency_time ON api_idempotency (created_at);
    """,
    # The further messages of a result split over several (Delete removes every one)
    """
    ALTER TABLE jobs ADD COLUMN more_messages TEXT NOT NULL DEFAULT '[]';
    """,
)
FIELDS = tuple(f.name for f in fields(JobRecord))  # also the column names, in the table's order
JSON_FIELDS = frozenset({"values", "prompt", "inputs", "more_messages"})
# Jobs whose last written version the store remembers (those in flight); beyond this the oldest are forgotten
REMEMBERED = 10_000
# Tasks done and handed back together at most: their callers all resume in one turn of the event loop, which
# this keeps to a couple of milliseconds; larger batches would save little more (see bench/store.py)
BATCH = 64


@dataclass(slots=True, eq=False)
class _Task:
    """One piece of work for the store's thread: a write of one version of a job, or a call."""

    future: asyncio.Future[Any]
    record: JobRecord | None = None  # a write of this version
    changed: tuple[str, ...] | None = None  # its fields that differ from the version queued before; None: all
    call: Callable[[], Any] | None = None  # anything else: runs once the writes queued before it are committed


_Outcome = tuple[_Task, Any, Exception | None]


class JobStore:
    """Async access to the jobs table; one thread owns the connection and commits what is queued together."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.inputs_dir = path.parent / "inputs"  # kept copies of attachments: <inputs_dir>/<job id>/<param>
        self._queue: queue.SimpleQueue[list[_Task] | None] = queue.SimpleQueue()  # None stops the thread
        self._thread: threading.Thread | None = None
        self._closed = False
        # Tasks queued since the last hand-off to the thread, in order, from every loop; the loops that have a
        # hand-off scheduled. Under _pending_lock: loops in other threads may queue work too.
        self._pending: list[_Task] = []
        self._flushing: set[asyncio.AbstractEventLoop] = set()
        self._pending_lock = threading.Lock()
        self._db: sqlite3.Connection | None = None  # the store's thread only
        self._lock: int | None = None  # file descriptor holding the flock on <JOBS_DB>.lock
        # The version of each job in flight that the store holds once the queued writes are done (event loop only)
        self._known: dict[str, JobRecord] = {}
        # Jobs whose last write failed, so that their next one is written whole (the store's thread only)
        self._unsure: set[str] = set()

    async def open(self) -> JobStore:
        """Lock the store for this process and open it; StoreError says what is wrong and what to do."""
        self._thread = threading.Thread(target=self._serve, name="job-store", daemon=True)
        self._thread.start()
        try:
            await self._run(self._connect)
        except BaseException:
            await self._stop()
            raise
        return self

    async def close(self) -> None:
        """Finish the queued work, then close the database and drop the lock."""
        if self._thread is not None and not self._closed:
            await self._stop()

    async def _stop(self) -> None:
        done = self._enqueue(_Task(asyncio.get_running_loop().create_future(), call=self._disconnect))
        with self._pending_lock:
            self._closed = True  # in the same step as the stop below: nothing can be queued after it
            self._hand_over()  # the work queued before it: this turn's hand-off has not run yet
            self._queue.put(None)
        await done

    def _disconnect(self) -> None:
        try:
            if self._db is not None:
                self._db.close()
                self._db = None
        finally:
            self._release()

    def _enqueue(self, task: _Task) -> asyncio.Future[Any]:
        """Queue `task`; the loop hands what was queued in this turn to the thread at once, in its next turn."""
        loop = task.future.get_loop()
        with self._pending_lock:
            if self._thread is None or self._closed:
                raise RuntimeError(f"the job store {self.path} is not open")
            self._pending.append(task)
            # Each waking of the thread costs the loop a GIL hand-off: one per turn, not one per task
            if loop not in self._flushing:
                self._flushing.add(loop)
                loop.call_soon(self._flush, loop)
        return task.future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._pending_lock:
            self._flushing.discard(loop)
            self._hand_over()

    def _hand_over(self) -> None:
        """Put everything pending on the queue as one list (the caller holds _pending_lock).

        The tasks of every loop go together, in the order they were queued: a loop that stopped before its
        hand-off ran does not hold back its writes from the calls other loops queue after them.
        """
        if self._pending:
            self._queue.put(self._pending)
            self._pending = []

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Call `fn` on the store's thread, after the writes queued before it are committed."""
        call = functools.partial(fn, *args) if args else fn
        return await self._enqueue(_Task(asyncio.get_running_loop().create_future(), call=call))

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
        await self._write(record)

    async def update(self, record: JobRecord, **changes: Any) -> JobRecord:
        """Store `record` with `changes` applied and return the new version.

        Once a job is reported its kept inputs are deleted: nothing will run it again.
        """
        new = replace(record, **changes, updated_at=time.time())
        await self._write(new)
        return new

    def _write(self, record: JobRecord) -> asyncio.Future[Any]:
        """Queue a write of `record`: of the fields that differ from the version queued before, when known."""
        before = self._known.pop(record.id, None)
        changed = None if before is None else tuple(name for name in FIELDS if _differs(record, before, name))
        future = self._enqueue(_Task(asyncio.get_running_loop().create_future(), record, changed))
        if not record.reported:  # a reported job is done with: forget it
            self._known[record.id] = record  # (again) the newest: the oldest are forgotten first
            if len(self._known) > REMEMBERED:
                del self._known[next(iter(self._known))]
        return future

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
        """Return the job as stored, including the writes queued before this call; None if there is none."""
        if (known := self._known.get(job_id)) is not None:
            return known  # what the store holds once the queued writes are done: a read sees its own writes
        rows = await self._run(self._select, "WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    async def unfinished(self) -> list[JobRecord]:
        """Return the jobs a restart must pick up again, oldest first."""
        # Those not ended, and those that ended (done, failed, cancelled) without their member being told
        ended = tuple(s.value for s in JobState if s.finished)
        return await self._run(self._select, "WHERE state NOT IN (?, ?, ?) OR reported = 0 ORDER BY created_at", ended)

    async def jobs_of(self, user_id: int, *, limit: int, offset: int = 0) -> tuple[int, list[JobRecord]]:
        """Return how many jobs `user_id` has, and `limit` of them from `offset`, newest first."""
        return await self._run(self._jobs_of, user_id, limit, offset)

    def _jobs_of(self, user_id: int, limit: int, offset: int) -> tuple[int, list[JobRecord]]:
        assert self._db is not None
        [(total,)] = self._db.execute("SELECT count(*) FROM jobs WHERE user_id = ?", (user_id,))
        page = self._select("WHERE user_id = ? ORDER BY created_at DESC, id LIMIT ? OFFSET ?", (user_id, limit, offset))
        return total, page

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(connection, *args)` on the store's thread in one transaction, after the writes queued before.

        For the store's other tables (presets, access rules, quotas): their SQL stays in their own modules.
        """
        return await self._run(self._in_transaction, fn, *args)

    def _in_transaction(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN")
        try:
            result = fn(db, *args)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        return result

    def _select(self, where: str, params: tuple[Any, ...]) -> list[JobRecord]:
        assert self._db is not None
        return [_record(row) for row in self._db.execute(f"SELECT {COLUMNS} FROM jobs {where}", params)]

    # The store's thread

    def _serve(self) -> None:
        """Take everything queued, do it in order, and hand the outcomes back to the event loop in one wake-up."""
        waiting: collections.deque[_Task] = collections.deque()
        stopping = False
        while waiting or not stopping:
            with contextlib.suppress(queue.Empty):
                while not stopping and len(waiting) < BATCH:
                    handed = self._queue.get(block=not waiting)  # sleep only when there is nothing to do
                    if handed is None:
                        stopping = True  # nothing is queued after the stop
                    else:
                        waiting.extend(handed)
            if not waiting:
                break  # stopped, and everything queued before is done
            tasks = [waiting.popleft() for _ in range(min(BATCH, len(waiting)))]
            outcomes: list[_Outcome]
            try:
                outcomes = self._do(tasks)
            except Exception as exc:  # a fault of the store itself: fail its callers rather than leave them waiting
                log.exception("job store: a batch of %d task(s) failed", len(tasks))
                outcomes = [(task, None, exc) for task in tasks]
            self._hand_back(outcomes)

    def _do(self, tasks: list[_Task]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        writes: list[_Task] = []
        for task in tasks:
            if task.record is not None:
                writes.append(task)
                continue
            outcomes += self._commit(writes)  # a call sees every write queued before it
            writes = []
            assert task.call is not None
            try:
                outcomes.append((task, task.call(), None))
            except Exception as exc:
                outcomes.append((task, None, exc))
        return outcomes + self._commit(writes)

    def _commit(self, writes: list[_Task]) -> list[_Outcome]:
        """Write `writes` in one transaction; if that fails, one by one, so that only those that cannot fail."""
        if not writes:
            return []
        try:
            self._transaction(writes)
        except Exception as exc:
            if len(writes) == 1:
                return [self._written(writes[0], exc)]
            return [self._written(task, self._alone(task)) for task in writes]  # in order: see _put
        return [self._written(task, None) for task in writes]

    def _written(self, task: _Task, error: Exception | None) -> _Outcome:
        """Note how a write went; once a job is reported, delete its kept inputs (nothing will run it again)."""
        assert task.record is not None
        job_id = task.record.id
        if error is not None:
            self._unsure.add(job_id)
        else:
            self._unsure.discard(job_id)
            if task.record.reported and SAFE_NAME.fullmatch(job_id):
                shutil.rmtree(self.inputs_dir / job_id, ignore_errors=True)
        return (task, None, error)

    def _alone(self, task: _Task) -> Exception | None:
        try:
            self._transaction([task])
        except Exception as exc:
            return exc
        return None

    def _transaction(self, writes: list[_Task]) -> None:
        assert self._db is not None
        db = self._db
        try:
            db.execute("BEGIN")
            for task in writes:
                self._put(task)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (a full disk, for one)
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

    def _put(self, task: _Task) -> None:
        record = task.record
        assert record is not None and self._db is not None
        # A write after a failed one of the same job was told only what differs from the failed version
        if task.changed is not None and record.id not in self._unsure:
            if not task.changed:
                return  # the version queued before is this one
            values = [_column(name, getattr(record, name)) for name in task.changed]
            if self._db.execute(_update_sql(task.changed), (*values, record.id)).rowcount:
                return
            # The row is gone (deleted by hand): write the job whole
        self._db.execute(UPSERT, [_column(name, getattr(record, name)) for name in FIELDS])

    def _hand_back(self, outcomes: list[_Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].future.get_loop(), []).append(outcome)
        for loop, theirs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(self._settle, theirs)

    # The event loop again

    def _settle(self, outcomes: list[_Outcome]) -> None:
        for task, result, error in outcomes:
            record = task.record
            if error is not None and record is not None and self._known.get(record.id) is record:
                del self._known[record.id]  # not written: the store no longer knows what it holds for this job
            if task.future.done():
                continue  # its caller was cancelled; the work is done all the same
            if error is None:
                task.future.set_result(result)
            else:
                task.future.set_exception(error)


COLUMNS = ", ".join(f'"{name}"' for name in FIELDS)  # quoted: "values" is a keyword of SQL
UPSERT = (
    f"INSERT INTO jobs ({COLUMNS}) VALUES ({', '.join('?' * len(FIELDS))}) ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f'"{name}" = excluded."{name}"' for name in FIELDS if name != "id")
)


@functools.cache
def _update_sql(names: tuple[str, ...]) -> str:
    assignments = ", ".join(f'"{name}" = ?' for name in names)
    return f"UPDATE jobs SET {assignments} WHERE id = ?"


def _differs(record: JobRecord, before: JobRecord, name: str) -> bool:
    new, old = getattr(record, name), getattr(before, name)
    return new is not old and new != old


def _column(name: str, value: Any) -> Any:
    if name in JSON_FIELDS:
        return None if value is None else json.dumps(value, default=str)
    if name == "state":
        return JobState(value).value
    return value


def _safe(name: str) -> str:
    if not SAFE_NAME.fullmatch(name):
        raise ValueError(f"not a safe file name: {name!r}")
    return name


def _record(row: tuple[Any, ...]) -> JobRecord:
    data = dict(zip(FIELDS, row, strict=True))
    for name in JSON_FIELDS:
        if data[name] is not None:
            data[name] = json.loads(data[name])
    data["state"] = JobState(data["state"])
    data["reported"] = bool(data["reported"])
    return JobRecord(**data)

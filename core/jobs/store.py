"""The job store: every job is written before it is submitted, and each state change as it happens.

SQLite in WAL mode, used from one worker thread so that no database call blocks the event loop.
"""

from __future__ import annotations

import asyncio
import enum
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


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
    attempts: int = 0
    error: str | None = None  # the member-facing reason of a failure
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
)


class JobStore:
    """Async access to the jobs table; one thread owns the connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-store")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> JobStore:
        await self._run(self._connect)
        return self

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)  # autocommit; migrations use explicit transactions
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "PRAGMA synchronous=NORMAL"
        )  # WAL + NORMAL survives a process kill; only power loss may lose the tail
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
        self._db = db

    async def add(self, record: JobRecord) -> None:
        await self._run(self._write, record)

    async def update(self, record: JobRecord, **changes: Any) -> JobRecord:
        """Store `record` with `changes` applied and return the new version."""
        new = replace(record, **changes, updated_at=time.time())
        await self._run(self._write, new)
        return new

    def _write(self, record: JobRecord) -> None:
        assert self._db is not None
        data = json.dumps(asdict(record), default=str)
        self._db.execute(
            "INSERT INTO jobs (id, workflow, state, data, user_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET state = excluded.state, data = excluded.data,"
            " updated_at = excluded.updated_at",
            (
                record.id,
                record.workflow,
                record.state.value,
                data,
                record.user_id,
                record.created_at,
                record.updated_at,
            ),
        )

    async def client_id(self) -> str:
        """The websocket clientId of this bot, the same after a restart.

        ComfyUI sends a prompt's events to the clientId that submitted it, so a restarted bot that reconnects
        under the same id keeps receiving the progress and completion of the jobs it had submitted.
        """
        return await self._run(self._client_id)

    def _client_id(self) -> str:
        assert self._db is not None
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('client_id', ?)", (uuid.uuid4().hex,))
        return self._db.execute("SELECT value FROM meta WHERE key = 'client_id'").fetchone()[0]

    async def get(self, job_id: str) -> JobRecord | None:
        rows = await self._run(self._select, "SELECT data FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    async def unfinished(self) -> list[JobRecord]:
        """Jobs a restart must pick up again, oldest first."""
        finished = tuple(s.value for s in JobState if s.finished)
        return await self._run(
            self._select, "SELECT data FROM jobs WHERE state NOT IN (?, ?, ?) ORDER BY created_at", finished
        )

    def _select(self, sql: str, params: tuple[Any, ...]) -> list[JobRecord]:
        assert self._db is not None
        return [_record(json.loads(row[0])) for row in self._db.execute(sql, params)]


def _record(data: dict[str, Any]) -> JobRecord:
    data["state"] = JobState(data["state"])
    return JobRecord(**data)

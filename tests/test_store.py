from __future__ import annotations

import sqlite3
from pathlib import Path

from core.jobs.store import MIGRATIONS, JobRecord, JobState, JobStore


async def test_jobs_survive_a_reopen_and_only_unfinished_ones_come_back(tmp_path: Path) -> None:
    path = tmp_path / "db" / "jobs.sqlite3"
    store = await JobStore(path).open()
    first = JobRecord(id="a" * 32, workflow="image", values={"prompt": "a cat", "seed": 1}, user_id=42)
    await store.add(first)
    second = await store.update(
        JobRecord(id="b" * 32, workflow="music", values={"tags": "lofi"}), state=JobState.SUBMITTED, server="http://x"
    )
    await store.update(first, state=JobState.DONE)
    client_id = await store.client_id()
    await store.close()

    reopened = await JobStore(path).open()
    assert [r.id for r in await reopened.unfinished()] == [second.id]
    again = await reopened.get(second.id)
    assert again is not None and again.state is JobState.SUBMITTED and again.server == "http://x"
    assert (await reopened.get(first.id)).state is JobState.DONE  # type: ignore[union-attr]
    assert await reopened.client_id() == client_id  # a restarted bot reconnects under the same clientId
    await reopened.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

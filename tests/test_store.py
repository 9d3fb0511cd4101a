from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import sqlite3
import sys
import threading
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.jobs.engine import Engine
from core.jobs.store import BATCH, MIGRATIONS, JobRecord, JobState, JobStore, StoreError, StoreLocked, _Task
from tests.conftest import ROOT

JOB_A, JOB_B, JOB_C = "a" * 32, "b" * 32, "c" * 32


async def test_jobs_survive_a_reopen_and_only_unfinished_ones_come_back(tmp_path: Path) -> None:
    path = tmp_path / "db" / "jobs.sqlite3"
    store = await JobStore(path).open()
    first = JobRecord(id=JOB_A, workflow="image", values={"prompt": "a cat", "seed": 1}, user_id=42)
    await store.add(first)
    second = await store.update(
        JobRecord(id=JOB_B, workflow="music", values={"tags": "lofi"}), state=JobState.SUBMITTED, server="http://x"
    )
    await store.update(first, state=JobState.DONE, reported=True)
    await store.close()

    reopened = await JobStore(path).open()
    assert [r.id for r in await reopened.unfinished()] == [second.id]
    again = await reopened.get(second.id)
    assert again is not None and again.state is JobState.SUBMITTED and again.server == "http://x"
    assert (await reopened.get(first.id)).state is JobState.DONE  # type: ignore[union-attr]
    await reopened.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.abuse
async def test_a_failure_recorded_but_not_reported_comes_back_until_finish_reports_it(tmp_path: Path) -> None:
    store = await JobStore(tmp_path / "jobs.sqlite3").open()
    failed = await store.update(
        JobRecord(id=JOB_A, workflow="image", values={}), state=JobState.FAILED, error="The job was cancelled."
    )
    assert [(r.id, r.state, r.reported) for r in await store.unfinished()] == [(JOB_A, JobState.FAILED, False)]
    async with aiohttp.ClientSession() as session:
        engine = Engine(session, (), job_timeout=60, max_output_bytes=1, store=store)
        await engine.finish(failed.id, JobState.FAILED, failed.error)
    assert await store.unfinished() == []
    told = await store.get(JOB_A)
    assert told is not None and told.reported and told.state is JobState.FAILED
    assert told.error == "The job was cancelled."
    await store.close()


@pytest.mark.abuse
async def test_the_migration_keeps_old_jobs_and_does_not_report_old_endings_again(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:  # a store as the previous release left it: schema version 2
        for number, script in enumerate(MIGRATIONS[:2], start=1):
            db.executescript(f"{script}; PRAGMA user_version = {number};")
        for job_id, state in ((JOB_A, "done"), (JOB_B, "failed"), (JOB_C, "submitted")):
            data = {"id": job_id, "workflow": "image", "values": {"prompt": "x"}, "state": state, "attempts": 1}
            db.execute(
                "INSERT INTO jobs (id, workflow, state, data, user_id, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, "image", state, json.dumps(data), 7, 1.0, 1.0),
            )
    store = await JobStore(path).open()
    assert [(r.id, r.reported, r.inputs) for r in await store.unfinished()] == [(JOB_C, False, {})]
    old_failure = await store.get(JOB_B)
    assert old_failure is not None and old_failure.reported and old_failure.state is JobState.FAILED
    await store.close()


@pytest.mark.abuse
async def test_kept_inputs_are_readable_until_the_job_is_reported(tmp_path: Path) -> None:
    store = await JobStore(tmp_path / "db" / "jobs.sqlite3").open()
    record = JobRecord(id=JOB_A, workflow="blur", values={}, inputs={"picture": "discord-bot/cat.png"})
    await store.add(record)
    await store.keep_input(JOB_A, "picture", b"\x89PNG cat")
    assert await store.kept_input(JOB_A, "picture") == b"\x89PNG cat"
    assert await store.kept_input(JOB_A, "mask") is None
    assert (tmp_path / "db" / "inputs" / JOB_A / "picture").read_bytes() == b"\x89PNG cat"
    failed = await store.update(record, state=JobState.FAILED)  # recorded, not yet told: keep the copy
    assert await store.kept_input(JOB_A, "picture") == b"\x89PNG cat"
    await store.update(failed, reported=True)
    assert await store.kept_input(JOB_A, "picture") is None
    assert not (tmp_path / "db" / "inputs" / JOB_A).exists()
    assert (await store.get(JOB_A)).inputs == {"picture": "discord-bot/cat.png"}  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=re.escape("not a safe file name: '../../etc'")):
        await store.keep_input(JOB_A, "../../etc", b"x")
    await store.close()


def _damaged(path: Path) -> None:
    """A real store whose pages in the middle were overwritten, as a failing disk would leave it."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x TEXT)")
        db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
    data = bytearray(path.read_bytes())
    data[4096 * 3 : 4096 * 4] = b"\xa5" * 4096
    path.write_bytes(bytes(data))


UNUSABLE = [
    (
        "folder",
        lambda p: p.mkdir(),
        "The job store JOBS_DB={p} cannot be used: it is a folder. Set JOBS_DB to a file in it, e.g. {p}/jobs.sqlite3.",
    ),
    (
        "text file",
        lambda p: p.write_text("these are my notes, not a database\n" * 20),
        "The job store JOBS_DB={p} cannot be used: it is not a SQLite database or it is damaged (file is not a "
        "database). Move the file away (the bot then starts an empty store) or restore it from a backup.",
    ),
    (
        "damaged",
        _damaged,
        "The job store JOBS_DB={p} cannot be used: it is not a SQLite database or it is damaged (database disk "
        "image is malformed). Move the file away (the bot then starts an empty store) or restore it from a backup.",
    ),
]


@pytest.mark.abuse
@pytest.mark.parametrize(("case", "make", "message"), UNUSABLE, ids=[c[0] for c in UNUSABLE])
async def test_an_unusable_jobs_db_is_one_clear_line(tmp_path: Path, case: str, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "jobs.sqlite3"
    make(path)
    with pytest.raises(StoreError) as caught:
        await JobStore(path).open()
    assert caught.value.user_message == message.format(p=path)
    assert "\n" not in caught.value.user_message
    await (await JobStore(tmp_path / "other.sqlite3").open()).close()  # the failed open left no lock behind


@pytest.mark.abuse
async def test_a_jobs_db_below_a_file_names_the_bad_folder(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where a folder should be")
    path = tmp_path / "data" / "jobs.sqlite3"
    with pytest.raises(StoreError) as caught:
        await JobStore(path).open()
    assert caught.value.user_message == (
        f"The job store JOBS_DB={path} cannot be used: {tmp_path / 'data'} is not a folder (part of that path is "
        "a file). Set JOBS_DB to a path inside a folder, e.g. data/jobs.sqlite3."
    )


@pytest.mark.abuse
async def test_a_jobs_db_name_too_long_for_the_file_system_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / ("j" * 300 + ".sqlite3")
    with pytest.raises(StoreError) as caught:
        await JobStore(path).open()
    assert caught.value.user_message == (
        f"The job store JOBS_DB={path} cannot be used: the bot cannot write there (File name too long). "
        f"Let the user running the bot write to {tmp_path}, or set JOBS_DB to a writable place."
    )


@pytest.mark.abuse
@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any folder, so it cannot be refused")
async def test_a_jobs_db_in_a_read_only_folder_says_to_make_it_writable(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    path = folder / "jobs.sqlite3"
    try:
        with pytest.raises(StoreError) as caught:
            await JobStore(path).open()
    finally:
        folder.chmod(0o700)
    assert caught.value.user_message == (
        f"The job store JOBS_DB={path} cannot be used: the bot cannot write there (Permission denied). "
        f"Let the user running the bot write to {folder}, or set JOBS_DB to a writable place."
    )


HOLDER = """
import asyncio, sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any
from core.jobs.store import JobStore

async def main() -> None:
    await JobStore(Path(sys.argv[1])).open()
    print("holding", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.abuse
async def test_a_second_process_on_the_same_store_is_refused_until_the_first_dies(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(path), cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and await holder.stdout.readline() == b"holding\n"
        with pytest.raises(StoreLocked) as caught:
            await JobStore(path).open()
        assert caught.value.pid == holder.pid
        assert caught.value.user_message == (
            f"The job store JOBS_DB={path} is in use by process {holder.pid}: another copy of the bot is running "
            "on it. Stop that copy first, or give this one its own JOBS_DB (two bots on one store would run and "
            "deliver the same jobs twice)."
        )
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the operating system must drop the lock
        await holder.wait()
    store = await JobStore(path).open()
    assert (tmp_path / "jobs.sqlite3.lock").read_text() == f"{os.getpid()}\n"
    await store.close()


@pytest.mark.abuse
async def test_two_stores_in_one_process_cannot_share_a_file_either(tmp_path: Path) -> None:
    first = await JobStore(tmp_path / "jobs.sqlite3").open()
    with pytest.raises(StoreLocked) as caught:
        await JobStore(tmp_path / "jobs.sqlite3").open()
    assert caught.value.pid == os.getpid()
    await first.close()
    await (await JobStore(tmp_path / "jobs.sqlite3").open()).close()  # closing released it


def _job(number: int) -> JobRecord:
    return JobRecord(id=f"{number:032x}", workflow="image", values={"prompt": f"cat {number}", "seed": number})


async def _engine_path(store: JobStore, record: JobRecord, number: int) -> JobRecord:
    """Write one job as the engine does, ending it in a state of its own so that mix-ups show."""
    await store.add(record)
    record = await store.update(record, server=f"gpu-{number % 3}", prompt={"3": {"seed": number}}, inputs={})
    record = await store.update(record, state=JobState.SUBMITTED, attempts=1, prompt_id=f"p-{number}")
    record = await store.update(record, state=JobState.RUNNING)
    if number % 4 == 0:
        return await store.update(record, state=JobState.FAILED, error=f"failure {number}")
    record = await store.update(record, state=JobState.DELIVERING)
    again = await store.get(record.id)
    assert again == record  # read back before it is reported, as Engine.finish does
    return await store.update(again, state=JobState.DONE, reported=number % 3 != 0)


async def test_many_jobs_written_at_once_read_back_exactly_and_share_commits(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = await JobStore(path).open()
    loop = asyncio.get_running_loop()
    hand_backs = 0
    plain = loop.call_soon_threadsafe

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal hand_backs
        hand_backs += 1
        return plain(*args, **kwargs)

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
    try:
        final = await asyncio.gather(*(_engine_path(store, _job(n), n) for n in range(300)))
    finally:
        loop.call_soon_threadsafe = plain  # type: ignore[method-assign]
    assert hand_backs < 300 * 6 / 4  # the writes of jobs running together were committed together
    assert [await store.get(r.id) for r in final] == final
    await store.close()

    reopened = await JobStore(path).open()
    assert [await reopened.get(r.id) for r in final] == final  # every field, as the database holds it
    unfinished = [r for r in final if not r.reported]
    assert sorted(r.id for r in await reopened.unfinished()) == sorted(r.id for r in unfinished)
    await reopened.close()


async def test_one_job_makes_six_thread_hops_and_its_reads_none(tmp_path: Path) -> None:
    store = await JobStore(tmp_path / "jobs.sqlite3").open()
    loop = asyncio.get_running_loop()
    hops = 0
    plain = loop.call_soon_threadsafe

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return plain(*args, **kwargs)

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
    try:
        await _engine_path(store, _job(1), 1)  # six writes and a read
    finally:
        loop.call_soon_threadsafe = plain  # type: ignore[method-assign]
    assert hops == 6
    await store.close()


async def test_an_update_writes_only_the_fields_that_changed(tmp_path: Path) -> None:
    store = await JobStore(tmp_path / "jobs.sqlite3").open()
    statements: list[str] = []
    await store._run(lambda: store._db.set_trace_callback(statements.append))  # type: ignore[union-attr]
    record = await store.update(_job(7), prompt={"3": {"inputs": {"text": "a long prompt"}}})
    statements.clear()
    running = await store.update(record, state=JobState.RUNNING)
    begin, update, commit = statements
    assert (begin, commit) == ("BEGIN", "COMMIT")
    assert re.fullmatch(
        f"UPDATE jobs SET \"state\" = 'running', \"updated_at\" = [0-9.]+ WHERE id = '{running.id}'", update
    )
    await store.close()


@pytest.mark.abuse
async def test_a_full_disk_fails_only_the_write_that_did_not_fit(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = await JobStore(path).open()
    small, other = await store.update(_job(1), server="a"), await store.update(_job(2), server="a")

    def fill() -> None:  # the disk is full: no page beyond those in use
        assert store._db is not None
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")

    await store._run(fill)
    huge = replace(small, server="b", values={"prompt": "x" * 1_000_000})
    # Queued together: the huge one, the job written again from it (it must not lose server="b"), another job
    outcomes = await asyncio.gather(
        store.add(huge),
        store.update(huge, values={"prompt": "short"}),
        store.update(other, state=JobState.RUNNING),
        return_exceptions=True,
    )
    failure, written, running = outcomes
    assert isinstance(failure, sqlite3.OperationalError) and str(failure) == "database or disk is full"
    assert isinstance(written, JobRecord) and written.server == "b" and written.values == {"prompt": "short"}
    assert isinstance(running, JobRecord)
    assert await store.get(small.id) == written
    await store.close()

    reopened = await JobStore(path).open()
    assert await reopened.get(small.id) == written
    assert await reopened.get(other.id) == running
    await reopened.close()


WRITER = """
import asyncio, sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any
from core.jobs.store import JobRecord, JobStore

async def job(store, number):
    record = JobRecord(id=f"{number:032x}", workflow="image", values={"n": number})
    await store.add(record)
    for step in range(1, 100_000):
        record = await store.update(record, attempts=step)
        print(record.id, step, flush=True)  # only once the write is on disk

async def main():
    store = await JobStore(Path(sys.argv[1])).open()
    await asyncio.gather(*(job(store, n) for n in range(40)))

asyncio.run(main())
"""


@pytest.mark.abuse
async def test_a_crash_mid_batch_keeps_every_awaited_write(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert writer.stdout is not None
    acknowledged: dict[str, int] = {}
    try:
        while len(acknowledged) < 40 or sum(acknowledged.values()) < 4000:
            job_id, step = (await writer.stdout.readline()).split()
            acknowledged[job_id.decode()] = int(step)
    finally:
        writer.send_signal(signal.SIGKILL)  # while the store's thread commits the next batch
    for line in (await writer.stdout.read()).splitlines():  # acknowledged before the kill, still in the pipe
        if len(line.split()) == 2:
            job_id, step = line.split()
            acknowledged[job_id.decode()] = int(step)
    await writer.wait()

    store = await JobStore(path).open()
    stored = {r.id: r.attempts for r in await store.unfinished()}
    await store.close()
    assert len(stored) == 40
    behind = {job_id: (step, stored[job_id]) for job_id, step in acknowledged.items() if stored[job_id] < step}
    assert behind == {}


@pytest.mark.abuse
async def test_the_migration_to_one_column_a_field_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    kept = JobRecord(
        id=JOB_A, workflow="blur", values={"prompt": "ünïcode 🐈", "picture": "cat.png"}, state=JobState.RUNNING,
        user_id=42, guild_id=2**62, channel_id=3, message_id=4, upload_limit=10 << 20, server="gpu-1",
        prompt={"3": {"inputs": {"seed": 1}}}, prompt_id="8c6c1e5a-0000-4000-8000-000000000001", attempts=2,
        error=None, reported=False, inputs={"picture": "discord-bot/cat.png"}, created_at=1.5, updated_at=2.5,
    )  # fmt: skip
    told = replace(kept, id=JOB_B, state=JobState.FAILED, error="It broke.", reported=True, prompt=None)
    with sqlite3.connect(path) as db:  # a store as the previous release left it: schema version 3, jobs as JSON
        for number, script in enumerate(MIGRATIONS[:3], start=1):
            db.executescript(f"{script}; PRAGMA user_version = {number};")
        for record in (kept, told):
            db.execute(
                "INSERT INTO jobs (id, workflow, state, data, user_id, created_at, updated_at, reported)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.workflow, record.state.value, json.dumps(asdict(record)), record.user_id,
                 record.created_at, record.updated_at, record.reported),
            )  # fmt: skip
    store = await JobStore(path).open()
    assert await store.get(JOB_A) == kept
    assert await store.get(JOB_B) == told
    assert await store.unfinished() == [kept]
    await store.close()


class _CountedQueue(queue.SimpleQueue[Any]):
    """The store's queue, noting how many tasks each hand-off to its thread carried (None: the stop)."""

    def __init__(self) -> None:
        self.handed: list[int | None] = []

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.handed.append(None if item is None else len(item))
        super().put(item, block, timeout)


async def _counted_store(path: Path) -> tuple[JobStore, _CountedQueue, list[int]]:
    """An open store whose hand-offs to its thread, and the batches that thread does, are counted."""
    store = JobStore(path)
    store._queue = counted = _CountedQueue()
    batches: list[int] = []
    do = store._do

    def counted_do(tasks: list[_Task]) -> Any:
        batches.append(len(tasks))
        return do(tasks)

    store._do = counted_do  # type: ignore[method-assign]
    await store.open()
    counted.handed.clear()
    batches.clear()
    return store, counted, batches


async def test_writes_queued_in_one_turn_of_the_loop_reach_the_thread_in_one_hand_off(tmp_path: Path) -> None:
    store, counted, batches = await _counted_store(tmp_path / "jobs.sqlite3")
    jobs = [_job(n) for n in range(150)]
    await asyncio.gather(*(store.add(job) for job in jobs))  # all queued in the turn the gathered tasks start
    assert counted.handed == [150]
    assert batches == [BATCH, BATCH, 150 - 2 * BATCH]  # done and handed back BATCH at most at a time
    assert await store._run(store._select, "ORDER BY id", ()) == jobs
    await store.close()


async def test_order_is_kept_across_hand_offs_and_a_call_sees_every_write_queued_before_it(tmp_path: Path) -> None:
    store, counted, _ = await _counted_store(tmp_path / "jobs.sqlite3")
    loop = asyncio.get_running_loop()

    def read() -> list[JobRecord]:
        return store._select("WHERE id = ?", (JOB_A,))

    first = JobRecord(id=JOB_A, workflow="image", values={"seed": 1})
    second, third = replace(first, state=JobState.SUBMITTED), replace(first, state=JobState.RUNNING, attempts=1)
    turn = [store._write(first), store._enqueue(_Task(loop.create_future(), call=read))]
    await asyncio.sleep(0)  # the turn ends: its hand-off runs before this coroutine goes on
    turn += [store._write(second), store._write(third), store._enqueue(_Task(loop.create_future(), call=read))]
    assert await asyncio.gather(*turn) == [None, [first], None, None, [third]]
    assert counted.handed == [2, 3]
    await store.close()
    reopened = await JobStore(tmp_path / "jobs.sqlite3").open()
    assert await reopened.get(JOB_A) == third
    await reopened.close()


async def test_close_with_work_not_yet_handed_over_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store, counted, _ = await _counted_store(path)
    jobs = [_job(n) for n in range(10)]
    written = [store._write(job) for job in jobs]  # queued; this turn's hand-off has not run yet
    async with asyncio.timeout(10):  # not wait_for: close() must start in this turn, not in a task of its own
        await store.close()
    assert counted.handed == [11, None]  # the ten writes and the close in one hand-off, then the stop
    assert [future.result() for future in written] == [None] * 10
    with pytest.raises(RuntimeError) as caught:
        await store.add(_job(11))
    assert str(caught.value) == f"the job store {path} is not open"
    reopened = await JobStore(path).open()
    assert await reopened._run(reopened._select, "ORDER BY id", ()) == jobs
    await reopened.close()


def test_a_loop_that_stopped_before_its_hand_off_does_not_hold_back_its_writes(tmp_path: Path) -> None:
    record = _job(1)
    first = asyncio.new_event_loop()
    try:
        store = first.run_until_complete(JobStore(tmp_path / "jobs.sqlite3").open())
        written: list[asyncio.Future[Any]] = []
        first.call_soon(lambda: written.append(store._write(record)))
        first.call_soon(first.stop)  # the loop stops in the turn of the write, before its hand-off
        first.run_forever()
        assert len(written) == 1 and not written[0].done()

        async def read_then_close() -> list[JobRecord]:
            rows = await store._run(store._select, "WHERE id = ?", (record.id,))  # queued after the write
            await store.close()
            return rows

        assert asyncio.run(read_then_close()) == [record]
        assert first.run_until_complete(written[0]) is None  # its caller learns it was written
    finally:
        first.close()


async def test_loops_in_two_threads_share_one_store(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = await JobStore(path).open()
    start = threading.Barrier(2)

    def writer(first: int) -> list[JobRecord]:
        async def jobs() -> list[JobRecord]:
            return await asyncio.gather(*(_engine_path(store, _job(n), n) for n in range(first, first + 100)))

        start.wait()
        return asyncio.run(jobs())

    final = [r for results in await asyncio.gather(*(asyncio.to_thread(writer, n) for n in (0, 100))) for r in results]
    await store.close()
    reopened = await JobStore(path).open()
    assert await reopened._run(reopened._select, "ORDER BY id", ()) == sorted(final, key=lambda r: r.id)
    await reopened.close()

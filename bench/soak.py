"""Soak: thousands of jobs through the engine while fake ComfyUI servers drop and restart: `python -m bench.soak`.

The core `Engine` (no Discord) runs on the main event loop and drives `--jobs` /image jobs, a few hundred
in flight, through `--servers` instant fake ComfyUI servers. The fakes and the chaos run in a child process
(in a thread they shared the GIL with the engine and took a quarter of its throughput): every few tenths
of a second one server drops its websockets, restarts (its queue and history lost) or goes away for a few
seconds; a seeded RNG draws the schedule (printed, so a run can be
repeated with `--seed`; the timing of jobs against it still varies), and a quarter of the servers at most
are down at once, never longer than the job timeout.

Every job has its own seed, which the fake writes into the PNG it saves (ComfyUI's `prompt` text chunk),
so each delivered file is checked to be the job's own:

- lost: jobs that did not end with exactly their own file (errors, someone else's file, none), except:
- given up: jobs that were running each time their server went away, MAX_ATTEMPTS times: the engine stops
  there by design (a job that crashes its server must not take the others with it) and says so to the
  member; random restarts can strike one job twice, rarely (about one in 10,000 jobs here);
- duplicated: jobs whose output arrived more than once, or was delivered to another job;
- resubmitted: jobs the engine submitted again, or moved to another server (Progress events);
- spread: delivered jobs per server.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import random
import resource
import statistics
import struct
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

from core.errors import BotError, JobLostTooOften
from core.jobs.engine import Engine, JobResult, Progress, new_job_id, shown_values
from core.jobs.store import JobRecord, JobState, JobStore
from core.servers import ServerConfig
from core.workflows import Workflow, load_catalog
from tests.conftest import MODELS, WORKFLOWS
from tests.fakes.comfyui import FakeComfyUI

JOBS = 10_000
SERVERS = 16
IN_FLIGHT = 256  # jobs the driver keeps running at once; MAX_JOBS_PER_SERVER decides how many reach a server
JOB_TIMEOUT = 60.0
MAX_JOBS_PER_SERVER = 4  # the bot's default: the rest waits in the bot's own queue
CHAOS_PAUSE = (0.05, 0.4)  # seconds between two chaos events
OUTAGE = (1.0, 4.0)  # seconds a stopped server stays away
RESTART_DOWNTIME = (0.1, 1.5)
HOUSEKEEPING = 1.0  # seconds between two trims of what the fakes record for tests

MakeServer = Callable[[], FakeComfyUI]


def fake_server() -> FakeComfyUI:
    """An instant fake with tiny outputs, the models the shipped workflows need and one sampler step."""
    return FakeComfyUI(models=MODELS, output_padding=0, image_size=(64, 64), sampler_steps=1)


def prompt_seed(png: bytes) -> int | None:
    """The sampler seed in the `prompt` text chunk ComfyUI writes into a PNG; None when there is none."""
    pos = 8
    while pos + 8 <= len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        tag, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if tag != b"tEXt":  # json.dumps writes ASCII, so the prompt is always a tEXt chunk
            continue
        key, _, value = body.partition(b"\0")
        if key != b"prompt":
            continue
        try:
            prompt = json.loads(value.decode("latin-1"))
        except ValueError:
            return None
        seeds = [node["inputs"]["seed"] for node in prompt.values() if "seed" in node.get("inputs", {})]
        return seeds[0] if len(seeds) == 1 else None
    return None


@dataclass(slots=True)
class Ledger:
    """What came back for each job (job i has seed i), and the figures drawn from it."""

    jobs: int
    own: Counter[int] = field(default_factory=Counter)  # job -> times it got its own file
    wrong: set[int] = field(default_factory=set)  # jobs that got a file that is not theirs, or no file
    arrivals: Counter[int] = field(default_factory=Counter)  # seed -> delivered files that carry it
    stolen: set[int] = field(default_factory=set)  # jobs whose file was delivered to another job
    errors: Counter[str] = field(default_factory=Counter)
    failed: set[int] = field(default_factory=set)
    given_up: set[int] = field(default_factory=set)  # failed with JobLostTooOften (see the module docstring)
    resubmitted: Counter[int] = field(default_factory=Counter)  # job -> times submitted again
    moved: set[int] = field(default_factory=set)
    per_server: Counter[str] = field(default_factory=Counter)

    def deliver(self, job: int, result: JobResult) -> None:
        """Check that `result` holds exactly job `job`'s own file."""
        self.per_server[result.server] += 1
        seeds = [prompt_seed(f.read()) for f in result.files]
        for seed in seeds:
            if seed is not None:
                self.arrivals[seed] += 1
                if seed != job:
                    self.stolen.add(seed)
        if seeds == [job]:
            self.own[job] += 1
        else:
            self.wrong.add(job)
            self.errors[f"wrong output: seeds {seeds} delivered to the job of seed {job}"[:200]] += 1

    def fail(self, job: int, error: BaseException) -> None:
        self.failed.add(job)
        if isinstance(error, JobLostTooOften):
            self.given_up.add(job)
        message = error.user_message if isinstance(error, BotError) else str(error)
        # What happened to it before, to tell a job the chaos hit twice while it ran (given up by design,
        # MAX_ATTEMPTS) from a fault of the bot
        detail = f" | {error.detail}" if isinstance(error, BotError) and error.detail else ""
        history = f" [resubmitted {self.resubmitted[job]}x{', moved' if job in self.moved else ''}]"
        self.errors[f"{type(error).__name__}: {message}{detail}{history}"] += 1

    def progress(self, job: int, progress: Progress) -> None:
        if progress.resubmitted:
            self.resubmitted[job] += 1
        if progress.moved_to is not None:
            self.moved.add(job)

    @property
    def delivered(self) -> set[int]:
        """Jobs that ended with their own file, exactly once, and nothing else."""
        return {job for job, count in self.own.items() if count == 1} - self.wrong - self.failed

    @property
    def lost(self) -> int:
        return self.jobs - len(self.delivered) - len(self.given_up)

    @property
    def duplicated(self) -> int:
        return len({seed for seed, count in self.arrivals.items() if count > 1} | self.stolen)

    def figures(self) -> dict[str, Any]:
        counts = list(self.per_server.values()) or [0]
        return {
            "soak_jobs": self.jobs,
            "soak_lost": self.lost,
            "soak_given_up": len(self.given_up),
            "soak_duplicated": self.duplicated,
            "soak_resubmitted": len(self.resubmitted.keys() | self.moved),
            "soak_moved": len(self.moved),
            "soak_spread": {
                "min": min(counts),
                "max": max(counts),
                "stdev": round(statistics.pstdev(counts), 1),
            },
        }


class Fleet:
    """The fake servers, their chaos and their housekeeping, in a child process of their own.

    Not a thread: the sixteen fakes together cost about as much CPU as the engine, and sharing the GIL with
    them would make the soak measure the fakes.
    """

    def __init__(
        self,
        count: int,
        seed: int,
        make_server: MakeServer = fake_server,
        *,
        pause: tuple[float, float] = CHAOS_PAUSE,
        max_down: int | None = None,
    ) -> None:
        context = multiprocessing.get_context("fork")  # the child gets make_server as is, no pickling
        self._conn, child = context.Pipe()
        down = max(1, count // 4) if max_down is None else max_down
        self._process = context.Process(
            target=_serve_fleet,
            args=(child, [make_server] * count),
            kwargs={"seed": seed, "pause": pause, "max_down": down},
            name="soak-fakes",
            daemon=True,
        )
        self.events: dict[str, int] = {}  # chaos events done, by kind (known after `calm`)

    async def _answer(self) -> Any:
        return await asyncio.to_thread(self._conn.recv)

    async def start(self) -> list[ServerConfig]:
        """Start the servers and return how the engine reaches them."""
        self._process.start()
        urls: list[str] = await self._answer()
        return [ServerConfig(name=f"soak{i:02}", url=url) for i, url in enumerate(urls)]

    def unleash(self) -> None:
        """Start the chaos and the housekeeping (they run until `calm`)."""
        self._conn.send(("unleash",))

    def forget(self, server: str, job_id: str, filenames: list[str]) -> None:
        """Drop a delivered job's history entry and files, so that the fakes' memory stays flat.

        Not `forget_outputs()`: that would also delete files of jobs finished but not downloaded yet. A saved
        file's counter is one past the highest existing name, so a freed name is never that of a file in use.
        """
        self._conn.send(("forget", int(server.removeprefix("soak")), job_id, filenames))

    async def calm(self) -> None:
        """Stop the chaos and wait until every server is up again."""
        self._conn.send(("calm",))
        self.events = await self._answer()

    async def stop(self) -> None:
        if self._process.is_alive():
            self._conn.send(("stop",))
            await asyncio.to_thread(self._process.join, 10)
        if self._process.is_alive():
            self._process.kill()
        self._conn.close()


def _serve_fleet(
    conn: Connection, makers: list[MakeServer], *, seed: int, pause: tuple[float, float], max_down: int
) -> None:
    """The child process: run the fakes and obey the parent's messages until it says stop."""
    asyncio.run(_Fakes(conn, [make() for make in makers], seed, pause, max_down).serve())


@dataclass(slots=True)
class _Fakes:
    conn: Connection
    servers: list[FakeComfyUI]
    seed: int
    pause: tuple[float, float]
    max_down: int
    events: Counter[str] = field(default_factory=Counter)
    calming: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self) -> None:
        await asyncio.gather(*(s.start() for s in self.servers))
        self.conn.send([s.url for s in self.servers])
        inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def receive() -> None:
            while self.conn.poll():
                inbox.put_nowait(self.conn.recv())

        loop.add_reader(self.conn.fileno(), receive)
        tasks: list[asyncio.Task[None]] = []
        while True:
            kind, *args = await inbox.get()
            if kind == "unleash":
                tasks = [asyncio.create_task(self._chaos()), asyncio.create_task(self._housekeeping())]
            elif kind == "forget":
                index, job_id, names = args
                self.servers[index].history.pop(job_id, None)
                for name in names:
                    self.servers[index].files.pop(("output", "", name), None)
            elif kind == "calm":
                self.calming.set()
                await asyncio.gather(*tasks)
                self.conn.send(dict(self.events))
            else:
                loop.remove_reader(self.conn.fileno())
                await asyncio.gather(*(s.stop() for s in self.servers))
                return

    async def _chaos(self) -> None:
        rng = random.Random(self.seed)
        down: set[int] = set()
        outages: set[asyncio.Task[None]] = set()

        async def outage(index: int, kind: str, seconds: float) -> None:
            try:
                if kind == "restart":
                    await self.servers[index].restart(downtime=seconds)
                else:
                    await self.servers[index].stop()
                    await asyncio.sleep(seconds)
                    await self.servers[index].start()
            finally:
                down.discard(index)

        # The first blow is a restart of a server holding jobs, so that every soak shows the failover at work,
        # however quickly the jobs run.
        first = rng.randrange(len(self.servers))
        with contextlib.suppress(TimeoutError):
            await self.servers[first].wait_for(lambda: self.servers[first].holds_jobs or self.calming.is_set(), 600)
        if not self.calming.is_set():
            self.events["restart"] += 1
            down.add(first)
            task = asyncio.create_task(outage(first, "restart", RESTART_DOWNTIME[0]))
            outages.add(task)
            task.add_done_callback(outages.discard)
        while not self.calming.is_set():
            # Every draw happens whatever the state, so the schedule depends on the seed alone.
            wait = rng.uniform(*self.pause)
            index = rng.randrange(len(self.servers))
            kind = rng.choices(["drop", "restart", "outage"], weights=[4, 1, 1])[0]
            seconds = rng.uniform(*(RESTART_DOWNTIME if kind == "restart" else OUTAGE))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.calming.wait(), wait)
                break
            if index in down or (kind != "drop" and len(down) >= self.max_down):
                self.events["skipped"] += 1
                continue
            self.events[kind] += 1
            if kind == "drop":
                await self.servers[index].drop_websockets()
                continue
            down.add(index)
            task = asyncio.create_task(outage(index, kind, seconds))
            outages.add(task)
            task.add_done_callback(outages.discard)
        await asyncio.gather(*outages)

    async def _housekeeping(self) -> None:
        """Trim the request logs the fakes keep for tests (each holds every prompt it was sent)."""
        while not self.calming.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.calming.wait(), HOUSEKEEPING)
            for fake in self.servers:
                fake.requests.clear()
                fake.finished_at.clear()


def rss_mb() -> float | None:
    """This process's resident memory now (Linux), to show it stays flat; None elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * resource.getpagesize() / 2**20, 1)


async def soak(
    jobs: int = JOBS,
    *,
    servers: int = SERVERS,
    seed: int | None = None,
    in_flight: int = IN_FLIGHT,
    job_timeout: float = JOB_TIMEOUT,
    chaos_pause: tuple[float, float] = CHAOS_PAUSE,
    make_server: MakeServer = fake_server,
    chaos: bool = True,
    quiet: bool = False,
) -> tuple[Ledger, dict[str, Any]]:
    """Run `jobs` /image jobs through an Engine over `servers` chaotic fakes; the ledger and the figures."""
    seed = random.randrange(2**32) if seed is None else seed
    if not quiet:
        print(f"Soak: {jobs} jobs on {servers} fake servers, chaos seed {seed} (repeat with --seed {seed})")
    workflow = load_catalog(WORKFLOWS).workflows["image"]
    ledger = Ledger(jobs)
    fleet = Fleet(servers, seed, make_server, pause=chaos_pause)
    folder = tempfile.TemporaryDirectory(prefix="soak-")
    try:
        configs = await fleet.start()
        store = await JobStore(Path(folder.name) / "jobs.sqlite3").open()
    except BaseException:
        await fleet.stop()
        folder.cleanup()
        raise
    rss_start = rss_mb()
    started = time.monotonic()
    # The chaos makes the engine warn about every outage and move (thousands of lines): the ledger tells the story.
    core_log = logging.getLogger("core")
    level = core_log.level
    core_log.setLevel(logging.ERROR)
    try:
        async with aiohttp.ClientSession() as session:
            engine = Engine(
                session,
                configs,
                job_timeout=job_timeout,
                max_output_bytes=2**20,
                store=store,
                max_jobs_per_server=MAX_JOBS_PER_SERVER,
                max_queued_jobs=in_flight,
            )
            engine.start()
            try:
                await engine.object_infos()
                engine.capabilities({workflow.name: workflow})
                if chaos:
                    fleet.unleash()
                next_job = iter(range(jobs))
                await asyncio.gather(*(_driver(engine, workflow, next_job, ledger, fleet) for _ in range(in_flight)))
                seconds = time.monotonic() - started
                if chaos:
                    await fleet.calm()
            finally:
                await engine.close()
    finally:
        core_log.setLevel(level)
        await store.close()
        await fleet.stop()
        folder.cleanup()
    figures = {
        **ledger.figures(),
        "soak_seconds": round(seconds, 1),
        "soak_jobs_per_s": round(jobs / seconds, 1),
        "soak_seed": seed,
        "soak_chaos": fleet.events,
        "soak_rss_mb_start": rss_start,
        "soak_rss_mb_end": rss_mb(),
    }
    return ledger, figures


async def _driver(engine: Engine, workflow: Workflow, next_job: Iterator[int], ledger: Ledger, fleet: Fleet) -> None:
    """Run jobs one after the other, as one member would, until none is left."""
    for job in next_job:
        values = workflow.resolve({"prompt": f"soak {job}", "seed": job, "width": 256, "height": 256})
        reservation = engine.limits.reserve(job, new_job_id())
        record = JobRecord(id=reservation.job_id, workflow=workflow.name, values=shown_values(values))
        try:
            result = await engine.run(
                workflow, values, lambda progress, job=job: ledger.progress(job, progress), record=record
            )
        except Exception as exc:  # any failure is a lost job, counted under its message; the soak goes on
            ledger.fail(job, exc)
            if isinstance(exc, BotError):
                await engine.finish(record.id, JobState.FAILED, exc.user_message)
            continue
        finally:
            reservation.release()
        with result:
            ledger.deliver(job, result)
        fleet.forget(result.server, result.job_id, [f.filename for f in result.files])
        await engine.finish(record.id, JobState.DONE)


def report(ledger: Ledger, figures: dict[str, Any]) -> None:
    """Print the soak's figures, then every distinct error with how often it happened."""
    spread = figures["soak_spread"]
    rows = [
        ("jobs", f"{figures['soak_jobs']} in {figures['soak_seconds']} s ({figures['soak_jobs_per_s']} jobs/s)"),
        ("lost (must be 0)", str(figures["soak_lost"])),
        ("given up by design", f"{figures['soak_given_up']} (running each time their server went away)"),
        ("duplicated (must be 0)", str(figures["soak_duplicated"])),
        ("resubmitted or moved", f"{figures['soak_resubmitted']} (moved: {figures['soak_moved']})"),
        ("jobs per server", f"min {spread['min']}, max {spread['max']}, stdev {spread['stdev']}"),
        ("chaos events", ", ".join(f"{k} {v}" for k, v in sorted(figures["soak_chaos"].items())) or "none"),
        ("RSS at start / end", f"{figures['soak_rss_mb_start']} / {figures['soak_rss_mb_end']} MB"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
    for message, count in ledger.errors.most_common():
        print(f"  {count:6d} x {message}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description="Soak the engine with many chaotic servers."
    )
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"jobs to run (default {JOBS})")
    parser.add_argument("--servers", type=int, default=SERVERS, help=f"fake servers (default {SERVERS})")
    parser.add_argument("--seed", type=int, help="chaos seed (default: a random one, printed)")
    args = parser.parse_args()
    ledger, figures = asyncio.run(soak(args.jobs, servers=args.servers, seed=args.seed))
    report(ledger, figures)
    print(json.dumps(figures))

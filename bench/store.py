"""Job store micro-benchmark: `python -m bench.store [--jobs N] [--in-flight 1 200 ...]`.

Fake jobs make the engine's writes against a real `JobStore` in a temporary folder, `--in-flight` of them at
a time: added, given a server and its rendered prompt, submitted, running, delivering, then read back and
reported by the front (`Engine.finish`). No ComfyUI, no Discord: the figures are the store's own.

The levels run as fast as the store lets them, then a paced run starts `--rate` new jobs a second (the
issue's goal is 200), where the event loop's lag is the store's own rather than that of a saturated loop.
For each level it prints writes/s, thread hops per job (wake-ups of the event loop from another thread,
counted on `loop.call_soon_threadsafe`, which both `run_in_executor` and the store's writer use), hand-offs
per job (work handed by the loop to the store's thread: puts on its queue, each a wake-up), CPU ms per
job (the whole process, the store's thread included), CPU ms per job on the event loop's thread, and the
p99 lag of the event loop while the jobs run. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from core.jobs.store import JobRecord, JobState, JobStore

WRITES_PER_JOB = 6  # add, server+prompt, submitted, running, delivering, reported
PROMPT = json.loads((Path(__file__).resolve().parent.parent / "workflows" / "image.json").read_text())


async def one_job(store: JobStore, number: int) -> None:
    """Write one job as the engine and the front do, from its creation to its report."""
    record = JobRecord(
        id=f"{number:032x}",
        workflow="image",
        values={"prompt": f"a cat number {number}", "seed": number, "steps": 20},
        user_id=1000 + number % 50,
        guild_id=1,
        channel_id=2,
        message_id=10_000 + number,
        upload_limit=10 << 20,
    )
    await store.add(record)
    await asyncio.sleep(0)
    record = await store.update(record, server="gpu-1", prompt=PROMPT, inputs={})
    await asyncio.sleep(0)
    record = await store.update(record, state=JobState.SUBMITTED, server="gpu-1", attempts=1, prompt_id=None)
    await asyncio.sleep(0)
    record = await store.update(record, state=JobState.RUNNING)
    await asyncio.sleep(0)
    await store.update(record, state=JobState.DELIVERING)
    await asyncio.sleep(0)
    again = await store.get(record.id)  # Engine.finish reads the job back before reporting it
    assert again is not None and again.state is JobState.DELIVERING
    await store.update(again, state=JobState.DONE, error=None, reported=True)


class CountedQueue(queue.SimpleQueue[Any]):
    """The store's queue, counting the hand-offs to its thread."""

    puts = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.puts += 1
        super().put(item, block, timeout)


LAG_TICK = 0.005  # seconds; often enough to see a blocked loop, rarely enough not to weigh on the CPU figures


async def lag_sampler(samples: list[float], stop: asyncio.Event) -> None:
    """Note how late the loop wakes a short sleep, in milliseconds."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(LAG_TICK)
        samples.append(max(0.0, (time.perf_counter() - before - LAG_TICK) * 1000))


async def level(folder: Path, jobs: int, in_flight: int, rate: float | None = None) -> dict[str, float]:
    """Run `jobs` fake jobs, `in_flight` at a time (or `rate` new ones a second), on a fresh store."""
    store = JobStore(folder / f"jobs-{in_flight}-{rate}.sqlite3")
    store._queue = hand_offs = CountedQueue()
    await store.open()
    hand_offs.puts = 0
    loop = asyncio.get_running_loop()
    hops = 0
    plain = loop.call_soon_threadsafe

    def counted(callback: Any, *args: Any, context: Any = None) -> Any:
        nonlocal hops
        hops += 1
        return plain(callback, *args, context=context)

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
    slots = asyncio.Semaphore(in_flight)

    async def limited(number: int) -> None:
        if rate is not None:
            await asyncio.sleep(number / rate)  # as members ask: spread over time, not all at once
        async with slots:
            await one_job(store, number)

    lags: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(lag_sampler(lags, stop))
    cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
    try:
        await asyncio.gather(*(limited(n) for n in range(jobs)))
        wall = time.perf_counter() - wall
        cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
    finally:
        stop.set()
        await sampler
        loop.call_soon_threadsafe = plain  # type: ignore[method-assign]
        await store.close()
    return {
        "in_flight": in_flight,
        "rate": rate or 0,
        "jobs": jobs,
        "writes_per_s": round(jobs * WRITES_PER_JOB / wall),
        "jobs_per_s": round(jobs / wall),
        "thread_hops_per_job": round(hops / jobs, 2),
        "hand_offs_per_job": round(hand_offs.puts / jobs, 2),
        "cpu_ms_per_job": round(cpu * 1000 / jobs, 3),
        "loop_cpu_ms_per_job": round(loop_cpu * 1000 / jobs, 3),
        "loop_lag_p99_ms": round(statistics.quantiles(lags, n=100)[98], 2) if len(lags) > 1 else 0.0,
    }


async def main(jobs: int, in_flight: list[int], rate: float) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        levels = [(n, None) for n in in_flight] + [(jobs, rate)]
        for n, paced in levels:
            result = await level(Path(tmp), jobs if n > 1 else min(jobs, 500), n, paced)
            name = f"{n:>4} in flight" if paced is None else f"{paced:g} jobs/s"
            print(
                f"{name}: {result['writes_per_s']:>7} writes/s, {result['jobs_per_s']:>6} jobs/s, "
                f"{result['thread_hops_per_job']:>5} thread hops/job, {result['hand_offs_per_job']:>5} hand-offs/job, "
                f"{result['cpu_ms_per_job']:.3f} CPU ms/job "
                f"({result['loop_cpu_ms_per_job']:.3f} on the loop), loop lag p99 {result['loop_lag_p99_ms']} ms",
                flush=True,
            )
            figures[str(n) if paced is None else f"{paced:g}/s"] = result
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Job store micro-benchmark")
    parser.add_argument("--jobs", type=int, default=3000, help="fake jobs per load level (at most 500 at 1 in flight)")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 50, 200, 500])
    parser.add_argument("--rate", type=float, default=200, help="new jobs a second in the paced run (loop lag)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.jobs, args.in_flight, args.rate))))

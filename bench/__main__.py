"""The bot under load, measured from outside: `python -m bench [--parts ...] [--readme]`.

The real bot (bot.ComfyBot: discord.py client, cogs, engine, store) runs in this process, built as
`python bot.py` builds it. The fakes (four instant ComfyUI servers with 1 MB PNG outputs and the fake
Discord) run in a child process (bench/fakes.py), which also plays the members, so CPU time, RSS and
event-loop lag measured here are the bot's alone. Parts, in order:

- ready: READY sent by the gateway -> the first /image answered (probes every 50 ms);
- idle: HTTP requests per second the connected bot makes to ComfyUI and Discord, and its CPU, with no job;
- queued: RSS and CPU while 1,000 jobs wait (ComfyUI paused), measured once their arrival is over (no
  Discord request for a second); the CPU their arrival cost is its own figure; then they run to the end;
- load: 1, 50, 200 and 500 jobs kept in flight; for every job the added latency (ComfyUI wrote the history
  -> Discord read the file; both `time.monotonic()`, CLOCK_MONOTONIC, system-wide on Linux); per level the
  jobs/s while the load was held, the loop lag p99 (a 10 ms sleep sampled all along), and this process's
  CPU time per job; at 1 in flight, Discord REST requests per job; once the 500 in flight are done, RSS (what
  the level leaves held: it should go back near the idle bot's);
- floor (bench/floor.py): the same 200 in flight sent to a plain discord.py + aiohttp client that does only
  what every such bot must per job; its CPU per job is the floor, the bot's minus it the bot's own cost;
- big: RSS growth while one 500 MB PNG is downloaded and delivered (fitted to Discord's 10 MB limit);
- soak (bench/soak.py): --soak-jobs jobs over 16 fake servers that drop and restart, keys soak_*.

Each figure is printed with its goal (bench/figures.py); the last line is one JSON object with every figure,
`goals` (key -> goal) and `met` (key -> bool). `--readme` rewrites README.md's table from it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import logging
import math
import os
import pstats
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Self

import discord.gateway
import discord.http
import yarl

from bench import floor, soak
from bench.fakes import FakesProcess
from bench.figures import GOALS, judge, percentile, rewrite_readme, shown, table
from bot import ComfyBot, settle_heap
from core.config import load_settings
from tests.conftest import WORKFLOWS

PARTS = ("idle", "load", "floor", "big", "queued", "soak")
LEVELS = {1: 30, 50: 150, 200: 400, 500: 700}  # jobs in flight -> jobs run at that level
FLOOR_IN_FLIGHT = 200  # the level whose CPU per job is the bot's figure
FLOOR_KEYS = ("floor_cpu_ms_per_job", "bot_own_cpu_ms_per_job")  # printed next to bot_cpu_ms_per_job
SERVERS = 4
PNG_PADDING = 1_000_000  # every output PNG is about 1 MB
BIG_OUTPUT = 500 * 2**20
QUEUED = 1000
IDLE_SECONDS = 5.0
QUEUED_SECONDS = 5.0
STALL = 60.0  # seconds a job may go without delivery before the level gives up on it
README = Path(__file__).resolve().parent.parent / "README.md"


class _Sampler:
    """Takes a sample every `interval` seconds on this process's loop while entered (`with`)."""

    interval = 0.01

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(self.interval)
            self.sample(time.monotonic() - start)

    def sample(self, slept: float) -> None:
        raise NotImplementedError


class LoopLag(_Sampler):
    """How late a 10 ms sleep wakes up on this process's loop, in ms."""

    def __init__(self) -> None:
        super().__init__()
        self.samples: list[float] = []

    def sample(self, slept: float) -> None:
        self.samples.append((slept - self.interval) * 1000)


class PeakRss(_Sampler):
    """This process's RSS every 5 ms; `peak` in MB."""

    interval = 0.005

    def __init__(self) -> None:
        super().__init__()
        self.peak = soak.rss_mb() or math.nan

    def sample(self, slept: float) -> None:
        self.peak = max(self.peak, soak.rss_mb() or math.nan)


@contextlib.contextmanager
def cpu_clock() -> Iterator[dict[str, float]]:
    """Measure this process's CPU seconds (all threads) and wall seconds of a block: keys cpu, wall, pct."""
    spent: dict[str, float] = {}
    cpu, wall = time.process_time(), time.monotonic()
    yield spent
    spent["cpu"] = time.process_time() - cpu
    spent["wall"] = time.monotonic() - wall
    spent["pct"] = 100 * spent["cpu"] / max(spent["wall"], 1e-9)


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float, what: str) -> None:
    """Poll `check` every 20 ms until it is true; TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.02)


class LogCount(logging.Handler):
    """Counts the bot's warnings and errors by message template, instead of printing each one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[tuple[str, str]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[(record.levelname, str(record.msg))] += 1


def r(value: float, digits: int = 1) -> float:
    return round(value, digits) if not math.isnan(value) else value


class Bench:
    """One bot against the fakes' process, and the figures measured so far."""

    def __init__(self, fakes: FakesProcess, bot: ComfyBot, figures: dict[str, Any]) -> None:
        self.fakes = fakes
        self.bot = bot
        self.figures = figures

    async def settle(self, timeout: float = 60) -> None:
        """Wait until the bot has no job left."""
        await until(lambda: not self.bot.active_jobs, timeout, "the bot finishing its jobs")

    async def quiet(self, seconds: float, timeout: float) -> None:
        """Wait until the bot has sent Discord no request for `seconds`."""
        deadline = time.monotonic() + timeout
        last, _ = await self.fakes.call("requests")
        while time.monotonic() < deadline:
            await asyncio.sleep(seconds)
            now, _ = await self.fakes.call("requests")
            if now == last:
                return
            last = now
        raise TimeoutError(f"the bot still sending Discord requests after {timeout:.0f} s")

    async def idle(self) -> None:
        await self.settle()
        await asyncio.sleep(1)
        discord0, comfy0 = await self.fakes.call("requests")
        with cpu_clock() as spent:
            await asyncio.sleep(IDLE_SECONDS)
        discord1, comfy1 = await self.fakes.call("requests")
        self.figures |= {
            "idle_requests_per_s": r((discord1 - discord0 + comfy1 - comfy0) / spent["wall"], 2),
            "idle_discord_requests_per_s": r((discord1 - discord0) / spent["wall"], 2),
            "idle_comfy_requests_per_s": r((comfy1 - comfy0) / spent["wall"], 2),
            "cpu_pct_idle": r(spent["pct"], 2),
        }

    async def level(self, in_flight: int, jobs: int) -> None:
        await self.settle()
        discord0, _ = await self.fakes.call("requests")
        routes0 = Counter(await self.fakes.call("comfy_routes"))
        fakes_cpu0 = await self.fakes.call("cpu")
        with LoopLag() as lag, cpu_clock() as spent:
            result = await self.fakes.call("level", in_flight, jobs, STALL)
        fakes_cpu = await self.fakes.call("cpu") - fakes_cpu0
        discord1, _ = await self.fakes.call("requests")
        routes = Counter(await self.fakes.call("comfy_routes")) - routes0
        latencies = result["latencies_ms"]
        delivered = max(result["delivered"], 1)
        n = in_flight
        self.figures |= {
            f"added_latency_p50_ms_{n}": r(percentile(latencies, 50)),
            f"added_latency_p99_ms_{n}": r(percentile(latencies, 99)),
            f"jobs_per_s_{n}": r(result["jobs_per_s"]),
            f"loop_lag_p99_ms_{n}": r(percentile(lag.samples, 99)),
            f"bot_cpu_ms_per_job_{n}": r(1000 * spent["cpu"] / delivered, 2),
            f"cpu_pct_{n}": r(spent["pct"]),
            f"fakes_cpu_pct_{n}": r(100 * fakes_cpu / spent["wall"]),
            f"discord_requests_per_job_{n}": r((discord1 - discord0) / delivered, 2),
            f"comfy_requests_per_job_{n}": r(routes.total() / delivered, 2),
            f"comfy_routes_per_job_{n}": {route: r(count / delivered, 2) for route, count in routes.most_common()},
            f"undelivered_{n}": result["jobs"] - result["delivered"],
            f"expired_interactions_{n}": result["expired"],
        }
        if in_flight == 1:
            await self.settle()
            await asyncio.sleep(0.5)  # requests that follow the delivery (a last status edit) count too
            discord1, _ = await self.fakes.call("requests")
            self.figures["rest_requests_per_job"] = r((discord1 - discord0) / delivered, 2)
            self.figures["rest_requests_per_job_p50_by_token"] = percentile(result["token_requests"], 50)
        if in_flight == 200:
            self.figures["bot_cpu_ms_per_job"] = self.figures["bot_cpu_ms_per_job_200"]
        if in_flight == 500:
            await self.settle()
            await asyncio.sleep(0.5)  # the last status edits and store writes of the level
            self.figures["rss_mb_after_500"] = soak.rss_mb() or math.nan

    async def big(self) -> None:
        await self.settle()
        await self.fakes.call("set_padding", BIG_OUTPUT)
        before = soak.rss_mb() or math.nan
        started = time.monotonic()
        seen_active = False

        async def ended() -> bool:
            nonlocal seen_active
            seen_active = seen_active or bool(self.bot.active_jobs)
            outcome = await self.fakes.call("outcome", text)
            return bool(outcome["delivered"]) or (seen_active and not self.bot.active_jobs)

        try:
            with PeakRss() as rss:
                [text] = await self.fakes.call("send", 1)
                await until(ended, 300, "the 500 MB output's job ending")
                seconds = time.monotonic() - started
                await asyncio.sleep(0.5)
        finally:
            await self.fakes.call("set_padding", PNG_PADDING)
        outcome = await self.fakes.call("outcome", text)
        await self.fakes.call("forget", [text])
        self.figures |= {
            "rss_growth_mb_500mb_output": r(rss.peak - before),
            "big_output_delivered": outcome["delivered"],
            "big_output_seconds": r(seconds, 2),
            "big_output_attachments": outcome["attachments"],
            "big_output_note": (outcome["content"] or "").splitlines()[-1:],  # what the bot said of the file
        }

    async def queued(self) -> None:
        await self.settle()
        before = soak.rss_mb() or math.nan
        await self.fakes.call("pause")
        texts = await self.fakes.call("send", QUEUED)

        with cpu_clock() as arriving:
            await until(lambda: len(self.bot.active_jobs) >= QUEUED, 120, f"{QUEUED} jobs waiting")
            # Their arrival ends with each one's first status edit (a second later, paced): what is measured
            # next is the cost of waiting, so it starts once the bot has sent Discord nothing for a second.
            await self.quiet(1.0, 120)
        with cpu_clock() as spent:
            await asyncio.sleep(QUEUED_SECONDS)
        self.figures |= {
            "cpu_ms_per_job_arriving_1000": r(1000 * arriving["cpu"] / QUEUED, 2),
            "rss_mb_before_queued": before,
            "rss_mb_1000_queued": soak.rss_mb() or math.nan,
            "cpu_pct_1000_queued": r(spent["pct"], 2),
            "expired_interactions_1000_queued": QUEUED - await self.fakes.call("acknowledged", texts),
        }
        await self.fakes.call("resume")
        await self.settle(timeout=300)  # they run to the end before anything else is measured
        await self.fakes.call("forget", texts)


async def measure_floor(fakes: FakesProcess, figures: dict[str, Any], jobs: int) -> None:
    """The floor client's CPU per job at 200 in flight; the bot's own cost next to it when the load part ran."""
    async with floor.running_floor(fakes.info) as client:
        settle_heap()  # the bot's collector settings, so that the difference is the bot's work, not its GC
        await fakes.call("level", 50, 50, STALL)  # warm up, as the bot's levels 1 and 50 warm it up
        client.delivered = 0
        requests0 = await fakes.call("requests")
        with cpu_clock() as spent:
            result = await fakes.call("level", FLOOR_IN_FLIGHT, jobs, STALL)
        (discord0, comfy0), (discord1, comfy1) = requests0, await fakes.call("requests")
    if not result["delivered"] == client.delivered == jobs:
        raise RuntimeError(
            f"the floor delivered {client.delivered} file(s), Discord got {result['delivered']} of {jobs} jobs"
        )
    figures["floor_cpu_ms_per_job"] = r(1000 * spent["cpu"] / jobs, 2)
    figures["floor_jobs_per_s"] = r(result["jobs_per_s"])
    figures["floor_discord_requests_per_job"] = r((discord1 - discord0) / jobs, 2)
    figures["floor_comfy_requests_per_job"] = r((comfy1 - comfy0) / jobs, 2)
    if isinstance(bot := figures.get("bot_cpu_ms_per_job"), float):
        figures["bot_own_cpu_ms_per_job"] = r(bot - figures["floor_cpu_ms_per_job"], 2)


def bench_settings(info: dict[str, Any], folder: Path) -> dict[str, str]:
    """The bot's environment: the fakes, room for every job the bench sends, a 500 MB output allowed."""
    return {
        "DISCORD_TOKEN": info["token"],
        "COMFYUI_URL": ",".join(info["comfy_urls"]),
        "WORKFLOWS_DIR": str(WORKFLOWS),
        "DEV_GUILD_ID": str(info["guild_id"]),
        "JOB_TIMEOUT": "600",
        "MAX_OUTPUT_MB": "600",
        "MAX_JOB_OUTPUT_MB": "600",
        "JOBS_DB": str(folder / "jobs.sqlite3"),
        "MAX_PENDING_PER_MEMBER": str(QUEUED),
        "MAX_QUEUED_JOBS": str(2 * QUEUED),
    }


@contextlib.asynccontextmanager
async def running_bot(fakes: FakesProcess, figures: dict[str, Any]) -> AsyncIterator[ComfyBot]:
    """A new bot with an empty job store, connected to the fakes; READY -> usable goes into `figures`."""
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        settings = load_settings(bench_settings(fakes.info, Path(folder)), require_token=True)
        bot = ComfyBot(settings, settle_heap=True)  # as run_bot builds it: discord.py's own guild_ready_timeout
        probe = asyncio.create_task(fakes.call("ready_to_usable", 60.0, 0.05))
        task = asyncio.create_task(bot.start(settings.discord_token or ""), name="bot")
        try:
            done, _ = await asyncio.wait({probe, task}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                raise RuntimeError(f"the bot stopped before a command was answered: {task.exception()!r}")
            ready, answered = probe.result()
            figures.setdefault("ready_to_usable_s", round(answered - ready, 3))
            await until(bot.is_ready, 30, "the bot's on_ready")
            yield bot
        finally:
            probe.cancel()
            await bot.close()
            with contextlib.suppress(Exception):
                await task


async def measure(parts: set[str], scale: float, profile: cProfile.Profile | None) -> dict[str, Any]:
    """Run bots against the fakes' process through `parts`; the figures.

    The 1,000 waiting jobs come before the load levels, whose 500 jobs in flight leave the process with
    memory that would blur their RSS (how much is `rss_mb_after_500`); they are then run to the end. The
    500 MB output gets a bot of its own.
    """
    fakes = FakesProcess(SERVERS, PNG_PADDING)
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    logged = LogCount()
    logging.getLogger().addHandler(logged)
    figures: dict[str, Any] = {}
    try:
        info = await fakes.start()
        discord.http.Route.BASE = f"{info['discord_url']}/api/v10"
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(info["discord_url"].replace("http", "ws", 1) + "/")
        if profile:
            profile.enable()
        async with running_bot(fakes, figures) as bot:
            bench = Bench(fakes, bot, figures)
            if "idle" in parts:
                await bench.idle()
            if "queued" in parts:
                await bench.queued()
            if "load" in parts:
                for in_flight, jobs in LEVELS.items():
                    await bench.level(in_flight, max(in_flight, round(jobs * scale)))
        if "floor" in parts:  # once the bot has gone: both would answer each command
            await measure_floor(fakes, figures, max(FLOOR_IN_FLIGHT, round(LEVELS[FLOOR_IN_FLIGHT] * scale)))
        if "big" in parts:
            async with running_bot(fakes, figures) as bot:
                await Bench(fakes, bot, figures).big()
    finally:
        if profile:
            profile.disable()
        await fakes.stop()
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
        logging.getLogger().removeHandler(logged)
    for (level, message), count in logged.counts.most_common():
        print(f"  bot log: {count:5d} x {level} {message[:150]}")
    figures["bot_log_warnings"] = sum(logged.counts.values())
    return figures


def report(figures: dict[str, Any]) -> None:
    """Print every goal's figure, then the other figures."""
    _, met = judge(figures)
    print(f"Benchmark on {os.cpu_count()} CPU(s); fakes in their own process:")
    width = max(len(goal.label) for goal in GOALS)
    for goal in GOALS:
        verdict = "-" if goal.key not in met else "met" if met[goal.key] else "MISSED"
        figure = shown(figures.get(goal.key), goal.unit)
        print(f"  {goal.label.ljust(width)}  {figure:>14}  goal {goal.op} {shown(goal.value, goal.unit):<10} {verdict}")
        if goal.key == "bot_cpu_ms_per_job" and "floor_cpu_ms_per_job" in figures:
            floor_ms, own = (shown(figures.get(key), "ms") for key in FLOOR_KEYS)
            print(f"    floor: a plain discord.py + aiohttp client, same load: {floor_ms}; the bot's own: {own}")
    goal_keys = {goal.key for goal in GOALS} | set(FLOOR_KEYS)
    others = {k: v for k, v in figures.items() if k not in goal_keys and not k.startswith("soak_")}
    if others:
        print("  other figures: " + ", ".join(f"{k}={v}" for k, v in others.items()))


def readme(figures: dict[str, Any], path: Path = README) -> None:
    """Rewrite the performance table in README.md from `figures`."""
    path.write_text(rewrite_readme(path.read_text(), table(figures)))
    print(f"rewrote the performance table in {path.name}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated parts to run (default: all of {', '.join(PARTS)})"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the jobs run at each load level")
    parser.add_argument("--soak-jobs", type=int, default=soak.JOBS, help=f"soak jobs (default {soak.JOBS}; 0: no soak)")
    parser.add_argument("--soak-seed", type=int, help="the soak's chaos seed (default: a random one, printed)")
    parser.add_argument("--soak-only", action="store_true", help="run only the soak (same as --parts soak)")
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's performance table from this run")
    parser.add_argument(
        "--readme-from", type=Path, metavar="FILE", help="rewrite it from a saved run's output, run nothing"
    )
    parser.add_argument("--profile", type=Path, metavar="FILE", help="cProfile the bot's side into FILE (slows it)")
    args = parser.parse_args()
    if args.readme_from:
        # The run's last JSON line: a saved CI log goes on with the tests after it
        lines = [line for line in args.readme_from.read_text().splitlines() if line.startswith("{")]
        if not lines:
            parser.error(f"{args.readme_from} holds no line of figures (the JSON line a run ends with)")
        readme(json.loads(lines[-1]))
        return
    parts = {"soak"} if args.soak_only else set(args.parts.split(","))
    if unknown := parts - set(PARTS):
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    profile = cProfile.Profile() if args.profile else None
    figures: dict[str, Any] = {}
    if parts - {"soak"}:
        figures = asyncio.run(measure(parts, args.scale, profile))
        report(figures)
    if profile:
        profile.dump_stats(args.profile)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    if "soak" in parts and args.soak_jobs > 0:
        ledger, soaked = asyncio.run(soak.soak(args.soak_jobs, seed=args.soak_seed))
        soak.report(ledger, soaked)
        figures.update(soaked)
    goals, met = judge(figures)
    figures |= {"goals": goals, "met": met}
    if args.readme:
        readme(figures)
    print(json.dumps({k: None if isinstance(v, float) and math.isnan(v) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()

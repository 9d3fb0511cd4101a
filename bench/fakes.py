"""Fake ComfyUI servers and the fake Discord in a child process, driven by the benchmark over a pipe.

As in bench/soak.py, the fakes live in a forked child so that the bench process's CPU time, RSS and
event-loop lag are the bot's alone. The child also drives the load (it plays the members sending slash
commands) and measures each job on its side:

- added latency: fake ComfyUI writes the prompt's history -> fake Discord has read the request carrying the
  job's file. Both stamps are `time.monotonic()`, CLOCK_MONOTONIC on Linux, which is system-wide, so they
  compare across processes as well as within one;
- REST requests: every HTTP request the fake Discord received (gateway frames are not requests).

Calls are `await fakes.call("method", *args)`; each runs as a task in the child, so a long call (a load
level) can overlap with others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import multiprocessing
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from tests.conftest import MODELS
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.discord_fake import FakeDiscord, Interaction, Request

SCAN_INTERVAL = 0.002  # seconds between two looks at what the fakes received
MEMBERS = 10  # the load comes from this many members, in turn
_TOKEN = re.compile(r"^/(?:webhooks/\d+|interactions/\d+)/([^/]+)/")
_TEXT = re.compile(r"bench #\d+\b")  # a job's prompt, quoted in its result: found in channel messages
_ROUTE_ID = re.compile(r"/[0-9a-f]{8}-[0-9a-f-]{27}|/[0-9a-f]{32}")  # a prompt id in a route: counted as {id}


class FakesProcess:
    """The parent's handle on the child: start it, call it, stop it."""

    def __init__(self, servers: int, padding: int) -> None:
        context = multiprocessing.get_context("fork")  # as the soak: the child needs no pickling of the fakes
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, servers, padding), name="bench-fakes", daemon=True)
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count()
        self.info: dict[str, Any] = {}

    async def start(self) -> dict[str, Any]:
        """Start the child; its fakes' addresses and the Discord token."""
        self._process.start()
        asyncio.get_running_loop().add_reader(self._conn.fileno(), self._receive)
        self.info = await self.call("info")
        return self.info

    def _receive(self) -> None:
        try:
            while self._conn.poll():
                call_id, ok, value = self._conn.recv()
                future = self._calls.pop(call_id)
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(RuntimeError(f"the fakes' process failed: {value}"))
        except EOFError:
            asyncio.get_running_loop().remove_reader(self._conn.fileno())
            for future in self._calls.values():
                future.set_exception(RuntimeError("the fakes' process exited"))
            self._calls.clear()

    async def call(self, method: str, *args: Any) -> Any:
        """Run `method` of the child's `FakeWorld` with `args` and return what it returned."""
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        self._conn.send((call_id, method, args))
        return await future

    async def stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(RuntimeError):
                await asyncio.wait_for(self.call("stop"), 10)
            await asyncio.to_thread(self._process.join, 10)
        if self._process.is_alive():
            self._process.kill()
        with contextlib.suppress(ValueError):
            asyncio.get_running_loop().remove_reader(self._conn.fileno())
        self._conn.close()


def _serve(conn: Connection, servers: int, padding: int) -> None:
    """The child process: run the fakes and answer the parent's calls until it says stop."""
    asyncio.run(FakeWorld(conn, servers, padding).serve())


@dataclass(slots=True)
class Job:
    """One slash command the child sent, and what the fakes saw of it."""

    text: str
    interaction: Interaction
    prompts: list[tuple[FakeComfyUI, str]] = field(default_factory=list)
    delivered: Request | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def latency_ms(self) -> float | None:
        """ComfyUI's finish of the job's last prompt -> its file read by Discord, in milliseconds."""
        finished = [fake.finished_at[pid] for fake, pid in self.prompts if pid in fake.finished_at]
        if self.delivered is None or not finished:
            return None
        return 1000 * (self.delivered.body_at - max(finished))


class FakeWorld:
    """The child's side: fake ComfyUI servers, one fake Discord, the members' load and its bookkeeping."""

    def __init__(self, conn: Connection, servers: int, padding: int) -> None:
        self.conn = conn
        self.comfy = [
            FakeComfyUI(models=MODELS, output_padding=padding, sampler_steps=1, profile="current")
            for _ in range(servers)
        ]
        self.discord = FakeDiscord()
        self.members = [self.discord.make_user(name=f"member{i}") for i in range(MEMBERS)]
        self.jobs: dict[str, Job] = {}  # prompt text -> job
        self.by_token: dict[str, Job] = {}
        self.comfy_requests: Counter[str] = Counter()  # requests all fake ComfyUI servers received, by route
        self._discord_seen = 0
        self._open: list[Request] = []  # Discord requests still being read
        self._serial = itertools.count()
        self._stopping = asyncio.Event()
        self._stop_reply: tuple[int, bool, Any] | None = None  # sent once the fakes have stopped

    async def serve(self) -> None:
        await asyncio.gather(self.discord.start(), *(c.start() for c in self.comfy))
        scanner = asyncio.create_task(self._scan_forever())
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()

        def receive() -> None:
            while self.conn.poll():
                call_id, method, args = self.conn.recv()
                task = asyncio.create_task(self._answer(call_id, getattr(self, method), args))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        loop.add_reader(self.conn.fileno(), receive)
        await self._stopping.wait()
        loop.remove_reader(self.conn.fileno())
        scanner.cancel()
        await asyncio.gather(self.discord.stop(), *(c.stop() for c in self.comfy))
        if self._stop_reply is not None:
            self.conn.send(self._stop_reply)

    async def _answer(self, call_id: int, method: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            reply = (call_id, True, await method(*args))
        except Exception as exc:  # the parent shows it; the child keeps serving
            reply = (call_id, False, f"{type(exc).__name__}: {exc}")
        if method.__name__ == "stop":
            self._stop_reply = reply
            return
        self.conn.send(reply)

    # ---------------------------------------------------------------- calls

    async def info(self) -> dict[str, Any]:
        return {
            "discord_url": self.discord.url,
            "token": self.discord.token,
            "guild_id": self.discord.guild_id,
            "comfy_urls": [c.url for c in self.comfy],
        }

    async def stop(self) -> None:
        self._stopping.set()

    async def cpu(self) -> float:
        """CPU seconds this child has used so far."""
        return time.process_time()

    async def requests(self) -> tuple[int, int]:
        """HTTP requests received so far: by fake Discord, by all fake ComfyUI servers."""
        self._scan()
        return len(self.discord.requests), self.comfy_requests.total()

    async def comfy_routes(self) -> dict[str, int]:
        """HTTP requests all fake ComfyUI servers received so far, by method and route (ids left out)."""
        self._scan()
        return dict(self.comfy_requests)

    async def set_padding(self, padding: int) -> None:
        for fake in self.comfy:
            fake.output_padding = padding

    async def pause(self) -> None:
        for fake in self.comfy:
            fake.pause()

    async def resume(self) -> None:
        for fake in self.comfy:
            fake.resume()

    async def ready_to_usable(self, timeout: float, probe_every: float) -> tuple[float, float]:
        """Wait for the next READY the gateway sends, then send /image every `probe_every` s until one is answered.

        Returns (READY sent, first probe's answer received), both `time.monotonic()`.
        """
        deadline = time.monotonic() + timeout
        seen = len(self.discord.gateway_log)  # a READY of an earlier bot does not count
        while not any(d == "send" and f.get("t") == "READY" for d, f in self.discord.gateway_log[seen:]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no READY within {timeout:.0f} s")
            await asyncio.sleep(0.001)
        ready = time.monotonic()
        probes: list[Interaction] = []
        while True:
            answered = [it.callback.at for it in probes if it.callback is not None and it.acknowledged]
            if answered:
                return ready, min(answered)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no command answered within {timeout:.0f} s")
            probes.append((await self._send(f"probe {len(probes)}")).interaction)
            await asyncio.sleep(probe_every)

    async def level(self, in_flight: int, jobs: int, stall: float) -> dict[str, Any]:
        """Run `jobs` /image commands keeping `in_flight` of them sent and not delivered; the figures."""
        todo = iter(range(jobs))
        sent_at: list[float] = []
        done: list[Job] = []

        async def member() -> None:
            for _ in todo:
                sent_at.append(time.monotonic())
                job = await self._send(f"bench #{next(self._serial)}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(job.done.wait(), stall)
                done.append(job)

        started = time.monotonic()
        await asyncio.gather(*(member() for _ in range(in_flight)))
        delivered = [job for job in done if job.delivered is not None]
        arrivals = sorted(job.delivered.body_at for job in delivered if job.delivered is not None)
        latencies = [ms for job in delivered if (ms := job.latency_ms()) is not None]
        for job in done:
            self._forget(job)
        return {
            "jobs": jobs,
            "delivered": len(delivered),
            "latencies_ms": latencies,
            "jobs_per_s": _steady_rate(arrivals, sent_at[-1] if sent_at else started, started),
            "seconds": (arrivals[-1] if arrivals else time.monotonic()) - started,
            "token_requests": [len(job.interaction.requests) for job in delivered],
            "expired": sum(not job.interaction.acknowledged for job in done),
        }

    async def send(self, count: int) -> list[str]:
        """Send `count` /image commands at once and return their texts (see `outcome`)."""
        return [(await self._send(f"bench #{next(self._serial)}")).text for _ in range(count)]

    async def acknowledged(self, texts: list[str]) -> int:
        """How many of these commands the bot has answered (deferred or replied)."""
        return sum(self.jobs[text].interaction.acknowledged for text in texts)

    async def outcome(self, text: str) -> dict[str, Any]:
        """What became of one command: delivered or not, its latency and the member's message."""
        self._scan()
        job = self.jobs[text]
        original = job.interaction.original or {}
        return {
            "delivered": job.delivered is not None,
            "latency_ms": job.latency_ms(),
            "content": original.get("content"),
            "attachments": [(a.get("filename"), a.get("size")) for a in original.get("attachments", [])],
            "status": [(r.method, r.status, len(r.files)) for r in job.interaction.requests],
        }

    async def forget(self, texts: list[str]) -> None:
        """Drop what the fakes keep of these jobs (files, history), so that their memory stays small."""
        for text in texts:
            self._forget(self.jobs[text])

    # ---------------------------------------------------------------- bookkeeping

    async def _send(self, text: str) -> Job:
        it = await self.discord.invoke_slash("image", {"prompt": text}, user=random.choice(self.members))
        job = Job(text, it)
        self.jobs[text] = job
        self.by_token[it.token] = job
        return job

    async def _scan_forever(self) -> None:
        while True:
            self._scan()
            await asyncio.sleep(SCAN_INTERVAL)

    def _scan(self) -> None:
        """Match what the fakes received to jobs: prompts submitted, files delivered."""
        for fake in self.comfy:
            received, fake.requests = fake.requests, []
            self.comfy_requests.update(f"{r.method} {_ROUTE_ID.sub('/{id}', r.path)}" for r in received)
            for request in received:
                body = request.json
                if request.method != "POST" or not request.path.endswith("/prompt") or not isinstance(body, dict):
                    continue
                with contextlib.suppress(KeyError, TypeError):
                    job = self.jobs.get(body["prompt"]["6"]["inputs"]["text"])
                    if job is not None:
                        job.prompts.append((fake, str(body["prompt_id"])))
        self._open.extend(self.discord.requests[self._discord_seen :])
        self._discord_seen = len(self.discord.requests)
        still_open = []
        for request in self._open:
            if request.status == 0:
                still_open.append(request)
                continue
            if not (request.files and 200 <= request.status < 300):
                continue
            # An interaction that expired before the bot's first answer gets its result in the channel.
            match = _TOKEN.match(request.path)
            found = _TEXT.search(json.dumps(request.json)) if match is None else None
            job = self.by_token.get(match.group(1)) if match else self.jobs.get(found.group()) if found else None
            if job is not None and job.delivered is None:
                job.delivered = request
                job.done.set()
        self._open = still_open

    def _forget(self, job: Job) -> None:
        for fake, prompt_id in job.prompts:
            entry = fake.history.pop(prompt_id, None) or {}
            for output in entry.get("outputs", {}).values():
                for item in itertools.chain.from_iterable(v for v in output.values() if isinstance(v, list)):
                    if isinstance(item, dict) and "filename" in item:
                        fake.files.pop((item.get("type", "output"), item.get("subfolder", ""), item["filename"]), None)
        if job.delivered is not None:
            for part in job.delivered.parts:
                part.data = b""
            # The stored attachments too; forget_files() would also empty requests still being read.
            response = job.delivered.response if isinstance(job.delivered.response, dict) else {}
            for attachment in response.get("attachments", []):
                self.discord._blobs.pop(int(attachment["id"]), None)


def _steady_rate(arrivals: list[float], last_sent: float, started: float) -> float:
    """Deliveries per second while the load was held (first delivery to last send); overall if that is short."""
    if not arrivals:
        return 0.0
    first = arrivals[0]
    window = last_sent - first
    held = [t for t in arrivals if first < t <= last_sent]
    if window >= 1.0 and len(held) >= 20:
        return len(held) / window
    return len(arrivals) / max(arrivals[-1] - started, 1e-9)

"""Several fake ComfyUI servers behind one engine: the helpers routing and failover tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from core.jobs.engine import ComfyServer, Engine
from core.workflows import Workflow
from tests.fakes.comfyui import FakeComfyUI


def prompts_received(fake: FakeComfyUI) -> int:
    return sum(1 for r in fake.requests if r.method == "POST" and r.path == "/prompt")


async def started(
    session: aiohttp.ClientSession,
    fakes: list[FakeComfyUI],
    *workflows: Workflow,
    max_jobs: int = 0,
    job_timeout: float = 20,
) -> Engine:
    """An engine on `fakes`, connected, that knows `workflows` as its commands (as the bot does after loading)."""
    engine = Engine(
        session,
        tuple(f.url for f in fakes),
        job_timeout=job_timeout,
        max_output_bytes=2**24,
        max_jobs_per_server=max_jobs,
    )
    engine.start()
    await engine.object_infos()
    engine.capabilities({w.name: w for w in workflows})
    for server in engine.servers:
        await asyncio.wait_for(server.listener.connected.wait(), 5)
    return engine


async def until(check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """Wait until `check()` holds, polling (the listener offers no event for each state)."""
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not {what} within {seconds:g} s")


async def reconnected(server: ComfyServer, before: str) -> None:
    """Wait until the listener is connected on a new connection (after the server restarted)."""
    listener = server.listener
    await until(lambda: listener.connected.is_set() and listener.client_id != before, "reconnected")

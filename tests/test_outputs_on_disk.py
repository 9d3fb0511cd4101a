"""Outputs on their way (issue 13 item 3): small ones held in memory within a budget, the rest streamed from
ComfyUI into temporary files and delivered from them; both freed after success, failure, cancel and crash."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from core.comfyui.client import ComfyClient, TooLarge
from core.errors import ComfyServerError
from core.jobs.engine import Engine
from core.jobs.store import JobStore
from core.spool import IN_MEMORY_MAX, Sink, Spool
from core.workflows import Workflow, load_workflow
from tests.conftest import ROOT
from tests.e2e_world import Start, finished
from tests.mini_comfy import PNG, MiniComfy, ok_entry
from tests.test_protocol import start_job

MB = 2**20


def files_under(folder: Path) -> list[Path]:
    """Every file below `folder` but the spool's lock files."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


@pytest.fixture
def workflow(tmp_path: Path) -> Workflow:
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "pic"}},
    }
    (tmp_path / "pic.json").write_text(json.dumps(graph))
    (tmp_path / "pic.toml").write_text('[params.prefix]\ntype = "text"\ntarget = "2.filename_prefix"\n')
    return load_workflow(tmp_path / "pic.toml")


@pytest.fixture
async def engine(mini: MiniComfy, session: aiohttp.ClientSession, tmp_path: Path) -> AsyncIterator[Engine]:
    eng = Engine(
        session, (mini.url,), job_timeout=10, max_output_bytes=MB, reconcile_interval=60, spool=Spool(tmp_path / "tmp")
    )
    eng.start()
    await eng.servers[0].listener.connected.wait()
    yield eng
    await eng.close()


def refs(*names: str) -> dict[str, Any]:
    return {"2": {"images": [{"filename": n, "subfolder": "", "type": "output"} for n in names]}}


async def finish_job(mini: MiniComfy, prompt_id: str, *names: str) -> None:
    mini.finish(prompt_id, ok_entry(refs(*names)))
    await mini.send({"type": "executing", "data": {"node": None, "prompt_id": prompt_id}})


# --- the temporary folder ---------------------------------------------------------------------------------------


async def test_files_a_killed_process_left_are_removed_on_start_and_a_live_ones_are_kept(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    root = tmp_path / "tmp"
    crash = (
        "import os, sys\nfrom pathlib import Path\nfrom core.spool import Spool\n"
        "folder = Spool(Path(sys.argv[1])).open().folder('job')\n(folder / '000.png').write_bytes(b'x' * 1000)\n"
        "print(folder, flush=True)\nos.kill(os.getpid(), 9)\n"
    )
    killed = await asyncio.create_subprocess_exec(
        sys.executable, "-c", crash, str(root), cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await killed.communicate()
    assert killed.returncode == -9
    left = Path(stdout.decode().strip())
    assert (left / "000.png").exists() and left.is_relative_to(root)
    (root / "orphan").mkdir()  # a folder without its lock file: nobody owns it
    live = Spool(root).open()  # another process's spool (its lock is held by a descriptor of its own)
    kept = live.folder("running") / "000.png"
    kept.write_bytes(b"still being delivered")

    engine = Engine(session, (), job_timeout=5, max_output_bytes=MB, spool=Spool(root))
    engine.start()
    assert not left.parent.exists() and not (root / "orphan").exists()
    assert kept.read_bytes() == b"still being delivered"
    names = {live.path.name, engine.spool.path.name}
    assert sorted(p.name for p in root.iterdir()) == sorted([*names, *(n + ".lock" for n in names)])
    await engine.close()
    live.close()
    assert list(root.iterdir()) == []


def test_the_bot_keeps_its_temporary_files_beside_the_job_store(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    engine = Engine(session, (), job_timeout=5, max_output_bytes=MB, store=JobStore(tmp_path / "db" / "jobs.sqlite3"))
    assert engine.spool.root == tmp_path / "db" / "tmp"


# --- download -------------------------------------------------------------------------------------------------


async def streaming_server(body: bytes, *, announced: bool) -> tuple[web.AppRunner, str]:
    """A /view that sends `body` in 64 KB pieces, with or without its Content-Length."""

    async def view(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        if announced:
            response.content_length = len(body)
        await response.prepare(request)
        for start in range(0, len(body), 1 << 16):
            await response.write(body[start : start + (1 << 16)])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/view", view)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


@pytest.mark.abuse
@pytest.mark.parametrize("announced", [True, False], ids=["announced", "unannounced"])
async def test_a_download_over_the_cap_writes_no_more_than_the_cap_and_leaves_no_file(
    session: aiohttp.ClientSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, announced: bool
) -> None:
    runner, url = await streaming_server(b"z" * 8 * MB, announced=announced)
    written: list[int] = []

    class CountingSink(Sink):
        def write(self, chunk: bytes) -> None:
            written.append(len(chunk))
            super().write(chunk)

    spool = Spool(tmp_path / "tmp")
    scratch = spool.scratch("job")
    sink = CountingSink(scratch, "000.png")
    try:
        with pytest.raises(TooLarge) as caught:
            await ComfyClient(session, url).download(
                {"filename": "big.png", "subfolder": "", "type": "output"}, sink, max_bytes=MB
            )
    finally:
        await runner.cleanup()
    assert (caught.value.size, caught.value.limit) == (8 * MB if announced else None, MB)
    assert sum(written) <= MB
    assert (sink.path, sink.data) == (None, None)
    assert files_under(spool.path) == []
    scratch.discard()
    assert spool.in_memory == 0


# --- every way a job ends ------------------------------------------------------------------------------------


async def test_outputs_stay_in_memory_within_the_budget_and_on_disk_past_it_until_the_result_is_discarded(
    mini: MiniComfy, engine: Engine, workflow: Workflow
) -> None:
    engine.spool.memory_budget = len(PNG) + 1000  # room for a.png, not for b.png as well
    job, prompt_id = await start_job(engine, mini, workflow)
    mini.files = {"a.png": PNG, "b.png": b"b" * 300_000}
    await finish_job(mini, prompt_id, "a.png", "b.png")
    with await asyncio.wait_for(job, 5) as result:
        a, b = result.files
        assert [(f.filename, f.size, f.read()) for f in result.files] == [
            ("a.png", len(PNG), PNG),
            ("b.png", 300_000, b"b" * 300_000),
        ]
        assert (a.data, a.path, b.data) == (PNG, None, None)
        assert files_under(engine.spool.path) == [b.path]
        assert engine.spool.in_memory == len(PNG)
    assert list(engine.spool.path.iterdir()) == []
    assert engine.spool.in_memory == 0


async def test_an_output_over_the_in_memory_size_goes_to_disk_whatever_the_budget(
    mini: MiniComfy, session: aiohttp.ClientSession, workflow: Workflow, tmp_path: Path
) -> None:
    big = b"v" * (IN_MEMORY_MAX + 1)
    engine = Engine(session, (mini.url,), job_timeout=10, max_output_bytes=16 * MB, spool=Spool(tmp_path / "tmp"))
    engine.start()
    try:
        job, prompt_id = await start_job(engine, mini, workflow)
        mini.files = {"a.mp4": big}
        await finish_job(mini, prompt_id, "a.mp4")
        with await asyncio.wait_for(job, 10) as result:
            [file] = result.files
            assert (file.data, file.size, engine.spool.in_memory) == (None, len(big), 0)
            assert file.path is not None and file.path.stat().st_size == len(big)
    finally:
        await engine.close()


async def test_a_download_that_fails_leaves_no_file(mini: MiniComfy, engine: Engine, workflow: Workflow) -> None:
    job, prompt_id = await start_job(engine, mini, workflow)
    mini.files = {"a.png": PNG}  # b.png is gone from the server: 404
    await finish_job(mini, prompt_id, "a.png", "b.png")
    with pytest.raises(ComfyServerError) as caught:
        await asyncio.wait_for(job, 5)
    assert caught.value.user_message == (
        "The ComfyUI server answered with an error, so nothing was generated. Please try again later."
    )
    assert caught.value.detail == f"{mini.url}: GET /view b.png -> 404"
    assert list(engine.spool.path.iterdir()) == []


async def test_a_job_cancelled_while_its_output_downloads_leaves_no_file(
    session: aiohttp.ClientSession, workflow: Workflow, tmp_path: Path
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def endless_view(request: web.Request) -> web.StreamResponse:
        if request.query["filename"] == "a.png":
            return web.Response(body=PNG)
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"x" * (1 << 16))
        started.set()
        await release.wait()  # the rest never comes
        return response

    mini = MiniComfy()
    mini._view = endless_view  # type: ignore[method-assign]
    await mini.start()
    engine = Engine(session, (mini.url,), job_timeout=10, max_output_bytes=MB, spool=Spool(tmp_path / "tmp"))
    engine.start()
    try:
        job, prompt_id = await start_job(engine, mini, workflow)
        await finish_job(mini, prompt_id, "a.png", "slow.png")
        await asyncio.wait_for(started.wait(), 5)

        def sizes() -> list[int]:
            return [p.stat().st_size for p in files_under(engine.spool.path)]

        # a.png (its size announced) waits in memory; slow.png (size unknown) is streamed to disk
        for _ in range(100):  # until the first piece of the second file is on disk
            if sizes() == [1 << 16]:
                break
            await asyncio.sleep(0.01)
        assert (sizes(), engine.spool.in_memory) == ([1 << 16], len(PNG))
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert list(engine.spool.path.iterdir()) == []  # the job's folder too
        assert engine.spool.in_memory == 0
    finally:
        release.set()
        await engine.close()
        await mini.stop()


# --- delivery, end to end -------------------------------------------------------------------------------------


@pytest.mark.e2e
async def test_a_20_mb_output_reaches_discord_byte_for_byte_and_its_temporary_file_is_gone(start: Start) -> None:
    world = await start(attachment_size_limit=25 * MB)
    world.comfy.output_padding = 20 * MB
    it = await world.discord.invoke_slash("image", {"prompt": "a very detailed cat"})
    message = await finished(world, it, timeout=30)
    [upload] = [r for r in it.requests if r.files]
    [sent] = upload.files
    source = world.comfy.files[("output", "", "ComfyUI_00001_.png")]
    assert len(source) > 20 * MB
    assert (sent.filename, sent.data == source) == ("ComfyUI_00001_.png", True)
    assert [a["filename"] for a in message["attachments"]] == ["ComfyUI_00001_.png"]
    spool = world.settings.jobs_db.parent / "tmp"
    assert spool.is_dir()
    # Discord has the message a moment before the bot has read Discord's answer and removed the file
    await world.discord.wait_for(lambda: files_under(spool) == [], timeout=5)


@pytest.mark.e2e
async def test_an_output_held_in_memory_and_over_the_upload_limit_is_fitted_from_a_file_then_freed(
    start: Start,
) -> None:
    world = await start(attachment_size_limit=1 * MB)
    world.comfy.output_padding = 3 * MB  # a PNG carrying a 3 MB private chunk: small enough to stay in memory
    it = await world.discord.invoke_slash("image", {"prompt": "a cat"})
    await finished(world, it, timeout=30)
    [upload] = [r for r in it.requests if r.files]
    [sent] = upload.files
    assert len(world.comfy.files[("output", "", "ComfyUI_00001_.png")]) > 3 * MB
    assert (sent.filename, sent.data[:4], len(sent.data) <= MB) == ("ComfyUI_00001_.webp", b"RIFF", True)
    spool = world.settings.jobs_db.parent / "tmp"
    await world.discord.wait_for(lambda: files_under(spool) == [] and world.bot.engine.spool.in_memory == 0, timeout=5)

"""Outputs on disk (issue 13 item 3): streamed from ComfyUI into temporary files, delivered from them, and
removed after success, failure, cancel and crash."""

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

import core.comfyui.client as client_module
from core.comfyui.client import ComfyClient, TooLarge
from core.errors import ComfyServerError
from core.jobs.engine import Engine
from core.jobs.store import JobStore
from core.spool import Spool
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
    create = client_module._create

    def counting(path: Path) -> Any:
        sink = create(path)
        real_write = sink.write

        def write(chunk: Any) -> int:
            written.append(len(chunk))
            return real_write(chunk)

        sink.write = write  # type: ignore[method-assign]
        return sink

    monkeypatch.setattr(client_module, "_create", counting)
    dest = tmp_path / "000.png"
    try:
        with pytest.raises(TooLarge) as caught:
            await ComfyClient(session, url).download(
                {"filename": "big.png", "subfolder": "", "type": "output"}, dest, max_bytes=MB
            )
    finally:
        await runner.cleanup()
    assert (caught.value.size, caught.value.limit) == (8 * MB if announced else None, MB)
    assert sum(written) <= MB
    assert not dest.exists()


# --- every way a job ends ------------------------------------------------------------------------------------


async def test_a_finished_jobs_files_stay_on_disk_until_the_result_is_discarded(
    mini: MiniComfy, engine: Engine, workflow: Workflow
) -> None:
    job, prompt_id = await start_job(engine, mini, workflow)
    mini.files = {"a.png": PNG, "b.png": b"b" * 300_000}
    await finish_job(mini, prompt_id, "a.png", "b.png")
    with await asyncio.wait_for(job, 5) as result:
        assert [(f.filename, f.size, f.read()) for f in result.files] == [
            ("a.png", len(PNG), PNG),
            ("b.png", 300_000, b"b" * 300_000),
        ]
        assert files_under(engine.spool.path) == [f.path for f in result.files]
    assert list(engine.spool.path.iterdir()) == []


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

        for _ in range(100):  # until the first piece of the second file is on disk
            if sizes() == [len(PNG), 1 << 16]:
                break
            await asyncio.sleep(0.01)
        assert sizes() == [len(PNG), 1 << 16]
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert list(engine.spool.path.iterdir()) == []  # the job's folder too
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

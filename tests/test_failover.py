"""Servers that die, come back, or all go away at once: every job ends delivered once, or with a clear message."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest

from core.errors import JobLost, JobTimeout
from core.jobs.engine import Progress
from core.workflows import load_catalog
from core.workflows.model import InputFile
from tests.conftest import MODELS, WORKFLOWS, write_blur_workflow
from tests.e2e_world import Start, finished
from tests.fakes.comfyui import FakeComfyUI, make_png
from tests.many_servers import prompts_received, started, until

IMAGE = load_catalog(WORKFLOWS).workflows["image"]


def requests_to(fake: FakeComfyUI, method: str, path: str) -> list[dict]:
    return [r.json or r.query for r in fake.requests if r.method == method and r.path == path]


async def running(progress: list[Progress]) -> None:
    """Wait until the job runs a node on its server (it has started, not only been queued)."""
    await until(lambda: any(p.node for p in progress), "running")


async def test_a_job_queued_on_a_server_that_dies_moves_to_another_and_is_delivered_once(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession
) -> None:
    a, b = fakes[1], fakes[2]
    engine = await started(session, [a, b], IMAGE)
    try:
        a.pause()  # the job waits in a's queue: it has not started there
        progress: list[Progress] = []
        job = asyncio.create_task(engine.run(IMAGE, IMAGE.resolve({"prompt": "moved cat"}), progress.append))
        await until(lambda: prompts_received(a) == 1, "submitted to the first server")
        await a.stop()
        result = await asyncio.wait_for(job, 15)
        b_name = engine.servers[1].client.name
        assert result.server == b_name
        assert len(result.files) == 1
        assert Progress(moved_to=b_name) in progress
        assert Progress(moved_to=b_name).describe() == (
            f"The ComfyUI server the job was queued on went down; it moved to {b_name}."
        )
        assert (prompts_received(a), prompts_received(b)) == (1, 1)
        assert [s.load for s in engine.servers] == [0, 0]
    finally:
        await engine.close()


async def test_a_running_job_is_resubmitted_once_elsewhere_and_cancelled_where_it_was(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession
) -> None:
    a, b = fakes[1], fakes[2]
    a.node_delay = 0.2
    engine = await started(session, [a, b], IMAGE)
    try:
        progress: list[Progress] = []
        job = asyncio.create_task(engine.run(IMAGE, IMAGE.resolve({"prompt": "restarted cat"}), progress.append))
        await running(progress)
        await a.stop()
        result = await asyncio.wait_for(job, 15)
        b_name = engine.servers[1].client.name
        assert result.server == b_name
        assert Progress(moved_to=b_name, restarted=True) in progress
        assert Progress(moved_to=b_name, restarted=True).describe() == (
            f"The ComfyUI server running the job went down; it starts again on {b_name}."
        )
        assert prompts_received(b) == 1
        # The first server was cut off, not necessarily restarted: once it answers again it is told to drop it.
        a.node_delay = 0.0
        await a.start()
        await until(lambda: {"prompt_id": result.job_id} in requests_to(a, "POST", "/interrupt"), "cancelled")
        assert {"delete": [result.job_id]} in requests_to(a, "POST", "/queue")
    finally:
        await engine.close()


async def test_a_job_that_already_moved_while_running_is_not_bounced_again(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession
) -> None:
    a, b, c = FakeComfyUI(models=fakes[1].models), fakes[1], fakes[2]
    await a.start()
    for fake in (a, b):
        fake.node_delay = 0.2
    engine = await started(session, [a, b, c], IMAGE, job_timeout=4)
    engine.servers[2].active.update(f"busy {n}" for n in range(100))  # c is the least wanted, but still free
    try:
        progress: list[Progress] = []
        job = asyncio.create_task(engine.run(IMAGE, IMAGE.resolve({"prompt": "bounced cat"}), progress.append))
        await running(progress)
        await a.stop()
        b_name = engine.servers[1].client.name
        await until(lambda: Progress(moved_to=b_name, restarted=True) in progress, "moved to b")
        progress.clear()
        await running(progress)
        await b.stop()
        with pytest.raises(JobTimeout) as caught:
            await asyncio.wait_for(job, 10)
        assert caught.value.user_message == (
            f"The ComfyUI server {b_name} went down with the job and no other server could take it "
            "within 1 minute(s), so the bot stopped waiting for it."
        )
        assert prompts_received(c) == 0  # a third run of the same job is not worth a GPU: it waited for b instead
    finally:
        await engine.close()
        await a.stop()


async def test_all_servers_down_loses_nothing_and_the_jobs_run_when_one_returns(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession
) -> None:
    a, b = fakes[1], fakes[2]
    engine = await started(session, [a, b], IMAGE, max_jobs=1, job_timeout=30)
    try:
        a.pause()
        b.pause()
        progress: dict[int, list[Progress]] = {n: [] for n in range(4)}
        jobs = [
            asyncio.create_task(engine.run(IMAGE, IMAGE.resolve({"prompt": f"cat {n}"}), progress[n].append))
            for n in range(4)
        ]
        await until(lambda: prompts_received(a) == prompts_received(b) == 1, "one job on each server")
        await a.stop()
        await b.stop()
        waiting = Progress(servers_down=True)
        await until(lambda: sum(waiting in p for p in progress.values()) == 2, "the two waiting jobs told")
        assert waiting.describe() == (
            "Every ComfyUI server that can run this is down right now; the job starts when one is back."
        )
        await asyncio.sleep(1.5)  # down for a while: nothing fails meanwhile
        assert not any(job.done() for job in jobs)
        a.resume()
        await a.start()  # one comes back (having lost its queue); b stays down
        results = await asyncio.wait_for(asyncio.gather(*jobs), 20)
        assert sorted(r.values["prompt"] for r in results) == [f"cat {n}" for n in range(4)]
        assert {r.server for r in results} == {engine.servers[0].client.name}
        assert all(len(r.files) == 1 for r in results)
    finally:
        await engine.close()


async def test_a_server_down_is_logged_once_and_gets_jobs_again_when_back(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    a, b = fakes[1], fakes[2]
    engine = await started(session, [a, b], IMAGE)
    try:
        first = engine.servers[0].listener
        await a.stop()
        await until(lambda: first.state == "down", "down")
        failures = first.last_failure
        await until(lambda: first.last_failure > failures, "a second failed attempt", seconds=5)
        results = [await engine.run(IMAGE, IMAGE.resolve({"prompt": f"cat {n}"})) for n in range(2)]
        assert {r.server for r in results} == {engine.servers[1].client.name}
        await a.start()
        # up again, and its capabilities read anew (it may have come back with other models)
        await until(lambda: first.state == "up" and not engine.servers[0].stale, "up again", seconds=40)
        down = [r.getMessage() for r in caplog.records if " is down: " in r.getMessage()]
        assert down == [
            f"ComfyUI server {a.url} is down: ClientConnectorError: Cannot connect to host {a.url[7:]} "
            f"ssl:default [Connect call failed ('127.0.0.1', {a.url.rsplit(':', 1)[1]})]"
        ]
        assert sum(" is back up after " in r.getMessage() for r in caplog.records) == 1
        a.node_delay = b.node_delay = 0.05
        spread = await asyncio.gather(*(engine.run(IMAGE, IMAGE.resolve({"prompt": f"dog {n}"})) for n in range(4)))
        assert sorted(r.server for r in spread) == sorted([s.client.name for s in engine.servers] * 2)
    finally:
        await engine.close()


async def test_the_least_loaded_counts_other_clients_prompts_on_a_server(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession
) -> None:
    a, b = fakes[1], fakes[2]
    engine = await started(session, [a, b], IMAGE)
    try:
        a.pause()
        foreign = IMAGE.render(IMAGE.resolve({"prompt": "someone else's cat"}))
        for _ in range(3):  # another client (the ComfyUI web page) queues work on the first server
            async with session.post(f"{a.url}/prompt", json={"prompt": foreign}) as resp:
                assert resp.status == 200
        await until(lambda: engine.servers[0].listener.queue_remaining == 3, "the queue heard of")
        assert [s.load for s in engine.servers] == [3, 0]
        result = await engine.run(IMAGE, IMAGE.resolve({"prompt": "ours"}))
        assert result.server == engine.servers[1].client.name
    finally:
        a.resume()
        await engine.close()


async def test_a_moved_job_takes_its_attachment_to_the_new_server(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    blur = load_catalog(write_blur_workflow(tmp_path / "workflows")).workflows["blur"]
    a, b = fakes[1], fakes[2]
    engine = await started(session, [a, b], blur)
    try:
        a.pause()
        picture = make_png(16, 16, (200, 10, 10))
        job = asyncio.create_task(engine.run(blur, blur.resolve({"picture": InputFile("red.png", picture)})))
        await until(lambda: prompts_received(a) == 1, "submitted to the first server")
        await a.stop()
        result = await asyncio.wait_for(job, 15)
        assert result.server == engine.servers[1].client.name and len(result.files) == 1
        assert b.files[("input", "discord-bot", "red.png")] == picture
        [submitted] = requests_to(b, "POST", "/prompt")
        assert submitted["prompt"]["1"]["inputs"]["image"] == "discord-bot/red.png"
        # Sticky: its file came from the server that ran it, none from the one it left
        assert requests_to(b, "GET", "/view") and not requests_to(a, "GET", "/view")
    finally:
        await engine.close()


@pytest.mark.e2e
async def test_the_member_is_told_when_the_job_moves_and_gets_it_once(start: Start) -> None:
    a, b = FakeComfyUI(models=MODELS, node_delay=0.3), FakeComfyUI(models=MODELS)
    await a.start()
    await b.start()
    try:
        world = await start(settings_env={"COMFYUI_URL": f"{a.url},{b.url}"})
        world.bot.statuses.first_delay = 0.0  # the whole job may take less: show the notice however short it is
        it = await world.discord.invoke_slash("image", {"prompt": "travelling cat"})
        await until(lambda: bool(a.queue_snapshot()[0]), "running on the first server")
        await a.stop()
        message = await finished(world, it, timeout=20)
        told = f"The ComfyUI server running the job went down; it starts again on {b.url}."
        edits = [r.json.get("content") or "" for r in world.discord.requests if r.method == "PATCH" and r.json]
        assert any(told in text for text in edits)
        assert len(message["attachments"]) == 1
        posted = [m for m in world.discord.messages.values() if m["attachments"]]
        assert len(posted) == 1  # delivered once
    finally:
        await a.stop()
        await b.stop()


async def test_a_job_forgotten_twice_in_a_queue_still_runs_but_one_lost_twice_while_running_is_reported(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession
) -> None:
    only = fakes[1]
    engine = await started(session, [only], IMAGE)
    try:
        only.pause()  # queued, never started: each restart forgets it before it ran
        progress: list[Progress] = []
        job = asyncio.create_task(engine.run(IMAGE, IMAGE.resolve({"prompt": "patient cat"}), progress.append))
        for round_ in range(1, 3):
            await until(lambda n=round_: prompts_received(only) == n, f"submission {round_}")
            await only.restart()
        only.resume()
        result = await asyncio.wait_for(job, 15)
        assert len(result.files) == 1 and progress.count(Progress(resubmitted=True)) == 2

        only.node_delay = 0.3  # now it runs each time the server goes down: twice is the end of it
        running_progress: list[Progress] = []
        job = asyncio.create_task(engine.run(IMAGE, IMAGE.resolve({"prompt": "unlucky cat"}), running_progress.append))
        for _ in range(2):
            await running(running_progress)
            running_progress.clear()
            await only.restart()
        with pytest.raises(JobLost) as caught:
            await asyncio.wait_for(job, 15)
        assert caught.value.user_message == (
            "The ComfyUI server went away 2 times while it ran this job (a restart or a crash), so the bot stopped "
            "there: a job that brings the server down would take the other jobs with it. If the server just had a "
            "bad moment, run the command again."
        )
    finally:
        await engine.close()

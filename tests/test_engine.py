"""The job path against the fake ComfyUI: submit, follow on the websocket, collect files, explain failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from core.comfyui.listener import ComfyListener
from core.errors import (
    ComfyUnreachable,
    ExecutionFailed,
    JobCancelled,
    JobInterrupted,
    JobLost,
    JobTimeout,
    PromptRejected,
)
from core.i18n import localize
from core.jobs.engine import Engine, Progress
from core.workflows import Workflow, load_catalog, load_workflow
from tests.conftest import WORKFLOWS
from tests.fakes.comfyui import FakeComfyUI

CATALOG = load_catalog(WORKFLOWS)
IMAGE, MUSIC = CATALOG.workflows["image"], CATALOG.workflows["music"]


def make_engine(session: aiohttp.ClientSession, *urls: str, job_timeout: float = 15) -> Engine:
    return Engine(session, urls, job_timeout=job_timeout, max_output_bytes=50 * 2**20, reconcile_interval=0.3)


@pytest.fixture
async def engine(comfy: FakeComfyUI, session: aiohttp.ClientSession) -> AsyncIterator[Engine]:
    eng = make_engine(session, comfy.url)
    eng.start()
    yield eng
    await eng.close()


def listener(engine: Engine) -> ComfyListener:
    return engine.servers[0].listener


def submitted(comfy: FakeComfyUI) -> list[dict]:
    return [r.json for r in comfy.requests if r.method == "POST" and r.path in ("/prompt", "/api/prompt")]


async def test_image_job_returns_the_saved_png(comfy: FakeComfyUI, engine: Engine) -> None:
    seen: list[Progress] = []
    result = await engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat", "seed": 5}), seen.append)

    [file] = result.files
    assert file.filename == "ComfyUI_00001_.png" and file.kind == "image"
    assert file.read().startswith(b"\x89PNG\r\n\x1a\n")
    assert file.read() == comfy.files[("output", "", "ComfyUI_00001_.png")]
    [body] = submitted(comfy)
    assert body["client_id"] == listener(engine).client_id
    assert body["prompt_id"] == result.job_id
    assert body["prompt"]["6"]["inputs"]["text"] == "a cat"
    assert result.values["seed"] == 5 and body["prompt"]["3"]["inputs"]["seed"] == 5
    steps = [p for p in seen if p.steps]
    assert (
        steps and steps[-1].describe() == f"Running KSampler: step {comfy.sampler_steps}/{comfy.sampler_steps} (100%)"
    )


async def test_music_job_returns_the_mp3(comfy: FakeComfyUI, engine: Engine) -> None:
    values = MUSIC.resolve({"tags": "lofi, jazz", "lyrics": "[verse]\nla la\n[chorus]\nlo lo", "duration": 30})
    result = await engine.run(MUSIC, values)

    [file] = result.files
    assert file.filename == "ComfyUI_00001_.mp3" and file.kind == "audio"
    assert file.read() == comfy.files[("output", "audio", "ComfyUI_00001_.mp3")]
    assert submitted(comfy)[0]["prompt"]["74:14"]["inputs"]["lyrics"] == "[verse]\nla la\n[chorus]\nlo lo"


async def test_missing_checkpoint_is_rejected_with_what_the_server_has(comfy: FakeComfyUI, engine: Engine) -> None:
    comfy.models = {"checkpoints": ["dreamshaper_8.safetensors"]}
    with pytest.raises(PromptRejected) as caught:
        await engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat"}))
    assert caught.value.user_message == (
        "ComfyUI refused the workflow:\n• “Load Checkpoint” (CheckpointLoaderSimple, node 4): input ckpt_name: "
        "'v1-5-pruned-emaonly-fp16.safetensors' is not available on the server. It has: dreamshaper_8.safetensors."
    )
    assert listener(engine).watches == {}


async def test_a_rejection_reads_in_japanese_with_the_servers_model_names_as_they_are(
    comfy: FakeComfyUI, engine: Engine
) -> None:
    comfy.models = {"checkpoints": ["dreamshaper_8.safetensors", "juggernaut_xl.safetensors"]}
    with pytest.raises(PromptRejected) as caught:
        await engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat"}))
    assert localize(caught.value.user_message, "ja") == (
        "ComfyUI がワークフローを受け付けませんでした：\n• 「Load Checkpoint」（CheckpointLoaderSimple、ノード 4）："
        "入力 ckpt_name：'v1-5-pruned-emaonly-fp16.safetensors' はサーバーにありません。"
        "サーバーにあるのは：dreamshaper_8.safetensors, juggernaut_xl.safetensors。"
    )


async def test_partial_acceptance_with_node_errors_is_rejected_and_removed(
    comfy: FakeComfyUI, engine: Engine, tmp_path: Path
) -> None:
    graph = json.loads((WORKFLOWS / "image.json").read_text())
    graph["10"] = {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}, "_meta": {"title": "Second save"}}
    (tmp_path / "two.json").write_text(json.dumps(graph))
    (tmp_path / "two.toml").write_text('[params.prompt]\ntype = "text"\ntarget = "6.text"\n')
    workflow = load_workflow(tmp_path / "two.toml")
    comfy.pause()

    with pytest.raises(PromptRejected) as caught:
        await engine.run(workflow, workflow.resolve({"prompt": "a cat"}))

    assert caught.value.user_message == (
        "ComfyUI refused the workflow:\n"
        "• “Second save” (SaveImage, node 10): required input filename_prefix is missing."
    )
    job_id = submitted(comfy)[0]["prompt_id"]
    # A status broadcast may also make the listener read the queue (GET); only the clean-up posts count here.
    cleanup = [(r.path, r.json) for r in comfy.requests if r.method == "POST" and r.path in ("/queue", "/interrupt")]
    assert cleanup == [("/queue", {"delete": [job_id]}), ("/interrupt", {"prompt_id": job_id})]
    running, pending = comfy.queue_snapshot()
    assert job_id not in [item[1] for item in running + pending]
    comfy.resume()


async def test_execution_error_names_the_node_and_the_exception(comfy: FakeComfyUI, engine: Engine) -> None:
    comfy.fail_nodes = {"KSampler": ("torch.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB")}
    with pytest.raises(ExecutionFailed) as caught:
        await engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat"}))
    assert caught.value.user_message == (
        "The job failed in KSampler (node 3): CUDA out of memory. Tried to allocate 2.00 GiB"
    )
    assert "torch.OutOfMemoryError" in (caught.value.detail or "")


async def wait_running(comfy: FakeComfyUI) -> str:
    await comfy.wait_for(lambda: bool(comfy.queue_snapshot()[0]))
    return comfy.queue_snapshot()[0][0][1]


async def hold_mid_run(comfy: FakeComfyUI, engine: Engine, prompt: str = "a cat") -> tuple[asyncio.Task, str]:
    """Start an /image job and hold the fake between two nodes of it; returns the job and its prompt id."""
    comfy.node_delay = 0.1
    job = asyncio.create_task(engine.run(IMAGE, IMAGE.resolve({"prompt": prompt})))
    prompt_id = await wait_running(comfy)
    comfy.pause()
    comfy.node_delay = 0.0
    return job, prompt_id


async def test_interrupted_job_says_so(comfy: FakeComfyUI, engine: Engine, session: aiohttp.ClientSession) -> None:
    job, prompt_id = await hold_mid_run(comfy, engine)
    async with session.post(f"{comfy.url}/interrupt", json={"prompt_id": prompt_id}) as resp:
        assert resp.status == 200
    comfy.resume()
    with pytest.raises(JobInterrupted) as caught:
        await job
    assert caught.value.user_message == "The job was interrupted on the ComfyUI server before it finished."


async def test_websocket_drop_mid_run_is_recovered(comfy: FakeComfyUI, engine: Engine) -> None:
    job, _ = await hold_mid_run(comfy, engine)
    await comfy.drop_websockets()
    await asyncio.sleep(0.05)
    comfy.resume()
    result = await asyncio.wait_for(job, 10)
    assert [f.filename for f in result.files] == ["ComfyUI_00001_.png"]
    await comfy.wait_for(lambda: len([r for r in comfy.requests if r.path == "/ws"]) >= 2)  # and it reconnects
    ids = [r.query.get("clientId") for r in comfy.requests if r.path == "/ws"]
    assert len(set(ids)) == len(ids) and ids[-1] == listener(engine).client_id  # a fresh clientId each time


async def test_server_restart_mid_run_resubmits_the_job_once(comfy: FakeComfyUI, engine: Engine) -> None:
    job, prompt_id = await hold_mid_run(comfy, engine)
    await comfy.restart(downtime=0.2)
    comfy.resume()
    result = await asyncio.wait_for(job, 10)
    assert [f.filename for f in result.files] == ["ComfyUI_00001_.png"]
    assert [b["prompt_id"] for b in submitted(comfy)] == [prompt_id, prompt_id]


async def test_a_job_lost_twice_is_reported(comfy: FakeComfyUI, engine: Engine) -> None:
    job, _ = await hold_mid_run(comfy, engine)
    await comfy.restart(downtime=0.1)
    comfy.node_delay = 0.1
    comfy.resume()
    await comfy.wait_for(lambda: len(submitted(comfy)) == 2 and bool(comfy.queue_snapshot()[0]))
    comfy.pause()
    await comfy.restart(downtime=0.1)
    comfy.resume()
    with pytest.raises(JobLost) as caught:
        await asyncio.wait_for(job, 10)
    assert caught.value.user_message == (
        "The ComfyUI server went away 2 times while it ran this job (a restart or a crash), so the bot stopped there: "
        "a job that brings the server down would take the other jobs with it. If the server just had a bad moment, "
        "run the command again."
    )


async def test_unreachable_server(session: aiohttp.ClientSession, unused_tcp_port: int) -> None:
    engine = make_engine(session, f"http://127.0.0.1:{unused_tcp_port}")
    engine.start()
    try:
        with pytest.raises(ComfyUnreachable) as caught:
            await engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat"}))
    finally:
        await engine.close()
    assert caught.value.user_message == (
        "The ComfyUI server is not reachable right now, so nothing was generated. Please try again in a few minutes."
    )


async def test_two_concurrent_jobs_both_finish_with_their_own_files(comfy: FakeComfyUI, engine: Engine) -> None:
    comfy.node_delay = 0.02
    first, second = await asyncio.gather(
        engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat"})),
        engine.run(MUSIC, MUSIC.resolve({"tags": "lofi", "lyrics": "[instrumental]"})),
    )
    assert [f.filename for f in first.files] == ["ComfyUI_00001_.png"]
    assert [f.filename for f in second.files] == ["ComfyUI_00001_.mp3"]
    assert first.job_id != second.job_id


async def test_queued_job_reports_its_position(comfy: FakeComfyUI, engine: Engine) -> None:
    first, _ = await hold_mid_run(comfy, engine, "one")
    seen: list[Progress] = []
    second = asyncio.create_task(engine.run(IMAGE, IMAGE.resolve({"prompt": "two"}), seen.append))
    await comfy.wait_for(lambda: any(p.position == 1 for p in seen))
    assert seen[0].describe() == "Queued: position 1 in line"
    assert localize(seen[0].describe(), "ja") == "待機中：1 番目"
    comfy.resume()
    await asyncio.gather(first, second)


@pytest.mark.parametrize("comfy_profile", ["0.3.64", "current"], indirect=True)
async def test_cached_rerun_completes_with_the_same_file(comfy: FakeComfyUI, engine: Engine) -> None:
    values = IMAGE.resolve({"prompt": "a cat", "seed": 1})
    first = await engine.run(IMAGE, values)
    again = await engine.run(IMAGE, values)
    assert [f.filename for f in again.files] == [f.filename for f in first.files] == ["ComfyUI_00001_.png"]
    assert again.files[0].read() == first.files[0].read()
    # Both runs' outputs came with their `executed` messages (the cached node's replayed): no history read
    assert [r.path for r in comfy.requests if "history" in r.path] == []


async def test_save_image_websocket_frames_become_files(comfy: FakeComfyUI, engine: Engine, tmp_path: Path) -> None:
    graph = json.loads((WORKFLOWS / "image.json").read_text())
    graph["9"] = {"class_type": "SaveImageWebsocket", "inputs": {"images": ["8", 0]}, "_meta": {"title": "Send"}}
    graph["5"]["inputs"]["batch_size"] = 2
    (tmp_path / "ws.json").write_text(json.dumps(graph))
    (tmp_path / "ws.toml").write_text('[params.prompt]\ntype = "text"\ntarget = "6.text"\n')
    workflow: Workflow = load_workflow(tmp_path / "ws.toml")
    result = await engine.run(workflow, workflow.resolve({"prompt": "a cat"}))
    assert len(result.files) == 2
    assert all(f.read().startswith(b"\x89PNG") and f.node_id == "9" for f in result.files)
    assert result.files[0].filename == f"{result.job_id[:8]}_01.png"


async def test_timeout_gives_up_and_cancels_on_the_server(comfy: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    engine = make_engine(session, comfy.url, job_timeout=0.5)
    engine.start()
    comfy.pause()
    try:
        with pytest.raises(JobTimeout) as caught:
            await engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat"}))
    finally:
        comfy.resume()
        await engine.close()
    assert caught.value.user_message == "The job did not finish within 1 minute(s), so the bot stopped waiting for it."
    assert localize(caught.value.user_message, "zh-CN") == "任务未在 1 分钟内完成，因此机器人不再等待。"
    job_id = submitted(comfy)[0]["prompt_id"]
    assert ("/interrupt", {"prompt_id": job_id}) in [(r.path, r.json) for r in comfy.requests]


async def test_server_slots_hold_back_extra_jobs_in_order_and_allow_cancelling(
    comfy: FakeComfyUI, session: aiohttp.ClientSession
) -> None:
    engine = Engine(session, (comfy.url,), job_timeout=15, max_output_bytes=2**24, max_jobs_per_server=1)
    engine.start()
    try:
        comfy.pause()
        seen: dict[str, list[str]] = {"b": [], "c": []}
        a = asyncio.create_task(engine.run(IMAGE, IMAGE.resolve({"prompt": "a"})))
        await comfy.wait_for(lambda: len(submitted(comfy)) == 1)
        b = asyncio.create_task(
            engine.run(IMAGE, IMAGE.resolve({"prompt": "b"}), lambda p: seen["b"].append(p.describe()))
        )
        await comfy.wait_for(lambda: bool(seen["b"]))
        c = asyncio.create_task(
            engine.run(IMAGE, IMAGE.resolve({"prompt": "c"}), lambda p: seen["c"].append(p.describe()))
        )
        await comfy.wait_for(lambda: bool(seen["c"]))
        assert seen["b"] == ["Waiting for a free slot: position 1 in the bot's queue"]
        assert seen["c"] == ["Waiting for a free slot: position 2 in the bot's queue"]
        assert len(submitted(comfy)) == 1  # only one job on the server at a time
        await engine.cancel(next(iter(engine.queue)))  # b gives up its place
        with pytest.raises(JobCancelled):
            await b
        await comfy.wait_for(lambda: "Waiting for a free slot: position 1 in the bot's queue" in seen["c"])
        comfy.resume()
        await asyncio.gather(a, c)
        assert [body["prompt"]["6"]["inputs"]["text"] for body in submitted(comfy)] == ["a", "c"]
    finally:
        comfy.resume()
        await engine.close()


def test_status_lines_read_in_the_members_language() -> None:
    assert localize(Progress(waiting=3).describe(), "ja") == "空きを待っています：ボットのキューの 3 番目"
    assert localize(Progress(waiting=3).describe(), "zh-CN") == "正在等待空闲槽位：机器人队列第 3 位"
    running = Progress(node="KSampler", step=5, steps=20).describe()
    assert running == "Running KSampler: step 5/20 (25%)"
    assert localize(running, "ja") == "KSampler を実行中：ステップ 5/20（25%）"
    assert localize(running, "zh-CN") == "正在运行 KSampler：第 5/20 步（25%）"
    assert localize(Progress(moved_to="gpu-2", restarted=True).describe(), "zh-CN") == (
        "运行该任务的 ComfyUI 服务器已离线；任务将在 gpu-2 上重新开始。"
    )


async def test_an_output_over_the_size_cap_is_named_in_the_members_language(
    comfy: FakeComfyUI, session: aiohttp.ClientSession
) -> None:
    engine = Engine(session, [comfy.url], job_timeout=15, max_output_bytes=2048, reconcile_interval=0.3)
    engine.start()
    try:
        result = await engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat"}))
        assert (engine.whereabouts(result.job_id), result.files) == ("being prepared or delivered", ())
    finally:
        await engine.close()
    [line] = result.skipped
    assert line == "ComfyUI_00001_.png (2.9 KB): not downloaded, larger than 2 KB (MAX_OUTPUT_MB)"
    assert localize(line, "ja") == (
        "ComfyUI_00001_.png（2.9 KB）：2 KB より大きい（MAX_OUTPUT_MB）ため、ダウンロードしていません"
    )
    assert localize(line, "zh-CN") == "ComfyUI_00001_.png（2.9 KB）：未下载，大于 2 KB（MAX_OUTPUT_MB）"

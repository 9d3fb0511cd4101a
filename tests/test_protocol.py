"""The ComfyUI protocol over real HTTP and websockets: versions, routes, messages, odd answers, output caps.

A small scripted ComfyUI (MiniComfy) runs on a real port, so every request goes through aiohttp as in
production; each test sets exactly the answers it is about.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from core.comfyui import listener as listener_module
from core.comfyui.client import ComfyClient, ServerInfo
from core.comfyui.listener import ComfyListener, Finished, Lost, Unreadable
from core.errors import ComfyServerError, ExecutionFailed, JobInterrupted, JobLost, PromptRejected, UnreadableAnswer
from core.i18n import localize
from core.jobs.engine import Engine
from core.jobs.store import JobRecord, JobState, JobStore
from core.workflows import Workflow, load_workflow
from tests.mini_comfy import PNG, MiniComfy, ok_entry


@pytest.fixture
def workflow(tmp_path: Path) -> Workflow:
    (tmp_path / "pic.json").write_text(
        json.dumps(
            {
                "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8}, "_meta": {"title": "Canvas"}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "pic"}},
            }
        )
    )
    (tmp_path / "pic.toml").write_text('[params.prefix]\ntype = "text"\ntarget = "2.filename_prefix"\n')
    return load_workflow(tmp_path / "pic.toml")


@pytest.fixture
async def engine(mini: MiniComfy, session: aiohttp.ClientSession) -> AsyncIterator[Engine]:
    eng = make_engine(session, mini)
    eng.start()
    await eng.servers[0].listener.connected.wait()
    yield eng
    await eng.close()


def make_engine(session: aiohttp.ClientSession, mini: MiniComfy, **kw: Any) -> Engine:
    kw = {"job_timeout": 10, "max_output_bytes": 2**20, "reconcile_interval": 60, **kw}
    return Engine(session, (mini.url,), **kw)


async def start_job(engine: Engine, mini: MiniComfy, workflow: Workflow) -> tuple[asyncio.Task[Any], str]:
    job = asyncio.create_task(engine.run(workflow, workflow.resolve({"prefix": "pic"})))
    await asyncio.wait_for(mini.prompted.wait(), 5)
    return job, [body for _, path, _, body in mini.requests if path == "/prompt"][-1]["prompt_id"]


def unreadable(server: str, route: str) -> str:
    return f"The ComfyUI server {server} sent an answer the bot cannot read ({route}). Please try again later."


# -- version, routes, headers ------------------------------------------------------------------------


async def test_probe_reads_the_version_and_finds_the_jobs_api(mini: MiniComfy, session: aiohttp.ClientSession) -> None:
    client = ComfyClient(session, mini.url)
    assert client.info == ServerInfo(None, False)
    assert await client.probe() == ServerInfo("0.38.1", True) == client.info
    mini.jobs_api, mini.stats = False, {"system": {"comfyui_version": "0.3.64", "os": "posix"}}
    assert await client.probe() == ServerInfo("0.3.64", False)
    mini.stats = {"system": {}}
    assert await client.probe() == ServerInfo(None, False)


async def test_the_listener_probes_on_every_connection_with_a_fresh_client_id(mini: MiniComfy, engine: Engine) -> None:
    listener = engine.servers[0].listener
    assert listener.client.info == ServerInfo("0.38.1", True)
    mini.stats = {"system": {"comfyui_version": "0.40.0"}}  # upgraded while the socket was down
    await mini.drop_sockets()
    await asyncio.wait_for(mini.wait_connections(2), 5)
    await asyncio.wait_for(listener.connected.wait(), 5)
    assert listener.client.info == ServerInfo("0.40.0", True)
    assert mini.client_ids[0] != mini.client_ids[1] == listener.client_id


async def test_no_origin_or_sec_fetch_header_is_sent(mini: MiniComfy, engine: Engine, workflow: Workflow) -> None:
    job, prompt_id = await start_job(engine, mini, workflow)
    mini.files["pic_00001.png"] = PNG
    mini.finish(
        prompt_id, ok_entry({"2": {"images": [{"filename": "pic_00001.png", "subfolder": "", "type": "output"}]}})
    )
    await mini.send({"type": "executing", "data": {"node": None, "prompt_id": prompt_id}})
    await asyncio.wait_for(job, 5)
    paths = {path for _, path, _, _ in mini.requests}
    assert {"/ws", "/system_stats", "/api/jobs", "/prompt", "/history/" + prompt_id, "/view"} <= paths
    sent = {name.lower() for _, _, headers, _ in mini.requests for name in headers}
    assert "origin" not in sent and not [h for h in sent if h.startswith("sec-fetch")]


async def test_cancel_uses_the_atomic_route_when_the_server_has_it(
    mini: MiniComfy, session: aiohttp.ClientSession
) -> None:
    client = ComfyClient(session, mini.url)
    await client.probe()
    await client.cancel("0b5c1f56-1f1e-4c55-9a5e-3c1f0c8f6a01")
    mini.jobs_api = False
    await client.probe()
    await client.cancel("0b5c1f56-1f1e-4c55-9a5e-3c1f0c8f6a01")
    assert [(p, body) for m, p, _, body in mini.requests if m == "POST"] == [
        ("/api/jobs/0b5c1f56-1f1e-4c55-9a5e-3c1f0c8f6a01/cancel", None),
        ("/queue", {"delete": ["0b5c1f56-1f1e-4c55-9a5e-3c1f0c8f6a01"]}),
        ("/interrupt", {"prompt_id": "0b5c1f56-1f1e-4c55-9a5e-3c1f0c8f6a01"}),
    ]


async def test_input_options_accept_both_combo_forms(mini: MiniComfy, session: aiohttp.ClientSession) -> None:
    client = ComfyClient(session, mini.url)
    mini.object_info = {
        "UpscaleModelLoader": {"input": {"required": {"model_name": ["COMBO", {"options": ["4x.pth"]}]}}}
    }
    assert await client.input_options("UpscaleModelLoader", "model_name") == ["4x.pth"]
    mini.object_info = {"CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["a.safetensors"], {}]}}}}
    assert await client.input_options("CheckpointLoaderSimple", "ckpt_name") == ["a.safetensors"]
    assert await client.input_options("CheckpointLoaderSimple", "other") == []


# -- messages and outcomes -----------------------------------------------------------------------------


async def test_missing_node_type_names_the_node_and_the_server_version(
    mini: MiniComfy, engine: Engine, workflow: Workflow
) -> None:
    mini.prompt_reply = (400, {
        "error": {
            "type": "missing_node_type",
            "message": "Node 'Canvas' not found. The custom node may not be installed.",
            "details": "Node ID '#1'",
            "extra_info": {"node_id": "1", "class_type": "EmptyImage", "node_title": "Canvas"},
        },
        "node_errors": {},
    })  # fmt: skip
    with pytest.raises(PromptRejected) as caught:
        await engine.run(workflow, workflow.resolve({"prefix": "pic"}))
    assert caught.value.user_message == (
        "ComfyUI refused the workflow:\n• Node 1 “Canvas” uses EmptyImage, which this server does not have: "
        "a custom node, or a core node of a newer ComfyUI than this server's 0.38.1."
    )


async def test_an_unknown_error_type_is_shown_with_its_message(
    mini: MiniComfy, engine: Engine, workflow: Workflow
) -> None:
    mini.prompt_reply = (
        400,
        {"error": {"type": "brand_new", "message": "Something new", "details": ""}, "node_errors": []},
    )
    with pytest.raises(PromptRejected) as caught:
        await engine.run(workflow, workflow.resolve({"prefix": "pic"}))
    assert caught.value.user_message == "ComfyUI refused the workflow:\n• Something new"


@pytest.mark.parametrize("end", ["execution_interrupted", "execution_error"])
async def test_an_end_message_alone_ends_the_job(mini: MiniComfy, engine: Engine, workflow: Workflow, end: str) -> None:
    job, prompt_id = await start_job(engine, mini, workflow)
    data = {"prompt_id": prompt_id, "node_id": "2", "node_type": "SaveImage", "exception_message": "disk full",
            "exception_type": "OSError", "traceback": ["line 1\n"], "executed": [], "timestamp": 1}  # fmt: skip
    mini.finish(prompt_id, ok_entry(None, ["execution_start", {}], [end, data], status="error"))
    await mini.send({"type": end, "data": data})  # no `executing` with node null follows
    with pytest.raises((JobInterrupted, ExecutionFailed)) as caught:
        await asyncio.wait_for(job, 5)
    assert caught.value.user_message == (
        "The job was interrupted on the ComfyUI server before it finished."
        if end == "execution_interrupted"
        else "The job failed in SaveImage (node 2): disk full"
    )


async def test_the_history_is_read_once_when_the_end_and_the_final_executing_both_come(
    mini: MiniComfy, engine: Engine, workflow: Workflow
) -> None:
    job, prompt_id = await start_job(engine, mini, workflow)
    mini.files = {"pic_00001.png": PNG}
    mini.finish(
        prompt_id, ok_entry({"2": {"images": [{"filename": "pic_00001.png", "subfolder": "", "type": "output"}]}})
    )
    await mini.send({"type": "execution_success", "data": {"prompt_id": prompt_id, "timestamp": 1}})
    await mini.send({"type": "executing", "data": {"node": None, "prompt_id": prompt_id}})
    result = await asyncio.wait_for(job, 5)
    await asyncio.sleep(1.2)  # past the grace after execution_success: no second read comes
    assert [f.filename for f in result.files] == ["pic_00001.png"]
    assert mini.paths("GET").count(f"/history/{prompt_id}") == 1


def executed(prompt_id: str, node: str, output: Any) -> dict[str, Any]:
    return {"type": "executed", "data": {"node": node, "display_node": node, "output": output, "prompt_id": prompt_id}}


async def test_outputs_announced_on_the_websocket_need_no_history(
    mini: MiniComfy, engine: Engine, workflow: Workflow
) -> None:
    job, prompt_id = await start_job(engine, mini, workflow)
    mini.files = {"pic_00001.png": PNG}
    pic = {"images": [{"filename": "pic_00001.png", "subfolder": "", "type": "output"}]}
    await mini.send(executed(prompt_id, "1", None))  # a cached node without output
    await mini.send(executed(prompt_id, "2", pic))
    await mini.send({"type": "execution_success", "data": {"prompt_id": prompt_id, "timestamp": 1}})
    result = await asyncio.wait_for(job, 5)  # no `executing` null, no history entry: the success is enough
    assert [(f.filename, f.read(), f.node_id) for f in result.files] == [("pic_00001.png", PNG, "2")]
    assert not [p for p in mini.paths("GET") if p.startswith("/history")]


async def test_an_unreadable_executed_message_leaves_the_outputs_to_the_history(
    mini: MiniComfy, engine: Engine, workflow: Workflow
) -> None:
    job, prompt_id = await start_job(engine, mini, workflow)
    mini.files = {"pic_00001.png": PNG}
    await mini.send(executed(prompt_id, "2", {"images": "pic_00001.png"}))  # not a list
    await mini.send({"type": "execution_success", "data": {"prompt_id": prompt_id, "timestamp": 1}})
    mini.finish(
        prompt_id, ok_entry({"2": {"images": [{"filename": "pic_00001.png", "subfolder": "", "type": "output"}]}})
    )
    await mini.send({"type": "executing", "data": {"node": None, "prompt_id": prompt_id}})
    result = await asyncio.wait_for(job, 5)
    assert [f.filename for f in result.files] == ["pic_00001.png"]
    assert mini.paths("GET").count(f"/history/{prompt_id}") == 1


async def test_outputs_heard_before_the_websocket_reconnected_leave_them_to_the_history(
    mini: MiniComfy, engine: Engine, workflow: Workflow
) -> None:
    job, prompt_id = await start_job(engine, mini, workflow)
    mini.files = {"a.png": PNG, "b.png": PNG}
    first = {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}
    await mini.send(executed(prompt_id, "2", first))
    await mini.drop_sockets()  # what came meanwhile is lost: a second output, say
    await mini.wait_connections(2)
    both = {"images": [{"filename": n, "subfolder": "", "type": "output"} for n in ("a.png", "b.png")]}
    mini.finish(prompt_id, ok_entry({"2": both}))
    await mini.send({"type": "execution_success", "data": {"prompt_id": prompt_id, "timestamp": 1}})
    await mini.send({"type": "executing", "data": {"node": None, "prompt_id": prompt_id}})
    result = await asyncio.wait_for(job, 5)
    assert [f.filename for f in result.files] == ["a.png", "b.png"]


async def test_newer_output_shapes_are_collected_as_named(mini: MiniComfy, engine: Engine, workflow: Workflow) -> None:
    job, prompt_id = await start_job(engine, mini, workflow)
    mini.files = {"clip_00001.mp4": b"video", "pic_00001.png": PNG}
    outputs = {
        "3": {"images": [{"filename": "clip_00001.mp4", "subfolder": "", "type": "output", "id": "a1",
                          "metadata": {"kind": "video", "width": 8, "height": 8, "fps": 24}}], "animated": [True]},
        "2": {"images": [{"filename": "pic_00001.png", "subfolder": "", "type": "output", "preview_id": "p",
                          "metadata": {"kind": "image", "width": 8, "height": 8}},
                         {"filename": "preview.png", "subfolder": "", "type": "temp"}]},
        "4": {"text": ["a caption"]},
        "5": {"result": ["model.glb"], "3d": [{"filename": "model.glb"}]},
    }  # fmt: skip
    mini.finish(prompt_id, ok_entry(outputs))
    await mini.send({"type": "execution_success", "data": {"prompt_id": prompt_id, "timestamp": 1}})
    result = await asyncio.wait_for(job, 5)
    assert [(f.filename, f.read(), f.node_id) for f in result.files] == [
        ("clip_00001.mp4", b"video", "3"),
        ("pic_00001.png", PNG, "2"),
    ]
    assert result.texts == ("a caption",) and result.skipped == ()


# -- jobs whose events cannot reach us -----------------------------------------------------------------


async def test_a_job_submitted_before_a_reconnect_is_followed_by_polling(
    mini: MiniComfy, engine: Engine, workflow: Workflow
) -> None:
    job, prompt_id = await start_job(engine, mini, workflow)
    await mini.drop_sockets()
    await asyncio.wait_for(mini.wait_connections(2), 5)
    await asyncio.sleep(0.3)
    mini.files["pic_00001.png"] = PNG
    # The server would send the end to the old clientId, which nobody holds any more: no frame at all.
    mini.finish(
        prompt_id, ok_entry({"2": {"images": [{"filename": "pic_00001.png", "subfolder": "", "type": "output"}]}})
    )
    result = await asyncio.wait_for(job, 5)  # reconcile_interval is 60 s: only polling can end it
    assert [f.filename for f in result.files] == ["pic_00001.png"]
    assert f"/api/jobs/{prompt_id}" in mini.paths("GET")


@pytest.mark.parametrize("jobs_api", [True, False])
async def test_a_job_of_an_earlier_run_is_polled_until_it_is_lost(
    session: aiohttp.ClientSession, tmp_path: Path, workflow: Workflow, jobs_api: bool
) -> None:
    mini = MiniComfy(jobs_api=jobs_api)
    await mini.start()
    store = await JobStore(tmp_path / "jobs.sqlite3").open()
    engine = make_engine(session, mini, store=store)
    engine.start()
    try:
        record = JobRecord(id="0b5c1f56-1f1e-4c55-9a5e-3c1f0c8f6a02", workflow="pic", values={}, server=mini.url,
                           prompt=workflow.graph, attempts=2, state=JobState.RUNNING)  # fmt: skip
        await store.add(record)
        mini.queue = {"queue_running": [[1, record.id, {}, {}, []]], "queue_pending": []}
        mini.jobs[record.id] = "in_progress"
        job = asyncio.create_task(engine.resume(record))
        await asyncio.sleep(1.5)
        assert not job.done()
        mini.queue = {"queue_running": [], "queue_pending": []}  # the server restarted
        mini.jobs.clear()
        with pytest.raises(JobLost):
            await asyncio.wait_for(job, 5)
        stored = await store.get(record.id)
        assert stored is not None and stored.state == JobState.FAILED
    finally:
        await engine.close()
        await store.close()
        await mini.stop()


# -- broken answers (issue 11) ---------------------------------------------------------------------------


@pytest.mark.abuse
async def test_bad_websocket_frames_are_skipped_and_the_socket_stays(
    mini: MiniComfy, engine: Engine, workflow: Workflow, caplog: pytest.LogCaptureFixture
) -> None:
    job, prompt_id = await start_job(engine, mini, workflow)
    caplog.set_level(logging.WARNING, "core.comfyui.listener")
    await mini.send(
        "[1, 2]",
        "not json {",
        {"type": 5},
        {"type": "progress", "data": {"prompt_id": prompt_id, "node": "2", "value": "x", "max": 5}},
        {"type": "executing", "data": {"prompt_id": prompt_id, "node": ["2"]}},
        {"type": "executing", "data": []},
        b"\x00\x00",
        struct.pack(">II", 4, 9999) + b"{}",
        struct.pack(">II", 4, 2) + b"[]",
        {"type": "progress", "data": {"prompt_id": prompt_id, "node": 2, "value": 1, "max": 5}},
    )
    mini.files["pic_00001.png"] = PNG
    mini.finish(
        prompt_id, ok_entry({"2": {"images": [{"filename": "pic_00001.png", "subfolder": "", "type": "output"}]}})
    )
    await mini.send({"type": "executing", "data": {"node": None, "prompt_id": prompt_id}})
    result = await asyncio.wait_for(job, 5)
    assert [f.filename for f in result.files] == ["pic_00001.png"]
    assert len(mini.client_ids) == 1  # never reconnected
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped a websocket frame")]
    assert len(skipped) == 9


@pytest.mark.abuse
async def test_a_malformed_history_fails_the_job_once_and_names_the_server(
    session: aiohttp.ClientSession, tmp_path: Path, workflow: Workflow
) -> None:
    mini = MiniComfy()
    await mini.start(credentials="bot:s3cret@")
    store = await JobStore(tmp_path / "jobs.sqlite3").open()
    engine = make_engine(session, mini, store=store)
    engine.start()
    try:
        job, prompt_id = await start_job(engine, mini, workflow)
        bad = {"2": {"images": [{"filename": "../../.bashrc", "subfolder": "", "type": "output"}]}}
        mini.finish(prompt_id, ok_entry(bad))
        await mini.send({"type": "executing", "data": {"node": None, "prompt_id": prompt_id}})
        with pytest.raises(UnreadableAnswer) as caught:
            await asyncio.wait_for(job, 5)
    finally:
        await engine.close()
        await store.close()
        await mini.stop()
    server = mini.url.replace("bot:s3cret@", "***@")
    assert caught.value.user_message == unreadable(server, "GET /history")
    assert "s3cret" not in caught.value.user_message + (caught.value.detail or "")
    reopened = await JobStore(tmp_path / "jobs.sqlite3").open()
    try:
        stored = await reopened.get(prompt_id)
        assert stored is not None and (stored.state, stored.error) == (JobState.FAILED, caught.value.user_message)
        # A restart only tells the member (it is ended, not yet reported); it never runs it again.
        assert [(r.id, r.state.finished) for r in await reopened.unfinished()] == [(prompt_id, True)]
    finally:
        await reopened.close()


@pytest.mark.abuse
async def test_reconciling_many_jobs_goes_past_a_bad_answer(mini: MiniComfy, session: aiohttp.ClientSession) -> None:
    client = ComfyClient(session, mini.url)
    await client.probe()
    listener = ComfyListener(client)
    ids = [f"0b5c1f56-1f1e-4c55-9a5e-3c1f0c8f6a1{i}" for i in range(4)]
    watches = [listener.watch(i, {}) for i in ids]
    for watch in watches:
        listener.submitted(watch, None)
    await asyncio.sleep(0.01)
    mini.jobs = {ids[0]: "completed", ids[1]: "completed", ids[2]: "completed"}
    mini.history = {ids[0]: {"outputs": [], "status": {}}, ids[1]: "junk", ids[2]: ok_entry()}
    listener.connected.set()  # as after a reconnect (a listener whose socket is down first wakes the socket)
    await listener.reconcile()
    events = [w.events.get_nowait() for w in watches]
    assert [type(e) for e in events] == [Unreadable, Unreadable, Finished, Lost]
    assert isinstance(events[0], Unreadable) and events[0].error.user_message == unreadable(mini.url, "GET /history")


@pytest.mark.abuse
@pytest.mark.parametrize(
    ("method", "answer", "route"),
    [
        ("upload", {"name": "../../x.png"}, "POST /upload/image"),
        ("queue", {"queue_running": [["x"]]}, "GET /queue"),
        ("object_info", {"KSampler": 3}, "GET /object_info"),
    ],
)
async def test_odd_answers_become_one_clear_message(
    mini: MiniComfy, session: aiohttp.ClientSession, method: str, answer: Any, route: str
) -> None:
    client = ComfyClient(session, mini.url)
    mini.stats = mini.upload_reply = mini.queue = mini.object_info = answer
    calls = {
        "upload": lambda: client.upload("cat.png", PNG, subfolder="discord-bot"),
        "queue": client.queue,
        "object_info": client.object_info,
    }
    with pytest.raises(UnreadableAnswer) as caught:
        await calls[method]()
    assert caught.value.user_message == unreadable(mini.url, route)
    assert localize(caught.value.user_message, "ja") == (
        f"ComfyUI サーバー {mini.url} から、ボットが読めない応答が返りました（{route}）。"
        "しばらくしてからもう一度お試しください。"
    )


@pytest.mark.abuse
async def test_odd_version_routes_leave_the_server_usable(
    mini: MiniComfy, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # A proxy or a patched server answering /system_stats and /api/jobs oddly: the version and the jobs API
    # are unknown, but the server is still checked and used (only an unreachable one is refused).
    mini.stats = ["not", "an", "object"]
    mini.object_info = {"KSampler": {"input": {"required": {}}}}
    mini.jobs_api = True

    async def broken_jobs(_: web.Request) -> web.Response:
        return web.Response(status=502, text="Bad Gateway")

    mini._jobs = broken_jobs  # type: ignore[method-assign]
    await mini.stop()
    await mini.start()
    engine = Engine(session, (mini.url,), job_timeout=5, max_output_bytes=1 << 20)
    infos, versions = await engine.object_infos()
    assert (infos, versions) == ([mini.object_info], [None])
    assert engine.servers[0].client.info == ServerInfo(None, False)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(w.startswith(f"{mini.url}: version unknown:") for w in warnings)
    assert any(w.startswith(f"{mini.url}: jobs API not used:") and "502" in w for w in warnings)


@pytest.mark.abuse
async def test_a_malformed_prompt_reply_is_reported(mini: MiniComfy, engine: Engine, workflow: Workflow) -> None:
    mini.prompt_reply = (200, {"prompt_id": "x", "number": "one", "node_errors": {}})
    with pytest.raises(UnreadableAnswer) as caught:
        await engine.run(workflow, workflow.resolve({"prefix": "pic"}))
    assert caught.value.user_message == unreadable(mini.url, "POST /prompt")


# -- output caps ------------------------------------------------------------------------------------------


def _refs(*names: str) -> dict[str, Any]:
    return {"2": {"images": [{"filename": n, "subfolder": "", "type": "output"} for n in names]}}


@pytest.mark.abuse
async def test_outputs_over_the_count_cap_are_named_not_downloaded(
    mini: MiniComfy, session: aiohttp.ClientSession, workflow: Workflow
) -> None:
    engine = make_engine(session, mini, max_outputs_per_job=2)
    engine.start()
    try:
        job, prompt_id = await start_job(engine, mini, workflow)
        names = [f"pic_{i:05d}_.png" for i in range(1, 5)]
        mini.files = dict.fromkeys(names, PNG)
        mini.finish(prompt_id, ok_entry(_refs(*names)))
        await mini.send({"type": "executing", "data": {"node": None, "prompt_id": prompt_id}})
        result = await asyncio.wait_for(job, 5)
    finally:
        await engine.close()
    assert [f.filename for f in result.files] == names[:2]
    assert result.skipped == (
        "pic_00003_.png: not downloaded, the job made more than 2 files (MAX_OUTPUTS_PER_JOB)",
        "pic_00004_.png: not downloaded, the job made more than 2 files (MAX_OUTPUTS_PER_JOB)",
    )
    assert len([p for p in mini.paths("GET") if p == "/view"]) == 2  # the others were never asked for


@pytest.mark.abuse
async def test_outputs_over_the_byte_caps_are_named_with_their_size(
    mini: MiniComfy, session: aiohttp.ClientSession, workflow: Workflow
) -> None:
    engine = make_engine(session, mini, max_output_bytes=3 * 2**20, max_job_output_bytes=5 * 2**20)
    engine.start()
    try:
        job, prompt_id = await start_job(engine, mini, workflow)
        mini.files = {"a.png": b"a" * 2 * 2**20, "huge.png": b"h" * 4 * 2**20, "b.png": b"b" * 2 * 2**20,
                      "c.png": b"c" * 2 * 2**20, "d.png": b"d" * 2**20, "e.png": b"e"}  # fmt: skip
        mini.finish(prompt_id, ok_entry(_refs("a.png", "huge.png", "b.png", "c.png", "d.png", "e.png")))
        await mini.send({"type": "executing", "data": {"node": None, "prompt_id": prompt_id}})
        result = await asyncio.wait_for(job, 5)
    finally:
        await engine.close()
    assert [f.filename for f in result.files] == ["a.png", "b.png", "d.png"]
    assert result.skipped == (
        "huge.png (4 MB): not downloaded, larger than 3 MB (MAX_OUTPUT_MB)",
        "c.png (2 MB): not downloaded, the job's files would pass 5 MB (MAX_JOB_OUTPUT_MB)",
        "e.png: not downloaded, the job's files would pass 5 MB (MAX_JOB_OUTPUT_MB)",  # full: not even asked for
    )


@pytest.mark.abuse
async def test_another_program_on_the_port_is_a_server_error_not_a_crash(session: aiohttp.ClientSession) -> None:
    async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(b"SSH-2.0-OpenSSH_8.9\r\n\r\n")  # e.g. COMFYUI_URL names the SSH port by mistake
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = ComfyClient(session, f"http://127.0.0.1:{port}")
        with pytest.raises(ComfyServerError) as caught:
            await client.queue()
        assert caught.value.user_message == (
            "The ComfyUI server answered with an error, so nothing was generated. Please try again later."
        )
        assert (caught.value.detail or "").startswith(f"http://127.0.0.1:{port}: GET /queue: not an answer of ComfyUI")
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.abuse
async def test_a_server_that_accepts_but_never_answers_counts_as_down(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener_module, "CONNECT_TIMEOUT", 0.3)
    hung: list[asyncio.StreamWriter] = []

    async def frozen(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)  # a stopped process: the kernel accepts, nobody ever answers

    server = await asyncio.start_server(frozen, "127.0.0.1", 0)
    listener = ComfyListener(ComfyClient(session, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"))
    listener.start()
    try:
        for _ in range(100):  # up to 5 s
            if listener.last_failure:
                break
            await asyncio.sleep(0.05)
        assert listener.last_failure and not listener.connected.is_set()
    finally:
        await listener.close()
        for writer in hung:
            writer.close()
        server.close()

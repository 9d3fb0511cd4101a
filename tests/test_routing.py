"""Capability routing over several fake ComfyUI servers: which server gets a job, and why none can."""

from __future__ import annotations

import asyncio
import pickle
from collections import Counter
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

import bot
import cli
from core.config import load_settings
from core.i18n import localize
from core.jobs.engine import Engine
from core.jobs.routing import MAX_REFUSAL, NoCapableServer, Verdict, refusal, verdict
from core.servers import ServerConfig
from core.workflows import Workflow, load_catalog
from core.workflows.validate import NOT_AVAILABLE_NONE
from tests.conftest import MODELS, WORKFLOWS
from tests.fakes.comfyui import FakeComfyUI
from tests.many_servers import prompts_received, reconnected, started, until

IMAGE = load_catalog(WORKFLOWS).workflows["image"]
NO_CHECKPOINT = (
    "lacks: “Load Checkpoint” (CheckpointLoaderSimple, node 4): input ckpt_name: "
    "'v1-5-pruned-emaonly-fp16.safetensors' is not available on the server (it has none)"
)


def invert_workflow(folder: Path) -> Workflow:
    """A model-free workflow that needs the ImageInvert class: EmptyImage -> ImageInvert -> SaveImage."""
    folder.mkdir(exist_ok=True)
    (folder / "invert.json").write_text(
        '{"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},'
        ' "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},'
        ' "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}}}'
    )
    (folder / "invert.toml").write_text(
        '[command]\nname = "invert"\ndescription = "An inverted square"\n'
        '[params.size]\ntype = "int"\ntarget = "1.width"\nmin = 8\nmax = 64\ndefault = 8\n'
    )
    return load_catalog(folder).workflows["invert"]


async def test_a_job_goes_only_to_the_server_that_has_its_checkpoint(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession
) -> None:
    without, with_it = fakes[0], fakes[1]
    engine = await started(session, [without, with_it], IMAGE)
    try:
        assert [s.runs for s in engine.servers] == [frozenset(), frozenset({"image"})]
        results = [await engine.run(IMAGE, IMAGE.resolve({"prompt": f"cat {n}"})) for n in range(3)]
        assert {r.server for r in results} == {engine.servers[1].client.name}
        assert (prompts_received(without), prompts_received(with_it)) == (0, 3)
    finally:
        await engine.close()


async def test_a_job_goes_only_to_the_server_that_has_its_node_class(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    invert = invert_workflow(tmp_path / "workflows")
    lacking, having = fakes[1], fakes[2]
    del lacking._object_info["ImageInvert"]  # a server without that node (an older ComfyUI, a custom build)
    engine = await started(session, [lacking, having], invert)
    try:
        results = await asyncio.gather(*(engine.run(invert, invert.resolve({})) for _ in range(4)))
        assert {r.server for r in results} == {engine.servers[1].client.name}
        assert all(r.files for r in results)
        assert (prompts_received(lacking), prompts_received(having)) == (0, 4)
    finally:
        await engine.close()


async def test_jobs_spread_over_the_capable_servers_by_load(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession
) -> None:
    for fake in fakes:
        fake.node_delay = 0.05  # jobs overlap, so each placement sees the others' load
    engine = await started(session, fakes, IMAGE, max_jobs=0)
    try:
        results = await asyncio.gather(*(engine.run(IMAGE, IMAGE.resolve({"prompt": f"cat {n}"})) for n in range(8)))
        spread = Counter(r.server for r in results)
        assert spread == {engine.servers[1].client.name: 4, engine.servers[2].client.name: 4}
        assert prompts_received(fakes[0]) == 0
        assert [s.load for s in engine.servers] == [0, 0, 0]
    finally:
        await engine.close()


async def test_each_server_holds_at_most_its_own_max_jobs(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession
) -> None:
    small, big = fakes[1], fakes[2]
    servers = (ServerConfig.from_url(small.url), replace(ServerConfig.from_url(big.url), max_jobs=3))
    engine = Engine(session, servers, job_timeout=20, max_output_bytes=2**24, max_jobs_per_server=1)
    engine.start()
    try:
        for server in engine.servers:
            await asyncio.wait_for(server.listener.connected.wait(), 5)
        small.pause()
        big.pause()
        jobs = [asyncio.create_task(engine.run(IMAGE, IMAGE.resolve({"prompt": f"cat {n}"}))) for n in range(6)]
        await until(lambda: prompts_received(small) + prompts_received(big) == 4, "four jobs placed")
        await asyncio.sleep(0.3)  # nothing more is placed while every slot is taken
        assert (prompts_received(small), prompts_received(big), len(engine.queue)) == (1, 3, 2)
        small.resume()
        big.resume()
        results = await asyncio.wait_for(asyncio.gather(*jobs), 20)
        assert len(results) == 6 and [s.load for s in engine.servers] == [0, 0]
    finally:
        await engine.close()


async def test_a_server_whose_object_info_fails_is_still_tried(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession
) -> None:
    broken = fakes[1]
    broken.http_failures = [("GET", "/object_info", 500)] * 20  # a custom node breaks /object_info
    engine = await started(session, [broken], IMAGE)
    try:
        assert engine.servers[0].problems_with(IMAGE) is None
        result = await asyncio.wait_for(engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat"})), 10)
        assert result.files and prompts_received(broken) == 1
    finally:
        await engine.close()


async def test_no_connected_server_can_run_it_names_what_each_lacks(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession
) -> None:
    without, down = fakes[0], fakes[1]
    engine = await started(session, [without, down], IMAGE)
    try:
        await down.stop()
        await until(lambda: not engine.servers[1].listener.connected.is_set(), "disconnected")
        with pytest.raises(NoCapableServer) as caught:
            await engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat"}))
        assert caught.value.user_message == (
            f"No connected ComfyUI server can run /image right now: {without.url} {NO_CHECKPOINT}; {down.url} is down."
        )
        assert prompts_received(without) == 0
        assert (engine.servers[0].load, list(engine.queue), engine.limits.queued) == (0, [], 0)
    finally:
        await engine.close()


async def test_capabilities_are_read_again_after_a_server_restarts_with_other_models(
    fakes: list[FakeComfyUI], session: aiohttp.ClientSession
) -> None:
    fake = fakes[1]
    engine = await started(session, [fake], IMAGE)
    server = engine.servers[0]
    try:
        assert (await engine.run(IMAGE, IMAGE.resolve({"prompt": "before"}))).files
        fake.models = {}
        before = server.listener.client_id
        await fake.restart()
        await reconnected(server, before)
        with pytest.raises(NoCapableServer) as caught:
            await engine.run(IMAGE, IMAGE.resolve({"prompt": "without"}))
        assert caught.value.user_message == (
            f"No connected ComfyUI server can run /image right now: {fake.url} {NO_CHECKPOINT}."
        )
        fake.models = MODELS
        before = server.listener.client_id
        await fake.restart()
        await reconnected(server, before)
        assert (await engine.run(IMAGE, IMAGE.resolve({"prompt": "after"}))).files
        assert server.runs == {"image"}
    finally:
        await engine.close()


async def test_capabilities_are_read_again_on_reload(fakes: list[FakeComfyUI], session: aiohttp.ClientSession) -> None:
    fake = fakes[0]
    engine = await started(session, [fake], IMAGE)
    try:
        assert engine.servers[0].runs == frozenset()
        fake.models = MODELS  # files added without a restart: /reload reads them (as bot.load_workflows does)
        await engine.object_infos()
        engine.capabilities({"image": IMAGE})
        assert engine.servers[0].runs == {"image"}
        assert (await engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat"}))).files
    finally:
        await engine.close()


async def test_check_prints_a_workflow_by_server_table(
    fakes: list[FakeComfyUI], capsys: pytest.CaptureFixture[str], unused_tcp_port: int
) -> None:
    without, with_it = fakes[0], fakes[1]
    down = f"http://127.0.0.1:{unused_tcp_port}"
    settings = load_settings(
        {"COMFYUI_URL": f"{without.url},{with_it.url},{down}", "WORKFLOWS_DIR": str(WORKFLOWS)}, require_token=False
    )
    code = await cli.execute(bot.parse_args(["check"]), settings)
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    table = lines[lines.index("Workflow × server:") :]
    width = len(without.url)
    no_music = (
        "lacks: “Load Checkpoint” (CheckpointLoaderSimple, node 74:40): input ckpt_name: "
        "'ace_step_v1_3.5b.safetensors' is not available on the server (it has none)"
    )
    no_wan = (
        "lacks: “Load Diffusion Model” (UNETLoader, node 1): input unet_name: "
        "'wan2.1_t2v_1.3B_fp16.safetensors' is not available on the server (it has none) (and 2 more problem(s))"
    )
    assert table == [
        "Workflow × server:",
        f"  /image         {without.url:<{width}}  {NO_CHECKPOINT}",
        f"  /image         {with_it.url:<{width}}  OK",
        f"  /image         {down:<{width}}  down",
        f"  /music         {without.url:<{width}}  {no_music}",
        f"  /music         {with_it.url:<{width}}  OK",
        f"  /music         {down:<{width}}  down",
        f"  /music_extend  {without.url:<{width}}  {no_music.replace('node 74:40', 'node 1')}",
        f"  /music_extend  {with_it.url:<{width}}  OK",
        f"  /music_extend  {down:<{width}}  down",
        f"  /upscale       {without.url:<{width}}  OK",
        f"  /upscale       {with_it.url:<{width}}  OK",
        f"  /upscale       {down:<{width}}  down",
        f"  /video         {without.url:<{width}}  {no_wan}",
        f"  /video         {with_it.url:<{width}}  OK",
        f"  /video         {down:<{width}}  down",
        "7 problem(s) found.",  # the server down, one for /image, /music and /music_extend each, three for /video
    ]


async def test_bot_py_run_sends_its_jobs_only_to_the_server_that_can_run_them(
    fakes: list[FakeComfyUI], capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    without, with_it = fakes[0], fakes[1]
    settings = load_settings(
        {"COMFYUI_URL": f"{without.url},{with_it.url}", "WORKFLOWS_DIR": str(WORKFLOWS)}, require_token=False
    )
    code = await cli.execute(bot.parse_args(["run", "image", "prompt=a cat", "--count", "3"]), settings)
    assert code == 0, capsys.readouterr().err
    assert (prompts_received(without), prompts_received(with_it)) == (0, 3)


def test_the_refusal_names_each_servers_reason_in_the_members_language() -> None:
    verdicts = [
        verdict("gpu-1", ["no ACE-Step model.", "no VAE."]),
        Verdict("gpu-2", None, connected=False),
        verdict("gpu-3", None),
    ]
    error = refusal("music", verdicts)
    assert error.user_message == (
        "No connected ComfyUI server can run /music right now: gpu-1 lacks: no ACE-Step model (and 1 more problem(s)); "
        "gpu-2 is down; gpu-3 did not answer /object_info."
    )
    assert localize(error.user_message, "ja") == (
        "現在、/music を実行できる接続中の ComfyUI サーバーはありません："
        "gpu-1：不足：no ACE-Step model（ほか 1 件の問題）、gpu-2 は停止中、gpu-3：/object_info に応答しませんでした。"
    )
    assert localize(error.user_message, "zh-CN") == (
        "目前没有已连接的 ComfyUI 服务器能运行 /music：gpu-1：缺少：no ACE-Step model（另有 1 个问题）；"
        "gpu-2 已离线；gpu-3：未响应 /object_info。"
    )


def test_a_sentence_of_the_bot_as_a_reason_loses_its_full_stop_in_every_language() -> None:
    reason = NOT_AVAILABLE_NONE.format(node="“VAE”", input="vae_name", value="'a.safetensors'")
    error = refusal("image", [verdict("gpu-1", [reason]), Verdict("gpu-2", None, connected=False)])
    assert error.user_message == (
        "No connected ComfyUI server can run /image right now: gpu-1 lacks: “VAE”: input vae_name: "
        "'a.safetensors' is not available on the server (it has none); gpu-2 is down."
    )
    stored = pickle.loads(pickle.dumps(error.user_message))  # a stored reason localizes the same
    assert (
        localize(error.user_message, "ja")
        == localize(stored, "ja")
        == (
            "現在、/image を実行できる接続中の ComfyUI サーバーはありません：gpu-1：不足：“VAE”：入力 vae_name："
            "'a.safetensors' はサーバーにありません（1 つもありません）、gpu-2 は停止中。"
        )
    )


def test_a_refusal_over_many_servers_counts_the_ones_it_cannot_name() -> None:
    verdicts = [verdict(f"gpu-{n}", ["x" * 500]) for n in range(20)]
    message = refusal("image", verdicts).user_message
    assert len(message) <= MAX_REFUSAL + 100
    assert message.endswith("; 15 more server(s).") and message.count("lacks: ") == 5
    assert localize(message, "ja").endswith("、ほか 15 台のサーバー。")

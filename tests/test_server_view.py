"""The admin view of the servers: the shared wording, `bot.py servers` and `/servers` against several fake servers."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

import bot
import cli
from core.config import load_settings
from core.i18n import localize
from core.jobs.engine import ServerStatus
from core.jobs.server_view import describe_server, duration, report
from core.workflows import load_catalog
from tests.conftest import MODELS, WORKFLOWS
from tests.e2e_world import Start, World, finished
from tests.fakes.comfyui import FakeComfyUI

TOKEN = "tok-5a4b3c2d1e"
QUERY_TOKEN = "q-77ee66dd55"
URL_PASSWORD = "pw-0f9e8d7c"
SECRETS = (TOKEN, QUERY_TOKEN, URL_PASSWORD)
ONLY_IMAGE = {"checkpoints": ["v1-5-pruned-emaonly-fp16.safetensors"]}
NO_MUSIC = (
    "cannot run /music: lacks: “Load Checkpoint” (CheckpointLoaderSimple, node 74:40): input ckpt_name: "
    "'ace_step_v1_3.5b.safetensors' is not available on the server (it has: v1-5-pruned-emaonly-fp16.safetensors)"
)
NO_MUSIC_EXTEND = (
    "cannot run /music_extend: lacks: “Load Checkpoint” (CheckpointLoaderSimple, node 1): input ckpt_name: "
    "'ace_step_v1_3.5b.safetensors' is not available on the server (it has: v1-5-pruned-emaonly-fp16.safetensors)"
)

UP = ServerStatus(
    name="home",
    state="up",
    for_seconds=200.0,
    version="0.3.64",
    queue=3,
    jobs=1,
    max_jobs=None,
    runs=("image", "music"),
    lacks=(),
    known=True,
    tags={"gpu": "4090", "room": "attic"},
    last_error=None,
)


# -- the wording -------------------------------------------------------------------------------------


def test_an_up_server_shows_version_queue_jobs_tags_and_what_it_runs() -> None:
    assert describe_server(UP, 4) == [
        "home: up 3 min",
        "  ComfyUI 0.3.64 · queue 3 · jobs 1/4 · tags gpu=4090, room=attic",
        "  runs /image, /music",
    ]


def test_a_down_server_shows_its_error_and_unknown_load_and_capabilities() -> None:
    down = replace(
        UP,
        state="down",
        for_seconds=42.9,
        version=None,
        queue=5,  # as it was before it went down
        jobs=0,
        runs=(),
        known=False,
        tags={},
        last_error="ClientConnectorError: Cannot connect to host gpu:8188",
    )
    assert describe_server(down, 2) == [
        "home: down 42 s: ClientConnectorError: Cannot connect to host gpu:8188",
        "  version unknown · queue unknown · jobs 0/2",
        "  capabilities unknown: its /object_info has not been read",
    ]


def test_a_connecting_server_and_one_back_up_show_their_last_error() -> None:
    connecting = replace(UP, state="connecting", for_seconds=3.0, last_error="websocket closed (code 1006)")
    assert describe_server(connecting, 4)[0] == "home: connecting 3 s: websocket closed (code 1006)"
    assert describe_server(replace(connecting, last_error=None), 4)[0] == "home: connecting 3 s: no answer yet"
    back = replace(UP, for_seconds=7260.0, last_error="websocket closed (code 1006)")
    assert describe_server(back, 4)[0] == "home: up 2 h 1 min (last error: websocket closed (code 1006))"


def test_what_a_server_lacks_is_listed_per_command_then_counted() -> None:
    lacking = replace(
        UP,
        runs=("image",),
        lacks=tuple((f"cmd{i}", f"“Load Checkpoint” (node 4): input ckpt_name: 'm{i}' is missing.") for i in range(6)),
    )
    assert describe_server(lacking, 0)[1:] == [
        "  ComfyUI 0.3.64 · queue 3 · jobs 1 (no limit) · tags gpu=4090, room=attic",
        "  runs /image",
        "  cannot run /cmd0: lacks: “Load Checkpoint” (node 4): input ckpt_name: 'm0' is missing",
        "  cannot run /cmd1: lacks: “Load Checkpoint” (node 4): input ckpt_name: 'm1' is missing",
        "  cannot run /cmd2: lacks: “Load Checkpoint” (node 4): input ckpt_name: 'm2' is missing",
        "  cannot run /cmd3: lacks: “Load Checkpoint” (node 4): input ckpt_name: 'm3' is missing",
        "  …and 2 more command(s) it cannot run",
    ]
    assert describe_server(replace(UP, runs=()), 4)[-1] == "  no command to check"


def test_long_texts_from_servers_and_config_are_capped_on_one_line() -> None:
    huge = replace(
        UP,
        name="h" * 300,
        state="down",
        version="9" * 100,
        last_error="Traceback:\n" + "x" * 5000,
        tags={f"k{i}": "v" * 50 for i in range(20)},
        runs=tuple(f"command-{i:02d}-with-a-long-name" for i in range(40)),
        lacks=(("video", "line one\nline two " + "y" * 2000),),
    )
    lines = describe_server(huge, 4)
    details = len("  ComfyUI ") + 40 + len(" · queue unknown · jobs 1/4 · ") + 150  # version and tags capped
    assert [len(line) for line in lines] == [100 + len(": down 3 min: ") + 200, details, 2 + 300, 2 + 250]
    assert lines[0].startswith("h" * 99 + "…: down 3 min: Traceback: xxx") and lines[0].endswith("x…")
    assert lines[1].startswith(f"  ComfyUI {'9' * 39}… · queue unknown · jobs 1/4 · tags k0={'v' * 50}, k1=")
    assert lines[-1].startswith("  cannot run /video: lacks: line one line two yyy") and lines[-1].endswith("…")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.4, "0 s"), (59.9, "59 s"), (60, "1 min"), (3599, "59 min"), (3600, "1 h"), (5400, "1 h 30 min"),
     (86400 * 2 + 3600 * 5 + 59, "2 d 5 h"), (86400 * 3, "3 d"), (-1, "0 s")],
)  # fmt: skip
def test_durations_round_down_to_their_largest_units(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


def test_the_servers_view_reads_in_japanese_and_chinese() -> None:
    lacking = replace(UP, runs=("image",), lacks=(("music", "no ACE-Step model."),), last_error="timeout")
    assert [localize(line, "ja") for line in describe_server(lacking, 4)] == [
        "home：稼働中（3 分）（最後のエラー：timeout）",
        "  ComfyUI 0.3.64 · キュー 3 · ジョブ 1/4 · タグ gpu=4090, room=attic",
        "  実行可能：/image",
        "  /music は実行不可：不足：no ACE-Step model",
    ]
    down = replace(UP, state="down", for_seconds=86400 + 7200, queue=None, version=None, known=False, tags={})
    assert [localize(line, "zh-CN") for line in describe_server(down, 0)] == [
        "home：离线（1 天 2 小时）",
        "  版本未知 · 队列未知 · 任务 1（无上限）",
        "  能力未知：尚未读取其 /object_info",
    ]
    statuses = [UP, replace(UP, name="b", state="connecting"), replace(UP, name="c", state="down")]
    assert localize(report(statuses, [4, 4, 4])[0], "zh-CN") == "ComfyUI 服务器 3 台：在线 1、连接中 1、离线 1。"
    assert localize(report([], [])[0], "ja") == "ComfyUI サーバーが設定されていません。"


def test_the_report_starts_with_a_count_by_state() -> None:
    statuses = [UP, replace(UP, name="b", state="down"), replace(UP, name="c", state="down")]
    assert report(statuses, [4, 4, 4])[0] == "3 ComfyUI server(s): 1 up, 2 down."
    assert report([], []) == ["No ComfyUI server is configured."]


# -- bot.py servers ----------------------------------------------------------------------------------


@pytest.fixture
async def two() -> AsyncIterator[tuple[FakeComfyUI, FakeComfyUI]]:
    """A server with both shipped checkpoints behind a proxy that wants a bearer token, and one without music's."""
    async with (
        FakeComfyUI(models=MODELS, required_headers={"Authorization": f"Bearer {TOKEN}"}) as big,
        FakeComfyUI(models=ONLY_IMAGE) as small,
    ):
        yield big, small


def servers_file(folder: Path, big: FakeComfyUI, small: FakeComfyUI, down_port: int | None) -> Path:
    path = folder / "servers.toml"
    text = (
        f'[servers.big]\nurl = "{big.url}"\nheaders = {{ Authorization = "Bearer ${{COMFY_TOKEN}}" }}\n'
        f'query = {{ token = "{QUERY_TOKEN}" }}\nmax_jobs = 2\ntags = {{ gpu = "4090" }}\n'
        f'[servers.small]\nurl = "{small.url}"\n'
    )
    if down_port is not None:  # nothing listens there; its URL and headers carry secrets too
        text += (
            f'[servers.gone]\nurl = "http://admin:{URL_PASSWORD}@127.0.0.1:{down_port}"\n'
            f'headers = {{ X-Proxy-Key = "{TOKEN}" }}\n'
        )
    path.write_text(text)
    return path


def settings_env(path: Path) -> dict[str, str]:
    return {"SERVERS_FILE": str(path), "WORKFLOWS_DIR": str(WORKFLOWS), "COMFY_TOKEN": TOKEN}


def normalised(text: str) -> str:
    """Durations as 'N s', and the operating system's words for a refused connection as '[refused]'."""
    text = re.sub(r"\b(up|down|connecting) \d+ s\b", r"\1 N s", text)
    return re.sub(r"ssl:default \[[^\]\n]*\]", "ssl:default [refused]", text)


def expected_lines(version: str, down_port: int, *, queue: int, jobs: int) -> list[str]:
    """What both fronts show for the servers of `servers_file`, durations normalised."""
    return [
        "3 ComfyUI server(s): 2 up, 1 down.",
        "big: up N s",
        f"  ComfyUI {version} · queue {queue} · jobs {jobs}/2 · tags gpu=4090",
        "  runs /image, /music, /music_extend, /upscale",
        "small: up N s",
        f"  ComfyUI {version} · queue 0 · jobs 0/4",
        "  runs /image, /upscale",
        f"  {NO_MUSIC}",
        f"  {NO_MUSIC_EXTEND}",
        f"gone: down N s: ClientConnectorError: Cannot connect to host 127.0.0.1:{down_port} ssl:default [refused]",
        "  version unknown · queue unknown · jobs 0/4",
        "  capabilities unknown: its /object_info has not been read",
    ]


async def test_bot_py_servers_prints_each_server_and_exits_1_when_one_is_down(
    two: tuple[FakeComfyUI, FakeComfyUI], tmp_path: Path, capsys: pytest.CaptureFixture[str], unused_tcp_port: int
) -> None:
    big, small = two
    settings = load_settings(settings_env(servers_file(tmp_path, big, small, unused_tcp_port)), require_token=False)
    code = await cli.execute(bot.parse_args(["servers"]), settings)
    out, err = capsys.readouterr()
    assert code == 1
    assert normalised(out).splitlines() == expected_lines("0.3.64", unused_tcp_port, queue=0, jobs=0)
    assert err == ""  # no traceback, no log line for the server that is down
    assert not big.refused  # the token went with every request and the websocket upgrade
    assert [s for s in SECRETS if s in out + err] == []


async def test_bot_py_servers_exits_0_when_every_server_is_up(
    two: tuple[FakeComfyUI, FakeComfyUI], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big, small = two
    settings = load_settings(settings_env(servers_file(tmp_path, big, small, None)), require_token=False)
    assert await cli.execute(bot.parse_args(["servers"]), settings) == 0
    assert capsys.readouterr().out.splitlines()[0] == "2 ComfyUI server(s): 2 up."


async def test_bot_py_servers_shows_a_server_that_refuses_the_credentials_as_down(
    two: tuple[FakeComfyUI, FakeComfyUI], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big, small = two
    env = {**settings_env(servers_file(tmp_path, big, small, None)), "COMFY_TOKEN": "tok-wrong-1234"}
    assert await cli.execute(bot.parse_args(["servers"]), load_settings(env, require_token=False)) == 1
    out = capsys.readouterr().out
    assert normalised(out).splitlines()[1] == (
        "big: down N s: 401: the server (or a proxy before it) wants credentials; set headers (e.g. Authorization) "
        "or query for this server in servers.toml"
    )
    assert "tok-wrong-1234" not in out and QUERY_TOKEN not in out


async def test_bot_py_servers_does_not_wait_long_for_a_server_that_never_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # a frozen process: the connection is accepted, nothing is ever answered
        writer.close()

    listening = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    (tmp_path / "servers.toml").write_text(f'[servers.frozen]\nurl = "http://127.0.0.1:{port}"\n')
    settings = load_settings(settings_env(tmp_path / "servers.toml"), require_token=False)
    try:
        async with asyncio.timeout(5):
            code = await cli.servers(settings, wait=0.3)
    finally:
        listening.close()
    assert code == 1
    assert normalised(capsys.readouterr().out).splitlines() == [
        "1 ComfyUI server(s): 1 connecting.",
        "frozen: connecting N s: no answer yet",
        "  version unknown · queue unknown · jobs 0/4",
        "  capabilities unknown: its /object_info has not been read",
    ]


# -- /servers ----------------------------------------------------------------------------------------


async def settled(world: World) -> None:
    """Wait until each server's websocket is up or has failed once."""
    servers = world.bot.engine.servers
    await world.discord.wait_for(lambda: all(s.listener.state != "connecting" for s in servers))


async def private_text(world: World, it) -> str:
    await world.discord.wait_for(lambda: bool(world.private_replies(it)))
    return "\n".join(world.private_replies(it))


@pytest.mark.e2e
async def test_slash_servers_shows_the_same_lines_with_a_job_in_flight(
    start: Start, tmp_path: Path, comfy_profile: str, unused_tcp_port: int
) -> None:
    async with (
        FakeComfyUI(models=MODELS, required_headers={"Authorization": f"Bearer {TOKEN}"}, profile=comfy_profile) as big,
        FakeComfyUI(models=ONLY_IMAGE, profile=comfy_profile) as small,
    ):
        path = servers_file(tmp_path, big, small, unused_tcp_port)
        world = await start(settings_env=settings_env(path))
        await settled(world)
        big.pause()  # the job waits in big's queue (both can run /image; the first configured is taken)
        job = await world.discord.invoke_slash("image", {"prompt": "a cat"})
        first = world.bot.engine.servers[0]
        await world.discord.wait_for(lambda: len(first.active) == 1 and first.listener.queue_remaining == 1)

        it = await world.discord.invoke_slash("servers")
        text = normalised(await private_text(world, it))
        expected = expected_lines(big.profile.version, unused_tcp_port, queue=1, jobs=1)
        # The same lines, markdown escaped so that Discord shows names like ace_step_v1 as they are
        assert text.splitlines() == [line.replace("_", "\\_") for line in expected]
        assert [s for s in SECRETS if s in text] == []
        sent = [r.json for r in it.requests if isinstance(r.json, dict) and "content" in r.json]
        assert sent and all(
            p["allowed_mentions"]["parse"] == [] and not p["allowed_mentions"].get("users") for p in sent
        )
        big.resume()
        await finished(world, job)


@pytest.mark.e2e
async def test_slash_servers_refuses_other_members(start: Start) -> None:
    world = await start()
    member = world.discord.make_user(name="member")
    it = await world.discord.invoke_slash("servers", user=member)
    assert await private_text(world, it) == "Only the bot's owner and members with the admin role can use /servers."


def test_a_workflow_named_servers_does_not_replace_the_admin_command(tmp_path: Path) -> None:
    shutil.copy(WORKFLOWS / "image.json", tmp_path / "servers.json")
    assert list(load_catalog(tmp_path).workflows) == ["servers-2"]

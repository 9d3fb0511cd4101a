"""`python bot.py run` and `python bot.py check` as an admin runs them, in-process against the fake ComfyUI."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
from pathlib import Path

import pytest

import bot
import cli
from core.config import Settings, load_settings
from core.errors import ComfyServerError, InvalidInput, JobLost, UnreadableAnswer
from core.jobs.engine import JobResult
from tests.conftest import VIDEO_MODELS, WORKFLOWS, write_blur_workflow
from tests.fakes.comfyui import FakeComfyUI, make_png
from tests.output_files import output_file

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
PROGRESS = re.compile(r"^\[\d+/\d+\] (Queued|Running|Waiting)")
FIXTURES = Path(__file__).parent / "fixtures" / "workflows"
RESUBMITTED = "The server lost the job (it restarted or its queue was cleared); submitting it again."


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run every command from a fresh folder, as an admin's shell would (relative --out, key=@file)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def settings_for(url: str, workflows: Path = WORKFLOWS) -> Settings:
    return load_settings({"COMFYUI_URL": url, "WORKFLOWS_DIR": str(workflows)}, require_token=False)


async def bot_py(
    capsys: pytest.CaptureFixture[str], *argv: str, url: str, workflows: Path = WORKFLOWS
) -> tuple[int, str, str]:
    """Parse `argv` as bot.py does and run the command on this event loop; return (exit code, stdout, stderr)."""
    code = await cli.execute(bot.parse_args(list(argv)), settings_for(url, workflows))
    out, err = capsys.readouterr()
    return code, out, err


def lasting(err: str) -> list[str]:
    """The stderr lines that are not progress (progress depends on timing)."""
    return [line for line in err.splitlines() if not PROGRESS.match(line)]


async def test_run_image_saves_real_files(comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    code, out, err = await bot_py(capsys, "run", "image", "prompt=a cat", "seed=11", "--out", "pics", url=comfy.url)
    assert code == 0, err
    assert out.splitlines() == ["pics/image_11_ComfyUI_00001_.png"]
    assert lasting(err) == ["[1/1] done: 1 file(s) saved."]
    saved = (in_tmp / "pics" / "image_11_ComfyUI_00001_.png").read_bytes()
    assert saved == comfy.files[("output", "", "ComfyUI_00001_.png")] and saved.startswith(b"\x89PNG")


async def test_run_music_batch_with_lyrics_from_a_file(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    (in_tmp / "lyrics.txt").write_text("[verse]\nnight drive\n[chorus]\nneon\n")
    argv = ("run", "music", "tags=city pop", "lyrics=@lyrics.txt", "--count", "2", "--out", "songs")
    code, out, err = await bot_py(capsys, *argv, url=comfy.url)
    assert code == 0, err
    paths = out.splitlines()
    assert len(paths) == 2 and all(p.endswith(".mp3") for p in paths)
    assert len({p.split("_")[1] for p in paths}) == 2  # two different random seeds
    for path in paths:
        assert (in_tmp / path).read_bytes().startswith(b"ID3")
    prompts = [r.json["prompt"] for r in comfy.requests if r.method == "POST" and r.path == "/prompt"]
    assert {p["74:14"]["inputs"]["lyrics"] for p in prompts} == {"[verse]\nnight drive\n[chorus]\nneon"}
    assert sorted(lasting(err)) == [
        "2 of 2 jobs succeeded.",
        "[1/2] done: 1 file(s) saved.",
        "[2/2] done: 1 file(s) saved.",
    ]


async def test_run_refuses_bad_input_before_submitting(comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str]) -> None:
    assert await bot_py(capsys, "run", "image", "prompt=   ", url=comfy.url) == (2, "", "prompt must not be empty.\n")
    code, _, err = await bot_py(capsys, "run", "movie", "prompt=x", url=comfy.url)
    assert (code, err) == (2, "There is no workflow 'movie'. Available: image, music, music_extend, upscale, video.\n")
    code, _, err = await bot_py(capsys, "run", "image", "prompt=x", "colour=red", url=comfy.url)
    assert (code, err) == (
        2,
        "image has no option 'colour'. Its options are: prompt, negative, seed, steps, width, height.\n",
    )
    assert not [r for r in comfy.requests if r.path == "/prompt"]


async def test_run_reports_a_rejected_workflow_and_makes_no_out_folder(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    comfy.models = {"checkpoints": []}
    code, out, err = await bot_py(capsys, "run", "image", "prompt=a cat", url=comfy.url)
    assert code == 1 and out == ""
    assert lasting(err) == [
        "[1/1] failed: ComfyUI refused the workflow:",
        "• “Load Checkpoint” (CheckpointLoaderSimple, node 4): input ckpt_name: "
        "'v1-5-pruned-emaonly-fp16.safetensors' is not available on the server. The server has none installed.",
    ]
    assert not (in_tmp / "out").exists()  # made only when a file is written


async def test_run_refuses_an_out_that_is_a_file(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    (in_tmp / "pics").write_text("not a folder")
    code, out, err = await bot_py(capsys, "run", "image", "prompt=a cat", "--out", "pics", url=comfy.url)
    assert (code, out, err) == (2, "", "--out 'pics' is a file, not a folder.\n")
    assert not [r for r in comfy.requests if r.path == "/prompt"]


def test_saving_never_overwrites_a_file(in_tmp: Path) -> None:
    (in_tmp / "out").mkdir()
    (in_tmp / "out" / "image_5_a.png").write_bytes(b"last night")
    files = (output_file(in_tmp / "tmp", "a.png", b"tonight"), output_file(in_tmp / "tmp", "b\x1b[2J.png", b"odd name"))
    result = JobResult("0" * 32, "image", {"seed": 5}, "s", files, (), 1.0)
    assert cli.save_result(result, Path("out")) == [Path("out/image_5_a_2.png"), Path("out/image_5_b_[2J.png")]
    assert (in_tmp / "out" / "image_5_a.png").read_bytes() == b"last night"
    assert (in_tmp / "out" / "image_5_a_2.png").read_bytes() == b"tonight"


async def test_an_unreachable_server_is_explained_for_the_terminal(
    capsys: pytest.CaptureFixture[str], unused_tcp_port: int
) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}"
    code, out, err = await bot_py(capsys, "run", "image", "prompt=a cat", url=url)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "[1/1] failed: The ComfyUI server is not reachable right now, so nothing was generated. Please try again "
        "in a few minutes. Check that ComfyUI is running and that COMFYUI_URL points to it. "
        f"({url}: websocket not connected)"
    ]


def test_core_messages_at_the_terminal_carry_the_servers_reason() -> None:
    assert cli.for_terminal(JobLost()) == (
        "The ComfyUI server lost this job (it restarted or its queue was cleared) before it finished. Please try again."
    )
    assert cli.for_terminal(ComfyServerError("http://gpu:8188", "GET /queue -> 500: 500 Internal\n\nServer")) == (
        "The ComfyUI server answered with an error, so nothing was generated. Please try again later. "
        "(http://gpu:8188: GET /queue -> 500: 500 Internal Server)"
    )
    assert cli.for_terminal(UnreadableAnswer("http://gpu:8188", "GET /history", "outputs: a list")) == (
        "The ComfyUI server http://gpu:8188 sent an answer the bot cannot read (GET /history). Please try again "
        "later. (http://gpu:8188: GET /history: unexpected answer: outputs: a list)"
    )
    assert cli.for_terminal(InvalidInput("prompt must not be empty.")) == "prompt must not be empty."


async def test_server_going_away_coming_back_and_the_lost_job_resubmitted(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    comfy.pause()
    run = asyncio.create_task(bot_py(capsys, "run", "image", "prompt=a cat", "seed=3", url=comfy.url))
    await comfy.wait_for(lambda: bool(comfy.queue_snapshot()[1]))
    await asyncio.sleep(0.3)  # the answer to POST /prompt reaches the client
    await comfy.restart(downtime=1.5)  # a killed server: the queued job is forgotten
    comfy.resume()
    code, out, err = await asyncio.wait_for(run, 30)
    assert code == 0, err
    assert out.splitlines() == ["out/image_3_ComfyUI_00001_.png"]
    lines = lasting(err)
    assert (
        lines[0]
        == f"ComfyUI server {comfy.url} stopped answering; its jobs move to another server or wait until it is back."
    )
    assert lines[1:] == [
        f"ComfyUI server {comfy.url} is answering again.",
        f"[1/1] {RESUBMITTED}",
        "[1/1] done: 1 file(s) saved.",
    ]
    assert len([r for r in comfy.requests if r.method == "POST" and r.path == "/prompt"]) == 2


async def test_timeout_cancels_unfinished_jobs_on_the_server(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    comfy.pause()  # nothing ever finishes
    # 4 s: long enough for both jobs to reach the server on a loaded machine (1 s once was not)
    argv = ("run", "image", "prompt=a cat", "--count", "2", "--timeout", "4")
    code, out, err = await asyncio.wait_for(bot_py(capsys, *argv, url=comfy.url), 30)
    assert (code, out) == (1, "")
    assert lasting(err) == [
        "[1/2] failed: not finished when --timeout (4 s) ran out; it was cancelled.",
        "[2/2] failed: not finished when --timeout (4 s) ran out; it was cancelled.",
        "0 of 2 jobs succeeded.",
    ]
    submitted = {r.json["prompt_id"] for r in comfy.requests if r.method == "POST" and r.path == "/prompt"}
    deleted = {i for r in comfy.requests if r.method == "POST" and r.path == "/queue" for i in r.json["delete"]}
    assert len(submitted) == 2 and deleted == submitted
    assert comfy.queue_snapshot() == ([], [])
    assert not (in_tmp / "out").exists()


async def test_timeout_says_when_the_server_did_not_confirm_the_cancel(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    comfy.pause()
    comfy.http_failures = [("POST", "/queue", 500)]  # the one job's removal from the queue fails
    argv = ("run", "image", "prompt=a cat", "--timeout", "1")
    code, out, err = await asyncio.wait_for(bot_py(capsys, *argv, url=comfy.url), 30)
    assert (code, out) == (1, "")
    assert lasting(err) == [
        "[1/1] failed: not finished when --timeout (1 s) ran out; the server did not confirm the cancel; "
        "it may still run."
    ]


async def test_progress_off_a_terminal_is_plain_lines(comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str]) -> None:
    comfy.node_delay = 0.02
    code, _, err = await bot_py(capsys, "run", "image", "prompt=a cat", url=comfy.url)
    assert code == 0, err
    assert not CONTROL.search(err)
    progress = [line for line in err.splitlines() if PROGRESS.match(line)]
    assert len(progress) == 1  # the first state at once, then at most one line per PLAIN_PROGRESS_INTERVAL


def test_plain_progress_is_throttled_and_stripped_of_control_characters() -> None:
    now = [0.0]
    stream = io.StringIO()
    terminal = cli.Terminal(stream, interval=10, clock=lambda: now[0])
    for second, text in [(0, "Queued: position 2 in line"), (1, "Queued: position 1 in line"), (11, "Running…")]:
        now[0] = second
        terminal.progress("[1/2]", text)
    terminal.progress("[2/2]", "Queued: position 1 in line")
    now[0] = 30
    terminal.progress("[1/2]", "Running \x1b[31mKSampler\r: step 2/3 (66%)")
    terminal.say("[1/2] text output: \x1b[2Jline one\nline two")
    terminal.close()
    assert stream.getvalue().splitlines() == [
        "[1/2] Queued: position 2 in line",
        "[1/2] Running…",
        "[1/2] Running \ufffd[31mKSampler\ufffd: step 2/3 (66%) (+1 more)",
        "[1/2] text output: \ufffd[2Jline one",
        "line two",
    ]


def test_progress_on_a_terminal_is_one_line_redrawn() -> None:
    stream = io.StringIO()
    terminal = cli.Terminal(stream, live=True)
    terminal.progress("[1/1]", "Queued: position 1 in line")
    terminal.progress("[1/1]", "Running…")
    terminal.say("ComfyUI server http://x stopped answering; its jobs move to another server or wait until it is back.")
    terminal.done("[1/1]")
    terminal.close()
    assert stream.getvalue() == (
        "[1/1] Queued: position 1 in line\r\x1b[K[1/1] Running…\r\x1b[K"
        "ComfyUI server http://x stopped answering; its jobs move to another server or wait until it is back.\n"
        "[1/1] Running…\r\x1b[K"
    )


@pytest.mark.parametrize("command", ["run", "check"])
def test_help_explains_the_command_and_the_exit_codes(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        bot.parse_args([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "examples:\n  bot.py " + command in text
    assert cli.EXIT_CODES in text
    if command == "check":
        assert "its ComfyUI version" in " ".join(text.split())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "image", "--count", "0"], "argument --count: must be more than 0 (got 0)"),
        (["run", "image", "--timeout", "soon"], "argument --timeout: 'soon' is not a number"),
        (["run", "image", "--timeout", "nan"], "argument --timeout: must be more than 0 (got nan)"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        bot.parse_args(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"bot.py run: error: {message}"


@pytest.mark.parametrize("token", ["your-bot-token-here", "Bot abc.def.ghi", ""])
async def test_run_and_check_ignore_discord_token(
    token: str, comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", token)
    monkeypatch.setenv("COMFYUI_URL", comfy.url)
    monkeypatch.setenv("WORKFLOWS_DIR", str(WORKFLOWS))
    monkeypatch.setattr(bot, "setup_logging", lambda level: None)  # leave pytest's logging alone
    assert await asyncio.to_thread(bot.main, ["check"]) == 0  # bot.main runs its own event loop
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "All good." and err == ""


async def test_check_names_both_missing_checkpoints(comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str]) -> None:
    comfy.models = {"checkpoints": [], **VIDEO_MODELS}
    code, out, _ = await bot_py(capsys, "check", url=comfy.url)
    assert code == 1
    assert out.splitlines() == [
        "Workflows in " + str(WORKFLOWS) + "/: 5 command(s) (/image, /music, /music_extend, /upscale, /video)",
        f"Server {comfy.url}: reachable (ComfyUI 0.3.64, 496 node classes)",
        "  /image (image.json): 1 problem(s)",
        "    - “Load Checkpoint” (CheckpointLoaderSimple, node 4): input ckpt_name: "
        "'v1-5-pruned-emaonly-fp16.safetensors' is not available on the server (it has none).",
        "  /music (music.json): 1 problem(s)",
        "    - “Load Checkpoint” (CheckpointLoaderSimple, node 74:40): input ckpt_name: "
        "'ace_step_v1_3.5b.safetensors' is not available on the server (it has none).",
        "  /music_extend (music_extend.json): 1 problem(s)",
        "    - “Load Checkpoint” (CheckpointLoaderSimple, node 1): input ckpt_name: "
        "'ace_step_v1_3.5b.safetensors' is not available on the server (it has none).",
        "  /upscale (upscale.json): OK",
        "  /video (video.json): OK",
        "3 problem(s) found.",
    ]


async def test_check_passes_when_the_server_has_everything(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await bot_py(capsys, "check", url=comfy.url)
    assert code == 0
    assert out.splitlines()[-6:] == [
        "  /image (image.json): OK",
        "  /music (music.json): OK",
        "  /music_extend (music_extend.json): OK",
        "  /upscale (upscale.json): OK",
        "  /video (video.json): OK",
        "All good.",
    ]


async def test_check_reports_an_unreachable_server(capsys: pytest.CaptureFixture[str], unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}"
    code, out, _ = await bot_py(capsys, "check", url=url)
    assert code == 1
    assert out.splitlines()[1].startswith(f"Server {url}: NOT reachable (GET /system_stats: ClientConnectorError")
    assert out.splitlines()[-1] == "1 problem(s) found."


async def test_run_uploads_an_image_file(comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    folder = write_blur_workflow(in_tmp / "workflows")
    picture = make_png(8, 8)
    (in_tmp / "holiday.png").write_bytes(picture)
    code, out, err = await bot_py(capsys, "run", "blur", "picture=holiday.png", url=comfy.url, workflows=folder)
    assert code == 0, err
    assert out.splitlines()[0].startswith("out/blur_") and out.strip().endswith("_blur_00001_.png")
    assert comfy.files[("input", "discord-bot", "holiday.png")] == picture


# The editor (UI) format, as "Save" in ComfyUI writes it: nodes and links instead of an object of nodes.
UI_WORKFLOW = {
    "last_node_id": 2,
    "last_link_id": 1,
    "nodes": [
        {"id": 1, "type": "CheckpointLoaderSimple", "widgets_values": ["v1-5-pruned-emaonly-fp16.safetensors"]},
        {"id": 2, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": 1}], "widgets_values": ["a cat"]},
    ],
    "links": [[1, 1, 1, 2, 0, "CLIP"]],
    "version": 0.4,
}


async def test_check_prints_the_options_it_detected(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    folder = in_tmp / "workflows"
    folder.mkdir()
    (folder / "portrait.json").write_text((WORKFLOWS / "image.json").read_text())
    (folder / "ui.json").write_text(json.dumps(UI_WORKFLOW))
    code, out, _ = await bot_py(capsys, "check", url=comfy.url, workflows=folder)
    lines = out.splitlines()
    assert code == 1  # the UI-format file is a problem
    assert lines[1] == (
        "  - ui.json: this is the editor (UI) format. In ComfyUI open the workflow and use Workflow > Export (API), "
        "then save that file here instead."
    )
    assert lines[2:4] == [
        "  /portrait: portrait.json has no binding file; detected options, which you can",
        "  save as portrait.toml and adjust:",
    ]
    assert '      target = "6.text"' in lines and '      target = "7.text"' in lines
    assert "  /portrait (portrait.json): OK" in lines


def write_video_workflow(folder: Path) -> Path:
    """The fixture video workflow (LoadVideo -> upscale -> SaveVideo), detected: one required `video` option."""
    folder.mkdir(exist_ok=True)
    (folder / "video.json").write_text((FIXTURES / "video.json").read_text())
    return folder


async def test_run_uploads_a_video_file(comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    comfy.models = {"upscale_models": ["2x-Missing.pth"]}
    folder = write_video_workflow(in_tmp / "workflows")
    clip = b"\x00\x00\x00\x18ftypmp42" + bytes(64)
    (in_tmp / "clip.mp4").write_bytes(clip)
    code, out, err = await bot_py(capsys, "run", "video", "video=clip.mp4", url=comfy.url, workflows=folder)
    assert code == 0, err
    [path] = out.splitlines()
    assert path.startswith("out/video_") and path.endswith("_up_00001_.mp4")
    assert comfy.files[("input", "discord-bot", "clip.mp4")] == clip
    [prompt] = [r.json["prompt"] for r in comfy.requests if r.method == "POST" and r.path == "/prompt"]
    assert prompt["1"]["inputs"]["file"] == "discord-bot/clip.mp4"


async def test_run_refuses_a_video_option_given_a_picture(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    folder = write_video_workflow(in_tmp / "workflows")
    (in_tmp / "holiday.png").write_bytes(make_png(8, 8))
    code, out, err = await bot_py(capsys, "run", "video", "video=holiday.png", url=comfy.url, workflows=folder)
    assert (code, out, err) == (
        2,
        "",
        "video must be a video file (mp4, webm, mov, mkv, avi, m4v); got 'holiday.png'.\n",
    )
    assert not [r for r in comfy.requests if r.path in ("/prompt", "/upload/image")]


async def test_run_sends_a_windows_model_path_as_the_server_spells_it(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    comfy.models = {"checkpoints": ["SD1.5/v1-5-pruned-emaonly-fp16.safetensors"]}
    folder = in_tmp / "workflows"
    folder.mkdir()
    graph = json.loads((WORKFLOWS / "image.json").read_text())
    graph["4"]["inputs"]["ckpt_name"] = "SD1.5\\v1-5-pruned-emaonly-fp16.safetensors"  # saved on Windows
    (folder / "image.json").write_text(json.dumps(graph))
    shutil.copy(WORKFLOWS / "image.toml", folder)
    code, out, err = await bot_py(capsys, "run", "image", "prompt=a cat", "seed=4", url=comfy.url, workflows=folder)
    assert (code, out.splitlines()) == (0, ["out/image_4_ComfyUI_00001_.png"]), err
    [prompt] = [r.json["prompt"] for r in comfy.requests if r.method == "POST" and r.path == "/prompt"]
    assert prompt["4"]["inputs"]["ckpt_name"] == "SD1.5/v1-5-pruned-emaonly-fp16.safetensors"


@pytest.mark.parametrize("comfy_profile", ["0.3.64", "current"], indirect=True)
async def test_check_names_the_server_version_and_a_class_it_lacks(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    folder = write_blur_workflow(in_tmp / "workflows")
    (folder / "blur.json").write_text((folder / "blur.json").read_text().replace("ImageBlur", "ImageBlurPlus"))
    version = comfy.profile.version
    code, out, _ = await bot_py(capsys, "check", url=comfy.url, workflows=folder)
    assert (code, out.splitlines()) == (
        1,
        [
            f"Workflows in {folder}/: 1 command(s) (/blur)",
            f"Server {comfy.url}: reachable (ComfyUI {version}, 496 node classes)",
            "  /blur (blur.json): 1 problem(s)",
            "    - Node 2 uses ImageBlurPlus, which this server does not have: a custom node, "
            f"or a core node of a newer ComfyUI than this server's {version}.",
            "1 problem(s) found.",
        ],
    )
    assert version == {"0.3.64": "0.3.64", "current": "0.38.1"}[comfy.profile.name]


async def test_check_says_which_commands_were_renamed(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    folder = in_tmp / "workflows"
    folder.mkdir()
    for name in ("An evening portrait, softly lit, in oil colours.json", "image.json"):
        shutil.copy(WORKFLOWS / "image.json", folder / name)
    code, out, _ = await bot_py(capsys, "check", url=comfy.url, workflows=folder)
    lines = out.splitlines()
    assert code == 0
    assert lines[:3] == [
        f"Workflows in {folder}/: 2 command(s) (/an-evening-portrait-softly-lit, /image)",
        "  note: An evening portrait, softly lit, in oil colours.json: the command is /an-evening-portrait-softly-lit "
        "(names are at most 32 characters); a binding file An evening portrait, softly lit, in oil colours.toml can "
        "choose another name.",
        "  /an-evening-portrait-softly-lit: An evening portrait, softly lit, in oil colours.json has no binding file; "
        "detected options, which you can",
    ]
    assert lines[-1] == "All good."


async def test_check_lists_every_problem_of_the_community_file(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    rules = in_tmp / "community.toml"  # found by its default name, in the current folder
    rules.write_text("[quotas]\njobs_per_day = -1\n[safety]\nblocklist_regex = ['(']\n", encoding="utf-8")
    code, out, _ = await bot_py(capsys, "check", url=comfy.url)
    assert code == 1
    lines = out.splitlines()
    assert lines[1] == "Community rules in community.toml: 2 problem(s)"
    assert lines[2:4] == [
        "  - community.toml [quotas] jobs_per_day must be a whole number >= 0, 0 for no limit (found -1)",
        "  - community.toml [safety] blocklist_regex[0] '(' is not a valid regular expression: missing ), "
        "unterminated subpattern at position 0.",
    ]
    assert lines[-1] == "2 problem(s) found."
    rules.write_text("[quotas]\njobs_per_day = 5\n", encoding="utf-8")
    code, out, _ = await bot_py(capsys, "check", url=comfy.url)
    assert (code, out.splitlines()[1]) == (0, "Community rules in community.toml: OK")

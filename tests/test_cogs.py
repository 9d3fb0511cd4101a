"""The Discord layer with light doubles: what the cog sends for a job, a form, bad input and failures.

The full path through the real discord.py client and a fake Discord comes with the end-to-end suite.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from bot import ComfyBot
from cogs.admin import Admin, describe_param
from cogs.generate import Generate
from core.config import load_settings
from core.errors import ExecutionFailed, InvalidInput
from core.jobs.engine import Engine, JobResult, OutputFile, Progress
from core.jobs.limits import Limits
from core.jobs.store import JobRecord, JobStore
from core.servers import ServerConfig
from core.spool import Spool
from core.workflows import load_catalog
from discord_ui.forms import TextForm
from discord_ui.status import JobMessage, StatusScheduler
from tests.conftest import WORKFLOWS
from tests.output_files import output_file

FIXTURES = Path(__file__).parent / "fixtures" / "workflows"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100


@dataclass
class User:
    id: int = 42
    mention: str = "<@42>"


@dataclass
class Recorder:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def add(self, name: str, kw: dict[str, Any]) -> None:
        """Record a call; allowed_mentions as the payload Discord would get, so tests can compare it."""
        mentions = kw.get("allowed_mentions")
        if isinstance(mentions, discord.AllowedMentions):
            kw = {**kw, "allowed_mentions": mentions.to_dict()}
        self.calls.append((name, kw))


NOBODY = {"parse": []}  # allowed_mentions that ping no one


class Response:
    def __init__(self, log: Recorder) -> None:
        self.log, self.done = log, False
        self.type: discord.InteractionResponseType | None = None

    def is_done(self) -> bool:
        return self.done

    async def defer(self, **kw: Any) -> None:
        self.done, self.type = True, discord.InteractionResponseType.deferred_channel_message
        self.log.calls.append(("defer", kw))

    async def send_message(self, content: str | None = None, **kw: Any) -> None:
        self.done, self.type = True, discord.InteractionResponseType.channel_message
        self.log.add("send_message", {"content": content, **kw})

    async def send_modal(self, modal: discord.ui.Modal) -> None:
        self.done = True
        self.log.calls.append(("send_modal", {"modal": modal}))


class Followup:
    def __init__(self, log: Recorder) -> None:
        self.log = log

    async def send(self, content: str | None = None, **kw: Any) -> discord.Object:
        self.log.add("followup", {"content": content, **kw})
        return discord.Object(len(self.log.calls))  # an interaction's followup returns its message (wait=True)


class Interaction:
    """Just the parts of discord.Interaction the cog and the error funnel use."""

    def __init__(self, limit: int = 10 * 2**20, age: float = 0.0) -> None:
        self.log = Recorder()
        self.user = User()
        self.created_at = discord.utils.utcnow() - dt.timedelta(seconds=age)
        self.filesize_limit = limit
        self.locale = discord.Locale.american_english
        self.response = Response(self.log)
        self.followup = Followup(self.log)
        self.command = None
        self.channel = None
        self.guild_id = 7
        self.channel_id = 8

    def is_expired(self) -> bool:
        return False

    async def original_response(self) -> Any:
        return discord.Object(1234)

    async def edit_original_response(self, **kw: Any) -> None:
        self.log.add("edit", kw)

    @property
    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        return self.log.calls


class StubEngine:
    """Reports a few progress steps, then returns a result (or raises `error`)."""

    def __init__(self, spool: Path) -> None:
        self.scratch = Spool(spool).scratch("job")  # where the result's files wait; the cog discards it once delivered
        self.folder = self.scratch.folder()
        self.files: tuple[OutputFile, ...] = (output_file(self.folder, "ComfyUI_00001_.png", PNG),)
        self.error: Exception | None = None
        self.runs: list[dict[str, Any]] = []
        self.finished: list[tuple[str, Any]] = []
        self.limits = Limits(max_pending_per_member=2)

    async def finish(self, job_id: str, state: Any, error: str | None = None, *, more_messages: Any = ()) -> None:
        self.finished.append((job_id, state))

    async def cancel(self, job_id: str) -> None:  # what the 15-minute cut-off calls; no job here lives that long
        raise AssertionError(f"job {job_id} cancelled")

    async def run(self, workflow, values, on_progress=None, *, record=None) -> JobResult:
        self.runs.append(dict(values))
        for progress in (Progress(position=2), Progress(position=1), Progress(node="KSampler", step=10, steps=20)):
            on_progress(progress)
            await asyncio.sleep(0.03)
        if self.error:
            raise self.error
        job_id = record.id if record else "abcdef12" * 4
        files, scratch = self.files, self.scratch
        return JobResult(job_id, workflow.name, dict(values), "http://comfy", files, (), 1.25, scratch=scratch)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[ComfyBot]:
    bot = ComfyBot(load_settings({"WORKFLOWS_DIR": str(WORKFLOWS), "RESULT_VIEW": "classic"}, require_token=False))
    bot.catalog = load_catalog(WORKFLOWS)
    bot.engine = StubEngine(tmp_path / "tmp")  # type: ignore[assignment]
    bot.store = await JobStore(tmp_path / "jobs.sqlite3").open()  # commands read the member's presets there
    bot.status_edit_interval = 0.0
    bot.statuses.first_delay = 0.0  # these tests read every status; the delay has its own in test_discord_ui
    yield bot
    await bot.store.close()


def test_commands_have_discord_shaped_options(bot: ComfyBot) -> None:
    cog = Generate(bot)
    cog.register()
    shapes = {
        c.name: [(o["name"], o["type"], o["required"]) for o in c.to_dict(bot.tree)["options"]] for c in cog.commands
    }
    assert shapes == {
        "image": [
            ("prompt", 3, True),
            ("negative", 3, False),
            ("seed", 4, False),
            ("steps", 4, False),
            ("width", 4, False),
            ("height", 4, False),
            ("preset", 3, False),
        ],
        "music": [
            ("tags", 3, True),
            ("lyrics", 3, False),
            ("lyrics_file", 11, False),
            ("duration", 10, False),
            ("seed", 4, False),
            ("preset", 3, False),
        ],
        "video": [
            ("prompt", 3, True),
            ("negative", 3, False),
            ("seed", 4, False),
            ("frames", 4, False),
            ("preset", 3, False),
        ],
        "music_extend": [
            ("tags", 3, True),
            ("song", 11, False),
            ("lyrics", 3, False),
            ("lyrics_file", 11, False),
            ("seconds", 4, False),
            ("seed", 4, False),
            ("preset", 3, False),
        ],
        "upscale": [("image", 11, False), ("scale", 10, False), ("preset", 3, False)],
    }
    steps = cog.commands[0].to_dict(bot.tree)["options"][3]
    assert (steps["min_value"], steps["max_value"]) == (1, 50)
    video = next(command for command in cog.commands if command.name == "video")
    frames = video.to_dict(bot.tree)["options"][3]
    assert (frames["name"], frames["min_value"], frames["max_value"]) == ("frames", 17, 81)


async def test_image_defers_shows_progress_and_posts_files_with_parameters(bot: ComfyBot) -> None:
    cog = Generate(bot)
    it = Interaction()
    await cog.invoke(it, bot.catalog.workflows["image"], {"prompt": "a cat", "seed": 7}, {})  # type: ignore[arg-type]

    assert it.calls[0] == ("defer", {"thinking": True})
    edits = [kw for name, kw in it.calls if name == "edit"]
    progress = [e["content"].splitlines()[1] for e in edits if "attachments" not in e]
    assert progress == [
        "Queued: position 2 in line",
        "Queued: position 1 in line",
        "Running KSampler: step 10/20 (50%)",
    ]
    final = edits[-1]
    assert [f.filename for f in final["attachments"]] == ["ComfyUI_00001_.png"]
    assert final["content"].splitlines()[:3] == [
        "**/image** for <@42> · 1.2 s",
        "**prompt:** a cat",
        "**negative:** text, watermark",
    ]
    assert "**seed:** 7" in final["content"]


async def test_the_result_files_are_removed_once_delivered(bot: ComfyBot) -> None:
    folder = bot.engine.folder  # type: ignore[attr-defined]
    assert [p.name for p in folder.iterdir()] == ["000.out"]
    it = Interaction()
    await Generate(bot).invoke(it, bot.catalog.workflows["image"], {"prompt": "a cat"}, {})  # type: ignore[arg-type]
    assert [f.filename for f in it.calls[-1][1]["attachments"]] == ["ComfyUI_00001_.png"]
    assert not folder.exists()


async def test_the_result_files_are_removed_when_delivery_fails(bot: ComfyBot) -> None:
    folder = bot.engine.folder  # type: ignore[attr-defined]
    it = Interaction()
    forbidden = SimpleNamespace(status=403, reason="Forbidden")
    refused = discord.HTTPException(forbidden, {"message": "Missing Permissions", "code": 50013})  # type: ignore[arg-type]

    async def edit(**kw: Any) -> None:
        if "attachments" in kw:  # the result itself
            raise refused
        it.log.add("edit", kw)

    it.edit_original_response = edit  # type: ignore[method-assign]
    with pytest.raises(discord.HTTPException) as caught:
        await Generate(bot).invoke(it, bot.catalog.workflows["image"], {"prompt": "a cat"}, {})  # type: ignore[arg-type]
    assert caught.value is refused
    assert not folder.exists()


async def test_status_edits_are_throttled(bot: ComfyBot, monkeypatch: pytest.MonkeyPatch) -> None:
    bot.status_edit_interval = 10.0
    it = Interaction()
    await Generate(bot).invoke(it, bot.catalog.workflows["image"], {"prompt": "a cat"}, {})  # type: ignore[arg-type]
    progress_edits = [kw for name, kw in it.calls if name == "edit" and "attachments" not in kw]
    assert len(progress_edits) == 1  # four states within 10 s: only the first went out, then the result


async def test_music_without_lyrics_opens_a_form_and_runs_on_submit(bot: ComfyBot) -> None:
    cog = Generate(bot)
    it = Interaction()
    await cog.invoke(it, bot.catalog.workflows["music"], {"tags": "lofi"}, {})  # type: ignore[arg-type]
    [(name, kw)] = it.calls
    assert name == "send_modal"
    form: TextForm = kw["modal"]
    assert form.title == "/music"
    assert form.inputs["lyrics"].default == "[instrumental]"
    assert form.inputs["lyrics"].style is discord.TextStyle.paragraph

    form.inputs["lyrics"]._value = "[verse]\nline one\nline two"  # what the member typed
    submit = Interaction()
    await form.on_submit(submit)  # type: ignore[arg-type]
    assert bot.engine.runs[-1]["lyrics"] == "[verse]\nline one\nline two"  # type: ignore[attr-defined]
    assert bot.engine.runs[-1]["tags"] == "lofi"  # type: ignore[attr-defined]
    assert submit.calls[0] == ("defer", {"thinking": True})


async def test_lyrics_file_is_read_instead_of_a_form(bot: ComfyBot) -> None:
    class Attachment:
        size = 20

        async def read(self) -> bytes:
            return b"[verse]\nhello\n"

    it = Interaction()
    await Generate(bot).invoke(it, bot.catalog.workflows["music"], {"tags": "lofi"}, {"lyrics": Attachment()})  # type: ignore[arg-type, dict-item]
    assert it.calls[0][0] == "defer"
    assert bot.engine.runs[-1]["lyrics"] == "[verse]\nhello"  # type: ignore[attr-defined]


async def test_bad_input_is_refused_before_anything_is_sent(bot: ComfyBot) -> None:
    it = Interaction()
    with pytest.raises(InvalidInput):
        await Generate(bot).invoke(it, bot.catalog.workflows["image"], {"prompt": "  "}, {})  # type: ignore[arg-type]
    assert it.calls == []
    assert bot.engine.runs == []  # type: ignore[attr-defined]


async def test_error_funnel_answers_privately_before_a_defer(bot: ComfyBot) -> None:
    it = Interaction()
    await bot.tree.on_error(
        it, app_commands.CommandInvokeError(_command(bot), InvalidInput("prompt must not be empty."))
    )  # type: ignore[arg-type]
    assert it.calls == [
        ("send_message", {"content": "prompt must not be empty.", "ephemeral": True, "allowed_mentions": NOBODY})
    ]


async def test_error_funnel_after_a_defer_marks_the_status_and_answers_privately(bot: ComfyBot) -> None:
    it = Interaction()
    await it.response.defer(thinking=True)
    it.calls.clear()
    it.command = _command(bot)
    error = ExecutionFailed("The job failed in KSampler (node 3): CUDA out of memory")
    await bot.tree.on_error(it, app_commands.CommandInvokeError(_command(bot), error))  # type: ignore[arg-type]
    assert it.calls == [
        (
            "edit",
            {
                "content": "❌ /image did not finish; the reason was sent to <@42> privately.",
                "attachments": [],
                "view": None,
                "allowed_mentions": NOBODY,
            },
        ),
        (
            "followup",
            {
                "content": "The job failed in KSampler (node 3): CUDA out of memory",
                "ephemeral": True,
                "allowed_mentions": NOBODY,
            },
        ),
    ]


async def test_an_error_after_a_private_answer_leaves_that_answer_alone(bot: ComfyBot) -> None:
    # e.g. Delete answered "Deleted." and then the message was already gone (two clicks at once)
    it = Interaction()
    await it.response.send_message("Deleted.", ephemeral=True)
    it.calls.clear()
    await bot.tree.on_error(it, app_commands.CommandInvokeError(_command(bot), InvalidInput("Already deleted.")))  # type: ignore[arg-type]
    assert it.calls == [("followup", {"content": "Already deleted.", "ephemeral": True, "allowed_mentions": NOBODY})]


async def test_unexpected_errors_get_a_reference_not_a_traceback(
    bot: ComfyBot, caplog: pytest.LogCaptureFixture
) -> None:
    it = Interaction()
    await bot.tree.on_error(it, app_commands.CommandInvokeError(_command(bot), KeyError("boom")))  # type: ignore[arg-type]
    [(_name, kw)] = it.calls
    ref = caplog.records[-1].args[1]  # type: ignore[index]
    assert kw["content"] == (
        f"Something went wrong on the bot's side (reference {ref}). A server admin can look it up in the log."
    )
    assert kw["ephemeral"] is True


async def test_files_over_the_limit_are_named_and_batches_hold_ten(bot: ComfyBot, tmp_path: Path) -> None:
    files = (
        *tuple(output_file(tmp_path, f"img_{i:02d}.png", PNG) for i in range(12)),
        output_file(tmp_path, "huge.mp4", b"\x00" * 3000, "10"),
    )
    result = JobResult("a" * 32, "image", {"prompt": "a cat"}, "http://comfy", files, (), 2.0)
    it = Interaction(limit=2048)
    await JobMessage(it, "image", StatusScheduler(0.0)).finish(result)  # type: ignore[arg-type]
    (first, kw1), (second, kw2) = it.calls
    assert first == "edit" and len(kw1["attachments"]) == 10
    assert kw1["content"].endswith("Too large for this server's 2 KB upload limit, so not attached: huge.mp4 (2.9 KB)")
    assert second == "followup" and [f.filename for f in kw2["files"]] == ["img_10.png", "img_11.png"]


def _command(bot: ComfyBot) -> app_commands.Command[Any, ..., Any]:
    return Generate(bot).build_command(bot.catalog.workflows["image"])


async def test_cooldown_refuses_a_second_job_too_soon(bot: ComfyBot) -> None:
    bot.engine.limits = Limits(cooldown_seconds=60)
    cog = Generate(bot)
    await cog.invoke(Interaction(), bot.catalog.workflows["image"], {"prompt": "one"}, {})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput) as caught:
        await cog.invoke(Interaction(), bot.catalog.workflows["image"], {"prompt": "two"}, {})  # type: ignore[arg-type]
    assert caught.value.user_message == "Please wait 60 more second(s) before starting another job."


async def test_a_video_option_is_an_attachment_and_reruns_need_the_kept_file(bot: ComfyBot, tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "video.json", tmp_path)
    bot.catalog = load_catalog(tmp_path)
    cog = Generate(bot)
    cog.register()
    [command] = cog.commands
    options = command.to_dict(bot.tree)["options"]
    shape = [(o["name"], o["type"], o["required"]) for o in options]
    assert shape == [("video", 11, False), ("preset", 3, False)]  # 11: attachment; left out, a form asks for it
    record = JobRecord(id="f" * 32, workflow="video", values={"video": "clip.mp4"}, user_id=Interaction().user.id)
    gone = "The files of this result are no longer kept (the bot keeps them for 24 hours); run the command again."
    with pytest.raises(InvalidInput) as caught:  # nothing was kept for this job (see tests/test_followups.py)
        await cog.reroll(Interaction(), record)  # type: ignore[arg-type]
    assert caught.value.user_message == gone
    with pytest.raises(InvalidInput) as caught:
        await cog.rerun(Interaction(), record)  # type: ignore[arg-type]
    assert caught.value.user_message == gone
    assert bot.engine.runs == []  # type: ignore[attr-defined]


def test_workflows_listing_names_huge_bounds_in_words() -> None:
    workflow = load_catalog(FIXTURES).workflows["linked_prompt"]
    width = next(p for p in workflow.params if p.name == "width")
    huge = dataclasses.replace(width, min=-(10**400), max=10**400)  # a binding may hold any TOML integer
    assert describe_param(workflow, huge) == (
        "`width` (int; default 512; a huge negative number–a huge number step 8) → 6.width"
    )


async def test_servers_answer_fits_discord_with_sixteen_servers_and_long_errors(session: aiohttp.ClientSession) -> None:
    bot = ComfyBot(load_settings({"WORKFLOWS_DIR": str(WORKFLOWS), "RESULT_VIEW": "classic"}, require_token=False))
    configs = [ServerConfig(f"gpu_{i:02d}", f"http://127.0.0.1:{i + 1}", tags={"card": "*4090*"}) for i in range(16)]
    bot.engine = Engine(session, configs, job_timeout=60, max_output_bytes=2**20, max_jobs_per_server=4)
    for server in bot.engine.servers:  # never started: each looks as if its last connection attempt failed
        server.listener.state, server.listener.state_since = "down", time.monotonic() - 42.5
        server.listener.last_error = "**boom** @everyone <@42>\n" + "x" * 3000
        server.object_info = {}  # read, and without a single node class
    bot.engine.capabilities(load_catalog(WORKFLOWS).workflows)
    cog, it = Admin(bot), Interaction()
    await cog.servers.callback(cog, it)  # type: ignore[arg-type]

    assert it.calls[0] == ("defer", {"ephemeral": True, "thinking": True})
    sent = it.calls[1:]
    assert all(name == "followup" and kw["ephemeral"] and kw["allowed_mentions"] == NOBODY for name, kw in sent)
    assert all(len(kw["content"]) <= 2000 for _, kw in sent)
    lines = "\n".join(kw["content"] for _, kw in sent).splitlines()
    # nothing lost between messages: summary, then per server 2 lines, 4 commands' and a line for the rest
    assert len(lines) == 1 + 16 * 7
    shown = "**boom** @everyone <@42> "  # the error on one line, capped at 200 characters, then escaped
    assert lines[1] == r"gpu\_00: down 42 s: \*\*boom\*\* @everyone <@42> " + "x" * (199 - len(shown)) + "…"
    assert lines[2] == r"  version unknown · queue unknown · jobs 0/4 · tags card=\*4090\*"
    assert lines[3] == (
        "  cannot run /image: lacks: Node 3 uses KSampler, which this server does not have: a custom node, "
        "or a core node of a newer ComfyUI than this server's version"
    )
    assert lines[6] == (
        "  cannot run /upscale: lacks: Node 1 “Load Image” uses LoadImage, which this server does not have: "
        "a custom node, or a core node of a newer ComfyUI than this server's version"
    )
    assert lines[7] == "  …and 1 more command(s) it cannot run"  # /video: four commands' reasons a server at most
    assert len(sent) == 9  # about 1,000 characters a server at the caps: 16,000 in messages of at most 2,000

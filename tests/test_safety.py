"""NSFW safety (issue 14 item 2): age-restricted commands, the prompt blocklist and the optional image check."""

from __future__ import annotations

import importlib.util
import io
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from bot import ComfyBot
from core.community.safety import (
    IMAGE_CHECKS,
    ImageAction,
    ImageScreen,
    Safety,
    load_image_screen,
    normalized,
    parse_safety,
)
from core.config import load_settings
from core.errors import ConfigError, InvalidInput, WorkflowError
from core.i18n import localize
from core.jobs.engine import JobResult, OutputFile
from core.workflows import load_workflow
from discord_ui.delivery import result_messages
from tests.conftest import WORKFLOWS
from tests.e2e_world import Start, World, finished

GUILD = 123456789012345678
OTHER_GUILD = 876543210987654321
WORD_REFUSAL = 'prompt contains "{word}", a word this server does not allow; change it and try again.'
PATTERN_REFUSAL = "prompt contains wording this server does not allow (a blocked pattern); change it and try again."
IN_CHANNEL = (
    "/lewd is age-restricted: it can be used only in channels marked age-restricted (and their threads); "
    "this channel is not one."
)
IN_DM = (
    "/lewd is age-restricted: it can be used only in a server channel marked age-restricted, not in direct messages."
)
WITHHELD_LINE = "ComfyUI_00001_.png was withheld: the image check flagged it as possibly adult content."
SPOILERED_LINE = "ComfyUI_00001_.png is hidden behind a spoiler: the image check flagged it as possibly adult content."


def png(color: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(out, "PNG")
    return out.getvalue()


class StubCheck:
    """The ImageCheck interface with fixed scores by file content; records what it was asked."""

    def __init__(self, score: float = 0.9, *, fails: bool = False) -> None:
        self.value, self.fails = score, fails
        self.calls: list[bytes] = []

    async def score(self, data: bytes) -> float:
        self.calls.append(data)
        if self.fails:
            raise RuntimeError("model crashed")
        return self.value


def refusal(safety: Safety, text: str, guild_id: int | None = GUILD) -> str | None:
    try:
        safety.check_text(guild_id, [("prompt", text)])
    except InvalidInput as exc:
        return exc.user_message
    return None


# ------------------------------------------------------------------------------------------ configuration


def test_without_a_safety_table_everything_is_allowed_and_no_image_is_checked() -> None:
    safety = parse_safety({})
    assert refusal(safety, "anything at all") is None
    assert load_image_screen(safety) is None
    safety.check_channel("image", nsfw=False, in_dm=True, age_restricted=False)


def test_every_problem_of_the_safety_table_is_listed_at_once() -> None:
    tables = {
        "safety": {
            "blocklist": "nsfw",
            "blocklist_regex": ["ok", "(unclosed"],
            "image_check": "magic",
            "threshold": 1.5,
            "action": "blur",
            "blocklst": ["typo"],
            "guilds": {"general": {"blocklist": ["x"]}, str(GUILD): {"blocklist_regex": ["[a-"], "words": []}},
        }
    }
    with pytest.raises(ConfigError) as caught:
        parse_safety(tables)
    known = "action, blocklist, blocklist_regex, guilds, image_check, threshold"
    assert caught.value.problems == [
        f"community.toml [safety] has no setting 'blocklst'; known: {known}.",
        'community.toml [safety] blocklist must be a list of non-empty strings, like ["word", "other"].',
        "community.toml [safety] blocklist_regex[1] '(unclosed' is not a valid regular expression: "
        "missing ), unterminated subpattern at position 0.",
        "community.toml [safety.guilds.general]: 'general' is not a server id (17-20 digits).",
        f"community.toml [safety.guilds.{GUILD}] has no setting 'words'; known: blocklist, blocklist_regex.",
        f"community.toml [safety.guilds.{GUILD}] blocklist_regex[0] '[a-' is not a valid regular expression: "
        "unterminated character set at position 0.",
        "community.toml [safety] image_check must be one of: nudenet (got 'magic').",
        "community.toml [safety] threshold must be a number above 0 and at most 1 (got 1.5).",
        'community.toml [safety] action must be "spoiler" or "withhold" (got \'blur\').',
    ]


async def test_a_bad_safety_table_stops_the_bot_before_it_opens_anything(tmp_path: Path) -> None:
    env = _community(tmp_path, '[safety]\nblocklist_regex = ["(oops"]\n')
    settings = load_settings({**env, "JOBS_DB": str(tmp_path / "jobs.sqlite3")}, require_token=False)
    bot = ComfyBot(settings)
    with pytest.raises(ConfigError) as caught:
        await bot.setup_hook()
    await bot.close()
    assert caught.value.user_message == (
        "The configuration has 1 problem(s):\n  - community.toml [safety] blocklist_regex[0] '(oops' is not a valid "
        "regular expression: missing ), unterminated subpattern at position 0."
    )
    assert not (tmp_path / "jobs.sqlite3").exists()


def test_nudenet_missing_is_a_clear_error_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nudenet", None)  # an import of it now fails as if it were not installed
    safety = parse_safety({"safety": {"image_check": "nudenet"}})
    with pytest.raises(ConfigError) as caught:
        load_image_screen(safety)
    assert caught.value.problems == [
        'community.toml [safety] image_check = "nudenet" needs the nudenet package: pip install nudenet '
        "(in the bot's virtualenv)."
    ]


def test_nudenet_is_not_imported_unless_configured() -> None:
    parse_safety({"safety": {"blocklist": ["x"], "threshold": 0.3, "action": "withhold"}})
    assert "nudenet" not in sys.modules


def test_a_binding_marks_its_command_age_restricted(tmp_path: Path) -> None:
    shutil.copy(WORKFLOWS / "image.json", tmp_path / "image.json")
    binding = (WORKFLOWS / "image.toml").read_text(encoding="utf-8")
    (tmp_path / "image.toml").write_text(binding.replace('name = "image"', 'name = "image"\nnsfw = true'))
    assert load_workflow(tmp_path / "image.toml").nsfw is True
    assert load_workflow(WORKFLOWS / "image.toml").nsfw is False
    (tmp_path / "image.toml").write_text(binding.replace('name = "image"', 'name = "image"\nnsfw = "yes"'))
    with pytest.raises(WorkflowError) as caught:
        load_workflow(tmp_path / "image.toml")
    assert caught.value.user_message == "image.toml: [command] nsfw must be true or false (got 'yes')."


# ------------------------------------------------------------------------------------------ the rules


def test_an_age_restricted_command_is_refused_outside_age_restricted_channels() -> None:
    safety = Safety()
    with pytest.raises(InvalidInput) as in_channel:
        safety.check_channel("lewd", nsfw=True, in_dm=False, age_restricted=False)
    assert in_channel.value.user_message == IN_CHANNEL
    with pytest.raises(InvalidInput) as in_dm:
        safety.check_channel("lewd", nsfw=True, in_dm=True, age_restricted=False)
    assert in_dm.value.user_message == IN_DM
    safety.check_channel("lewd", nsfw=True, in_dm=False, age_restricted=True)
    safety.check_channel("image", nsfw=False, in_dm=False, age_restricted=False)


def test_blocked_words_match_whole_words_in_any_case() -> None:
    safety = parse_safety({"safety": {"blocklist": ["Gore", "ass"]}})
    assert refusal(safety, "a cat covered in GORE") == WORD_REFUSAL.format(word="gore")
    assert refusal(safety, "big ass cat") == WORD_REFUSAL.format(word="ass")
    assert refusal(safety, "a classic cat, gorgeous") is None  # inside other words: not the word


def test_blocked_words_cannot_be_hidden_by_width_or_invisible_characters() -> None:
    safety = parse_safety({"safety": {"blocklist": ["nsfw"]}})
    assert refusal(safety, "ＮＳＦＷ cat") == WORD_REFUSAL.format(word="nsfw")
    assert refusal(safety, "ns\u200bfw cat") == WORD_REFUSAL.format(word="nsfw")
    assert normalized("Ｃａｔ\u200d") == "cat"


def test_words_in_scripts_without_spaces_match_inside_a_sentence() -> None:
    safety = parse_safety({"safety": {"blocklist": ["裸", "血腥"]}})
    assert refusal(safety, "裸の猫を描いて") == WORD_REFUSAL.format(word="裸")
    assert refusal(safety, "一只血腥的猫") == WORD_REFUSAL.format(word="血腥")
    assert refusal(safety, "かわいい猫") is None


def test_a_blocked_pattern_is_named_as_a_pattern_and_never_shown() -> None:
    safety = parse_safety({"safety": {"blocklist_regex": [r"\bloli\w*"]}})
    assert refusal(safety, "LOLIPOP style") == PATTERN_REFUSAL
    assert refusal(safety, "a lollipop") is None


def test_refusals_and_image_notes_read_in_the_members_language() -> None:
    safety = parse_safety({"safety": {"blocklist": ["gore"], "blocklist_regex": [r"\bloli\w*"]}})
    assert localize(refusal(safety, "LOLIPOP style") or "", "ja") == (
        "prompt に、このサーバーで許可されていない表現（ブロック対象のパターン）が含まれています。"
        "変更してもう一度お試しください。"
    )
    assert localize(refusal(safety, "GORE cat") or "", "zh-CN") == "prompt 包含本服务器不允许的词“gore”，请修改后重试。"
    with pytest.raises(InvalidInput) as in_dm:
        Safety().check_channel("lewd", nsfw=True, in_dm=True, age_restricted=False)
    assert localize(in_dm.value.user_message, "zh-CN") == (
        "/lewd 有年龄限制：只能在标记为年龄限制的服务器频道中使用，不能在私信中使用。"
    )


def test_a_servers_own_rules_add_to_the_common_ones() -> None:
    own = {"blocklist": ["clown"], "blocklist_regex": ["x{3}"]}
    safety = parse_safety({"safety": {"blocklist": ["gore"], "guilds": {str(GUILD): own}}})
    assert refusal(safety, "a clown", GUILD) == WORD_REFUSAL.format(word="clown")
    assert refusal(safety, "xxx", GUILD) == PATTERN_REFUSAL
    assert refusal(safety, "gore", GUILD) == WORD_REFUSAL.format(word="gore")
    assert refusal(safety, "a clown xxx", OTHER_GUILD) is None
    assert refusal(safety, "a clown", None) is None  # a DM: the common rules only
    assert refusal(safety, "gore", None) == WORD_REFUSAL.format(word="gore")


def test_every_text_option_is_checked_and_the_refusal_names_it() -> None:
    safety = parse_safety({"safety": {"blocklist": ["gore"]}})
    with pytest.raises(InvalidInput) as caught:
        safety.check_text(None, [("prompt", "a cat"), ("negative", "gore")])
    assert caught.value.user_message == WORD_REFUSAL.replace("prompt", "negative").format(word="gore")


# ------------------------------------------------------------------------------------------ the image check


async def test_the_screen_flags_at_the_threshold_and_when_the_check_fails() -> None:
    assert await ImageScreen(StubCheck(0.6), threshold=0.6).flagged("a.png", b"x") is True
    assert await ImageScreen(StubCheck(0.59), threshold=0.6).flagged("a.png", b"x") is False
    assert await ImageScreen(StubCheck(fails=True), threshold=0.6).flagged("a.png", b"x") is True


def _result(*files: OutputFile) -> JobResult:
    return JobResult("job", "image", {"prompt": "a cat"}, "fake", files, (), 1.0)


async def test_flagged_images_are_withheld_and_named_others_go_out() -> None:
    check = StubCheck(0.9)
    image, song = OutputFile("a.png", None, 10, "9", png()), OutputFile("b.mp3", None, 3, "9", b"ID3")
    content, [batch] = await result_messages(
        _result(image, song), 1, 2**20, screen=ImageScreen(check, 0.5, ImageAction.WITHHOLD)
    )
    assert [f.filename for f in batch] == ["b.mp3"]
    assert content.splitlines()[-1] == "a.png was withheld: the image check flagged it as possibly adult content."
    assert localize(content, "ja").splitlines()[-1] == (
        "a.png は送信を控えました：画像チェックで成人向けの可能性があると判定されました。"
    )
    assert check.calls == [png()]  # only the image was looked at


async def test_flagged_images_go_behind_a_spoiler() -> None:
    image = OutputFile("a.png", None, 10, "9", png())
    content, [batch] = await result_messages(_result(image), 1, 2**20, screen=ImageScreen(StubCheck(0.9), 0.5))
    assert [f.filename for f in batch] == ["SPOILER_a.png"]
    assert "a.png is hidden behind a spoiler" in content
    assert localize(content, "zh-CN").splitlines()[-1] == "a.png 已用剧透遮挡：图片检查将其标记为可能的成人内容。"
    content, [batch] = await result_messages(_result(image), 1, 2**20, screen=ImageScreen(StubCheck(0.1), 0.5))
    assert [f.filename for f in batch] == ["a.png"] and "spoiler" not in content


@pytest.mark.live
@pytest.mark.skipif(not importlib.util.find_spec("nudenet"), reason="nudenet is not installed (pip install nudenet)")
async def test_live_nudenet_scores_a_plain_picture_as_harmless() -> None:
    screen = load_image_screen(parse_safety({"safety": {"image_check": "nudenet"}}))
    assert screen is not None
    score = await screen.check.score(png((30, 90, 200)))
    assert 0.0 <= score < 0.6


# ------------------------------------------------------------------------------------------ end to end

LEWD = """workflow = "image.json"

[command]
name = "lewd"
description = "An age-restricted image command"
nsfw = true

[params.prompt]
type = "text"
required = true
target = "6.text"
"""


def _workflows(tmp_path: Path) -> Path:
    folder = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, folder)
    (folder / "lewd.toml").write_text(LEWD, encoding="utf-8")
    return folder


def _community(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "community.toml"
    path.write_text(text, encoding="utf-8")
    return {"COMMUNITY_FILE": str(path)}


def _channel(world: World, name: str) -> int:
    return next(c for c, ch in world.discord.channels.items() if ch.get("name") == name)


@pytest.mark.e2e
async def test_an_nsfw_command_is_registered_age_restricted_and_runs_only_in_such_channels(
    start: Start, tmp_path: Path
) -> None:
    world = await start(workflows=_workflows(tmp_path), channels=("art",), nsfw_channels=("after-dark",))
    synced = {c["name"]: c["nsfw"] for c in world.discord.commands[world.discord.guild_id]}
    assert synced["lewd"] is True and synced["image"] is False
    after_dark = _channel(world, "after-dark")
    in_general = await world.discord.invoke_slash("lewd", {"prompt": "a cat"})
    in_art_thread = await world.discord.invoke_slash(
        "lewd", {"prompt": "a cat"}, channel_id=world.discord.add_thread(_channel(world, "art"), "chat")
    )
    await world.discord.wait_for(lambda: all(world.private_replies(it) for it in (in_general, in_art_thread)))
    assert world.private_replies(in_general) == [IN_CHANNEL]
    assert world.private_replies(in_art_thread) == [IN_CHANNEL]  # a thread follows its parent
    assert world.prompts() == []

    allowed = await world.discord.invoke_slash("lewd", {"prompt": "a cat"}, channel_id=after_dark)
    in_thread = await world.discord.invoke_slash(
        "lewd", {"prompt": "a dog"}, channel_id=world.discord.add_thread(after_dark, "late")
    )
    for it in (allowed, in_thread):
        message = await finished(world, it)
        assert [a["filename"] for a in message["attachments"]] == [f"ComfyUI_0000{1 + (it is in_thread)}_.png"]
    assert len(world.prompts()) == 2


@pytest.mark.e2e
async def test_an_nsfw_command_is_refused_in_direct_messages_and_not_synced_again(start: Start, tmp_path: Path) -> None:
    world = await start(workflows=_workflows(tmp_path), settings_env={"DEV_GUILD_ID": ""})
    it = await world.discord.invoke_slash("lewd", {"prompt": "a cat"}, guild=False)
    await world.discord.wait_for(lambda: bool(world.private_replies(it)))
    assert world.private_replies(it) == [IN_DM]
    assert world.prompts() == []

    # Synced globally, the age-restricted flag Discord has is compared too: unchanged, nothing is sent again.
    (world.settings.jobs_db.parent / "commands.synced").unlink()
    before = len(world.discord.requests)
    await world.restart_bot()
    commands = f"/applications/{world.discord.application_id}/commands"
    assert [r.method for r in world.discord.requests[before:] if r.path == commands] == ["GET"]


@pytest.mark.e2e
async def test_the_blocklist_refuses_options_and_form_text_before_anything_is_submitted(
    start: Start, tmp_path: Path
) -> None:
    env = _community(tmp_path, '[safety]\nblocklist = ["gore"]\nblocklist_regex = ["blood\\\\w*"]\n')
    world = await start(settings_env=env)
    word = await world.discord.invoke_slash("image", {"prompt": "a GORE cat"})
    pattern = await world.discord.invoke_slash("image", {"prompt": "a cat", "negative": "Bloody paws"})
    form = await world.discord.invoke_slash("music", {"tags": "lofi"})
    await world.discord.wait_for(lambda: form.modal is not None)
    typed = await world.discord.submit_modal(form, {"lyrics": "[verse]\ngore everywhere"})
    await world.discord.wait_for(lambda: all(world.private_replies(it) for it in (word, pattern, typed)))

    assert world.private_replies(word) == [WORD_REFUSAL.format(word="gore")]
    assert world.private_replies(pattern) == [
        "negative contains wording this server does not allow (a blocked pattern); change it and try again."
    ]
    assert world.private_replies(typed) == [
        'lyrics contains "gore", a word this server does not allow; change it and try again.'
    ]
    assert world.prompts() == []
    message = await finished(world, await world.discord.invoke_slash("image", {"prompt": "a calm cat"}))
    assert message["attachments"]


@pytest.mark.e2e
@pytest.mark.parametrize("action", ["withhold", "spoiler"])
async def test_the_image_check_acts_in_ordinary_channels_only(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    attached, line = ([], WITHHELD_LINE) if action == "withhold" else (["SPOILER_ComfyUI_00001_.png"], SPOILERED_LINE)
    check = StubCheck(0.95)
    monkeypatch.setitem(IMAGE_CHECKS, "stub", lambda: check)  # the classifier, stubbed at its interface
    env = _community(tmp_path, f'[safety]\nimage_check = "stub"\nthreshold = 0.8\naction = "{action}"\n')
    world = await start(settings_env=env, nsfw_channels=("after-dark",))
    message = await finished(world, await world.discord.invoke_slash("image", {"prompt": "a cat"}))
    assert [a["filename"] for a in message["attachments"]] == attached
    assert line in message["content"].splitlines()
    assert len(check.calls) == 1 and check.calls[0].startswith(b"\x89PNG")

    there = await world.discord.invoke_slash("image", {"prompt": "a cat"}, channel_id=_channel(world, "after-dark"))
    message = await finished(world, there)
    assert [a["filename"] for a in message["attachments"]] == ["ComfyUI_00002_.png"]
    assert len(check.calls) == 1  # not checked in an age-restricted channel

"""The commands in Japanese and Simplified Chinese: complete catalogues, names Discord accepts, and the sync."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
from discord import Locale, app_commands

from core.errors import WorkflowError
from core.i18n import LOCALES
from core.workflows.loader import load_workflow
from core.workflows.model import Localized
from discord_ui.translator import CATALOGUES, JA, PRESET, WORKFLOW, ZH_CN, CommandTranslator
from tests.conftest import WORKFLOWS
from tests.e2e_world import BUILT_IN_COMMANDS, Start

SUBCOMMAND, GROUP = 1, 2


def discord_accepts_name(name: str) -> bool:
    """Say whether Discord takes `name` as a command or option name (its regex, without the `regex` module)."""
    return 1 <= len(name) <= 32 and name == name.lower() and all(c.isalnum() or c in "-_" for c in name)


def localizable(command: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """List a synced command, its subcommands and their options, each with its catalogue key."""
    found = [(command["name"], command)]
    for option in command.get("options", []):
        if option["type"] in (SUBCOMMAND, GROUP):
            found += [(f"{command['name']} {key}", item) for key, item in localizable(option)]
        else:
            found.append((f"{command['name']}:{option['name']}", option))
    return found


def test_both_locales_translate_the_same_commands_and_options() -> None:
    assert {str(locale) for locale in CATALOGUES} == set(LOCALES)
    assert set(JA) == set(ZH_CN)


@pytest.mark.parametrize("locale", LOCALES)
def test_every_localized_name_passes_discords_rules_and_descriptions_fit(locale: str) -> None:
    catalogue = JA if locale == "ja" else ZH_CN
    for key, (name, description) in catalogue.items():
        assert discord_accepts_name(name), f"{locale} {key}: {name!r}"
        assert 1 <= len(description) <= 100, f"{locale} {key}: {len(description)} characters"


def test_the_name_check_refuses_what_discord_refuses() -> None:
    assert discord_accepts_name("キュー") and discord_accepts_name("重新加载") and discord_accepts_name("lyrics_file")
    for bad in ("Queue", "two words", "", "a" * 33, "表示・変更", "ok!"):
        assert not discord_accepts_name(bad), bad


def test_a_binding_gives_its_command_in_japanese_and_chinese(tmp_path: Path) -> None:
    assert load_workflow(WORKFLOWS / "music.toml").localized == (
        Localized("ja", None, "スタイルタグと歌詞から曲を作る（ACE-Step）"),
        Localized("zh-CN", None, "根据风格标签和歌词创作歌曲（ACE-Step）"),
    )
    binding = localized_image(tmp_path, 'name_ja = "画像"\ndescription_zh-CN = "画图"')
    assert load_workflow(binding).localized == (Localized("ja", "画像", None), Localized("zh-CN", None, "画图"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'name_ja = "画像 生成"',
            "image.toml: command name_ja '画像 生成' must be 1-32 lowercase letters, digits, '-' or '_'.",
        ),
        (
            'name_zh-CN = "Image"',
            "image.toml: command name_zh-CN 'Image' must be 1-32 lowercase letters, digits, '-' or '_'.",
        ),
        (
            f'description_ja = "{"長" * 101}"',
            "image.toml: command description_ja: description must be 1-100 characters.",
        ),
    ],
)
def test_a_binding_s_localized_name_or_description_that_discord_refuses_is_reported(
    tmp_path: Path, line: str, message: str
) -> None:
    with pytest.raises(WorkflowError) as caught:
        load_workflow(localized_image(tmp_path, line))
    assert str(caught.value) == message


def localized_image(folder: Path, lines: str, more: str = "") -> Path:
    """Copy the shipped /image binding with `lines` in place of its command's localized descriptions, and `more`
    at the end."""
    text = (WORKFLOWS / "image.toml").read_text(encoding="utf-8")
    command, params = text.split("\n[params.", 1)
    command = "\n".join(line for line in command.splitlines() if not line.startswith("description_"))
    text = f"{command}\n\n[params.{params}{more}".replace("[command]\n", f"[command]\n{lines}\n")
    shutil.copy(WORKFLOWS / "image.json", folder / "image.json")
    (folder / "image.toml").write_text(text, encoding="utf-8")
    return folder / "image.toml"


async def test_a_workflow_command_is_translated_from_its_binding_only() -> None:
    async def callback(interaction: Any) -> None: ...

    workflow = dataclasses.replace(load_workflow(WORKFLOWS / "image.toml"), localized=(Localized("ja", "画像", None),))
    command = app_commands.Command(name="queue", description="d", callback=callback, extras={WORKFLOW: workflow})
    translator = CommandTranslator()
    name, description = (
        app_commands.TranslationContextLocation.command_name,
        app_commands.TranslationContextLocation.command_description,
    )
    text = app_commands.locale_str("queue")
    ask = lambda where, locale: translator.translate(text, locale, app_commands.TranslationContext(where, command))  # noqa: E731
    assert await ask(name, Locale.japanese) == "画像"
    assert await ask(description, Locale.japanese) is None  # not the built-in /queue's text
    assert await ask(name, Locale.chinese) is None
    assert await ask(name, Locale.french) is None


@pytest.mark.e2e
async def test_the_synced_commands_carry_japanese_and_chinese_names_and_descriptions(start: Start) -> None:
    world = await start()
    synced = {c["name"]: c for c in world.discord.commands[world.discord.guild_id]}
    checked = 0
    for command in BUILT_IN_COMMANDS:
        for key, item in localizable(synced[command]):
            for locale in LOCALES:
                catalogue = JA if locale == "ja" else ZH_CN
                assert key in catalogue, f"{key} has no {locale} entry"
                assert item["name_localizations"][locale] == catalogue[key][0], key
                assert item["description_localizations"][locale] == catalogue[key][1], key
            checked += 1
    assert checked == len(JA) == 35  # 10 commands, 9 subcommands, 16 options: none stale
    image = synced["image"]
    assert image["description_localizations"] == {
        "ja": "テキストのプロンプトから画像を生成（Stable Diffusion 1.5）",
        "zh-CN": "根据文本提示生成图像（Stable Diffusion 1.5）",
    }
    assert "name_localizations" not in image  # the binding names it in English only
    assert synced["music"]["description_localizations"]["zh-CN"] == "根据风格标签和歌词创作歌曲（ACE-Step）"
    assert synced["queue"]["name_localizations"] == {"ja": "キュー", "zh-CN": "队列"}
    options = {o["name"]: o for o in synced["music"]["options"]}
    assert options["lyrics"]["name_localizations"] == {"ja": "歌詞", "zh-CN": "歌词"}
    assert options["duration"]["description_localizations"] == {
        "ja": "長さ（秒）（既定値 60）",
        "zh-CN": "时长（秒）（默认 60）",
    }
    assert options["lyrics_file"]["name_localizations"] == {"ja": "歌詞ファイル", "zh-CN": "歌词文件"}
    assert options["lyrics_file"]["description_localizations"]["ja"] == "歌詞を書いた .txt ファイル（複数行のとき）"
    assert options["preset"]["name_localizations"] == {"ja": "プリセット", "zh-CN": "预设"}
    for command in ("image", "music"):  # every option of the shipped bindings, in both languages
        for option in synced[command]["options"]:
            for key in ("name_localizations", "description_localizations"):
                assert set(option[key]) == set(LOCALES), (command, option["name"], key)
                assert all(discord_accepts_name(n) for n in option["name_localizations"].values())
                assert all(1 <= len(d) <= 100 for d in option["description_localizations"].values())


@pytest.mark.e2e
async def test_changed_translations_are_synced_at_the_next_start(start: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    world = await start()
    puts = lambda: [r for r in world.discord.requests if r.method == "PUT"]  # noqa: E731
    await world.restart_bot()
    assert len(puts()) == 1  # unchanged: no second sync
    monkeypatch.setitem(JA, "queue", ("待ち行列", "あなたの待ち行列"))
    await world.restart_bot()

    assert len(puts()) == 2
    queue = next(c for c in world.discord.commands[world.discord.guild_id] if c["name"] == "queue")
    assert queue["name_localizations"] == {"ja": "待ち行列", "zh-CN": "队列"}
    assert queue["description_localizations"]["ja"] == "あなたの待ち行列"


@pytest.mark.e2e
async def test_a_binding_s_japanese_name_reaches_discord(start: Start, tmp_path: Path) -> None:
    world = await start(workflows=localized_image(tmp_path, 'name_ja = "画像"').parent)
    image = world.discord.commands[world.discord.guild_id][0]
    assert (image["name"], image["name_localizations"]) == ("image", {"ja": "画像"})
    assert "description_localizations" not in image


SAMPLER = """
[params.sampler]
type = "choice"
description = "How to sample"
name_ja = "サンプラー"
choices = ["euler", "dpmpp_2m"]
choices_ja = ["オイラー", "DPM++ 2M"]
choices_zh-CN = ["欧拉", "DPM++ 2M"]
target = "3.sampler_name"
"""


@pytest.mark.e2e
async def test_a_binding_s_localized_options_and_choices_reach_discord(start: Start, tmp_path: Path) -> None:
    world = await start(workflows=localized_image(tmp_path, "", SAMPLER).parent)
    options = {o["name"]: o for o in world.discord.commands[world.discord.guild_id][0]["options"]}
    assert options["prompt"]["name_localizations"] == {"ja": "プロンプト", "zh-CN": "提示词"}
    assert options["prompt"]["description_localizations"] == {"ja": "画像に描きたいもの", "zh-CN": "图像要呈现的内容"}
    sampler = options["sampler"]
    assert sampler["name_localizations"] == {"ja": "サンプラー"}
    assert "description_localizations" not in sampler  # English for everyone
    assert sampler["choices"] == [
        {"name": "euler", "value": "euler", "name_localizations": {"ja": "オイラー", "zh-CN": "欧拉"}},
        {"name": "dpmpp_2m", "value": "dpmpp_2m", "name_localizations": {"ja": "DPM++ 2M", "zh-CN": "DPM++ 2M"}},
    ]
    assert options["preset"]["description_localizations"] == {locale: PRESET[locale][1] for locale in LOCALES}


@pytest.mark.e2e
async def test_a_changed_option_translation_is_synced_at_the_next_start(start: Start, tmp_path: Path) -> None:
    binding = localized_image(tmp_path, "")
    world = await start(workflows=tmp_path)
    puts = lambda: [r for r in world.discord.requests if r.method == "PUT"]  # noqa: E731
    await world.restart_bot()
    assert len(puts()) == 1  # unchanged: no second sync
    binding.write_text(binding.read_text(encoding="utf-8").replace("プロンプト", "指示"), encoding="utf-8")
    await world.restart_bot()

    assert len(puts()) == 2
    prompt = world.discord.commands[world.discord.guild_id][0]["options"][0]
    assert prompt["name_localizations"] == {"ja": "指示", "zh-CN": "提示词"}

"""The commands in Japanese and Simplified Chinese: complete catalogues, names Discord accepts, and the sync."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from discord import Locale, app_commands

from discord_ui.translator import CATALOGUES, JA, SHIPPED_WORKFLOWS, ZH_CN, CommandTranslator
from tests.conftest import WORKFLOWS
from tests.e2e_world import BUILT_IN_COMMANDS, Start

LOCALES = ("ja", "zh-CN")
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
        assert name is None or discord_accepts_name(name), f"{locale} {key}: {name!r}"
        assert 1 <= len(description) <= 100, f"{locale} {key}: {len(description)} characters"
    for key in SHIPPED_WORKFLOWS:  # workflow names come from binding files and stay as they are
        assert catalogue[key][0] is None


def test_the_name_check_refuses_what_discord_refuses() -> None:
    assert discord_accepts_name("キュー") and discord_accepts_name("重新加载") and discord_accepts_name("lyrics_file")
    for bad in ("Queue", "two words", "", "a" * 33, "表示・変更", "ok!"):
        assert not discord_accepts_name(bad), bad


def test_the_shipped_workflows_english_is_what_their_bindings_say() -> None:
    for name, description in SHIPPED_WORKFLOWS.items():
        binding = tomllib.loads((WORKFLOWS / f"{name}.toml").read_text(encoding="utf-8"))
        assert binding["command"]["description"] == description


async def test_a_workflow_of_a_shipped_name_with_other_text_keeps_its_own() -> None:
    async def callback(interaction: Any) -> None: ...

    translator = CommandTranslator()
    own = app_commands.Command(name="image", description="Upscale a picture", callback=callback)
    shipped = app_commands.Command(name="image", description=SHIPPED_WORKFLOWS["image"], callback=callback)
    where = app_commands.TranslationContextLocation.command_description
    for command, expected in ((own, None), (shipped, JA["image"][1])):
        context = app_commands.TranslationContext(location=where, data=command)
        text = app_commands.locale_str(command.description)
        assert await translator.translate(text, Locale.japanese, context) == expected
        assert await translator.translate(text, Locale.french, context) is None


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
    assert checked == len(JA) - len(SHIPPED_WORKFLOWS) == 35  # 10 commands, 9 subcommands, 16 options: none stale
    image = synced["image"]
    assert image["description_localizations"] == {"ja": JA["image"][1], "zh-CN": ZH_CN["image"][1]}
    assert "name_localizations" not in image  # /image keeps its binding's name
    assert synced["music"]["description_localizations"]["zh-CN"] == "根据风格标签和歌词创作歌曲（ACE-Step）"
    assert synced["queue"]["name_localizations"] == {"ja": "キュー", "zh-CN": "队列"}


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

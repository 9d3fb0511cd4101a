"""A Japanese and a Chinese member's whole session, end to end: everything the bot writes to them reads in
their language, and none of the bot's English sentences slips through (only what members, workflows and
servers wrote stays as written)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from core import i18n
from tests.e2e_world import Start, World, finished
from tests.fakes.discord_fake import Interaction

pytestmark = pytest.mark.e2e

SENT_TEXT_KEYS = ("content", "label", "placeholder", "title")
BOT_PATHS = ("/interactions/", "/webhooks/", "/channels/")  # answers, followups and edits, channel messages


def written_to_members(world: World, since: int) -> list[str]:
    """Every text the bot sent to Discord after request number `since` (contents, labels, titles)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in SENT_TEXT_KEYS and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for request in world.discord.requests[since:]:
        if request.path.startswith(BOT_PATHS) and request.method in ("POST", "PATCH"):
            walk(request.json)
    return found


def english_fragments() -> list[str]:
    """The bot's own English wording: the literal pieces of every template that make a phrase of 2+ words."""
    pieces = (re.split(r"\{[^{}]*\}", template) for template in i18n.templates())
    return sorted({p.strip() for parts in pieces for p in parts if re.search(r"[A-Za-z]{2,}\W+[A-Za-z]{2,}", p)})


async def private_text(world: World, it: Interaction) -> str:
    await world.discord.wait_for(lambda: bool(world.private_replies(it)))
    return "\n".join(world.private_replies(it))


# What each member reads, exactly; {id} is the member, {job} the job's short id, {link} its result's address.
SESSIONS: dict[str, dict[str, Any]] = {
    "ja": {
        "prompt": "雨の中の猫",
        "result": [
            r"\*\*/image\*\*（<@{id}> さん） · \d+\.\d 秒",
            "**プロンプト:** 雨の中の猫",
            "**ネガティブ:** text, watermark",
            "**シード:** 7",
            "**ステップ数:** 20",
            "**幅:** 512",
            "**高さ:** 512",
        ],
        "buttons": ["再生成", "詳細", "削除", "U1", "V1"],
        "help": [
            "**ここで使えるコマンド**",
            "**/image** — テキストのプロンプトから画像を生成（Stable Diffusion 1.5）",
            "  オプション：プロンプト（必須）、ネガティブ、シード、ステップ数、幅、高さ",
        ],
        "quota": r"\*\*本日のあなたのクォータ\*\*\nジョブ：1 件使用（上限なし）\nGPU 時間：\d+ 秒使用（上限なし）\n"
        r"<t:\d+:R>（<t:\d+:f>）にリセットされます。",
        "history": [
            "**あなたのジョブ** · 1/1 ページ（全 1 件）",
            "",
            "**1.** /image · 完了 · <t:{when}:R> · ジョブ `{job}` · [結果]({link})",
            "プロンプト: 雨の中の猫 · ネガティブ: text, watermark · シード: 7 · ステップ数: 20 · 幅: 512 · 高さ: 512",
        ],
        "saved": "/image のプリセット `rain` を保存しました：プロンプト: 雨の中の猫 · ネガティブ: text, watermark · "
        "ステップ数: 20 · 幅: 512 · 高さ: 512。/image preset:rain で使えます。指定したオプションが優先されます。",
        "no_preset": "/image のプリセット `none-such` はありません。/preset list で自分のプリセットを確認できます。",
        "no_jobs": "待機中・実行中のあなたのジョブはありません。",
    },
    "zh-CN": {
        "prompt": "雨中的猫",
        "result": [
            r"\*\*/image\*\*（<@{id}>） · \d+\.\d 秒",
            "**提示词:** 雨中的猫",
            "**反向提示词:** text, watermark",
            "**种子:** 7",
            "**步数:** 20",
            "**宽度:** 512",
            "**高度:** 512",
        ],
        "buttons": ["重新生成", "详情", "删除", "U1", "V1"],
        "help": [
            "**你在这里可以使用的命令**",
            "**/image** — 根据文本提示生成图像（Stable Diffusion 1.5）",
            "  选项：提示词（必填）、反向提示词、种子、步数、宽度、高度",
        ],
        "quota": r"\*\*你今天的配额\*\*\n任务：已用 1 个（无上限）\nGPU 时间：已用 \d+ 秒（无上限）\n"
        r"将于 <t:\d+:R>（<t:\d+:f>）重置。",
        "history": [
            "**你的任务** · 第 1/1 页（共 1 个）",
            "",
            "**1.** /image · 已完成 · <t:{when}:R> · 任务 `{job}` · [结果]({link})",
            "提示词: 雨中的猫 · 反向提示词: text, watermark · 种子: 7 · 步数: 20 · 宽度: 512 · 高度: 512",
        ],
        "saved": "已保存你用于 /image 的预设 `rain`：提示词: 雨中的猫 · 反向提示词: text, watermark · 步数: 20 · "
        "宽度: 512 · 高度: 512。用 /image preset:rain 使用它；你给出的选项优先。",
        "no_preset": "你没有 /image 的预设 `none-such`。/preset list 可显示你的预设。",
        "no_jobs": "你没有正在等待或运行的任务。",
    },
}


def test_the_leak_detector_knows_the_bots_english() -> None:
    fragments = english_fragments()
    assert "You have no job waiting or running." in fragments
    assert any(fragment in "❌ /image did not finish; the reason was sent to <@1> privately." for fragment in fragments)


@pytest.mark.parametrize("locale", ["ja", "zh-CN"])
async def test_a_members_whole_session_reads_in_their_language(start: Start, locale: str) -> None:
    world = await start()
    since = len(world.discord.requests)
    member = world.discord.make_user(name="mei", locale=locale)
    said = SESSIONS[locale]

    help_text = await private_text(world, await world.discord.invoke_slash("help", user=member))
    assert help_text.splitlines()[:3] == said["help"]

    job = await world.discord.invoke_slash("image", {"prompt": said["prompt"], "seed": 7}, user=member)
    first, *options = (await finished(world, job))["content"].splitlines()
    assert re.fullmatch(said["result"][0].format(id=member["id"]), first), first
    assert options == said["result"][1:]
    labels = [c["label"] for row in (job.original or {})["components"] for c in row["components"]]
    assert labels == said["buttons"]
    _, [record] = await world.bot.store.jobs_of(int(member["id"]), limit=1)
    link = f"https://discord.com/channels/{world.discord.guild_id}/{record.channel_id}/{record.message_id}"

    quota = await private_text(world, await world.discord.invoke_slash("quota", user=member))
    assert re.fullmatch(said["quota"], quota), quota

    history = await private_text(world, await world.discord.invoke_slash("history", user=member))
    fill = {"when": int(record.created_at), "job": record.id[:8], "link": link}
    assert history.splitlines() == [line.format(**fill) for line in said["history"]]

    saved = await private_text(world, await world.discord.invoke_slash("preset save", {"name": "rain"}, user=member))
    assert saved == said["saved"]
    refused = world.discord.invoke_slash("image", {"prompt": "x", "preset": "none-such"}, user=member)
    assert await private_text(world, await refused) == said["no_preset"]
    assert await private_text(world, await world.discord.invoke_slash("cancel", user=member)) == said["no_jobs"]

    sent = written_to_members(world, since)
    fragments = english_fragments()
    leaks = [(fragment, text) for text in sent for fragment in fragments if fragment in text]
    assert leaks == []

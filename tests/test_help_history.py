"""/help, /history and /preset: the store's queries and presets alone, then the whole path with the fake Discord."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cogs.help import Help
from core.errors import InvalidInput
from core.i18n import localize
from core.jobs.presets import MAX_PRESETS, Preset, Presets, applied, checked_name, own_job
from core.jobs.store import MIGRATIONS, JobRecord, JobState, JobStore
from core.workflows import load_catalog
from tests.conftest import WORKFLOWS
from tests.e2e_world import Start, World, finished

IMAGE = load_catalog(WORKFLOWS).workflows["image"]
T0 = 1_700_000_000.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    opened = await JobStore(tmp_path / "jobs.sqlite3").open()
    yield opened
    await opened.close()


def job(number: int, user_id: int = 7, **changes: Any) -> JobRecord:
    values = {"prompt": f"cat {number}", "seed": number, "width": 512}
    fields: dict[str, Any] = {"id": f"{number:08x}-0000-4000-8000-000000000000", "workflow": "image"}
    return JobRecord(**{**fields, "values": values, "user_id": user_id, "created_at": T0 + number, **changes})


# The store and presets, without Discord


async def test_jobs_of_pages_a_members_jobs_newest_first(store: JobStore) -> None:
    for number in range(1, 8):
        await store.add(job(number))
    await store.add(job(99, user_id=8))
    total, first = await store.jobs_of(7, limit=5)
    assert total == 7 and [r.values["seed"] for r in first] == [7, 6, 5, 4, 3]
    total, second = await store.jobs_of(7, limit=5, offset=5)
    assert [r.values["seed"] for r in second] == [2, 1]


async def test_an_older_store_gets_the_presets_table(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:
        for number, script in enumerate(MIGRATIONS[:-1], start=1):
            db.executescript(f"{script}; PRAGMA user_version = {number};")
    store = await JobStore(path).open()
    try:
        assert await Presets(store).save(7, "image", "big", {"width": 768}) is False
        assert await Presets(store).of(7) == [Preset(7, "image", "big", {"width": 768}, pytest.approx(0, abs=1e10))]
    finally:
        await store.close()


@pytest.mark.parametrize("name", ["", "has space", "a" * 33, "semi;colon", "<@123>"])
def test_a_bad_preset_name_is_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        checked_name(name)
    shown = name if len(name) <= 40 else name[:32] + "…"
    assert caught.value.user_message == f"A preset name is 1 to 32 letters, digits, _ or - (got `{shown}`)."


def test_preset_names_may_be_written_in_any_script() -> None:
    assert checked_name("  大きい_画像-2 ") == "大きい_画像-2"


@pytest.mark.abuse
async def test_concurrent_saves_never_pass_the_per_member_cap(store: JobStore) -> None:
    presets = Presets(store)
    outcomes = await asyncio.gather(
        *(presets.save(7, "image", f"p{i}", {"width": 512}) for i in range(MAX_PRESETS + 5)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, InvalidInput)]
    assert len(refused) == 5 and outcomes.count(False) == MAX_PRESETS
    assert refused[0].user_message == (
        "You have 25 presets, the most a member may keep; delete one with /preset delete first."
    )
    assert await presets.save(7, "image", "p0", {"width": 768}) is True  # replacing one is always allowed
    assert len(await presets.of(7)) == MAX_PRESETS and len(await presets.of(8)) == 0


def test_given_options_override_a_preset_and_a_stale_value_is_explained() -> None:
    preset = Preset(7, "image", "big", {"width": 768, "steps": 30}, T0)
    assert applied(IMAGE, preset, {"prompt": "a dog", "steps": 10}) == {"prompt": "a dog", "steps": 10, "width": 768}
    stale = Preset(7, "image", "old", {"width": 4096}, T0)
    with pytest.raises(InvalidInput) as caught:
        applied(IMAGE, stale, {"prompt": "a dog"})
    assert caught.value.user_message == (
        "Your preset `old` for /image no longer fits the command: width must be between 256 and 1024 (got 4096). "
        "Save it again or delete it."
    )
    gone = Preset(7, "image", "gone", {"sampler": "euler"}, T0)
    with pytest.raises(InvalidInput) as caught:
        applied(IMAGE, gone, {"prompt": "a dog"})
    assert caught.value.user_message == (
        "Your preset `gone` for /image no longer fits the command: it has no option sampler any more. "
        "Save it again or delete it."
    )


def test_preset_refusals_read_in_the_members_language() -> None:
    with pytest.raises(InvalidInput) as caught:
        checked_name("has space")
    assert localize(caught.value.user_message, "ja") == (
        "プリセット名は文字・数字・_・- を使った 1〜32 文字です（指定された名前：`has space`）。"
    )
    gone = Preset(7, "image", "gone", {"sampler": "euler"}, T0)
    with pytest.raises(InvalidInput) as caught:
        applied(IMAGE, gone, {"prompt": "a dog"})
    assert localize(caught.value.user_message, "ja") == (
        "/image のプリセット `gone` はコマンドに合わなくなりました：オプション sampler はもうありません。"
        "保存し直すか削除してください。"
    )
    assert localize(caught.value.user_message, "zh-CN") == (
        "你的 /image 预设 `gone` 已不再适用于该命令：它已没有选项 sampler。请重新保存或删除它。"
    )


async def test_a_job_is_found_by_the_start_of_its_id_among_the_members_own(store: JobStore) -> None:
    await store.add(job(1))
    await store.add(job(2, user_id=8))
    assert (await own_job(store, 7, None)).id == job(1).id
    assert (await own_job(store, 7, "00000001")).id == job(1).id
    for ref in ("00000002", "0000000%", "zz"):  # another member's job; a wildcard; not an id
        with pytest.raises(InvalidInput) as caught:
            await own_job(store, 7, ref)
        assert caught.value.user_message == f"You have no job `{ref}`. /history shows yours with their ids."
    with pytest.raises(InvalidInput) as caught:
        await own_job(store, 9, None)
    assert caught.value.user_message == "You have no job yet to save a preset from."


# The whole path


async def reply(world: World, it: Any) -> str:
    await world.discord.wait_for(lambda: bool(world.private_replies(it)))
    return "\n".join(world.private_replies(it))


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["label"]: c for row in message["components"] for c in row["components"]}


@pytest.mark.e2e
async def test_history_pages_five_jobs_at_a_time(start: Start) -> None:
    world = await start()
    me = int(world.discord.default_user["id"])
    for number in range(1, 8):
        where = {"guild_id": world.discord.guild_id, "channel_id": 5, "message_id": 900 + number}
        await world.bot.store.add(job(number, user_id=me, state=JobState.DONE, **where))
    it = await world.discord.invoke_slash("history")
    first = await reply(world, it)
    assert first.splitlines()[0] == "**Your jobs** · page 1 of 2 (7 in all)"
    assert first.split("\n\n")[1] == (
        f"**1.** /image · done · <t:{int(T0) + 7}:R> · job `00000007` · "
        f"[result](https://discord.com/channels/{world.discord.guild_id}/5/907)\nprompt: cat 7 · seed: 7 · width: 512"
    )
    assert [line.split(" · ")[0] for line in first.splitlines() if line.startswith("**") and "/image" in line] == [
        "**1.** /image", "**2.** /image", "**3.** /image", "**4.** /image", "**5.** /image",
    ]  # fmt: skip
    assert it.original is not None
    page = buttons(it.original)
    assert list(page) == [
        *(f"Re-run {n}" for n in range(1, 6)),
        *(f"Details {n}" for n in range(1, 6)),
        "Previous",
        "Next",
    ]
    assert page["Re-run 1"]["custom_id"] == f"job:rerun:{job(7).id}" and page["Previous"].get("disabled")

    turned = await world.discord.click(it.original_id or 0, page["Next"]["custom_id"])
    await world.discord.wait_for(lambda: turned.acknowledged)
    second = world.discord.messages[it.original_id or 0]
    assert second["content"].splitlines()[0] == "**Your jobs** · page 2 of 2 (7 in all)"
    assert "**6.** /image" in second["content"] and "cat 1" in second["content"] and "cat 3" not in second["content"]
    assert list(buttons(second)) == ["Re-run 6", "Re-run 7", "Details 6", "Details 7", "Previous", "Next"]
    assert buttons(second)["Next"].get("disabled") and not buttons(second)["Previous"].get("disabled")


@pytest.mark.e2e
async def test_rerun_from_history_runs_the_same_options_and_seed(start: Start) -> None:
    world = await start()
    await finished(world, await world.discord.invoke_slash("image", {"prompt": "a red fox", "seed": 5, "steps": 3}))
    it = await world.discord.invoke_slash("history")
    await reply(world, it)
    assert it.original is not None
    details = await world.discord.click(it.original_id or 0, buttons(it.original)["Details 1"]["custom_id"])
    assert "**seed:** 5" in (await reply(world, details)).splitlines()

    rerun = await world.discord.click(it.original_id or 0, buttons(it.original)["Re-run 1"]["custom_id"])
    await world.discord.wait_for(lambda: len(world.prompts()) == 2 and rerun.original is not None)
    first, again = (p["prompt"]["3"]["inputs"] for p in world.prompts())
    assert again["seed"] == first["seed"] == 5 and again["steps"] == 3
    assert world.prompts()[1]["prompt"]["6"]["inputs"]["text"] == "a red fox"


@pytest.mark.e2e
async def test_another_members_history_is_for_admins_only(start: Start) -> None:
    world = await start()
    alice, bob = world.discord.make_user(name="alice"), world.discord.make_user(name="bob")
    await world.bot.store.add(job(1, user_id=int(alice["id"])))
    refused = await world.discord.invoke_slash("history", {"member": alice["id"]}, user=bob)
    assert await reply(world, refused) == (
        "Only the bot's owner and members with the admin role can see another member's history."
    )
    owner = await world.discord.invoke_slash("history", {"member": alice["id"]})  # the default member owns the bot
    assert (await reply(world, owner)).splitlines()[0] == f"**Jobs of <@{alice['id']}>** · page 1 of 1 (1 in all)"
    empty = await world.discord.invoke_slash("history", user=bob)
    assert await reply(world, empty) == "You have no jobs yet."


@pytest.mark.e2e
async def test_presets_save_use_override_default_and_delete(start: Start) -> None:
    world = await start()
    await finished(world, await world.discord.invoke_slash("image", {"prompt": "a cat", "steps": 30, "width": 768}))
    saved = await world.discord.invoke_slash("preset save", {"name": "big"})
    assert await reply(world, saved) == (
        "Saved your preset `big` for /image: prompt: a cat · negative: text, watermark · steps: 30 · width: 768 · "
        "height: 512. Use it with /image preset:big; options you give override it."
    )
    names = await world.discord.autocomplete("image", {"prompt": "x", "preset": "b"}, focused="preset")
    assert [c["value"] for c in names] == ["big"]

    used = await world.discord.invoke_slash("image", {"prompt": "a dog", "preset": "big", "width": 512})
    await finished(world, used)
    inputs = world.prompts()[-1]["prompt"]
    assert (inputs["6"]["inputs"]["text"], inputs["3"]["inputs"]["steps"], inputs["5"]["inputs"]["width"]) == (
        "a dog", 30, 512,
    )  # fmt: skip
    assert inputs["3"]["inputs"]["seed"] != world.prompts()[0]["prompt"]["3"]["inputs"]["seed"]  # seeds not kept

    unknown = await world.discord.invoke_slash("image", {"prompt": "a dog", "preset": "huge"})
    assert await reply(world, unknown) == "You have no preset `huge` for /image. /preset list shows yours."

    default = await world.discord.invoke_slash("preset save", {"name": "default"})
    assert (await reply(world, default)).endswith("It applies to every /image you run; options you give override it.")
    await finished(world, await world.discord.invoke_slash("image", {"prompt": "a bird"}))
    assert world.prompts()[-1]["prompt"]["3"]["inputs"]["steps"] == 30  # the default preset, by itself

    listed = await world.discord.invoke_slash("preset list")
    assert (await reply(world, listed)).splitlines() == [
        "**Your presets** (2):",
        "• /image `big`: prompt: a cat · negative: text, watermark · steps: 30 · width: 768 · height: 512",
        "• /image `default`: prompt: a dog · negative: text, watermark · steps: 30 · width: 512 · height: 512",
    ]
    deleted = await world.discord.invoke_slash("preset delete", {"name": "default"})
    assert await reply(world, deleted) == "Deleted your preset `default` for /image."
    await finished(world, await world.discord.invoke_slash("image", {"prompt": "a bird"}))
    assert world.prompts()[-1]["prompt"]["3"]["inputs"]["steps"] == 20  # the workflow's own value again
    missing = await world.discord.invoke_slash("preset delete", {"name": "default"})
    assert await reply(world, missing) == "You have no preset `default`. /preset list shows yours."


@pytest.mark.e2e
async def test_help_lists_only_the_commands_the_member_may_use(start: Start) -> None:
    world = await start()
    member = world.discord.make_user(name="member")
    cog = world.bot.get_cog("Help")
    assert cog is not None and type(cog).__name__ == Help.__name__  # loaded as an extension: its own module object

    async def only_music(interaction: Any, workflow: Any) -> bool:  # a stand-in for the access rules
        return workflow.name == "music"

    cog.allowed = only_music  # type: ignore[attr-defined]

    listing = (await reply(world, await world.discord.invoke_slash("help", user=member))).splitlines()
    assert listing[:3] == [
        "**Commands you can use here**",
        "**/music** — Compose a song from style tags and lyrics (ACE-Step)",
        "  options: tags (required), lyrics, duration, seed",
    ]
    assert not any("/image" in line or "/reload" in line for line in listing)
    assert "/history — Show your last jobs, with Re-run and Details (admins: anyone's)" in listing
    owner = (await reply(world, await world.discord.invoke_slash("help"))).splitlines()
    assert "/reload — Re-read the workflows folder, check it and update the commands" in owner

    refused = await world.discord.invoke_slash("help", {"command": "image"}, user=member)
    assert await reply(world, refused) == "There is no command /image you can use here. /help lists them."
    full = (
        await reply(world, await world.discord.invoke_slash("help", {"command": "music"}, user=member))
    ).splitlines()
    assert full[0] == "**/music** — Compose a song from style tags and lyrics (ACE-Step)"
    assert "• `seed` (seed; default random): Random seed; leave empty for a new one (shown with the result)" in full
    assert full[-2].startswith("• `preset` (one of your presets)")
    assert full[-1] == "Example: `/music tags:funk, pop, soul, melodic, guitar, drums…`"  # the workflow's own tags
    choices = await world.discord.autocomplete("help", {"command": ""}, focused="command")
    assert [c["value"] for c in choices] == ["music"]


# In the member's language


@pytest.mark.e2e
async def test_help_speaks_japanese_to_a_japanese_member(start: Start) -> None:
    world = await start()
    member = world.discord.make_user(name="member", locale="ja")
    cog = world.bot.get_cog("Help")
    assert cog is not None

    async def only_music(interaction: Any, workflow: Any) -> bool:
        return workflow.name == "music"

    cog.allowed = only_music  # type: ignore[attr-defined]

    listing = await reply(world, await world.discord.invoke_slash("help", user=member))
    assert listing.splitlines() == [
        "**ここで使えるコマンド**",
        "**/music** — スタイルタグと歌詞から曲を作る（ACE-Step）",  # the binding's description_ja
        "  オプション：タグ（必須）、歌詞、長さ、シード",
        "**その他のコマンド**",
        "/queue — 待機中・実行中のあなたのジョブを表示（管理者は全員分）",
        "/cancel — 待機中または実行中のあなたの最新のジョブをキャンセル",
        "/access — どのコマンドを誰がどこで使えるかを表示・変更",
        "/help — ここで使えるコマンドの一覧、または1つのコマンドの詳細を表示",
        "/preset — コマンドオプションのプリセットを保存・一覧・削除",
        "/history — 最近のジョブを再実行・詳細つきで表示（管理者は誰の分でも）",
        "/quota — 1日のクォータの使用量と残りを表示",
        "`/help command:<name>` で1つのコマンドを例つきで詳しく表示します。",
    ]
    full = (
        await reply(world, await world.discord.invoke_slash("help", {"command": "music"}, user=member))
    ).splitlines()
    # Option names and descriptions as the binding gives them in Japanese, as the member's Discord shows them
    assert full == [
        "**/music** — スタイルタグと歌詞から曲を作る（ACE-Step）",
        "• `タグ`（テキスト、必須、1000 文字まで）：スタイルタグ、カンマ区切り（例: lofi, jazz, mellow piano, 80 bpm）",
        "• `歌詞`（複数行のテキスト、既定値 [instrumental]、3000 文字まで、または `歌詞ファイル` に .txt ファイル、"
        "またはフォームで入力）：[verse]/[chorus] タグつきの歌詞、または [instrumental]",
        "• `長さ`（数値、既定値 60、5～240）：長さ（秒）",
        "• `シード`（シード、既定値 ランダム）：乱数シード。空欄なら新しく決めます（結果に表示）",
        "• `プリセット`（あなたのプリセットの1つ）：指定したオプションが優先されます。`default` は自動で適用されます",
        "例：`/music タグ:funk, pop, soul, melodic, guitar, drums…`",
    ]
    refused = await world.discord.invoke_slash("help", {"command": "image"}, user=member)
    assert (
        await reply(world, refused)
        == "ここで使えるコマンド /image はありません。使えるコマンドは /help で確認できます。"
    )


@pytest.mark.e2e
async def test_history_and_a_saved_preset_in_chinese(start: Start) -> None:
    world = await start()
    member = world.discord.make_user(name="li", locale="zh-CN")
    where = {"guild_id": world.discord.guild_id, "channel_id": 5, "message_id": 901}
    await world.bot.store.add(job(1, user_id=int(member["id"]), state=JobState.DONE, **where))
    it = await world.discord.invoke_slash("history", user=member)
    assert await reply(world, it) == (
        "**你的任务** · 第 1/1 页（共 1 个）\n\n"
        f"**1.** /image · 已完成 · <t:{int(T0) + 1}:R> · 任务 `00000001` · "
        f"[结果](https://discord.com/channels/{world.discord.guild_id}/5/901)\n提示词: cat 1 · 种子: 1 · 宽度: 512"
    )
    assert it.original is not None
    assert list(buttons(it.original)) == ["重新运行 1", "详情 1", "上一页", "下一页"]

    await finished(world, await world.discord.invoke_slash("image", {"prompt": "a cat", "steps": 30}, user=member))
    saved = await world.discord.invoke_slash("preset save", {"name": "big"}, user=member)
    assert await reply(world, saved) == (
        "已保存你用于 /image 的预设 `big`：提示词: a cat · 反向提示词: text, watermark · 步数: 30 · 宽度: 512 · "
        "高度: 512。用 /image preset:big 使用它；你给出的选项优先。"
    )
    missing = await world.discord.invoke_slash("preset delete", {"name": "huge"}, user=member)
    assert await reply(world, missing) == "你没有预设 `huge`。/preset list 会列出你的预设。"


@pytest.mark.e2e
async def test_a_page_turned_by_a_japanese_member_is_in_japanese(start: Start) -> None:
    world = await start()
    member = world.discord.make_user(name="ken", locale="ja")
    for number in range(1, 7):
        await world.bot.store.add(job(number, user_id=int(member["id"])))
    it = await world.discord.invoke_slash("history", user=member)
    assert (await reply(world, it)).splitlines()[0] == "**あなたのジョブ** · 1/2 ページ（全 6 件）"
    assert it.original is not None
    turned = await world.discord.click(it.original_id or 0, buttons(it.original)["次へ"]["custom_id"], user=member)
    await world.discord.wait_for(lambda: turned.acknowledged)
    second = world.discord.messages[it.original_id or 0]
    assert second["content"] == (
        "**あなたのジョブ** · 2/2 ページ（全 6 件）\n\n"
        f"**6.** /image · 待機中 · <t:{int(T0) + 1}:R> · ジョブ `00000001`\nプロンプト: cat 1 · シード: 1 · 幅: 512"
    )
    assert list(buttons(second)) == ["再実行 6", "詳細 6", "前へ", "次へ"]
    assert buttons(second)["次へ"].get("disabled") and not buttons(second)["前へ"].get("disabled")

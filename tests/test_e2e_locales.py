"""Members whose Discord speaks Japanese or Simplified Chinese read the bot in their language, end to end:
job status, buttons, results, details, refusals, and an error that can only reach them in the channel."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_blur_workflow
from tests.e2e_world import Start, World, finished
from tests.fakes.discord_fake import Interaction

pytestmark = pytest.mark.e2e


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, custom_id) of each button on a message, in order."""
    return [(c["label"], c["custom_id"]) for row in message.get("components", []) for c in row["components"]]


async def private_text(world: World, it: Interaction) -> str:
    await world.discord.wait_for(lambda: bool(world.private_replies(it)))
    return "\n".join(world.private_replies(it))


async def test_a_japanese_member_follows_a_queued_job_and_cancels_it_in_japanese(start: Start) -> None:
    world = await start()
    member = world.discord.make_user(name="hana", locale="ja")
    world.comfy.pause()  # the job waits in ComfyUI's queue until cancelled
    it = await world.discord.invoke_slash("image", {"prompt": "a queued cat"}, user=member)
    await world.discord.wait_for(lambda: bool(it.original and buttons(it.original)))

    assert it.original is not None
    header = f"**/image**（<@{member['id']}> さん）"
    assert it.original["content"].splitlines()[0] == header
    [(label, custom_id)] = buttons(it.original)
    assert label == "キャンセル" and custom_id.startswith("job:cancel:")

    click = await world.discord.click(it.original_id or 0, custom_id, user=member)
    assert await private_text(world, click) == "ジョブをキャンセルしています…"
    await world.discord.wait_for(lambda: (it.original or {}).get("content") == f"{header}\n🚫 キャンセルしました。")
    assert buttons(it.original or {}) == []
    world.comfy.resume()


async def test_a_japanese_member_reads_the_result_its_buttons_and_its_details_in_japanese(start: Start) -> None:
    world = await start()
    member = world.discord.make_user(name="hana", locale="ja")
    it = await world.discord.invoke_slash("image", {"prompt": "a cat", "seed": 5}, user=member)
    message = await finished(world, it)

    lines = message["content"].splitlines()
    assert re.fullmatch(rf"\*\*/image\*\*（<@{member['id']}> さん） · \d+\.\d 秒", lines[0]), lines[0]
    # options named as the member's Discord names them; a member's words (and the workflow's) stay as written
    assert lines[1:3] == ["**プロンプト:** a cat", "**ネガティブ:** text, watermark"]
    labels = [label for label, _ in buttons(message)]
    assert labels == ["再生成", "詳細", "削除", "U1", "V1"]

    details_id = next(custom_id for label, custom_id in buttons(message) if label == "詳細")
    job_id = details_id.removeprefix("job:details:")
    details = await world.discord.click(int(message["id"]), details_id, user=member)
    record = await world.bot.store.get(job_id)  # read as Details read it: the job's end may update it after delivery
    assert record is not None
    names = {"prompt": "プロンプト", "negative": "ネガティブ", "seed": "シード", "steps": "ステップ数", "width": "幅",
             "height": "高さ"}  # fmt: skip
    options = [f"**{names[name]}:** {value}" for name, value in record.values.items()]
    assert await private_text(world, details) == "\n".join(
        [
            f"**/image** · ジョブ `{job_id}` · 完了",
            *options,
            f"**サーバー:** {record.server} · 試行 {record.attempts} 回",
            f"**開始:** <t:{int(record.created_at)}:f> · 最終更新 <t:{int(record.updated_at)}:R>",
        ]
    )


async def test_an_english_member_clicking_a_japanese_members_result_reads_english(start: Start) -> None:
    world = await start()
    member = world.discord.make_user(name="hana", locale="ja")
    it = await world.discord.invoke_slash("image", {"prompt": "a cat"}, user=member)
    message = await finished(world, it)
    delete_id = next(custom_id for label, custom_id in buttons(message) if label == "削除")
    stranger = world.discord.make_user(name="sam")  # en-US
    refused = await world.discord.click(int(message["id"]), delete_id, user=stranger)
    assert await private_text(world, refused) == (
        "Only the member who asked for this result (or an admin) can delete it."
    )


async def test_a_chinese_member_is_refused_in_chinese(start: Start) -> None:
    world = await start()
    member = world.discord.make_user(name="li", locale="zh-CN")

    reload = await world.discord.invoke_slash("reload", user=member)
    assert await private_text(world, reload) == "只有机器人的所有者和拥有管理员身份组的成员可以使用 /reload。"
    cancel = await world.discord.invoke_slash("cancel", user=member)
    assert await private_text(world, cancel) == "你没有正在等待或运行的任务。"

    world.comfy.pause()
    owner_job = await world.discord.invoke_slash("image", {"prompt": "not theirs"})  # the bot's owner's job
    await world.discord.wait_for(lambda: bool(owner_job.original and buttons(owner_job.original)))
    assert owner_job.original is not None
    [(label, custom_id)] = buttons(owner_job.original)
    assert label == "Cancel"  # the owner's client is in English
    refused = await world.discord.click(owner_job.original_id or 0, custom_id, user=member)
    assert await private_text(world, refused) == "只有启动此任务的成员（或管理员）可以取消它。"
    world.comfy.resume()
    await finished(world, owner_job)


async def test_an_error_after_the_token_expired_reaches_the_member_in_the_channel_in_japanese(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 1 MB limit instead of 50 MB: the cog reads it when the bot loads it (discord.py imports it anew)
    monkeypatch.setattr("core.workflows.model.MAX_UPLOAD_BYTES", 2**20)
    world = await start(workflows=write_blur_workflow(tmp_path / "workflows"), token_ttl=0.0)
    member = world.discord.make_user(name="hana", locale="ja")
    picture = b"\x89PNG" + bytes(2**20)  # checked after the defer, once the token is already dead
    await world.discord.invoke_slash("blur", attachments={"picture": ("big.png", picture)}, user=member)
    channel = f"/channels/{world.discord.channel_id}/messages"

    def posted() -> list[dict[str, Any]]:
        return [r.json for r in world.discord.requests if r.method == "POST" and r.path == channel and r.status]

    await world.discord.wait_for(lambda: bool(posted()))
    [post] = posted()
    assert post["content"] == f"<@{member['id']}> picture が 1 MB を超えています。"
    assert post["allowed_mentions"] == {"parse": [], "users": [int(member["id"])]}  # the member only


async def test_a_japanese_admin_reads_reload_and_workflows_in_japanese(start: Start) -> None:
    role_id = 424242424242424242
    world = await start(admin_role_id=role_id)
    admin = world.discord.make_user(name="kenji", locale="ja")
    world.discord._members[int(admin["id"])]["roles"] = [str(role_id)]

    reload = await world.discord.invoke_slash("reload", user=admin)
    assert await private_text(world, reload) == (  # the e2e server has no Wan models: /video is skipped
        "変更はありません。4 個のコマンドが有効です。\n"
        "スキップ：video.json：/video はスキップしました：「Load Diffusion Model」（UNETLoader、ノード 1）："
        "入力 unet_name：'wan2.1_t2v_1.3B_fp16.safetensors' はサーバーにありません（1 つもありません）。"
        "（ほか 2 件の問題があります。`python bot.py check` を実行してください）"
    )
    listing = await world.discord.invoke_slash("workflows", user=admin)
    assert (await private_text(world, listing)).splitlines()[:5] == [
        # the workflow's own description and option names stay as its author wrote them
        "**/image**（image.json、image.toml）：Generate an image from a text prompt (Stable Diffusion 1.5)",
        "• `prompt`（text; 必須; 1000 文字以内）→ 6.text",
        "• `negative`（text; 既定値 'text, watermark'; 1000 文字以内）→ 7.text",
        "• `seed`（seed; 既定値 ランダム）→ 3.seed",
        "• `steps`（int; 既定値 20; 1～50）→ 3.steps",
    ]


async def test_a_failed_job_is_kept_in_its_members_language_for_details_and_restarts(start: Start) -> None:
    world = await start()
    member = world.discord.make_user(name="hana", locale="ja")
    world.comfy.fail_nodes = {"VAEDecode": ("RuntimeError", "Given groups=1, weight of size [4, 4, 1, 1]")}
    it = await world.discord.invoke_slash("image", {"prompt": "a cat"}, user=member)
    told = await private_text(world, it)
    assert (
        told
        == "「VAE Decode」（VAEDecode、ノード 8）でジョブが失敗しました：Given groups=1, weight of size [4, 4, 1, 1]"
    )
    _, [record] = await world.bot.store.jobs_of(int(member["id"]), limit=1)
    assert record.error == told  # what Details and a restart's report show is what the member was told

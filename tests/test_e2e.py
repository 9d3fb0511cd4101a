"""The whole product path as Discord exercises it: the real bot (setup_hook, cogs, error funnel) on the
unmodified discord.py client, against the fake Discord, with the fake ComfyUI doing the work."""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import WORKFLOWS
from tests.e2e_world import BUILT_IN_COMMANDS, Start, finished

pytestmark = pytest.mark.e2e


async def test_commands_are_synced_to_the_development_guild(start: Start) -> None:
    world = await start()
    synced = world.discord.commands[world.discord.guild_id]
    names = ["image", "music", "music_extend", "upscale", *BUILT_IN_COMMANDS]
    assert [c["name"] for c in synced] == names
    assert [o["name"] for o in synced[1]["options"]] == ["tags", "lyrics", "lyrics_file", "duration", "seed", "preset"]
    assert None not in world.discord.commands  # nothing global while developing
    puts = [r.path for r in world.discord.requests if r.method == "PUT"]
    assert puts == [f"/applications/{world.discord.application_id}/guilds/{world.discord.guild_id}/commands"]


@pytest.mark.parametrize("dev_guild", [True, False], ids=["dev-guild", "global"])
async def test_a_restart_with_unchanged_commands_sends_no_sync_request(
    start: Start, caplog: pytest.LogCaptureFixture, dev_guild: bool
) -> None:
    world = await start(settings_env={} if dev_guild else {"DEV_GUILD_ID": ""})
    app, guild = world.discord.application_id, world.discord.guild_id
    commands = f"/applications/{app}/guilds/{guild}/commands" if dev_guild else f"/applications/{app}/commands"
    synced = [r.method for r in world.discord.requests if r.path == commands]
    assert synced == (["PUT"] if dev_guild else ["GET", "PUT"])
    before = len(world.discord.requests)
    await world.restart_bot()

    assert [(r.method, r.path) for r in world.discord.requests[before:]] == [
        ("GET", "/users/@me"),
        ("GET", "/oauth2/applications/@me"),
    ]
    target = f"guild {guild}" if dev_guild else "global"
    assert f"14 command(s) unchanged since they were last synced ({target}); not syncing" in caplog.messages
    assert "connected to Discord as FakeBot; 14 command(s) usable" in caplog.messages  # READY: what bench times
    it = await world.discord.invoke_slash("queue")
    await world.discord.wait_for(lambda: bool(world.private_replies(it)))
    assert world.private_replies(it) == ["No job is waiting or running."]  # the default member owns the bot


async def test_commands_changed_while_the_bot_was_down_are_synced_and_reload_always_syncs(
    start: Start, tmp_path: Path
) -> None:
    world = await start()
    folder = tmp_path / "workflows"
    folder.mkdir()
    for name in ("image.json", "image.toml", "upscale.json", "upscale.toml"):  # /music is gone at the next start
        shutil.copy(WORKFLOWS / name, folder / name)
    world.settings = replace(world.settings, workflows_dir=folder)
    await world.restart_bot()

    puts = [r for r in world.discord.requests if r.method == "PUT"]
    assert len(puts) == 2
    assert [c["name"] for c in puts[1].json] == ["image", "upscale", *BUILT_IN_COMMANDS]
    reload = await world.discord.invoke_slash("reload")  # also puts back commands deleted on Discord's side
    await world.discord.wait_for(lambda: bool(world.private_replies(reload)))
    assert world.private_replies(reload) == ["No change; 2 command(s) active."]
    assert len([r for r in world.discord.requests if r.method == "PUT"]) == 3


async def test_image_defers_shows_progress_and_posts_the_png(start: Start) -> None:
    world = await start()
    world.comfy.node_delay = 0.2  # slow enough for a few status edits (0.1 s apart in tests)
    it = await world.discord.invoke_slash("image", {"prompt": "a cat in a spacesuit", "seed": 5})
    message = await finished(world, it)

    requests = it.requests
    assert requests[0].path == f"/interactions/{it.id}/{it.token}/callback" and requests[0].json["type"] == 5
    assert requests[0].at - it.created < 3.0
    status = [r.json["content"] for r in requests[1:-1] if r.method == "PATCH"]
    assert status and all(s.startswith(f"**/image** for <@{it.user['id']}>\n") for s in status)
    assert any("Running KSampler: step" in s for s in status), status
    final = requests[-1]
    assert final.method == "PATCH" and final.path.endswith("/messages/@original")
    [png] = final.files
    assert png.filename == "ComfyUI_00001_.png"
    assert png.data == world.comfy.files[("output", "", "ComfyUI_00001_.png")] and png.data.startswith(b"\x89PNG")
    lines = message["content"].splitlines()
    assert lines[1:3] == ["**prompt:** a cat in a spacesuit", "**negative:** text, watermark"]
    assert "**seed:** 5" in lines
    assert [a["filename"] for a in message["attachments"]] == ["ComfyUI_00001_.png"]
    assert world.prompts()[0]["prompt"]["6"]["inputs"]["text"] == "a cat in a spacesuit"


async def test_the_bot_asks_for_no_gateway_events_but_its_guilds_and_interactions(start: Start) -> None:
    world = await start()
    it = await world.discord.invoke_slash("image", {"prompt": "a quiet cat"})
    await finished(world, it)
    [session] = world.discord._live_sessions()
    assert session.intents == 1  # GUILDS only: no message, typing or presence events to parse
    # Its own status edits and result did not come back to it as MESSAGE_CREATE / MESSAGE_UPDATE events
    assert {frame["t"] for frame in session.buffer} <= {"READY", "GUILD_CREATE", "INTERACTION_CREATE"}


async def test_a_job_done_within_the_first_delay_costs_two_discord_requests(start: Start) -> None:
    world = await start()
    world.bot.status_edit_interval = 2.0  # as in production (first_delay too: the scheduler's default)
    before = len(world.discord.requests)
    it = await world.discord.invoke_slash("image", {"prompt": "a cat", "seed": 5})
    await finished(world, it)
    callback = world.discord.requests[before]
    # Wait out the moment a held-back status would have gone: nothing may come after the result either.
    await asyncio.sleep(max(0.0, callback.at + world.bot.statuses.first_delay + 0.2 - time.monotonic()))

    requests = world.discord.requests[before:]
    original = f"/webhooks/{world.discord.application_id}/{it.token}/messages/@original"
    assert [(r.method, r.path) for r in requests] == [
        ("POST", f"/interactions/{it.id}/{it.token}/callback"),  # "thinking…"
        ("PATCH", original),  # the result; the status it replaced never went out
    ]
    result = requests[1]
    # The deferred answer names its message: the bot needs no GET of @original to learn it.
    assert callback.query == {"with_response": "1"}
    assert callback.response["interaction"]["response_message_id"] == str(it.original_id)
    assert callback.response["resource"] == {"type": 5}
    assert [f.filename for f in result.files] == ["ComfyUI_00001_.png"]


async def test_a_slow_job_shows_its_status_with_cancel_only_after_the_first_delay(start: Start) -> None:
    world = await start()
    world.comfy.node_delay = 0.3  # about two seconds in all
    first_delay = world.bot.statuses.first_delay
    assert first_delay == 1.0  # the production value: the bot builds its scheduler with the default
    before = len(world.discord.requests)
    it = await world.discord.invoke_slash("image", {"prompt": "a slow cat"})
    await finished(world, it)

    callback, *between, result = world.discord.requests[before:]
    assert between and all(r.method == "PATCH" and not r.files for r in between)
    first = between[0]
    assert first.at - callback.at >= first_delay  # not before
    assert first.at - callback.at < first_delay + 1.0  # but soon after (slack for a busy machine)
    assert first.json["content"].startswith(f"**/image** for <@{it.user['id']}>\n")
    [[cancel]] = [row["components"] for row in first.json["components"]]
    assert cancel["label"] == "Cancel" and cancel["custom_id"].startswith("job:cancel:")
    assert [f.filename for f in result.files] == ["ComfyUI_00001_.png"]
    record = await world.bot.store.get(cancel["custom_id"].removeprefix("job:cancel:"))
    assert record is not None and record.message_id == it.original_id


async def test_music_takes_multiline_lyrics_through_the_form(start: Start) -> None:
    world = await start()
    it = await world.discord.invoke_slash("music", {"tags": "lofi, jazz", "duration": 30})
    await world.discord.wait_for(lambda: it.modal is not None)
    assert it.modal is not None and it.modal["title"] == "/music"
    lyrics = "[verse]\nrain on the window\n\n[chorus]\nla la la"
    submitted = await world.discord.submit_modal(it, {"lyrics": lyrics})
    message = await finished(world, submitted)

    assert [a["filename"] for a in message["attachments"]] == [world.audio_name()]
    [body] = world.prompts()
    assert body["prompt"]["74:14"]["inputs"]["lyrics"] == lyrics
    assert body["prompt"]["74:14"]["inputs"]["tags"] == "lofi, jazz"
    assert body["prompt"]["74:17"]["inputs"]["seconds"] == 30.0
    mp3 = submitted.requests[-1].files[0]
    assert mp3.data == world.comfy.files[("output", "audio", world.audio_name())]


async def test_music_reads_lyrics_from_an_attached_file(start: Start) -> None:
    world = await start()
    it = await world.discord.invoke_slash(
        "music", {"tags": "city pop"}, attachments={"lyrics_file": ("song.txt", b"[verse]\nneon lights\n")}
    )
    await finished(world, it)
    assert it.callback is not None and it.callback.json["type"] == 5  # no form needed
    assert world.prompts()[0]["prompt"]["74:14"]["inputs"]["lyrics"] == "[verse]\nneon lights"


async def test_node_error_reaches_the_member_privately(start: Start) -> None:
    world = await start()
    world.comfy.models = {"checkpoints": ["dreamshaper_8.safetensors"]}
    it = await world.discord.invoke_slash("image", {"prompt": "a cat"})
    await world.discord.wait_for(lambda: bool(world.private_replies(it)))

    assert world.private_replies(it) == [
        "ComfyUI refused the workflow:\n• “Load Checkpoint” (CheckpointLoaderSimple, node 4): input ckpt_name: "
        "'v1-5-pruned-emaonly-fp16.safetensors' is not available on the server. It has: dreamshaper_8.safetensors."
    ]
    assert it.original is not None
    assert it.original["content"] == (f"❌ /image did not finish; the reason was sent to <@{it.user['id']}> privately.")


async def test_execution_error_names_the_node(start: Start) -> None:
    world = await start()
    world.comfy.fail_nodes = {"VAEDecode": ("RuntimeError", "Given groups=1, weight of size [4, 4, 1, 1]")}
    it = await world.discord.invoke_slash("image", {"prompt": "a cat"})
    await world.discord.wait_for(lambda: bool(world.private_replies(it)))
    assert world.private_replies(it) == [
        "The job failed in “VAE Decode” (VAEDecode, node 8): Given groups=1, weight of size [4, 4, 1, 1]"
    ]


async def test_unreachable_comfyui_is_explained(start: Start) -> None:
    world = await start()
    await world.comfy.stop()
    it = await world.discord.invoke_slash("image", {"prompt": "a cat"})
    await world.discord.wait_for(lambda: bool(world.private_replies(it)), timeout=10)
    assert world.private_replies(it) == [
        "The ComfyUI server is not reachable right now, so nothing was generated. Please try again in a few minutes."
    ]


async def test_bad_option_values_are_refused_before_any_submit(start: Start) -> None:
    world = await start()
    blank = await world.discord.invoke_slash("image", {"prompt": "   "})
    odd = await world.discord.invoke_slash("image", {"prompt": "a cat", "width": 300})
    await world.discord.wait_for(lambda: bool(world.private_replies(blank) and world.private_replies(odd)))
    assert world.private_replies(blank) == ["prompt must not be empty."]
    assert world.private_replies(odd) == ["width must be a multiple of 64 (got 300)."]
    with pytest.raises(AssertionError):  # Discord itself refuses values outside the synced range
        await world.discord.invoke_slash("image", {"prompt": "a cat", "steps": 500})
    assert world.prompts() == []


async def test_two_members_jobs_each_reach_their_own_channel(start: Start) -> None:
    world = await start(channels=("art",))
    art = next(c for c, ch in world.discord.channels.items() if ch["name"] == "art")
    alice, bob = world.discord.make_user(name="alice"), world.discord.make_user(name="bob")
    world.comfy.node_delay = 0.03
    it_a = await world.discord.invoke_slash("image", {"prompt": "alice's cat"}, user=alice)
    it_b = await world.discord.invoke_slash("music", {"tags": "bob's jazz", "lyrics": "[instrumental]"}, user=bob,
                                            channel_id=art)  # fmt: skip
    message_a, message_b = await finished(world, it_a), await finished(world, it_b)

    assert message_a["channel_id"] == str(world.discord.channel_id)
    assert message_a["content"].startswith(f"**/image** for <@{alice['id']}>")
    assert "**prompt:** alice's cat" in message_a["content"]
    assert [a["filename"] for a in message_a["attachments"]] == ["ComfyUI_00001_.png"]
    assert message_b["channel_id"] == str(art)
    assert message_b["content"].startswith(f"**/music** for <@{bob['id']}>")
    assert [a["filename"] for a in message_b["attachments"]] == [world.audio_name()]


async def test_queue_position_is_shown_while_waiting(start: Start) -> None:
    world = await start()
    world.comfy.node_delay = 0.05
    first = await world.discord.invoke_slash("image", {"prompt": "first"})
    await world.comfy.wait_for(lambda: bool(world.comfy.queue_snapshot()[0]))
    world.comfy.pause()
    second = await world.discord.invoke_slash("image", {"prompt": "second"})

    def queued() -> bool:
        return any("Queued: position 1 in line" in (r.json or {}).get("content", "") for r in second.requests)

    await world.discord.wait_for(queued)
    world.comfy.resume()
    await finished(world, first)
    await finished(world, second)


@pytest.mark.recovery
async def test_a_job_that_outlives_the_token_still_posts_its_result(start: Start) -> None:
    world = await start(token_ttl=0.6)
    world.comfy.node_delay = 0.15  # the job takes about a second
    it = await world.discord.invoke_slash("image", {"prompt": "a slow cat"})
    channel = f"/channels/{world.discord.channel_id}/messages"
    # Answered, not only begun: the file is streamed in, so the request is recorded before its body is read
    await world.discord.wait_for(
        lambda: any(r.method == "POST" and r.path == channel and r.status for r in world.discord.requests)
    )

    [post] = [r for r in world.discord.requests if r.method == "POST" and r.path == channel]
    assert post.headers["Authorization"] == f"Bot {world.discord.token}"
    assert [f.filename for f in post.files] == ["ComfyUI_00001_.png"]
    assert post.json["content"].startswith(f"**/image** for <@{it.user['id']}>")
    await world.discord.wait_for(
        lambda: it.original is not None and it.original["content"].endswith("the result is in the message below.")
    )
    expired = [r for r in it.requests if r.status == 401]
    assert expired and all(r.response["code"] == 50027 for r in expired)


@pytest.mark.recovery
async def test_an_output_over_the_upload_limit_is_fitted(start: Start) -> None:
    world = await start(attachment_size_limit=200_000)
    world.comfy.output_padding = 300_000  # a 300 KB PNG against a 195 KB limit
    it = await world.discord.invoke_slash("image", {"prompt": "a huge cat"})
    message = await finished(world, it)
    [attachment] = message["attachments"]
    assert attachment["filename"] == "ComfyUI_00001_.webp" and attachment["size"] <= 200_000
    assert message["content"].splitlines()[-1] == (
        "ComfyUI_00001_.png: re-encoded as WebP (quality 90) to fit the 195.3 KB upload limit."
    )
    assert not [r for r in world.discord.requests if r.status == 413]


@pytest.mark.recovery
async def test_an_output_that_cannot_be_fitted_is_named_with_its_size(start: Start) -> None:
    world = await start(attachment_size_limit=200_000)
    world.comfy.output_padding = 300_000  # the fake's MP3 is not real audio: it cannot be re-encoded
    it = await world.discord.invoke_slash("music", {"tags": "lofi", "lyrics": "[instrumental]"})
    message = await finished(world, it)
    assert message["attachments"] == []
    assert message["content"].splitlines()[-1] == (
        f"Too large for this server's 195.3 KB upload limit, so not attached: {world.audio_name()} (293.4 KB)"
    )
    assert not [r for r in world.discord.requests if r.status == 413]


@pytest.mark.recovery
async def test_a_rate_limited_edit_is_retried(start: Start) -> None:
    world = await start()
    world.discord.inject_rate_limit("PATCH", r"/messages/@original$", retry_after=0.2, count=1)
    it = await world.discord.invoke_slash("image", {"prompt": "a cat"})
    message = await finished(world, it)
    assert [a["filename"] for a in message["attachments"]] == ["ComfyUI_00001_.png"]
    statuses = [r.status for r in it.requests if r.method == "PATCH"]
    assert statuses[0] == 429 and statuses[-1] == 200

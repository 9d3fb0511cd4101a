"""Tests of the fake Discord (tests/fakes/discord_fake.py), driven by a tiny example bot defined here.

The example bot is *not* the project's bot: it only exists to exercise the fake with the unmodified discord.py
client (defer + followup with a file and a view, modal, button, autocomplete, attachment option, slow responses).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord_fake import BOT_DM, PRIVATE_CHANNEL, FakeDiscord, NotOffered, start_bot, stop_bot

PNG = b"\x89PNG\r\n\x1a\n" + bytes(65)  # 73 bytes with PNG magic


# --------------------------------------------------------------------------------------------------------------------
# the example bot


class AgainView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Again", custom_id="echo:again")
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button[AgainView]) -> None:
        await interaction.response.edit_message(content="clicked")
        _bot(interaction).completed.append("echo:again")

    async def on_error(self, interaction: discord.Interaction, error: Exception, item: Any) -> None:
        _bot(interaction).errors.append(error)


class FormModal(discord.ui.Modal, title="Form"):
    headline: discord.ui.TextInput[FormModal] = discord.ui.TextInput(label="Title", custom_id="title", max_length=50)
    body: discord.ui.Label[FormModal] = discord.ui.Label(
        text="Body", component=discord.ui.TextInput(custom_id="body", style=discord.TextStyle.long, required=False)
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        body = self.body.component
        assert isinstance(body, discord.ui.TextInput)
        text = f"{self.headline.value}: {body.value}"
        await interaction.response.send_message(text)
        await interaction.edit_original_response(content=f"{text} (edited)")
        _bot(interaction).completed.append("form:submit")

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        _bot(interaction).errors.append(error)


def _bot(interaction: discord.Interaction) -> ExampleBot:
    client = interaction.client
    assert isinstance(client, ExampleBot)
    return client


@app_commands.command(description="Echo text back with a file")
async def echo(interaction: discord.Interaction, text: str, repeat: app_commands.Range[int, 1, 3] = 1) -> None:
    await interaction.response.defer()
    msg = await interaction.followup.send(
        text * repeat, file=discord.File(io.BytesIO(PNG), "echo_0.png"), view=AgainView(), wait=True
    )
    await interaction.edit_original_response(
        attachments=[*msg.attachments, discord.File(io.BytesIO(b"second file"), "echo_1.txt")]
    )


@app_commands.command(description="Open a form")
async def form(interaction: discord.Interaction) -> None:
    await interaction.response.send_modal(FormModal())


@app_commands.command(description="Answer too late")
async def slow(interaction: discord.Interaction) -> None:
    await asyncio.sleep(0.4)
    await interaction.response.send_message("late")


@app_commands.command(description="Follow up after the token expired")
async def later(interaction: discord.Interaction) -> None:
    await interaction.response.defer(ephemeral=True)
    await asyncio.sleep(0.6)
    await interaction.followup.send("too late")


FRUITS = ["apple", "apricot", "banana", "cherry"]


@app_commands.command(description="Pick a fruit")
async def pick(interaction: discord.Interaction, fruit: str) -> None:
    await interaction.response.send_message(f"picked {fruit}")


@pick.autocomplete("fruit")
async def pick_fruit(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=f, value=f) for f in FRUITS if f.startswith(current)]


@app_commands.command(description="Answer wherever the member is")
@app_commands.allowed_installs(guilds=True, users=True)
@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
async def anywhere(interaction: discord.Interaction) -> None:
    where = f"private channel {interaction.context.private_channel}, user install {interaction.is_user_integration()}"
    await interaction.response.send_message(where, view=AgainView())


@app_commands.command(description="Only in servers")
@app_commands.guild_only()
async def serveronly(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("in a server")


@app_commands.command(description="Read an uploaded file")
async def upload(interaction: discord.Interaction, file: discord.Attachment) -> None:
    data = await file.read()
    await interaction.response.send_message(f"{file.filename}: {len(data)} bytes", ephemeral=True)


class ExampleBot(commands.Bot):
    def __init__(self, guild_id: int) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned, intents=discord.Intents.default(), guild_ready_timeout=0
        )
        self.guild_id = guild_id
        self.completed: list[str] = []
        self.errors: list[BaseException] = []
        self.tree.error(self._on_tree_error)

    async def setup_hook(self) -> None:
        for command in (echo, slow, later, pick, upload, anywhere, serveronly):
            self.tree.add_command(command)
        self.tree.add_command(form, guild=discord.Object(self.guild_id))

    async def on_app_command_completion(self, interaction: discord.Interaction, command: Any) -> None:
        self.completed.append(command.qualified_name)

    async def _on_tree_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        self.errors.append(error.original if isinstance(error, app_commands.CommandInvokeError) else error)

    async def sync_all(self) -> None:
        await self.tree.sync()
        await self.tree.sync(guild=discord.Object(self.guild_id))


# --------------------------------------------------------------------------------------------------------------------
# fixtures and helpers

Env = Callable[..., Awaitable[tuple[FakeDiscord, ExampleBot]]]


@pytest.fixture
async def env(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Env]:
    """Start a fake (with the given options) and an example bot; on teardown stop both and check for leftovers."""
    running: list[tuple[FakeDiscord, ExampleBot, asyncio.Task[None]]] = []

    async def make(*, sync: bool = True, **options: Any) -> tuple[FakeDiscord, ExampleBot]:
        fake = FakeDiscord(**options)
        await fake.start()
        bot = ExampleBot(fake.guild_id)
        task = await start_bot(bot, fake)
        running.append((fake, bot, task))
        if sync:
            await bot.sync_all()
        return fake, bot

    yield make
    for fake, bot, task in running:
        await stop_bot(bot, task)
        await fake.stop()
        assert not fake.unhandled, fake.unhandled
    errors = [r for r in caplog.records if r.name.startswith("discord") and r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def finished(fake: FakeDiscord, bot: ExampleBot, name: str) -> None:
    """Wait until the bot completed ``name``; fail with the bot's error if it failed instead."""
    await fake.wait_for(lambda: name in bot.completed or bool(bot.errors))
    assert not bot.errors, bot.errors


async def failed(fake: FakeDiscord, bot: ExampleBot) -> BaseException:
    await fake.wait_for(lambda: bool(bot.errors))
    return bot.errors.pop()


def sent_events(fake: FakeDiscord, name: str) -> list[dict[str, Any]]:
    return [frame["d"] for way, frame in fake.gateway_log if way == "send" and frame.get("t") == name]


# --------------------------------------------------------------------------------------------------------------------
# tests


async def test_connect_and_sync(env: Env) -> None:
    fake, bot = await env(sync=False)
    me = next(r for r in fake.requests if r.path == "/users/@me")
    assert me.headers["Authorization"] == f"Bot {fake.token}" and me.status == 200
    assert any(r.path == "/oauth2/applications/@me" for r in fake.requests)
    assert bot.application_id == fake.application_id and bot.user is not None and bot.user.id == fake.bot_user_id
    assert fake.gateway_connections == [{"v": "10", "encoding": "json", "compress": "zlib-stream"}]
    identify = next(f for way, f in fake.gateway_log if way == "recv" and f["op"] == 2)
    assert identify["d"]["token"] == fake.token
    guild = bot.get_guild(fake.guild_id)
    assert guild is not None and guild.get_member(fake.bot_user_id) is not None
    assert [c.name for c in guild.text_channels] == ["general"] and guild.default_role.id == fake.guild_id

    await bot.sync_all()
    puts = [r for r in fake.requests if r.method == "PUT"]
    assert [r.path for r in puts] == [
        f"/applications/{fake.application_id}/commands",
        f"/applications/{fake.application_id}/guilds/{fake.guild_id}/commands",
    ]
    assert sorted(c["name"] for c in fake.commands[None]) == [
        "anywhere",
        "echo",
        "later",
        "pick",
        "serveronly",
        "slow",
        "upload",
    ]
    assert [c["name"] for c in fake.commands[fake.guild_id]] == ["form"]
    assert fake.commands[fake.guild_id][0]["guild_id"] == str(fake.guild_id)
    fetched = await bot.tree.fetch_commands()
    assert {c.id for c in fetched} == {int(c["id"]) for c in fake.commands[None]}

    # Discord's own validation of the command payload
    with pytest.raises(discord.HTTPException) as info:
        await bot.http.bulk_upsert_global_commands(
            fake.application_id,
            payload=[
                {"name": "Bad Name", "description": "x", "type": 1},
                {"name": "ok", "description": "", "type": 1},
                {
                    "name": "opts",
                    "description": "d",
                    "type": 1,
                    "options": [
                        {"name": "a", "description": "d", "type": 3},
                        {"name": "b", "description": "d", "type": 3, "required": True},
                    ],
                },
            ],
        )
    assert info.value.status == 400 and info.value.code == 50035
    errors = json.loads(json.dumps(fake.requests[-1].response))["errors"]
    assert errors["0"]["name"]["_errors"][0]["code"] == "APPLICATION_COMMAND_INVALID_NAME"
    assert errors["1"]["description"]["_errors"][0]["code"] == "BASE_TYPE_BAD_LENGTH"
    assert "required" in errors["2"]["options"]["1"]
    assert len(fake.commands[None]) == 7  # unchanged

    # a wrong token is refused like Discord does
    other = discord.Client(intents=discord.Intents.none())
    with pytest.raises(discord.LoginFailure):
        await other.login("not-the-token")
    await other.close()
    assert fake.requests[-1].status == 401 and fake.requests[-1].response == {"message": "401: Unauthorized", "code": 0}


async def test_defer_followup_edits_original_then_patch(env: Env) -> None:
    fake, bot = await env()
    it = await fake.invoke_slash("echo", {"text": "hi", "repeat": 2})
    await finished(fake, bot, "echo")

    callback, follow, edit = it.requests
    assert callback.path == f"/interactions/{it.id}/{it.token}/callback" and callback.json == {"type": 5}
    assert callback.query == {"with_response": "1"} and callback.status == 200
    assert callback.response["interaction"]["response_message_loading"] is True
    assert it.callback is callback

    assert follow.method == "POST" and follow.path == f"/webhooks/{fake.application_id}/{it.token}"
    assert follow.query["wait"] == "1"
    assert [p.name for p in follow.parts] == ["payload_json", "files[0]"]
    assert follow.files[0].filename == "echo_0.png" and follow.files[0].data == PNG
    assert follow.json["content"] == "hihi" and follow.json["attachments"] == [{"id": 0, "filename": "echo_0.png"}]
    assert follow.response["id"] == str(it.original_id)  # the first followup after a defer edits @original
    assert it.followups == []

    assert edit.method == "PATCH" and edit.path.endswith("/messages/@original")
    assert [p.name for p in edit.parts] == ["payload_json", "files[0]"]
    assert edit.files[0].filename == "echo_1.txt" and edit.files[0].data == b"second file"
    kept = follow.response["attachments"][0]["id"]
    assert [str(a["id"]) for a in edit.json["attachments"]] == [kept, "0"]

    original = it.original
    assert original is not None and original["content"] == "hihi"
    assert [a["filename"] for a in original["attachments"]] == ["echo_0.png", "echo_1.txt"]
    assert original["flags"] == 0 and original["components"][0]["components"][0]["custom_id"] == "echo:again"
    assert original["interaction_metadata"]["name"] == "echo"

    # the bot saw its own message being created (loading) and updated
    created = [m for m in sent_events(fake, "MESSAGE_CREATE") if m["id"] == str(it.original_id)]
    assert created and created[0]["flags"] == 128
    assert sent_events(fake, "MESSAGE_UPDATE")[-1]["attachments"] == original["attachments"]

    # a second initial response is refused
    async with aiohttp.ClientSession() as session:
        url = f"{fake.url}/api/v10/interactions/{it.id}/{it.token}/callback"
        async with session.post(url, json={"type": 4, "data": {"content": "again"}}) as resp:
            assert resp.status == 400 and resp.headers["Content-Type"] == "application/json"
            assert (await resp.json())["code"] == 40060


async def test_button_click_updates_message(env: Env) -> None:
    fake, bot = await env()
    it = await fake.invoke_slash("echo", {"text": "hi"})
    await finished(fake, bot, "echo")
    assert it.original_id is not None
    click = await fake.click(it.original_id, "echo:again")
    await finished(fake, bot, "echo:again")
    assert click.type == 3 and click.data == {"custom_id": "echo:again", "component_type": 2}
    assert click.payload["message"]["id"] == str(it.original_id)
    assert click.callback is not None and click.callback.json["type"] == 7
    assert click.callback.json["data"]["content"] == "clicked"
    assert click.callback.response["resource"]["message"]["id"] == str(it.original_id)
    assert fake.messages[it.original_id]["content"] == "clicked"
    assert click.original_id == it.original_id
    with pytest.raises(AssertionError, match="no component"):
        await fake.click(it.original_id, "nope")


async def test_modal_round_trip(env: Env) -> None:
    fake, bot = await env()
    it = await fake.invoke_slash("form")
    await fake.wait_for(lambda: it.modal is not None)
    modal = it.modal
    assert modal is not None and modal["title"] == "Form"
    assert [c["type"] for c in modal["components"]] == [1, 18]  # an action row and a label, as discord.py sent them

    sub = await fake.submit_modal(it, {"Title": "Hello", "body": "World"})  # by label and by custom_id
    await finished(fake, bot, "form:submit")
    assert sub.type == 5 and sub.data["custom_id"] == modal["custom_id"]
    row, label = sub.data["components"]
    assert row == {"type": 1, "components": [{"type": 4, "custom_id": "title", "value": "Hello"}]}
    assert label == {"type": 18, "component": {"type": 4, "custom_id": "body", "value": "World"}}

    callback, edit = sub.requests
    assert callback.json["type"] == 4 and callback.json["data"]["content"] == "Hello: World"
    assert callback.response["resource"]["message"]["id"] == str(sub.original_id)
    assert edit.method == "PATCH" and edit.json["content"] == "Hello: World (edited)"
    assert sub.original is not None and sub.original["content"] == "Hello: World (edited)"

    with pytest.raises(AssertionError, match="no inputs"):
        await fake.submit_modal(it, {"Nope": "x", "Title": "y"})
    with pytest.raises(AssertionError, match="required"):
        await fake.submit_modal(it, {"body": "only the optional one"})


async def test_autocomplete(env: Env) -> None:
    fake, bot = await env()
    choices = await fake.autocomplete("pick", {"fruit": "ap"}, focused="fruit")
    assert choices == [{"name": "apple", "value": "apple"}, {"name": "apricot", "value": "apricot"}]
    it = fake.interactions[-1]
    assert it.type == 4 and it.data["options"] == [{"name": "fruit", "type": 3, "value": "ap", "focused": True}]
    assert it.callback is not None and it.callback.json["type"] == 8

    picked = await fake.invoke_slash("pick", {"fruit": "apple"})
    await finished(fake, bot, "pick")
    assert picked.original is not None and picked.original["content"] == "picked apple"

    in_dm = await fake.invoke_slash("pick", {"fruit": "cherry"}, guild=False)
    await fake.wait_for(lambda: bot.completed.count("pick") == 2)
    assert "member" not in in_dm.payload and in_dm.payload["user"] == fake.default_user
    assert in_dm.original is not None and in_dm.original["channel_id"] == in_dm.payload["channel_id"]
    assert in_dm.original["content"] == "picked cherry"


async def test_attachment_option_and_cdn_read_back(env: Env) -> None:
    fake, bot = await env()
    it = await fake.invoke_slash("upload", attachments={"file": ("cat.png", PNG)})
    await finished(fake, bot, "upload")
    attachment = next(iter(it.data["resolved"]["attachments"].values()))
    assert attachment["url"] == fake.cdn_url(int(attachment["id"]), "cat.png")
    assert attachment["size"] == 73 and attachment["content_type"] == "image/png"
    cdn = next(r for r in fake.requests if r.path.startswith("/cdn/"))
    assert cdn.path == f"/cdn/attachments/{attachment['id']}/cat.png" and cdn.status == 200 and cdn.response == PNG
    assert it.original is not None and it.original["content"] == "cat.png: 73 bytes"
    assert it.original["flags"] == 64  # ephemeral, so not dispatched over the gateway
    assert str(it.original_id) not in {m["id"] for m in sent_events(fake, "MESSAGE_CREATE")}

    # a file the bot uploaded itself can be read back through discord.py
    echoed = await fake.invoke_slash("echo", {"text": "file"})
    await finished(fake, bot, "echo")
    channel = bot.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel) and echoed.original_id is not None
    message = await channel.fetch_message(echoed.original_id)
    assert [await a.read() for a in message.attachments] == [PNG, b"second file"]


async def test_initial_response_deadline(env: Env) -> None:
    fake, bot = await env(interaction_deadline=0.3)
    it = await fake.invoke_slash("slow")
    error = await failed(fake, bot)
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert it.callback is not None and it.callback.status == 404
    assert it.callback.response == {"message": "Unknown interaction", "code": 10062}
    assert it.original_id is None


async def test_expired_token(env: Env) -> None:
    fake, bot = await env(token_ttl=0.5)
    it = await fake.invoke_slash("later")
    error = await failed(fake, bot)
    assert isinstance(error, discord.HTTPException) and error.status == 401 and error.code == 50027
    callback, follow = it.requests
    assert callback.json == {"type": 5, "data": {"flags": 64}} and callback.status == 200
    assert follow.status == 401 and follow.response["message"] == "Invalid Webhook Token"
    assert it.original is not None and it.original["flags"] == 64 | 128  # still loading, ephemeral


async def test_message_limits(env: Env) -> None:
    fake, bot = await env()
    it = await fake.invoke_slash("echo", {"text": "x" * 2001})
    error = await failed(fake, bot)
    assert isinstance(error, discord.HTTPException) and error.status == 400 and error.code == 50035
    assert "content" in error.text
    follow = it.requests[-1]
    assert follow.response["errors"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"

    channel = bot.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel)
    files = [discord.File(io.BytesIO(b"x"), f"f{i}.txt") for i in range(11)]
    with pytest.raises(discord.HTTPException) as info:
        await channel.send("many", files=files)
    assert info.value.code == 50035 and "attachments" in info.value.text
    assert len(fake.requests[-1].files) == 11

    with pytest.raises(discord.HTTPException) as info:
        await channel.send(embeds=[discord.Embed(description="d" * 3000), discord.Embed(description="e" * 3001)])
    assert info.value.code == 50035 and fake.requests[-1].response["errors"]["embeds"]

    with pytest.raises(discord.HTTPException) as info:
        await channel.send()
    assert info.value.status == 400 and info.value.code == 50006

    rows = [{"type": 1, "components": [{"type": 2, "style": 1, "label": "b", "custom_id": f"b{i}"}]} for i in range(6)]
    route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=fake.channel_id)
    with pytest.raises(discord.HTTPException) as info:
        await bot.http.request(route, json={"content": "rows", "components": rows})
    assert info.value.code == 50035 and "components" in fake.requests[-1].response["errors"]

    sent = await channel.send("ok")
    assert fake.messages[sent.id]["content"] == "ok" and fake.requests[-1].json["content"] == "ok"
    user_message = await fake.send_user_message("hello from a member")
    with pytest.raises(discord.Forbidden) as forbidden:
        await channel.get_partial_message(int(user_message["id"])).edit(content="not mine")
    assert forbidden.value.code == 50005
    await sent.delete()
    assert sent.id not in fake.messages

    member = await bot.fetch_user(int(fake.default_user["id"]))
    dm = await member.send("a direct message")
    assert fake.messages[dm.id]["content"] == "a direct message"
    assert fake.channels[dm.channel.id]["type"] == 1


async def test_oversize_file(env: Env) -> None:
    fake, bot = await env(attachment_size_limit=1024)
    channel = bot.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.HTTPException) as info:
        await channel.send(file=discord.File(io.BytesIO(bytes(1025)), "big.bin"))
    assert info.value.status == 413 and info.value.code == 40005
    assert fake.requests[-1].files[0].filename == "big.bin" and len(fake.requests[-1].files[0].data) == 1025
    ok = await channel.send(file=discord.File(io.BytesIO(bytes(1024)), "fits.bin"))
    assert ok.attachments[0].size == 1024


async def test_rate_limited_patch_is_retried(env: Env) -> None:
    fake, bot = await env()
    fake.inject_rate_limit("PATCH", r"/messages/@original$", retry_after=0.2)
    it = await fake.invoke_slash("echo", {"text": "hi"})
    await finished(fake, bot, "echo")
    patches = [r for r in it.requests if r.method == "PATCH"]
    assert [r.status for r in patches] == [429, 200]
    assert patches[0].response == {"message": "You are being rate limited.", "retry_after": 0.2, "global": False}
    assert patches[1].at - patches[0].at >= 0.2
    assert patches[1].files[0].data == patches[0].files[0].data == b"second file"

    # the bot-token REST path (HTTPClient.request) retries too
    fake.inject_rate_limit("POST", r"/channels/\d+/messages$", retry_after=0.1)
    channel = bot.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("after a 429")
    assert [r.status for r in fake.requests[-2:]] == [429, 200] and sent.content == "after a 429"


async def test_injected_error(env: Env) -> None:
    fake, bot = await env()
    fake.inject_error("POST", r"/channels/\d+/messages$", status=403, code=50013, message="Missing Permissions")
    channel = bot.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.Forbidden) as info:
        await channel.send("nope")
    assert info.value.code == 50013
    await channel.send("now it works")
    assert [r.status for r in fake.requests[-2:]] == [403, 200]


async def test_invoke_slash_refuses_unsynced_and_bad_options(env: Env) -> None:
    fake, bot = await env(sync=False)
    with pytest.raises(AssertionError, match="never synced"):
        await fake.invoke_slash("echo", {"text": "hi"})
    await bot.tree.sync()  # global only
    with pytest.raises(AssertionError, match="never synced"):
        await fake.invoke_slash("form")
    with pytest.raises(AssertionError, match="repeat"):
        await fake.invoke_slash("echo", {"text": "hi", "repeat": 9})
    with pytest.raises(AssertionError, match="required"):
        await fake.invoke_slash("echo", {})
    with pytest.raises(AssertionError, match="unknown options"):
        await fake.invoke_slash("echo", {"text": "hi", "loud": True})
    with pytest.raises(AssertionError, match="expected str"):
        await fake.invoke_slash("echo", {"text": 5})
    assert not fake.interactions


async def test_gateway_resume(env: Env) -> None:
    fake, bot = await env()
    await fake.disconnect_gateway()
    it = await fake.invoke_slash("echo", {"text": "while away"})  # buffered and replayed on RESUME
    await fake.wait_for(lambda: fake.resumes == 1)
    resume = next(f for way, f in fake.gateway_log if way == "recv" and f["op"] == 6)
    ready = sent_events(fake, "READY")[0]
    assert resume["d"]["session_id"] == ready["session_id"] and resume["d"]["token"] == fake.token
    assert len([f for way, f in fake.gateway_log if way == "recv" and f["op"] == 2]) == 1  # no new IDENTIFY
    await finished(fake, bot, "echo")
    assert it.original is not None and it.original["content"] == "while away"


async def test_unhandled_endpoint_is_recorded(env: Env) -> None:
    fake, bot = await env()
    with pytest.raises(discord.NotFound):
        await bot.http.request(discord.http.Route("GET", "/guilds/{guild_id}/bans", guild_id=fake.guild_id))
    assert [(r.method, r.path) for r in fake.unhandled] == [("GET", f"/guilds/{fake.guild_id}/bans")]
    fake.unhandled.clear()


async def test_patches_are_restored() -> None:
    before = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    async with FakeDiscord() as fake:
        assert fake.url + "/api/v10" == discord.http.Route.BASE
        assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == fake.url.replace("http", "ws") + "/"
    assert before == (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)


async def test_start_bot_reports_a_dead_bot() -> None:
    async with FakeDiscord() as fake:
        fake.inject_error("GET", r"^/users/@me$", status=401, code=0, message="401: Unauthorized")
        bot = ExampleBot(fake.guild_id)
        with pytest.raises(RuntimeError, match="LoginFailure"):
            await start_bot(bot, fake)
        await bot.close()
        slow_bot = commands.Bot(command_prefix=commands.when_mentioned, intents=discord.Intents.default())
        with pytest.raises(ValueError, match="guild_ready_timeout"):
            await start_bot(slow_bot, fake)


async def test_commands_are_delivered_only_where_discord_offers_them(env: Env) -> None:
    fake, bot = await env()
    synced = {c["name"]: c for c in fake.commands[None]}
    # As Discord stores them: contexts null when not given, integration_types [0] (guild install) by default
    assert (synced["pick"]["contexts"], synced["pick"]["integration_types"]) == (None, [0])
    assert (synced["serveronly"]["contexts"], synced["serveronly"]["integration_types"]) == ([0], [0])
    assert (synced["anywhere"]["contexts"], synced["anywhere"]["integration_types"]) == ([0, 1, 2], [0, 1])
    member, friend = fake.default_user, fake.make_user(name="friend")
    group = fake.add_private_channel(member, friend)

    with pytest.raises(NotOffered) as refused:
        await fake.invoke_slash("serveronly", guild=False)
    assert str(refused.value) == "Discord does not offer /serveronly in a DM with the bot: its contexts are [0]"
    with pytest.raises(NotOffered) as refused:  # contexts null: servers and the bot's DM only
        await fake.invoke_slash("pick", {"fruit": "apple"}, context=PRIVATE_CHANNEL, channel_id=group)
    assert str(refused.value) == "Discord does not offer /pick in a private channel: its contexts are [0, 1]"
    with pytest.raises(NotOffered) as refused:  # offered there, but only through an install to the member
        await fake.invoke_slash("anywhere", context=PRIVATE_CHANNEL, channel_id=group)
    assert str(refused.value) == (
        "Discord does not offer /anywhere in a private channel to a member who has the app installed to "
        "the server only: its integration_types are [0, 1]"
    )
    with pytest.raises(AssertionError, match="/form was never synced globally"):  # a guild's command
        await fake.invoke_slash("form", guild=False)
    assert fake.interactions == [] and bot.completed == []

    fake.install_for(member)
    it = await fake.invoke_slash("anywhere", context=PRIVATE_CHANNEL, channel_id=group)
    await finished(fake, bot, "anywhere")
    payload = it.payload
    assert "guild_id" not in payload and "member" not in payload and payload["user"] == member
    assert payload["context"] == 2 and payload["authorizing_integration_owners"] == {"1": member["id"]}
    assert payload["channel"]["type"] == 3 and payload["app_permissions"] == "442368"
    assert it.original is not None and it.original["channel_id"] == str(group)
    assert it.original["content"] == "private channel True, user install True"  # as discord.py read the payload

    click = await fake.click(it.original_id or 0, "echo:again", user=friend)
    await finished(fake, bot, "echo:again")
    assert click.payload["context"] == 2 and click.payload["authorizing_integration_owners"] == {"1": member["id"]}

    in_dm = await fake.invoke_slash("anywhere", context=BOT_DM)
    await fake.wait_for(lambda: bot.completed.count("anywhere") == 2)
    assert in_dm.payload["authorizing_integration_owners"] == {"0": "0", "1": member["id"]}

    # the bot is not in the group DM: its own token reaches nothing there
    with pytest.raises(discord.Forbidden) as forbidden:
        await bot.get_partial_messageable(group).send("hi")
    assert (forbidden.value.status, forbidden.value.code) == (403, 50001)

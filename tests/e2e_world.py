"""The end-to-end world: fake ComfyUI + fake Discord + the real bot, and helpers to read what Discord got."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot import ComfyBot
from core.config import Settings, load_settings
from tests.conftest import MODELS, WORKFLOWS
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.discord_fake import FakeDiscord, Interaction, start_bot, stop_bot

EPHEMERAL = 64
# The bot's own commands, in the order it syncs them after the workflow commands (the cogs' load order)
BUILT_IN_COMMANDS = [
    "queue",
    "cancel",
    "reload",
    "workflows",
    "servers",
    "access",
    "help",
    "preset",
    "history",
    "quota",
]


@dataclass
class World:
    comfy: FakeComfyUI
    discord: FakeDiscord
    bot: ComfyBot
    settings: Settings
    task: asyncio.Task[None] | None = None

    async def start_bot(self) -> ComfyBot:
        """Start a new bot process (same settings, same job store) against the same fakes."""
        self.bot = ComfyBot(self.settings, guild_ready_timeout=0)
        self.bot.status_edit_interval = 0.1
        self.task = await start_bot(self.bot, self.discord)
        return self.bot

    async def stop_bot(self) -> None:
        """Stop the bot as a crash would leave things: nothing is finished on the way out."""
        if self.task is not None:
            task, self.task = self.task, None
            await stop_bot(self.bot, task)

    async def restart_bot(self) -> ComfyBot:
        await self.stop_bot()
        return await self.start_bot()

    def audio_name(self, ext: str = "mp3", prefix: str = "ComfyUI", counter: int = 1) -> str:
        """The name the fake ComfyUI gives a saved audio file: newer servers drop the trailing `_`."""
        return f"{prefix}_{counter:05}{'' if self.comfy.profile.plain_audio_names else '_'}.{ext}"

    def prompts(self) -> list[dict[str, Any]]:
        """What reached ComfyUI's POST /prompt."""
        return [r.json for r in self.comfy.requests if r.method == "POST" and r.path == "/prompt"]

    def private_replies(self, it: Interaction) -> list[str]:
        """Messages only the member saw: an ephemeral answer (it is @original) or ephemeral followups."""
        texts = []
        ids = ([it.original_id] if it.original_id else []) + it.followups  # an ephemeral defer's answer edits @original
        for message_id in ids:
            message = self.discord.messages.get(message_id)
            if message and message["flags"] & EPHEMERAL and message["content"]:
                texts.append(message["content"])
        return texts


Start = Callable[..., Awaitable[World]]


@pytest.fixture
async def start(
    caplog: pytest.LogCaptureFixture, tmp_path_factory: pytest.TempPathFactory, comfy_profile: str
) -> AsyncIterator[Start]:
    """Start fake ComfyUI (in the test's profile), fake Discord and the bot; afterwards check nothing went
    unhandled or logged an error."""
    caplog.set_level(logging.INFO)
    stack: list[Callable[[], Awaitable[None]]] = []
    fakes: list[FakeDiscord] = []

    async def _start(
        *,
        channels: tuple[str, ...] = (),
        nsfw_channels: tuple[str, ...] = (),
        workflows: Path = WORKFLOWS,
        admin_role_id: int | None = None,
        members: tuple[dict[str, Any], ...] = (),
        jobs_db: Path | None = None,
        settings_env: dict[str, str] | None = None,
        **discord_options: Any,
    ) -> World:
        settings_env = settings_env or {}
        comfy = FakeComfyUI(models=MODELS, node_delay=0.01, profile=comfy_profile)
        await comfy.start()
        stack.append(comfy.stop)
        fake = FakeDiscord(**discord_options)
        for name in channels:
            fake.add_text_channel(name)
        for name in nsfw_channels:
            fake.add_text_channel(name, nsfw=True)
        if admin_role_id:
            fake.roles.append({**fake.roles[0], "id": str(admin_role_id), "name": "bot admins"})
        for member in members:
            fake.make_user(int(member["id"]), member["username"])
            fake._members[int(member["id"])]["roles"] = [str(r) for r in member.get("roles", ())]
        await fake.start()
        stack.append(fake.stop)
        fakes.append(fake)
        env = {
            "DISCORD_TOKEN": fake.token,
            "COMFYUI_URL": comfy.url,
            "WORKFLOWS_DIR": str(workflows),
            "DEV_GUILD_ID": str(fake.guild_id),
            "ADMIN_ROLE_ID": str(admin_role_id or ""),
            "JOB_TIMEOUT": "30",
            "JOBS_DB": str(jobs_db or tmp_path_factory.mktemp("db") / "jobs.sqlite3"),
            "RESULT_VIEW": "classic",  # the tests of the gallery ask for it; the others read classic content
            **settings_env,
        }
        settings = load_settings(env, require_token=True)
        world = World(comfy, fake, ComfyBot(settings), settings)
        await world.start_bot()
        stack.append(world.stop_bot)
        return world

    yield _start
    for stop in reversed(stack):
        await stop()
    for fake in fakes:
        assert fake.unhandled == []
    # caplog.records holds only this teardown's records: read the test's own phases too
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    errors = [r for r in records if r.name.startswith("discord") and r.levelno >= logging.ERROR]
    assert errors == []


async def finished(world: World, it: Interaction, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until the job's message carries its result, and return that message."""

    def done() -> bool:
        original = it.original
        return original is not None and original["content"].startswith("**/") and " · " in original["content"]

    await world.discord.wait_for(done, timeout)
    assert it.original is not None
    return it.original

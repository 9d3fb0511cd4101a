"""The floor: the least any discord.py + aiohttp bot does per job, to set next to the bot's CPU per job.

An unmodified `discord.Client` with one app command, /image, run in the bench's process against the same
fakes and member load as the bot. Per job it defers, POSTs the prompt (workflows/image.json with the
member's text, the bot's body shape) to one of the fake ComfyUI servers in turn, waits for that prompt's
`executing null` on the server's one shared websocket (its files from the `executed` messages before it),
GETs each file from /view and edits the original response with them. No store, limits, status edits, i18n,
checks or retries: what is left is what discord.py, aiohttp and asyncio cost, the floor of this design.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import itertools
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
from discord import app_commands

from tests.conftest import WORKFLOWS

log = logging.getLogger(__name__)

PROMPT_NODE = "6"  # image.json's positive prompt, where the bot's /image puts the member's text
FileRef = dict[str, str]  # one output file as ComfyUI names it: filename, subfolder, type


@dataclass(slots=True)
class Outputs:
    """Collect each prompt's output files from ComfyUI's websocket messages until its `executing null`."""

    files: dict[str, list[FileRef]] = field(default_factory=dict)

    def feed(self, message: Any) -> tuple[str, list[FileRef]] | None:
        """Take one decoded message; (prompt id, its files) once that prompt has finished, else None."""
        data = message.get("data") if isinstance(message, dict) else None
        if not isinstance(data, dict) or not isinstance(prompt_id := data.get("prompt_id"), str):
            return None
        kind = message.get("type")
        if kind == "executed" and isinstance(output := data.get("output"), dict):
            found = self.files.setdefault(prompt_id, [])
            for items in output.values():
                if isinstance(items, list):
                    found += [_ref(item) for item in items if isinstance(item, dict) and "filename" in item]
        elif kind == "executing" and data.get("node") is None:
            return prompt_id, self.files.pop(prompt_id, [])
        return None


def _ref(item: dict[str, Any]) -> FileRef:
    """The /view query of one output file (newer ComfyUI adds keys such as its size to the item)."""
    return {
        key: str(item.get(key, default)) for key, default in (("filename", ""), ("subfolder", ""), ("type", "output"))
    }


class Server:
    """One ComfyUI server: one websocket shared by every job, prompts submitted under its clientId."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self.outputs = Outputs()
        self.waiting: dict[str, asyncio.Future[list[FileRef]]] = {}
        self.reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        ws = await self.session.ws_connect(f"{self.url}/ws", params={"clientId": self.client_id})
        self.reader = asyncio.create_task(self._read(ws), name=f"floor ws {self.url}")

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async with ws:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue  # previews
                finished = self.outputs.feed(json.loads(message.data))
                if finished and (future := self.waiting.pop(finished[0], None)) and not future.done():
                    future.set_result(finished[1])

    async def run(self, prompt: dict[str, Any]) -> list[tuple[str, bytes]]:
        """Submit `prompt`, wait for it to finish and download its files: (filename, bytes) each."""
        prompt_id = str(uuid.uuid4())
        future = self.waiting[prompt_id] = asyncio.get_running_loop().create_future()
        body = {"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id}
        async with self.session.post(f"{self.url}/prompt", json=body) as response:
            response.raise_for_status()
            await response.read()
        files = []
        for ref in await future:
            async with self.session.get(f"{self.url}/view", params=ref) as response:
                response.raise_for_status()
                files.append((ref["filename"], await response.read()))
        return files

    async def close(self) -> None:
        if self.reader:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


class FloorBot(discord.Client):
    """A plain discord.py client whose /image runs workflows/image.json once and sends back its files."""

    def __init__(self, comfy_urls: list[str], guild_id: int) -> None:
        super().__init__(intents=discord.Intents(guilds=True))  # the bot's intents
        self.tree = app_commands.CommandTree(self)
        self.comfy_urls = comfy_urls
        self.guild = discord.Object(guild_id)
        self.workflow = json.loads((WORKFLOWS / "image.json").read_text())
        self.servers: list[Server] = []
        self.turn: itertools.cycle[Server] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.delivered = 0  # files sent to Discord

        @self.tree.command(name="image", description="Generate an image", guild=self.guild)
        async def image(interaction: discord.Interaction, prompt: str) -> None:
            await self.image(interaction, prompt)

    async def setup_hook(self) -> None:
        self.session = aiohttp.ClientSession()
        self.servers = [Server(self.session, url) for url in self.comfy_urls]
        await asyncio.gather(*(server.connect() for server in self.servers))
        self.turn = itertools.cycle(self.servers)
        await self.tree.sync(guild=self.guild)

    async def image(self, interaction: discord.Interaction, text: str) -> None:
        """Defer, run the prompt on the next server, edit the response with its files."""
        assert self.turn is not None, "setup_hook has not run"
        await interaction.response.defer()
        prompt = copy.deepcopy(self.workflow)
        prompt[PROMPT_NODE]["inputs"]["text"] = text
        files = await next(self.turn).run(prompt)
        attachments = [discord.File(io.BytesIO(data), filename=name) for name, data in files]
        await interaction.edit_original_response(attachments=attachments)
        self.delivered += len(attachments)

    async def close(self) -> None:
        await asyncio.gather(*(server.close() for server in self.servers))
        if self.session:
            await self.session.close()
        await super().close()


@contextlib.asynccontextmanager
async def running_floor(info: dict[str, Any], timeout: float = 30) -> AsyncIterator[FloorBot]:
    """A FloorBot connected to the fakes whose addresses are in `info` (FakesProcess.info), ready for jobs."""
    client = FloorBot(info["comfy_urls"], info["guild_id"])
    task = asyncio.create_task(client.start(info["token"]), name="floor bot")
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not client.is_ready():  # wait_until_ready() refuses to wait before login has begun
            if task.done():
                raise RuntimeError(f"the floor client stopped before READY: {task.exception()!r}")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the floor client: no READY within {timeout:.0f} s")
            await asyncio.sleep(0.02)
        yield client
    finally:
        await client.close()
        with contextlib.suppress(Exception):
            await task

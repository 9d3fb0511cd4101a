"""Run the real `bot.py` in its own process, pointed at a fake Discord (`python -m tests.fakes.bot_process URL`).

Used by the kill -9 test: the fake Discord lives in the test process, and this process is the whole bot,
settings from the environment, exactly as `python bot.py` starts it.
"""

from __future__ import annotations

import sys

import discord.gateway
import discord.http
import yarl

import bot


def main(fake_url: str) -> int:
    discord.http.Route.BASE = f"{fake_url}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake_url.replace("http://", "ws://", 1) + "/")
    return bot.main([])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

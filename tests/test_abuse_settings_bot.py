"""How the bot reports a job store it cannot use (issue 11 item 6): one line, exit code 2, no traceback."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import bot
from core.config import load_settings
from core.jobs.store import JobStore
from tests.conftest import WORKFLOWS
from tests.test_config import GOOD_TOKEN

pytestmark = pytest.mark.abuse


def _run_offline(path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """run_bot as `python bot.py` calls it, with the Discord login replaced by what follows it: setup_hook."""
    settings = load_settings(
        {"DISCORD_TOKEN": GOOD_TOKEN, "WORKFLOWS_DIR": str(WORKFLOWS), "JOBS_DB": str(path)}, require_token=True
    )

    async def login_offline(self: bot.ComfyBot, token: str) -> None:
        await self.setup_hook()

    monkeypatch.setattr(bot.ComfyBot, "login", login_offline)
    return bot.run_bot(settings)


def test_a_jobs_db_held_by_another_bot_is_one_line_naming_its_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "jobs.sqlite3"
    holder = asyncio.run(JobStore(path).open())
    try:
        assert _run_offline(path, monkeypatch) == 2
    finally:
        asyncio.run(holder.close())
    assert capsys.readouterr().err == (
        f"The job store JOBS_DB={path} is in use by process {os.getpid()}: another copy of the bot is running on "
        "it. Stop that copy first, or give this one its own JOBS_DB (two bots on one store would run and deliver "
        "the same jobs twice).\n"
    )


def test_a_jobs_db_that_is_a_folder_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "jobs.sqlite3"
    path.mkdir()
    assert _run_offline(path, monkeypatch) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"The job store JOBS_DB={path} cannot be used: it is a folder. Set JOBS_DB to a file in it, "
        f"e.g. {path}/jobs.sqlite3.\n"
    )
    assert captured.out == ""

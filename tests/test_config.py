from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import ConfigError, load_settings, redact_url
from tests.conftest import ROOT

GOOD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"


def test_defaults_apply_when_only_the_token_is_set() -> None:
    settings = load_settings(
        {"DISCORD_TOKEN": GOOD_TOKEN, "WORKFLOWS_DIR": str(ROOT / "workflows")}, require_token=True
    )
    assert settings.comfyui_urls == ("http://127.0.0.1:8188",)
    assert settings.dev_guild_id is None
    assert settings.log_level == "INFO"
    assert settings.job_timeout == 3600.0


def test_every_bad_key_is_named_in_one_error() -> None:
    env = {
        "DISCORD_TOKEN": "Bot abc",
        "COMFYUI_URL": "localhost:8188",
        "WORKFLOWS_DIR": "/nonexistent/folder",
        "DEV_GUILD_ID": "my server",
        "LOG_LEVEL": "loud",
        "JOB_TIMEOUT": "-5",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(env, require_token=True)
    problems = caught.value.problems
    assert [p.split(" ")[0] for p in problems] == [
        "DISCORD_TOKEN",
        "COMFYUI_URL",
        "WORKFLOWS_DIR",
        "DEV_GUILD_ID",
        "LOG_LEVEL",
        "JOB_TIMEOUT",
    ]
    assert caught.value.user_message.startswith("The configuration has 6 problem(s):\n  - DISCORD_TOKEN")
    assert "Bot abc" not in caught.value.user_message


def test_missing_token_says_where_to_get_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"WORKFLOWS_DIR": str(ROOT / "workflows")}, require_token=True)
    assert caught.value.problems == [
        "DISCORD_TOKEN is not set. Create a bot at https://discord.com/developers/applications "
        "(Bot > Reset Token) and put it in .env as DISCORD_TOKEN=..."
    ]


def test_several_servers_and_credentials_are_redacted() -> None:
    env = {"COMFYUI_URL": "http://a:8188, http://user:secret@b:8188/", "WORKFLOWS_DIR": str(ROOT / "workflows")}
    settings = load_settings(env, require_token=False)
    assert settings.comfyui_urls == ("http://a:8188", "http://user:secret@b:8188")
    assert redact_url(settings.comfyui_urls[1]) == "http://***@b:8188"


def _run_bot(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "COMFYUI_URL", "WORKFLOWS_DIR")}
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bot_without_token_explains_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    proc = _run_bot([], tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("The configuration has 1 problem(s):\n  - DISCORD_TOKEN is not set.")
    assert "see .env.example" in proc.stderr


def test_queue_settings_are_read_and_checked() -> None:
    env = {
        "WORKFLOWS_DIR": str(ROOT / "workflows"),
        "COOLDOWN_SECONDS": "30",
        "MAX_JOBS_PER_SERVER": "1",
        "MAX_PENDING_PER_MEMBER": "5",
        "JOBS_DB": "/tmp/x/jobs.sqlite3",
    }
    settings = load_settings(env, require_token=False)
    assert (settings.cooldown_seconds, settings.max_jobs_per_server, settings.max_pending_per_member) == (30, 1, 5)
    assert str(settings.jobs_db) == "/tmp/x/jobs.sqlite3"
    with pytest.raises(ConfigError) as caught:
        load_settings({**env, "COOLDOWN_SECONDS": "-1", "MAX_JOBS_PER_SERVER": "0"}, require_token=False)
    assert caught.value.problems == [
        "MAX_JOBS_PER_SERVER must be a positive number of jobs (default 4).",
        "COOLDOWN_SECONDS must be 0 or more seconds (default 0).",
    ]

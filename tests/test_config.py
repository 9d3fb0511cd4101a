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


def test_redaction_keeps_the_host_as_written() -> None:
    assert redact_url("http://user:p@ss@[::1]:8188/comfy") == "http://***@[::1]:8188/comfy"
    assert redact_url("https://Host.example") == "https://Host.example"


def _run_bot(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
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
        "MAX_JOBS_PER_SERVER must be a whole number of jobs from 1 to 1,000, written with the digits 0-9 only "
        "(default 4); got '0'.",
        "COOLDOWN_SECONDS must be a number of seconds from 0 to 2,592,000, written like 90 or 2.5 (default 0); "
        "got '-1'.",
    ]


def test_new_limits_have_their_defaults_and_can_be_set() -> None:
    base = {"WORKFLOWS_DIR": str(ROOT / "workflows")}
    settings = load_settings(base, require_token=False)
    assert (settings.max_queued_jobs, settings.max_outputs_per_job, settings.max_image_pixels) == (100, 20, 100_000_000)
    assert (settings.max_job_output_mb, settings.max_job_output_bytes) == (500, 500 * 2**20)
    env = {
        **base,
        "MAX_QUEUED_JOBS": "7",
        "MAX_OUTPUTS_PER_JOB": "3",
        "MAX_JOB_OUTPUT_MB": "1.5",
        "MAX_IMAGE_PIXELS": "16777216",
        "JOB_TIMEOUT": " 90 ",
        "LOG_LEVEL": "debug",
        "DEV_GUILD_ID": "81384788765712384",
        "ADMIN_ROLE_ID": "18446744073709551615",
        "COMFYUI_URL": "https://comfy.example.com:443/api/, http://[::1]:8188",
    }
    settings = load_settings(env, require_token=False)
    assert (settings.max_queued_jobs, settings.max_outputs_per_job, settings.max_image_pixels) == (7, 3, 16777216)
    assert settings.max_job_output_bytes == 1572864
    assert (settings.job_timeout, settings.log_level) == (90.0, "DEBUG")
    assert (settings.dev_guild_id, settings.admin_role_id) == (81384788765712384, 2**64 - 1)
    assert settings.comfyui_urls == ("https://comfy.example.com:443/api", "http://[::1]:8188")


# key -> unit, lowest, highest, default, whole number
RANGES = {
    "JOB_TIMEOUT": ("seconds", "1", "2,592,000", "3,600", False),
    "MAX_OUTPUT_MB": ("megabytes", "1", "100,000", "200", False),
    "MAX_JOB_OUTPUT_MB": ("megabytes", "1", "100,000", "500", False),
    "MAX_JOBS_PER_SERVER": ("jobs", "1", "1,000", "4", True),
    "MAX_PENDING_PER_MEMBER": ("jobs", "1", "1,000", "2", True),
    "MAX_QUEUED_JOBS": ("jobs", "1", "100,000", "100", True),
    "MAX_OUTPUTS_PER_JOB": ("files", "1", "1,000", "20", True),
    "MAX_IMAGE_PIXELS": ("pixels", "1,000,000", "1,000,000,000", "100,000,000", True),
    "COOLDOWN_SECONDS": ("seconds", "0", "2,592,000", "0", False),
}


def _out_of_range(key: str, got: str) -> str:
    unit, low, high, default, whole = RANGES[key]
    kind, shape = (
        (f"a whole number of {unit}", "written with the digits 0-9 only")
        if whole
        else (f"a number of {unit}", "written like 90 or 2.5")
    )
    return f"{key} must be {kind} from {low} to {high}, {shape} (default {default}); got {got}."


def _url(shown: str, problem: str) -> str:
    return (
        f"COMFYUI_URL has an invalid address {shown}: {problem}. Use http://host:port, e.g. http://127.0.0.1:8188 "
        "(several servers: separate them with commas)."
    )


GUILD = (
    "DEV_GUILD_ID must be a server id (17 to 20 digits; right-click the server > Copy Server ID with Developer "
    "Mode on), or left empty; got {}."
)
ROLE = (
    "ADMIN_ROLE_ID must be a role id (17 to 20 digits; Server Settings > Roles > right-click > Copy Role ID), "
    "or left empty; got {}."
)
PORT = "the port must be a number from 1 to 65535"
SCHEME = "it must start with http:// or https:// followed by a host name"
NOT_ASCII = "it contains spaces or characters that are not plain ASCII"
HOST = "the host must be a name like comfy.local or an IP address"

# Every setting with the bad values an admin could type, and the exact line they get. Before issue 11, 16 of
# these stopped the bot with a traceback (nan/inf/1e999 in counts and sizes, "²" in ids, "http://[::1") and
# the harmful rest were accepted silently (nan/inf timeouts, "2.5" jobs, "٣" ids, ports 0/99999/"abc").
BAD_VALUES: list[tuple[str, str, str]] = [
    ("COMFYUI_URL", "http://h:99999", _url("'http://h:99999'", PORT)),
    ("COMFYUI_URL", "http://h:abc", _url("'http://h:abc'", PORT)),
    ("COMFYUI_URL", "http://h:0", _url("'http://h:0'", PORT)),
    ("COMFYUI_URL", "http://h:+80", _url("'http://h:+80'", PORT)),
    ("COMFYUI_URL", "http://user:secret@h:99999", _url("'http://***@h:99999'", PORT)),
    ("COMFYUI_URL", "http://[::1", _url("'http://[::1'", "it cannot be read as a URL")),
    ("COMFYUI_URL", "localhost:8188", _url("'localhost:8188'", SCHEME)),
    ("COMFYUI_URL", "ftp://h", _url("'ftp://h'", SCHEME)),
    ("COMFYUI_URL", "http://h:٨١٨٨", _url("'http://h:٨١٨٨'", NOT_ASCII)),
    ("COMFYUI_URL", "http://my host", _url("'http://my host'", NOT_ASCII)),
    ("COMFYUI_URL", "http://h?x=1", _url("'http://h?x=1'", "it must not have a ?query or #fragment")),
    ("COMFYUI_URL", "http://a..b:8188", _url("'http://a..b:8188'", HOST)),
    ("COMFYUI_URL", "http://a\\b:8188", _url("'http://a\\\\b:8188'", HOST)),
    ("COMFYUI_URL", "http://-comfy:8188", _url("'http://-comfy:8188'", HOST)),
    ("DEV_GUILD_ID", "my server", GUILD.format("'my server'")),
    ("DEV_GUILD_ID", "٣", GUILD.format("'٣'")),
    ("DEV_GUILD_ID", "²", GUILD.format("'²'")),
    ("DEV_GUILD_ID", "123", GUILD.format("'123'")),
    ("DEV_GUILD_ID", "+81384788765712384", GUILD.format("'+81384788765712384'")),
    ("DEV_GUILD_ID", "99999999999999999999", GUILD.format("'99999999999999999999'")),
    ("ADMIN_ROLE_ID", "1e18", ROLE.format("'1e18'")),
    ("ADMIN_ROLE_ID", "81384788765712384.0", ROLE.format("'81384788765712384.0'")),
    ("LOG_LEVEL", "loud", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR (default INFO); got 'loud'."),
    ("LOG_LEVEL", "ınfo", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR (default INFO); got 'ınfo'."),
    ("JOB_TIMEOUT", "nan", _out_of_range("JOB_TIMEOUT", "'nan'")),
    ("JOB_TIMEOUT", "inf", _out_of_range("JOB_TIMEOUT", "'inf'")),
    ("JOB_TIMEOUT", "1e3", _out_of_range("JOB_TIMEOUT", "'1e3'")),
    ("JOB_TIMEOUT", "٣", _out_of_range("JOB_TIMEOUT", "'٣'")),
    ("JOB_TIMEOUT", "0", _out_of_range("JOB_TIMEOUT", "'0'")),
    ("JOB_TIMEOUT", "9" * 400, _out_of_range("JOB_TIMEOUT", f"'{'9' * 39}…'")),
    ("MAX_OUTPUT_MB", "nan", _out_of_range("MAX_OUTPUT_MB", "'nan'")),
    ("MAX_OUTPUT_MB", "inf", _out_of_range("MAX_OUTPUT_MB", "'inf'")),
    ("MAX_OUTPUT_MB", "1e999", _out_of_range("MAX_OUTPUT_MB", "'1e999'")),
    ("MAX_OUTPUT_MB", "1_000", _out_of_range("MAX_OUTPUT_MB", "'1_000'")),
    ("MAX_OUTPUT_MB", "+5", _out_of_range("MAX_OUTPUT_MB", "'+5'")),
    ("MAX_JOB_OUTPUT_MB", "-1", _out_of_range("MAX_JOB_OUTPUT_MB", "'-1'")),
    ("MAX_JOBS_PER_SERVER", "2.5", _out_of_range("MAX_JOBS_PER_SERVER", "'2.5'")),
    ("MAX_JOBS_PER_SERVER", "nan", _out_of_range("MAX_JOBS_PER_SERVER", "'nan'")),
    ("MAX_JOBS_PER_SERVER", "inf", _out_of_range("MAX_JOBS_PER_SERVER", "'inf'")),
    ("MAX_JOBS_PER_SERVER", "1e999", _out_of_range("MAX_JOBS_PER_SERVER", "'1e999'")),
    ("MAX_JOBS_PER_SERVER", "9" * 5000, _out_of_range("MAX_JOBS_PER_SERVER", f"'{'9' * 39}…'")),
    ("MAX_PENDING_PER_MEMBER", "1e3", _out_of_range("MAX_PENDING_PER_MEMBER", "'1e3'")),
    ("MAX_PENDING_PER_MEMBER", "٣", _out_of_range("MAX_PENDING_PER_MEMBER", "'٣'")),
    ("MAX_PENDING_PER_MEMBER", "+3", _out_of_range("MAX_PENDING_PER_MEMBER", "'+3'")),
    ("MAX_PENDING_PER_MEMBER", "1 000", _out_of_range("MAX_PENDING_PER_MEMBER", "'1 000'")),
    ("MAX_PENDING_PER_MEMBER", "nan", _out_of_range("MAX_PENDING_PER_MEMBER", "'nan'")),
    ("MAX_QUEUED_JOBS", "0", _out_of_range("MAX_QUEUED_JOBS", "'0'")),
    ("MAX_QUEUED_JOBS", "ten", _out_of_range("MAX_QUEUED_JOBS", "'ten'")),
    ("MAX_OUTPUTS_PER_JOB", "20.0", _out_of_range("MAX_OUTPUTS_PER_JOB", "'20.0'")),
    ("MAX_IMAGE_PIXELS", "4096*4096", _out_of_range("MAX_IMAGE_PIXELS", "'4096*4096'")),
    ("MAX_IMAGE_PIXELS", "1e8", _out_of_range("MAX_IMAGE_PIXELS", "'1e8'")),
    ("COOLDOWN_SECONDS", "nan", _out_of_range("COOLDOWN_SECONDS", "'nan'")),
    ("COOLDOWN_SECONDS", "inf", _out_of_range("COOLDOWN_SECONDS", "'inf'")),
    ("COOLDOWN_SECONDS", "-0.5", _out_of_range("COOLDOWN_SECONDS", "'-0.5'")),
]


@pytest.mark.abuse
@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES, ids=[f"{k}={v[:20]}" for k, v, _ in BAD_VALUES])
def test_each_bad_value_is_named_with_what_is_expected(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"WORKFLOWS_DIR": str(ROOT / "workflows"), key: value}, require_token=False)
    assert caught.value.problems == [message]
    assert "secret" not in caught.value.user_message


@pytest.mark.abuse
def test_all_bad_values_are_reported_at_once_with_exit_code_2_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    bad = {"JOB_TIMEOUT": "nan", "MAX_JOBS_PER_SERVER": "inf", "DEV_GUILD_ID": "²", "COMFYUI_URL": "http://[::1"}
    proc = _run_bot(["check"], tmp_path, **bad)
    assert proc.returncode == 2
    assert proc.stderr == (
        "The configuration has 4 problem(s):\n"
        f"  - {_url(repr('http://[::1'), 'it cannot be read as a URL')}\n"
        f"  - {GUILD.format(repr('²'))}\n"
        f"  - {_out_of_range('JOB_TIMEOUT', repr('nan'))}\n"
        f"  - {_out_of_range('MAX_JOBS_PER_SERVER', repr('inf'))}\n"
        "Settings are read from the environment and from .env (see .env.example).\n"
    )

"""Settings read from the environment (and `.env`), validated all at once."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from core.errors import ConfigError

DEFAULT_COMFYUI_URL = "http://127.0.0.1:8188"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Three dot-separated base64url parts; the exact lengths have changed over the years, so only the shape is checked.
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{10,}$")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the bot and the command line are configured with."""

    discord_token: str | None
    comfyui_urls: tuple[str, ...]
    workflows_dir: Path
    dev_guild_id: int | None
    admin_role_id: int | None
    log_level: str
    job_timeout: float
    max_output_mb: float
    jobs_db: Path
    max_pending_per_member: int
    max_jobs_per_server: int
    cooldown_seconds: float

    @property
    def max_output_bytes(self) -> int:
        return int(self.max_output_mb * 1024 * 1024)


def load_settings(env: Mapping[str, str], *, require_token: bool) -> Settings:
    """Build Settings from `env`, raising one ConfigError that names every bad key."""
    problems: list[str] = []

    def text(key: str) -> str:
        return env.get(key, "").strip()

    token = text("DISCORD_TOKEN") or None
    if token is None:
        if require_token:
            problems.append(
                "DISCORD_TOKEN is not set. Create a bot at https://discord.com/developers/applications "
                "(Bot > Reset Token) and put it in .env as DISCORD_TOKEN=..."
            )
    elif token.lower().startswith("bot ") or not _TOKEN_SHAPE.match(token):
        problems.append(
            "DISCORD_TOKEN does not look like a bot token (expected three dot-separated parts, "
            "no quotes, no 'Bot ' prefix). Copy it again from the Developer Portal (Bot > Reset Token)."
        )

    urls: list[str] = []
    for raw in (text("COMFYUI_URL") or DEFAULT_COMFYUI_URL).split(","):
        url = raw.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(
                f"COMFYUI_URL has an invalid address {redact_url(url)!r}: use http://host:port, "
                f"e.g. {DEFAULT_COMFYUI_URL} (several servers: separate them with commas)."
            )
        elif url in urls:
            problems.append(f"COMFYUI_URL lists {redact_url(url)} twice.")
        else:
            urls.append(url)

    workflows_dir = Path(text("WORKFLOWS_DIR") or "workflows")
    if not workflows_dir.is_dir():
        problems.append(
            f"WORKFLOWS_DIR points to {str(workflows_dir)!r}, which is not a folder. "
            "Set it to the folder holding your workflow .json and .toml files."
        )

    dev_guild_id = _discord_id(
        text("DEV_GUILD_ID"),
        "DEV_GUILD_ID must be a server id (digits only; right-click the server > Copy Server ID "
        "with Developer Mode on), or left empty.",
        problems,
    )
    admin_role_id = _discord_id(
        text("ADMIN_ROLE_ID"),
        "ADMIN_ROLE_ID must be a role id (digits only; Server Settings > Roles > right-click > Copy Role ID), "
        "or left empty.",
        problems,
    )

    log_level = (text("LOG_LEVEL") or "INFO").upper()
    if log_level not in LOG_LEVELS:
        problems.append(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}.")

    job_timeout = _number(text("JOB_TIMEOUT"), 3600.0, "JOB_TIMEOUT", "seconds", problems)
    max_output_mb = _number(text("MAX_OUTPUT_MB"), 200.0, "MAX_OUTPUT_MB", "megabytes", problems)
    max_pending = _number(text("MAX_PENDING_PER_MEMBER"), 2, "MAX_PENDING_PER_MEMBER", "jobs", problems)
    per_server = _number(text("MAX_JOBS_PER_SERVER"), 4, "MAX_JOBS_PER_SERVER", "jobs", problems)
    cooldown = _number(text("COOLDOWN_SECONDS"), 0, "COOLDOWN_SECONDS", "seconds", problems, zero_ok=True)

    if problems:
        raise ConfigError(problems)
    return Settings(
        discord_token=token,
        comfyui_urls=tuple(urls),
        workflows_dir=workflows_dir,
        dev_guild_id=dev_guild_id,
        admin_role_id=admin_role_id,
        log_level=log_level,
        job_timeout=job_timeout,
        max_output_mb=max_output_mb,
        jobs_db=Path(text("JOBS_DB") or "data/jobs.sqlite3"),
        max_pending_per_member=int(max_pending),
        max_jobs_per_server=int(per_server),
        cooldown_seconds=cooldown,
    )


def _number(raw: str, default: float, key: str, unit: str, problems: list[str], *, zero_ok: bool = False) -> float:
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0 or (value == 0 and not zero_ok):
        amount = f"0 or more {unit}" if zero_ok else f"a positive number of {unit}"
        problems.append(f"{key} must be {amount} (default {default:g}).")
        return default
    return value


def _discord_id(raw: str, problem: str, problems: list[str]) -> int | None:
    if not raw:
        return None
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    problems.append(problem)
    return None


def redact_url(url: str) -> str:
    """Drop any user:password from a URL so it can be logged or shown."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def setup_logging(level: str) -> None:
    """Configure the root logger once for the bot or the command line."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")

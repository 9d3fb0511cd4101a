"""Settings read from the environment (and `.env`), validated all at once."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core.errors import ConfigError
from core.servers import WHOLE, ServerConfig, load_servers, redact_url, url_problem
from core.text import cap

DEFAULT_COMFYUI_URL = "http://127.0.0.1:8188"
DEFAULT_SERVERS_FILE = "servers.toml"
# Defaults also used by the engine and the media code when they are built without settings (tests, tools).
DEFAULT_MAX_JOB_OUTPUT_MB = 500
DEFAULT_MAX_QUEUED_JOBS = 100
DEFAULT_MAX_OUTPUTS_PER_JOB = 20
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000  # above the largest usual outputs (8K is 33 MP)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Three dot-separated base64url parts; the exact lengths have changed over the years, so only the shape is checked.
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{10,}$")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", re.ASCII)
# A Discord snowflake: a 64-bit id whose timestamp puts it after Discord's first weeks, i.e. 17 to 20 digits.
_SNOWFLAKE = re.compile(r"[1-9][0-9]{16,19}", re.ASCII)
_MAX_SNOWFLAKE = 2**64 - 1
_SHOWN_VALUE = 40  # characters of a bad value quoted back to the admin
_MONTH = 30 * 24 * 3600
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Number:
    """How one numeric setting is read: its bounds, its unit and whether fractions make sense."""

    key: str
    default: float
    minimum: float
    maximum: float
    unit: str
    whole: bool


# Upper bounds keep every value far from overflow and from "effectively never" timeouts that hide mistakes.
_NUMBERS = (
    _Number("JOB_TIMEOUT", 3600, 1, _MONTH, "seconds", whole=False),
    _Number("MAX_OUTPUT_MB", 200, 1, 100_000, "megabytes", whole=False),
    _Number("MAX_JOB_OUTPUT_MB", DEFAULT_MAX_JOB_OUTPUT_MB, 1, 100_000, "megabytes", whole=False),
    _Number("MAX_JOBS_PER_SERVER", 4, 1, 1000, "jobs", whole=True),
    _Number("MAX_PENDING_PER_MEMBER", 2, 1, 1000, "jobs", whole=True),
    _Number("MAX_QUEUED_JOBS", DEFAULT_MAX_QUEUED_JOBS, 1, 100_000, "jobs", whole=True),
    _Number("MAX_OUTPUTS_PER_JOB", DEFAULT_MAX_OUTPUTS_PER_JOB, 1, 1000, "files", whole=True),
    _Number("MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS, 1_000_000, 1_000_000_000, "pixels", whole=True),
    _Number("COOLDOWN_SECONDS", 0, 0, _MONTH, "seconds", whole=False),
    _Number("HTTP_API_KEEP_HOURS", 24, 1, 24 * 365, "hours", whole=False),
    _Number("PREVIEW_SECONDS", 3, 0, 3600, "seconds", whole=False),
    _Number("FOLLOWUP_KEEP_HOURS", 24, 1, 24 * 365, "hours", whole=False),
)
MIN_API_TOKEN = 16  # characters: shorter tokens can be guessed
_API_TOKEN_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)


@dataclass(frozen=True, slots=True)
class ApiToken:
    """One client of the HTTP API: a name for logs and limits, and its secret bearer token."""

    name: str
    token: str = field(repr=False)  # never in a log line or a message


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the bot and the command line are configured with."""

    discord_token: str | None
    servers: tuple[ServerConfig, ...]  # from SERVERS_FILE, else one per COMFYUI_URL entry
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
    max_queued_jobs: int
    max_outputs_per_job: int
    max_job_output_mb: float
    max_image_pixels: int
    community_file: Path = Path("community.toml")  # COMMUNITY_FILE: see core.community
    community_file_named: bool = False  # set by name: it must exist
    http_api_port: int | None = None  # HTTP_API_PORT: None serves no API
    http_api_host: str = "127.0.0.1"
    http_api_tokens: tuple[ApiToken, ...] = ()
    http_api_output_dir: Path = Path("data/api-outputs")  # one folder per API job's files
    http_api_keep_hours: float = 24.0  # API outputs older than this are deleted
    http_api_webhook_secret: str | None = field(default=None, repr=False)  # signs webhook calls; never shown
    http_api_webhook_allow_private: bool = False  # webhooks may reach loopback/private addresses (a LAN)
    preview_seconds: float = 3.0  # PREVIEW_SECONDS: at most one preview edit per status message this often; 0: none
    followup_keep_hours: float = 24.0  # files kept for the buttons under a result (core.jobs.kept)
    result_view: Literal["gallery", "classic"] = "gallery"  # RESULT_VIEW: how a batch of pictures is posted

    @property
    def comfyui_urls(self) -> tuple[str, ...]:
        return tuple(server.url for server in self.servers)

    @property
    def max_output_bytes(self) -> int:
        return int(self.max_output_mb * MB)

    @property
    def max_job_output_bytes(self) -> int:
        return int(self.max_job_output_mb * MB)


def load_settings(env: Mapping[str, str], *, require_token: bool) -> Settings:
    """Build Settings from `env`, raising one ConfigError that names every bad key."""
    problems: list[str] = []

    def text(key: str) -> str:
        # An empty or blank value means "not set", as in .env.example's `DEV_GUILD_ID=`.
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

    servers: tuple[ServerConfig, ...] = ()
    servers_file = Path(text("SERVERS_FILE") or DEFAULT_SERVERS_FILE)
    if text("SERVERS_FILE") or servers_file.is_file():  # the default file is optional, a named one is not
        try:
            servers = load_servers(servers_file, env)
        except ConfigError as exc:
            problems.extend(exc.problems)
    urls: list[str] = []
    for raw in (text("COMFYUI_URL") or DEFAULT_COMFYUI_URL).split(","):
        url = raw.strip().rstrip("/")
        problem = url_problem(url)
        if problem is not None:
            problems.append(
                f"COMFYUI_URL has an invalid address {_shown(redact_url(url))}: {problem}. Use http://host:port, "
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

    dev_guild_id = _snowflake(
        text("DEV_GUILD_ID"),
        "DEV_GUILD_ID must be a server id (17 to 20 digits; right-click the server > Copy Server ID "
        "with Developer Mode on), or left empty",
        problems,
    )
    admin_role_id = _snowflake(
        text("ADMIN_ROLE_ID"),
        "ADMIN_ROLE_ID must be a role id (17 to 20 digits; Server Settings > Roles > right-click > Copy Role ID), "
        "or left empty",
        problems,
    )

    raw_level = text("LOG_LEVEL")
    log_level = raw_level.upper() if raw_level.isascii() else raw_level  # "ınfo".upper() is "INFO"
    if not log_level:
        log_level = "INFO"
    elif log_level not in LOG_LEVELS:
        problems.append(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)} (default INFO); got {_shown(raw_level)}.")
        log_level = "INFO"

    numbers = {spec.key: _number(spec, text(spec.key), problems) for spec in _NUMBERS}
    api_port: int | None = None
    if raw_port := text("HTTP_API_PORT"):
        if len(raw_port) <= 5 and WHOLE.fullmatch(raw_port) and 1 <= int(raw_port) <= 65535:
            api_port = int(raw_port)
        else:
            problems.append(
                f"HTTP_API_PORT must be a port number from 1 to 65535, or left empty; got {_shown(raw_port)}."
            )
    api_tokens = _api_tokens(text("HTTP_API_TOKENS"), problems)
    if api_port is not None and not text("HTTP_API_TOKENS"):
        problems.append("HTTP_API_PORT is set but HTTP_API_TOKENS is empty: add name:token pairs, or unset the port.")

    webhook_secret = text("HTTP_API_WEBHOOK_SECRET") or None
    if webhook_secret is not None and len(webhook_secret) < MIN_API_TOKEN:
        problems.append(  # the value itself is never quoted back: it is a secret
            f"HTTP_API_WEBHOOK_SECRET is shorter than {MIN_API_TOKEN} characters; make a long random one, "
            'e.g. with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    allow_private = _flag(text("HTTP_API_WEBHOOK_ALLOW_PRIVATE"))
    if allow_private is None:
        problems.append(
            "HTTP_API_WEBHOOK_ALLOW_PRIVATE must be true or false (default false); "
            f"got {_shown(text('HTTP_API_WEBHOOK_ALLOW_PRIVATE'))}."
        )

    result_view = text("RESULT_VIEW").lower() or "gallery"
    if result_view not in ("gallery", "classic"):
        problems.append(f"RESULT_VIEW must be gallery or classic (default gallery); got {_shown(text('RESULT_VIEW'))}.")
        result_view = "gallery"

    if problems:
        raise ConfigError(problems)
    return Settings(
        discord_token=token,
        servers=servers or tuple(ServerConfig.from_url(url) for url in urls),
        workflows_dir=workflows_dir,
        dev_guild_id=dev_guild_id,
        admin_role_id=admin_role_id,
        log_level=log_level,
        job_timeout=float(numbers["JOB_TIMEOUT"]),
        max_output_mb=float(numbers["MAX_OUTPUT_MB"]),
        jobs_db=Path(text("JOBS_DB") or "data/jobs.sqlite3"),
        max_pending_per_member=int(numbers["MAX_PENDING_PER_MEMBER"]),
        max_jobs_per_server=int(numbers["MAX_JOBS_PER_SERVER"]),
        cooldown_seconds=float(numbers["COOLDOWN_SECONDS"]),
        max_queued_jobs=int(numbers["MAX_QUEUED_JOBS"]),
        max_outputs_per_job=int(numbers["MAX_OUTPUTS_PER_JOB"]),
        max_job_output_mb=float(numbers["MAX_JOB_OUTPUT_MB"]),
        max_image_pixels=int(numbers["MAX_IMAGE_PIXELS"]),
        community_file=Path(text("COMMUNITY_FILE") or "community.toml"),
        community_file_named=bool(text("COMMUNITY_FILE")),
        http_api_port=api_port,
        http_api_host=text("HTTP_API_HOST") or "127.0.0.1",
        http_api_tokens=api_tokens,
        http_api_output_dir=Path(text("HTTP_API_OUTPUT_DIR") or "data/api-outputs"),
        http_api_keep_hours=float(numbers["HTTP_API_KEEP_HOURS"]),
        http_api_webhook_secret=webhook_secret,
        http_api_webhook_allow_private=bool(allow_private),
        preview_seconds=float(numbers["PREVIEW_SECONDS"]),
        followup_keep_hours=float(numbers["FOLLOWUP_KEEP_HOURS"]),
        result_view="classic" if result_view == "classic" else "gallery",
    )


def _api_tokens(raw: str, problems: list[str]) -> tuple[ApiToken, ...]:
    """Read HTTP_API_TOKENS ("name:token,name2:token2"); a problem names the pair by its name, never its token."""
    tokens: list[ApiToken] = []
    for number, pair in enumerate((p.strip() for p in raw.split(",") if p.strip()), start=1):
        name, sep, token = (part.strip() for part in pair.partition(":"))
        # Only a name that passed the check is quoted back: a pasted token without its colon is no name.
        shown = f"the pair named {name!r}" if sep and _API_TOKEN_NAME.fullmatch(name) else f"pair {number}"
        if not sep or not _API_TOKEN_NAME.fullmatch(name):
            problems.append(
                f"HTTP_API_TOKENS: {shown} is not name:token (the name: letters, digits, - and _, at most 64)."
            )
        elif len(token) < MIN_API_TOKEN:
            problems.append(
                f"HTTP_API_TOKENS: the token of {shown} is shorter than {MIN_API_TOKEN} characters; "
                'make a long random one, e.g. with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
            )
        elif any(t.name == name for t in tokens):
            problems.append(f"HTTP_API_TOKENS names {name!r} twice.")
        else:
            tokens.append(ApiToken(name, token))
    return tuple(tokens)


def _number(spec: _Number, raw: str, problems: list[str]) -> float:
    """Read one numeric setting; on a bad value record why and return the default."""
    if not raw:
        return spec.default
    value: float | None = None
    if len(raw) <= 30 and (WHOLE if spec.whole else _DECIMAL).fullmatch(raw):  # int() refuses 4,300+ digits
        value = int(raw) if spec.whole else float(raw)  # "9" * 400 is a valid decimal that float() makes inf
    if value is not None and math.isfinite(value) and spec.minimum <= value <= spec.maximum:
        return value
    kind = f"a whole number of {spec.unit}" if spec.whole else f"a number of {spec.unit}"
    shape = "written with the digits 0-9 only" if spec.whole else "written like 90 or 2.5"
    problems.append(
        f"{spec.key} must be {kind} from {_figure(spec.minimum)} to {_figure(spec.maximum)}, {shape} "
        f"(default {_figure(spec.default)}); got {_shown(raw)}."
    )
    return spec.default


def _figure(value: float) -> str:
    """Write a bound or default the way an admin types it, with thousands separators: 100,000,000."""
    return f"{int(value):,}" if value == int(value) else f"{value:,}"


def _snowflake(raw: str, problem: str, problems: list[str]) -> int | None:
    if not raw:
        return None
    if _SNOWFLAKE.fullmatch(raw) and int(raw) <= _MAX_SNOWFLAKE:
        return int(raw)
    problems.append(f"{problem}; got {_shown(raw)}.")
    return None


def _flag(raw: str) -> bool | None:
    """A true/false setting (empty is false), or None when it is neither."""
    lowered = raw.lower()
    if lowered in ("", "false", "no", "0", "off"):
        return False
    if lowered in ("true", "yes", "1", "on"):
        return True
    return None


def _shown(value: str) -> str:
    """Quote a bad value back to the admin, cut so that a pasted file cannot flood the message."""
    return repr(cap(value, _SHOWN_VALUE))


def setup_logging(level: str) -> None:
    """Configure the root logger once for the bot or the command line."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")

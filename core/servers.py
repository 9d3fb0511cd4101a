"""The ComfyUI servers the bot uses: read from servers.toml, or made from COMFYUI_URL (the one-line shortcut)."""

from __future__ import annotations

import ipaddress
import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.errors import ConfigError
from core.text import cap

# Server names show in logs, /queue and /servers, so they stay short and plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", re.ASCII)
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
# RFC 7230 token characters: anything else in a header name makes aiohttp refuse the request.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", re.ASCII)
_KEYS = ("url", "headers", "query", "verify_tls", "ca_file", "max_jobs", "tags")
MAX_JOBS_LIMIT = 1000
# Dot-separated labels of letters, digits, "-" and "_" (docker service names have underscores).
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?", re.ASCII)
# ASCII digits only: str.isdigit() and int() also take "٣" or "²", and float() takes "1e3", "nan", "+1", "1_0".
WHOLE = re.compile(r"[0-9]+", re.ASCII)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One ComfyUI server and how to reach it. Headers, query and URL may hold secrets: never shown (repr=False)."""

    name: str
    url: str = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    query: Mapping[str, str] = field(default_factory=dict, repr=False)
    verify_tls: bool = True
    ca_file: Path | None = None
    max_jobs: int | None = None  # None: the MAX_JOBS_PER_SERVER setting
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_url(cls, url: str) -> ServerConfig:
        """The shortcut for one COMFYUI_URL entry: named after its address, without any password."""
        return cls(name=redact_url(url), url=url)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What aiohttp's `ssl=` takes for this server: a context trusting `ca_file`, False, or True (the default)."""
        if self.ca_file is not None:
            return ssl.create_default_context(cafile=str(self.ca_file))
        return self.verify_tls


def load_servers(path: Path, env: Mapping[str, str]) -> tuple[ServerConfig, ...]:
    """Read a servers file, replacing each ${NAME} by that environment variable; one ConfigError lists all problems."""
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{where} cannot be read: {exc.strerror or exc}."]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{where} is not UTF-8 text."]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where} is not valid TOML: {exc}."]) from exc
    problems: list[str] = []
    servers: list[ServerConfig] = []
    extra = sorted(set(data) - {"servers"})
    if extra:
        problems.append(f"{where}: unknown top-level key {_listed(extra)}; only [servers.NAME] tables belong here.")
    tables = data.get("servers")
    if not isinstance(tables, dict) or not tables:
        problems.append(f"{where} has no [servers.NAME] table; add one per ComfyUI server.")
        tables = {}
    for name, table in tables.items():
        server = _server(name, table, f"{where}: [servers.{cap(name, 40)}]", env, problems)
        if server is not None:
            servers.append(server)
    seen: dict[str, str] = {}
    for server in servers:
        if server.url in seen:
            problems.append(f"{where}: [servers.{server.name}] has the same url as [servers.{seen[server.url]}].")
        seen.setdefault(server.url, server.name)
    if problems:
        raise ConfigError(problems)
    return tuple(servers)


def _server(name: str, table: Any, where: str, env: Mapping[str, str], problems: list[str]) -> ServerConfig | None:
    """Check one [servers.NAME] table; on a problem record it and return None."""
    before = len(problems)
    if not _NAME.fullmatch(name):
        problems.append(f"{where}: a server name is 1 to 32 letters, digits, '-' or '_', not starting with - or _.")
    if not isinstance(table, dict):
        problems.append(f'{where} must be a table with at least url = "http://host:port".')
        return None
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        problems.append(f"{where}: unknown key {_listed(unknown)}; the keys are {', '.join(_KEYS)}.")

    def text(key: str, raw: Any) -> str | None:
        if not isinstance(raw, str):
            problems.append(f"{where}: {key} must be a string.")
            return None
        return _substitute(raw, f"{where} {key}", env, problems)

    def strings(key: str) -> dict[str, str]:
        raw = table.get(key, {})
        if not isinstance(raw, dict):
            problems.append(f'{where}: {key} must be a table of strings, like {key} = {{ name = "value" }}.')
            return {}
        found: dict[str, str] = {}
        for sub, value in raw.items():
            if key == "headers" and not _HEADER_NAME.fullmatch(sub):
                problems.append(f"{where}: header name {cap(sub, 40)!r} is not a valid HTTP header name.")
            substituted = text(f"{key}.{cap(sub, 40)}", value)
            if substituted is not None:
                found[sub] = substituted
        return found

    raw_url = table.get("url")
    url = None
    if raw_url is None:
        problems.append(f'{where} has no url; add url = "http://host:port".')
    else:
        url = text("url", raw_url)
        if url is not None:
            url = url.strip().rstrip("/")
            problem = url_problem(url)
            if problem is not None:
                # The URL as written, not as substituted: the environment may have put a secret in it.
                shown = repr(cap(redact_url(str(raw_url)), 60))
                problems.append(f"{where}: url {shown} is not usable: {problem}.")
    headers = strings("headers")
    query = strings("query")
    tags = strings("tags")
    has_password = url is not None and url_problem(url) is None and "@" in urlsplit(url).netloc
    if has_password and any(h.lower() == "authorization" for h in headers):
        # aiohttp refuses a request that carries both; say it here rather than fail every call
        problems.append(f"{where}: the url has a user:password and headers has an Authorization; keep one of them.")

    verify_tls = table.get("verify_tls", True)
    if not isinstance(verify_tls, bool):
        problems.append(f"{where}: verify_tls must be true or false.")
    ca_file = None
    if "ca_file" in table:
        raw_ca = text("ca_file", table["ca_file"])
        if raw_ca is not None:
            ca_file = Path(raw_ca)
            if verify_tls is False:
                problems.append(f"{where}: ca_file is given but verify_tls = false; drop one of them.")
            elif not ca_file.is_file():
                problems.append(f"{where}: ca_file {cap(raw_ca, 200)!r} is not a file.")
            else:
                try:  # read now: a bad file must stop the start with a message, not the first connection
                    ssl.create_default_context(cafile=str(ca_file))
                except (ssl.SSLError, OSError, ValueError):
                    problems.append(f"{where}: ca_file {cap(raw_ca, 200)!r} holds no PEM certificate.")
    max_jobs = table.get("max_jobs")
    whole = isinstance(max_jobs, int) and not isinstance(max_jobs, bool)
    if max_jobs is not None and not (whole and 1 <= max_jobs <= MAX_JOBS_LIMIT):
        shown = cap(str(max_jobs), 40)
        problems.append(f"{where}: max_jobs must be a whole number from 1 to {MAX_JOBS_LIMIT:,}; got {shown!r}.")
    if len(problems) > before or url is None:
        return None
    return ServerConfig(name, url, headers, query, bool(verify_tls), ca_file, max_jobs, tags)


def _substitute(raw: str, where: str, env: Mapping[str, str], problems: list[str]) -> str | None:
    """Replace each ${NAME} in `raw` by that environment variable; an unset or empty one is a problem."""
    missing: list[str] = []

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if not _VARIABLE_NAME.fullmatch(name):
            missing.append(f"{where}: ${{{cap(name, 40)}}} is not a variable name (letters, digits and _).")
            return ""
        found = env.get(name, "")
        if not found:
            missing.append(f"{where} uses ${{{name}}}, but the environment variable {name} is not set.")
        return found

    result = _VARIABLE.sub(value, raw)
    problems.extend(missing)
    return None if missing else result


def _listed(keys: list[str]) -> str:
    return ", ".join(repr(cap(k, 40)) for k in keys)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a ComfyUI address, or None when it can."""
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        return "it contains spaces or characters that are not plain ASCII"
    try:
        parts = urlsplit(url)  # raises on an unclosed IPv6 bracket
    except ValueError:
        return "it cannot be read as a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "it must start with http:// or https:// followed by a host name"
    if not (_HOST_NAME.fullmatch(parts.hostname) or _is_ip(parts.hostname)):  # "a..b" or "a\\b" crash aiohttp
        return "the host must be a name like comfy.local or an IP address"
    host_port = parts.netloc.rpartition("@")[2]
    port = "" if host_port.endswith("]") or ":" not in host_port else host_port.rpartition(":")[2]
    if port and not (WHOLE.fullmatch(port) and 1 <= int(port) <= 65535):  # urlsplit allows "+80", "٨٠"
        return "the port must be a number from 1 to 65535"
    if parts.query or parts.fragment:
        return "it must not have a ?query or #fragment"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def redact_url(url: str) -> str:
    """Drop any user:password from a URL, or from text that may not even parse as one, so it can be shown."""
    head, at, tail = url.rpartition("@")  # the last @: a password may hold one too
    if not at:
        return url
    scheme, sep, _ = head.partition("://")
    return f"{scheme}{sep}***@{tail}" if sep else f"***@{tail}"
